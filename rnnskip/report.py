"""report.json (the keys benchmark tooling reads), its text and the terminal table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import outputs
from .converter.ir import POOL_WORDS
from .emulators.base import STAT_FIELDS
from .generate import weights_bytes
from .power import energy_report


def _mean(a) -> float:
    return float(np.mean(a)) if len(a) else float("nan")


def stat_mean(column) -> Optional[float]:
    """Mean of one STAT_FIELDS column; None when the emulator did not measure it (NaN),
    e.g. cycles from a board emulator on a core Unicorn lacks."""
    v = np.asarray(column, float)
    return None if len(v) == 0 or np.isnan(v).any() else float(v.mean())


def no_cycles_note(target, instructions: bool, other: str) -> str:
    """Why a comparison of the model with and without ``other`` (skip, delta) has no cycles,
    from what was measured."""
    name = target.name if target is not None else "this core"
    why = (f"{name} has no cycle model (Unicorn has no core for it)" if target is not None and not target.unicorn_cpu
           else "the Unicorn re-run of the board image (which models cycles) did not complete")
    return why + (f"; dense and {other} compared by the board emulator's instruction counts" if instructions
                  else "; the emulator gave no per-sequence instruction counts either")


def reduction(dense, other) -> Optional[dict]:
    """What ``other`` saves against ``dense`` (per inference), one convention for every count:
    ``x_fewer`` = dense / other and ``cut`` = 1 - other / dense. None when either is unknown."""
    if dense is None or other is None or not dense:
        return None
    return {"x_fewer": float(dense / other) if other else None, "cut": float(1.0 - other / dense)}


def relative(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    """One reduction against another (how much of a MAC reduction became a cycle reduction):
    the ratio of their ``x_fewer`` and of their ``cut``."""
    if not a or not b:
        return None
    return {"x_fewer": a["x_fewer"] / b["x_fewer"] if a["x_fewer"] and b["x_fewer"] else None,
            "cut": a["cut"] / b["cut"] if b["cut"] else None}


def compare_with_dense(ref, ev, firmware, key: str, target, dense_golden_out, ir, lengths) -> Optional[dict]:
    """The model with step method ``key`` (emulated in ``ev``) against its dense reference ``ref``
    (pipeline.dense_reference: the same model without the method, built the same way, run on the
    same emulator and sequences, of ``lengths`` steps); ``dense_reference``: that reference's own emulation summary
    (:func:`emulation_summary`, as a conversion without the method reports it) and footprint.
    None when there is nothing per sequence to compare."""
    if ref is None or ev.emu is None:
        return None
    d, m = ref.result, ev.emu
    col = {f: i for i, f in enumerate(STAT_FIELDS)}
    k = int(ev.device_checked)
    ins = {"dense": stat_mean(d.stats[:, col["instructions"]]), key: stat_mean(m.stats[:, col["instructions"]])}
    cyc = {"dense": stat_mean(d.stats[:, col["cycles"]]), key: stat_mean(m.stats[:, col["cycles"]])}
    tr_d, tr_m = d.traffic_measured, m.traffic_measured
    # per-step models: every step before the sequence's length
    wrong = sum(not np.array_equal(outputs.rows(ref.qm, d.out[n], int(lengths[n])),
                                   outputs.golden_rows(ref.qm, dense_golden_out, n, int(lengths[n])))
                for n in range(k))
    fl = {"dense": float(d.stats[tr_d, col["flash_read_bytes"]].mean()) if tr_d.any() else None,
          key: float(m.stats[tr_m, col["flash_read_bytes"]].mean()) if tr_m.any() else None}
    out = {"sequences": k, "traffic_sampled": int(tr_m.sum()),
           "instructions_per_inference": ins, "cycles_per_inference": cyc, "flash_read_bytes_per_inference": fl,
           "firmware_flash_bytes": {"dense": int(ref.firmware.flash_bytes),
                                    key: int(firmware.flash_bytes) if firmware is not None else None},
           "reduction": {"instructions": reduction(ins["dense"], ins[key]),
                         "cycles": reduction(cyc["dense"], cyc[key]),
                         "flash_read_bytes": reduction(fl["dense"], fl[key])},
           "dense_device_matches_golden": wrong == 0}
    spec = target.memory_system if target is not None else None
    if spec is not None:       # how much of the method's cut reaches the flash (line fills) and its stalls
        cd, cm = stat_columns(d), stat_columns(m)
        for f in ("flash_line_fills", "stall_cycles"):
            v = {"dense": stat_mean(cd[f]), key: stat_mean(cm[f])}
            out[f"{f}_per_inference"] = v
            out["reduction"][f] = reduction(v["dense"], v[key])
        out["memory_system"] = spec.name
    if cyc["dense"] is None or cyc[key] is None:   # a core Unicorn lacks (cortex-m55): instruction counts at most
        out["cycles_per_inference"] = {"dense": None, key: None}
        out["cycles_note"] = no_cycles_note(target, bool(ins["dense"] and ins[key]), key)
    out["dense_reference"] = dict(
        emulation_summary(d, target, ref.qm, ir.macs_per_step(), ir.head_macs()),
        footprint=footprint(ref.firmware, ref.qm, target, d),
        device_mismatches=max(int(wrong), 1 if d.disagreement else 0), emulate_s=round(ref.seconds, 1))
    return out


def _n(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _red(r: Optional[dict]) -> str:
    if not r:
        return ""
    f = r.get("x_fewer")
    x = "" if not f else f", {f:.2f}x fewer" if f >= 1 else f", {1 / f:.2f}x more"
    return f" ({-r['cut']:+.1%}{x})"


def comparison_rows(sec: dict, key: str) -> list:
    """Terminal lines of a step method's section: MACs, and what the emulator measured against
    the dense reference (cycles, or instructions where the core has no cycle model; flash reads)."""
    m = sec["macs_per_inference"]
    e = sec.get("emulated")
    # the MACs are over every row, the emulated figures over the first ones: where they differ each line says
    # how many; another method on: the MACs are counted without it
    fewer = bool(e and sec.get("n") and e.get("sequences") and sec["n"] != e["sequences"])
    said = (["dense steps"] if m.get("counted") else []) + ([f"{sec['n']:,} sequences"] if fewer else [])
    rows = [(f"{key} MAC / inference", f"{_n(m['dense'])} -> {_n(m[key])}{_red(sec.get('mac_reduction'))}"
                                       + (f" ({', '.join(said)})" if said else ""))]
    if not e:
        return rows
    # the emulated rows' own MAC change: on a few rows it can be far from the whole set's (a user saw 31% of the
    # steps skipped over 60 rows and no cycles saved on the 6 emulated, which skipped none)
    emu_macs = f"; MACs {_red(e['mac_reduction'])[2:-1]} on them" if e.get("mac_reduction") else ""
    emu_n = f" ({e['sequences']:,} emulated{emu_macs})" if fewer else ""
    c, i, f = e["cycles_per_inference"], e["instructions_per_inference"], e["flash_read_bytes_per_inference"]
    if c["dense"] is not None:
        rows.append((f"{key} cycles / inf",
                     f"{_n(c['dense'])} -> {_n(c[key])}{_red(e['reduction']['cycles'])}{emu_n}"))
    elif i["dense"] is not None:
        rows.append((f"{key} instr. / inf", f"{_n(i['dense'])} -> {_n(i[key])}"
                                            f"{_red(e['reduction']['instructions'])}; no cycle model{emu_n}"))
    sampled = f" ({e['traffic_sampled']:,} sampled)" if fewer and e.get("traffic_sampled") else ""
    if f["dense"] is not None and f[key] is not None:
        rows.append((f"{key} flash read B", f"{_n(f['dense'])} -> {_n(f[key])}"
                                            f"{_red(e['reduction']['flash_read_bytes'])}{sampled}"))
    lf = e.get("flash_line_fills_per_inference")
    if lf and lf["dense"] is not None and lf[key] is not None:
        rows.append((f"{key} line fills", f"{_n(lf['dense'])} -> {_n(lf[key])}"
                                          f"{_red(e['reduction']['flash_line_fills'])}{sampled}"))
    return rows


def stat_columns(emu) -> dict:
    """STAT_FIELDS name -> column of ``emu.stats``; NaN columns for counters a stage file
    written before they existed lacks."""
    n = emu.stats.shape[1]
    return {f: emu.stats[:, i] if i < n else np.full(len(emu.stats), np.nan) for i, f in enumerate(STAT_FIELDS)}


def memory_system_report(target) -> dict:
    """report.json's ``memory_system``: the board's model, or the core-only model the bare
    target uses (named as such, so no cycle figure is without its memory model)."""
    spec = target.memory_system if target is not None else None
    if spec is not None:
        return spec.describe()
    ws = target.flash_wait_states if target is not None else 0
    name = ("core only: single-cycle memory, 0 flash wait states per word" if not ws else
            f"core only: single-cycle SRAM, flash with {ws} wait state{'s' if ws != 1 else ''} per word")
    return {"name": name,
            "source": "rnnskip/simulator/cycles.py (no line fills, prefetch or caches: --board selects a "
                      "board's memory system)",
            "clock_hz": target.clock_hz if target is not None else None,
            "parameters": {"flash_wait_states_per_word": ws}}


def memory_counters(col: dict, target) -> Optional[dict]:
    """Per-inference memory-system counters (means over the sequences); None without a
    memory system."""
    spec = target.memory_system if target is not None else None
    if spec is None:
        return None
    names = (("cache", "icache"),) if spec.unified else tuple(
        (c, c) for c in ("icache", "dcache") if getattr(spec, c) is not None)
    return {"flash_line_fills": stat_mean(col["flash_line_fills"]),
            "stall_cycles": stat_mean(col["stall_cycles"]),
            "cache_hits": {n: stat_mean(col[f"{f}_hits"]) for n, f in names},
            "cache_misses": {n: stat_mean(col[f"{f}_misses"]) for n, f in names}}


def weights_report(target, emu, qm) -> dict:
    """report.json's ``emulation.weights``: where the weights live and, when the start-up code
    copies them to RAM (--weights sram|tcm), what that copy cost, once (not per inference)."""
    copy = emu.weights_copy
    placement = target.weights if target is not None else "flash"
    if copy is None:
        return {"placement": placement, "bytes": weights_bytes(qm),
                "copy_cycles": 0, "note": "const in flash, read in place by every inference"}
    clock = target.clock_hz
    return {"placement": copy["placement"], "bytes": copy["bytes"], "address": copy["address"],
            "copy_cycles": copy["cycles"], "copy_instructions": copy["instructions"],
            "copy_flash_line_fills": copy["flash_line_fills"], "copy_stall_cycles": copy["stall_cycles"],
            "copy_ms": copy["cycles"] / clock * 1e3,
            "note": (f"copied from flash to {'the data TCM' if copy['placement'] == 'tcm' else 'SRAM'} once at "
                     f"start-up (startup.c rnnskip_copy_weights, a word loop, emulated once under the same cycle "
                     f"and memory model); the copy is not in cycles_per_inference, and every inference reads "
                     f"the weights from RAM (zero wait states in the memory model)")}


def cycles_per_step(emu) -> tuple:
    """Least-squares fit cycles = a + b * steps_run over the emulated sequences (and the runs
    made for the fit only, ``emu.step_fit``) -> (a, b)."""
    extra = emu.step_fit
    steps = np.concatenate([emu.steps_run.astype(float), [s for s, _ in extra]])
    cyc = np.concatenate([emu.stats[:, STAT_FIELDS.index("cycles")], [c for _, c in extra]])
    if len(np.unique(steps)) < 2:
        return float("nan"), float("nan")
    b, a = np.polyfit(steps, cyc, 1)
    return float(a), float(b)


def _front_entry(f) -> dict:
    """One front-end layer in report.json."""
    if hasattr(f, "kernel"):
        depthwise = {"depth_multiplier": f.multiplier} if hasattr(f, "multiplier") else {}
        return {"name": f.name, "kind": "depthwise_conv1d" if depthwise else "conv1d", "filters": f.out_dim,
                "kernel_size": f.taps, **depthwise, "strides": f.strides, "dilation": f.dilation, "padding": f.padding,
                "activation": f.activation}
    return {"name": f.name, "kind": f"{f.kind}_pool1d", "pool_size": f.pool_size, "strides": f.strides}


def build_report(ir, qm, ev, target, kernels: str, variant: str, firmware=None) -> dict:
    """Assemble report.json from an :class:`pipeline.Evaluation` (calibration provenance from
    ``qm.calibration``, set where the model was quantised)."""
    macs_step = ir.macs_per_step()
    cal = qm.calibration
    from . import __version__
    from .converter.ir import model_fingerprint
    rep = {
        "rnnskip": __version__,
        "target": target.name,
        "kernels": kernels,
        "variant": variant,
        # the DSP path on an Armv8.1-M core compiles the Helium (MVE) mat-vecs too
        "mve": bool(variant == "dsp" and target.mve),
        "model": {
            "type": "+".join(l.kind for l in ir.rnn_layers),
            "layers": [{"name": l.name, "kind": l.kind, "units": l.units, "input_dim": l.input_dim,
                        **({"bidirectional": l.merge_mode} if l.backward is not None else {})}
                       for l in ir.rnn_layers],
            "input": "tokens" if ir.is_token_model else "features",
            "params": ir.params(),
            "macs_per_step": macs_step,
            "head_macs": ir.head_macs(),
            "timesteps_mean": _mean(ev.golden_steps) if ev.golden_steps is not None else None,
            "output_dim": ir.output_dim,
            "notes": list(ir.notes),
            # which trained model this is, wherever its file is (the sha256 of every float weight, as the delta
            # and predictor files record it)
            "source": str(ir.source), "weights_sha256": model_fingerprint(ir),
        },
        "accuracy": {"float": ev.float_acc, "float_int8_weights": ev.float_int8_weights,
                     "int8_golden": ev.golden_acc, "int8_device": ev.device_acc,
                     "n": ev.n, "n_device": ev.device_checked},
        "bitexact": {"checked": max(ev.host_checked, ev.device_checked),
                     "mismatches": ev.host_mismatches + ev.device_mismatches,
                     "host_checked": ev.host_checked, "host_mismatches": ev.host_mismatches,
                     "device_checked": ev.device_checked, "device_mismatches": ev.device_mismatches,
                     "first_mismatch": ev.first_mismatch or None},
        "quantization": {
            "calibration": cal.get("source", ""),
            "calibration_sequences": cal.get("sequences"),
            "weights": "int8 symmetric per output row", "activations": "int8 symmetric per tensor",
            "gates": "int16 Q3.12 in, Q0.15 out (257-point LUT)", "accumulators": "int32",
            "layers": [{"name": l.name, "kind": l.kind, **l.options} for l in qm.layers],
            **({} if qm.token_input else {"input": input_scales_report(qm)}),
        },
        "timings_s": {k: round(v, 3) for k, v in ev.timings.items()},
    }
    rep["data"] = {"labels": bool(ev.labelled)}   # without y there is nothing to score against
    if ev.padding:   # which rule chose the steps that ran, so a disagreement with Keras can be traced
        rep["data"]["padding"] = ev.padding
    if not ev.labelled:
        rep["accuracy"] = None
    if ev.error is not None:  # regression: errors in the output's units
        rep["accuracy"] = None
        rep["error"] = dict(ev.error, int8_weights_vs_float_rmse=ev.float_int8_weights, n=ev.n)
    if ir.per_step:
        rep["model"]["per_step_outputs"] = True
    if ir.pool:   # pooling over time of the last layer's outputs (docs/pooling.md)
        rep["model"]["pool_over_time"] = {"kind": ir.pool, "layer": ir.pool_name,
                                          **({"steps": ir.pool_steps} if ir.pool == "flatten" else {})}
    if not ir.is_token_model and ir.input.front:   # the streamed Conv1D front end (docs/frontends.md)
        rep["model"]["front_end"] = [_front_entry(f) for f in ir.input.front]
        rep["model"]["front_macs_per_frame"] = ir.front_macs()
        rep["model"]["macs_note"] = ("macs_per_step and the emulation's MACs count the recurrent layers and the "
                                     "head; the front end adds front_macs_per_frame per frame it emits (per recurrent "
                                     "step: each convolution's MACs times the frames it emits per front-end frame)")
    if ev.emu is not None:
        rep["emulation"] = emulation_summary(ev.emu, target, qm, macs_step, ir.head_macs())
    if firmware is not None:
        rep["footprint"] = footprint(firmware, qm, target, ev.emu)
    return rep


def input_scales_report(qm) -> dict:
    """How float features become int8 (``quantize.feature_scales``): one scale per feature or one for all,
    and the scales (float units of one int8 step; the device multiplies by their float32 inverses)."""
    rep = {"scheme": ("int8 symmetric, one scale per feature (folded into the first layer's weights)"
                      if qm.per_feature_inputs else "int8 symmetric, one scale for all features"),
           "scales": [float(v) for v in qm.feature_scales]}
    if qm.feature_offsets is not None:   # x - offset is what gets scaled: the model's input normalisation's centre
        rep["scheme"] += ", of each feature minus its offset (the centre the model's input normalisation maps to 0)"
        if not qm.per_feature_inputs and len(set(np.round(np.asarray(qm.feature_scales, np.float64), 12))) > 1:
            rep["scheme"] += " in the normalisation's units (the scales differ by its factor per feature)"
        rep["offsets"] = [float(v) for v in qm.feature_offsets]
    return rep


def emulation_summary(emu, target, qm, macs_step: int, head_macs: int) -> dict:
    """report.json's ``emulation`` from what the emulator measured (``emu``, an EmulationResult of
    ``qm``'s firmware on ``target``); also each step method's ``emulated.dense_reference``."""
    col = stat_columns(emu)
    tr = emu.traffic_measured
    macs = emu.steps_run * macs_step + head_macs
    varying = [m.varying_step_cost for m in qm.methods if m.varying_step_cost]
    a, b = (None, None) if varying else cycles_per_step(emu)
    e = {
        "emulator": "unicorn",
        # a board's memory system replaces the per-word flash wait states (two figures side by side confused a
        # user): null then, and memory_system holds the ones that apply
        "cycle_model": {"table": target.cycle_table, "source": target.cycle_source,
                        "flash_wait_states": None if target.memory_system else target.flash_wait_states,
                        "clock_hz": target.clock_hz},
        "memory_system": memory_system_report(target),
        "memory_per_inference": memory_counters(col, target),
        "sequences": int(len(emu.steps_run)),
        "steps_run_mean": _mean(emu.steps_run),
        "instructions_per_inference": _mean(col["instructions"]),
        "cycles_per_inference": _mean(col["cycles"]),
        "macs_per_inference": _mean(macs),
        "macs_per_cycle": float(macs.sum() / max(col["cycles"].sum(), 1.0)),
        "cycles_per_step": b,
        "cycles_fixed": a,
        "step_macs_per_cycle": float(macs_step / b) if b and b > 0 else None,
        **({"cycles_per_step_note": "not fitted: " + varying[0]} if varying else {}),
        "latency_ms_per_inference": _mean(col["cycles"]) / target.clock_hz * 1e3,
        "flash_read_bytes_per_inference": _mean(col["flash_read_bytes"][tr]),
        "sram_read_bytes_per_inference": _mean(col["sram_read_bytes"][tr]),
        "sram_write_bytes_per_inference": _mean(col["sram_write_bytes"][tr]),
        "traffic_sampled_sequences": int(tr.sum()),
        **({"macs_note": "; ".join(m.macs_note for m in qm.methods if m.macs_note)}
           if any(m.macs_note for m in qm.methods) else {}),
        "traffic_note": (f"memory traffic counted exactly (each executed load/store's address from its decoded "
                         f"operands and registers) on {int(tr.sum())} of {len(tr)} sequences, spread evenly over "
                         f"them; instructions and cycles on all of them"),
    }
    if qm.front and emu.flags and all(f is not None for f in emu.flags):
        # one rnnskip_step per input frame; a recurrent step runs on the frames that complete an output
        frames = np.array([len(f) for f in emu.flags], np.float64)
        e["input_frames_mean"] = _mean(frames)
        ok = frames.sum() > 0 and np.all(np.isfinite(col["cycles"]))   # NaN: a board run without a cycle model
        e["cycles_per_input_frame"] = float(col["cycles"].sum() / frames.sum()) if ok else None
    e["weights"] = weights_report(target, emu, qm)
    energy = energy_report(target, e["latency_ms_per_inference"])
    e["energy_uj_per_inference"] = energy["uj_per_inference"]
    e["energy"] = energy
    if emu.board_run is not None:
        _board_emulation(e, emu.board_run)
    return e


def footprint(firmware, qm, target, emu=None) -> dict:
    """report.json's ``footprint``: the firmware image's flash and RAM (and the stack ``emu`` measured)."""
    from .build import harness_ram_bytes, image_kind, symbol_sizes
    syms = symbol_sizes(firmware.elf) if firmware.elf is not None and Path(firmware.elf).is_file() else None
    harness = harness_ram_bytes(syms) if syms is not None else None
    # which image the sizes are of: the emulation image (Unicorn) or a board image (QEMU/Renode), which adds its
    # start-up, UART driver and bundled test sequences (a user saw two 'flash' figures mean different things)
    image = {"board": "the board image (its start-up, UART driver and bundled test sequences included)",
             "emulation": "the emulation image (the model, a minimal start-up and the harness's buffers)"}[
        image_kind(syms)] if syms is not None else None
    return {"flash_bytes": firmware.flash_bytes, "ram_bytes": firmware.ram_bytes, "image": image,
            "harness_ram_bytes": harness,
            "model_ram_bytes": firmware.ram_bytes - harness if harness is not None else None,
            "stack_bytes": emu.stack_bytes if emu is not None else None,
            "weights_bytes": qm.flash_weight_bytes(),
            "flash_capacity": target.flash_size, "ram_capacity": target.ram_size}


def _board_emulation(e: dict, info: dict) -> None:
    """Mark the emulation section of a board run with what ran where."""
    e["emulator"] = info["emulator"]
    cc = info.get("unicorn_cross_check", {})
    e["cycles_from"] = ("Unicorn cycle model on the same ELF" if "skipped" not in cc
                        else f"not modelled: {cc['skipped']}")
    if "skipped" in cc:   # instruction counts only: no memory system either (the table says the same)
        e["memory_system"] = {"name": f"not modelled: {info['emulator']} counts instructions only", "source": None,
                              "clock_hz": e["memory_system"].get("clock_hz"), "parameters": {}}
    e["board"] = info
    if not e.get("traffic_sampled_sequences"):   # board runs: QEMU/Renode do not count loads and stores
        e["traffic_note"] = (f"memory traffic is not measured on {info['emulator']} board runs; the Unicorn "
                             f"backend counts it (--emulator unicorn)")


def write_report(rep: dict, path: Path) -> None:
    from .jsonio import dumps
    Path(path).write_text(dumps(rep))   # NaN (say, no accuracy without labels) -> null


def _count(v: float) -> str:
    """A mean count: 64, 15.8, 16,000 (to one decimal, without a trailing .0)."""
    return f"{v:,.1f}".rstrip("0").rstrip(".")


def _fmt(v, unit="") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.3f}{unit}" if abs(v) < 10 else f"{v:,.0f}{unit}"
    return f"{v:,}{unit}"


def _fmt_ms(v) -> str:
    """A latency in ms to the microsecond below 10 ms and to 10 us above (a board's 15.53 ms is not "16 ms")."""
    return _fmt(v, " ms") if v is None or v != v or abs(v) < 10 else f"{v:,.2f} ms"


def _task_rows(rep: dict) -> list:
    a, err = rep["accuracy"], rep.get("error")
    if (rep.get("data") or {}).get("labels") is False:
        return [("accuracy", "-  (no labels (y) in the data: bit-exactness, cycles and memory only)")]
    # the int8 model is the one with its step methods: say so, as the float model with int8 weights is without them
    on = [k for k in ("skip", "delta") if rep.get(k) and rep[k].get("attached", True)]
    with_methods = f"  (with {' and '.join(on)})" if on else ""
    if err is not None:  # regression
        w = err.get("int8_weights_vs_float_rmse")   # the float model with the int8 weights, against the float model
        return [("error float vs label (RMSE)", _fmt(err["float_vs_label_rmse"])),
                ("error int8 vs float (RMSE)", _fmt(err["int8_vs_float_rmse"]) + with_methods
                 + ("" if w is None else f"  (int8 weights, float activations: {_fmt(w)})")),
                ("error int8 vs float (max)", _fmt(err["int8_vs_float_max_abs"]))]
    w = a.get("float_int8_weights")                 # the float model with the int8 weights
    if a["n_device"] >= a["n"]:
        on = f"n={a['n_device']}"
    else:   # a subset: say which, as the golden accuracy next to it is on every sequence
        on = f"the first {a['n_device']} of the {a['n']} sequences"
        if (rep.get("bitexact") or {}).get("device_mismatches") == 0:
            on += "; bit-exact with the golden model on them"
    return [("accuracy float", _fmt(a["float"]) + ("" if w is None else f"  (with the int8 weights: {_fmt(w)})")),
            ("accuracy int8 golden", _fmt(a["int8_golden"]) + with_methods),
            ("accuracy int8 device", f"{_fmt(a['int8_device'])}  ({on})")]


def _assumed_memory(memory: Optional[dict]) -> str:
    """The latency row's note when the board's memory system rests on ASSUMED figures ("" otherwise): the cycles,
    the latency and the energy all carry them (a user's were 27% stalls from assumed flash wait states)."""
    params = (memory or {}).get("parameters") or {}
    parts = [k for k, g in params.items() if isinstance(g, dict) and "ASSUMED" in str(g.get("source", ""))]
    return f"  (ASSUMED memory figures: {', '.join(parts)}; see emulation.memory_system)" if parts else ""


def _energy_rows(en: Optional[dict]) -> list:
    if not en or en["note"].startswith("no energy estimate: no board"):   # a bare core: nothing to say per run
        return []
    if en["uj_per_inference"] is None:
        return [("energy / inference", "-  (" + en["note"].removeprefix("no energy estimate: ") + ")")]
    assumed = ", current ASSUMED" if "ASSUMED" in en["source"] else ""
    return [("energy / inference", f"{en['uj_per_inference']:,.3f} uJ  (estimate from datasheet figures: "
                                   f"{en['run_current_ma']:g} mA x {en['supply_v']:g} V{assumed})")]


def _split_rows(rep: dict) -> list:
    """The LSTMs whose input and recurrent weights are on their own row scales (cells/lstm.py): they cost
    one more mat-vec call and requantisation per gate row, so the table says which and why."""
    split = [l for l in rep.get("quantization", {}).get("layers", []) if l.get("split")]
    return [("LSTM scales", f"{l['name']}: input and recurrent weights on their own row scales (one shared "
                            f"scale would keep {l['shared_levels']} of 127 int8 levels)") for l in split]


def _weights_rows(w: Optional[dict]) -> list:
    if not w or w["placement"] == "flash":
        return []
    return [("weights", f"{w['placement']}: {_fmt(w['bytes'])} B copied once at start-up in "
                        f"{_fmt(w['copy_cycles'])} cycles ({_fmt(w['copy_ms'], ' ms')}), not per inference")]


def _model_line(m: dict) -> str:
    """The table's model row: front end, recurrent layers (a Bidirectional one named with its merge), size."""
    bidi = "".join(f" (Bidirectional '{l['name']}', merge {l['bidirectional']})"
                   for l in m["layers"] if l.get("bidirectional"))
    return ("".join(f"{f['kind']} -> " for f in m.get("front_end", []))
            + f"{m['type']} {'/'.join(str(l['units']) for l in m['layers'])} units{bidi}"
            + (f" -> {POOL_WORDS[m['pool_over_time']['kind']]}" if m.get("pool_over_time") else "") + ", "
            f"{_fmt(m['params'])} params, {_fmt(m['macs_per_step'])} MAC/step"
            + (f" + {_fmt(m['front_macs_per_frame'])} MAC front end" if m.get("front_macs_per_frame") else ""))


def table(rep: dict) -> str:
    """Readable summary for the terminal."""
    m, b = rep["model"], rep["bitexact"]
    rows = [("target", f"{rep['target']} ({rep['kernels']}, {rep['variant']}{' + MVE' if rep.get('mve') else ''})"),
            ("model", _model_line(m)),
            *_task_rows(rep),
            *_split_rows(rep),
            *([("padding", rep["data"]["padding"])] if rep.get("data", {}).get("padding") else []),
            ("bit-exact", f"{b['mismatches']} mismatches vs golden: host build {b.get('host_checked', 0)} sequences, "
                          f"device {b.get('device_checked', 0)}")]
    e = rep.get("emulation")
    if e:
        traffic = (_fmt(e["flash_read_bytes_per_inference"]) + f"  (sampled {e['traffic_sampled_sequences']})"
                   if e["traffic_sampled_sequences"] else "-  (not measured on this run)")
        ms = e.get("memory_system")
        cyc, ins = e.get("cycles_per_inference"), e.get("instructions_per_inference")
        counted = (cyc is None or cyc != cyc) and ins is not None and ins == ins    # None or NaN: no cycle model
        if counted:   # QEMU: exact instruction counts, no cycle or memory model (emulation.cycles_from says why)
            rows.append(("memory system", f"-  (not modelled: {e['emulator']} counts instructions only)"))
            rows.append(("instructions / inf", _fmt(e["instructions_per_inference"])
                         + f"  (exact, {e['sequences']} sequences emulated; no cycle model for this core)"))
        elif ms:
            rows.append(("memory system", ms["name"]))
        mp = e.get("memory_per_inference")
        if mp:
            caches = ", ".join(f"{n} {_fmt(mp['cache_hits'][n])} hit / {_fmt(mp['cache_misses'][n])} miss"
                               for n in mp["cache_hits"])
            rows.append(("line fills / stalls", f"{_fmt(mp['flash_line_fills'])} / {_fmt(mp['stall_cycles'])} cycles"
                         + (f"  ({caches})" if caches else "")))
        if not counted:
            rows += [("cycles / inference",
                      _fmt(e["cycles_per_inference"]) + f"  ({e['sequences']} sequences emulated)"),
                     ("cycles / step", _fmt(e["cycles_per_step"])
                      + (f"  ({e['cycles_per_step_note']})" if e.get("cycles_per_step_note") else "")),
                     *([("cycles / input frame", _fmt(e["cycles_per_input_frame"])
                         + f"  (mean over the {_count(e['input_frames_mean'])} frames of a sequence; rnnskip_step "
                           f"per frame, the recurrent layers on the frames that complete a front-end output)")]
                       if e.get("cycles_per_input_frame") is not None else []),
                     ("MAC / cycle (step)", _fmt(e["step_macs_per_cycle"])
                      + (f"  ({e['macs_note']})" if e.get("macs_note") else "")
                      + (f"  (the recurrent layers' and head's MACs; the step's cycles include the front end's "
                         f"{_fmt(m['front_macs_per_frame'])} MAC)" if m.get("front_macs_per_frame") else "")),
                     (f"latency @ {e['cycle_model']['clock_hz'] / 1e6:g} MHz", _fmt_ms(e["latency_ms_per_inference"])
                      + _assumed_memory(e.get("memory_system"))),
                     *_energy_rows(e.get("energy"))]
        rows += [("flash read B / inf", traffic),
                 *_weights_rows(e.get("weights")),
                 ("SRAM read / write B", f"{_fmt(e['sram_read_bytes_per_inference'])} / "
                                         f"{_fmt(e['sram_write_bytes_per_inference'])}")]
    f = rep.get("footprint")
    if f:
        kind = (f.get("image") or "").split(" (")[0]
        rows += [("flash / RAM / stack",
                  f"{_fmt(f['flash_bytes'])} / {_fmt(f['ram_bytes'])} / {_fmt(f['stack_bytes'])} bytes"
                  + (f" of {kind}" if kind else "")
                  + (f"  (RAM: {_fmt(f['model_ram_bytes'])} B the model, {_fmt(f['harness_ram_bytes'])} B the "
                     f"emulation harness's sequence buffers)" if f.get("harness_ram_bytes") else ""))]
    rc = rep.get("reference_check")
    if rc:
        rows.append((f"float vs {rc['runtime']}", rc.get("skipped") or (
            f"max |diff| {rc['max_abs_diff']:.2g} on {rc['rows']} rows of the data"
            if "max_abs_diff" in rc else f"output shapes differ: {rc['shape_mismatch']}")))
    st = rep.get("selftest")
    if st:
        rows.append(("selftest", f"src/rnnskip_selftest.c: {st['sequences']} sequences, {_fmt(st['flash_bytes'])} B of "
                                 f"vectors in flash" + (f"; host build: {st['host_failures']} failed"
                                                        if "host_failures" in st else "")))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)


def write_plots(ev, out_dir: Path, title: str = "", fit: bool = True) -> list:
    """cycles.png: emulated cycles per sequence against executed steps, with the fitted line (``fit``: not for a
    model whose step cost depends on the data, StepMethod.varying_step_cost); instructions.png instead where the
    emulator counts instructions only (QEMU: no cycle model)."""
    if ev.emu is None or len(ev.emu.steps_run) == 0:
        return []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    emu = ev.emu
    steps, cyc = emu.steps_run, emu.stats[:, STAT_FIELDS.index("cycles")]
    what = "cycles"
    if not np.isfinite(cyc).any():
        what, cyc = "instructions", emu.stats[:, STAT_FIELDS.index("instructions")]
        a, b = (float("nan"),) * 2
        if len(np.unique(steps)) >= 2 and fit:
            b, a = (float(v) for v in np.polyfit(steps.astype(float), cyc, 1))
    else:
        a, b = cycles_per_step(emu) if fit else (float("nan"),) * 2
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.scatter(steps, cyc / 1e3, s=8, alpha=0.5, label="emulated sequences")
    if b == b:
        xs = np.array([0, steps.max()])
        ax.plot(xs, (a + b * xs) / 1e3, "r-", lw=1, label=f"fit: {b:,.0f} {what}/step + {a:,.0f}")
    ax.set_xlabel("executed steps")
    ax.set_ylabel(f"{what} per inference (thousands)")
    ax.set_title(title or f"emulated {what}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    p = Path(out_dir) / f"{what}.png"
    fig.savefig(p)
    plt.close(fig)
    return [p]
