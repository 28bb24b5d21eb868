"""Delta-network benchmark: delta networks (Neil et al., ICML 2017) on cortex-m4.

* Kernel: cycles of the gather + column-sparse mat-vec against the fraction of
  transmitting columns, next to the dense paired mat-vec on the same matrix.
* FSDD (the open stand-in for TIDIGITS, ``../shared/data/fsdd``): 40 log-mel
  features, GRU(128); official split (take 0-4 test) and leave-one-speaker-out.
  Dense vs run-time delta (thresholds tuned on validation, no retraining) vs
  delta-trained (``delta-train``, then tuned the same way): accuracy, effective
  MACs, emulated cycles, flash reads; plus a firmware-level threshold sweep.
* JapaneseVowels (aeon, bundled) and the SST-2 LSTM of the pipeline benchmark:
  run-time delta only.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from rnnskip.errors import RnnskipError

from .common import bench_out, convert, read_json, shared_data, write_json
from .common import fmt_num as _n
from .common import fmt_pct as _p
from .common import fmt_x as _x

MAX_LOSS = 1.0            # accuracy points below the dense float model, on validation
TRAIN_THETA = (16, 40)    # delta-train thresholds (input, hidden; int8 steps)
TRAIN_CFG = dict(l1=0.02, lr=5e-4, noise=0.25, epochs=40, patience=8)
TRAIN_SEEDS = (0, 1, 2)   # official split: the seed with the best validation accuracy is deployed
TRAIN_CELL = 2048         # cell threshold in the loop of the second fine-tuning (pre-activation steps of 1/4096)
TRAIN_CELL_CFG = dict(l1=0.02, lr=5e-4, noise=0.25, epochs=12, patience=4)
#: what the FSDD rows say about re-tuning a delta-trained model on its 300 validation recordings
FSDD_TUNED_NOTE = ("the 300-recording validation set is small, so the cheapest point within budget there "
                   "overfits it; ")


def _log(msg):
    print(f"[delta] {msg}", flush=True)


def _tune(model, val, calib, out_json, max_loss=MAX_LOSS, grid=None, cell_grid=(), baseline=None):
    """The paper-style operating point: delta-tune's sweep on all of ``val`` and the cheapest point
    within ``max_loss`` of the dense float model there, not certified (``rnnskip delta-tune``
    certifies on held-out rows; FSDD's 300 validation recordings certify no budget near 1 point).
    ``cell_grid`` () tries no cell threshold (None: delta-tune's default grid). ``baseline``: the
    original dense model a fine-tuned ``model`` came from; the budget is then measured from that
    model's float accuracy on ``val``, as the tables' loss column is (a delta-trained model's own
    dense accuracy can be far below it: it is trained to run with the deltas)."""
    from rnnskip import pipeline
    from rnnskip.datasets import load_npz
    from rnnskip.delta.tune import CELL_GRID, GRID, tune
    from rnnskip.quant.grid import grid_of
    def stale():
        inputs = [model, val, calib] + ([baseline] if baseline else [])
        if not Path(out_json).is_file() or any(Path(out_json).stat().st_mtime < Path(f).stat().st_mtime
                                               for f in inputs):
            return True
        return read_json(str(out_json)).get("tuning", {}).get("baseline") != (str(baseline) if baseline else None)
    if stale():
        ir = pipeline.import_model(model)
        va, cal = load_npz(str(val), ir), load_npz(str(calib), ir)
        qm, _ = pipeline.quantize_model(ir, cal, 1000, progress=False)
        ref = None
        if baseline:
            from rnnskip.reference import FloatModel
            from rnnskip.skip.features import classes
            ref = float(np.mean(classes(FloatModel(pipeline.import_model(str(baseline))).predict(va.x, va.lengths))
                                == va.y))
        res = tune(ir, qm, va, max_loss=max_loss, reference="float", grid=grid or GRID, float_accuracy=ref,
                   cell_grid=CELL_GRID if cell_grid is None else cell_grid)
        spec = res.spec(ir)
        spec.grid = grid_of(qm)
        spec.tuning.update({"calibration": str(calib), "validation": str(val),
                            "baseline": str(baseline) if baseline else None,
                            "certified": None})      # a validation estimate, not a certificate
        spec.save(out_json, ir)
    return json.loads(Path(out_json).read_text())


def _convert(model, data, calib, out, delta_json, emulate_max, workers=2):
    t0 = time.time()
    rep = convert(model, "cortex-m4", data, out, calib=calib, emulate_max=emulate_max, traffic_sample=8,
                  workers=workers, progress=False, methods={"delta": delta_json})
    rep["wall_s"] = time.time() - t0
    return rep


def _golden_eval(model, data, calib, delta_json=None):
    """Accuracies and MACs from the golden models only (no emulation): float, dense int8, delta int8."""
    from rnnskip import pipeline
    from rnnskip.datasets import load_npz
    from rnnskip.delta.golden import effective_macs, run_stats, with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.quant.golden import GoldenModel, predict_classes
    ir = pipeline.import_model(model)
    ds, cal = load_npz(str(data), ir), load_npz(str(calib), ir)
    qm, _ = pipeline.quantize_model(ir, cal, 1000, progress=False)
    probs = pipeline.float_model(ir).predict(ds.x, ds.lengths)
    fp = np.argmax(probs, 1) if probs.shape[1] > 1 else (probs[:, 0] > 0.5).astype(int)
    out, _ = GoldenModel(qm).run(ds.x, ds.lengths)
    r = {"n": len(ds), "float": float(np.mean(fp == ds.y)),
         "dense_int8": float(np.mean(predict_classes(out, qm.output_activation) == ds.y))}
    if delta_json:
        spec = DeltaSpec.load(delta_json)
        o, _, st = run_stats(with_delta(qm, spec), ds.x, ds.lengths)
        m = effective_macs(qm, st)
        r.update(delta_int8=float(np.mean(predict_classes(o, qm.output_activation) == ds.y)),
                 mac_reduction_x=float(m["dense"].sum() / m["effective"].sum()),
                 thresholds=[spec.theta_x, spec.theta_h])
    return r


def _summarise(rep: dict) -> dict:
    """The numbers this benchmark tabulates, from a report's ``delta`` section."""
    d = rep["delta"]
    e = d.get("emulated") or {}
    red = e.get("reduction") or {}

    def x(r):
        return r["x_fewer"] if r else None
    return {"accuracy": d["accuracy"], "n": d["n"], "thresholds": d["thresholds"], "density": d["density"],
            "macs_per_inference": {"dense": d["macs_per_inference"]["dense"],
                                   "effective": d["macs_per_inference"]["delta"]},
            "mac_reduction_x": x(d["mac_reduction"]),
            "cycles_per_inference": e.get("cycles_per_inference"), "cycle_reduction_x": x(red.get("cycles")),
            "mac_reduction_x_emulated": x(e.get("mac_reduction")),
            "cycle_vs_mac_reduction": (e.get("cycles_vs_macs") or {}).get("x_fewer"),
            "flash_read_bytes_per_inference": e.get("flash_read_bytes_per_inference"),
            "flash_read_reduction_x": x(red.get("flash_read_bytes")),
            "sequences_emulated": e.get("sequences"),
            "bitexact_mismatches": rep["bitexact"]["mismatches"], "bitexact_checked": rep["bitexact"]["checked"],
            "firmware_flash_bytes": e.get("firmware_flash_bytes"), "wall_s": rep.get("wall_s"),
            "cycles_per_step_by_part": e.get("cycles_per_step_by_part")}


# ---------------------------------------------------------------- kernel sweep
def kernel_sweep() -> dict:
    from rnnskip.delta import kernel_cycles
    emu, _ = kernel_cycles.build(Path(bench_out("delta")) / "kbench", "dsp")
    res = kernel_cycles.density_sweep(emu, rows=384, cols=168,
                               densities=(0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0))
    full = res["points"][-1]
    dense = res["dense_matvec_cycles"]
    res["full_density_overhead_sparse"] = (full["gather_cycles"] + full["matvec_cycles"]) / dense - 1
    return res


# ---------------------------------------------------------------- where the cycles go
def _parts() -> dict:
    """The conversions' own per-part profile parts (rnnskip.pipeline.stages.kernel_parts)."""
    from rnnskip.delta.golden import DeltaMethod
    from rnnskip.pipeline.stages import kernel_parts
    return kernel_parts("portable", (DeltaMethod,))


#: the step code and the rest, as labelled now and in results saved before the parts were shared
TAIL_LABELS = ("step code (with the cells)", "step code (cells, inlined)", "step code (inlined cells)",
               "other (head, I/O)", "other (head, I/O, branches)")


def cycle_breakdown(conv_dir: Path, data, k: int) -> dict:
    """Cycles per step by part, delta firmware vs the dense firmware of the same model,
    on the first k sequences of ``data`` (emulated function profile). 'step code' is rnnskip_step
    (the step's bookkeeping) and each layer's cell function rnnskip_step_l<i>_cells."""
    from rnnskip import outputs, targets
    from rnnskip.datasets import load_npz
    from rnnskip.delta.golden import effective_macs, run_stats
    from rnnskip.emulators.unicorn import profile_functions
    from rnnskip.pipeline import workdir
    from rnnskip.pipeline.stages import parts_per_step
    from rnnskip.quant.golden import GoldenModel
    qm, ir = workdir.load_model(conv_dir), workdir.load_ir(conv_dir)
    parts = _parts()
    ds = load_npz(str(data), ir)
    ds = ds.subset(np.arange(min(k, len(ds))))
    g = GoldenModel(qm)
    dev_x, valid = g.device_inputs(ds.x), (None if qm.token_input else g.valid_steps(ds.x))
    _, _, st = run_stats(qm, ds.x, ds.lengths)
    m = effective_macs(qm, st)
    steps = float(ds.lengths.sum())
    t = targets.load("cortex-m4")
    out = {"sequences": len(ds), "steps": steps, "macs_dense": float(m["dense"].sum()),
           "macs_delta": float(m["effective"].sum())}
    for name, elf in (("delta", conv_dir / "firmware" / "firmware.elf"),
                      ("dense", conv_dir / "without-delta" / "firmware" / "firmware.elf")):
        prof = profile_functions(elf, t, dev_x, ds.lengths, valid, outputs.macs_budget(qm))
        out[name] = {"per_step": parts_per_step(prof, parts, steps), "cycles_per_step": sum(prof.values()) / steps}
    return out


# ---------------------------------------------------------------- firmware threshold sweep
def step_sweep(model, data, calib, thetas, k=12) -> dict:
    """Cycles per inference of the firmware at uniform thresholds (first k sequences),
    with the dense firmware."""
    from rnnskip import pipeline, targets
    from rnnskip.datasets import load_npz
    from rnnskip.delta.golden import densities, effective_macs, run_stats, with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.emulators.base import STAT_FIELDS
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.generate import generate
    ir = pipeline.import_model(model)
    ds, cal = load_npz(str(data), ir), load_npz(str(calib), ir)
    ds = ds.subset(np.arange(min(k, len(ds))))
    qm0, _ = pipeline.quantize_model(ir, cal, 1000, progress=False)
    t = targets.load("cortex-m4")
    root = Path(bench_out("delta")) / "step_sweep"
    rows = []
    cases = [("dense", None)] + [(f"theta {a}/{b}", (a, b)) for a, b in thetas]
    for name, th in cases:
        qm = with_delta(qm0, None if th is None else DeltaSpec([th[0]] * len(qm0.layers), [th[1]] * len(qm0.layers)))
        d = root / name.replace(" ", "_").replace("/", "-")
        generate(qm, d / "src", max_t=int(ds.x.shape[1]))
        fw = pipeline.build_target(d / "src", d / "fw", t, "dsp")
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw,
                               emulator=Unicorn(t, traffic_sample=2, workers=2, progress=False))
        cyc = ev.emu.stats[:, STAT_FIELDS.index("cycles")]
        fl = ev.emu.stats[ev.emu.traffic_measured, STAT_FIELDS.index("flash_read_bytes")]
        r = {"case": name, "cycles_per_inference": float(cyc.mean()), "flash_read_bytes": float(fl.mean()),
             "mismatches": ev.device_mismatches, "flash_bytes": fw.flash_bytes}
        if th is not None:
            _, _, st = run_stats(qm, ds.x, ds.lengths)
            m = effective_macs(qm, st)
            r.update(density=densities(qm, st), mac_reduction_x=float(m["dense"].sum() / m["effective"].sum()))
        rows.append(r)
    dense = rows[0]["cycles_per_inference"]
    for r in rows:
        r["cycle_reduction_x"] = dense / r["cycles_per_inference"]
    return {"sequences": len(ds), "rows": rows}


# ---------------------------------------------------------------- FSDD
def fsdd_official(quick: bool) -> dict:
    from .fsdd import train as train_fsdd
    r = train_fsdd("official")
    res = delta_ladder(r, quick, "FSDD official")
    p = r["paths"]
    _log("FSDD official: firmware threshold sweep")
    res["sweep"] = step_sweep(p["model"], p["test"], p["train"],
                              [(0, 0), (4, 4), (8, 8), (16, 16), (16, 24), (32, 32), (64, 64)], k=6 if quick else 12)
    return res


def delta_ladder(r: dict, quick: bool, name: str, runtime_json=None, train_theta=TRAIN_THETA,
                 emulate=(24, 100)) -> dict:
    """Dense vs run-time delta vs delta-trained vs delta-trained with the cell threshold on the
    model ``r`` (fsdd.train's result, or the same keys: paths model/train/val/test and an optional
    calib, the calibration rows when they are not the training rows; dir; meta), each converted
    and emulated on the test split (``emulate`` sequences, quick / full), with the cycles per step
    by part; also read by the LSTM section. ``runtime_json``: the run-time thresholds (None: tuned
    on validation here); ``train_theta``: delta-train's input / hidden thresholds."""
    p, base = r["paths"], Path(r["dir"])
    cal = p.get("calib", p["train"])
    res = {"meta": r["meta"], "train_theta": list(train_theta)}
    k = emulate[0] if quick else emulate[1]
    _log(f"{name}: run-time delta (tune on validation, convert test)")
    dj = runtime_json or fsdd_thresholds(r)
    res["runtime"] = _summarise(_convert(p["model"], p["test"], cal, base / "m4-runtime", dj, k))
    res["runtime"]["tuning"] = read_json(str(dj))["tuning"]
    _log(f"{name}: delta-aware fine-tuning")
    from rnnskip.delta.train import run_delta_train
    seeds = []
    for seed in TRAIN_SEEDS:
        m = base / f"model_delta_trained_s{seed}.h5"
        info_p = base / f"delta_train_info_s{seed}.json"
        if not m.is_file() or not info_p.is_file():
            info = run_delta_train(p["model"], p["train"], p["val"], m, theta_x=train_theta[0], theta_h=train_theta[1],
                                   seed=seed, log=_log, **TRAIN_CFG)
            write_json(str(info_p), info)
        dj = m.with_suffix(".delta.json")
        seeds.append({"seed": seed, "model": str(m), "info": read_json(str(info_p)),
                      "val": _golden_eval(str(m), p["val"], cal, dj),
                      "test": _golden_eval(str(m), p["test"], cal, dj)})
    # model selection on validation only: best delta int8 accuracy, then the larger MAC reduction
    best = max(seeds, key=lambda r: (r["val"]["delta_int8"], r["val"]["mac_reduction_x"]))
    res["train_seeds"] = seeds
    res["train_selected_seed"] = best["seed"]
    trained = Path(best["model"])
    # deployed at the thresholds it was trained for (written by delta-train next to the model) ...
    res["trained"] = _summarise(_convert(str(trained), p["test"], cal, base / "m4-trained",
                                         trained.with_suffix(".delta.json"), k))
    res["trained"]["float_trained"] = best["test"]["float"]
    _log(f"{name}: fine-tuning with the cell threshold in the loop")
    cell, cell_info = base / "model_delta_trained_cell.h5", base / "delta_train_cell_info.json"
    if not cell.is_file():
        write_json(str(cell_info), run_delta_train(str(trained), p["train"], p["val"], cell,
                                                   delta_path=str(trained.with_suffix(".delta.json")),
                                                   theta_m=TRAIN_CELL, seed=best["seed"], log=_log,
                                                   **TRAIN_CELL_CFG))
    if cell_info.is_file():   # (a model trained before this file was kept has its info in the earlier JSON)
        res["train_cell_info"] = read_json(str(cell_info))
    # thresholds of all three kinds chosen on validation for it (delta-tune's grids, same budget
    # from the original dense float model); none within it: the thresholds it was trained at
    try:
        dj = _tune(str(cell), p["val"], cal, base / "delta_trained_cell.json", cell_grid=None, baseline=p["model"])
        src = {"source": "validation", "tuning": dj["tuning"]}
        dj = base / "delta_trained_cell.json"
    except RnnskipError as e:
        if not str(e).startswith("no thresholds keep"):   # only "nothing within the budget" falls back
            raise
        src = {"source": "training", "reason": str(e).split("; raise")[0]}
        dj = cell.with_suffix(".delta.json")
    res["trained_cell"] = _summarise(_convert(str(cell), p["test"], cal, base / "m4-trained-cell", dj, k))
    res["trained_cell"]["thresholds_from"] = src
    _log(f"{name}: cycles per step by part")
    res["breakdown"] = {"runtime": cycle_breakdown(base / "m4-runtime", p["test"], 6 if quick else 20),
                        "trained": cycle_breakdown(base / "m4-trained", p["test"], 6 if quick else 20)}
    # ... and with thresholds re-tuned on validation (golden only)
    try:
        _tune(str(trained), p["val"], cal, base / "delta_trained_tuned.json", baseline=p["model"])
        res["trained_tuned"] = _golden_eval(str(trained), p["test"], cal, base / "delta_trained_tuned.json")
    except RnnskipError as e:   # nothing within the budget there: the note says so (the row is unaffected)
        if not str(e).startswith("no thresholds keep"):
            raise
        res["trained_tuned_none"] = str(e).split("; raise")[0]
    return res


def fsdd_loso(quick: bool) -> dict:
    from .fsdd import SPEAKERS
    from .fsdd import train as train_fsdd
    out = {}
    for spk in (SPEAKERS[:1] if quick else SPEAKERS):
        r = train_fsdd(f"loso:{spk}")
        p, base = r["paths"], Path(r["dir"])
        _log(f"FSDD leave-one-speaker-out: {spk}")
        rt = _golden_eval(p["model"], p["test"], p["train"], fsdd_thresholds(r))
        trained = base / "model_delta_trained.h5"
        if not trained.is_file():
            from rnnskip.delta.train import run_delta_train
            run_delta_train(p["model"], p["train"], p["val"], trained, theta_x=TRAIN_THETA[0],
                            theta_h=TRAIN_THETA[1], log=lambda s: None, **TRAIN_CFG)
        tr = _golden_eval(str(trained), p["test"], p["train"], trained.with_suffix(".delta.json"))
        out[spk] = {"runtime": rt, "trained": tr}
    return out


# ---------------------------------------------------------------- JapaneseVowels
def japanese_vowels(quick: bool) -> dict:
    from rnnskip.datasets import load_aeon, save_npz
    base = Path(bench_out("delta")) / "japanese_vowels"
    base.mkdir(parents=True, exist_ok=True)
    model = base / "model.h5"
    if not model.is_file():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tf_keras as keras
        tr, classes = load_aeon("JapaneseVowels", "train")
        te, _ = load_aeon("JapaneseVowels", "test")
        rng = np.random.default_rng(0)
        perm = rng.permutation(len(tr))
        va, fit = tr.subset(np.sort(perm[:54])), tr.subset(np.sort(perm[54:]))
        T = max(tr.x.shape[1], te.x.shape[1])
        for name, d in (("train", fit), ("val", va), ("test", te)):
            if d.x.shape[1] < T:
                d.x = np.pad(d.x, ((0, 0), (0, T - d.x.shape[1]), (0, 0)))
            save_npz(str(base / f"{name}.npz"), d)
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.layers.Masking(0.0, input_shape=(None, tr.x.shape[2])),
                              keras.layers.GRU(64, reset_after=True),
                              keras.layers.Dense(len(classes), activation="softmax")])
        m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(fit.x, fit.y, validation_data=(va.x, va.y), epochs=60, batch_size=32, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=10, restore_best_weights=True)])
        m.save(model)
    _log("JapaneseVowels: run-time delta")
    _tune(str(model), base / "val.npz", base / "train.npz", base / "delta_runtime.json")
    res = _summarise(_convert(str(model), base / "test.npz", base / "train.npz", base / "m4-runtime",
                              base / "delta_runtime.json", 60 if quick else None))
    res["tuning"] = read_json(str(base / "delta_runtime.json"))["tuning"]
    return res


# ---------------------------------------------------------------- run-time thresholds (shared)
def fsdd_thresholds(r: dict) -> Path:
    """The run-time delta thresholds of the FSDD model ``r`` (fsdd.train's result), tuned once on
    its validation split (<model dir>/delta_runtime.json); also read by the boards section."""
    p, dj = r["paths"], Path(r["dir"]) / "delta_runtime.json"
    _tune(p["model"], p["val"], p["train"], dj)
    return dj


def sst2_thresholds() -> tuple:
    """(the SST-2 model's paths, its run-time delta thresholds tuned once on the model's own
    held-out validation rows: bench_out/delta/sst2_delta_runtime.json); also read by the boards section."""
    from rnnskip.datasets import save_npz

    from .sst2_model import model_train_split, train_sst2
    paths = train_sst2(shared_data(), bench_out("sst2"), verbose=0)
    val = Path(bench_out("delta")) / "sst2_val.npz"
    if not val.is_file():   # the model's own held-out validation rows (same seed and fraction as training)
        save_npz(str(val), model_train_split(paths, shared_data())[1].sample(1500, seed=1))
    dj = Path(bench_out("delta")) / "sst2_delta_runtime.json"
    _tune(paths["model"], val, paths["train"], dj)
    return paths, dj


# ---------------------------------------------------------------- SST-2
def sst2(quick: bool) -> dict:
    _log("SST-2: run-time delta")
    paths, dj = sst2_thresholds()
    res = _summarise(_convert(paths["model"], paths["dev"], paths["train"],
                              Path(bench_out("delta")) / "sst2-m4-runtime", dj, 60 if quick else 300))
    res["tuning"] = read_json(str(dj))["tuning"]
    return res


def run(quick: bool = False) -> dict:
    res = {"quick": quick}
    _log("kernel sweep")
    res["kernel"] = kernel_sweep()
    res["fsdd"] = fsdd_official(quick)
    res["fsdd_loso"] = fsdd_loso(quick)
    res["japanese_vowels"] = japanese_vowels(quick)
    try:
        res["sst2"] = sst2(quick)
    except RnnskipError as e:   # the SST-2 data folder is optional for this section
        res["sst2"] = {"error": str(e)}
    return res


# ---------------------------------------------------------------- markdown
def _row(name, r, float_acc):
    a = r["accuracy"]
    loss = None if float_acc is None else 100 * (float_acc - a["delta_int8"])
    th = ", ".join(f"x{t['input']}/h{t['hidden']}" + (f"/m{t['cell']}" if t.get("cell") is not None else "")
                   for t in r["thresholds"])
    c, f = r["cycles_per_inference"], r["flash_read_bytes_per_inference"]
    lo = "-" if loss is None else f"{loss:+.2f}"
    cvm = r.get("cycle_vs_mac_reduction")
    cvm = "-" if cvm is None else f"{cvm:.2f}"
    return (f"| {name} | {th} | {_p(a['delta_int8'])} | {lo} | "
            f"{r['density']['input']:.3f} / {r['density']['hidden']:.3f} / {r['density'].get('cells', 1.0):.3f} | "
            f"{_n(r['macs_per_inference']['effective'])} | "
            f"{_x(r['mac_reduction_x'])} | {_n(c['delta'])} | {_x(r.get('cycle_reduction_x'))} | {cvm} | "
            f"{_n(f['delta'])} | {_x(r.get('flash_read_reduction_x'))} |")


HEAD = ("| model | thresholds (int8 steps; m: cell) | accuracy % | loss vs dense float (pt) | "
        "density in / hid / cells | MAC / inf | "
        "MAC reduction | cycles / inf | cycle reduction | cycle red. / MAC red. | flash read B / inf | "
        "flash read reduction |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|")


def _dense_row(r, float_acc):
    a, c, f = r["accuracy"], r["cycles_per_inference"], r["flash_read_bytes_per_inference"]
    return (f"| dense int8 | - | {_p(a['dense_int8'])} | {100 * (float_acc - a['dense_int8']):+.2f} | 1 / 1 / 1 | "
            f"{_n(r['macs_per_inference']['dense'])} | 1x | {_n(c['dense'])} | 1x | - | {_n(f['dense'])} | 1x |")


def _dense_mac_per_cycle(c: dict) -> float:
    return c["macs_dense"] / c["steps"] / c["dense"]["per_step"]["dense mat-vec"]


def _breakdown_md(bd: dict, sweep_where: str = "below", unit: str = "recording") -> list:
    rt, tr = bd["runtime"], bd["trained"]
    seen = set(rt["dense"]["per_step"]) | set(rt["delta"]["per_step"]) | set(tr["delta"]["per_step"])
    order = list(_parts()) + list(TAIL_LABELS)
    labels = [lab for lab in order if lab in seen] + sorted(seen - set(order))
    L = [f"Where the cycles go (emulated function profile, cycles per step, first {rt['sequences']} test "
         f"{unit}s; the step code is the step function and each layer's cell function):", "",
         "| part | dense | run-time delta | delta-trained |", "|---|---|---|---|"]
    columns = (rt["dense"], rt["delta"], tr["delta"])
    for lab in labels:
        L.append(f"| {lab} | " + " | ".join(_n(c["per_step"].get(lab, 0)) for c in columns) + " |")
    L.append("| total | " + " | ".join(_n(c["cycles_per_step"]) for c in columns) + " |")
    mv = lambda c, macs: macs / c["steps"] / max(c["delta"]["per_step"].get("column-sparse mat-vec", 0), 1)
    L += ["", f"MAC / cycle of the mat-vec: dense {_dense_mac_per_cycle(rt):.2f}, "
              f"column-sparse {mv(rt, rt['macs_delta']):.2f} (run-time) and {mv(tr, tr['macs_delta']):.2f} "
              f"(trained); the kernel sweep {sweep_where} gives the column-sparse kernel's MAC / cycle against "
              "density.", ""]
    return L


def _report_profile_md(rows, unit: str = "recording") -> list:
    """The reports' own per-part profile (emulated.cycles_per_step_by_part), one column per row."""
    rows = [(n, r["cycles_per_step_by_part"]) for n, r in rows if r and r.get("cycles_per_step_by_part")]
    if not rows:
        return []
    dense = rows[0][1]["dense"]
    cols = [("dense", dense)] + [(n, p["delta"]) for n, p in rows]
    labels = list(dict.fromkeys(k for _, c in cols for k in c))
    L = [f"Cycles per step by part, from each conversion's report (`delta.emulated.cycles_per_step_by_part`, "
         f"{rows[0][1]['sequences']} test {unit}s spread over the split; the step code is the step function and each "
         "layer's cell function, with the cell checks):", "", "| part | " + " | ".join(n for n, _ in cols) + " |",
         "|---|" + "---|" * len(cols)]
    for lab in labels:
        L.append(f"| {lab} | " + " | ".join(_n(c.get(lab, 0)) for _, c in cols) + " |")
    L.append("| total | " + " | ".join(_n(sum(c.values())) for _, c in cols) + " |")
    return L + [""]


def _bound_text(bd: dict) -> str:
    """What the 0.7 target would need, from the measured per-step parts, and the ceilings the
    measured fixed work leaves for a sparse mat-vec as fast as the dense kernel and at SMLAD's peak."""
    out, ceil = [], {}
    e_dense = _dense_mac_per_cycle(bd["runtime"])
    for name, c in (("run-time", bd["runtime"]), ("delta-trained", bd["trained"])):
        red = c["macs_dense"] / c["macs_delta"]
        budget = c["dense"]["cycles_per_step"] / (0.7 * red)
        fixed = c["delta"]["cycles_per_step"] - c["delta"]["per_step"].get("column-sparse mat-vec", 0)
        macs = c["macs_delta"] / c["steps"]
        need = ("impossible (the rest alone exceeds it)" if budget <= fixed
                else f"{macs / (budget - fixed):.2f} MAC/cycle")
        out.append(f"{name}: 0.7 x {red:.2f}x needs <= {budget:,.0f} cycles per step; everything but the sparse "
                   f"mat-vec (cells, gather, head) takes {fixed:,.0f}, so its {macs:,.0f} MACs would have to run "
                   f"at {need}")
        # cycle reduction / MAC reduction if the sparse mat-vec ran at e MAC/cycle, all else as measured
        ceil[name] = [c["dense"]["cycles_per_step"] / (fixed + macs / e) / red for e in (e_dense, 2.0)]
    rt, tr = ceil["run-time"], ceil["delta-trained"]
    return (". Measured per step on the profiled recordings - " + "; ".join(out) +
            ". The Cortex-M4 peaks at 2 MAC/cycle (SMLAD) with free operands; the dense paired kernel reaches "
            f"{e_dense:.2f}. With the measured cells, gather and head unchanged, a column-sparse mat-vec as fast per "
            f"MAC as the dense kernel would reach cycle reduction / MAC reduction {rt[0]:.2f} (run-time) and "
            f"{tr[0]:.2f} (delta-trained), one at SMLAD's peak {rt[1]:.2f} and {tr[1]:.2f}. "
            "The cell work per unit does not shrink with the deltas, so on this model the target needs cheaper "
            "cells as well as a faster sparse kernel")


def _reason_vs_original(reason: str) -> str:
    """delta-tune's no-thresholds message, its two models named (the reference is the original dense float
    model, the dense int8 one the fine-tuned model's own)."""
    return (reason.replace("of the float model", "of the original dense float model")
            .replace("the dense int8 model scores", "the fine-tuned model's own dense int8 model scores"))


def _bitexact_text(f: dict) -> str:
    """The golden model against the host build and the emulated firmware (the conversion's check) on every row of
    the ladder, as measured: bit-exact, or the mismatches."""
    rows = [(k, f[k]) for k in ("runtime", "trained", "trained_cell") if f.get(k) and "bitexact_checked" in f[k]]
    bad = [(k, r["bitexact_mismatches"], r["bitexact_checked"]) for k, r in rows if r["bitexact_mismatches"]]
    if not bad:
        return ("golden = host build = emulated firmware on every row (mismatches: " +
                ", ".join(f"{k} 0 of {r['bitexact_checked']}" for k, r in rows) + ")")
    return "mismatches against the golden model: " + ", ".join(f"{k} {n} of {c}" for k, n, c in bad)


def ladder_md(f: dict, heading: str, sweep_where: str = "below") -> list:
    """The markdown of :func:`delta_ladder`'s result ``f``: the table, the seeds, the threshold
    sweep when there is one, and the cycles per step by part."""
    m = f["meta"]
    fl = f["runtime"]["accuracy"]["float"]
    cell = m["config"].get("cell", "gru").upper()
    split = m.get("split_text") or (f"take 0-4 test: {m['n_test']} recordings; {m['n_train']} train, "
                                    f"{m['n_val']} validation")
    arch = m.get("arch") or f"Masking -> {cell}({m['config']['units']}) -> Dense(10)"
    L = [f"{heading} ({split})", "",
         f"{m['features']}; {arch}; dense float test accuracy "
         f"{100 * fl:.2f}%.", "", *HEAD, _dense_row(f["runtime"], fl),
         _row("run-time delta", f["runtime"], fl)]
    t = f["trained"]
    L.append(_row("delta-trained", t, fl))
    tc = f.get("trained_cell")
    if tc:
        L.append(_row("delta-trained + cell threshold", tc, fl))
    tt = f.get("trained_tuned")
    tt_txt = (f" Re-tuning the delta-trained model's thresholds on validation (budget {MAX_LOSS} pt): "
              f"{_reason_vs_original(f['trained_tuned_none'])}.") if f.get("trained_tuned_none") else \
        "" if not tt else (" Re-tuning the delta-trained model's thresholds on validation "
                                f"(budget {MAX_LOSS} pt) picks "
                                f"x{tt['thresholds'][0][0]}/h{tt['thresholds'][1][0]}: "
                                f"{_p(tt['delta_int8'])}% on test at {_x(tt['mac_reduction_x'])} fewer MACs "
                                f"({m.get('tuned_note', FSDD_TUNED_NOTE)}the table row uses the training thresholds, "
                                "fixed before looking at test).")
    sd = f.get("train_seeds") or []
    sd_txt = "; ".join(f"seed {r['seed']}: validation {_p(r['val']['delta_int8'])}%, "
                       f"test {_p(r['test']['delta_int8'])}% at {_x(r['test']['mac_reduction_x'])}" for r in sd)
    tx, th = f.get("train_theta", TRAIN_THETA)
    unit = m.get("unit", "recording")
    L += ["", f"Delta-trained: fine-tuned from the dense model at thresholds x{tx}/h{th} "
              f"({TRAIN_CFG}) and deployed at them, {len(sd)} seeds ({sd_txt}); the row is seed "
              f"{f.get('train_selected_seed')}, the best on validation. Its own float accuracy without delta "
              f"{100 * t['float_trained']:.2f}%. Loss is against the original dense float model.{tt_txt} "
              f"Emulated: {f['runtime']['sequences_emulated']} test {unit}s per "
              f"row (MAC reduction on those: run-time {_x(f['runtime']['mac_reduction_x_emulated'])}, trained "
              f"{_x(t['mac_reduction_x_emulated'])}); {_bitexact_text(f)}.", ""]
    if tc and tc.get("thresholds_from"):
        frm = tc["thresholds_from"]
        L += [f"Delta-trained + cell threshold: the delta-trained model fine-tuned again with the cell threshold "
              f"m{TRAIN_CELL} in the loop; "
              + ("its thresholds (input, hidden and cell) chosen on validation within the budget of the original "
                 "dense float model." if frm["source"] == "validation" else
                 f"on validation {_reason_vs_original(frm['reason'])}, so the row deploys the thresholds it was "
                 f"trained at."), ""]
    sw = f.get("sweep")
    if sw:
        L += [f"Firmware threshold sweep (run-time model, first {sw['sequences']} test recordings):", "",
              "| case | density in / hid | MAC reduction | cycles / inf | cycle reduction | flash read B / inf | "
              "flash B |",
              "|---|---|---|---|---|---|---|"]
        for r in sw["rows"]:
            d = r.get("density")
            ds_ = "-" if d is None else f"{d['input']:.3f} / {d['hidden']:.3f}"
            L.append(f"| {r['case']} | {ds_} | "
                     f"{_x(r.get('mac_reduction_x'))} | {_n(r['cycles_per_inference'])} | "
                     f"{_x(r['cycle_reduction_x'])} | "
                     f"{_n(r['flash_read_bytes'])} | {_n(r['flash_bytes'])} |")
        L.append("")
    bd = f.get("breakdown")
    if bd:
        L += _breakdown_md(bd, sweep_where, unit)
    L += _report_profile_md([("run-time delta", f["runtime"]), ("delta-trained", t),
                             ("delta-trained + cell threshold", tc)], unit)
    return L


def markdown(res: dict) -> str:
    L = ["## Delta networks on cortex-m4", "",
         "Method (Neil et al., ICML 2017; `docs/delta.md`): every input and hidden element keeps its last "
         "transmitted int8 value and transmits only when it moved by more than a threshold (whole int8 steps); the "
         "gate sums are running sums updated with the weight columns of the transmitting elements only. Run-time "
         "delta = thresholds chosen on validation data for the unchanged network (`rnnskip delta-tune`, budget "
         f"{MAX_LOSS} point below the dense float model on validation); delta-trained = `rnnskip delta-train` "
         "(delta forward pass, straight-through gradients, int8-grid rounding, threshold noise, L1 on the deltas), "
         "deployed at the thresholds it was trained for. Accuracy on the test split from the int8 golden model "
         "(checked against the host build and the emulated firmware: the counts follow each table); cycles and "
         "flash reads from the emulated firmware "
         "(cortex-m4 cycle model, 0 wait states) on the first emulated sequences of the test split (flash reads "
         "on a sample spread over them), against the dense firmware on the same ones. MACs count the recurrent "
         "mat-vecs (+ the head once), real shapes; a delta MAC is one weight column entry of a transmitting "
         "element.", ""]
    f = res.get("fsdd", {})
    if f:
        L += ladder_md(f, "### FSDD, official split")
    lo = res.get("fsdd_loso")
    if lo:
        L += ["### FSDD, leave one speaker out (all 500 recordings of the speaker are the test set; "
              "golden int8 model)", "",
              "| held-out speaker | dense float % | dense int8 % | run-time delta % (MAC red.) | "
              "delta-trained % (MAC red.) |",
              "|---|---|---|---|---|"]
        accs = []
        for spk, r in lo.items():
            rt, tr = r["runtime"], r["trained"]
            accs.append((rt["float"], rt["dense_int8"], rt["delta_int8"], rt["mac_reduction_x"], tr["delta_int8"],
                         tr["mac_reduction_x"]))
            L.append(f"| {spk} | {_p(rt['float'])} | {_p(rt['dense_int8'])} | {_p(rt['delta_int8'])} "
                     f"({_x(rt['mac_reduction_x'])}) | {_p(tr['delta_int8'])} ({_x(tr['mac_reduction_x'])}) |")
        a = np.array(accs)
        L += [f"| mean | {_p(a[:, 0].mean())} | {_p(a[:, 1].mean())} | {_p(a[:, 2].mean())} ({_x(a[:, 3].mean())}) | "
              f"{_p(a[:, 4].mean())} ({_x(a[:, 5].mean())}) |", ""]
    for key, title in (("japanese_vowels",
                        "JapaneseVowels (aeon bundled; Masking -> GRU(64) -> Dense(9)), run-time delta"),
                       ("sst2", "SST-2 LSTM (the pipeline benchmark's model, dev set), run-time delta")):
        r = res.get(key)
        if not r:
            continue
        if "error" in r:
            L += [f"### {title}", "", f"not measured: {r['error']}", ""]
            continue
        fl = r["accuracy"]["float"]
        L += [f"### {title}", "",
              f"Dense float accuracy {100 * fl:.2f}% on {r['n']}; emulated {r['sequences_emulated']}; "
              f"{_bitexact_text({'runtime': r})}.", "",
              *HEAD, _dense_row(r, fl), _row("run-time delta", r, fl), ""]
    k = res.get("kernel")
    if k:
        L += [f"### Kernel: gather + column-sparse mat-vec vs density ({k['rows']} rows x {k['cols']} columns, "
              "the FSDD GRU's input+hidden columns x 3 gates)", "",
              "| transmitting columns | density | gather cycles | mat-vec cycles | MAC / cycle |",
              "|---|---|---|---|---|"]
        for p in k["points"]:
            L.append(f"| {p['columns']} | {p['density']:.2f} | {p['gather_cycles']:,} | {p['matvec_cycles']:,} | "
                     f"{p['macs'] / max(p['matvec_cycles'], 1):.3f} |")
        L += ["", f"Dense paired mat-vec on the same matrix: {k['dense_matvec_cycles']:,} cycles "
                  f"({k['rows'] * k['cols'] / k['dense_matvec_cycles']:.3f} MAC/cycle). At full density the "
                  f"column-sparse path costs {100 * k['full_density_overhead_sparse']:+.0f}% against it "
                  "(a delta model keeps one copy of the weights, column-major, so there is no dense fallback).",
                  ""]
    if f:
        rt, t = f["runtime"], f["trained"]
        ratio_met = min(rt.get("cycle_vs_mac_reduction") or 0, t.get("cycle_vs_mac_reduction") or 0) >= 0.7
        L += ["### Against the goals", "",
              f"- FSDD run-time delta: {_x(rt['mac_reduction_x'])} fewer effective MACs at "
              f"{100 * (rt['accuracy']['float'] - rt['accuracy']['delta_int8']):.2f} points below the dense float "
              "model (target >= 3x at <= 1 point).",
              f"- FSDD delta-trained: {_x(t['mac_reduction_x'])} at "
              f"{100 * (rt['accuracy']['float'] - t['accuracy']['delta_int8']):.2f} points "
              "(target >= 8x at <= 1 point).",
              "- Emulated cycle reduction / MAC reduction on cortex-m4: "
              f"run-time {rt.get('cycle_vs_mac_reduction', 0):.2f}, "
              f"delta-trained {t.get('cycle_vs_mac_reduction', 0):.2f} (target >= 0.7: "
              f"{'met' if ratio_met else 'not met'})"
              + (_bound_text(f["breakdown"]) if f.get("breakdown") else "."),
              f"- Flash read traffic: {_x(rt.get('flash_read_reduction_x'))} (run-time) and "
              f"{_x(t.get('flash_read_reduction_x'))} (delta-trained) less than the dense firmware.", ""]
        L += _issue16_md(f, res.get("kernel"))
    return "\n".join(L)


def _issue16_md(f: dict, k) -> list:
    """Issue 16's targets (cortex-m4 cycles, the sparse kernel's MAC / cycle, flash), from the results."""
    fl = f["runtime"]["accuracy"]["float"]

    def row(name, r, want):
        loss = 100 * (fl - r["accuracy"]["delta_int8"])
        met = (r.get("cycle_reduction_x") or 0) >= want and loss <= MAX_LOSS
        return (f"- {name}: {_x(r.get('cycle_reduction_x'))} fewer modeled cycles at {loss:+.2f} points "
                f"(target >= {want:g}x at <= {MAX_LOSS:g} point: {'met' if met else 'not met'}).")
    L = ["### Against issue 16's targets (cortex-m4 cycle model)", "",
         row("FSDD run-time delta", f["runtime"], 3),
         row("FSDD delta-trained", f["trained"], 6)]
    if f.get("trained_cell"):
        L.append(row("FSDD delta-trained + cell threshold", f["trained_cell"], 6))
    if k:
        low = [p for p in k["points"] if 0 < p["density"] <= 0.2]
        best = max(p["macs"] / max(p["matvec_cycles"], 1) for p in low)
        L.append(f"- Column-sparse mat-vec at densities <= 20%: at most {best:.3f} MAC / cycle "
                 f"(target >= 0.7: {'met' if best >= 0.7 else 'not met'}).")
    flash = [(n, f[n]["firmware_flash_bytes"]) for n in ("runtime", "trained", "trained_cell")
             if f.get(n) and f[n].get("firmware_flash_bytes")]
    if flash:
        worst = max(b["delta"] / b["dense"] for _, b in flash)
        L.append(f"- Flash of the delta firmware against the dense firmware: at most {worst:.3f}x "
                 f"(target <= 1.1x: {'met' if worst <= 1.1 else 'not met'}).")
    return L + [""]


def summary(res: dict):
    f = res.get("fsdd")
    if not f:
        return []
    rt, tr = f["runtime"], f["trained"]
    fl = rt["accuracy"]["float"]
    out = [f"- Delta networks, FSDD GRU(128) on cortex-m4: run-time thresholds {_x(rt['mac_reduction_x'])} fewer "
           f"MACs at a loss of {100 * (fl - rt['accuracy']['delta_int8']):+.2f} pt, delta-trained "
           f"{_x(tr['mac_reduction_x'])} at {100 * (fl - tr['accuracy']['delta_int8']):+.2f} pt (against the dense "
           f"float model); "
           f"emulated cycles {_x(rt.get('cycle_reduction_x'))} / {_x(tr.get('cycle_reduction_x'))} fewer, "
           f"flash reads {_x(rt.get('flash_read_reduction_x'))} / {_x(tr.get('flash_read_reduction_x'))} less "
           "(details in BENCHMARKS.md).", "",
           "| FSDD GRU(128), cortex-m4 | accuracy % | loss vs dense float (pt) | MAC reduction | cycle reduction | "
           "flash read reduction |", "|---|---|---|---|---|---|",
           f"| dense int8 | {_p(rt['accuracy']['dense_int8'])} | {100 * (fl - rt['accuracy']['dense_int8']):+.2f} | "
           "1x | 1x | 1x |"]
    for name, r in (("run-time delta", rt), ("delta-trained", tr)):
        out.append(f"| {name} | {_p(r['accuracy']['delta_int8'])} | {100 * (fl - r['accuracy']['delta_int8']):+.2f} | "
                   f"{_x(r['mac_reduction_x'])} | {_x(r.get('cycle_reduction_x'))} | "
                   f"{_x(r.get('flash_read_reduction_x'))} |")
    return out + [""]
