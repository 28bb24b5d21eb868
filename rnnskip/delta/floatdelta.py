"""Float64 delta network on a ModelIR (Neil et al. 2017, section 3).

The paper's formulation::

    delta_x_t = x_t - x̂_{t-1} where |x_t - x̂_{t-1}| > theta_x, else 0;  x̂_t = x̂_{t-1} + delta_x_t
    delta_h_{t-1} likewise against ĥ with theta_h
    M_t = b + W_x x̂_t + W_h ĥ_{t-1}        (the running sums: M_t = M_{t-1} + W_x delta_x_t + W_h delta_h_{t-1})

and the cell on ``M`` with the true state (``rnnskip/cells/``: a GRU's candidate
needs ``reset_after=True``, so its recurrent sum stays separate). ``M`` is computed as
the cell's pre-activations of ``(x̂, ĥ)``, which equals the running sum up to float
rounding.

Cell sparsity (``theta_m``, real pre-activation units: an integer cell threshold times
2^-12 for Q3.12 pre-activations): a unit none of whose pre-activations moved by
``theta_m`` or more since its last evaluation keeps its state; every unit is evaluated
at the first step. None: every unit, every step.

Thresholds here are in real units (an int8 threshold times that tensor's
quantisation scale). With zero thresholds the result equals
:class:`rnnskip.reference.FloatModel` (to float rounding).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..cells.base import NUMPY_OPS
from ..reference import FloatModel
from .spec import check_supported


class FloatDeltaModel:
    """Batched float delta network. ``theta_x`` / ``theta_h``: one real threshold per layer."""

    def __init__(self, ir, theta_x: Sequence[float], theta_h: Sequence[float],
                 theta_m: Optional[Sequence[Optional[float]]] = None):
        check_supported(ir.rnn_layers)
        self.fm = FloatModel(ir)
        self.fm._no_bidi()   # the float delta model runs step by step
        self.ir = ir
        self.theta_x = [float(t) for t in theta_x]
        self.theta_h = [float(t) for t in theta_h]
        self.theta_m = [None if t is None else float(t) for t in (theta_m or [None] * len(self.theta_x))]

    def _layer(self, L, s, x, tx_, th_, tm_):
        x = L.input(x)   # deltas of what the cell reads: a layer-normalised input after its normalisation
        dx = x - s["xl"]
        mx = np.abs(dx) > tx_
        dh = s["state"][0] - s["hl"]
        mh = np.abs(dh) > th_
        xl = np.where(mx, x, s["xl"])
        hl = np.where(mh, s["state"][0], s["hl"])
        M = L.cell.float_pre(NUMPY_OPS, L.w, xl, hl)     # L: reference._RNN, its cell class
        state = L.cell.float_cell(L.acts, s["state"], M)
        Ml, cells = s["Ml"], s["cells"] + L.units
        if tm_ is not None:
            moved = (np.abs(M - Ml) >= tm_).reshape(len(M), -1, L.units).any(axis=1)
            state = tuple(np.where(moved, v, old) for v, old in zip(state, s["state"]))
            Ml = np.where(np.tile(moved, (1, M.shape[1] // L.units)), M, Ml)
            cells = s["cells"] + moved.sum(1)
        return {"state": state, "xl": xl, "hl": hl, "Ml": Ml, "cells": cells,
                "tx": s["tx"] + mx.sum(1), "th": s["th"] + mh.sum(1)}

    def run(self, X, lengths: Optional[Sequence[int]] = None):
        """``[N, out]`` head output (after its activation) and stats (``tx_x``, ``tx_h`` ``[N, layers]``, ``steps``)."""
        X = np.asarray(X)
        N = X.shape[0]
        V, ok = self.fm.frames(X, lengths)   # with a Conv1D front end: its frames
        T = V.shape[1]
        # the last transmitted input starts at what the device's int8 zero stands for: the input centre where the
        # first recurrent layer reads raw features the device quantises centred (FeatureInput.center), else 0
        inp = self.ir.input
        x0 = (np.asarray(inp.center, np.float32).astype(np.float64)
              if not self.ir.is_token_model and inp.center is not None and inp.raw_into_recurrent else 0.0)
        init = self.fm.initial_state(N)
        st = [{"state": init[i], "xl": np.zeros((N, L.w["kernel"].shape[0])) + (x0 if i == 0 else 0.0),
               "hl": np.zeros((N, L.units)),
               "Ml": np.full_like(L.cell.float_pre(NUMPY_OPS, L.w, np.zeros((N, L.w["kernel"].shape[0])),
                                                   np.zeros((N, L.units))), np.inf),   # inf: evaluate at first
               "tx": np.zeros(N), "th": np.zeros(N), "cells": np.zeros(N)} for i, L in enumerate(self.fm.layers)]
        hs = []
        for t in range(T):
            x = V[:, t]
            m = ok[:, t]
            new = []
            for L, s, a, b, c in zip(self.fm.layers, st, self.theta_x, self.theta_h, self.theta_m):
                ns = self._layer(L, s, x, a, b, c)
                keep = lambda v, old: np.where(m.reshape((-1,) + (1,) * (v.ndim - 1)), v, old)
                ns = {k: (tuple(keep(a_, b_) for a_, b_ in zip(v, s[k])) if k == "state" else keep(v, s[k]))
                      for k, v in ns.items()}
                new.append(ns)
                x = ns["state"][0]
            st = new
            hs.append(st[-1]["state"][0])
        stats = {"tx_x": np.stack([s["tx"] for s in st], 1), "tx_h": np.stack([s["th"] for s in st], 1),
                 "cells": np.stack([s["cells"] for s in st], 1), "steps": ok.sum(1)}
        if self.ir.pool:   # pooling over time: the last layer's outputs after every step (held where none ran)
            return self.fm.pooled_readout(hs, ok, lengths), stats
        return self.fm.readout([s["state"] for s in st]), stats
