"""Step methods: ways of doing less work per time step, attached to a quantised model.

rnnskip has two, each a subclass of :class:`StepMethod`:

* the skip predictor (``rnnskip/skip/qpredictor.py``): before a step, a tiny int8
  model decides on the state reached whether the step can be skipped (state kept);
* delta thresholds (``rnnskip/delta/golden.py``): a layer's accumulators are running
  sums updated only by the input and hidden elements that moved by more than a
  threshold.

A quantised model carries a list of them (``QModel.methods``; empty: the dense
model). The golden model, the C generator, the stage files and the report call the
hooks below; every hook has a do-nothing default, so a method implements what it
changes and the flow never asks which method it holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np


class StepMethod:
    #: short name: the report section and the stage-file entry ("skip", "delta")
    key = ""
    #: what the report calls the model with this method, e.g. "skip" (cycles {dense, skip})
    label = ""
    #: said next to the emulation's MACs per step when the method changes what they mean
    macs_note = ""
    #: a step's cost depends on the data, not only on whether it runs: the report fits no cycles per step (a fit
    #: over sequence lengths would read whichever steps the data made cheap as the per-step cost); says why
    varying_step_cost = ""

    # ---- golden model -----------------------------------------------------------------
    def golden_prepare(self, golden) -> None:
        """Called once by :class:`~rnnskip.quant.golden.GoldenModel` (precompute what the hooks read)."""

    def golden_init(self, golden, state: List[dict], n: int) -> None:
        """Add the method's arrays to each layer's zero state (``n`` sequences)."""

    def golden_skip(self, golden, x: np.ndarray, state: List[dict]) -> np.ndarray:
        """bool ``[N]``: skip this step (the state is kept). ``x``: the step's int8 input."""
        return np.zeros(len(x), bool)

    def golden_accumulate(self, golden, i: int, s: dict, x: np.ndarray, new: dict) -> Optional[np.ndarray]:
        """Layer ``i``'s accumulators ``[N, acc_rows]`` from its state ``s`` and input ``x``
        (putting the method's own new state into ``new``), or None: the cell's dense mat-vecs."""
        return None

    def golden_cell(self, golden, i: int, s: dict, acc: np.ndarray, new: dict) -> Optional[dict]:
        """Layer ``i``'s new cell state from its accumulators ``acc`` (putting the method's own
        new state into ``new``), or None: the cell's own step on every unit."""
        return None

    # ---- C ----------------------------------------------------------------------------
    #: the method's C functions by part of a step, as symbol-name prefixes, for the report's
    #: cycle profile ({"gather": ("rnnskip_dg", ...)}; what is inlined into rnnskip_step is not here)
    c_parts: dict = {}
    #: what the method computes with the shared row-major mat-vec (rnnskip_mat_vec_acc_s8), named
    #: in that part's label since a profile by function cannot split it from the Dense layers'
    c_row_major_users = ()
    #: kernel headers (in rnnskip/kernels/) the generated model includes for it
    c_headers = ()
    #: Jinja2 macros (in firmware_templates/model/) the generated step calls: ``state()``
    #: (rnnskip_state_t members), ``definitions()`` (functions before rnnskip_init),
    #: ``init()``, ``before_layers()`` (in rnnskip_step, after the input stage),
    #: ``accumulate(l, i)`` (a layer's accumulators; returns nothing to keep the cell's own)
    #: and ``cell(l, i, acc, unit)`` (the layer's cell; ``unit`` is the cell template's macro
    #: for one unit; returns nothing to keep the cell's own call)
    template = ""

    def c_context(self, qm) -> dict:
        """Variables the method's macros read (as ``m``)."""
        return {}

    def c_arrays(self, qm) -> List[tuple]:
        """(name, values, numpy dtype, doc) for rnnskip_weights.c."""
        return []

    def c_accumulators(self, qm, i: int) -> Optional[str]:
        """The C expression of layer ``i``'s accumulators when :meth:`accumulate` fills them
        (None: the cell's own ``s->acc``)."""
        return None

    # ---- sizes ------------------------------------------------------------------------
    def state_bytes(self, qm) -> int:
        """Bytes the method adds to rnnskip_state_t."""
        return 0

    def flash_bytes(self, qm) -> int:
        """Bytes of flash the method's arrays add."""
        return int(sum(np.asarray(a[1]).size * np.dtype(a[2]).itemsize for a in self.c_arrays(qm)))

    def macs_per_step(self, qm) -> int:
        """MACs the method adds to an executed (or skipped) step."""
        return 0


class MethodSetup:
    """A step method as rnnskip-convert runs it. Its options are checked before anything is
    written (:meth:`prepare`), it is attached to the quantised model (:meth:`attach`), and
    after the emulation its report section measures the model against the same model
    without it (:meth:`section`, given the flow's comparison of the two firmware images)."""
    #: the step method's key, the report section and the key of its options in run_convert(methods=...)
    key = ""
    #: the command-line option(s) that turn it on, for messages ("--delta")
    option = ""
    #: what the baseline line calls it ("the skip predictor", "delta thresholds")
    what = ""
    #: what a note on its measured cost calls it (default: its first option, "--delta"); the skip predictor
    #: comes from --predictor or --skip auto, so it is named instead
    note_name = ""
    #: whether its section can measure a regression model (outputs against the dense model's, in their units);
    #: False: its budget and section are accuracies on classes
    regression = False

    #: files the method reads (rnnskip-convert never replaces a folder holding them)
    inputs: list = []
    #: why attach() left the model without the method (None: attached); the conversion then
    #: goes on with the model without it and the report section says why
    not_attached: Optional[dict] = None

    @classmethod
    def check_options(cls, options) -> None:
        """One-line RnnskipError for options that conflict whatever the model is: called before the
        model is read (seconds), :meth:`prepare` checks the rest once it is."""

    @classmethod
    def prepare(cls, ir, options, log: Callable[[str], None], note: Optional[Callable[[str], None]] = None,
                loaded: Sequence = ()) -> Optional["MethodSetup"]:
        """The setup for ``options`` (what the command line gave for :attr:`key`); None when the
        method is off. One-line RnnskipError for bad options, before any work. ``note`` gets the
        warnings of data files the method reads, unless they are among ``loaded`` (already read)."""
        raise NotImplementedError

    def attach(self, ir, qm, work: Path, progress: bool, note: Callable[[str], None], data=None) -> None:
        """Add the step method to ``qm.methods`` (``work``: the output folder being written;
        ``data``: the evaluation Dataset, for checks against what the method was made on)."""
        raise NotImplementedError

    def section(self, ir, qm, ds, ev, work: Path, comparison: Optional[dict], model_path: str) -> dict:
        """The report section; ``comparison``: :func:`rnnskip.report.compare_with_dense` of the
        emulated firmware against the model without this method (None when not emulated)."""
        raise NotImplementedError

    @staticmethod
    def table_rows(sec: dict) -> list:
        """(label, value) lines of the section for the terminal table."""
        return []

    @staticmethod
    def slower_hint(sec: dict) -> str:
        """What to try when the section's firmware was slower than the model without the method ("" if nothing)."""
        return ""

    def unattached_section(self) -> dict:
        """The report section when :meth:`attach` left the method out (``not_attached``)."""
        return {"attached": False, **self.not_attached}


def without(methods: list, key: str) -> list:
    """``methods`` without the one named ``key`` (the reference a method is measured against)."""
    return [m for m in methods if m.key != key]


def find(methods: list, key: str) -> Optional[StepMethod]:
    return next((m for m in methods if m.key == key), None)


def model_without(qm, key: str):
    """Shallow copy of the quantised model ``qm`` without its step method ``key`` (the others kept)."""
    import copy
    q = copy.copy(qm)
    q.methods = without(qm.methods, key)
    return q
