"""Int8 pipeline benchmark: the SST-2 LSTM through the int8 pipeline on cortex-m4.

Kernel variants on the same model and cycle model: portable DSP path, portable
plain C, a naive-C mat-vec baseline, CMSIS-NN (when CMSIS_NN_PATH is set); the
DSP path again with 5 flash wait states; TFLite's own int8 conversion as the peer.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .common import bench_out, convert, shared_data
from .sst2_model import load_benchmark, train_sst2

#: emulated sequences for the slower comparison variants (the DSP path runs all of dev)
SUBSET = 200


def run(quick: bool = False) -> dict:
    out = Path(bench_out("sst2"))
    train_sst2(shared_data(), str(out))   # trains once, or reuses the model in out
    p, calib, dev, meta = load_benchmark(str(out))
    res = {"meta": meta, "runs": {}}
    # (name, kernels, variant, flash wait states, emulated sentences: None = all of dev)
    variants = [("dsp", "portable", "dsp", None, None), ("plain", "portable", "plain", None, SUBSET),
                ("naive", "naive", "plain", None, SUBSET), ("dsp-ws5", "portable", "dsp", 5, SUBSET)]
    if os.environ.get("CMSIS_NN_PATH"):
        variants.append(("cmsis-nn", "cmsis-nn", "dsp", None, SUBSET))
    for name, kernels, v, ws, n in variants:
        t0 = time.time()
        rep = convert(p["model"], "cortex-m4", p["dev"], out / f"m4-{name}", kernels=kernels, variant=v,
                      calib=p["train"], emulate_max=(50 if quick else n), wait_states=ws)
        rep["wall_s"] = time.time() - t0
        res["runs"][name] = rep
    try:
        from .tflite_peer import tflite_int8_accuracy
        res["tflite"] = tflite_int8_accuracy(p["model"], calib, dev)
    except Exception as e:  # the peer is informative; record why it is missing
        res["tflite"] = {"error": f"{type(e).__name__}: {e}"}
    return res


def _f(v, d=3):
    return "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else f"{v:,}")


def markdown(res: dict) -> str:
    runs = res["runs"]
    d = runs["dsp"]
    m, a, e, fp = d["model"], d["accuracy"], d["emulation"], d["footprint"]
    L = ["## Int8 pipeline: SST-2 LSTM on cortex-m4", "",
         f"Model: Embedding({m['params'] - 0:,} params total) -> LSTM({m['layers'][0]['units']}) -> Dense, "
         f"{m['macs_per_step']:,} MAC per step, {m['timesteps_mean']:.1f} steps per sentence on average "
         f"(SST-2 dev, {a['n']} sentences). Trained by `benchmarks/sst2_model.py` "
         f"(Keras dev accuracy {res['meta'].get('dev_accuracy', float('nan')):.4f}).", "",
         "| | accuracy (dev) | n |", "|---|---|---|",
         f"| float (numpy reference) | {a['float']:.4f} | {a['n']} |",
         f"| int8 golden model | {a['int8_golden']:.4f} | {a['n']} |",
         f"| int8 emulated firmware (DSP) | {a['int8_device']:.4f} | {a['n_device']} |"]
    t = res.get("tflite", {})
    if "accuracy" in t:
        L.append(f"| TFLite int8 (ai-edge-litert) | {t['accuracy']:.4f} | {t['n']} |")
    else:
        L.append(f"| TFLite int8 (ai-edge-litert) | not measured: {t.get('error', '?')} | |")
    L += ["", f"Bit-exact: {d['bitexact']['mismatches']} mismatches between golden, host build and emulated "
              f"firmware over {d['bitexact']['checked']} sentences. Emulating all {e['sequences']} dev sentences "
              f"with cycle counting took {d['timings_s'].get('emulate_s', float('nan')):.0f} s "
              "on this 2-core machine.", ""]
    if "notes" in t:
        L += [f"TFLite peer: {t['notes']}", ""]
    L += ["| kernels (cortex-m4 cycle model) | flash wait states | sequences | cycles / step | MAC / cycle (step) | "
          "cycles / inference | flash read B / inf | SRAM read B / inf | SRAM write B / inf | flash B | RAM B | "
          "stack B |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        e, fp = r["emulation"], r["footprint"]
        L.append(f"| {r['kernels']} ({r['variant']}) | "
                 f"{e['cycle_model']['flash_wait_states']} | {e['sequences']} | {_f(e['cycles_per_step'], 0)} | "
                 f"{_f(e['step_macs_per_cycle'])} | {_f(e['cycles_per_inference'], 0)} | "
                 f"{_f(e['flash_read_bytes_per_inference'], 0)} | {_f(e['sram_read_bytes_per_inference'], 0)} | "
                 f"{_f(e['sram_write_bytes_per_inference'], 0)} | {fp['flash_bytes']:,} | {fp['ram_bytes']:,} | "
                 f"{_f(fp['stack_bytes'])} |")
    if "naive" in runs and "dsp" in runs:
        sp = runs["naive"]["emulation"]["cycles_per_step"] / runs["dsp"]["emulation"]["cycles_per_step"]
        L += ["", f"DSP path vs naive-C baseline: {sp:.2f}x fewer cycles per step."]
    L += ["", "Cycles per step: least-squares slope of cycles against executed steps over the emulated "
              "sentences; MAC / cycle (step) = the model's MACs per step over that slope. Traffic is counted "
              "exactly (per executed load/store, from the decoded instruction and its registers) on the first "
              f"{e['traffic_sampled_sequences']} sentences of each run.", ""]
    return "\n".join(L)


def summary(res: dict) -> list:
    """README lines (from the same run that writes BENCHMARKS.md)."""
    runs = res["runs"]
    d = runs["dsp"]
    a, e = d["accuracy"], d["emulation"]
    out = [f"- SST-2 LSTM({d['model']['layers'][0]['units']}), dev set: float {a['float']:.4f}, int8 on the emulated "
           f"cortex-m4 {a['int8_device']:.4f} ({a['n_device']} sentences, {d['bitexact']['mismatches']} mismatches "
           f"golden/host/firmware)."]
    t = res.get("tflite", {})
    if "accuracy" in t:
        out.append(f"- TFLite's own int8 conversion of the same model: {t['accuracy']:.4f}.")
    out.append(f"- Dense LSTM step, DSP kernels: {e['cycles_per_step']:,.0f} cycles, "
               f"{e['step_macs_per_cycle']:.3f} MAC per modeled cycle (0 wait states).")
    for name, label in (("plain", "portable plain C"), ("naive", "naive C"), ("cmsis-nn", "CMSIS-NN mat-vec")):
        if name in runs:
            r = runs[name]["emulation"]
            out.append(f"- {label}: {r['cycles_per_step']:,.0f} cycles/step "
                       f"({r['cycles_per_step'] / e['cycles_per_step']:.2f}x the DSP path).")
    return out
