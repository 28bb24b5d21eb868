"""Oracle skipping: skip step t when the state change it would cause is below a
threshold, decided sequentially on the state actually reached under skipping.

The threshold comes from a sweep over quantiles of the dense change distribution
on validation data: the largest skip rate whose accuracy loss (dense float minus
oracle float, in points) stays within the budget. This is the paper's "ideal"
predictor, the upper bound a real predictor is judged against.

Every point also carries the standard error of its loss (paired over the same
sequences), so a budget can be met with a margin: ``margin_se = k`` accepts a
point only when ``loss + k * loss_se <= max_loss``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from ..stats import accuracy, paired_loss, within_budget
from . import features


@dataclass
class Point:
    """One operating point: a threshold and what it does on a data set."""
    threshold: float
    skip_rate: float
    accuracy: float
    loss: float            # dense accuracy minus this accuracy, in points
    loss_se: float = float("nan")   # standard error of ``loss``, in points (nan: not known)

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "skip_rate": self.skip_rate, "accuracy": self.accuracy,
                "loss_points": self.loss, "loss_se_points": None if np.isnan(self.loss_se) else self.loss_se}


def point(threshold: float, skip_rate: float, ref_correct: np.ndarray, correct: np.ndarray) -> "Point":
    """A :class:`Point` whose loss and standard error are paired against ``ref_correct``."""
    loss, se = paired_loss(ref_correct, correct)
    return Point(threshold=float(threshold), skip_rate=float(skip_rate), accuracy=accuracy(correct),
                 loss=loss, loss_se=se)


@dataclass
class Sweep:
    dense_accuracy: float
    points: List[Point] = field(default_factory=list)
    chosen: Optional[Point] = None

    def as_dict(self) -> dict:
        return {"dense_accuracy": self.dense_accuracy, "points": [p.as_dict() for p in self.points],
                "chosen": self.chosen.as_dict() if self.chosen else None}


def best_within(points: List[Point], max_loss: float, margin_se: float = 0.0) -> Optional[Point]:
    """The largest skip rate among points with ``loss + margin_se * loss_se <=
    max_loss`` (ties: smaller loss)."""
    ok = [p for p in points if within_budget(p.loss, p.loss_se, max_loss, margin_se)]
    return max(ok, key=lambda p: (p.skip_rate, -p.loss)) if ok else None


def search(evaluate: Callable[[float], Point], candidates: List[float], max_loss: float, refine: int = 4,
           dense_accuracy: float = float("nan"), progress: Optional[Callable[[Point], None]] = None,
           margin_se: float = 0.0) -> Sweep:
    """Evaluate ``candidates`` (thresholds, increasingly aggressive), then bisect
    ``refine`` times between the best point within budget and the next more
    aggressive candidate. ``evaluate(threshold) -> Point``."""
    sw = Sweep(dense_accuracy=dense_accuracy)
    cands = sorted(set(float(c) for c in candidates))
    for c in cands:
        sw.points.append(evaluate(c))
        if progress:
            progress(sw.points[-1])
    for _ in range(refine):
        best = best_within(sw.points, max_loss, margin_se)
        if best is None:
            break
        above = sorted(p.threshold for p in sw.points if p.threshold > best.threshold)
        if not above:
            break
        mid = 0.5 * (best.threshold + above[0])
        if any(abs(mid - p.threshold) < 1e-12 for p in sw.points):
            break
        sw.points.append(evaluate(mid))
        if progress:
            progress(sw.points[-1])
    sw.points.sort(key=lambda p: p.threshold)
    sw.chosen = best_within(sw.points, max_loss, margin_se)
    return sw


def oracle_point(fm, x, lengths, y, threshold: float, dense_correct: np.ndarray, measure: str = "l2",
                 include_cell: bool = False) -> Point:
    """The float oracle at ``threshold``; loss paired against ``dense_correct`` (``features.Run.correct``)."""
    r = features.run(fm, x, lengths, decide=features.oracle_rule(threshold), measure=measure, include_cell=include_cell)
    return point(threshold, r.skip_rate, dense_correct, r.correct(y))


# Quantiles of the dense per-step change tried as oracle thresholds; up to 0.99 so a
# model that allows nearly every step to be skipped is not capped by the grid.
ORACLE_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def sweep(fm, x, lengths, y, max_loss: float, measure: str = "l2", include_cell: bool = False,
          quantiles=None, dense: Optional[features.Run] = None, progress=None, margin_se: float = 0.0) -> Sweep:
    """Oracle threshold sweep on (x, lengths, y). Candidate thresholds: quantiles of
    the dense per-step change (the first is 0: no skipping)."""
    if dense is None or dense.change is None:
        dense = features.run(fm, x, lengths, collect=True, include_cell=include_cell)
    dense_acc = dense.accuracy(y)
    ch = dense.change if measure == "l2" else dense.cosine
    if quantiles is None:
        quantiles = ORACLE_QUANTILES
    cands = [0.0] + ([float(np.quantile(ch, q)) for q in quantiles] if len(ch) else [])
    dense_correct = dense.correct(y)
    sw = search(lambda th: oracle_point(fm, x, lengths, y, th, dense_correct, measure, include_cell),
                cands, max_loss, dense_accuracy=dense_acc, progress=progress, margin_se=margin_se)
    return sw
