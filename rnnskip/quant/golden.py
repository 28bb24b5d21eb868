"""The integer golden model: the specification of the generated C code.

Vectorised over a batch of sequences: state arrays are ``[N, units_p]``.
Every operation mirrors one C kernel call in rnnskip_model.c (same order, same
rounding, same saturation), so golden, host build and firmware agree bit for bit.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from . import fixedpoint as fp
from .model import QDense, QModel, QRNN


def matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """rnnskip_mat_vec_acc_s8 without the accumulate: ``x [N, cols] @ w.T`` exactly (int64)."""
    return x.astype(np.int64) @ w.astype(np.int64).T


def dense(q: QDense, x: np.ndarray, final: bool) -> np.ndarray:
    """rnnskip_fully_connected_s8: int8 ``[N, cols]`` -> int8 ``[N, rows]`` (int16 logits if final)."""
    acc = q.bias[None, :] + matvec(q.w, x)
    if q.activation in ("tanh", "sigmoid"):
        pre = fp.sat16(fp.requantize(acc, q.mult, q.shift))
        y = fp.tanh_q15(pre) if q.activation == "tanh" else fp.sigmoid_q15(pre)
        return fp.sat8(fp.requantize(y, q.out_mult, q.out_shift))
    y = fp.requantize(acc, q.mult, q.shift)
    if final:
        return fp.sat16(y)
    y = fp.sat8(y)
    return np.maximum(y, 0) if q.activation == "relu" else y


class GoldenModel:
    """Integer reference of the firmware, one time step at a time.

    State per layer: ``h8`` (int8 hidden, the recurrent mat-vec's input) plus
    ``c`` (LSTM cell, int16) or ``h16`` (GRU hidden, Q0.15).
    """

    def __init__(self, qm: QModel):
        self.qm = qm

    # -- inputs --------------------------------------------------------------
    def quantize_features(self, x: np.ndarray) -> np.ndarray:
        """Float features ``[..., F]`` -> int8 ``[..., F_p]`` (done on the host, then sent to the device)."""
        qm = self.qm
        q = np.clip(np.round(np.asarray(x, np.float64) / qm.feature_scale), -127, 127).astype(np.int8)
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

    @staticmethod
    def gate_preact(l: QRNN, ax: np.ndarray, ah: np.ndarray, rows: slice) -> np.ndarray:
        """rnnskip_gate_preact_s16: sat16(rq(ax) + rq(ah)) in Q3.12."""
        return fp.sat16(fp.requantize(ax, l.mx[rows], l.shx[rows]) + fp.requantize(ah, l.mh[rows], l.shh[rows]))

    def layer_step(self, l: QRNN, s: dict, x: np.ndarray) -> dict:
        U = l.up
        ax = l.bx[None, :] + matvec(l.wx, x)
        if l.kind == "lstm":
            ah = l.bh[None, :] + matvec(l.wh, s["h8"])
            pre = self.gate_preact(l, ax, ah, slice(None))
            i = fp.sigmoid_q15(pre[:, 0:U])
            f = fp.sigmoid_q15(pre[:, U:2 * U])
            g = fp.tanh_q15(pre[:, 2 * U:3 * U])
            o = fp.sigmoid_q15(pre[:, 3 * U:4 * U])
            c = fp.sat16(fp.round_shift(f * s["c"], 15) + fp.round_shift(i * g, 30 - l.cell_shift))
            t = fp.tanh_q15(fp.to_q12(c, l.cell_shift))
            h8 = fp.sat8(fp.requantize(o * t, l.h_mult, l.h_shift))
            return {"h8": h8, "c": c}
        # GRU
        zr = slice(0, 2 * U)
        hr = slice(2 * U, 3 * U)
        if l.reset_after:
            ah = l.bh[None, :] + matvec(l.wh, s["h8"])
            pre = self.gate_preact(l, ax[:, zr], ah[:, zr], zr)
            z, r = fp.sigmoid_q15(pre[:, :U]), fp.sigmoid_q15(pre[:, U:])
            qxh = fp.sat16(fp.requantize(ax[:, hr], l.mx[hr], l.shx[hr]))
            qhh = fp.sat16(fp.requantize(ah[:, hr], l.mh[hr], l.shh[hr]))
            pn = fp.sat16(qxh + fp.round_shift(r * qhh, 15))
        else:
            ah_zr = matvec(l.wh[zr], s["h8"])
            pre = self.gate_preact(l, ax[:, zr], ah_zr, zr)
            z, r = fp.sigmoid_q15(pre[:, :U]), fp.sigmoid_q15(pre[:, U:])
            rh8 = fp.sat8(fp.round_shift(r * s["h8"], 15))
            ah_h = matvec(l.wh[hr], rh8)
            pn = self.gate_preact(l, ax[:, hr], ah_h, hr)
        n = fp.tanh_q15(pn)
        h16 = fp.sat16(n + fp.round_shift(z * (s["h16"] - n), 15))
        h8 = fp.sat8(fp.requantize(h16, l.h_mult, l.h_shift))
        return {"h8": h8, "h16": h16}

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

        flags[n, t] = 1 where step t ran, 0 where it was masked or beyond the length.
        """
        x = np.asarray(x)
        N, T = x.shape[:2]
        dev = self.device_inputs(x)
        valid = self.valid_steps(x) & (np.arange(T)[None, :] < np.asarray(lengths)[:, None])
        state = self.initial_state(N)
        for t in range(T):
            if valid[:, t].any():
                state = self.step(state, dev[:, t], valid[:, t])
        return self.output(state), valid.astype(np.uint8)


def predict_classes(logits: np.ndarray, activation: str) -> np.ndarray:
    """Class ids from int16 logits: argmax, or logit > 0 for a 1-unit sigmoid."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=1)
