"""Delta networks inside rnnskip-convert: ``--delta delta.json``.

:class:`DeltaSetup` checks the thresholds file before the output folder is
written, attaches the thresholds to the quantised model and adds the report's
``delta`` section (rnnskip.delta.report) once the model has been emulated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..stepmethod import MethodSetup
from .spec import DeltaSpec


class DeltaSetup(MethodSetup):
    """``rnnskip-convert --delta delta.json``: checked before anything is written,
    attached after quantisation, reported after emulation."""
    key = "delta"
    option = "--delta"
    what = "delta thresholds"
    regression = True   # tuned with --tolerance; the section reports the outputs' error

    def __init__(self, spec: DeltaSpec, path: str):
        self.spec, self.path = spec, path
        self.grid_mismatch = None   # set by attach(): what differs from the grid the thresholds were made on
        self.data_check = None      # set by attach(): --data against the certification rows

    @property
    def inputs(self) -> list:
        return [self.path]

    @classmethod
    def check_options(cls, path) -> None:
        if path is not None:
            DeltaSpec.load(path)   # a missing or damaged thresholds file, before the model is read

    @classmethod
    def prepare(cls, ir, path, log=None, note=None, loaded=()) -> Optional["DeltaSetup"]:
        if path is None:
            return None
        spec = DeltaSpec.load(path)
        spec.check_model(ir, where=f"--delta {path}")
        return cls(spec, str(path))

    def attach(self, ir, qm, work: Path, progress: bool, warn: Callable[[str], None], data=None) -> None:
        """Thresholds onto the quantised model; a ``warn`` line when its int8 grid is not the one
        the thresholds were chosen on (other calibration data: the same steps mean other values),
        and one when ``data`` is unlike the rows the thresholds were certified on."""
        from ..quant.grid import grid_mismatch
        from .golden import with_delta
        qm.methods = with_delta(qm, self.spec).methods
        self.grid_mismatch = grid_mismatch(self.spec.grid, qm)
        if self.grid_mismatch:
            cal = self.spec.tuning.get("calibration")
            warn(f"warning: --delta {self.path}: its thresholds are int8 steps of another grid "
                 f"({self.grid_mismatch}): pass the --calib it was made with"
                 f"{f' (--calib {cal})' if cal else ''}, or re-run 'rnnskip delta-tune' with this --calib")
        from ..certify import check_against_certificate
        self.data_check = check_against_certificate(self.spec.tuning, data, f"--delta {self.path}", warn, qm)

    def section(self, ir, qm, ds, ev, out_dir, comparison=None, model_path=None) -> dict:
        from .report import section
        sec = section(ir, qm, ds, ev, out_dir, float_acc=ev.float_acc, comparison=comparison)
        sec["thresholds_file"] = self.path
        if sec.get("certified") and self.data_check is not None:
            sec["certified"] = dict(sec["certified"], data_check=self.data_check)
        if self.spec.grid:
            from ..quant.grid import grid_of
            sec["int8_grid"] = {"tuned": self.spec.grid, "deployed": grid_of(qm),
                                "same": self.grid_mismatch is None}
        return sec

    @staticmethod
    def table_rows(sec: dict) -> list:
        from .report import table_rows
        return table_rows(sec)

    @staticmethod
    def slower_hint(sec: dict) -> str:
        from .report import cell_threshold_hint
        return cell_threshold_hint(sec["thresholds"], sec["density"]["cells"])
