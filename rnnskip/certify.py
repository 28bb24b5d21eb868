"""Certified budgets: pick the most aggressive setting whose loss is below a budget with a
stated confidence over the draw of the calibration data.

The procedure is Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then
Test: Calibrating Predictive Algorithms to Achieve Risk Control", 2021) with
fixed-sequence testing: candidates are ordered from conservative to aggressive *before*
the calibration data is looked at (by data the calibration rows are not part of); the
null hypothesis of candidate j is "its mean loss exceeds the budget"; walking the
sequence, j is rejected (certified) when a (1 - delta) upper confidence bound on its mean
loss is at most the budget, and the walk stops at the first candidate that is not. The
family-wise error is at most delta, so with probability at least 1 - delta over the
calibration draw every certified candidate - the chosen one, the last, included - has
a mean loss within the budget on data exchangeable with the calibration data.

The upper bound is the predictable plug-in empirical-Bernstein bound of Waudby-Smith and
Ramdas ("Estimating means of bounded random variables by betting", JRSS-B 2023,
Theorem 2 with the fixed-n choice of lambda): valid for any bounded i.i.d. (or
exchangeable, in the given order) losses, and variance-adaptive, which matters here:
the paired loss against the dense model (-1, 0, +1 per sequence) is 0 for almost every
sequence, and a variance-blind bound (Hoeffding) would need about 25 times more data.

Losses: ``paired`` - the per-sequence accuracy loss against the dense int8 model,
``dense_correct - method_correct`` in {-1, 0, +1}; ``disagreement`` - 1 where the
predicted class differs from the dense model's, else 0 (needs no labels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

#: the largest bet (lambda) of the bound; Waudby-Smith and Ramdas suggest 1/2 or 3/4
LAMBDA_MAX = 0.75
#: the range of each loss kind, mapped onto [0, 1] for the bound
RANGES = {"paired": (-1.0, 1.0), "disagreement": (0.0, 1.0)}


def eb_upper_bound(x: np.ndarray, delta: float) -> float:
    """A (1 - delta) upper confidence bound on the mean of ``x`` (values in [0, 1], i.i.d. or
    exchangeable, used in the given order): the predictable plug-in empirical-Bernstein bound
    (Waudby-Smith & Ramdas 2023, Thm 2), lambda_i = min(sqrt(2 log(1/delta) / (n var_{i-1})), 3/4).

    Under a true mean m, prod_i exp(lambda_i (m - x_i) - v_i psi(lambda_i)) is a nonnegative
    supermartingale (v_i = 4 (x_i - mu_{i-1})^2, psi(l) = (-log(1 - l) - l) / 4), so by Ville's
    inequality m <= (sum l_i x_i + sum v_i psi(l_i) + log(1/delta)) / sum l_i with
    probability >= 1 - delta. 1.0 for no data."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return 1.0
    if np.any(x < 0) or np.any(x > 1):
        raise ValueError("eb_upper_bound needs values in [0, 1]")
    log1d = math.log(1.0 / delta)
    csum = np.cumsum(x)
    t = np.arange(1, n + 1)
    mu = (0.5 + csum) / (t + 1)                       # mu_t, t = 1..n
    mu_prev = np.concatenate([[0.5], mu[:-1]])         # mu_{t-1}
    sq = np.cumsum((x - mu) ** 2)
    var = (0.25 + sq) / (t + 1)                        # sigma^2_t
    var_prev = np.concatenate([[0.25], var[:-1]])      # sigma^2_{t-1}
    lam = np.minimum(np.sqrt(2.0 * log1d / (n * var_prev)), LAMBDA_MAX)
    v = 4.0 * (x - mu_prev) ** 2
    psi = (-np.log1p(-lam) - lam) / 4.0
    ub = (np.sum(lam * x) + np.sum(v * psi) + log1d) / np.sum(lam)
    return float(min(ub, 1.0))


def upper_bound(loss: np.ndarray, delta: float, kind: str = "paired") -> float:
    """(1 - delta) upper confidence bound on the mean of a per-sequence ``loss`` of ``kind``.

    The bound is sequential, so the losses are taken in a seeded random order, not the file's:
    a file sorted by class or length would make the order informative (and the bound loose or
    wrong); sorted, then a fixed permutation: i.i.d. rows stay i.i.d., and the result depends
    only on the losses, not on the file's order."""
    lo, hi = RANGES[kind]
    x = (np.asarray(loss, np.float64) - lo) / (hi - lo)
    x = np.sort(x)[np.random.default_rng(len(x)).permutation(len(x))]   # the same order for any file order
    return lo + (hi - lo) * eb_upper_bound(x, delta)


def smallest_certifiable(n: int, delta: float, kind: str = "paired") -> float:
    """The smallest budget ``n`` calibration sequences can certify: the bound when every
    sequence has loss 0 (a setting that changes nothing)."""
    return upper_bound(np.zeros(int(n)), delta, kind)


def sequence_loss(kind: str, dense_pred: np.ndarray, pred: np.ndarray, y: Optional[np.ndarray]) -> np.ndarray:
    """Per-sequence loss of predictions ``pred`` against the dense model's ``dense_pred``."""
    if kind == "disagreement":
        return (np.asarray(pred) != np.asarray(dense_pred)).astype(np.float64)
    if y is None:
        raise ValueError("the paired loss needs labels")
    return (np.asarray(dense_pred) == y).astype(np.float64) - (np.asarray(pred) == y).astype(np.float64)


@dataclass
class Certificate:
    """What a certified pick promises (report.json ``certified``)."""
    kind: str                  # "paired" (accuracy loss vs dense int8) or "disagreement"
    budget: float              # as a fraction (0.005 = 0.5 points / 0.5 %)
    confidence: float          # 1 - delta
    calibration_n: int
    chosen: Optional[int]      # index into the candidate sequence; None: nothing certified
    upper_bound: Optional[float]     # of the chosen candidate (fraction)
    point_estimate: Optional[float]  # its mean loss on the calibration data (fraction)
    tested: int                # candidates walked (the last one failed unless all passed)
    smallest_certifiable: float      # with this many calibration sequences
    failed_upper_bound: Optional[float] = None   # of the first candidate that failed (None: none failed)

    def as_dict(self, data: str = "") -> dict:
        key = "max_loss_points" if self.kind == "paired" else "max_disagreement_percent"
        return {key: 100.0 * self.budget, "loss": self.kind, "confidence": self.confidence,
                "calibration_n": self.calibration_n, "certified": self.chosen is not None,
                "upper_bound": None if self.upper_bound is None else 100.0 * self.upper_bound,
                "point_estimate": None if self.point_estimate is None else 100.0 * self.point_estimate,
                "candidates_tested": self.tested, "smallest_certifiable": 100.0 * self.smallest_certifiable,
                "units": "points" if self.kind == "paired" else "percent of sequences",
                **({"data": data} if data else {})}

    def line(self, data: str) -> str:
        if self.chosen is None:
            unit = "points" if self.kind == "paired" else "%"
            if self.smallest_certifiable > self.budget or self.failed_upper_bound is None:
                return (f"nothing certified: {self.calibration_n} calibration sequences certify no budget below "
                        f"{100 * self.smallest_certifiable:.2f} {unit} at {100 * self.confidence:g}% confidence")
            return (f"nothing certified: the most conservative candidate's {100 * self.confidence:g}% upper bound "
                    f"is {100 * self.failed_upper_bound:.2f} {unit}, above the budget of {100 * self.budget:g} "
                    f"(n={self.calibration_n})")
        what = "loss" if self.kind == "paired" else "disagreement with the dense model"
        unit = "pt" if self.kind == "paired" else "%"
        return (f"{what} <= {100 * self.budget:g} {unit} with {100 * self.confidence:g}% confidence on data like "
                f"{data} (n={self.calibration_n}; upper bound {100 * self.upper_bound:.2f} {unit})")


def fixed_sequence(losses: Iterable[np.ndarray], budget: float, confidence: float,
                   kind: str = "paired") -> Certificate:
    """Learn-then-Test with fixed-sequence testing over per-sequence ``losses`` of candidates
    ordered from conservative to aggressive (an iterable: a candidate after the first failure
    is never computed): certify while the upper bound is <= ``budget``; the chosen candidate
    is the last certified one."""
    if not (0.0 < confidence < 1.0):
        raise ValueError("confidence must be in (0, 1)")
    delta = 1.0 - confidence
    n, chosen, ub_c, pe_c, tested, failed = 0, None, None, None, 0, None
    for j, loss in enumerate(losses):
        n = len(loss)
        tested += 1
        ub = upper_bound(loss, delta, kind)
        if ub > budget:
            failed = ub
            break
        chosen, ub_c, pe_c = j, ub, float(np.mean(loss))
    return Certificate(kind=kind, budget=float(budget), confidence=float(confidence), calibration_n=int(n),
                       chosen=chosen, upper_bound=ub_c, point_estimate=pe_c, tested=tested,
                       smallest_certifiable=smallest_certifiable(n, delta, kind), failed_upper_bound=failed)


def split_rows(n: int, seed: int = 0) -> tuple:
    """Disjoint (selection, calibration) row indices, half each, by a seeded permutation."""
    perm = np.random.default_rng(seed).permutation(int(n))
    h = int(n) // 2
    return np.sort(perm[:h]), np.sort(perm[h:])


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple:
    """Two-sample Kolmogorov-Smirnov test: (statistic, asymptotic p-value) for "a and b come
    from the same distribution" (Stephens' small-sample correction; ties make it conservative).
    Used to warn when evaluation data looks unlike the certification rows."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return 0.0, 1.0
    grid = np.concatenate([a, b])
    d = float(np.max(np.abs(np.searchsorted(a, grid, side="right") / n - np.searchsorted(b, grid, side="right") / m)))
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    k = np.arange(1, 101)
    p = float(2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k ** 2 * lam ** 2))) if lam > 0 else 1.0
    return d, min(max(p, 0.0), 1.0)


#: below this p-value the evaluation data counts as unlike the certification rows
SHIFT_P = 0.01


def data_check(ref_lengths, lengths) -> dict:
    """--data's sequence lengths against the certification rows' (two-sample KS)."""
    stat, p = ks_2samp(np.asarray(ref_lengths), np.asarray(lengths))
    return {"test": "two-sample Kolmogorov-Smirnov on sequence lengths", "statistic": stat, "p_value": p,
            "like_calibration": bool(p >= SHIFT_P), "median_here": float(np.median(lengths)),
            "median_calibration": float(np.median(ref_lengths))}


def shift_warning(check: dict, option: str, cert: dict) -> str:
    """The one-line warning for a failed :func:`data_check`."""
    return (f"warning: --data is unlike the rows {option} was certified on (sequence lengths: median "
            f"{check['median_here']:g} here, {check['median_calibration']:g} there; KS p = {check['p_value']:.2g}): "
            f"its budget is promised for data like {cert.get('data', 'those rows')}, not necessarily this data")


def budget_text(c: dict, fallback: str) -> str:
    """The terminal line of a report's ``certified`` dict; ``fallback``: what runs when nothing
    was certified."""
    if not c["certified"]:
        return (f"not certified ({c['calibration_n']} calibration sequences certify no budget below "
                f"{c['smallest_certifiable']:.2f} {c['units']}): {fallback}")
    what = (f"loss <= {c['max_loss_points']:g} pt" if c["loss"] == "paired"
            else f"disagreement <= {c['max_disagreement_percent']:g}%")
    return (f"{what} with {100 * c['confidence']:g}% confidence on data like {c.get('data', '?')} "
            f"(n={c['calibration_n']})")
