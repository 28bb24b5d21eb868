"""Boards benchmark: the SST-2 LSTM and the FSDD GRU on every board with a memory-system model
(rnnskip/boards/*.toml ``[memory_system]``), dense, with the skip predictor and with run-time delta
thresholds - cycles per inference under the board's memory model, latency at the board's clock,
the energy estimate from its datasheet figures, flash line fills and stall cycles, and how much
of each method's MAC cut becomes a latency cut there; on the stm32f407 also with the weights
copied to SRAM (--weights sram).

The models are the pipeline section's SST-2 LSTM (calibrated on its training rows) and the delta
section's FSDD GRU (official split, calibrated on its training split); Unicorn with the board's
memory system (rnnskip.simulator.memory); the first N test sequences per board. A method row is
rnnskip-convert with ``--board`` and the method (its report's comparison with the same model
without it, on the same emulated sequences); the dense row is the dense reference the board's first
method conversion built and emulated for that comparison (its report's ``emulated.dense_reference``),
so the dense firmware is emulated once per method, not once more here (only where every method
conversion is refused is the dense firmware built, and emulated if it fits, on its own). The predictors and
thresholds are the skip and delta sections' own (skip_bench.sst2_predictor / train_predictor,
delta_bench.sst2_thresholds / fsdd_thresholds), made here once when those sections have not run.
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
from rnnskip.pipeline.convert import run_convert
from rnnskip.report import build_report

from . import delta_bench, skip_bench
from .common import bench_out, read_json, write_json
from .common import fmt_num as _f

#: the boards with a memory-system model, and the placements measured on each
BOARDS = (("stm32f407", ("flash", "sram")), ("stm32f746", ("flash",)), ("rp2040", ("flash",)),
          ("nrf52840", ("flash",)), ("mps2-an386", ("flash",)))


def _subset(ds: Dataset, n: int) -> Dataset:
    n = min(n, len(ds))
    return Dataset(x=ds.x[:n], y=ds.y[:n], lengths=ds.lengths[:n])


def _head(board: str, weights: str) -> dict:
    """A dense row's board columns (from the board file, so a refused row has them too)."""
    _, t = boards.resolve(None, board, None, weights)
    return {"board": board, "weights": weights, "core": t.name, "clock_hz": t.clock_hz,
            "memory_system": t.memory_system.name, "method": "dense"}


def _figures(e: dict) -> dict:
    """A row's per-inference figures from a report's emulation summary (``emulation``, or a method
    section's ``emulated.dense_reference``: rnnskip.report.emulation_summary)."""
    mp = e["memory_per_inference"]
    return dict(cycles=e["cycles_per_inference"], latency_ms=e["latency_ms_per_inference"],
                energy_uj=e["energy_uj_per_inference"], energy_note=e["energy"]["note"],
                energy_source=e["energy"].get("source"), line_fills=mp["flash_line_fills"],
                stall_cycles=mp["stall_cycles"], copy_cycles=e["weights"]["copy_cycles"])


def _dense_figures(ref: dict) -> dict:
    """The dense row's figures from a method conversion's ``emulated.dense_reference``."""
    return dict(_figures(ref), weights_bytes=ref["weights"]["bytes"], flash_bytes=ref["footprint"]["flash_bytes"],
                ram_bytes=ref["footprint"]["ram_bytes"], sequences=int(ref["sequences"]),
                mismatches=int(ref["device_mismatches"]))


def _dense_row(board: str, weights: str, refs: dict) -> dict:
    """The dense row from the first method conversion's dense reference (``refs``: method key ->
    its report's ``emulated.dense_reference``, in the order they ran); ``reference_of`` names it."""
    key, ref = next(iter(refs.items()))
    return dict(_head(board, weights), **_dense_figures(ref), reference_of=key, emulate_s=ref["emulate_s"])


def _refs_agree(refs: dict):
    """Whether the methods' dense references give the same dense row (None: fewer than two)."""
    rows = [_dense_figures(r) for r in refs.values()]
    return all(r == rows[0] for r in rows[1:]) if len(rows) > 1 else None


def _measure(ir, qm, ds, src: Path, work: Path, board: str, weights: str) -> dict:
    """Build for ``board`` with the weights in ``weights``, emulate; a row (or why it was refused).
    Only where no method conversion gave a dense reference (every one refused, or no methods)."""
    _, t = boards.resolve(None, board, None, weights)
    variant = "dsp" if t.dsp else "plain"
    row = _head(board, weights)
    try:
        fw = pipeline.build_target(src, work / f"{board}-{weights}", t, variant)
    except RnnskipError as e:    # --weights sram where they do not fit: the one-line refusal
        row["refused"] = str(e)
        return row
    t0 = time.time()
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=2, workers=2, progress=False))
    e = build_report(ir, qm, ev, t, "portable", variant, firmware=fw)["emulation"]
    row.update(_figures(e), weights_bytes=e["weights"]["bytes"], flash_bytes=fw.flash_bytes, ram_bytes=fw.ram_bytes,
               sequences=int(ev.device_checked), mismatches=int(ev.device_mismatches),
               emulate_s=round(time.time() - t0, 1))
    return row


#: how the tables name the two models (their Keras names are not descriptive: "sequential")
LABELS = {"sst2-lstm": "SST-2 LSTM(64)", "fsdd-gru": "FSDD GRU(128)"}


METHODS = ("skip", "delta")


def _first(src: str, n: int, dst: Path) -> str:
    """The first ``n`` sequences of the npz ``src`` as ``dst`` (a method conversion's data)."""
    d = dict(np.load(src))
    np.savez(dst, **{k: (v if k == "class_names" else v[:n]) for k, v in d.items()})
    return str(dst)


def _method_row(model: str, data: str, calib: str, work: Path, board: str, weights: str, key: str,
                options) -> tuple:
    """rnnskip-convert on ``board`` with step method ``key``: the method's row from its report
    (the emulation and the comparison with the same model without the method) and that dense
    reference's emulation summary (``emulated.dense_reference``), or the refusal and None."""
    row = {"board": board, "weights": weights, "method": key}
    t0 = time.time()
    try:
        conv = run_convert(model, None, data, work / f"{board}-{weights}-{key}", calib=calib, traffic_sample=2,
                           workers=2, progress=False, board_name=board, weights=weights, methods={key: options})
    except RnnskipError as e:
        if weights == "flash":
            raise
        row["refused"] = str(e)    # --weights sram where they do not fit: the one-line refusal
        return row, None
    rep = conv.report
    e, sec = rep["emulation"], rep[key]
    c, red = sec["emulated"], sec["emulated"]["reduction"]
    row.update(core=rep["target"], clock_hz=e["cycle_model"]["clock_hz"], **_figures(e),
               dense_cycles=c["cycles_per_inference"]["dense"],
               mac_cut=c["mac_reduction"]["cut"], latency_cut=red["cycles"]["cut"],
               line_fill_cut=(red.get("flash_line_fills") or {}).get("cut"),
               latency_vs_mac_cut=(c.get("cycles_vs_macs") or {}).get("cut"),
               sequences=int(rep["bitexact"]["device_checked"]), mismatches=int(rep["bitexact"]["mismatches"]),
               dense_matches_golden=c["dense_device_matches_golden"], emulate_s=round(time.time() - t0, 1))
    if key == "skip":
        row["skip_rate"] = sec["skip_rate"]
    else:
        row["thresholds"] = [f"x{t['input']}/h{t['hidden']}" for t in sec["thresholds"]]
    return row, c.get("dense_reference")


def _board_rows(board: str, weights: str, methods: dict, method_row, measure) -> tuple:
    """One board and placement: the dense row, then each method's row (``methods``: key -> options;
    ``method_row(key, options)`` -> (row, dense reference or None when refused)). The dense row is
    the first method conversion's dense reference; ``measure()`` (the dense firmware on its own)
    only when no method conversion gave one. Returns (rows, whether the references agree or None)."""
    done, refs = [], {}
    for key, options in methods.items():
        row, ref = method_row(key, options)
        done.append(row)
        if ref is not None:
            refs[key] = ref
    if not refs:
        return [measure()] + done, None
    return [_dense_row(board, weights, refs)] + done, _refs_agree(refs)


def _model(name: str, p: dict, test: str, n: int, methods: dict, out: Path) -> dict:
    """Each method in ``methods`` (key -> (options, how it was made)) on every board, and the dense
    row from the first method conversion's dense reference (emulated once per board, not again
    here); ``dense_references_agree``: whether the methods' dense references gave the same dense
    rows (None: fewer than two references on every board)."""
    ir = pipeline.import_model(p["model"])
    qm, _ = pipeline.quantize_model(ir, load_npz(p["train"], ir), 1000, progress=False)
    ds = _subset(load_npz(test, ir), n)
    max_t = int(ds.x.shape[1])
    src = out / name / "src"
    generate(qm, src, max_t=max_t)
    data = _first(test, n, out / name / "test_first.npz")
    rows, agree = [], []
    for board, placements in BOARDS:
        for w in placements:
            def method_row(key, options, board=board, w=w):
                print(f"  {name} {board} --weights {w} {key}", flush=True)
                return _method_row(p["model"], data, p["train"], out / name, board, w, key, options)

            def measure(board=board, w=w):
                print(f"  {name} {board} --weights {w} dense (no method conversion ran)", flush=True)
                return _measure(ir, qm, ds, src, out / name, board, w)

            r, a = _board_rows(board, w, {k: o for k, (o, _) in methods.items()}, method_row, measure)
            rows += r
            agree.append(a)
    agree = [a for a in agree if a is not None]
    return {"model": LABELS[name], "macs_per_step": int(qm.recurrent_macs_per_step()),
            "weights_bytes": int(qm.flash_weight_bytes()), "sequences": len(ds), "max_t": max_t,
            "steps_mean": float(np.mean(ds.lengths)), "rows": rows,
            "methods": {k: how for k, (_, how) in methods.items()},
            "dense_references_agree": all(agree) if agree else None}


def _trained_in(folder: Path):
    """Seconds the predictor in ``folder`` took to train (skip_bench's cache record), or None."""
    kf = folder.with_name(folder.name + ".bench_key.json")
    return read_json(str(kf)).get("seconds") if kf.is_file() else None


def _power(board: str) -> dict:
    """The board file's [power] figures (or why there are none), for the section's text."""
    _, t = boards.resolve(None, board, None, None)
    pw = t.power
    if pw is None or isinstance(pw, str):
        return {"none": pw or "no [power] table"}
    return {"run_current_ma": pw.run_current_ma, "supply_v": pw.supply_v, "clock_hz": pw.clock_hz,
            "source": pw.source}


def run(quick: bool = False) -> dict:
    from .fsdd import train as train_fsdd
    out = Path(bench_out("boards"))
    n = 4 if quick else 24
    res = {"models": {}, "power": {b: _power(b) for b, _ in BOARDS}}
    # SST-2: the skip section's predictor, the delta section's thresholds
    p, dj = delta_bench.sst2_thresholds()
    pdir, how = skip_bench.sst2_predictor(quick)
    sec = _trained_in(pdir)
    how += f", trained in {sec:.0f} s" if sec is not None else ""
    methods = {"skip": ({"predictor": str(pdir)}, how),
               "delta": (str(dj), f"run-time thresholds tuned on validation rows ({Path(dj).name})")}
    res["models"]["sst2-lstm"] = _model("sst2-lstm", p, p["dev"], n, methods, out)
    # FSDD: the delta section's thresholds; a predictor at the same budget, by the skip section's path
    r = train_fsdd("official")
    f = r["paths"]
    dj = delta_bench.fsdd_thresholds(r)
    pdir = skip_bench.train_predictor("fsdd", f, delta_bench.MAX_LOSS, Path(r["dir"]), quick)
    sec = _trained_in(pdir)
    methods = {"skip": ({"predictor": str(pdir)},
                        f"{skip_bench.TYPES[0]} predictor (rnnskip train-predictor on the training split, "
                        f"{delta_bench.MAX_LOSS} point budget on the validation split, the delta thresholds' "
                        f"budget{f', trained in {sec:.0f} s' if sec is not None else ''})"),
               "delta": (str(dj), f"run-time thresholds tuned on the validation split ({Path(dj).name})")}
    res["models"]["fsdd-gru"] = _model("fsdd-gru", f, f["test"], n, methods, out)
    res["plot"] = plot(res, out / "latency.png")
    write_json(str(out / "boards.json"), res)
    return res


def plot(res: dict, path: Path) -> str:
    """Latency per board, dense vs each method (one panel per model; log scale)."""
    from rnnskip.skip.plots import _plt
    plt = _plt()
    models = list(res["models"].values())
    fig, axes = plt.subplots(1, len(models), figsize=(6.2 * len(models), 3.8), squeeze=False)
    kinds = ("dense",) + METHODS
    for ax, m in zip(axes[0], models):
        cols = list(dict.fromkeys((r["board"], r["weights"]) for r in m["rows"]))
        lat = {(r["board"], r["weights"], r["method"]): r.get("latency_ms") for r in m["rows"]}
        x = np.arange(len(cols))
        w = 0.8 / len(kinds)
        for i, k in enumerate(kinds):
            ax.bar(x + (i - (len(kinds) - 1) / 2) * w, [lat.get((b, pl, k)) or np.nan for b, pl in cols], w, label=k)
        ax.set_xticks(x)
        ax.set_xticklabels([b + ("" if pl == "flash" else f"\n{pl}") for b, pl in cols], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("latency per inference (ms)")
        ax.set_title(f"{m['model']}: latency at each board's clock", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _energy_text(power: dict) -> str:
    """The energy figures each board file's [power] table gives (or why none), one clause per board."""
    parts = []
    for b, pw in power.items():
        if "none" in pw:
            parts.append(f"{b}: no estimate ({pw['none']})")
        else:
            parts.append(f"{b}: {pw['run_current_ma']:g} mA at {pw['clock_hz'] / 1e6:g} MHz, {pw['supply_v']:g} V "
                         f"({pw['source']})")
    return "Energy figures (each board file's `[power]`): " + "; ".join(parts) + "."


def _uj(r: dict) -> str:
    if r["energy_uj"] is None:
        return "- (FPGA board)" if "FPGA" in r["energy_note"] else "-"
    return _f(r["energy_uj"], 1) + (" (assumed)" if r["energy_source"] and "ASSUMED" in r["energy_source"] else "")


def _checks(m: dict) -> list:
    """Sentences computed from the rows: where the dense rows come from, the dense reference of each
    method conversion against the dense row (and whether the methods' references agree), and the
    boards where a method is slower than dense."""
    dense = {(r["board"], r["weights"]): r for r in m["rows"] if r["method"] == "dense" and "refused" not in r}
    done = [r for r in m["rows"] if r["method"] != "dense" and "refused" not in r]
    diffs = [abs(r["dense_cycles"] / dense[(r["board"], r["weights"])]["cycles"] - 1)
             for r in done if (r["board"], r["weights"]) in dense
             and dense[(r["board"], r["weights"])].get("reference_of") != r["method"]]   # copied: equal
    out = []
    if diffs:
        ref = sum(bool(r.get("reference_of")) for r in dense.values())
        agree = m.get("dense_references_agree")
        out.append(f"Dense rows: {ref} of {len(dense)} are the dense reference that board's first method conversion "
                   f"built and emulated (its report's `emulated.dense_reference`)"
                   + (", the rest a dense emulation of their own" if ref < len(dense) else "")
                   + f". The method conversions' own dense references (built and emulated by rnnskip-convert) "
                   f"are within {100 * max(diffs):.2f}% of the dense rows' cycles"
                   + ({True: " and agree with each other in every dense-row figure",
                       False: " but DISAGREE with each other in some dense-row figure (boards.json: "
                              "`dense_references_agree`)"}.get(agree, ""))
                   + f"; their dense firmware matched the golden model on "
                   f"{sum(bool(r['dense_matches_golden']) for r in done)} of {len(done)} conversions.")
    slow = [f"{r['method']} on {r['board']} ({r['weights']}, {_pct(r['latency_cut'])})"
            for r in done if r["latency_cut"] is not None and r["latency_cut"] < 0]
    if slow:
        out.append("Slower than dense (negative latency cut): " + ", ".join(slow) + ".")
    return out


def markdown(res: dict) -> str:
    L = ["## Per board: memory system, latency and energy, dense / skip predictor / delta", "",
         "Each board's memory-system model (`rnnskip/boards/*.toml` `[memory_system]`, docs/memory_systems.md: "
         "flash lines, prefetch, caches at the board's clock) under the Unicorn cycle model; latency at the "
         "board's clock; energy per inference = the datasheet's typical run-mode current x supply voltage x "
         "latency (`[power]`, an estimate from datasheet figures, not a measurement; figures marked ASSUMED in "
         "the board file are placeholders). Line fills and stall cycles: per inference, from the memory model. "
         "`sram`: the weights copied to SRAM at start-up (`--weights sram`; the one-time copy is not in the "
         "cycles per inference), refused in one line where they do not fit. Skip and delta rows: "
         "`rnnskip-convert --board` with the method on the same sequences; MAC cut and latency cut are "
         "1 - method / dense on those sequences (MACs from the golden model, latency from the emulated firmware "
         "against the same model without the method), and their ratio is how much of the MAC cut reaches the "
         "latency on that board (the energy estimate falls by the latency cut).", ""]
    for key, m in res["models"].items():
        how = m.get("methods", {})
        L += [f"**{m['model']}** ({m['macs_per_step']:,} MAC per step, {m['weights_bytes']:,} bytes of int8 "
              f"weights, first {m['sequences']} test sequences, {m['steps_mean']:.1f} steps on average), "
              "portable kernels. " + " ".join(f"{k}: {v}." for k, v in how.items()), "",
              "| board | core @ clock | weights | method | cycles / inference | latency ms | uJ / inference "
              "| line fills | stall cycles | MAC cut | latency cut | latency cut / MAC cut | start-up copy cycles "
              "| mismatches |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in m["rows"]:
            head = f"| {r['board']} | " + (f"{r['core']} @ {r['clock_hz'] / 1e6:g} MHz" if "core" in r else "") + \
                   f" | {r['weights']} | {r['method']} |"
            if "refused" in r:
                L.append(f"{head} refused: {r['refused']} |" + " |" * 9)
                continue
            method = r["method"] != "dense"
            ratio = f"{r['latency_vs_mac_cut']:.2f}" if method and r["latency_vs_mac_cut"] is not None else "-"
            L.append(f"{head} {_f(r['cycles'])} | {_f(r['latency_ms'], 2)} | {_uj(r)} | {_f(r['line_fills'])} | "
                     f"{_f(r['stall_cycles'])} | {_pct(r['mac_cut']) if method else '-'} | "
                     f"{_pct(r['latency_cut']) if method else '-'} | {ratio} | "
                     f"{_f(r['copy_cycles']) if r['weights'] != 'flash' else '-'} | "
                     f"{r['mismatches']} / {r['sequences']} |")
        sk = [r["skip_rate"] for r in m["rows"] if "skip_rate" in r]
        th = next((r["thresholds"] for r in m["rows"] if "thresholds" in r), None)
        L += [""] + ([f"Steps skipped on these sequences: {_pct(sk[0])}."] if sk else []) + \
             ([f"Delta thresholds: {', '.join(th)} (int8 steps)."] if th else []) + _checks(m) + [""]
    L += [_energy_text(res.get("power", {})), ""]
    if res.get("plot"):
        L += [f"Plot: `bench_out/boards/{res['plot']}` (latency per board, dense vs skip vs delta).", ""]
    return "\n".join(L)


def summary(res: dict) -> list:
    out = []
    for key, m in res["models"].items():
        rows = [r for r in m["rows"] if "refused" not in r and r["weights"] == "flash"]
        cells = [f"{r['board']} {r['latency_ms']:.2f} ms" + (f" / {r['energy_uj']:.0f} uJ" if r["energy_uj"] else "")
                 for r in rows if r["method"] == "dense"]
        out.append(f"- {m['model']} per board (board memory model, latency / energy estimate): {', '.join(cells)}.")
        for k in METHODS:
            cut = [f"{r['board']} {_pct(r['latency_cut'])} ({_pct(r['mac_cut'])})" for r in rows if r["method"] == k]
            if cut:
                out.append(f"  - {k}: latency cut (MAC cut) per board: {', '.join(cut)}.")
    return out
