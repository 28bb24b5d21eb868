"""Energy per inference, estimated from datasheet figures.

A board file's ``[power]`` table gives the part's typical run-mode supply current at a clock
and the supply voltage, with the datasheet table they come from::

    [power]
    run_current_ma = 40.0      # typical IDD in Run mode at clock_hz
    supply_v = 3.3
    clock_hz = 168000000       # the clock the current holds at (the memory system's)
    source = "ST DS8626 ..., table 'Typical and maximum current consumption in Run mode ...'"

or ``none = "why"`` where no such figure exists (an FPGA board). Energy per inference is then
I x V x latency (mA x V x ms = uJ): an estimate, since the current is a datasheet average over
the vendor's benchmark code, not a measurement of this firmware.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import RnnskipError

#: the words every reported energy figure carries
ESTIMATE = "estimate from datasheet figures"


@dataclass(frozen=True)
class PowerSpec:
    run_current_ma: float
    supply_v: float
    clock_hz: int
    source: str

    def energy_uj(self, latency_ms: float) -> float:
        """uJ for ``latency_ms`` of run mode: mA x V x ms."""
        return self.run_current_ma * self.supply_v * latency_ms


def _positive(raw: dict, key: str, what: str, unit: str) -> float:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise RnnskipError(f"{what}: {key} must be a positive number ({unit}), got {v!r}")
    return float(v)


def parse(raw, what: str):
    """A ``[power]`` table -> PowerSpec, or the reason string of ``none = "..."``; one-line
    RnnskipError for anything else. ``what`` names the table in the message."""
    if not isinstance(raw, dict):
        raise RnnskipError(f"{what} must be a table (run_current_ma, supply_v, clock_hz, source; or none)")
    if "none" in raw:
        if not isinstance(raw["none"], str) or not raw["none"].strip() or len(raw) > 1:
            raise RnnskipError(f"{what}: none must be the only key, a sentence saying why there is no figure")
        return raw["none"]
    unknown = sorted(set(raw) - {"run_current_ma", "supply_v", "clock_hz", "source"})
    if unknown:
        raise RnnskipError(f"{what}: unknown key {unknown[0]} (expected run_current_ma, supply_v, clock_hz, source)")
    src = raw.get("source")
    if not isinstance(src, str) or not src.strip():
        raise RnnskipError(f"{what}: source must name the datasheet and table the figures come from")
    return PowerSpec(run_current_ma=_positive(raw, "run_current_ma", what, "mA"),
                     supply_v=_positive(raw, "supply_v", what, "V"),
                     clock_hz=int(_positive(raw, "clock_hz", what, "Hz")), source=src)


def energy_report(target, latency_ms: Optional[float]) -> dict:
    """report.json's ``emulation.energy``: uJ per inference with its figures and source, or
    None with the reason there is none (no [power] table, an FPGA board, another clock)."""
    p = target.power if target is not None else None
    board = target.raw.get("board") if target is not None else None
    if p is None or isinstance(p, str):
        why = p or (f"board {board} has no [power] table" if board else
                    "no board, and a bare core has no supply current; pass --board for a part's figures")
        return {"uj_per_inference": None, "note": f"no energy estimate: {why}"}
    if p.clock_hz != target.clock_hz:
        return {"uj_per_inference": None,
                "note": f"no energy estimate: the [power] current holds at {p.clock_hz / 1e6:g} MHz but the latency "
                        f"is at {target.clock_hz / 1e6:g} MHz (--flash-wait-states selects the core-only model)"}
    return {"uj_per_inference": None if latency_ms is None else p.energy_uj(latency_ms),
            "run_current_ma": p.run_current_ma, "supply_v": p.supply_v, "clock_hz": p.clock_hz, "source": p.source,
            "note": f"{ESTIMATE}: typical run-mode current x supply voltage x modelled latency "
                    f"({p.run_current_ma:g} mA x {p.supply_v:g} V x latency)"
                    + ("; the current figure is ASSUMED (see source)" if "ASSUMED" in p.source else "")}
