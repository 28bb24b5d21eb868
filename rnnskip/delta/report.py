"""report.json ``delta`` section, its terminal lines and plots."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..outputs import PER_STEP_MEASURE, class_outcomes, float_threshold, is_regression, method_error, within_tolerance
from ..quant.golden import GoldenModel
from ..stats import accuracy
from .golden import delta_layout, densities, effective_macs, run_stats, spec_of, with_delta
from .tune import CELL_DENSITY_HINT

METHOD = ("delta network (Neil, Lee, Delbruck, Liu, ICML 2017): an input or hidden element transmits only when it "
          "moved by more than its threshold since it last transmitted; running sums M += W[:, k] * delta_k over "
          "the transmitting columns only (int8 grid thresholds, int32 sums; golden, host and firmware bit-exact)")


def without_delta(qm):
    """Shallow copy of ``qm`` without thresholds (the dense reference; a predictor is kept)."""
    return with_delta(qm, None)


def _acc(qm, ds, out, regression=False):
    if regression:   # no classes: the section's ``error`` measures it
        return None
    return accuracy(class_outcomes(qm, ds.x, ds.lengths, out, ds.y)) if len(ds.y) else float("nan")


def section(ir, qm, ds, ev, out_dir: Path, float_acc: Optional[float] = None,
            comparison: Optional[dict] = None) -> dict:
    """The ``delta`` section: golden statistics on all of ``ds``; ``comparison``: the emulated
    delta firmware against the same model without thresholds (report.compare_with_dense)."""
    from ..report import reduction, relative
    spec = spec_of(qm)
    # as the report's own scoring reads the labels (outputs.score); unlabelled data reaches here only for a model
    # that is no classifier (rnnskip-convert refuses it for the others)
    regression = ds.y is None or is_regression(ds.y)
    if regression:
        float_acc = None
    elif qm.per_step and len(ds.y):   # the float model's accuracy on the section's measure
        from ..reference import FloatModel
        float_acc = accuracy(class_outcomes(qm, ds.x, ds.lengths, FloatModel(ir).predict(ds.x, ds.lengths), ds.y,
                                            float_threshold(qm)))
    layouts = [delta_layout(l) for l in qm.layers]
    out, flags, st = run_stats(qm, ds.x, ds.lengths)
    dense_out, _ = GoldenModel(without_delta(qm)).run(ds.x, ds.lengths)
    m = effective_macs(qm, st, layouts)
    dens = densities(qm, st)
    wb = sum(st["tx_x"][:, i] * D.rows_x + st["tx_h"][:, i] * D.rows_h for i, D in enumerate(layouts))
    wb_dense = st["steps"] * sum(l.in_p * D.rows_x + l.up * D.rows_h for l, D in zip(qm.layers, layouts))
    sec = {
        "method": METHOD,
        "thresholds": [{"layer": l.name, "input": int(a), "hidden": int(b),
                        "input_real": float(a * l.x_scale), "hidden_real": float(b * l.h_scale), "cell": c}
                       for l, a, b, c in zip(qm.layers, spec.theta_x, spec.theta_h, spec.theta_m)],
        "density": dens,
        "macs_per_inference": {"dense": float(m["dense"].mean()), "delta": float(m["effective"].mean())},
        "mac_reduction": reduction(float(m["dense"].mean()), float(m["effective"].mean())),
        "accuracy": {"float": float_acc, "dense_int8": _acc(qm, ds, dense_out, regression),
                     "delta_int8": _acc(qm, ds, out, regression),
                     **({"measure": PER_STEP_MEASURE} if qm.per_step else {})},
        "weight_bytes_read_per_inference": {"dense": float(np.mean(wb_dense)), "delta": float(np.mean(wb))},
        "n": int(len(ds)),
    }
    if regression:   # what the thresholds cost in the outputs' own units, and against the labels
        sec["error"] = method_error(ir, qm, ds, out, dense_out)
    tol = (spec.tuning or {}).get("tolerance")
    if tol is not None:   # the certified measure on this data, for any model tuned with a tolerance
        share = within_tolerance(qm, ds, out, dense_out, float(tol))
        sec["within_tolerance"] = {"tolerance": float(tol), "share": share, "per_step": bool(qm.per_step),
                                   "measure": "share of sequences whose outputs all stay within the tolerance of the "
                                              "dense int8 model's" + (" (per step: of each sequence's scored steps, "
                                                                      "averaged)" if qm.per_step else "")}
    if spec.tuning:
        t = spec.tuning
        sec["tuning"] = {k: t.get(k) for k in ("method", "validation_sequences", "max_loss_points", "reference",
                                               "reference_accuracy", "accuracy_delta_int8", "mac_reduction")}
        # what the budget and its "accuracy" measure, against which model, on which int8 grid
        sec["tuning"].update({k: t[k] for k in ("max_disagreement_percent", "measure", "baseline", "calibration",
                                                "tolerance")
                              if t.get(k) is not None})
        if t.get("certified"):
            sec["certified"] = t["certified"]
    if comparison is not None:
        k = comparison["sequences"]
        mk = effective_macs(qm, {kk: v[:k] for kk, v in st.items()}, layouts)
        e = dict(comparison, mac_reduction=reduction(float(mk["dense"].mean()), float(mk["effective"].mean())))
        e["cycles_vs_macs"] = relative(e["reduction"]["cycles"], e["mac_reduction"])
        sec["emulated"] = e
    sec["plots"] = write_plots(qm, ds, out_dir, spec)
    return sec


def table_rows(sec: dict):
    """(label, value) lines for the terminal table."""
    from ..report import comparison_rows
    th = ", ".join(f"{t['layer']} x{t['input']}/h{t['hidden']}"
                   + (f"/m{t['cell']}" if t.get("cell") is not None else "") for t in sec["thresholds"])
    d = sec["density"]
    a = sec["accuracy"]
    acc = "-" if a["delta_int8"] is None else f"{a['delta_int8']:.4f} (dense {a['dense_int8']:.4f}" + (
        "; per step, averaged per sequence)" if a.get("measure") else ")")
    t = sec.get("tuning") or {}
    e, w = sec.get("error"), sec.get("within_tolerance")
    quality = [("delta accuracy int8", acc)] if e is None else [("delta error int8", error_text(e))]
    if w is not None:
        per = " (per step, averaged)" if w["per_step"] else ""
        quality.append(("delta within tol.", f"{100 * w['share']:.1f}% of sequences{per} with every output within "
                                             f"{w['tolerance']:g} of the dense int8 model's"))
    return [("delta thresholds", th)] + certified_rows(sec.get("certified"), t.get("baseline"),
                                                       (sec.get("int8_grid") or {}).get("same", True)) + [
            ("delta density in/hid/cell", f"{d['input']:.3f} / {d['hidden']:.3f} / {d['cells']:.3f}")] + quality + \
        comparison_rows(sec, "delta") + profile_rows(sec.get("emulated") or {})




def unpaid_cell_threshold(cells: list, density: float):
    """The cell threshold of ``cells`` (one per layer, None: none) when it leaves more than CELL_DENSITY_HINT of the
    unit evaluations (``density``), else None."""
    return next((m for m in cells if m is not None), None) if density > CELL_DENSITY_HINT else None


def cell_threshold_hint(thresholds: list, cells: float) -> str:
    """What to try when a cell threshold leaves most unit evaluations ("" otherwise): thresholds without it."""
    m = unpaid_cell_threshold([t.get("cell") for t in thresholds], cells)
    if m is None:
        return ""
    return (f"; its cell threshold (m{m}) still evaluates {cells:.0%} of the units and adds a check "
            f"to every one: try thresholds without it ('rnnskip delta-tune ... --cell-grid \"\"')")


def error_text(e: dict) -> str:
    """A regression section's ``error`` (outputs.method_error) in one line."""
    labels = ("no labels; " if e["method_int8_vs_label_rmse"] is None else
              f"RMSE {e['method_int8_vs_label_rmse']:.4g} vs labels (dense {e['dense_int8_vs_label_rmse']:.4g}); ")
    return (f"{labels}vs dense int8: RMSE {e['method_vs_dense_rmse']:.4g}, max {e['method_vs_dense_max_abs']:.4g}")


def certified_rows(c: Optional[dict], baseline: Optional[str] = None, same_grid: bool = True) -> list:
    """The budget the thresholds file certifies, in one line: against the baseline's dense int8 model when the
    thresholds were tuned against one, and for another int8 grid when this conversion's is not the one they were
    certified on; an uncertified file's says it promises nothing (a user read delta-train's thresholds, 25 points
    below the dense model, as a tuned choice)."""
    from ..certify import budget_text
    if not c:
        return [("delta budget", "none: these thresholds were not certified (set by hand or by delta-train); "
                                 "'rnnskip delta-tune MODEL --val VAL' with a budget chooses certified ones")]
    line = budget_text(c, "thresholds 0")
    if c.get("certified") and baseline:
        line += f", against {baseline}'s dense int8 model"
    if c.get("certified") and not same_grid:
        line += "; certified on another int8 grid (see the warning), not this one"
    return [("delta budget", line)]


def profile_rows(e: dict) -> list:
    """The per-part cycle profile, one line per firmware."""
    prof = e.get("cycles_per_step_by_part")
    if not prof:
        return []
    # a few sequences: a step's parts, not the inference's mean (its cycles row is over every emulated sequence)
    n = prof.get("sequences")
    on = f"  (per executed step, {n} sequences spread over the data)" if n else ""
    return [(f"cycles/step {name}", ", ".join(f"{part} {v:,.0f}" for part, v in prof[name].items())
             + (on if name == "delta" else "")) for name in ("dense", "delta")]


def write_plots(qm, ds, out_dir: Path, spec, n_seq: int = 4) -> list:
    """delta_density.png (fraction transmitting per step, a few sequences) and
    delta_pareto.png (from the tuning data in the thresholds file, when present)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..datasets import spread_rows
    out = []
    rows = spread_rows(len(ds), n_seq)
    k = len(rows)
    if k:
        _, _, st = run_stats(qm, ds.x[rows], ds.lengths[rows], trace=True)
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        for i, r in enumerate(rows):
            d = st["density_t"][i]
            t = np.flatnonzero(~np.isnan(d))
            lab = f"sequence {r}" + (f" (label {ds.y[r]})" if ds.y is not None and np.ndim(ds.y[r]) == 0 else "")
            ax.plot(t, d[t], lw=1, label=lab)
        ax.set_xlabel("time step")
        ax.set_ylabel("fraction of elements transmitting")
        ax.set_ylim(0, 1.02)
        ax.set_title("delta network: input + hidden elements that transmit per step")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = Path(out_dir) / "delta_density.png"
        fig.savefig(p)
        plt.close(fig)
        out.append(p.name)
    par = (spec.tuning or {}).get("pareto")
    dense = ((spec.tuning or {}).get("macs_per_inference") or {}).get("dense")
    if par and dense:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        # the set was measured on the selection rows (a certified file): against their own dense MACs
        dense_sel = spec.tuning.get("selection_dense_macs", dense)
        xs = [dense_sel / max(p["macs_per_inference"], 1) for p in par]
        # the set is over accuracy, MACs and cell evaluations: with cell thresholds a point may look dominated on
        # these two axes alone
        cells = any(m is not None for p in par for m in p.get("theta_m") or [])
        ax.plot(xs, [100 * p["accuracy"] for p in par], "r.-",
                label="Pareto set (accuracy, MACs" + (", cell evaluations)" if cells else ")"))
        c = spec.tuning
        def thresholds(x, h, m):   # no cell threshold: () however it was written
            return tuple(x), tuple(h), tuple(m) if m and any(v is not None for v in m) else ()
        key = thresholds(spec.theta_x, spec.theta_h, spec.theta_m)
        same = next((p for p in par if thresholds(p["theta_x"], p["theta_h"], p.get("theta_m")) == key), None)
        cert = c.get("certified") or {}
        if same is not None:   # on the curve, where its rows chose it; a certified file's own figures in the label
            x, y = dense_sel / max(same["macs_per_inference"], 1), 100 * same["accuracy"]
            how = (f" (on the certifying rows: {100 * c['accuracy_delta_int8']:.1f}%, {c['mac_reduction']:.2f}x)"
                   if cert else "")
        else:   # not in the set (nothing certified: thresholds 0): its own figures
            x, y = c["mac_reduction"], 100 * c["accuracy_delta_int8"]
            how = ("" if not cert else " (on the certifying rows)" if cert.get("certified") else
                   " (nothing certified: the dense model's outputs; on the certifying rows)")
        ax.scatter([x], [y], marker="*", s=80, color="k", zorder=5, label="chosen thresholds" + how)
        from .tune import reduction_axis
        reduction_axis(ax)
        ax.set_xlabel("effective MAC reduction (x)")
        ax.set_ylabel("validation " + ("agreement with the dense int8 model (%)"
                                       if "max_disagreement_percent" in spec.tuning else "accuracy (%)"))
        ax.set_title("delta thresholds: accuracy vs effective MACs")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = Path(out_dir) / "delta_pareto.png"
        fig.savefig(p)
        plt.close(fig)
        out.append(p.name)
    return out
