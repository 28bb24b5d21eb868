"""Delta thresholds: what ``delta.json`` holds and how it is checked.

Thresholds live on the int8 grid of the quantised model: an element transmits
when ``|value - last_transmitted| > theta`` with both values int8, so ``theta``
is a whole number of int8 steps (0 = transmit every change). Each recurrent
layer has one threshold for its input (``input``) and one for its hidden state
(``hidden``).

File format (``rnnskip-delta-1``)::

    {"format": "rnnskip-delta-1",
     "model": {"name": ..., "layers": [{"kind": "gru", "units": 128, "input_dim": 40}],
               "weights_sha256": "...", "model_sha256": "...", "readout": "last step",
               "output_activation": "softmax"},
     "thresholds": [{"layer": "gru", "input": 3, "hidden": 2}],
     "int8_grid": [{"layer": "gru", "input_scale": 0.031, "hidden_scale": 0.0079}],
     "tuning": {...}}          # optional: how the thresholds were chosen

A file for another model (different layers, or different weights: ``weights_sha256``
over the recurrent layers, ``model_sha256`` over every weight, head and input stage
included; or another ``readout`` or ``output_activation``, which the weights do not say) is refused with one
line, and so is one whose ``layer`` names differ from
the model's layers (both directions of a Bidirectional one) in order. ``int8_grid``
(optional) records the scales the thresholds were chosen on: a conversion calibrated
on other data has another grid, on which the same number of int8 steps is another
threshold, and is warned about.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..cells import cell_of
from ..converter.ir import model_fingerprint, weights_fingerprint
from ..errors import RnnskipError
from ..stagefile import stage_data

FORMAT = "rnnskip-delta-1"
#: |delta| of two int8 values is at most 255; a threshold >= this never transmits.
THETA_MAX = 255
#: cell thresholds are capped here: int16 pre-activations move by at most 65535 steps
THETA_M_MAX = 65536


def model_signature(ir) -> dict:
    from ..outputs import output_activation, readout
    return {"name": ir.name,
            "layers": [{"kind": l.kind, "units": int(l.units), "input_dim": int(l.input_dim)}
                       for r in ir.rnn_layers for l in r.directions()],
            "weights_sha256": weights_fingerprint(ir), "model_sha256": model_fingerprint(ir), "readout": readout(ir),
            "output_activation": output_activation(ir)}


def check_supported(layers) -> None:
    """Refuse layers whose cell cannot keep running sums (IR or quantised layers)."""
    for l in layers:
        msg = cell_of(l.kind).delta_refusal(l)
        if msg:
            raise RnnskipError(msg)


def checked_theta(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RnnskipError(f"{where}: threshold {v!r} is not a number; use a whole number of int8 steps >= 0")
    if isinstance(v, float) and not math.isfinite(v):
        raise RnnskipError(f"{where}: threshold {v!r} is not a finite number")
    if v < 0:
        raise RnnskipError(f"{where}: threshold {v} is negative; thresholds are >= 0 (0 = transmit every change)")
    if float(v) != int(v):
        raise RnnskipError(f"{where}: threshold {v} is not a whole number of int8 steps (use 0, 1, 2, ...)")
    if v > THETA_MAX:   # refused, not clamped: what is printed and what is written must be the same number
        raise RnnskipError(f"{where}: threshold {v} is above {THETA_MAX}, the largest change of an int8 value "
                           f"({THETA_MAX} already never transmits)")
    return int(v)


def checked_theta_cell(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or float(v) != int(v):
        raise RnnskipError(f"{where}: cell threshold {v!r} must be a whole number >= 0 of pre-activation steps "
                           f"(1/4096 for Q3.12; 0: check but evaluate every unit)")
    if v > THETA_M_MAX:
        raise RnnskipError(f"{where}: cell threshold {v} is above {THETA_M_MAX}, more than an int16 pre-activation "
                           f"can move ({THETA_M_MAX} already never re-evaluates a unit)")
    return int(v)


def _check_sections(d: dict, where: str) -> None:
    """The parts of a thresholds file later stages read (the model it was made for, the certificate),
    of the types delta-tune writes: one line otherwise, before any work."""
    def bad(what):
        return RnnskipError(f"{where}: {what}; it is not a file 'rnnskip delta-tune' wrote (edited?): write it again")
    model, tuning = d.get("model"), d.get("tuning")
    for key, v in (("model", model), ("tuning", tuning)):
        if v is not None and not isinstance(v, dict):
            raise bad(f"'{key}' is a {type(v).__name__}, not an object")
    layers = (model or {}).get("layers")
    if layers is not None and not (isinstance(layers, list) and all(
            isinstance(l, dict) and {"kind", "units", "input_dim"} <= set(l) for l in layers)):
        raise bad("'model.layers' is not a list of {kind, units, input_dim}")
    from ..certify import is_certificate, is_lengths
    cert = (tuning or {}).get("certified")
    if cert is not None and not is_certificate(cert):
        raise bad("'tuning.certified' is not a certificate")
    lengths = (tuning or {}).get("calibration_lengths")
    if lengths is not None and not is_lengths(lengths):
        raise bad("'tuning.calibration_lengths' is not a list of sequence lengths")


@stage_data
@dataclass
class DeltaSpec:
    """Per-layer thresholds on the int8 grid. ``theta_x[i]`` / ``theta_h[i]`` for layer i.

    ``theta_m[i]``: the cell threshold of layer i, in steps of 1/4096 of the gate pre-activations
    (Q3.12's step; a relu/linear candidate on a coarser format is held to the same real change): a
    unit none of whose running sums moved by that much since its last evaluation keeps its state (None: no cell
    threshold, every unit evaluated at every step; 0: the check runs and every unit is
    still evaluated)."""
    theta_x: List[int]
    theta_h: List[int]
    model: dict = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)
    #: grid_of() the quantised model the thresholds were chosen on ([] = not recorded)
    grid: list = field(default_factory=list)
    theta_m: Optional[List[Optional[int]]] = None
    #: the layer (direction) each entry was written for, as the file names it ([] = not recorded)
    names: List[str] = field(default_factory=list)

    def __post_init__(self):
        if len(self.theta_x) != len(self.theta_h):
            raise RnnskipError("delta thresholds: need one input and one hidden threshold per layer")
        self.theta_x = [checked_theta(v, f"layer {i} input") for i, v in enumerate(self.theta_x)]
        self.theta_h = [checked_theta(v, f"layer {i} hidden") for i, v in enumerate(self.theta_h)]
        tm = self.theta_m if self.theta_m is not None else [None] * len(self.theta_x)
        if len(tm) != len(self.theta_x):
            raise RnnskipError("delta thresholds: need one cell threshold (or none) per layer")
        self.theta_m = [None if v is None else checked_theta_cell(v, f"layer {i} cell") for i, v in enumerate(tm)]

    @property
    def cell_sparse(self) -> bool:
        return any(t is not None for t in self.theta_m)

    @property
    def layers(self) -> int:
        return len(self.theta_x)

    @classmethod
    def uniform(cls, n_layers: int, theta_x: int = 0, theta_h: int = 0, ir=None) -> "DeltaSpec":
        return cls([theta_x] * n_layers, [theta_h] * n_layers, model=model_signature(ir) if ir is not None else {})

    def label(self) -> str:
        return " ".join(f"x{a}/h{b}" + (f"/m{m}" if m is not None else "")
                        for a, b, m in zip(self.theta_x, self.theta_h, self.theta_m))

    # -- files ----------------------------------------------------------------
    def to_json(self, ir=None) -> dict:
        names = ([d.name for l in ir.rnn_layers for d in l.directions()] if ir is not None   # Bidirectional: both
                 else [f"layer{i}" for i in range(self.layers)])
        return {"format": FORMAT,
                "model": model_signature(ir) if ir is not None else self.model,
                "thresholds": [{"layer": n, "input": a, "hidden": b, **({"cell": m} if m is not None else {})}
                               for n, a, b, m in zip(names, self.theta_x, self.theta_h, self.theta_m)],
                **({"int8_grid": self.grid} if self.grid else {}),
                "tuning": self.tuning}

    def save(self, path, ir=None) -> None:
        from ..jsonio import dumps
        Path(path).write_text(dumps(self.to_json(ir)))

    @classmethod
    def from_json(cls, d, where: str = "delta thresholds") -> "DeltaSpec":
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("thresholds"), list):
            raise RnnskipError(f"{where} is not an rnnskip delta file (format '{FORMAT}' with a 'thresholds' list); "
                               f"write one with 'rnnskip delta-tune'")
        tx, th, tm, names = [], [], [], []
        for i, t in enumerate(d["thresholds"]):
            if not isinstance(t, dict) or "input" not in t or "hidden" not in t:
                raise RnnskipError(f"{where}: thresholds[{i}] needs 'input' and 'hidden'")
            names.append(str(t.get("layer", "")))
            tx.append(checked_theta(t["input"], f"{where}: layer {i} input"))
            th.append(checked_theta(t["hidden"], f"{where}: layer {i} hidden"))
            tm.append(checked_theta_cell(t["cell"], f"{where}: layer {i} cell") if t.get("cell") is not None else None)
        if not tx:
            raise RnnskipError(f"{where}: the thresholds list is empty")
        from ..quant.grid import is_grid
        grid = d.get("int8_grid") or []
        if not is_grid(grid):
            raise RnnskipError(f"{where}: int8_grid must list one {{input_scale, hidden_scale}} (> 0) per layer; "
                               f"write the file with 'rnnskip delta-tune'")
        if len(grid) not in (0, len(tx)):
            raise RnnskipError(f"{where}: int8_grid lists {len(grid)} layers but the thresholds {len(tx)}; write the "
                               f"file with 'rnnskip delta-tune'")
        _check_sections(d, where)
        return cls(tx, th, model=d.get("model") or {}, tuning=d.get("tuning") or {}, grid=grid,
                   theta_m=tm, names=names if all(names) else [])

    @classmethod
    def load(cls, path) -> "DeltaSpec":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise RnnskipError(f"delta thresholds file {p} not found")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RnnskipError(f"delta thresholds file {p} is not valid JSON ({e.__class__.__name__}: {e})")
        return cls.from_json(d, where=str(p))

    def check_model(self, ir, where: str = "delta thresholds") -> None:
        """Refuse thresholds written for another model (one line)."""
        layers = [d for l in ir.rnn_layers for d in l.directions()]   # a Bidirectional layer: both directions
        check_supported(layers)
        if self.layers != len(layers):
            raise RnnskipError(f"{where} has thresholds for {self.layers} recurrent layer(s) but model '{ir.name}' "
                               f"has {len(layers)} (a Bidirectional layer counts its two directions); run "
                               "'rnnskip delta-tune' on this model")
        sig = self.model or {}
        want = model_signature(ir)
        if sig.get("layers") and sig["layers"] != want["layers"]:
            got = ", ".join(f"{l['kind'].upper()}({l['units']}, in {l['input_dim']})" for l in sig["layers"])
            have = ", ".join(f"{l['kind'].upper()}({l['units']}, in {l['input_dim']})" for l in want["layers"])
            raise RnnskipError(f"{where} was written for another model ({got}); this model has {have}; "
                               f"run 'rnnskip delta-tune' on this model")
        have = [d.name for d in layers]
        generic = [f"layer{i}" for i in range(len(layers))]   # written without a model (to_json(None))
        # the same weights under other layer names altogether (PyTorch's two ONNX exporters name one LSTM
        # 'lstm/LSTM' and 'node_lstm__2'): the same model, each threshold for the layer of its position; names
        # of this model in another order are entries moved, refused
        renamed = bool(sig.get("model_sha256")) and sig["model_sha256"] == want["model_sha256"] \
            and sig.get("weights_sha256") == want["weights_sha256"] and not set(self.names) & set(have)
        if self.names and self.names != have and self.names != generic and not renamed:
            raise RnnskipError(f"{where} names its thresholds' layers {self.names}, but model '{ir.name}' has "
                               f"{have} in that order (each threshold applies to the layer of its position); run "
                               f"'rnnskip delta-tune' on this model")
        if sig.get("weights_sha256") and sig["weights_sha256"] != want["weights_sha256"]:
            raise RnnskipError(f"{where} was tuned for a model with other weights (same layer sizes); "
                               f"run 'rnnskip delta-tune' on this model")
        if sig.get("model_sha256") and sig["model_sha256"] != want["model_sha256"]:   # (older files: no key)
            raise RnnskipError(f"{where} was tuned for a model with the same recurrent weights but another head or "
                               f"input stage, so its accuracy budget is not this model's; run 'rnnskip delta-tune' "
                               f"on this model")
        if sig.get("model_sha256"):   # a file written for a model (hand-written thresholds name none)
            from ..outputs import check_readout
            check_readout(sig, ir, where, "run 'rnnskip delta-tune' on this model")
