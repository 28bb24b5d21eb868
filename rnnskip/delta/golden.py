"""Integer delta network: the specification of the generated delta C code.

Same arithmetic as the dense :class:`~rnnskip.quant.golden.GoldenModel` except where a
layer's int32 accumulators come from (Neil et al., "Delta Networks for Optimized
Recurrent Network Computation", ICML 2017):

* every element of a layer's ``xh = [x | h]`` (int8 input, then the layer's int8
  hidden state) keeps its last transmitted int8 value ``last``;
* at a step, element k transmits iff ``|xh_k - last_k| > theta`` (theta_x for the
  input part, theta_h for the hidden part: whole int8 steps); it then sends
  ``delta_k = xh_k - last_k`` (int16, in [-255, 255]) and sets ``last_k = xh_k``;
* the running sums ``M`` (int32, set to the biases at sequence start) get
  ``M += W[:, k] * delta_k`` for the transmitting columns only;
* the cell uses ``M`` exactly where the dense model uses its accumulators.

By construction ``M == bias + W @ last`` at every step (exact integers), so with
theta = 0 (``last == xh``) the model is bit-exact with the dense golden model.

Cell sparsity (a layer with a cell threshold ``theta_m``, beyond the paper): each
layer also keeps ``Ml``, its running sums at each unit's last evaluation. Unit j is
evaluated when one of its rows ``r`` (plane p: ``r = p * up + j``) moved by at least
``T_r`` accumulator steps, ``T_r = ceil(theta_m * 2^(32 + q_r - 12) / (mult_r * 2^ls_r))``
(theta_m in real steps of 2^-12 of the pre-activation, ``q_r`` the row's fractional bits:
12, or a relu/linear candidate's calibrated format; at most 2^30), exactly as the C computes it::

    lim_r = 2 T_r - 1 (0 when T_r = 0: always evaluated)
    moved_r = uint32(M_r - Ml_r + (lim_r >> 1)) >= lim_r          (wrapping int32 arithmetic)

An evaluated unit runs the cell as the dense model does and sets ``Ml`` of its rows to
``M``; the others keep their whole state (gates, cell state, output). ``Ml`` starts at
``M0 + 2^31`` (wrapped), so every unit is evaluated at the first step. ``theta_m = 0``
evaluates every unit: the model is the delta model without a cell threshold, bit for
bit (a quiet unit cannot simply be "unchanged": an LSTM's or GRU's state keeps moving
towards its fixed point under constant sums, so only a positive threshold skips work).

The layout comes from the layer's blocks (``layout.py``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..cells import cell_of
from ..errors import RnnskipError
from ..quant.fixedpoint import wrap32
from ..stagefile import stage_data
from ..stepmethod import StepMethod, without
from .cellrule import cell_limits, units_moved
from .layout import DeltaLayout, delta_layout
from .spec import DeltaSpec, check_supported

#: a threshold no int8 change exceeds: the hidden columns of a layer that does not read them (a per-step Dense)
NEVER = 1 << 16


def theta_columns(l, theta_x: int, theta_h: int) -> np.ndarray:
    """Per-column thresholds of a layer's xh buffer ``[in_p + up]``."""
    th = theta_h if cell_of(l.kind).recurrent else NEVER
    return np.concatenate([np.full(l.in_p, theta_x, np.int64), np.full(l.up, th, np.int64)])


def hidden_columns(l) -> int:
    """The hidden columns a layer can transmit (its units; none in a per-step Dense, which does not read them)."""
    return int(l.units) if cell_of(l.kind).recurrent else 0


@stage_data
@dataclass
class DeltaMethod(StepMethod):
    """Delta thresholds on a quantised model (one input and one hidden threshold per layer).

    Extra golden state per layer: ``last`` int8 ``[N, in_p + up]``, ``M`` int32
    ``[N, acc_rows]``, and counters ``tx_x`` / ``tx_h`` ``[N, 1]`` (input / hidden
    columns transmitted since the start), ``cells`` ``[N, 1]`` (unit evaluations, real
    units only); with a cell threshold ``Ml`` ``[N, acc_rows]``. Steps that do not run
    keep all of it.
    """
    key = "delta"
    label = "delta"
    macs_note = "dense MACs of the executed steps; the delta section has the effective MACs"
    varying_step_cost = ("a delta step costs what its transmitting columns and units cost: the delta section's "
                         "cycles_per_step_by_part gives the measured profile")
    template = "model/delta.c.j2"
    c_headers = ("rnnskip_delta_kernels.h",)
    c_parts = {"column-sparse mat-vec": ("rnnskip_dv", "rnnskip_delta_mat_vec_s8", "rnnskip_delta_pad_pair_s8"),
               "gather": ("rnnskip_dg", "rnnskip_delta_gather_s8")}

    spec: DeltaSpec

    # ---- golden model -----------------------------------------------------------------
    def golden_prepare(self, golden) -> None:
        qm = golden.qm
        check_supported(qm.layers)
        if self.spec.layers != len(qm.layers):
            raise RnnskipError(f"delta thresholds for {self.spec.layers} layer(s), model has {len(qm.layers)}")
        self.layouts = [delta_layout(l) for l in qm.layers]
        self._theta = [theta_columns(l, a, b) for l, a, b in zip(qm.layers, self.spec.theta_x, self.spec.theta_h)]

        # float BLAS is exact here: every product and partial sum is an integer of magnitude
        # <= 127 * 255 * columns, below 2^24 (float32) for <= 518 columns, else float64 (2^53)
        def ft(w):
            return np.ascontiguousarray(w.T, np.float32 if w.shape[1] <= 518 else np.float64)
        self._wf = [(ft(D.wx), ft(D.wh)) for D in self.layouts]
        self._lim = [None if tm is None else cell_limits(l, tm) for l, tm in zip(qm.layers, self.spec.theta_m)]

    def golden_init(self, golden, state, n) -> None:
        for l, s, D in zip(golden.qm.layers, state, self.layouts):
            s["last"] = np.zeros((n, l.xh_len), np.int64)
            s["M"] = np.repeat(D.m0[None, :], n, axis=0)
            s["tx_x"] = np.zeros((n, 1), np.int64)
            s["tx_h"] = np.zeros((n, 1), np.int64)
            s["cells"] = np.zeros((n, 1), np.int64)
        for s, D, lim in zip(state, self.layouts, self._lim):
            if lim is not None:     # + 2^31: every unit is evaluated at the first step
                s["Ml"] = np.repeat(wrap32(D.m0 + (1 << 31))[None, :], n, axis=0)

    def golden_accumulate(self, golden, i, s, x, new):
        """Gather the transmitting columns and update the running sums."""
        l, D = golden.qm.layers[i], self.layouts[i]
        v = np.concatenate([x, s["h8"]], axis=1)
        d = v - s["last"]
        tx = np.abs(d) > self._theta[i][None, :]
        dd = np.where(tx, d, 0)
        M = s["M"].copy()
        P = l.in_p
        wx, wh = self._wf[i]
        M[:, D.x_row0:D.x_row0 + D.rows_x] += (dd[:, :P].astype(wx.dtype) @ wx).astype(np.int64)
        M[:, D.h_row0:D.h_row0 + D.rows_h] += (dd[:, P:].astype(wh.dtype) @ wh).astype(np.int64)
        new.update(last=np.where(tx, v, s["last"]), M=M, tx_x=s["tx_x"] + tx[:, :P].sum(1, keepdims=True),
                   tx_h=s["tx_h"] + tx[:, P:].sum(1, keepdims=True))
        return M

    def golden_cell(self, golden, i, s, acc, new):
        """The cell on the running sums; with a cell threshold only on the units that moved."""
        l = golden.qm.layers[i]
        cell = cell_of(l.kind)
        out = cell.golden_cell(l, s, acc)
        lim = self._lim[i]
        if lim is None:
            new["cells"] = s["cells"] + l.units
            return out
        moved = units_moved(l, acc, s["Ml"], lim)
        rows = np.tile(moved, (1, l.acc_rows // l.up))
        new.update(Ml=np.where(rows, acc, s["Ml"]), cells=s["cells"] + moved[:, :l.units].sum(1, keepdims=True))
        return {k: np.where(moved, v, s[k]) for k, v in out.items()}

    # ---- C ----------------------------------------------------------------------------
    def c_context(self, qm) -> dict:
        from .codegen import delta_context
        return delta_context(qm, self.spec)

    def c_arrays(self, qm):
        return self.c_context(qm)["arrays"]

    def c_accumulators(self, qm, i):
        return f"s->dM{i}"

    def state_bytes(self, qm) -> int:
        ctx = self.c_context(qm)
        return sum(_a4(l.xh_len) + 4 * d["m_rows"] for l, d in zip(qm.layers, ctx["layers"])) + 4 * ctx["list_words"]


def _a4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


# ---- models with and without thresholds ----------------------------------------------

def with_delta(qm, spec: Optional[DeltaSpec]):
    """Shallow copy of ``qm`` with delta thresholds ``spec`` (None: without; other methods kept)."""
    q = copy.copy(qm)
    q.methods = without(qm.methods, "delta") + ([DeltaMethod(spec)] if spec is not None else [])
    return q


def spec_of(qm) -> Optional[DeltaSpec]:
    m = next((m for m in qm.methods if m.key == "delta"), None)
    return m.spec if m is not None else None


def run_stats(qm, x: np.ndarray, lengths: np.ndarray, trace: bool = False):
    """The golden model of ``qm`` (with its delta thresholds) over ``x``, with statistics.

    Returns (logits, flags, stats) with stats: ``tx_x``/``tx_h`` int ``[N, layers]``
    (transmitted input / hidden columns over the sequence), ``cells`` ``[N, layers]``
    (unit evaluations), ``steps`` ``[N]``, and with
    ``trace`` ``density_t`` float ``[N, T]`` (transmitted fraction of all real input +
    hidden elements at each step; NaN where the step did not run; with Bidirectional layers, of the layers that
    run as the steps arrive: the rest runs at the end of the window).
    """
    from ..quant.golden import GoldenModel
    g = GoldenModel(qm)
    x = np.asarray(x)
    N, T = x.shape[:2]
    dens = np.full((N, T), np.nan) if trace else None
    streamed = g.streamed_layers()   # collect() sees the steps of these layers only
    total = sum(l.in_dim + hidden_columns(l) for l in qm.layers[:streamed])
    sent = {"before": np.zeros(N)}

    def collect(t, state, ran):
        now = sum(s["tx_x"][:, 0] + s["tx_h"][:, 0] for s in state[:streamed])
        dens[ran, t] = ((now - sent["before"]) / total)[ran]
        sent["before"] = now

    out, flags = g.run(x, lengths, collect=collect if trace else None)
    st = g.final_state
    stats = {"tx_x": np.stack([s["tx_x"][:, 0] for s in st], 1),
             "tx_h": np.stack([s["tx_h"][:, 0] for s in st], 1),
             "cells": np.stack([s["cells"][:, 0] for s in st], 1),
             "steps": g.executed_steps(flags)}
    if trace:
        stats["density_t"] = dens
    return out, flags, stats


def effective_macs(qm, stats: dict, layouts: Optional[List[DeltaLayout]] = None) -> dict:
    """Per-sequence MACs ``[N]`` per inference: ``dense`` (every executed step runs every
    column) and ``effective`` (transmitting columns only); real (unpadded) shapes. The
    input Dense (not delta-coded, every executed step) and the head (once; with an output per step, after every
    executed step) are in both."""
    layouts = layouts or [delta_layout(l) for l in qm.layers]
    steps = stats["steps"].astype(np.int64)
    in_dense = 0
    if qm.input_dense is not None:
        in_dense = int(qm.input_dense.out_dim * qm.features)
    last = qm.layers[-1]   # a Bidirectional layer's backward direction: the head reads the merged output
    concat = last.direction == "backward" and qm.layers[-2].merge_mode == "concat"
    dims = [last.units * (2 if concat else 1)] + [d.out_dim for d in qm.head]
    head = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    if qm.per_step:
        head = head * steps
    dense = head + steps * (in_dense + sum(l.in_dim * D.macs_x + l.units * D.macs_h
                                           for l, D in zip(qm.layers, layouts)))
    eff = head + steps * in_dense + sum(stats["tx_x"][:, i] * D.macs_x + stats["tx_h"][:, i] * D.macs_h
                                        for i, D in enumerate(layouts))
    return {"dense": dense, "effective": eff}


def densities(qm, stats: dict) -> dict:
    """Mean fraction of real input / hidden elements transmitting, and of units evaluated
    (``cells``), per executed step (over all layers)."""
    steps = np.maximum(stats["steps"].sum(), 1)
    xin = sum(l.in_dim for l in qm.layers)
    hid = sum(hidden_columns(l) for l in qm.layers)
    return {"input": float(stats["tx_x"].sum() / (steps * xin)),
            "hidden": float(stats["tx_h"].sum() / (steps * hid)),
            "cells": float(stats["cells"].sum() / (steps * sum(l.units for l in qm.layers)))}
