"""Certified budgets (issue #17): does ``--max-loss A --confidence 0.9`` hold on unseen data?

IMDB, the skip section's model (``benchmarks/imdb_model.py``). Two MLP predictors are trained
once on the predictor-training reviews, with the threshold search (the selection) on the
validation reviews, as ``train-predictor`` does on its selection half: one for the accuracy
budget A = 0.5 points, one for the label-free budget D = 1% (disagreement with the dense int8
model). The selection fixes the candidate thresholds and their order
(``rnnskip.skip.train.certification_path``) and never sees a test review.

The 25,000 test reviews are then split 20 times at random into a calibration half and an
evaluation half. On each split the candidates are certified on the calibration half exactly as
the product does it (``rnnskip.certify.fixed_sequence``: Learn-then-Test, fixed-sequence,
exact binomial bounds, confidence 0.9), and the realized loss and the effective MAC cut are
measured on the evaluation half at the certified threshold (nothing certified: the dense model,
loss 0, cut 0). Alongside, the uncertified pick (the selection's own threshold) on the same
evaluation half shows what the guarantee costs and what it buys.

The int8 golden predictions at each candidate threshold are computed once for every test review
(a review's prediction does not depend on the others), so a split only re-indexes them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .common import bench_out, config_hash, read_json, write_json

SPLITS = 20
CONFIDENCE = 0.9
CODE_VERSION = 1
# (loss kind, budget in points / percent, the Done-when targets: violations allowed of SPLITS, mean MAC cut)
BUDGETS = (("paired", 0.5, 3, 0.45), ("disagreement", 1.0, 3, None))


def _candidates(kind: str, budget: float, d: dict, ir, qm, test, out: Path, quick: bool, log) -> dict:
    """The predictor for one budget kind, its certification path and the int8 golden predictions
    and steps run at each candidate threshold on every test row (cached next to the predictor)."""
    from rnnskip.skip.evaluate import golden_run
    from rnnskip.skip.folder import load as load_folder
    from rnnskip.skip.oracle import Point
    from rnnskip.skip.qpredictor import quantize_predictor
    from rnnskip.skip.train import certification_path

    from .skip_bench import ROUNDS, _predictor
    skip_out = Path(bench_out("skip/imdb"))
    folder = (_predictor("imdb", d, "mlp", ROUNDS, budget, skip_out, log) if kind == "paired" else
              _predictor("imdb", d, "mlp", ROUNDS, None, skip_out, log, max_disagreement=budget))
    p, meta = load_folder(folder, ir)
    pts = [Point(threshold=q["threshold"], skip_rate=q["skip_rate"], accuracy=q["accuracy"],
                 loss=q["loss_points"], loss_se=float("nan")) for q in meta["calibration"]["points"]]
    path = certification_path(pts, meta["threshold"])
    qp = quantize_predictor(p, qm)
    cache = out / f"candidates-{kind}.npz"
    key = config_hash({"predictor": read_json(str(folder / "predictor.json"))["threshold"], "path": path,
                       "n": len(test), "rows": int(test.x.sum() % 1000003), "code": CODE_VERSION})
    if cache.is_file():
        z = np.load(cache)
        if str(z["key"]) == key:
            log(f"[certify] reusing {cache}")
            return {"folder": folder, "meta": meta, "path": path, "qp_macs": qp.macs,
                    "pred": z["pred"], "run_steps": z["run_steps"]}
    pred, run = [], []
    for i, thr in enumerate(path):
        t0 = time.time()
        g = golden_run(qm, test.x, test.lengths, qp=qp.with_threshold(thr))
        pred.append(g["pred"])
        run.append(g["run_steps"])
        log(f"[certify] {kind}: candidate {i + 1}/{len(path)} (threshold {thr:+.4f}): skip {g['skip_rate']:.1%} "
            f"on {len(test)} test rows ({time.time() - t0:.0f} s)")
    pred, run = np.asarray(pred), np.asarray(run)
    np.savez(cache, key=np.asarray(key), pred=pred, run_steps=run)
    return {"folder": folder, "meta": meta, "path": path, "qp_macs": qp.macs, "pred": pred, "run_steps": run}


def resplits(kind: str, budget: float, dense_pred, y, valid_steps, cand: dict, ir, splits: int = SPLITS,
             confidence: float = CONFIDENCE) -> list:
    """One row per random calibration/evaluation halving of the rows: the certified and the
    uncertified pick, each with its realized loss and effective MAC cut on the evaluation half."""
    from rnnskip.certify import fixed_sequence, sequence_loss
    from rnnskip.skip.evaluate import macs
    n = len(dense_pred)
    pred, run = cand["pred"], cand["run_steps"]

    def realized(c, ev):
        if c is None:   # nothing certified: the dense model
            return 0.0, 0.0
        loss = 100.0 * float(np.mean(sequence_loss(kind, dense_pred[ev], pred[c][ev], None if y is None else y[ev])))
        return loss, macs(ir, valid_steps[ev], run[c][ev], cand["qp_macs"])["reduction"]

    rows = []
    for s in range(splits):
        perm = np.random.default_rng(10_000 + s).permutation(n)
        cal, ev = perm[: n // 2], perm[n // 2:]
        yc = None if y is None else y[cal]
        cert = fixed_sequence((sequence_loss(kind, dense_pred[cal], pred[i][cal], yc) for i in range(len(pred))),
                              budget / 100.0, confidence, kind, n=len(cal))
        loss, cut = realized(cert.chosen, ev)
        u_loss, u_cut = realized(len(pred) - 1 if len(pred) else None, ev)
        rows.append({"split": s, "n_calibration": len(cal), "n_evaluation": len(ev),
                     "certified": cert.chosen is not None, "candidate": cert.chosen,
                     "threshold": None if cert.chosen is None else cand["path"][cert.chosen],
                     "upper_bound": None if cert.upper_bound is None else 100.0 * cert.upper_bound,
                     "realized": loss, "mac_cut": cut, "violation": loss > budget,
                     "uncertified_realized": u_loss, "uncertified_mac_cut": u_cut,
                     "uncertified_violation": u_loss > budget})
    return rows


def summarize(rows: list, budget: float, max_violations: int, target_cut) -> dict:
    v = sum(r["violation"] for r in rows)
    cut = float(np.mean([r["mac_cut"] for r in rows]))
    return {"splits": len(rows), "violations": int(v), "certified_splits": int(sum(r["certified"] for r in rows)),
            "mean_realized": float(np.mean([r["realized"] for r in rows])),
            "max_realized": float(np.max([r["realized"] for r in rows])), "mean_mac_cut": cut,
            "uncertified_violations": int(sum(r["uncertified_violation"] for r in rows)),
            "uncertified_mean_realized": float(np.mean([r["uncertified_realized"] for r in rows])),
            "uncertified_mean_mac_cut": float(np.mean([r["uncertified_mac_cut"] for r in rows])),
            "target_violations": max_violations, "target_mac_cut": target_cut,
            "violations_met": v <= max_violations,
            "mac_cut_met": None if target_cut is None else cut >= target_cut}


def plot(res: dict, path: Path) -> str:
    """Realized loss per split, certified vs uncertified, against each budget."""
    from rnnskip.skip.plots import _plt
    plt = _plt()
    budgets = res["budgets"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.2 * len(budgets), 3.6), squeeze=False)
    for ax, b in zip(axes[0], budgets):
        xs = np.arange(len(b["rows"]))
        ax.plot(xs, [r["uncertified_realized"] for r in b["rows"]], "o", mfc="none", color="tab:red",
                label="uncertified (selection's threshold)")
        ax.plot(xs, [r["realized"] for r in b["rows"]], "o", color="tab:blue",
                label=f"certified ({100 * res['confidence']:g}% confidence)")
        ax.axhline(b["budget"], color="k", lw=1, ls="--", label="budget")
        ax.set_xlabel("random split")
        ax.set_xticks(xs[::max(1, len(xs) // 10)])
        ax.set_ylabel("loss (points)" if b["kind"] == "paired" else "disagreement (%)")
        ax.set_title(f"{res['title']}: {b['label']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def run(quick: bool = False, log=print) -> dict:
    from rnnskip import pipeline
    from rnnskip.datasets import load_npz
    from rnnskip.skip.evaluate import golden_run

    from .skip_bench import _imdb
    out = Path(bench_out("certify/imdb"))
    out.mkdir(parents=True, exist_ok=True)
    d = _imdb(Path(bench_out("skip/imdb")))
    ir = pipeline.import_model(d["model"])
    qm, _ = pipeline.quantize_model(ir, load_npz(d["calib"], ir), 1000, progress=False)
    test = load_npz(d["test"], ir)
    if quick:
        test = test.sample(4000, seed=0)
    t0 = time.time()
    dense = golden_run(qm, test.x, test.lengths)
    res = {"title": "IMDB", "n_test": len(test), "confidence": CONFIDENCE, "splits": SPLITS, "budgets": [],
           "dense_accuracy_int8": float(np.mean(dense["pred"] == test.y))}
    for kind, budget, max_v, target_cut in BUDGETS:
        cand = _candidates(kind, budget, d, ir, qm, test, out, quick, log)
        rows = resplits(kind, budget, dense["pred"], test.y if kind == "paired" else None,
                        dense["valid_steps"], cand, ir)
        s = summarize(rows, budget, max_v, target_cut)
        label = f"A = {budget:g} points" if kind == "paired" else f"D = {budget:g}%"
        res["budgets"].append({"kind": kind, "budget": budget, "label": label, "rows": rows, "summary": s,
                               "candidates": [float(t) for t in cand["path"]],
                               "selection": cand["meta"]["val"], "predictor": str(cand["folder"]),
                               "predictor_params": cand["meta"]["params"]})
        log(f"[certify] {label}: {s['violations']}/{s['splits']} splits over budget (uncertified: "
            f"{s['uncertified_violations']}), mean MAC cut {s['mean_mac_cut']:.1%}")
    res["plot"] = plot(res, out / "certified_resplits.png")
    res["seconds"] = round(time.time() - t0, 1)
    write_json(str(out / "certify.json"), res)
    return res


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(res: dict) -> str:
    n = res["n_test"]
    lines = [f"## Certified budgets (issue #17): {res['title']}, {res['splits']} random splits", "",
             f"Method (`docs/skip.md`, `benchmarks/certify_bench.py`): MLP predictors trained once, their thresholds "
             f"searched on the validation reviews (the selection, which fixes the candidates and their order). The "
             f"{n:,} test reviews are split {res['splits']} times at random into a calibration half ({n // 2:,}) and "
             f"an evaluation half ({n - n // 2:,}); on each split the candidates are certified on the calibration "
             f"half as `train-predictor --confidence {res['confidence']:g}` does (Learn-then-Test, fixed sequence, "
             f"exact binomial bounds) and the loss is measured on the evaluation half. Loss = accuracy of the dense "
             f"int8 model minus that of the skipping int8 model (paired, int8 golden = firmware), or the fraction of "
             f"sequences whose class differs from the dense model's. Uncertified = the selection's own threshold, "
             f"the paper-style pick. Dense int8 test accuracy {100 * res['dense_accuracy_int8']:.2f}.", "",
             "| budget | splits over budget (certified) | target | certified splits "
             "| realized loss (pt or %) mean / max | mean effective MAC cut | target "
             "| splits over budget (uncertified) | uncertified loss mean | uncertified MAC cut |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for b in res["budgets"]:
        s = b["summary"]
        tc = s["target_mac_cut"]
        target_cut = "-" if tc is None else f">= {100 * tc:.0f}%" + (" (met)" if s["mac_cut_met"] else " (**not met**)")
        lines.append(
            f"| {b['label']} | {s['violations']} / {s['splits']} | <= {s['target_violations']} "
            f"({'met' if s['violations_met'] else '**not met**'}) | {s['certified_splits']} / {s['splits']} "
            f"| {s['mean_realized']:+.2f} / {s['max_realized']:+.2f} | {100 * s['mean_mac_cut']:.1f}% "
            f"| {target_cut} "
            f"| {s['uncertified_violations']} / {s['splits']} | {s['uncertified_mean_realized']:+.2f} "
            f"| {100 * s['uncertified_mean_mac_cut']:.1f}% |")
    cands = "; ".join(f"{b['label']}: {len(b['candidates'])} candidates, the selection's pick skipping "
                      f"{100 * b['selection']['skip_rate']:.1f}% of validation steps" for b in res["budgets"])
    lines += ["", f"Per split (candidate = the certified threshold's index in the fixed sequence; {cands}):", ""]
    lines += ["| budget | split | candidate | upper bound | realized | MAC cut | uncertified realized |",
              "|---|---|---|---|---|---|---|"]
    for b in res["budgets"]:
        for r in b["rows"]:
            lines.append(f"| {b['label']} | {r['split']} | {_fmt(r['candidate'], 'd')} "
                         f"| {_fmt(r['upper_bound'], '.2f')} | {r['realized']:+.2f} | {100 * r['mac_cut']:.1f}% "
                         f"| {r['uncertified_realized']:+.2f} |")
    lines += ["", f"Plot: `bench_out/certify/imdb/{res['plot']}`."]
    return "\n".join(lines)


def summary(res: dict) -> list:
    out = []
    for b in res["budgets"]:
        s = b["summary"]
        what = "loss" if b["kind"] == "paired" else "disagreement with the dense model"
        out.append(f"- Certified skipping, IMDB, {b['label']} at {100 * res['confidence']:g}% confidence: realized "
                   f"{what} over budget in {s['violations']} of {s['splits']} random splits (uncertified pick: "
                   f"{s['uncertified_violations']}), mean effective MAC cut {100 * s['mean_mac_cut']:.1f}%.")
    return out


if __name__ == "__main__":
    import json
    r = run(quick=bool(os.environ.get("QUICK")))
    print(json.dumps({b["label"]: b["summary"] for b in r["budgets"]}, indent=1))
