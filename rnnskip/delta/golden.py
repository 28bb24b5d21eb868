"""Integer delta network: the specification of the generated delta C code.

Same arithmetic as :class:`~rnnskip.quant.golden.GoldenModel` except where the
layer's int32 accumulators come from (Neil et al., "Delta Networks for
Optimized Recurrent Network Computation", ICML 2017):

* every element of a layer's ``xh = [x | h]`` (int8 input, then the layer's
  int8 hidden state) keeps its last transmitted int8 value ``last``;
* at a step, element k transmits iff ``|xh_k - last_k| > theta`` (theta_x for
  the input part, theta_h for the hidden part: whole int8 steps); it then sends
  ``delta_k = xh_k - last_k`` (int16, in [-255, 255]) and sets ``last_k = xh_k``;
* the running sums ``M`` (int32, set to the biases at sequence start) get
  ``M += W[:, k] * delta_k`` for the transmitting columns only;
* the cell uses ``M`` exactly where the dense model uses ``bias + W @ xh``.

By construction ``M == bias + W @ last`` at every step (exact integers), so
with theta = 0 (``last == xh``) the model is bit-exact with the dense golden
model. The delta form of a layer's matrices (one accumulator array ``M`` of
``4 * up`` rows, which rows the input and the hidden columns update):

* LSTM: ``M = gates`` (i, f, g, o); input and hidden columns both update all
  4up rows (``gates.w[:, :in_p]`` and ``gates.w[:, in_p:]``).
* GRU (reset_after=True only): ``M = [cx | z | r | ch]``; an input column
  updates rows ``[0, 3up)`` = (cx, z, r), a hidden column rows ``[up, 4up)`` =
  (z, r, ch). The candidate's recurrent sum ``ch`` stays separate, so the reset
  gate still multiplies it after requantisation (the paper's delta GRU).
  reset_after=False is refused (r would have to multiply h before the mat-vec).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..delta.spec import DeltaSpec, as_spec, check_supported
from .golden import GoldenModel, gru_cell_after, lstm_cell
from .model import QModel, QRNN


@dataclass
class DeltaLayout:
    """A layer's matrices in delta form (int8, row-major here; the C code stores them column-major)."""
    wx: np.ndarray      # [rows_x, in_p]  columns of the input part
    wh: np.ndarray      # [rows_h, up]    columns of the hidden part
    x_row0: int         # first row of M the input columns update
    h_row0: int         # first row of M the hidden columns update
    m0: np.ndarray      # [m_rows] int64: M at sequence start (the biases)
    macs_x: int         # real (unpadded) MACs of one transmitting input column
    macs_h: int         # ... of one transmitting hidden column

    @property
    def m_rows(self) -> int:
        return int(self.m0.shape[0])

    @property
    def rows_x(self) -> int:
        return int(self.wx.shape[0])

    @property
    def rows_h(self) -> int:
        return int(self.wh.shape[0])


def delta_layout(l: QRNN) -> DeltaLayout:
    check_supported([l])
    P, U = l.in_p, l.up
    G = l.gates
    if l.kind == "lstm":
        g = l.mats["gates"]
        return DeltaLayout(wx=g.w[:, :P], wh=g.w[:, P:], x_row0=0, h_row0=0, m0=g.bias.astype(np.int64),
                           macs_x=G * l.units, macs_h=G * l.units)
    zr, cx, ch = l.mats["zr"], l.mats["cx"], l.mats["ch"]
    wx = np.concatenate([cx.w, zr.w[:, :P]], axis=0)          # rows: cx, z, r
    wh = np.concatenate([zr.w[:, P:], ch.w], axis=0)          # rows: z, r, ch
    m0 = np.concatenate([cx.bias, zr.bias, ch.bias]).astype(np.int64)
    return DeltaLayout(wx=wx, wh=wh, x_row0=0, h_row0=U, m0=m0, macs_x=G * l.units, macs_h=G * l.units)


def theta_columns(l: QRNN, theta_x: int, theta_h: int) -> np.ndarray:
    """Per-column thresholds of a layer's xh buffer ``[in_p + up]``."""
    return np.concatenate([np.full(l.in_p, theta_x, np.int64), np.full(l.up, theta_h, np.int64)])


class DeltaGoldenModel(GoldenModel):
    """Integer delta network, one time step at a time, vectorised over sequences.

    Extra state per layer: ``last`` int8 ``[N, in_p + up]``, ``M`` int32
    ``[N, 4 up]``, and counters ``tx_x`` / ``tx_h`` ``[N, 1]`` (transmitted input /
    hidden columns since the start). Steps that do not run keep all of it.
    """

    def __init__(self, qm: QModel, spec=None):
        super().__init__(qm)
        spec = as_spec(spec if spec is not None else getattr(qm, "delta", None), len(qm.layers))
        check_supported(qm.layers)
        if spec.layers != len(qm.layers):
            from ..errors import RnnskipError
            raise RnnskipError(f"delta thresholds for {spec.layers} layer(s), model has {len(qm.layers)}")
        self.spec = spec
        self.layouts = [delta_layout(l) for l in qm.layers]
        self._theta = [theta_columns(l, a, b) for l, a, b in zip(qm.layers, spec.theta_x, spec.theta_h)]
        self._index = {id(l): i for i, l in enumerate(qm.layers)}
        ft = lambda w: np.ascontiguousarray(w.T, np.float32 if w.shape[1] <= 518 else np.float64)
        self._wf = [(ft(D.wx), ft(D.wh)) for D in self.layouts]

    def initial_state(self, n: int) -> List[dict]:
        st = super().initial_state(n)
        for l, s, D in zip(self.qm.layers, st, self.layouts):
            s["last"] = np.zeros((n, l.xh_len), np.int64)
            s["M"] = np.repeat(D.m0[None, :], n, axis=0)
            s["tx_x"] = np.zeros((n, 1), np.int64)
            s["tx_h"] = np.zeros((n, 1), np.int64)
        return st

    def delta_update(self, l: QRNN, s: dict, x: np.ndarray):
        """Gather the transmitting columns and update M. Returns (M, last, tx_x, tx_h)."""
        i = self._index[id(l)]
        D = self.layouts[i]
        v = np.concatenate([x, s["h8"]], axis=1)
        d = v - s["last"]
        tx = np.abs(d) > self._theta[i][None, :]
        dd = np.where(tx, d, 0)
        last = np.where(tx, v, s["last"])
        M = s["M"].copy()
        P = l.in_p
        # float BLAS is exact here: every product and partial sum is an integer of magnitude
        # <= 127 * 255 * columns, below 2^24 (float32) for <= 518 columns, else float64 (2^53)
        wx, wh = self._wf[i]
        M[:, D.x_row0:D.x_row0 + D.rows_x] += (dd[:, :P].astype(wx.dtype) @ wx).astype(np.int64)
        M[:, D.h_row0:D.h_row0 + D.rows_h] += (dd[:, P:].astype(wh.dtype) @ wh).astype(np.int64)
        return M, last, s["tx_x"] + tx[:, :P].sum(1, keepdims=True), s["tx_h"] + tx[:, P:].sum(1, keepdims=True)

    def layer_step(self, l: QRNN, s: dict, x: np.ndarray) -> dict:
        M, last, tx_x, tx_h = self.delta_update(l, s, x)
        U = l.up
        if l.kind == "lstm":
            new = lstm_cell(l, s["c"], M)
        else:   # M = [cx | z | r | ch]
            new = gru_cell_after(l, s["h16"], M[:, U:3 * U], M[:, 0:U], M[:, 3 * U:4 * U])
        new.update(last=last, M=M, tx_x=tx_x, tx_h=tx_h)
        return new

    # -- whole sequences with statistics -------------------------------------
    def run_stats(self, x: np.ndarray, lengths: np.ndarray, trace: bool = False):
        """Like :meth:`run`, plus statistics.

        Returns (logits, flags, stats) with stats: ``tx_x``/``tx_h`` int ``[N, layers]``
        (transmitted input / hidden columns over the sequence), ``steps`` ``[N]``,
        and with ``trace`` ``density_t`` float ``[N, T]`` (transmitted fraction of
        all real input + hidden elements at each step; NaN where the step did not run).
        """
        x = np.asarray(x)
        N, T = x.shape[:2]
        dev = self.device_inputs(x)
        valid = self.valid_steps(x) & (np.arange(T)[None, :] < np.asarray(lengths)[:, None])
        state = self.initial_state(N)
        dens = np.full((N, T), np.nan) if trace else None
        total = sum(l.in_dim + l.units for l in self.qm.layers)
        pred = getattr(self.qm, "predictor", None)
        for t in range(T):
            if pred is not None and valid[:, t].any():  # skip predictor (issue 4) first, as GoldenModel.run
                valid[:, t] &= ~pred.skip(self.step_input(dev[:, t]), state)
            if valid[:, t].any():
                before = sum(s["tx_x"][:, 0] + s["tx_h"][:, 0] for s in state) if trace else None
                idx = np.flatnonzero(valid[:, t])
                if len(idx) == N:
                    state = self.step(state, dev[:, t])
                else:  # only the sequences this step runs for (same result as a masked step, cheaper)
                    sub = self.step([{k: v[idx] for k, v in s.items()} for s in state], dev[idx, t])
                    for s, ns in zip(state, sub):
                        for k, v in ns.items():
                            s[k] = s[k].copy()
                            s[k][idx] = v
                if trace:
                    after = sum(s["tx_x"][:, 0] + s["tx_h"][:, 0] for s in state)
                    dens[valid[:, t], t] = ((after - before) / total)[valid[:, t]]
        stats = {"tx_x": np.stack([s["tx_x"][:, 0] for s in state], 1),
                 "tx_h": np.stack([s["tx_h"][:, 0] for s in state], 1),
                 "steps": valid.sum(1)}
        if trace:
            stats["density_t"] = dens
        return self.output(state), valid.astype(np.uint8), stats

    def run(self, x: np.ndarray, lengths: np.ndarray):
        out, flags, self.last_stats = self.run_stats(x, lengths)
        return out, flags


def golden_for(qm: QModel) -> GoldenModel:
    """The golden model the C code of ``qm`` follows: delta when ``qm.delta`` is set."""
    return DeltaGoldenModel(qm) if getattr(qm, "delta", None) is not None else GoldenModel(qm)


def effective_macs(qm: QModel, stats: dict, layouts: Optional[List[DeltaLayout]] = None) -> dict:
    """Per-sequence MACs ``[N]`` per inference: ``dense`` (every executed step runs every
    column) and ``effective`` (transmitting columns only); real (unpadded) shapes. The
    input Dense (not delta-coded, every executed step) and the head (once) are in both."""
    layouts = layouts or [delta_layout(l) for l in qm.layers]
    steps = stats["steps"].astype(np.int64)
    in_dense = 0
    if qm.input_dense is not None:
        d = qm.input_dense
        in_dense = int(d.out_dim * qm.features)
    dims = [qm.layers[-1].units] + [d.out_dim for d in qm.head]
    head = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    dense = head + steps * (in_dense + sum(l.in_dim * D.macs_x + l.units * D.macs_h
                                           for l, D in zip(qm.layers, layouts)))
    eff = head + steps * in_dense + sum(stats["tx_x"][:, i] * D.macs_x + stats["tx_h"][:, i] * D.macs_h
                                        for i, D in enumerate(layouts))
    return {"dense": dense, "effective": eff}


def densities(qm: QModel, stats: dict) -> dict:
    """Mean fraction of real input / hidden elements transmitting per executed step (over all layers)."""
    steps = np.maximum(stats["steps"].sum(), 1)
    xin = sum(l.in_dim for l in qm.layers)
    hid = sum(l.units for l in qm.layers)
    return {"input": float(stats["tx_x"].sum() / (steps * xin)),
            "hidden": float(stats["tx_h"].sum() / (steps * hid))}
