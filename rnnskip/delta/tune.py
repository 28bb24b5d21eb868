"""Delta networks: threshold tuning without retraining.

Every candidate (theta_x, theta_h per layer, whole int8 steps) is run through the
integer delta golden model on validation data - the same arithmetic as the
firmware - and scored by accuracy, effective MACs and weight bytes fetched. One
recurrent layer: the full grid; more layers: a greedy path (raise the one
threshold that buys the most MACs per accuracy point lost, while within budget)
plus the uniform diagonal. The Pareto set of (accuracy up, MACs down) and the
cheapest point within ``max_loss`` points of the reference accuracy are returned.
Each point's loss carries its paired standard error against the reference
model's per-sequence outcomes; ``margin_se = k`` asks for ``loss + k * se``
within the budget.

Then the cell threshold (``cell_grid``, pre-activation steps): at the chosen input and
hidden thresholds, every cell threshold is evaluated and the largest one that stays
within the budget without adding MACs, and leaves at most CELL_DENSITY_HINT of the unit
evaluations, is kept; none fits: no cell threshold. Fewer evaluations at no more MACs is
fewer operations, not always fewer cycles: the check of a quiet unit costs most of an
evaluation on the Cortex-M4 model (docs/delta.md), so one that leaves most evaluations is
not chosen, and the firmware's per-part profile tells whether the one chosen pays there.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..cells import cell_of
from ..errors import RnnskipError
from ..outputs import class_outcomes, dequantize, float_threshold, output_outcomes
from ..quant.golden import GoldenModel, predict_classes
from ..stats import accuracy, paired_loss, per_sequence, within_budget
from .golden import delta_layout, densities, effective_macs, run_stats, with_delta
from .spec import DeltaSpec, check_supported

#: the PNG "Software" text of delta-tune's plot: a later run replaces only a plot that carries it
PLOT_SOFTWARE = "rnnskip delta-tune"
#: default threshold values tried (int8 steps)
GRID = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
#: a cell threshold that leaves more than this share of the unit evaluations is not chosen (and one a file brings is
#: flagged): its per-unit check costs most of an evaluation on the Cortex-M4 model (docs/delta.md), so it is unlikely
#: to pay
CELL_DENSITY_HINT = 0.5
#: default cell thresholds tried (steps of the Q3.12 pre-activations: 1/4096)
CELL_GRID = (16, 32, 64, 128, 256, 512, 1024, 2048)
#: a progress line per this many evaluated points (a one-layer sweep is 121 of them)
PROGRESS_EVERY = 10


@dataclass
class Point:
    theta_x: Tuple[int, ...]
    theta_h: Tuple[int, ...]
    accuracy: float
    macs: float                 # effective MACs per inference (recurrent part + head)
    weight_bytes: float         # recurrent weight bytes the column-sparse kernel reads per inference
    density_input: float
    density_hidden: float
    theta_m: Tuple[Optional[int], ...] = ()
    density_cells: float = 1.0
    pareto: bool = False
    correct: Optional[np.ndarray] = field(default=None, repr=False)   # outputs.class_outcomes on validation
    loss: float = float("nan")       # reference accuracy minus this accuracy, points
    loss_se: float = float("nan")    # its paired standard error, points

    def as_dict(self) -> dict:
        return {"theta_x": list(self.theta_x), "theta_h": list(self.theta_h), "theta_m": list(self.theta_m),
                "accuracy": self.accuracy,
                "loss_points": None if np.isnan(self.loss) else self.loss,
                "loss_se_points": None if np.isnan(self.loss_se) else self.loss_se,
                "macs_per_inference": self.macs, "weight_bytes_per_inference": self.weight_bytes,
                "density": {"input": self.density_input, "hidden": self.density_hidden, "cells": self.density_cells},
                "pareto": self.pareto}


@dataclass
class TuneResult:
    points: List[Point]
    chosen: Point
    reference: str
    reference_accuracy: float
    accuracy: Dict[str, float]          # float, dense_int8
    dense_macs: float
    dense_weight_bytes: float
    max_loss: float
    n: int
    margin_se: float = 0.0
    extra: dict = field(default_factory=dict)
    certificate: Optional[object] = None     # rnnskip.certify.Certificate of a certified pick
    sweep: Optional[List[Point]] = None      # the sweep when not all of ``points`` (certified: selection rows)
    per_step: bool = False                   # a class per step, scored per sequence (rnnskip.stats.accuracy)
    tolerance: Optional[float] = None        # outputs within this of the dense model's agree (regression)

    @property
    def pareto(self) -> List[Point]:
        return sorted([p for p in self.points if p.pareto], key=lambda p: p.macs)

    def spec(self, ir) -> DeltaSpec:
        s = DeltaSpec(list(self.chosen.theta_x), list(self.chosen.theta_h), theta_m=list(self.chosen.theta_m) or None)
        s.tuning = self.summary()
        s.model = {}
        return s

    def summary(self) -> dict:
        c = self.chosen
        method = ("run-time sweep on validation data (integer delta golden model), no retraining"
                  + ("; certified on calibration rows the sweep did not see (Learn-then-Test, fixed sequence, "
                     + ("Chernoff-Hoeffding bounds on each sequence's share of steps" if self.per_step else
                        "exact binomial bounds") + ")" if self.certificate is not None else ""))
        sweep = self.points if self.sweep is None else self.sweep
        disagreement = self.certificate is not None and self.certificate.kind == "disagreement"
        measure = "agreement with the dense int8 model" if disagreement else "accuracy on the labels"
        if self.tolerance is not None:
            measure = (f"share of sequences whose outputs all stay within {self.tolerance:g} (the model's output "
                       f"units) of the dense int8 model's")
        if self.per_step:
            measure += " at every scored step, per sequence (its share of steps, averaged over the sequences)"
        return {"method": method, "validation_sequences": self.n,
                # a disagreement budget is in percent of sequences, and "accuracy" below is agreement with
                # the dense int8 model (no labels)
                **({"max_disagreement_percent": self.max_loss, "measure": measure}
                   if disagreement else {"max_loss_points": self.max_loss, "measure": measure}),
                **({"margin_se": self.margin_se} if self.certificate is None else {}),
                **({"tolerance": self.tolerance} if self.tolerance is not None else {}),
                "reference": self.reference, "reference_accuracy": self.reference_accuracy,
                "accuracy_float": self.accuracy["float"], "accuracy_dense_int8": self.accuracy["dense_int8"],
                **({"accuracy_model_dense_int8": self.accuracy["model_dense_int8"]}   # with a baseline: its own
                   if "model_dense_int8" in self.accuracy else {}),
                "accuracy_delta_int8": c.accuracy,
                "loss_points": c.as_dict()["loss_points"], "loss_se_points": c.as_dict()["loss_se_points"],
                "macs_per_inference": {"dense": self.dense_macs, "effective": c.macs},
                "mac_reduction": self.dense_macs / max(c.macs, 1.0),
                "weight_bytes_per_inference": {"dense": self.dense_weight_bytes, "delta": c.weight_bytes},
                "density": {"input": c.density_input, "hidden": c.density_hidden, "cells": c.density_cells},
                "theta_m": list(c.theta_m),
                "pareto": [p.as_dict() for p in self.pareto],
                "evaluated": len(sweep), "sweep": [p.as_dict() for p in sweep], **self.extra}


def single_blas_thread():
    """Context manager: one BLAS thread. The golden model's mat-muls are small
    (hundreds of rows); with several threads on a busy 2-core machine OpenBLAS
    runs them 20x slower. Uses threadpoolctl when installed, else does nothing."""
    import contextlib
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def outcomes_of(qm, x, lengths, values, y, tolerance: Optional[float] = None, threshold: float = 0.0) -> np.ndarray:
    """Whether each prediction from ``values`` is right: its class is the label ``y`` (outputs.class_outcomes), or
    with a ``tolerance`` its outputs stay that close to ``y``, the dense model's outputs in the model's units
    (outputs.output_outcomes: a regression model's agreement)."""
    if tolerance is None:
        return class_outcomes(qm, x, lengths, values, y, threshold)
    return output_outcomes(qm, x, lengths, values, y, tolerance)


def _outcomes(qm, d, values, y=None, threshold: float = 0.0, tolerance: Optional[float] = None) -> np.ndarray:
    """:func:`outcomes_of` on the rows of ``d`` against ``y`` (default: its labels)."""
    return outcomes_of(qm, d.x, d.lengths, values, d.y if y is None else y, tolerance, threshold)


def evaluate_point(qm, x, lengths, y, theta_x, theta_h, layouts=None, theta_m=None,
                   tolerance: Optional[float] = None) -> Point:
    layouts = layouts or [delta_layout(l) for l in qm.layers]
    tm = tuple(theta_m) if theta_m is not None else (None,) * len(theta_x)
    out, _, st = run_stats(with_delta(qm, DeltaSpec(list(theta_x), list(theta_h), theta_m=list(tm))), x, lengths)
    m = effective_macs(qm, st, layouts)
    wbytes = sum(st["tx_x"][:, i] * D.rows_x + st["tx_h"][:, i] * D.rows_h for i, D in enumerate(layouts))
    d = densities(qm, st)
    correct = outcomes_of(qm, x, lengths, out, y, tolerance)
    return Point(tuple(int(t) for t in theta_x), tuple(int(t) for t in theta_h), accuracy(correct),
                 float(m["effective"].mean()), float(np.mean(wbytes)), d["input"], d["hidden"], theta_m=tm,
                 density_cells=d["cells"], correct=correct)


def mark_pareto(points: Sequence[Point]) -> None:
    """Pareto set: no other point has >= accuracy, <= MACs and <= cell evaluations with one strictly better."""
    for p in points:
        p.pareto = not any((q.accuracy >= p.accuracy and q.macs <= p.macs and q.density_cells <= p.density_cells) and
                           (q.accuracy > p.accuracy or q.macs < p.macs or q.density_cells < p.density_cells)
                           for q in points)


def lead_in(first: Point, grid: Sequence[int], points: Sequence[Point]) -> List[Point]:
    """The thresholds on the way from the dense model up to ``first``, every one of them raised together one grid
    value at a time (each capped at ``first``'s): x=1/h=1, x=2/h=2, ... before x=8/h=24.

    Why: the selection half is small, and one aggressive point that happens to score well there dominates every
    milder one, so it would be the first candidate certified - and the walk would stop on it. Raising all
    thresholds together, the loss rises (nearly) step by step up to it, so the walk certifies what it can on the
    way. Fixed from the selection (``first``) and the grid alone, so the calibration rows still never steer it."""
    L = len(first.theta_x)
    target = tuple(first.theta_x) + tuple(first.theta_h)
    known = {(tuple(p.theta_x), tuple(p.theta_h)): p for p in points if p.theta_m == (None,) * L}
    chain: List[Point] = []
    for g in sorted({int(v) for v in grid if v > 0}):
        c = tuple(min(g, t) for t in target)
        if c == target:
            break
        key = (c[:L], c[L:])
        if any(c) and (not chain or (tuple(chain[-1].theta_x), tuple(chain[-1].theta_h)) != key):
            chain.append(known.get(key) or Point(theta_x=c[:L], theta_h=c[L:], accuracy=float("nan"),
                                                 macs=float("nan"), weight_bytes=float("nan"),
                                                 density_input=float("nan"), density_hidden=float("nan"),
                                                 theta_m=(None,) * L))
    return chain


def tune(ir, qm, val, max_loss: float = 1.0, reference: str = "float", grid: Sequence[int] = GRID,
         float_accuracy: Optional[float] = None, progress: Optional[Callable[[str], None]] = None,
         max_evals: int = 400, margin_se: float = 0.0, cell_grid: Sequence[int] = CELL_GRID) -> TuneResult:
    with single_blas_thread():
        return _tune(ir, qm, val, max_loss, reference, grid, float_accuracy, progress, max_evals, margin_se,
                     cell_grid)


def _tune(ir, qm, val, max_loss, reference, grid, float_accuracy, progress, max_evals, margin_se=0.0,
          cell_grid=CELL_GRID, baseline_correct=None, tolerance=None, measure="accuracy") -> TuneResult:
    """Sweep thresholds on ``val`` (a Dataset) and pick the cheapest point within ``max_loss`` points
    (``loss + margin_se * its standard error``, when ``margin_se`` > 0).

    ``reference``: "float" (the dense float model's accuracy) or "int8" (the dense int8 golden model's).
    ``float_accuracy``: the float model's accuracy on ``val`` when already known (then the
    standard errors against the float reference are not known: nan).
    ``baseline_correct``: per row of ``val``, whether the baseline's dense int8 model (the model a
    fine-tuned ``qm`` came from) is right; it replaces ``qm``'s own dense int8 model as the reference.
    ``tolerance``: ``val.y`` holds the dense model's outputs (model units), and a point is right on a row whose
    outputs stay within ``tolerance`` of them (:func:`outcomes_of`); the float model is then not scored.
    ``measure``: what a point's "accuracy" is, for the progress lines ("agreement" with the dense model's classes or
    outputs, for a disagreement budget).
    """
    check_supported(qm.layers)
    if reference not in ("float", "int8"):
        raise RnnskipError(f"--reference must be 'float' or 'int8', not '{reference}'")
    if not (max_loss >= 0):
        raise RnnskipError(f"--max-loss {max_loss} must be >= 0 (accuracy points, e.g. 1.0)")
    if not (margin_se >= 0):
        raise RnnskipError(f"--margin-se {margin_se} must be >= 0 (standard errors, e.g. 1)")
    if len(val) == 0:
        raise RnnskipError("validation data is empty; give --val an .npz with sequences")
    if val.y.dtype.kind == "f" and tolerance is None:
        raise RnnskipError("delta-tune needs class labels in the validation data (y), not regression targets")
    grid = sorted({int(g) for g in grid})
    float_correct = None
    if tolerance is not None:   # no labels: agreement with the dense model only
        float_accuracy = float("nan")
    if float_accuracy is None:
        from ..reference import FloatModel
        float_correct = _outcomes(qm, val, FloatModel(ir).predict(val.x, val.lengths),
                                 threshold=float_threshold(qm))
        float_accuracy = accuracy(float_correct)
    layouts = [delta_layout(l) for l in qm.layers]
    dense_out, _ = GoldenModel(qm).run(val.x, val.lengths)
    int8_correct = _outcomes(qm, val, dense_out, tolerance=tolerance)
    acc_int8 = accuracy(int8_correct)
    ref = float_accuracy if reference == "float" else acc_int8
    ref_correct = float_correct if reference == "float" else int8_correct
    if baseline_correct is not None:
        ref_correct = np.asarray(baseline_correct)
        ref = accuracy(ref_correct)
    ref_name = "the baseline's dense int8 model" if baseline_correct is not None else f"the {reference} model"
    floor = ref - max_loss / 100.0
    L = len(qm.layers)
    cache: Dict[Tuple, Point] = {}
    t0 = time.time()

    # a per-step Dense has no hidden columns (golden.theta_columns): its hidden threshold is 0 and not swept
    recurrent = [cell_of(l.kind).recurrent for l in qm.layers]

    def ev(tx, th, tm=None) -> Point:
        tm = tuple(tm) if tm is not None else (None,) * L
        th = tuple(t if r else 0 for t, r in zip(th, recurrent))
        k = (tuple(tx), th, tm)
        if k not in cache:
            cache[k] = evaluate_point(qm, val.x, val.lengths, val.y, tx, th, layouts, tm, tolerance)
            if progress and len(cache) % PROGRESS_EVERY == 0:   # every point is in the JSON (tuning.sweep)
                p = cache[k]
                cell = "" if tm == (None,) * L else f" m={list(tm)}"
                progress(f"{len(cache)} points, {time.time() - t0:.0f} s; latest x={list(tx)} h={list(th)}{cell}: "
                         f"{measure} {p.accuracy:.4f}, {p.macs:,.0f} MAC/inference"
                         + (f", cells {p.density_cells:.3f}" if cell else ""))
        return cache[k]

    ev((0,) * L, (0,) * L)                   # theta 0 (the dense model) is always among the points
    # dense cost: every column of every executed step
    dense_macs, dense_wbytes = _dense_cost(qm, val, layouts)
    if L == 1:
        for a, b in itertools.product(grid, grid):
            if len(cache) >= max_evals:
                break
            ev((a,), (b,))
    else:
        for g in grid:                       # uniform diagonal and per-kind diagonals
            ev((g,) * L, (g,) * L)
            ev((g,) * L, (0,) * L)
            ev((0,) * L, (g,) * L)
        cur = [0] * (2 * L)                   # greedy path from all zeros
        while len(cache) < max_evals:
            here = ev(tuple(cur[:L]), tuple(cur[L:]))
            best, best_score = None, -np.inf
            for j in range(2 * L):
                nxt = [g for g in grid if g > cur[j]]
                if not nxt or (j >= L and not recurrent[j - L]):
                    continue
                c = list(cur)
                c[j] = nxt[0]
                p = ev(tuple(c[:L]), tuple(c[L:]))
                if p.accuracy < floor:
                    continue
                score = (here.macs - p.macs) / (max(here.accuracy - p.accuracy, 0.0) + 1e-3)
                if score > best_score:
                    best, best_score = c, score
            if best is None:
                break
            cur = best
    def scored(points):
        for p in points:
            p.loss = 100.0 * (ref - p.accuracy)
            if ref_correct is not None:   # paired with the reference's own outcomes
                p.loss_se = paired_loss(ref_correct, p.correct)[1]
        return [p for p in points if within_budget(p.loss, p.loss_se, max_loss, margin_se)]

    ok = scored(list(cache.values()))
    if ok:
        chosen = min(ok, key=lambda p: (p.macs, -p.accuracy))
        cells = [ev(chosen.theta_x, chosen.theta_h, (int(c),) * L) for c in sorted({int(c) for c in cell_grid})]
        fit = [p for p in scored(cells) if p.macs <= chosen.macs and p.density_cells <= CELL_DENSITY_HINT]
        if fit:
            chosen = max(fit, key=lambda p: (p.theta_m[0], p.accuracy))
    points = list(cache.values())
    mark_pareto(points)
    n_ok = len(scored(points))
    if progress:
        progress(f"{len(points)} points evaluated in {time.time() - t0:.0f} s, {n_ok} within the budget "
                 f"(every point: the JSON's tuning.sweep)")
    if not ok:
        best = max(points, key=lambda p: p.accuracy)
        own = "this model's own" if baseline_correct is not None else "the"
        raise RnnskipError(
            f"no thresholds keep accuracy within {max_loss} points of {ref_name} "
            f"({ref:.4f}): the best is {best.accuracy:.4f} (thresholds x={list(best.theta_x)} "
            f"h={list(best.theta_h)}; {own} dense int8 model scores {acc_int8:.4f})"
            + (f" with --margin-se {margin_se:g} standard errors to spare" if margin_se > 0 else "")
            + "; raise --max-loss")
    return TuneResult(points=points, chosen=chosen, reference=reference, reference_accuracy=ref,
                      accuracy={"float": float_accuracy, "dense_int8": acc_int8}, dense_macs=dense_macs,
                      dense_weight_bytes=dense_wbytes, max_loss=max_loss, n=len(val), margin_se=margin_se,
                      extra={"grid": grid, "cell_grid": sorted({int(c) for c in cell_grid})},
                      per_step=bool(qm.per_step), tolerance=tolerance)


def _dense_cost(qm, ds, layouts) -> tuple:
    """(MACs, recurrent weight bytes read) per inference of the dense model on ``ds``: every
    column of every step the recurrent layers run (with a front end its frames, not the input steps)."""
    L = len(qm.layers)
    g = GoldenModel(qm)
    steps = g.executed_steps(g.run(ds.x, ds.lengths)[1])
    st = {"steps": steps, "tx_x": np.zeros((len(ds), L)), "tx_h": np.zeros((len(ds), L))}
    wbytes = sum(l.in_p * D.rows_x + l.up * D.rows_h for l, D in zip(qm.layers, layouts))
    return float(effective_macs(qm, st, layouts)["dense"].mean()), float(np.mean(steps) * wbytes)


def _front(points) -> list:
    """The (accuracy up, MACs down) Pareto front of ``points``, by MACs."""
    out = []
    for p in sorted(points, key=lambda p: (p.macs, -p.accuracy)):
        if not out or p.accuracy > out[-1].accuracy:
            out.append(p)
    return out


def plot_pareto(res: TuneResult, path, title: str = "") -> None:
    """Accuracy (or agreement with the dense model, for a disagreement budget) against MAC reduction. A
    certified run's two row sets are kept apart: the sweep on the selection rows, and the candidates with
    the chosen one, the budget and the dense model on the certification rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    disagreement = res.certificate is not None and res.certificate.kind == "disagreement"
    measure = "agreement with the dense int8 model" if disagreement else "accuracy"
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    sweep = res.sweep if res.sweep is not None else res.points
    rows = " (selection rows)" if res.certificate is not None else ""
    dense_sel = res.extra.get("selection_dense_macs", res.dense_macs)   # each row set against its own dense MACs
    ax.scatter([dense_sel / max(p.macs, 1) for p in sweep], [100 * p.accuracy for p in sweep], s=10,
               alpha=0.35, label=f"evaluated thresholds{rows}")
    par = _front(sweep)
    ax.plot([dense_sel / max(p.macs, 1) for p in par], [100 * p.accuracy for p in par], "r.-", lw=1,
            label=f"Pareto front{rows}")
    cal = [p for p in res.points if not any(p is q for q in sweep)]
    if cal:
        ax.scatter([res.dense_macs / max(p.macs, 1) for p in cal], [100 * p.accuracy for p in cal], s=18,
                   marker="s", facecolors="none", edgecolors="C1", label="candidates (certification rows)")
    c = res.chosen
    ax.scatter([res.dense_macs / max(c.macs, 1)], [100 * c.accuracy], s=60, marker="*", color="k", zorder=5,
               label=f"chosen x={list(c.theta_x)} h={list(c.theta_h)}"
                     + (" (certification rows)" if res.certificate is not None else ""))
    budget = f"{res.max_loss:g}% disagreement" if disagreement else f"{res.reference} - {res.max_loss:g} pt"
    ax.axhline(100 * (res.reference_accuracy - res.max_loss / 100), color="gray", ls="--", lw=0.8,
               label=f"budget: {budget}")
    ax.axhline(100 * res.accuracy["dense_int8"], color="g", ls=":", lw=0.8, label="dense int8")
    reduction_axis(ax)
    ax.set_xlabel("effective MAC reduction (x, log scale)")
    ax.set_ylabel(f"{measure} (%)")
    ax.set_title(title or f"delta thresholds: {measure} vs effective MACs")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": PLOT_SOFTWARE})   # how a later run knows the file is its own
    plt.close(fig)


def reduction_axis(ax) -> None:
    """A log x axis of reductions labelled in plain factors (1.5x, 2x, 3x ...): over less than a decade
    matplotlib labels every minor tick as 2x10^0, 3x10^0 ..., which overlapped on a user's plot."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    nice = [m * 10.0 ** e for e in range(-1, 4) for m in (1, 1.1, 1.2, 1.3, 1.5, 1.7, 2, 2.5, 3, 4, 5, 7)]
    ticks = [t for t in nice if lo <= t <= hi]
    while len(ticks) > 7:   # every other one until they fit
        ticks = ticks[::2]
    # a range narrower than the nice factors: evenly spaced ones (a log axis that short is all but linear)
    ax.xaxis.set_major_locator(FixedLocator(ticks) if len(ticks) >= 2 else MaxNLocator(4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())


# ---- certified budgets -------------------------------------------------------------------

def check_budget(max_loss: Optional[float], max_disagreement: Optional[float], confidence: float,
                 tolerance: Optional[float] = None) -> tuple:
    """(loss kind, budget) of delta-tune's options; one line for values no certificate can mean (before any
    work): one budget, a finite one between 0 and 100 (points or percent of sequences); a ``tolerance`` (finite,
    >= 0) only with --max-disagreement, which it redefines (outputs further than it from the dense model's)."""
    if not (0.0 < confidence < 1.0):
        raise RnnskipError(f"--confidence {confidence} must be in (0, 1), e.g. 0.9 for 90%")
    if max_loss is not None and max_disagreement is not None:
        raise RnnskipError("give one budget: --max-loss (accuracy points, needs labels) or --max-disagreement "
                           "(percent of sequences whose class differs from the dense model's)")
    if tolerance is not None and not (0.0 <= tolerance < float("inf")):
        raise RnnskipError(f"--tolerance {tolerance:g} must be a finite value >= 0, in the model's output units "
                           f"(e.g. 0.5 for a forecast in degrees)")
    if tolerance is not None and max_disagreement is None:
        raise RnnskipError("--tolerance goes with --max-disagreement D: the budget is then the percent of sequences "
                           "whose outputs move more than the tolerance from the dense int8 model's (--max-loss "
                           "counts class labels)")
    kind = "disagreement" if max_disagreement is not None else "paired"
    budget = float(max_disagreement if kind == "disagreement" else (1.0 if max_loss is None else max_loss))
    if not (0.0 <= budget <= 100.0):   # NaN and infinity too: a promise of "loss <= inf" is no promise
        opt = "--max-disagreement" if kind == "disagreement" else "--max-loss"
        raise RnnskipError(f"{opt} {budget:g} must be between 0 and 100 "
                           f"({'percent of sequences' if kind == 'disagreement' else 'accuracy points'})")
    return kind, budget


def certified_tune(ir, qm, val, max_loss: Optional[float] = None, max_disagreement: Optional[float] = None,
                   confidence: float = 0.9, select=None, grid: Sequence[int] = GRID,
                   cell_grid: Sequence[int] = CELL_GRID, progress: Optional[Callable[[str], None]] = None,
                   max_evals: int = 400, seed: int = 0, data_name: str = "the calibration data",
                   baseline_qm=None, tolerance: Optional[float] = None) -> TuneResult:
    """Thresholds whose loss against the dense int8 model is certified within the budget with
    probability >= ``confidence`` (rnnskip/certify.py: Learn-then-Test, fixed sequence).
    ``baseline_qm``: the quantised model a fine-tuned ``qm`` came from (delta-train's input); the
    loss and disagreement are then measured against its dense int8 model, not ``qm``'s own.

    ``max_loss`` (accuracy points, needs labels) or ``max_disagreement`` (percent of sequences
    whose class differs from the dense int8 model's; labels not needed). The candidate sequence
    is chosen on selection data (``select``, else half of ``val``): the Pareto thresholds from
    the dense model down to the cheapest within the budget there (led in by :func:`lead_in`), then that
    point's cell thresholds in rising order; it is tested on the other rows (the calibration data), never
    the same rows twice. Nothing certified: thresholds 0 (the dense model, loss 0 by
    construction), with the reason in ``extra["certified"]``.

    ``tolerance`` (with ``max_disagreement``; any model, and the one budget a regression model has): a sequence
    disagrees when any of its outputs (after the last activation, in the model's units; per step: at a scored step)
    moves more than ``tolerance`` from the dense int8 model's."""
    from ..certify import fixed_sequence, run_lengths, split_rows
    from ..datasets import Dataset
    kind, budget = check_budget(max_loss, max_disagreement, confidence, tolerance)
    if tolerance is None:
        from ..outputs import check_class_outputs
        # unlabelled rows: the model alone (the caller checks labels from elsewhere, as delta-tune does --calib's)
        check_class_outputs(ir, "delta-tune", *(() if val.y is None else (val.y,)))
    labelled = val.y is not None and (select is None or select.y is not None)
    if kind == "paired" and not labelled:
        raise RnnskipError("--max-loss needs class labels (y) in the validation data; without labels give "
                           "--max-disagreement D (percent of sequences whose class differs from the dense model's)")
    if kind == "paired" and val.y.dtype.kind == "f":
        raise RnnskipError("delta-tune needs class labels in the validation data (y), not regression targets")
    if select is None:
        if len(val) < 2:
            raise RnnskipError("validation data needs at least 2 sequences (half select thresholds, half certify)")
        s_idx, c_idx = split_rows(len(val), seed)
        S, C = val.subset(s_idx), val.subset(c_idx)
    else:
        S, C = select, val
    act = qm.output_activation

    ref_qm = qm if baseline_qm is None else baseline_qm

    def dense_out(d):
        return GoldenModel(ref_qm).run(d.x, d.lengths)[0]

    def dense_pred(d):   # what agreement is measured against: classes, or with a tolerance the outputs
        if tolerance is not None:
            return dequantize(ref_qm, dense_out(d))
        return predict_classes(dense_out(d), act)

    # labels the search and the loss are measured against: the true ones (paired), or the dense
    # int8 model's own classes (disagreement: "accuracy" is then agreement with the dense model)
    dense_C = dense_pred(C)
    S_t = S if kind == "paired" else Dataset(x=S.x, y=dense_pred(S), lengths=S.lengths)
    C_t = Dataset(x=C.x, y=C.y if kind == "paired" else dense_C, lengths=C.lengths)
    with single_blas_thread():
        try:
            sel = _tune(ir, qm, S_t, budget, "int8", grid, None, progress, max_evals, 0.0, cell_grid,
                        baseline_correct=None if baseline_qm is None else
                        _outcomes(ref_qm, S_t, dense_out(S), tolerance=tolerance), tolerance=tolerance,
                        measure="accuracy" if kind == "paired" else "agreement with the dense model")
        except RnnskipError:
            if kind == "paired" or baseline_qm is None:
                raise
            own = accuracy(_outcomes(qm, S_t, GoldenModel(qm).run(S.x, S.lengths)[0],   # only a baseline gets here
                                     tolerance=tolerance))
            raise RnnskipError(f"no thresholds keep disagreement with the baseline's dense int8 model within "
                               f"{budget:g}% of the {len(S)} selection sequences; the model's own dense int8 model "
                               f"disagrees with it on {100 * (1 - own):.1f}%") from None
    L = len(qm.layers)
    base = min((p for p in sel.points if p.theta_m == (None,) * L and p.accuracy >= sel.chosen.accuracy - 1e-12
                and (p.theta_x, p.theta_h) == (sel.chosen.theta_x, sel.chosen.theta_h)), key=lambda p: p.macs,
               default=None)
    stop_macs = base.macs if base is not None else sel.chosen.macs
    zero = ((0,) * L, (0,) * L)
    path = sorted([p for p in sel.points if p.pareto and p.theta_m == (None,) * L and p.macs >= stop_macs - 1e-9
                   and (p.theta_x, p.theta_h) != zero], key=lambda p: -p.macs)
    if base is not None and base not in path and (base.theta_x, base.theta_h) != zero:
        path.append(base)
    if path:
        path = lead_in(path[0], grid, sel.points) + path
    cells = sorted([p for p in sel.points if p.theta_m != (None,) * L and p.density_cells <= CELL_DENSITY_HINT and
                    (p.theta_x, p.theta_h) == (sel.chosen.theta_x, sel.chosen.theta_h)], key=lambda p: p.theta_m[0])
    path += cells
    layouts = [delta_layout(l) for l in qm.layers]
    dense_correct = outcomes_of(ref_qm, C_t.x, C_t.lengths, dense_out(C), C_t.y, tolerance)
    n_cal = len(per_sequence(dense_correct))   # per step: the rows with a scored step
    evaluated: List[Point] = []

    def losses():
        for p in path:
            q = evaluate_point(qm, C_t.x, C_t.lengths, C_t.y, p.theta_x, p.theta_h, layouts, p.theta_m, tolerance)
            evaluated.append(q)
            # paired: dense correct - correct; disagreement (labels = dense classes): not correct
            loss = (dense_correct if kind == "paired" else 1.0) - q.correct.astype(np.float64)
            if progress:
                progress(f"certify x={list(q.theta_x)} h={list(q.theta_h)}"
                         + ("" if q.theta_m == (None,) * L else f" m={list(q.theta_m)}")
                         + f" on {n_cal} calibration sequences: "
                         + (f"mean loss {100 * float(np.mean(per_sequence(loss))):.2f} pt" if kind == "paired" else
                            f"disagreement {100 * float(np.mean(per_sequence(loss))):.2f}%"))
            yield loss

    cert = fixed_sequence(losses(), budget / 100.0, confidence, kind, n=n_cal, per_step=bool(qm.per_step),
                          tolerance=tolerance)
    chosen = evaluated[cert.chosen] if cert.chosen is not None else \
        evaluate_point(qm, C_t.x, C_t.lengths, C_t.y, (0,) * L, (0,) * L, layouts, tolerance=tolerance)
    acc_int8 = accuracy(dense_correct)
    float_acc = float("nan")
    own = {} if baseline_qm is None else \
        {"model_dense_int8": accuracy(_outcomes(qm, C_t, GoldenModel(qm).run(C_t.x, C_t.lengths)[0],
                                                tolerance=tolerance))}
    if kind == "paired":
        from ..reference import FloatModel
        float_acc = accuracy(_outcomes(qm, C, FloatModel(ir).predict(C.x, C.lengths),
                                           threshold=float_threshold(qm)))
    for p in evaluated + [chosen]:
        p.loss = 100.0 * (acc_int8 - p.accuracy)
        p.loss_se = paired_loss(dense_correct, p.correct)[1]
    dense_macs, dense_wbytes = _dense_cost(qm, C, layouts)
    lengths = np.sort(run_lengths(qm, C))
    if len(lengths) > 2000:      # kept for rnnskip-convert's check that --data is like these rows
        from ..datasets import spread_rows
        lengths = lengths[spread_rows(len(lengths), 2000)]
    extra = {"grid": sorted({int(g) for g in grid}), "cell_grid": sorted({int(c) for c in cell_grid}),
             "calibration_lengths": [int(v) for v in lengths],
             "certified": cert.as_dict(data_name), "selection_sequences": len(S), "calibration_sequences": len(C),
             # the sweep's MAC reductions are against the dense MACs of its own rows (masked rows differ in length)
             "selection_dense_macs": sel.dense_macs,
             "selection": "--select" if select is not None else f"half of --val (seed {seed})",
             "path": [{"theta_x": list(p.theta_x), "theta_h": list(p.theta_h), "theta_m": list(p.theta_m)}
                      for p in path]}
    return TuneResult(points=sel.points + evaluated, chosen=chosen, reference="int8" if baseline_qm is None else
                      "baseline int8", reference_accuracy=acc_int8,
                      accuracy={"float": float_acc, "dense_int8": acc_int8, **own},
                      dense_macs=dense_macs, dense_weight_bytes=dense_wbytes, max_loss=budget,
                      n=len(val), extra=extra,
                      certificate=cert, sweep=sel.points, per_step=bool(qm.per_step), tolerance=tolerance)

