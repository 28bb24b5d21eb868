"""Float runs of the frozen model with time-step skipping, and state-change statistics.

:func:`run` drives :class:`rnnskip.reference.FloatModel` one step at a time over a
batch of sequences. Before each valid step it computes the candidate state the
step would produce, measures the change from the state actually reached, asks a
``decide`` rule whether to skip, and keeps the old state where it does. With
``collect`` it records, per valid step, the predictor features ``[v_t, h_{t-1}]``
(every layer's h), the change and the decision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import RnnskipError

MEASURES = ("l2", "cosine")


@dataclass
class Run:
    """Result of :func:`run` over N sequences."""
    pred: np.ndarray                 # predicted class [N] (a model with an output per step: [N, T])
    ran: np.ndarray                  # bool [N, T]: step executed
    valid: np.ndarray                # bool [N, T]: step would run in the dense model (per step: the scored ones)
    out: Optional[np.ndarray] = None      # model output [N, out] ([N, T, out]; after the final activation)
    feats: Optional[np.ndarray] = None    # float32 [M, D] (collected valid steps)
    change: Optional[np.ndarray] = None   # float32 [M]
    cosine: Optional[np.ndarray] = None   # float32 [M]
    skipped: Optional[np.ndarray] = None  # bool [M]
    extra: dict = field(default_factory=dict)

    @property
    def skip_rate(self) -> float:
        v = int(self.valid.sum())
        return float(1.0 - self.ran.sum() / v) if v else 0.0

    def correct(self, y) -> np.ndarray:
        """rnnskip.outputs.outcomes: per step, over the steps that would run (the scored ones)."""
        from ..outputs import outcomes
        return outcomes(self.pred, y, self.valid)

    def accuracy(self, y) -> float:
        from ..stats import accuracy
        return accuracy(self.correct(y)) if len(self.pred) else float("nan")


def classes(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Classes from the float outputs ``[N(, T), K]``: argmax, or one output above ``threshold``
    (rnnskip.outputs.float_threshold: a sigmoid's 0.5, a logit's 0)."""
    return (probs[..., 0] > threshold).astype(np.int64) if probs.shape[-1] == 1 else np.argmax(probs, axis=-1)


def check_classifier(ir, *y) -> None:
    """One line unless ``ir`` gives class predictions (``y``: the training labels, once loaded)."""
    from ..outputs import check_class_outputs
    check_class_outputs(ir, "time-step skipping", *y)


def has_cell_state(ir) -> bool:
    """Does a layer's cell keep state besides h (an LSTM's c)? Then the oracle may measure its change too."""
    from ..cells import cell_of
    return any(len(cell_of(l.kind).float_state) > 1 for l in ir.rnn_layers)


def _hcat(state, include_cell: bool) -> np.ndarray:
    parts = [s[0] for s in state]
    if include_cell:
        parts += [p for s in state for p in s[1:]]
    return np.concatenate(parts, axis=-1)


def change_measures(old, new, include_cell: bool = False):
    """(L2 norm, cosine distance) of the state change, per row. Cosine distance of
    a zero vector is 0 when both are zero, else 1."""
    a, b = _hcat(old, include_cell), _hcat(new, include_cell)
    l2 = np.linalg.norm(b - a, axis=-1)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    den = na * nb
    cos = np.where(den > 0, 1.0 - np.sum(a * b, axis=-1) / np.where(den > 0, den, 1.0),
                   np.where((na == 0) & (nb == 0), 0.0, 1.0))
    return l2, cos


def run(fm, x: np.ndarray, lengths: np.ndarray, decide: Optional[Callable] = None, collect: bool = False,
        measure: str = "l2", include_cell: bool = False, keep_prob: float = 1.0, seed: int = 0,
        batch: int = 1024) -> Run:
    """Run ``fm`` over ``x`` with skipping.

    ``decide(t, feats, change, rows)`` -> bool [B] (True = skip) for one batch at
    step t: ``feats`` float [B, D] = [v_t, h_{t-1}], ``change`` the chosen
    measure of the step's state change, ``rows`` the sequence indices. Only
    valid steps can be skipped. ``keep_prob`` thins the collected steps at random.
    """
    if measure not in MEASURES:
        raise RnnskipError(f"unknown change measure '{measure}'; use {' or '.join(MEASURES)}")
    x = np.asarray(x)
    N, T = x.shape[:2]
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    per_step = bool(fm.ir.per_step)
    preds = np.zeros((N, T) if per_step else N, np.int64)
    outs = None
    ran = np.zeros((N, T), bool)
    valid_all = np.zeros((N, T), bool)
    rec = {"feats": [], "change": [], "cosine": [], "skipped": []}
    from ..outputs import float_threshold
    threshold = float_threshold(fm.ir)
    for b0 in range(0, N, batch):
        rows = np.arange(b0, min(N, b0 + batch))
        xb = x[rows]
        V, ok = fm.frames(xb, lengths[rows])   # with a Conv1D front end: its frames (T' <= T of them)
        valid_all[rows, : ok.shape[1]] = ok
        state = fm.initial_state(len(rows))
        hs = []   # pooling over time: the last layer's output after every step (held where it did not run)
        seq = []  # per-step outputs: the head after every step (a skipped or masked step's state is held)
        for t in range(ok.shape[1]):
            m = ok[:, t]
            if not m.any():
                hs.append(fm.last_h(state))
                if per_step:
                    seq.append(fm.readout(state))
                continue
            cand = fm.step(state, V[:, t])
            l2, cos = change_measures(state, cand, include_cell)
            need_feats = collect or decide is not None
            feats = np.concatenate([V[:, t]] + [s[0] for s in state], axis=1) if need_feats else None
            skip = np.zeros(len(rows), bool)
            if decide is not None:
                skip = np.asarray(decide(t, feats, l2 if measure == "l2" else cos, rows), bool) & m
            r = m & ~skip
            ran[rows, t] = r
            state = [tuple(np.where(r[:, None], a, b) for a, b in zip(sn, so)) for sn, so in zip(cand, state)]
            hs.append(fm.last_h(state))
            if per_step:
                seq.append(fm.readout(state))
            if collect:
                keep = m if keep_prob >= 1.0 else (m & (rng.random(len(rows)) < keep_prob))
                rec["feats"].append(feats[keep].astype(np.float32))
                rec["change"].append(l2[keep].astype(np.float32))
                rec["cosine"].append(cos[keep].astype(np.float32))
                rec["skipped"].append(skip[keep])
        if fm.ir.pool:   # a skipped step's output is held: it is pooled as Keras pools a masked one's
            y = fm.pooled_readout(hs, ok, lengths[rows])
        elif per_step:
            y = np.stack(seq, 1) if seq else np.zeros((len(rows), 0, fm.ir.output_dim))
            y = np.concatenate([y, np.zeros((len(rows), T - y.shape[1], y.shape[2]))], 1)
        else:
            y = fm.readout(state)
        if outs is None:
            outs = np.zeros((N,) + y.shape[1:])
        outs[rows] = y
        preds[rows] = classes(y, threshold)
    out = Run(pred=preds, ran=ran, valid=valid_all, out=outs)
    if collect:
        D = fm_dim(fm)
        out.feats = np.concatenate(rec["feats"]) if rec["feats"] else np.zeros((0, D), np.float32)
        out.change = np.concatenate(rec["change"]) if rec["change"] else np.zeros(0, np.float32)
        out.cosine = np.concatenate(rec["cosine"]) if rec["cosine"] else np.zeros(0, np.float32)
        out.skipped = np.concatenate(rec["skipped"]) if rec["skipped"] else np.zeros(0, bool)
    return out


def fm_dim(fm) -> int:
    """Width of the predictor features [v_t, h of every layer]."""
    return int(layout(fm.ir)[0] + sum(layout(fm.ir)[1]))


def layout(ir):
    """(in_dim, [units per layer]) of the predictor features."""
    return int(ir.input_dim), [int(l.units) for l in ir.rnn_layers]


# ---- decision rules ------------------------------------------------------------

def oracle_rule(threshold: float):
    """The ideal predictor: skip when the step's state change is below ``threshold``."""
    return lambda t, feats, change, rows: change < threshold


def predictor_rule(p, threshold: Optional[float] = None):
    return lambda t, feats, change, rows: p.skip(feats, threshold)


def mask_rule(skip_mask: np.ndarray):
    """Skip where ``skip_mask [N, T]`` is True (baselines decided from the input alone)."""
    return lambda t, feats, change, rows: skip_mask[rows, t]


# ---- statistics ----------------------------------------------------------------

def change_stats(r: Run) -> dict:
    """Quantiles of the per-step change (dense run with collect=True)."""
    qs = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    d = {"steps": int(len(r.change))}
    for name, v in (("l2", r.change), ("cosine", r.cosine)):
        if len(v):
            d[name] = {"mean": float(v.mean()), **{f"q{int(q * 100)}": float(np.quantile(v, q)) for q in qs}}
    return d
