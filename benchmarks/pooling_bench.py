"""Pooling over time benchmark (docs/pooling.md): recurrent models that pool every step's output, on real data.

FSDD spoken digits (``../shared/data/fsdd``): the 40 log-mel features and the official split of
``benchmarks/fsdd.py`` (validation = every 10th take of the training part), recordings zero-padded after their
end and skipped by ``Masking(0.0)``. Three models, trained here with tf_keras the same way (fixed seed, early
stopping on validation loss), so pooling can be compared with reading the last step:

* ``Masking -> GRU(64) -> Dense(10)``: the last step's output (no pooling), the reference;
* ``Masking -> GRU(64, return_sequences) -> GlobalAveragePooling1D -> Dense(10)``;
* ``Masking -> Bidirectional(GRU(32, return_sequences)) -> GlobalMaxPooling1D -> Dense(10)``.

Each is converted with the product's own flow (``common.convert`` = rnnskip-convert) dense, with run-time delta
thresholds (delta-tune's sweep on validation, the cheapest point within ``MAX_LOSS`` of the dense float model
there, as ``delta_bench._tune``) and, where a skip predictor applies (not on a Bidirectional layer), with the MLP
skip predictor (train-predictor on the training split, operating point on validation). Accuracy: float reference
and int8 golden model on every test row; cycles, flash and RAM from the emulated cortex-m4 firmware (golden = host
build = firmware checked by the conversion).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .common import (
    bench_out,
    config_hash,
    fit_classifier,
    pyplot,
    read_json,
    shared_data,
    versions,
    write_json,
)
from .common import fmt_num as _n
from .common import fmt_pct as _p
from .common import fmt_x as _x

CODE_VERSION = 1
MAX_LOSS = 1.0            # points below the dense float model on validation (delta-tune, predictor)
TARGET = "cortex-m4"
TRAIN = dict(epochs=40, batch_size=32, learning_rate=2e-3, patience=6, seed=0)

MODELS = {
    "gru_last": {"title": "GRU(64), last step", "layers": "Masking -> GRU(64) -> Dense(10)", "skip": True},
    "gru_avg": {"title": "GRU(64), mean over time",
                "layers": "Masking -> GRU(64, return_sequences) -> GlobalAveragePooling1D -> Dense(10)", "skip": True},
    "bigru_max": {"title": "Bidirectional GRU(32), max over time",
                  "layers": "Masking -> Bidirectional(GRU(32, return_sequences)) -> GlobalMaxPooling1D -> Dense(10)",
                  "skip": False},
}
EMULATE = (24, 120)       # test rows emulated per firmware: --quick, full


def _log(msg):
    print(f"[pooling] {msg}", flush=True)


def _data(out: Path) -> dict:
    """train/val/test .npz: fsdd.split('official') with each recording's length (padding masked)."""
    from rnnskip.datasets import save_npz

    from .fsdd import features, split
    paths = {k: str(out / f"{k}.npz") for k in ("train", "val", "test")}
    if not all(os.path.isfile(p) for p in paths.values()):
        for k, d in zip(("train", "val", "test"), split(features(shared_data("fsdd")), "official")):
            save_npz(paths[k], d)
    return paths


def _build(name: str, n_in: int, n_out: int, keras):
    L = keras.layers
    rec = {"gru_last": [L.GRU(64)],
           "gru_avg": [L.GRU(64, return_sequences=True), L.GlobalAveragePooling1D()],
           "bigru_max": [L.Bidirectional(L.GRU(32, return_sequences=True)), L.GlobalMaxPooling1D()]}[name]
    return keras.Sequential([L.Masking(0.0, input_shape=(None, n_in))] + rec + [L.Dense(n_out, activation="softmax")])


def train(name: str) -> dict:
    """Train (or reuse) one model: bench_out/pooling/NAME/model.h5 and meta.json; the data in bench_out/pooling."""
    from rnnskip.datasets import load_npz
    root = Path(bench_out("pooling"))
    paths = _data(root)
    out = Path(bench_out(f"pooling/{name}"))
    p = dict(paths, model=str(out / "model.h5"), meta=str(out / "meta.json"))
    h = config_hash({"train": TRAIN, "name": name, "layers": MODELS[name]["layers"], "code": CODE_VERSION})
    if os.path.isfile(p["meta"]) and os.path.isfile(p["model"]) and read_json(p["meta"]).get("config_hash") == h:
        return {"paths": p, "meta": read_json(p["meta"]), "dir": str(out)}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_keras as keras
    tr, va, te = (load_npz(p[k]) for k in ("train", "val", "test"))
    keras.utils.set_random_seed(TRAIN["seed"])
    m = _build(name, tr.x.shape[2], 10, keras)
    fit = fit_classifier(m, tr, va, TRAIN, keras)
    m.save(p["model"])
    meta = {"config_hash": h, **fit, "keras_test_accuracy": float(m.evaluate(te.x, te.y, verbose=0)[1]),
            "n_train": len(tr), "n_val": len(va), "n_test": len(te), "versions": versions()}
    write_json(p["meta"], meta)
    _log(f"{name}: trained in {meta['train_seconds']} s ({meta['epochs_run']} epochs, kept {meta['epoch_kept']})")
    return {"paths": p, "meta": meta, "dir": str(out)}


def _golden_acc(model: str, test: str, calib: str) -> dict:
    """Float and dense int8 accuracy on every test row (golden model, no emulation)."""
    from rnnskip import pipeline
    from rnnskip.datasets import load_npz
    from rnnskip.quant.golden import GoldenModel, predict_classes
    ir = pipeline.import_model(model)
    ds, cal = load_npz(test, ir), load_npz(calib, ir)
    qm, _ = pipeline.quantize_model(ir, cal, 1000, progress=False)
    pf = np.argmax(pipeline.float_model(ir).predict(ds.x, ds.lengths), 1)
    pq = predict_classes(GoldenModel(qm).run(ds.x, ds.lengths)[0], qm.output_activation)
    return {"n": len(ds), "float": float(np.mean(pf == ds.y)), "int8": float(np.mean(pq == ds.y)),
            "disagree": int(np.sum(pf != pq))}


def _row(rep: dict, method: str | None) -> dict:
    """The frontends bench's numbers of one conversion, with the pooling and the method's setting."""
    from .frontend_bench import _row as numbers
    r = dict(numbers(rep, method), pool_over_time=rep["model"].get("pool_over_time"))
    if method == "delta":
        r["setting"] = ", ".join(f"x{t['input']}/h{t['hidden']}" for t in r["thresholds"])
    elif method == "skip":
        r["setting"] = f"{100 * r['skip_rate']:.1f}% skipped"
    return r


def bench_model(name: str, quick: bool) -> dict:
    from .delta_bench import _tune
    from .frontend_bench import _predictor, convert_runs
    spec = MODELS[name]
    t0 = time.time()
    tr = train(name)
    p, base = tr["paths"], Path(tr["dir"])
    k = EMULATE[0 if quick else 1]
    res = {"name": name, "title": spec["title"], "layers": spec["layers"], "meta": tr["meta"]}
    _log(f"{name}: float and int8 on the whole test split")
    res["golden"] = _golden_acc(p["model"], p["test"], p["train"])
    _log(f"{name}: delta-tune on validation")
    dj = base / "delta_runtime.json"
    _tune(p["model"], p["val"], p["train"], dj, max_loss=MAX_LOSS)
    runs = [("dense", None), ("delta", {"delta": str(dj)})]
    if spec["skip"]:
        _log(f"{name}: skip predictor (train-predictor on the training split, validation for the operating point)")
        folder = _predictor(p["model"], p["train"], p["val"], base / "pred-mlp", rounds=1 if quick else 2)
        runs.append(("skip", {"skip": {"predictor": str(folder)}}))
    reps = convert_runs(p, base, runs, k, lambda label: _log(f"{name}: convert {label} ({k} test rows emulated)"))
    for label, rep in reps.items():
        res[label] = _row(rep, None if label == "dense" else label)
    m = reps["dense"]["model"]
    res["model"] = {"macs_per_step": m["macs_per_step"], "head_macs": m["head_macs"], "params": m["params"]}
    res["seconds"] = round(time.time() - t0, 1)
    return res


def _plot(res: dict, path: str) -> str | None:
    """Cycles per inference per model and method, next to the accuracy."""
    plt = pyplot()
    if plt is None:
        return None
    models = list(res["models"].values())
    fig, ax = plt.subplots(figsize=(8, 3.6))
    w = 0.26
    for j, label in enumerate(("dense", "delta", "skip")):
        xs = [i + (j - 1) * w for i, r in enumerate(models) if label in r]
        ys = [r[label]["cycles_per_inference"] / 1e6 for r in models if label in r]
        bars = ax.bar(xs, ys, w, label=label)
        for b, r in zip(bars, [r for r in models if label in r]):
            ax.annotate(f"{100 * r[label]['accuracy_int8']:.1f}%", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(models)), [r["title"] for r in models], fontsize=8)
    ax.set_ylabel("Mcycles per inference")
    ax.set_title(f"FSDD, {res['target']} cycle model: cycles per recording (int8 test accuracy on each bar)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(quick: bool = False) -> dict:
    res = {"quick": quick, "target": TARGET, "max_loss": MAX_LOSS, "models": {}}
    for name in MODELS:
        res["models"][name] = bench_model(name, quick)
    out = bench_out("pooling")
    write_json(os.path.join(out, "pooling.json"), res)
    res["plot"] = _plot(res, os.path.join(out, "pooling_cycles.png"))
    return res


# ---------------------------------------------------------------- markdown
HEAD = ["| model | firmware | accuracy float % | int8 % | int8 - float (pt) | thresholds / skip rate | "
        "effective MAC / inf | cycles / inference | vs its dense | flash B | RAM B | golden = firmware mismatches |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]


def _table_row(r: dict, label: str) -> str:
    x = r[label]
    b = x["bitexact"]
    return (f"| {r['title']} | {label} | {_p(x['accuracy_float'])} | {_p(x['accuracy_int8'])} | "
            f"{100 * (x['accuracy_int8'] - x['accuracy_float']):+.2f} | {x.get('setting', '-')} | "
            f"{_n(x.get('macs_effective', x['macs_per_inference']))} | {_n(x['cycles_per_inference'])} | "
            f"{_x(x['cycle_reduction_x']) + ' fewer' if x.get('cycle_reduction_x') else '-'} | "
            f"{_n(x['flash_bytes'])} | {_n(x['ram_bytes'])} | {b['mismatches']} / {b['checked']} |")


def markdown(res: dict) -> str:
    rows = list(res["models"].values())
    L = [f"## Pooling over time: FSDD on {res['target']}", "",
         "`benchmarks/pooling_bench.py` (docs/pooling.md). Three models on the FSDD log-mel features (official split, "
         "recordings zero-padded and masked), trained here the same way with tf_keras (fixed seed, early stopping on "
         "validation loss): one reads the last step, one averages every step's output, one max-pools a "
         "Bidirectional layer's outputs. Each converted with the product's flow (rnnskip-convert): dense int8, "
         "run-time delta (delta-tune's sweep on validation, the cheapest point within "
         f"{res['max_loss']:g} point of the dense float model there) and, except on the Bidirectional layer (no "
         "skip predictor there), the MLP skip predictor (train-predictor, operating point on validation, same "
         "budget). Accuracy: float reference and int8 golden model on every test row (nothing tuned on test); "
         "the int8 column of the delta and skip rows is the golden model with the method. Cycles: the "
         f"conversion's emulated firmware ({res['target']} cycle model) on the first test rows; MACs count the "
         "recurrent layers and the head as the reports do (effective: with the method; the skip row includes the "
         "predictor). Mismatches: golden = host build = firmware.", "", *HEAD]
    for r in rows:
        L += [_table_row(r, label) for label in ("dense", "delta", "skip") if label in r]
    L.append("")
    for r in rows:
        g, meta = r["golden"], r["meta"]
        L.append(f"- {r['title']}: `{r['layers']}`; {meta['params']:,} parameters; trained {meta['epochs_run']} "
                 f"epochs, kept {meta['epoch_kept']}; Keras' own test accuracy {_p(meta['keras_test_accuracy'])}%. On "
                 f"all {g['n']} test rows float {_p(g['float'])}%, int8 {_p(g['int8'])}% "
                 f"({100 * (g['int8'] - g['float']):+.2f} pt; int8 and float predict different classes on "
                 f"{g['disagree']} rows); recurrent MACs per step {_n(r['model']['macs_per_step'])}, head "
                 f"{_n(r['model']['head_macs'])}; whole model {r['seconds']:.0f} s.")
    if res.get("plot"):
        L += ["", f"Cycles and accuracy per model and method: `bench_out/pooling/{os.path.basename(res['plot'])}`."]
    return "\n".join(L)


def summary(res: dict) -> list:
    out = []
    for r in res["models"].values():
        g = r["golden"]
        if r["dense"].get("pool_over_time"):
            out.append(f"- FSDD {r['title']} (pooling over time) on {res['target']}: float {_p(g['float'])}%, int8 "
                       f"{_p(g['int8'])}% ({100 * (g['int8'] - g['float']):+.2f} pt); "
                       f"{_n(r['dense']['cycles_per_inference'])} cycles per recording dense, run-time delta "
                       f"{_x(r['delta'].get('cycle_reduction_x'))} fewer at "
                       f"{100 * (r['delta']['accuracy_int8'] - r['delta']['accuracy_float']):+.2f} pt on test (its "
                       f"thresholds chosen within {res['max_loss']:g} pt on validation).")
    return out
