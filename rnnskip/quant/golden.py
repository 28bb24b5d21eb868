"""The integer golden model: the specification of the generated C code.

Vectorised over a batch of sequences: state arrays are ``[N, units_p]``.
Every operation mirrors one C kernel call in rnnskip_model.c (same order, same
rounding, same saturation), so golden, host build and firmware agree bit for bit.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from . import fixedpoint as fp
from .act import LUTS as _LUTS, is_default_cell
from .model import QDense, QMat, QModel, QRNN


def _absmax(a: np.ndarray) -> int:
    return max(-int(a.min()), int(a.max())) if a.size else 0


def matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x [N, cols] @ w.T`` exactly (int64): the mat-vec kernels' sum.

    Integer matmul has no BLAS, so when ``max|w| * max|x| * cols`` is below 2^24 (2^53)
    the product runs in float32 (float64): every partial sum, in whatever order BLAS
    adds, is then an integer the float type holds exactly. Otherwise int64.
    """
    bound = _absmax(w) * _absmax(x) * w.shape[1]
    dt = np.float32 if bound < (1 << 24) else (np.float64 if bound < (1 << 53) else None)
    if dt is None:
        return x.astype(np.int64) @ w.astype(np.int64).T
    return (x.astype(dt) @ w.astype(dt).T).astype(np.int64)


def mat(m: QMat, v: np.ndarray) -> np.ndarray:
    """int32 accumulators ``bias + w @ v`` ``[N, rows]``."""
    return m.bias[None, :] + matvec(m.w, v)


def rq16(m: QMat, acc: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """sat16(requantize(acc)): accumulator -> Q3.12 (or int16 logits)."""
    return fp.sat16(fp.requantize(acc, m.mult[rows], m.ls))


def dense(q: QDense, x: np.ndarray, final: bool) -> np.ndarray:
    """rnnskip_fully_connected_s8: int8 ``[N, cols]`` -> int8 ``[N, rows]`` (int16 logits if final)."""
    m = q.mat
    acc = mat(m, x)
    if q.activation in _LUTS:  # tanh, sigmoid, hard_sigmoid(_k3), softsign: table -> Q0.15
        pre = rq16(m, acc)
        y = fp._lut_eval(pre, _LUTS[q.activation])
        return fp.sat8(fp.requantize(y, q.out_mult, q.out_ls))
    y = fp.requantize(acc, m.mult, m.ls)
    if final:
        return fp.sat16(y)
    y = fp.sat8(y)
    return np.maximum(y, 0) if q.activation == "relu" else y


def lstm_cell(l: QRNN, c_prev: np.ndarray, acc: np.ndarray) -> dict:
    """rnnskip_lstm_cell_s16 on the gate accumulators ``acc [N, 4 up]`` = [i | f | g | o].
    Returns the new state {"h8", "c"} (c int16 at 2^-cell_shift)."""
    U = l.up
    pre = rq16(l.mats["gates"], acc)
    i = fp.sigmoid_q15(pre[:, 0:U])
    f = fp.sigmoid_q15(pre[:, U:2 * U])
    gg = fp.tanh_q15(pre[:, 2 * U:3 * U])
    o = fp.sigmoid_q15(pre[:, 3 * U:4 * U])
    c = fp.sat16(fp.round_shift(f * c_prev, 15) + fp.round_shift(i * gg, 30 - l.cell_shift))
    t = fp.tanh_q15(fp.to_q12(c, l.cell_shift))
    h8 = fp.sat8(fp.requantize(fp.round_shift(o * t, 15), l.h_mult, l.h_ls))
    return {"h8": h8, "c": c}


def _gru_update(l: QRNN, h16_prev: np.ndarray, z: np.ndarray, pn: np.ndarray) -> dict:
    """rnnskip_gru_cell_s16: h = n + z (h - n), n = tanh(pn). Returns {"h8", "h16"}."""
    n = fp.tanh_q15(pn)
    h16 = fp.sat16(n + fp.round_shift(z * (h16_prev - n), 15))
    return {"h8": fp.sat8(fp.requantize(h16, l.h_mult, l.h_ls)), "h16": h16}


def gru_cell_after(l: QRNN, h16_prev: np.ndarray, acc_zr: np.ndarray, acc_cx: np.ndarray,
                   acc_ch: np.ndarray) -> dict:
    """reset_after=True GRU on its accumulators: z, r from ``acc_zr [N, 2 up]``, candidate
    tanh(cx + r * ch) from ``acc_cx``, ``acc_ch [N, up]`` (rnnskip_gru_candidate_s16)."""
    U = l.up
    pre = rq16(l.mats["zr"], acc_zr)
    z, r = fp.sigmoid_q15(pre[:, :U]), fp.sigmoid_q15(pre[:, U:])
    pn = fp.sat16(rq16(l.mats["cx"], acc_cx) + fp.round_shift(r * rq16(l.mats["ch"], acc_ch), 15))
    return _gru_update(l, h16_prev, z, pn)


def feature_inv_scale(qm) -> np.float32:
    """The float32 factor the device multiplies float features by (``RNNSKIP_FEATURE_INV_SCALE``)."""
    return np.float32(1.0 / qm.feature_scale)


class GoldenModel:
    """Integer reference of the firmware, one time step at a time.

    State per layer: ``h8`` (int8 hidden, the recurrent mat-vec's input) plus
    ``c`` (LSTM cell, int16) or ``h16`` (GRU hidden, Q0.15).
    """

    def __init__(self, qm: QModel):
        self.qm = qm

    # -- inputs --------------------------------------------------------------
    def quantize_features(self, x: np.ndarray) -> np.ndarray:
        """Float features ``[..., F]`` -> int8 ``[..., F_p]``: ``clip(rint(float32(x) * inv), -127, 127)``
        with one float32 multiply by :func:`feature_inv_scale`, ties to even, NaN -> 0; the generated
        ``rnnskip_quantize_features()`` does the same on the device."""
        qm = self.qm
        v = np.asarray(x, np.float32) * feature_inv_scale(qm)
        q = np.clip(np.rint(np.where(np.isnan(v), np.float32(0), v)), -127, 127).astype(np.int8)
        out = np.zeros(q.shape[:-1] + (qm.features_p,), dtype=np.int8)
        out[..., : qm.features] = q
        return out

    def valid_steps(self, x: np.ndarray) -> np.ndarray:
        """bool ``[N, T]``: steps that run (masking). Token models: id != 0 when mask_zero."""
        qm = self.qm
        if qm.token_input:
            return (x != 0) if qm.mask_zero else np.ones(x.shape, dtype=bool)
        if qm.mask_value is not None:
            return ~np.all(np.asarray(x) == qm.mask_value, axis=-1)
        return np.ones(x.shape[:2], dtype=bool)

    def step_input(self, xin: np.ndarray) -> np.ndarray:
        """Device input of one step (ids ``[N]`` or int8 features ``[N, F_p]``) -> int8 ``[N, in_p]``."""
        qm = self.qm
        if qm.token_input:
            return qm.embedding[xin].astype(np.int64)
        v = xin.astype(np.int64)
        if qm.input_dense is not None:
            v = dense(qm.input_dense, v, final=False)
        return v

    # -- recurrent step ------------------------------------------------------
    def initial_state(self, n: int) -> List[dict]:
        st = []
        for l in self.qm.layers:
            s = {"h8": np.zeros((n, l.up), np.int64)}
            s["c" if l.kind == "lstm" else "h16"] = np.zeros((n, l.up), np.int64)
            st.append(s)
        return st

    def layer_step(self, l: QRNN, s: dict, x: np.ndarray) -> dict:
        """One layer, one step. ``x`` int8 ``[N, in_p]``; returns the new state."""
        if not is_default_cell(l):  # other gate activations (issue 7)
            from .golden_act import layer_step_act
            return layer_step_act(l, s, x)
        xh = np.concatenate([x, s["h8"]], axis=1)
        if l.kind == "lstm":
            return lstm_cell(l, s["c"], mat(l.mats["gates"], xh))
        zr = l.mats["zr"]
        if l.reset_after:
            return gru_cell_after(l, s["h16"], mat(zr, xh), mat(l.mats["cx"], x), mat(l.mats["ch"], s["h8"]))
        U = l.up
        pre = rq16(zr, mat(zr, xh))
        z, r = fp.sigmoid_q15(pre[:, :U]), fp.sigmoid_q15(pre[:, U:])
        c = l.mats["c"]
        rh8 = fp.sat8(fp.round_shift(r * s["h8"], 15))
        return _gru_update(l, s["h16"], z, rq16(c, mat(c, np.concatenate([x, rh8], axis=1))))

    def step(self, state: List[dict], xin: np.ndarray, run: Optional[np.ndarray] = None) -> List[dict]:
        """One time step through every layer; rows where ``run`` is False keep their state."""
        x = self.step_input(xin)
        new = []
        for l, s in zip(self.qm.layers, state):
            ns = self.layer_step(l, s, x)
            if run is not None and not run.all():
                ns = {k: np.where(run[:, None], v, s[k]) for k, v in ns.items()}
            new.append(ns)
            x = ns["h8"]
        return new

    def output(self, state: List[dict]) -> np.ndarray:
        """int16 logits ``[N, output_dim]`` (int8 h of the last layer when there is no head)."""
        y = state[-1]["h8"]
        for i, d in enumerate(self.qm.head):
            y = dense(d, y, final=(i == len(self.qm.head) - 1))
        return y[:, : self.qm.output_dim]

    # -- whole sequences -----------------------------------------------------
    def device_inputs(self, x: np.ndarray) -> np.ndarray:
        """What the device receives per step: int32 ids ``[N,T]`` or int8 features ``[N,T,F_p]``."""
        return np.asarray(x, np.int32) if self.qm.token_input else self.quantize_features(x)

    def run(self, x: np.ndarray, lengths: np.ndarray):
        """Run sequences; returns (int16 logits ``[N, out]``, uint8 step flags ``[N, T]``).

        flags[n, t] = 1 where step t ran, 0 where it was masked, beyond the length or skipped by the predictor.
        """
        x = np.asarray(x)
        N, T = x.shape[:2]
        dev = self.device_inputs(x)
        valid = self.valid_steps(x) & (np.arange(T)[None, :] < np.asarray(lengths)[:, None])
        state = self.initial_state(N)
        pred = getattr(self.qm, "predictor", None)
        seq = [] if getattr(self.qm, "per_step", False) else None
        for t in range(T):
            if pred is not None and valid[:, t].any():  # skip predictor (issue 4), on the state reached
                valid[:, t] &= ~pred.skip(self.step_input(dev[:, t]), state)
            if valid[:, t].any():
                state = self.step(state, dev[:, t], valid[:, t])
            if seq is not None:  # per-step outputs (issue 7): the head on the state after step t
                seq.append(self.output(state))
        if seq is not None:
            out = np.stack(seq, axis=1) if seq else np.zeros((N, 0, self.qm.output_dim), np.int64)
            return out, valid.astype(np.uint8)
        return self.output(state), valid.astype(np.uint8)


def predict_classes(logits: np.ndarray, activation: str) -> np.ndarray:
    """Class ids from int16 logits: argmax, or logit > 0 for a 1-unit sigmoid."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=1)
