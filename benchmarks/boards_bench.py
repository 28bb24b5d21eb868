"""Boards benchmark: the SST-2 LSTM and the FSDD GRU on every board with a memory-system model
(rnnskip/boards/*.toml ``[memory_system]``) - cycles per inference under the board's memory
model, latency at the board's clock, the energy estimate from its datasheet figures, flash line
fills and stall cycles; on the stm32f407 also with the weights copied to SRAM (--weights sram).

The models are the pipeline section's SST-2 LSTM (calibrated on its training rows) and the delta
section's FSDD GRU (official split, calibrated on its training split), dense; Unicorn with the
board's memory system (rnnskip.simulator.memory); the first N test sequences per board.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rnnskip import boards, pipeline
from rnnskip.datasets import Dataset, load_npz
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.errors import RnnskipError
from rnnskip.generate import generate
from rnnskip.report import build_report

from .common import bench_out, shared_data
from .common import fmt_num as _f
from .sst2_model import load_benchmark, train_sst2

#: the boards with a memory-system model, and the placements measured on each
BOARDS = (("stm32f407", ("flash", "sram")), ("stm32f746", ("flash",)), ("rp2040", ("flash",)),
          ("nrf52840", ("flash",)), ("mps2-an386", ("flash",)))


def _subset(ds: Dataset, n: int) -> Dataset:
    n = min(n, len(ds))
    return Dataset(x=ds.x[:n], y=ds.y[:n], lengths=ds.lengths[:n])


def _measure(ir, qm, ds, src: Path, work: Path, board: str, weights: str) -> dict:
    """Build for ``board`` with the weights in ``weights``, emulate; a row (or why it was refused)."""
    _, t = boards.resolve(None, board, None, weights)
    variant = "dsp" if t.dsp else "plain"
    row = {"board": board, "weights": weights, "core": t.name, "clock_hz": t.clock_hz,
           "memory_system": t.memory_system.name}
    try:
        fw = pipeline.build_target(src, work / f"{board}-{weights}", t, variant)
    except RnnskipError as e:    # --weights sram where they do not fit: the one-line refusal
        row["refused"] = str(e)
        return row
    t0 = time.time()
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=2, workers=2, progress=False))
    e = build_report(ir, qm, ev, t, "portable", variant, firmware=fw)["emulation"]
    mp = e["memory_per_inference"]
    row.update(cycles=e["cycles_per_inference"], latency_ms=e["latency_ms_per_inference"],
               energy_uj=e["energy_uj_per_inference"], energy_note=e["energy"]["note"],
               energy_source=e["energy"].get("source"), line_fills=mp["flash_line_fills"],
               stall_cycles=mp["stall_cycles"], copy_cycles=e["weights"]["copy_cycles"],
               weights_bytes=e["weights"]["bytes"], flash_bytes=fw.flash_bytes, ram_bytes=fw.ram_bytes,
               sequences=int(ev.device_checked), mismatches=int(ev.device_mismatches),
               emulate_s=round(time.time() - t0, 1))
    return row


#: how the tables name the two models (their Keras names are not descriptive: "sequential")
LABELS = {"sst2-lstm": "SST-2 LSTM(64)", "fsdd-gru": "FSDD GRU(128)"}


def _model(name: str, ir, qm, ds, out: Path) -> dict:
    max_t = int(ds.x.shape[1])
    src = out / name / "src"
    generate(qm, src, max_t=max_t)
    rows = []
    for board, placements in BOARDS:
        for w in placements:
            print(f"  {name} {board} --weights {w}", flush=True)
            rows.append(_measure(ir, qm, ds, src, out / name, board, w))
    return {"model": LABELS[name], "macs_per_step": int(qm.recurrent_macs_per_step()),
            "weights_bytes": int(qm.flash_weight_bytes()), "sequences": len(ds), "max_t": max_t,
            "steps_mean": float(np.mean(ds.lengths)), "rows": rows}


def run(quick: bool = False) -> dict:
    out = Path(bench_out("boards"))
    n = 4 if quick else 24
    res = {"models": {}}
    train_sst2(shared_data(), bench_out("sst2"))
    p, _, _, _ = load_benchmark(bench_out("sst2"))
    ir = pipeline.import_model(p["model"])
    qm, _ = pipeline.quantize_model(ir, load_npz(p["train"], ir), 1000, progress=False)
    res["models"]["sst2-lstm"] = _model("sst2-lstm", ir, qm, _subset(load_npz(p["dev"], ir), n), out)
    from .fsdd import train as train_fsdd
    f = train_fsdd("official")["paths"]
    ir = pipeline.import_model(f["model"])
    qm, _ = pipeline.quantize_model(ir, load_npz(f["train"], ir), 1000, progress=False)
    res["models"]["fsdd-gru"] = _model("fsdd-gru", ir, qm, _subset(load_npz(f["test"], ir), n), out)
    return res


def markdown(res: dict) -> str:
    L = ["## Per board: memory system, latency and energy", "",
         "Each board's memory-system model (`rnnskip/boards/*.toml` `[memory_system]`, docs/memory_systems.md: "
         "flash lines, prefetch, caches at the board's clock) under the Unicorn cycle model; latency at the "
         "board's clock; energy per inference = the datasheet's typical run-mode current x supply voltage x "
         "latency (`[power]`, an estimate from datasheet figures, not a measurement; figures marked ASSUMED in "
         "the board file are placeholders). Line fills and stall cycles: per inference, from the memory model. "
         "`sram`: the weights copied to SRAM at start-up (`--weights sram`; the one-time copy is not in the "
         "cycles per inference), refused in one line where they do not fit.", ""]
    for key, m in res["models"].items():
        L += [f"**{m['model']}** ({m['macs_per_step']:,} MAC per step, {m['weights_bytes']:,} bytes of int8 "
              f"weights, first {m['sequences']} test sequences, {m['steps_mean']:.1f} steps on average), "
              "dense, portable kernels:", "",
              "| board | core @ clock | weights | cycles / inference | latency ms | uJ / inference | line fills "
              "| stall cycles | start-up copy cycles | mismatches |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in m["rows"]:
            head = f"| {r['board']} | {r['core']} @ {r['clock_hz'] / 1e6:g} MHz | {r['weights']} |"
            if "refused" in r:
                L.append(f"{head} refused: {r['refused']} | | | | | | |")
                continue
            uj = _f(r["energy_uj"], 1) + (" (assumed)" if r["energy_source"] and "ASSUMED" in r["energy_source"]
                                          else "")
            if r["energy_uj"] is None:
                uj = "- (FPGA board)" if "FPGA" in r["energy_note"] else "-"
            L.append(f"{head} {_f(r['cycles'])} | {_f(r['latency_ms'], 2)} | {uj} | {_f(r['line_fills'])} | "
                     f"{_f(r['stall_cycles'])} | {_f(r['copy_cycles']) if r['weights'] != 'flash' else '-'} | "
                     f"{r['mismatches']} / {r['sequences']} |")
        L.append("")
    L += ["Energy sources: stm32f407 DS8626 (40 mA at 168 MHz, 3.3 V), nrf52840 Product Specification (3.3 mA "
          "CoreMark from flash at 64 MHz, 3 V); stm32f746 and rp2040 currents are ASSUMED (see the board files); "
          "MPS2 AN386 is an FPGA board: no estimate.", ""]
    return "\n".join(L)


def summary(res: dict) -> list:
    out = []
    for key, m in res["models"].items():
        rows = [r for r in m["rows"] if "refused" not in r and r["weights"] == "flash"]
        cells = [f"{r['board']} {r['latency_ms']:.2f} ms" + (f" / {r['energy_uj']:.0f} uJ" if r["energy_uj"] else "")
                 for r in rows]
        out.append(f"- {m['model']} per board (board memory model, latency / energy estimate): {', '.join(cells)}.")
    return out
