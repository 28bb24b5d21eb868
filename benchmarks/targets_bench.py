"""Targets benchmark: the SST-2 LSTM on every Cortex-M target - cycles, flash and RAM,
dense and with time-step skipping.

One quantisation (the same as the pipeline benchmark's: calibration on the SST-2
training rows), then per target: the pre-build fit check, the portable kernels
(DSP path where the core has it, Helium on the M55, plain C elsewhere), the
firmware's flash/RAM from the ELF, and the first N dev sentences emulated:
Unicorn + the core's cycle table where Unicorn has the core; the M55 image boots
on QEMU mps3-an547 (exact instruction counts, no cycle model). Skipping: the
model with a skip predictor (``rnnskip train-predictor``) attached; the
predictor folder is ``bench_out/sst2/predictor`` if the skip benchmark wrote one,
else one is trained here once (on the SST-2 training rows, 1 point loss budget)
and cached in ``bench_out/targets/sst2-predictor``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from rnnskip import boards, pipeline, targets
from rnnskip.datasets import Dataset, load_npz
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.errors import RnnskipError
from rnnskip.generate import generate
from rnnskip.report import build_report
from rnnskip.targets.fit import check_fits

from .common import bench_out, shared_data
from .common import fmt_num as _f
from .sst2_model import load_benchmark, train_sst2

#: the M55 boots on this board under QEMU (Unicorn has no Armv8.1-M core)
M55_BOARD = "mps3-an547"
PREDICTOR_LOSS = 1.0     # accuracy points the trained predictor may lose on its validation rows


def _subset(ds: Dataset, n: int) -> Dataset:
    n = min(n, len(ds))
    return Dataset(x=ds.x[:n], y=ds.y[:n], lengths=ds.lengths[:n])


def predictor_dir(p: dict, quick: bool, log=print):
    """The SST-2 predictor folder (existing, or trained once here); None if unavailable."""
    for cand in (Path(bench_out("sst2")) / "predictor", Path(bench_out("targets")) / "sst2-predictor"):
        if (cand / "predictor.json").is_file():
            m = json.loads((cand / "predictor.json").read_text())
            data = m.get("data", {})
            return cand, (f"cached; trained by rnnskip train-predictor on {data.get('train', '?')}, validated on "
                          f"{data.get('val', '?')}, {m.get('max_loss_points')} point loss budget")
    if quick:
        return None, "quick run: no predictor trained (run make bench once, or rnnskip train-predictor)"
    # trained here: the SST-2 training rows (75% train / 25% validation), PREDICTOR_LOSS points budget
    from rnnskip.skip.convert import run_train_predictor
    d = dict(np.load(p["train"], allow_pickle=True))
    out = Path(bench_out("targets"))
    n = len(d["y"])
    cut = int(n * 0.75)
    for name, sl in (("skip_train", slice(0, cut)), ("skip_val", slice(cut, n))):
        np.savez(out / f"{name}.npz", **{k: (v if k == "class_names" else v[sl]) for k, v in d.items()})
    dest = out / "sst2-predictor"
    run_train_predictor(p["model"], out / "skip_train.npz", out / "skip_val.npz", PREDICTOR_LOSS, dest, log=log,
                        confidence=None)   # an operating point for the cycle tables, not a promise
    return dest, (f"trained here on {cut:,} SST-2 training rows, {n - cut:,} for validation, "
                  f"{PREDICTOR_LOSS} point budget")


def _measure(ir, qm, ds, src, work: Path, name: str, kernels: str = "portable") -> dict:
    """Fit check, build, emulate one target; a row of numbers (or why not)."""
    t = targets.load(name)
    variant = "dsp" if t.dsp else "plain"
    row = {"target": name, "variant": variant + ("+helium" if t.mve else ""), "clock_hz": t.clock_hz}
    try:
        est = check_fits(qm, int(ds.x.shape[1]), t)
        row["estimate_flash"], row["estimate_ram"] = est.flash, est.ram
    except RnnskipError as e:
        row["refused"] = str(e)
        return row
    fw = pipeline.build_target(src, work / name, t, variant)
    row.update(flash_bytes=fw.flash_bytes, ram_bytes=fw.ram_bytes, flash_capacity=t.flash_size,
               ram_capacity=t.ram_size)
    t0 = time.time()
    if t.unicorn_cpu:
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw,
                               emulator=Unicorn(t, traffic_sample=2, workers=2, progress=False))
        rep = build_report(ir, qm, ev, t, kernels, variant, firmware=fw)
        e = rep["emulation"]
        row.update(emulator="unicorn", cycles=e["cycles_per_inference"], cycles_per_step=e["cycles_per_step"],
                   step_macs_per_cycle=e["step_macs_per_cycle"], instructions=e["instructions_per_inference"],
                   latency_ms=e["latency_ms_per_inference"], stack_bytes=rep["footprint"]["stack_bytes"])
    else:
        from rnnskip.emulators.qemu import Qemu
        emu = Qemu(boards.load(M55_BOARD), timeout=600)
        bfw = pipeline.build_firmware(src, work / f"{name}-{emu.board.name}", emu, variant, qm, ds, len(ds),
                                      int(ds.x.shape[1]), ir.name)
        ev = pipeline.evaluate(ir, qm, ds, firmware=bfw, emulator=emu)
        info = ev.emu.board_run
        ins = ev.emu.stats[:, 0]
        row.update(emulator=f"qemu {info.get('qemu_machine')}", instructions=float(np.mean(ins)),
                   cycles=None, cycles_per_step=None, step_macs_per_cycle=None, latency_ms=None, stack_bytes=None,
                   instruction_counts=info["instruction_counts"])
    row.update(sequences=int(ev.device_checked), mismatches=int(ev.device_mismatches),
               accuracy=ev.device_acc, golden_steps=float(np.mean(ev.golden_steps)),
               emulate_s=round(time.time() - t0, 1))
    return row


def run(quick: bool = False) -> dict:
    out = Path(bench_out("targets"))
    train_sst2(shared_data(), bench_out("sst2"))
    p, calib, dev, meta = load_benchmark(bench_out("sst2"))
    ir = pipeline.import_model(p["model"])
    ds = _subset(load_npz(p["dev"], ir), 24 if quick else 200)
    cal = load_npz(p["train"], ir)
    qm, _ = pipeline.quantize_model(ir, cal, 1000, progress=False)
    max_t = int(ds.x.shape[1])
    names = [n for n in ("cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33",
                         "cortex-m55") if n in targets.available()]
    res = {"meta": {"model": ir.name, "macs_per_step": int(qm.recurrent_macs_per_step()),
                    "weights_bytes": int(qm.flash_weight_bytes()), "sequences": len(ds), "max_t": max_t},
           "dense": {}, "skip": {}, "skip_note": None}
    generate(qm, out / "dense" / "src", max_t=max_t)
    for n in names:
        print(f"  dense {n}", flush=True)
        res["dense"][n] = _measure(ir, qm, ds, out / "dense" / "src", out / "dense", n)
    pdir, how = predictor_dir(p, quick)
    if pdir is None:
        res["skip_note"] = how
        return res
    from rnnskip.skip.evaluate import with_predictor
    from rnnskip.skip.folder import load as load_predictor
    from rnnskip.skip.qpredictor import quantize_predictor
    fp, pmeta = load_predictor(str(pdir), ir)
    qs = with_predictor(qm, quantize_predictor(fp, qm))
    v = pmeta.get("val", {})
    res["skip_note"] = (f"predictor `{pdir.relative_to(Path(bench_out()))}` ({how}): {pmeta.get('description', '')}, "
                        f"{pmeta.get('params', 0):,} params; on its validation rows "
                        f"{v.get('skip_rate', float('nan')):.1%} of steps skipped at "
                        f"{v.get('loss_points', float('nan')):+.2f} accuracy points")
    generate(qs, out / "skip" / "src", max_t=max_t)
    for n in names:
        print(f"  skip {n}", flush=True)
        res["skip"][n] = _measure(ir, qs, ds, out / "skip" / "src", out / "skip", n)
    return res


def markdown(res: dict) -> str:
    m = res["meta"]
    L = ["## Every Cortex-M target: SST-2 LSTM cycles, flash and RAM", "",
         f"The SST-2 model of the pipeline section ({m['macs_per_step']:,} MAC per LSTM step, "
         f"{m['weights_bytes']:,} bytes of int8 weights + embedding, sequences of up to {m['max_t']} steps), "
         f"portable kernels, the first {m['sequences']} dev sentences per target. Cycles: Unicorn + the core's "
         "cycle table (sources in `rnnskip/targets/*.toml` and `rnnskip/simulator/cycles.py`); 0 flash wait "
         "states; latency at the target's clock. cortex-m55: the image boots on QEMU mps3-an547 (Helium "
         "kernels), which counts instructions exactly but models no cycles.", "",
         "| target | kernels | emulator | flash B | RAM B | stack B | cycles / inference | cycles / step "
         "| MAC / cycle (step) | instructions / inference | latency ms | mismatches |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in res["dense"].items():
        if "refused" in r:
            L.append(f"| {n} | - | - | - | - | - | does not fit: {r['refused'].split(': ', 1)[-1]} | | | | | |")
            continue
        L.append(f"| {n} | {r['variant']} | {r['emulator']} | {_f(r['flash_bytes'])} | {_f(r['ram_bytes'])} | "
                 f"{_f(r['stack_bytes'])} | {_f(r['cycles'])} | {_f(r['cycles_per_step'])} | "
                 f"{_f(r['step_macs_per_cycle'], 3)} | {_f(r['instructions'])} | {_f(r['latency_ms'], 2)} | "
                 f"{r['mismatches']} / {r['sequences']} |")
    L.append("")
    if res["skip"]:
        L += [f"With time-step skipping ({res['skip_note']}):", "",
              "| target | steps run / sentence (dense) | cycles / inference | vs dense | instructions / inference "
              "| vs dense | flash B | accuracy (dense -> skip) | mismatches |",
              "|---|---|---|---|---|---|---|---|---|"]
        for n, r in res["skip"].items():
            d = res["dense"].get(n, {})
            if "refused" in r:
                L.append(f"| {n} | does not fit | | | | | | | |")
                continue
            cyc = f"{d['cycles'] / r['cycles']:.2f}x fewer" if r.get("cycles") and d.get("cycles") else "-"
            ins = (f"{d['instructions'] / r['instructions']:.2f}x fewer"
                   if r.get("instructions") and d.get("instructions") else "-")
            L.append(f"| {n} | {r['golden_steps']:.1f} ({d.get('golden_steps', float('nan')):.1f}) | "
                     f"{_f(r['cycles'])} | {cyc} | {_f(r['instructions'])} | {ins} | {_f(r['flash_bytes'])} | "
                     f"{d.get('accuracy', float('nan')):.3f} -> {r['accuracy']:.3f} | "
                     f"{r['mismatches']} / {r['sequences']} |")
        L += ["", "Steps run: steps the firmware executed per sentence (the golden model's count, equal on the "
                  "device); the skipped steps cost only the predictor. Accuracy is on the same dev sentences; the "
                  "predictor's loss budget was set on its own validation rows, so the loss here can differ. "
                  "Mismatches compare outputs and per-step flags (which steps ran) with the golden model."]
    else:
        L.append(f"With time-step skipping: not measured ({res['skip_note']}).")
    L += ["", "Notes: cortex-m0 (nRF51822, 256 KiB flash) is refused before compiling: the SST-2 embedding alone "
              "exceeds its flash. cortex-m7 cycles use a documented approximation (Arm publishes no M7 timings: "
              "single-cycle loads/stores, a load-use stall and in-order dual-issue rules from third-party "
              "measurements); cortex-m33 uses the Cortex-M4 values (no M33 table is published; its limited dual "
              "issue is not modelled). Flash and RAM are the ELF's sections on the target's default part "
              "(`rnnskip targets`); the stack is the emulator's high-water mark.", ""]
    return "\n".join(L)


def summary(res: dict) -> list:
    d = res["dense"]
    cyc = [f"{n.replace('cortex-', '').upper()} {r['cycles']:,.0f}" for n, r in d.items()
           if "refused" not in r and r.get("cycles")]
    out = [f"- SST-2 LSTM, cycles per inference across cores (dense, cycle model): {', '.join(cyc)}."]
    m55 = d.get("cortex-m55")
    if m55 and "refused" not in m55:
        out.append(f"- cortex-m55 with Helium on QEMU mps3-an547: {m55['instructions']:,.0f} instructions per "
                   f"inference ({m55['mismatches']} mismatches); no cycle model for Armv8.1-M.")
    return out
