"""Delta networks inside rnnskip-convert: ``--delta delta.json``.

:class:`DeltaSetup` checks the thresholds file before the output folder is
written, attaches the thresholds to the quantised model and adds the report's
``delta`` section (rnnskip.delta.report) once the model has been emulated.
"""
from __future__ import annotations

from typing import Callable

from .spec import DeltaSpec


class DeltaSetup:
    """``rnnskip-convert --delta delta.json``: checked before anything is written,
    attached after quantisation, reported after emulation."""

    def __init__(self, spec: DeltaSpec, path: str):
        self.spec, self.path = spec, path
        self.grid_mismatch = None   # set by attach(): what differs from the grid the thresholds were made on

    @classmethod
    def prepare(cls, ir, path) -> "DeltaSetup":
        spec = DeltaSpec.load(path)
        spec.check_model(ir, where=f"--delta {path}")
        return cls(spec, str(path))

    def attach(self, qm, warn: Callable[[str], None]) -> None:
        """Thresholds onto the quantised model; a ``warn`` line when its int8 grid is not the one
        the thresholds were chosen on (other calibration data: the same steps mean other values)."""
        from .spec import grid_mismatch
        from .golden import with_delta
        qm.methods = with_delta(qm, self.spec).methods
        self.grid_mismatch = grid_mismatch(self.spec.grid, qm)
        if self.grid_mismatch:
            cal = self.spec.tuning.get("calibration")
            warn(f"warning: --delta {self.path}: its thresholds are int8 steps of another grid "
                 f"({self.grid_mismatch}): pass the --calib it was made with"
                 f"{f' (--calib {cal})' if cal else ''}, or re-run 'rnnskip delta-tune' with this --calib")

    def section(self, ir, qm, ds, ev, out_dir, fw=None, dense_fw=None, target=None, dense_emu=None) -> dict:
        from .report import section
        sec = section(ir, qm, ds, ev, out_dir, float_acc=getattr(ev, "float_acc", None), dense_fw=dense_fw,
                      target=target, dense_emu=dense_emu)
        sec["thresholds_file"] = self.path
        if self.spec.grid:
            from .spec import grid_of
            sec["int8_grid"] = {"tuned": self.spec.grid, "deployed": grid_of(qm),
                                "same": self.grid_mismatch is None}
        if fw is not None and "firmware_flash_bytes" in sec:
            sec["firmware_flash_bytes"]["delta"] = int(fw.flash_bytes)
        return sec
