"""Small statistics shared by the budget searches (skip thresholds, delta thresholds)."""
from __future__ import annotations

import numpy as np


def paired_loss(ref_correct, correct) -> tuple:
    """Accuracy loss of ``correct`` against ``ref_correct`` (bool ``[N]``, the same
    sequences) and its standard error, both in points. The per-sequence
    difference is -1, 0 or 1; its sample standard deviation over sqrt(N) is the
    standard error (paired: only sequences whose outcome changed add to it).
    ``(nan, nan)`` for no sequences; the error is nan for one."""
    d = np.asarray(ref_correct, dtype=np.float64) - np.asarray(correct, dtype=np.float64)
    n = len(d)
    if n == 0:
        return float("nan"), float("nan")
    se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return 100.0 * float(d.mean()), 100.0 * se


def within_budget(loss: float, loss_se: float, max_loss: float, margin_se: float = 0.0) -> bool:
    """``loss + margin_se * loss_se <= max_loss`` (points); an unknown (nan) error counts as 0."""
    extra = 0.0 if margin_se == 0.0 or np.isnan(loss_se) else margin_se * loss_se
    return loss + extra <= max_loss + 1e-9
