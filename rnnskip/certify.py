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

The upper bounds are exact binomial (Clopper-Pearson) bounds, which do not depend on the
order of the rows and are tight for the rare events these losses are made of:

* ``disagreement`` (0/1 per sequence): the one-sided Clopper-Pearson upper bound on a
  Bernoulli mean at level delta;
* ``paired`` (-1/0/+1): the mean is p_wrong - p_right (the rates of sequences the setting
  turns wrong and turns right); its bound is the Clopper-Pearson upper bound on p_wrong
  minus the lower bound on p_right, each at delta/2 (a union bound: both hold together with
  probability >= 1 - delta).

Per step (a model with an output per time step), a sequence's loss is the share of its scored
steps: ``[N, T]`` losses with NaN at the steps not scored. The paired mean is then
m_wrong - m_right, the mean shares of steps a setting turns wrong and turns right, each a
mean of independent values in [0, 1]; their bounds are the Chernoff-Hoeffding (relative
entropy) bounds, P(mean <= observed) <= exp(-n KL(observed || m)) for m above it (Hoeffding
1963, Theorem 1), which are valid for any values in [0, 1] and equal Clopper-Pearson's for
no events (1 - delta^(1/n)), so a per-step model certifies budgets as small as a per-sequence one.

Losses: ``paired`` - the per-sequence accuracy loss against the dense int8 model,
``dense_correct - method_correct`` in {-1, 0, +1}; ``disagreement`` - 1 where the
predicted class differs from the dense model's, else 0 (needs no labels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from .stats import per_sequence

#: the range of each loss kind
RANGES = {"paired": (-1.0, 1.0), "disagreement": (0.0, 1.0)}


def _log_choose(n: int, k: int) -> np.ndarray:
    """log C(n, j) for j = 0..k (cumulative sums of log((n - i) / (i + 1)))."""
    i = np.arange(k, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(np.log(n - i) - np.log(i + 1.0))])


def _binom_cdf(log_choose: np.ndarray, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k) for k = len(log_choose) - 1, summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    j = np.arange(len(log_choose), dtype=np.float64)
    logpmf = log_choose + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(np.max(logpmf))
    return float(min(1.0, math.exp(top) * np.sum(np.exp(logpmf - top))))


def cp_upper(k: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson upper bound on a Bernoulli mean from k successes in n:
    the p with P(Bin(n, p) <= k) = delta, by bisection (1 for k = n or no data)."""
    if n <= 0 or k >= n:
        return 1.0
    lc = _log_choose(n, k)
    lo, hi = k / n, 1.0
    for _ in range(60):            # P(Bin(n, p) <= k) falls with p
        mid = 0.5 * (lo + hi)
        if _binom_cdf(lc, n, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def cp_lower(k: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson lower bound: the p with P(Bin(n, p) >= k) = delta (0 for k = 0)."""
    if n <= 0 or k <= 0:
        return 0.0
    return 1.0 - cp_upper(n - k, n, delta)


def _kl(p: float, q: float) -> float:
    """Relative entropy of Bernoulli(p) from Bernoulli(q)."""
    def term(a, b):
        return 0.0 if a <= 0.0 else (math.inf if b <= 0.0 else a * math.log(a / b))
    return term(p, q) + term(1.0 - p, 1.0 - q)


def kl_upper(mean: float, n: int, delta: float) -> float:
    """(1 - delta) upper bound on the mean of n independent values in [0, 1] observed at ``mean``: the
    largest m >= mean with n KL(mean || m) <= log(1 / delta), by bisection (1 for no data)."""
    if n <= 0 or mean >= 1.0:
        return 1.0
    lo, hi, lim = mean, 1.0, math.log(1.0 / delta) / n
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _kl(mean, mid) <= lim:
            lo = mid
        else:
            hi = mid
    return hi


def kl_lower(mean: float, n: int, delta: float) -> float:
    """(1 - delta) lower bound on that mean (0 for no data)."""
    return 1.0 - kl_upper(1.0 - mean, n, delta) if n > 0 else 0.0


def _shares(loss: np.ndarray, sign: float) -> np.ndarray:
    """Per sequence, the share of its scored steps whose loss is ``sign`` (NaN: not scored)."""
    n = np.sum(~np.isnan(loss), axis=1)
    return np.sum(loss == sign, axis=1)[n > 0] / n[n > 0]


def upper_bound(loss: np.ndarray, delta: float, kind: str = "paired") -> float:
    """(1 - delta) upper confidence bound on the mean of a per-sequence ``loss`` of ``kind``
    (values in {0, 1} for disagreement, {-1, 0, 1} for paired); 1 for no data. Per step, ``[N, T]``
    (NaN: not scored): the bound on the mean over sequences of each one's share of steps."""
    loss = np.asarray(loss, np.float64)
    if loss.ndim == 2:
        allowed = (0.0, 1.0) if kind == "disagreement" else (-1.0, 0.0, 1.0)
        if np.any(~np.isnan(loss) & ~np.isin(loss, allowed)):
            raise ValueError(f"a {kind} loss per step is one of {allowed} or NaN")
        wrong = _shares(loss, 1.0)
        if len(wrong) == 0:
            return 1.0
        if kind == "disagreement":
            return kl_upper(float(wrong.mean()), len(wrong), delta)
        right = _shares(loss, -1.0)
        return kl_upper(float(wrong.mean()), len(wrong), delta / 2) - kl_lower(float(right.mean()), len(right),
                                                                               delta / 2)
    n = len(loss)
    if n == 0:
        return 1.0
    if kind == "disagreement":
        if np.any((loss != 0) & (loss != 1)):
            raise ValueError("a disagreement loss is 0 or 1 per sequence")
        return cp_upper(int(loss.sum()), n, delta)
    if np.any((loss != 0) & (loss != 1) & (loss != -1)):
        raise ValueError("a paired loss is -1, 0 or 1 per sequence")
    wrong, right = int(np.sum(loss > 0)), int(np.sum(loss < 0))
    return cp_upper(wrong, n, delta / 2) - cp_lower(right, n, delta / 2)


def smallest_certifiable(n: int, delta: float, kind: str = "paired") -> float:
    """The bound when every one of ``n`` calibration sequences has loss 0 (a setting that changes nothing). No
    disagreement bound is lower; a paired bound is lower for a setting that turns sequences the dense model gets
    wrong right (the lower bound on their share is subtracted) and few the other way."""
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
    per_step: bool = False     # losses per step: each sequence's share of its scored steps
    tolerance: Optional[float] = None   # disagreement: outputs further than this from the dense model's

    @property
    def disagreeing(self) -> str:
        """What a disagreeing sequence is, for the report's lines."""
        if self.tolerance is None:
            return "disagreement with the dense model"
        return f"outputs off the dense model's by more than {self.tolerance:g}"

    def as_dict(self, data: str = "") -> dict:
        key = "max_loss_points" if self.kind == "paired" else "max_disagreement_percent"
        return {key: 100.0 * self.budget, "loss": self.kind, "confidence": self.confidence,
                "calibration_n": self.calibration_n, "certified": self.chosen is not None,
                "upper_bound": None if self.upper_bound is None else 100.0 * self.upper_bound,
                "point_estimate": None if self.point_estimate is None else 100.0 * self.point_estimate,
                "candidates_tested": self.tested, "smallest_certifiable": 100.0 * self.smallest_certifiable,
                "failed_upper_bound": None if self.failed_upper_bound is None else 100.0 * self.failed_upper_bound,
                "units": (("points (each sequence's share of right steps, averaged over the sequences)"
                           if self.kind == "paired" else
                           "percent of scored steps (each sequence's share, averaged over the sequences)")
                          if self.per_step else ("points" if self.kind == "paired" else "percent of sequences"))
                + ("" if self.tolerance is None else
                   f" whose outputs move more than {self.tolerance:g} from the dense int8 model's"),
                **({"per_step": True} if self.per_step else {}),
                **({"tolerance": self.tolerance} if self.tolerance is not None else {}),
                **({"data": data} if data else {})}

    def line(self, data: str) -> str:
        if self.chosen is None and self.tested == 0:
            return ("nothing to certify: no setting beyond the dense model fits the budget on the selection rows")
        if self.chosen is None:
            return "nothing certified: " + _not_certified(self.as_dict(), line=True)
        what = ("loss" if self.kind == "paired" else self.disagreeing) + (
            " per step (each sequence's share of steps)" if self.per_step else "")
        unit = "pt" if self.kind == "paired" else "%"
        return (f"{what} <= {100 * self.budget:g} {unit} with {100 * self.confidence:g}% confidence on data like "
                f"{data} (n={self.calibration_n}; upper bound {up2(100 * self.upper_bound)} {unit})")


def fixed_sequence(losses: Iterable[np.ndarray], budget: float, confidence: float,
                   kind: str = "paired", n: Optional[int] = None, per_step: bool = False,
                   tolerance: Optional[float] = None) -> Certificate:
    """Learn-then-Test with fixed-sequence testing over per-sequence ``losses`` of candidates
    ordered from conservative to aggressive (an iterable: a candidate after the first failure
    is never computed): certify while the upper bound is <= ``budget``; the chosen candidate
    is the last certified one. ``n``: the number of calibration rows (for an empty sequence; per step, those
    with a scored step); ``per_step``: the losses are ``[N, T]``, each sequence's share of steps; ``tolerance``:
    a disagreement is outputs further than it from the dense model's (recorded; the losses already say so)."""
    if not (0.0 < confidence < 1.0):
        raise ValueError("confidence must be in (0, 1)")
    delta = 1.0 - confidence
    n = 0 if n is None else int(n)   # the calibration rows (given: right even for no candidates)
    chosen, ub_c, pe_c, tested, failed = None, None, None, 0, None
    for j, loss in enumerate(losses):
        if np.ndim(loss) != (2 if per_step else 1):
            raise ValueError(f"fixed_sequence: {'[N, T]' if per_step else '[N]'} losses expected")
        n = len(per_sequence(loss))   # per step: the sequences with a scored step
        tested += 1
        ub = upper_bound(loss, delta, kind)
        if ub > budget:
            failed = ub
            break
        chosen, ub_c, pe_c = j, ub, float(np.mean(per_sequence(loss)))
    return Certificate(kind=kind, budget=float(budget), confidence=float(confidence), calibration_n=int(n),
                       chosen=chosen, upper_bound=ub_c, point_estimate=pe_c, tested=tested,
                       smallest_certifiable=smallest_certifiable(n, delta, kind), failed_upper_bound=failed,
                       per_step=per_step, tolerance=tolerance)


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


def is_certificate(c) -> bool:
    """Whether ``c`` has the shape of :meth:`Certificate.as_dict` where files carry it (a thresholds file, a
    predictor folder): what the conversion reads from it, of the types it reads."""
    if not isinstance(c, dict):
        return False
    budget = c.get("max_loss_points", c.get("max_disagreement_percent"))
    numbers = [c.get(k) for k in ("confidence", "calibration_n", "smallest_certifiable")] + [budget]
    return (isinstance(c.get("certified"), bool) and bool(c.get("units")) and 0 <= budget <= 100
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) else False)


def is_lengths(v) -> bool:
    """Whether ``v`` is a list of sequence lengths (a file's ``calibration_lengths``)."""
    return isinstance(v, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in v)


def up2(v: float) -> str:
    """``v`` to 2 decimals, rounded up: the smallest certifiable budget as printed is one that certifies, and a
    bound above the budget never prints as the budget."""
    return f"{math.ceil(v * 100 - 1e-9) / 100:.2f}"


def _not_certified(c: dict, line: bool = False) -> str:
    """Why a certificate dict (``Certificate.as_dict``) certified nothing: the first candidate's bound when one
    was tested (rounded up, so it never reads as the budget), and the smallest budget the rows certify with every
    sequence unchanged when that is above the budget - no disagreement certifies less; a paired loss does only
    for a candidate that turns more sequences right than wrong."""
    budget = c.get("max_loss_points", c.get("max_disagreement_percent"))
    # a terminal line's short unit (the line names the measure) or the report's whole one
    unit = ("points" if c["loss"] == "paired" else "%") if line else c["units"]
    n, floor, failed = c["calibration_n"], c["smallest_certifiable"], c.get("failed_upper_bound")
    conf = f" at {100 * c['confidence']:g}% confidence" if line else ""
    rows = f"{n} calibration sequences certify no budget below {up2(floor)} {unit}{conf}"
    if failed is None:
        return rows
    why = (f"the most conservative candidate's {100 * c['confidence']:g}% upper bound is {up2(failed)} {unit}"
           + ("" if budget is None else f", above the budget of {budget:g}") + (f" (n={n})" if line else f"; n={n}"))
    if budget is None or floor <= budget:
        return why
    return why + "; " + (rows if c["loss"] == "disagreement" else f"with no sequence changed, {rows}")


def budget_text(c: dict, fallback: str) -> str:
    """The terminal line of a report's ``certified`` dict; ``fallback``: what runs when nothing
    was certified."""
    if not c["certified"]:
        return f"not certified ({_not_certified(c)}): {fallback}"
    what = (f"loss <= {c['max_loss_points']:g} pt" if c["loss"] == "paired"
            else f"disagreement <= {c['max_disagreement_percent']:g}%")
    if c.get("tolerance") is not None:
        what += f" (outputs more than {c['tolerance']:g} from the dense model's)"
    if c.get("per_step"):
        what += " per step (each sequence's share, averaged)"
    return (f"{what} with {100 * c['confidence']:g}% confidence on data like {c.get('data', '?')} "
            f"(n={c['calibration_n']})")


def run_lengths(qm, data) -> np.ndarray:
    """Per row of ``data`` (a Dataset), the steps within its length that the model's mask runs (Masking,
    mask_zero): what the certification rows and --data are compared on. A padded window's length is its padding
    too (a Masking model's rows all have the window's length, so comparing those compared nothing)."""
    from .outputs import scored_steps
    return scored_steps(qm, data).sum(axis=1)


def check_against_certificate(meta: dict, data, option: str, warn, qm) -> Optional[dict]:
    """``data`` (a Dataset) against the certification rows recorded in ``meta`` (``certified``,
    ``calibration_lengths``: :func:`run_lengths` of ``qm``): the :func:`data_check` (None when there is no
    certificate), and a ``warn`` line when the lengths differ."""
    cert, ref = meta.get("certified"), meta.get("calibration_lengths")
    if data is None or not cert or not cert.get("certified") or not ref:
        return None
    check = data_check(ref, run_lengths(qm, data))
    if not check["like_calibration"] and warn is not None:
        warn(shift_warning(check, option, cert))
    return check
