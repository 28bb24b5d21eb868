"""Small statistics shared by the budget searches (skip thresholds, delta thresholds)."""
from __future__ import annotations

import numpy as np


def per_sequence(v) -> np.ndarray:
    """One value per sequence from per-sequence outcomes or losses ``[N]`` (returned as they are) or per-step
    ones ``[N, T]`` with NaN at the steps that are not scored: each sequence's mean over its scored steps.
    A sequence without a scored step has no value and is left out (every array of one data set leaves out
    the same rows)."""
    v = np.asarray(v, np.float64)
    if v.ndim == 1:
        return v
    n = np.sum(~np.isnan(v), axis=1)
    return np.nansum(v, axis=1)[n > 0] / n[n > 0]


def accuracy(correct) -> float:
    """Mean of :func:`per_sequence` outcomes: per step, each sequence's share of right steps, averaged over
    the sequences (so a long sequence counts as much as a short one); nan for no sequence."""
    c = per_sequence(correct)
    return float(np.mean(c)) if len(c) else float("nan")


def paired_loss(ref_correct, correct) -> tuple:
    """Accuracy loss of ``correct`` against ``ref_correct`` (bool ``[N]``, the same
    sequences) and its standard error, both in points. The per-sequence
    difference is -1, 0 or 1 (per step, [N, T]: the mean over its scored steps, :func:`per_sequence`); its
    sample standard deviation over sqrt(N) is the standard error (paired: only sequences whose outcome
    changed add to it).
    ``(nan, nan)`` for no sequences; the error is nan for one."""
    d = per_sequence(np.asarray(ref_correct, dtype=np.float64) - np.asarray(correct, dtype=np.float64))
    n = len(d)
    if n == 0:
        return float("nan"), float("nan")
    se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return 100.0 * float(d.mean()), 100.0 * se


def within_budget(loss: float, loss_se: float, max_loss: float, margin_se: float = 0.0) -> bool:
    """``loss + margin_se * loss_se <= max_loss`` (points); an unknown (nan) error counts as 0."""
    extra = 0.0 if margin_se == 0.0 or np.isnan(loss_se) else margin_se * loss_se
    return loss + extra <= max_loss + 1e-9
