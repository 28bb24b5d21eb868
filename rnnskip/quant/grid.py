"""The int8 grid of a quantised model's recurrent layers, recorded by what was chosen on it.

Delta thresholds are whole int8 steps of it, and a skip predictor's threshold is calibrated and
certified on the int8 model it gives; converting with another ``--calib`` gives another grid,
so both files record theirs and the conversion warns when they differ."""
from __future__ import annotations

from typing import Optional


def grid_of(qm) -> list:
    """The int8 grid of each recurrent layer of ``qm``: what one int8 step of its input and state is worth."""
    return [{"layer": l.name, "input_scale": float(l.x_scale), "hidden_scale": float(l.h_scale)} for l in qm.layers]


def grid_mismatch(recorded: list, qm, rtol: float = 1e-6) -> Optional[str]:
    """None when ``qm`` quantises on the ``recorded`` grid (or nothing is recorded), else what differs."""
    now_grid = grid_of(qm)
    if recorded and len(recorded) != len(now_grid):
        return f"{len(recorded)} layers there, {len(now_grid)} here"
    for g, now in zip(recorded or [], now_grid):
        for k, what in (("input_scale", "input"), ("hidden_scale", "hidden")):
            if abs(g[k] - now[k]) > rtol * abs(g[k]):
                return f"layer '{now['layer']}' {what} scale {g[k]:.6g} there, {now[k]:.6g} here"
    return None


def is_grid(grid) -> bool:
    """Whether ``grid`` has the shape :func:`grid_of` gives (as files record it): one {input_scale,
    hidden_scale} (> 0) per layer."""
    return isinstance(grid, list) and all(
        isinstance(g, dict) and all(isinstance(g.get(k), (int, float)) and not isinstance(g.get(k), bool)
                                    and g[k] > 0 for k in ("input_scale", "hidden_scale")) for g in grid)
