"""Skipping benchmark: time-step skipping without retraining on SST-2 and IMDB.

For each data set: the paper-style table (dense, stop words, Concat(n), the float
oracle at its validation threshold, each predictor type, and the MLP trained on
oracle labels only) with skip rates, accuracies and effective MACs on the test
set, plus emulated cortex-m4 cycles and flash traffic, dense vs skipping.

Data (chosen before looking at test results):
* SST-2: model from ``benchmarks/sst2_model.py``; predictor training = 20,000
  phrases of the LSTM's own training split; validation = the 5% of train the
  LSTM never saw, phrases of >= 6 tokens (sentence-like: dev's 5th length
  percentile); test = the 872 dev sentences (all emulated).
* IMDB: model from ``benchmarks/imdb_model.py``; predictor training = 6,000
  training reviews; validation = the 2,500 held-out training reviews (blocks of
  consecutive review ids, so other movies than the LSTM trained on); test = the
  25,000 test reviews (golden/host accuracy on all), emulated on 500 random ones.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .common import bench_out, config_hash, convert, read_json, shared_data, write_json

TYPES = ("mlp", "logistic", "tree", "forest")
CODE_VERSION = 2   # 2: calibration and oracle grids run to 99% (were capped at 70% / the 0.9 quantile)
ROUNDS = 2

SETS = {
    "sst2": {"title": "SST-2", "max_loss": 0.3, "paper_oracle": 0.45, "target_mac_cut": 0.35,
             "concat": (3, 5, 8), "emulate_primary": None, "emulate_other": None},
    "imdb": {"title": "IMDB", "max_loss": 0.5, "paper_oracle": 0.70, "target_mac_cut": 0.50,
             "concat": (10, 25, 50), "emulate_primary": 500, "emulate_other": 100},
}


# ---- data -------------------------------------------------------------------------

def _sst2(out: Path) -> dict:
    from rnnskip.datasets import save_npz

    from .sst2_model import model_train_split, train_sst2
    p = train_sst2(shared_data(), bench_out("sst2"))
    d = {"model": p["model"], "vocab": p["vocab"], "calib": p["train"], "test": p["dev"], "test_emulate": p["dev"],
         "train": str(out / "skip_train.npz"), "val": str(out / "skip_val.npz")}
    if not (os.path.exists(d["train"]) and os.path.exists(d["val"])):
        fit, val = model_train_split(p, shared_data())          # the split sst2_model.py used
        save_npz(d["val"], val.subset(val.lengths >= 6))
        save_npz(d["train"], fit.sample(20000, seed=0))
    return d


def _imdb(out: Path) -> dict:
    from rnnskip.datasets import load_npz, save_npz

    from .imdb_model import train_imdb
    p = train_imdb(shared_data(), bench_out("imdb"))
    d = {"model": p["model"], "vocab": p["vocab"], "calib": p["train"], "test": p["test"],
         "train": p["skip_train"], "val": p["val"], "test_emulate": str(out / "test_shuffled.npz"),
         "test_small": str(out / "test_small.npz")}
    if not (os.path.exists(d["test_emulate"]) and os.path.exists(d["test_small"])):
        t = load_npz(p["test"])
        sh = t.subset(np.random.default_rng(0).permutation(len(t)))   # the first 500 are a random sample
        save_npz(d["test_emulate"], sh)
        save_npz(d["test_small"], sh.subset(slice(0, SETS["imdb"]["emulate_other"])))
    return d


# ---- predictors (cached) ---------------------------------------------------------------

def _predictor(name: str, d: dict, ptype: str, rounds: int, max_loss, out: Path, log,
               max_disagreement=None) -> Path:
    """The predictor folder (trained once per configuration): ``max_loss`` points, or
    ``max_disagreement`` percent (then ``max_loss`` is None) for the selection on --val."""
    from rnnskip.skip.convert import run_train_predictor
    folder = out / f"pred-{ptype}" if rounds == ROUNDS else out / f"pred-{ptype}-r{rounds}"
    if max_disagreement is not None:
        folder = folder.with_name(f"{folder.name}-d{max_disagreement:g}")
    model_record = read_json(os.path.join(os.path.dirname(d["model"]), "meta.json"))
    key = config_hash({"model": os.path.getsize(d["model"]), "meta": model_record.get("config_hash"),
                       "train": os.path.getsize(d["train"]), "val": os.path.getsize(d["val"]), "type": ptype,
                       "rounds": rounds, "max_loss": max_loss, "code": CODE_VERSION,
                       **({"max_disagreement": max_disagreement} if max_disagreement is not None else {})})
    kf = folder.with_name(folder.name + ".bench_key.json")   # beside it: the folder is train-predictor's output
    if kf.is_file() and read_json(str(kf)).get("key") == key:
        log(f"[skip:{name}] reusing {folder}")
        return folder
    t0 = time.time()
    # the paper-style operating point: the validation estimate on all of --val, not certified
    run_train_predictor(d["model"], d["train"], d["val"], max_loss, str(folder), ptype=ptype, rounds=rounds,
                        log=lambda m: log(f"[skip:{name}] {m}") if not m.startswith("    ") else None,
                        confidence=None, max_disagreement=max_disagreement)
    write_json(str(kf), {"key": key, "seconds": round(time.time() - t0, 1)})
    return folder


def train_predictor(name: str, d: dict, max_loss: float, out: Path, quick: bool, log=print) -> Path:
    """The first predictor type this section trains (the quick run's rounds when ``quick``), by the
    same cached path, so a section that needs it first and this one share one training; ``d``:
    paths of model, train and val."""
    return _predictor(name, d, TYPES[0], 1 if quick else ROUNDS, max_loss, out, log)


def sst2_predictor(quick: bool, log=print) -> tuple:
    """(folder, how it was chosen) of the SST-2 predictor other sections attach: this section's
    primary predictor once a full run copied it to bench_out/sst2/predictor, else
    :func:`train_predictor` at this section's SST-2 budget."""
    primary = Path(bench_out("sst2")) / "predictor"
    if (primary / "predictor.json").is_file():
        return primary, "the skip section's primary predictor (bench_out/sst2/predictor)"
    out = Path(bench_out("skip/sst2"))
    folder = train_predictor("sst2", _sst2(out), SETS["sst2"]["max_loss"], out, quick, log)
    return folder, (f"the skip section's {TYPES[0]} predictor ({1 if quick else ROUNDS} relabel round"
                    f"{'s' if not quick and ROUNDS != 1 else ''}, {SETS['sst2']['max_loss']} point budget on its "
                    "validation rows; a full skip run replaces it by its primary predictor)")


# ---- one data set -----------------------------------------------------------------------

def model_meta(model_path: str) -> dict:
    """The benchmark model's training record (its meta.json), for the table's caption."""
    m = read_json(os.path.join(os.path.dirname(model_path), "meta.json"))
    h = m.get("history", {}).get("val_accuracy") or []
    return {"module": f"benchmarks/{os.path.basename(os.path.dirname(model_path))}_model.py",
            "code_version": m.get("code_version"), "params": m.get("params"),
            "float_test_accuracy": m.get("test_accuracy", m.get("dev_accuracy")),
            "val_accuracy": m.get("val_accuracy"), "epochs_run": m.get("epochs_run"),
            "epoch_kept": int(max(range(len(h)), key=lambda i: h[i])) + 1 if h else None}


def _bench_set(name: str, quick: bool, log=print) -> dict:
    from rnnskip import pipeline
    from rnnskip.datasets import Vocab, load_npz
    from rnnskip.skip import features
    from rnnskip.skip.baselines import concat_mask, evaluate_mask, stopword_mask
    from rnnskip.skip.evaluate import golden_run, macs
    from rnnskip.skip.folder import load as load_folder
    from rnnskip.skip.qpredictor import quantize_predictor
    cfg = SETS[name]
    out = Path(bench_out(f"skip/{name}"))
    d = _sst2(out) if name == "sst2" else _imdb(out)
    ir = pipeline.import_model(d["model"])
    fm = pipeline.float_model(ir)
    qm, _ = pipeline.quantize_model(ir, load_npz(d["calib"], ir), 1000, progress=False)
    test = load_npz(d["test"], ir)
    if quick and len(test) > 2000:
        test = test.sample(2000, seed=0)
    y = test.y
    res = {"set": name, "title": cfg["title"], "max_loss": cfg["max_loss"], "n_test": len(test),
           "mean_length": float(test.lengths.mean()), "rows": [], "devices": {}, "rounds": {},
           "model_meta": model_meta(d["model"])}
    t0 = time.time()
    dense_f = features.run(fm, test.x, test.lengths)
    dense_g = golden_run(qm, test.x, test.lengths)
    acc_f, acc_g = dense_f.accuracy(y), float(np.mean(dense_g["pred"] == y))
    valid = dense_g["valid_steps"]

    def row(label, kind, skip_rate, af, ag, run_steps, pred_macs=0, **extra):
        m = macs(ir, valid, run_steps, pred_macs) if run_steps is not None else None
        r = {"method": label, "kind": kind, "skip_rate": skip_rate, "accuracy_float": af, "accuracy_int8": ag,
             "loss_points_int8": None if ag is None else 100.0 * (acc_g - ag),
             "loss_points_float": None if af is None else 100.0 * (acc_f - af),
             "mac_reduction": None if m is None else m["reduction"], **extra}
        res["rows"].append(r)
        return r

    row("dense", "dense", 0.0, acc_f, acc_g, valid)
    vocab = Vocab.load(d["vocab"])
    masks = [("stop words", stopword_mask(test.x, vocab))] + \
            [(f"Concat({n})", concat_mask(test.lengths, test.x.shape[1], n)) for n in cfg["concat"]]
    for label, mask in masks:
        b = evaluate_mask(fm, test.x, test.lengths, y, mask, acc_f, label)
        g = golden_run(qm, test.x, test.lengths, skip_mask=mask)
        row(label, "baseline", g["skip_rate"], b["accuracy_float"], float(np.mean(g["pred"] == y)), g["run_steps"])
    log(f"[skip:{name}] dense and baselines on {len(test)} test sequences ({time.time() - t0:.0f} s)")

    types = ("mlp", "tree") if quick else TYPES
    rounds = 1 if quick else ROUNDS
    folders = {t: _predictor(name, d, t, rounds, cfg["max_loss"], out, log) for t in types}
    metas = {t: load_folder(f, ir)[1] for t, f in folders.items()}
    # the oracle (float) at its validation threshold
    o = metas[types[0]]["oracle"]
    orc = features.run(fm, test.x, test.lengths, decide=features.oracle_rule(o["threshold"]), measure=o["measure"],
                include_cell=o["include_cell"])
    row(f"oracle ({o['measure']}{'+cell' if o['include_cell'] else ''}, float)", "oracle", orc.skip_rate,
        orc.accuracy(y), None, orc.ran.sum(axis=1), val_skip_rate=o["val"]["chosen"]["skip_rate"])
    # predictors (int8 golden on the whole test set; the float predictor alongside)
    for t in types:
        p, meta = load_folder(folders[t], ir)
        qp = quantize_predictor(p, qm)
        g = golden_run(qm, test.x, test.lengths, qp=qp)
        fr = features.run(fm, test.x, test.lengths, decide=features.predictor_rule(p))
        row(f"{t} predictor", "predictor", g["skip_rate"], fr.accuracy(y), float(np.mean(g["pred"] == y)),
            g["run_steps"], qp.macs, type=t, params=meta["params"], params_ratio=meta["params_ratio"],
            val_skip_rate=meta["val"]["skip_rate"], val_loss_points=meta["val"]["loss_points"],
            float_skip_rate=fr.skip_rate, description=meta["description"])
        res["rounds"][t] = meta["rounds"]
    if not quick:  # the paper's method alone: oracle labels, no relabelling
        f0 = _predictor(name, d, "mlp", 0, cfg["max_loss"], out, log)
        p, meta = load_folder(f0, ir)
        qp = quantize_predictor(p, qm)
        g = golden_run(qm, test.x, test.lengths, qp=qp)
        row("mlp predictor, oracle labels only", "predictor-r0", g["skip_rate"], None, float(np.mean(g["pred"] == y)),
            g["run_steps"], qp.macs, type="mlp", params=meta["params"], params_ratio=meta["params_ratio"],
            val_skip_rate=meta["val"]["skip_rate"], val_loss_points=meta["val"]["loss_points"])
    # device: the predictor with the largest validation skip rate is the primary one
    primary = max(types, key=lambda t: metas[t]["val"]["skip_rate"])
    res["primary"] = primary
    if name == "sst2" and not quick:   # benchmarks/targets_bench.py picks it up from here
        import shutil
        dst = Path(bench_out("sst2")) / "predictor"
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(folders[primary], dst)
    for t in types:
        n_emu = cfg["emulate_primary"] if t == primary else cfg["emulate_other"]
        data = d["test_emulate"] if (t == primary or name == "sst2") else d["test_small"]
        if quick:
            n_emu, data = 30, d["test_emulate"] if name == "sst2" else d["test_small"]
        t1 = time.time()
        rep = convert(d["model"], "cortex-m4", data, str(out / f"m4-{t}"), calib=d["calib"], emulate_max=n_emu,
                      traffic_sample=16, methods={"skip": {"predictor": str(folders[t])}}, progress=False)
        s = rep["skip"]
        res["devices"][t] = {"n_data": rep["accuracy"]["n"], "n_emulated": rep["accuracy"]["n_device"],
                             "bitexact": rep["bitexact"], "accuracy": rep["accuracy"], "skip": s,
                             "footprint": rep.get("footprint"), "wall_s": round(time.time() - t1, 1)}
        c = s["emulated"]["cycles_per_inference"]
        log(f"[skip:{name}] {t}: emulated {rep['accuracy']['n_device']} sequences, cycles "
            f"{c['dense']:,.0f} -> {c['skip']:,.0f}")
    res["seconds"] = round(time.time() - t0, 1)
    return res


def _cut(sec: dict, what: str):
    """The cut (1 - skip / dense) of the skip section's emulated ``cycles``, or of the MACs on the
    emulated sequences (``macs``); None when not emulated."""
    e = sec.get("emulated") or {}
    r = e.get("mac_reduction") if what == "macs" else (e.get("reduction") or {}).get(what)
    return r["cut"] if r else None


ORACLE_SCALES = (0.4, 0.55, 0.7, 0.85, 1.0)


def oracle_test_curve(name: str, scales=ORACLE_SCALES) -> list:
    """Diagnostic, not an operating point: the float oracle on the *test* set at fractions
    of the threshold it chose on validation, to show what skip rate the model allows at all
    within the budget on test data. Losses in points against the dense float model."""
    from rnnskip import pipeline
    from rnnskip.datasets import load_npz
    from rnnskip.skip import features
    from rnnskip.skip.folder import load as load_folder
    out = Path(bench_out(f"skip/{name}"))
    d = _sst2(out) if name == "sst2" else _imdb(out)
    ir = pipeline.import_model(d["model"])
    fm = pipeline.float_model(ir)
    test = load_npz(d["test"], ir)
    o = load_folder(out / f"pred-{TYPES[0]}", ir)[1]["oracle"]
    acc0 = features.run(fm, test.x, test.lengths).accuracy(test.y)
    pts = []
    for sc in scales:
        r = features.run(fm, test.x, test.lengths, decide=features.oracle_rule(o["threshold"] * sc),
                         measure=o["measure"], include_cell=o["include_cell"])
        pts.append({"scale": sc, "skip_rate": r.skip_rate, "loss_points_float": 100.0 * (acc0 - r.accuracy(test.y))})
    return pts


def run(quick: bool = False) -> dict:
    res = {}
    for name in SETS:
        res[name] = _bench_set(name, quick)
        if not quick:
            res[name]["oracle_test_curve"] = oracle_test_curve(name)
        write_json(os.path.join(bench_out("skip"), f"{name}.json"), res[name])
    return res


# ---- markdown -------------------------------------------------------------------------------

def _p(v, d=1):
    return "-" if v is None else f"{100 * v:.{d}f}%"


def _a(v):
    return "-" if v is None else f"{100 * v:.2f}"


def _pt(v):
    return "-" if v is None else f"{v:+.2f}"


def _set_md(r: dict) -> list:
    cfg = SETS[r["set"]]
    L = [f"### {r['title']} (test: {r['n_test']:,} sequences, {r['mean_length']:.1f} steps on average; "
         f"budget {r['max_loss']} points)", ""]
    mm = r.get("model_meta")
    if mm:
        L += [f"Model: `{mm['module']}` version {mm['code_version']}, {mm['params']:,} parameters, float (Keras) "
              f"test accuracy {_a(mm['float_test_accuracy'])}"
              + (f", early stopping kept epoch {mm['epoch_kept']} of {mm['epochs_run']}"
                 if mm.get("epoch_kept") else "")
              + ".", ""]
    L += [
         "| method | steps skipped | accuracy float | accuracy int8 | loss int8 (pt) | effective MAC cut | "
         "params (ratio) | validation skip | validation loss (pt) |", "|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        par = f"{x['params']:,} ({x['params_ratio']:.1%})" if "params" in x else "-"
        L.append(f"| {x['method']} | {_p(x['skip_rate'])} | {_a(x['accuracy_float'])} | {_a(x['accuracy_int8'])} | "
                 f"{_pt(x['loss_points_int8'])} | {_p(x['mac_reduction'])} | {par} | {_p(x.get('val_skip_rate'))} | "
                 f"{_pt(x.get('val_loss_points'))} |")
    L += ["", "| predictor on cortex-m4 | sequences emulated | bit-exact | cycles / inference dense -> skip | "
          "cycle cut | MAC cut (same sequences) | cycle cut / MAC cut | flash read B / inference dense -> skip |",
          "|---|---|---|---|---|---|---|---|"]
    for t in [t for t in TYPES if t in r["devices"]]:
        dv = r["devices"][t]
        e = dv["skip"].get("emulated") or {}
        c, f = e["cycles_per_inference"], e["flash_read_bytes_per_inference"]
        cc, mc = _cut(dv["skip"], "cycles"), _cut(dv["skip"], "macs")
        ratio = f"{cc / mc:.2f}" if cc is not None and mc else "-"
        L.append(f"| {t}{' (primary)' if t == r['primary'] else ''} | {dv['n_emulated']} | "
                 f"{dv['bitexact']['mismatches']} mismatches / {dv['bitexact']['checked']} | "
                 f"{c['dense']:,.0f} -> {c['skip']:,.0f} | {_p(cc)} | {_p(mc)} | {ratio} | "
                 f"{f['dense']:,.0f} -> {f['skip']:,.0f} |")
    pr = next(x for x in r["rows"] if x.get("type") == r["primary"] and x["kind"] == "predictor")
    orc = next(x for x in r["rows"] if x["kind"] == "oracle")
    dv = r["devices"][r["primary"]]["skip"]
    cc, mc = _cut(dv, "cycles"), _cut(dv, "macs")
    fl = dv["emulated"]["flash_read_bytes_per_inference"]
    ok_mac = pr["mac_reduction"] >= cfg["target_mac_cut"] and pr["loss_points_int8"] <= r["max_loss"]
    # the primary predictor met the budget on validation but not on test
    budget_not_carried = (pr.get("val_loss_points") is not None
                          and pr["val_loss_points"] <= r["max_loss"] < pr["loss_points_int8"])
    L += ["", f"Goals, primary predictor = {r['primary']} (largest validation skip rate): "
              f"effective MAC cut {_p(pr['mac_reduction'])} at {_pt(pr['loss_points_int8'])} points int8 loss "
              f"(target >= {cfg['target_mac_cut']:.0%} at <= {r['max_loss']}): **{'met' if ok_mac else 'not met'}**; "
              f"cycle cut {_p(cc)} vs {0.8 * mc:.1%} needed (0.8 x MAC cut on the emulated sequences): "
              f"**{'met' if cc is not None and mc and cc >= 0.8 * mc else 'not met'}**; flash read traffic "
              f"{'falls' if fl['skip'] < fl['dense'] else 'does not fall'}. "
              f"Oracle skip rate on test {_p(orc['skip_rate'])} at its validation threshold "
              f"(validation {_p(orc.get('val_skip_rate'))}; the paper's ideal predictor: "
              f"{cfg['paper_oracle']:.0%} without loss)."
              + (" The thresholds were calibrated on the validation set, where the primary predictor stayed within "
                 f"budget ({_pt(pr.get('val_loss_points'))} points); on the test set the same predictor and threshold "
                 f"lose {_pt(pr['loss_points_int8'])} points, so the budget does not carry over from validation to "
                 "test here." if budget_not_carried else ""), ""]
    if r.get("oracle_test_curve"):
        L += ["Diagnostic (not an operating point: thresholds swept on the test set itself): the float oracle on "
              "test at fractions of its validation threshold - " + "; ".join(
                  f"x{c['scale']:.2f}: {_p(c['skip_rate'])} skipped at {_pt(c['loss_points_float'])} pt"
                  for c in r["oracle_test_curve"]) + ".", ""]
    if r.get("rounds"):
        L.append("Relabel rounds (validation skip rate within budget per round; 0 = oracle labels only, "
                 "the paper's method): "
                 + "; ".join(f"{t}: " + " -> ".join(_p(x["val_skip_rate"]) for x in r["rounds"][t])
                             for t in TYPES if t in r["rounds"]) + ".")
        L.append("")
    return L


def markdown(res: dict) -> str:
    L = ["## Time-step skipping without retraining", "",
         "A tiny int8 predictor in front of the frozen LSTM decides before each step, from the embedded input and the "
         "hidden state reached, whether to skip the step (state kept). Losses are accuracy points against the dense "
         "int8 model on the same test set; effective MACs count the steps run, the predictor on every step, and the "
         "head. Oracle and baselines decide on the float model (int8 accuracy of the baselines with the same skips). "
         "The skip-predictor method is the subject of Arm's US patent 11,663,814 B2 (see docs/skip.md).", ""]
    for name in SETS:
        if name in res:
            L += _set_md(res[name])
    return "\n".join(L)


def summary(res: dict) -> list:
    out, tab = [], []
    for name in SETS:
        if name not in res:
            continue
        r = res[name]
        pr = next(x for x in r["rows"] if x.get("type") == r["primary"] and x["kind"] == "predictor")
        dv = r["devices"][r["primary"]]["skip"]
        mm = r.get("model_meta") or {}
        model = (f" (model `{mm['module']}` v{mm['code_version']}, float test accuracy "
                 f"{_a(mm['float_test_accuracy'])})") if mm.get("module") else ""
        out.append(f"- Skip predictor ({r['primary']}), {r['title']}{model}: {_p(pr['skip_rate'])} of steps skipped, "
                   f"effective MACs -{_p(pr['mac_reduction'])}, emulated cycles -{_p(_cut(dv, 'cycles'))}, "
                   f"int8 accuracy loss {_pt(pr['loss_points_int8'])} points.")
        for x in r["rows"]:
            if x["kind"] in ("dense", "predictor-r0"):
                continue
            cyc = (_cut(r["devices"].get(x.get("type"), {}).get("skip", {}), "cycles") if x["kind"] == "predictor"
                   else None)
            loss = (_pt(x["loss_points_int8"]) if x["loss_points_int8"] is not None
                    else f"{_pt(x['loss_points_float'])} (float)")
            tab.append(f"| {r['title']} | {x['method']} | {_p(x['skip_rate'])} | {loss} | "
                       f"{_p(x['mac_reduction'])} | {_p(cyc)} |")
    if tab:
        out += ["", "| set | method | steps skipped | accuracy loss, int8 (pt) | effective MAC cut | "
                "cycle cut (cortex-m4) |", "|---|---|---|---|---|---|"] + tab + [""]
    return out
