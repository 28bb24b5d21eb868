"""Float64 delta GRU / delta LSTM on a ModelIR (Neil et al. 2017, section 3).

The paper's formulation, with explicit running sums::

    delta_x_t = x_t - x̂_{t-1} where |x_t - x̂_{t-1}| > theta_x, else 0;  x̂_t = x̂_{t-1} + delta_x_t
    delta_h_{t-1} likewise against ĥ with theta_h
    LSTM:  M_t = M_{t-1} + W_x delta_x_t + W_h delta_h_{t-1}        (M_0 = b)
    GRU:   M_x,t = M_x,t-1 + W_x delta_x_t   (M_x,0 = b_in)
           M_h,t = M_h,t-1 + W_h delta_h_t-1 (M_h,0 = b_rec)
           z = σ(M_x[z] + M_h[z]), r = σ(M_x[r] + M_h[r]),
           n = tanh(M_x[n] + r ⊙ M_h[n])      <- needs Keras reset_after=True
           h_t = z ⊙ h_{t-1} + (1 - z) ⊙ n

Thresholds here are in real units (an int8 threshold Θ times that tensor's
quantisation scale). With zero thresholds the result equals
:class:`rnnskip.reference.FloatModel` (to float rounding).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..reference import FloatModel
from .spec import check_supported


class FloatDeltaModel:
    """Batched float delta network. ``theta_x`` / ``theta_h``: one real threshold per layer."""

    def __init__(self, ir, theta_x: Sequence[float], theta_h: Sequence[float]):
        check_supported(ir.rnn_layers)
        self.fm = FloatModel(ir)
        self.ir = ir
        self.theta_x = [float(t) for t in theta_x]
        self.theta_h = [float(t) for t in theta_h]

    def _init(self, N):
        st = []
        for L in self.fm.layers:
            U = L.units
            D = L.W.shape[0]
            s = {"h": np.zeros((N, U)), "xl": np.zeros((N, D)), "hl": np.zeros((N, U)),
                 "tx": np.zeros(N), "th": np.zeros(N)}
            if L.kind == "lstm":
                s["c"] = np.zeros((N, U))
                s["M"] = np.repeat(L.b_in[None], N, 0)
            else:
                s["Mx"] = np.repeat(L.b_in[None], N, 0)
                s["Mh"] = np.repeat(L.b_rec[None], N, 0)
            st.append(s)
        return st

    def _layer(self, L, s, x, tx_, th_):
        U = L.units
        dx = x - s["xl"]
        mx = np.abs(dx) > tx_
        dx = np.where(mx, dx, 0.0)
        dh = s["h"] - s["hl"]
        mh = np.abs(dh) > th_
        dh = np.where(mh, dh, 0.0)
        n = {"xl": s["xl"] + dx, "hl": s["hl"] + dh, "tx": s["tx"] + mx.sum(1), "th": s["th"] + mh.sum(1)}
        if L.kind == "lstm":
            M = s["M"] + dx @ L.W + dh @ L.U
            i, f = L.ract(M[:, :U]), L.ract(M[:, U:2 * U])
            g, o = L.act(M[:, 2 * U:3 * U]), L.ract(M[:, 3 * U:])
            c = f * s["c"] + i * g
            n.update(M=M, c=c, h=o * L.act(c))
        else:
            Mx = s["Mx"] + dx @ L.W
            Mh = s["Mh"] + dh @ L.U
            z = L.ract(Mx[:, :U] + Mh[:, :U])
            r = L.ract(Mx[:, U:2 * U] + Mh[:, U:2 * U])
            hh = L.act(Mx[:, 2 * U:] + r * Mh[:, 2 * U:])
            n.update(Mx=Mx, Mh=Mh, h=z * s["h"] + (1 - z) * hh)
        return n

    def run(self, X, lengths: Optional[Sequence[int]] = None):
        """``[N, out]`` head output (after its activation) and stats (``tx_x``, ``tx_h`` ``[N, layers]``, ``steps``)."""
        X = np.asarray(X)
        N, T = X.shape[:2]
        V = self.fm.inputs(X)
        ok = self.fm.valid_steps(X)
        if lengths is not None:
            ok = ok & (np.arange(T)[None, :] < np.asarray(lengths).reshape(-1)[:, None])
        st = self._init(N)
        for t in range(T):
            x = V[:, t]
            new = []
            for L, s, a, b in zip(self.fm.layers, st, self.theta_x, self.theta_h):
                ns = self._layer(L, s, x, a, b)
                m = ok[:, t]
                ns = {k: np.where(m.reshape((-1,) + (1,) * (v.ndim - 1)), v, s[k]) for k, v in ns.items()}
                new.append(ns)
                x = ns["h"]
            st = new
        state = [(s["h"], s["c"]) if L.kind == "lstm" else (s["h"],) for L, s in zip(self.fm.layers, st)]
        stats = {"tx_x": np.stack([s["tx"] for s in st], 1), "tx_h": np.stack([s["th"] for s in st], 1),
                 "steps": ok.sum(1)}
        return self.fm.readout(state), stats
