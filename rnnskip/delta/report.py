"""report.json ``delta`` section, its terminal lines and plots."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..quant.golden import GoldenModel, predict_classes
from .golden import delta_layout, densities, effective_macs, run_stats, spec_of, with_delta

METHOD = ("delta network (Neil, Lee, Delbruck, Liu, ICML 2017): an input or hidden element transmits only when it "
          "moved by more than its threshold since it last transmitted; running sums M += W[:, k] * delta_k over "
          "the transmitting columns only (int8 grid thresholds, int32 sums; golden, host and firmware bit-exact)")


def without_delta(qm):
    """Shallow copy of ``qm`` without thresholds (the dense reference; a predictor is kept)."""
    return with_delta(qm, None)


def _acc(qm, out, y):
    return float(np.mean(predict_classes(out, qm.output_activation) == np.asarray(y))) if len(y) else float("nan")


def section(ir, qm, ds, ev, out_dir: Path, float_acc: Optional[float] = None, dense_fw=None, target=None,
            plots: bool = True, dense_emu=None) -> dict:
    """The ``delta`` section: golden statistics on all of ``ds``; cycles and flash traffic of the
    delta firmware (``ev.emu``) against the dense firmware (``dense_fw``; ``dense_emu``: what the
    same emulator measured running it on the same sequences, pipeline.dense_reference)."""
    spec = spec_of(qm)
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
                        "input_real": float(a * l.x_scale), "hidden_real": float(b * l.h_scale)}
                       for l, a, b in zip(qm.layers, spec.theta_x, spec.theta_h)],
        "density": dens,
        "macs_per_inference": {"dense": float(m["dense"].mean()), "effective": float(m["effective"].mean())},
        "mac_reduction_x": float(m["dense"].sum() / max(m["effective"].sum(), 1)),
        "accuracy": {"float": float_acc, "dense_int8": _acc(qm, dense_out, ds.y), "delta_int8": _acc(qm, out, ds.y)},
        "weight_bytes_read_per_inference": {"dense": float(np.mean(wb_dense)), "delta": float(np.mean(wb))},
        "cycles_per_inference": {"dense": None, "delta": None},
        "flash_read_bytes_per_inference": {"dense": None, "delta": None},
        "n": int(len(ds)),
    }
    if spec.tuning:
        t = spec.tuning
        sec["tuning"] = {k: t.get(k) for k in ("method", "validation_sequences", "max_loss_points", "reference",
                                               "reference_accuracy", "accuracy_delta_int8", "mac_reduction")}
    if ev is not None and ev.emu is not None and dense_emu is not None:
        from ..emulators.base import STAT_FIELDS
        from ..report import no_cycles_note, stat_mean as _mean
        k = int(ev.device_checked)
        demu = dense_emu
        ci, fi = STAT_FIELDS.index("cycles"), STAT_FIELDS.index("flash_read_bytes")
        ii = STAT_FIELDS.index("instructions")
        sec["instructions_per_inference"] = {"dense": _mean(demu.stats[:, ii]), "delta": _mean(ev.emu.stats[:, ii])}
        dcyc, ccyc = _mean(demu.stats[:, ci]), _mean(ev.emu.stats[:, ci])
        if dcyc is None or ccyc is None:   # a core Unicorn does not run (cortex-m55): instruction counts at most
            dcyc = ccyc = None
            ins = sec["instructions_per_inference"]
            sec["cycles_note"] = no_cycles_note(target, bool(ins["dense"] and ins["delta"]), "delta")
        trd, trc = demu.traffic_measured, ev.emu.traffic_measured
        dfl = float(demu.stats[trd, fi].mean()) if trd.any() else None
        cfl = float(ev.emu.stats[trc, fi].mean()) if trc.any() else None
        mk = effective_macs(qm, {kk: v[:k] for kk, v in st.items()}, layouts)
        mred = float(mk["dense"].sum() / max(mk["effective"].sum(), 1))
        cred = dcyc / ccyc if ccyc else None
        ins = sec["instructions_per_inference"]
        sec["instruction_reduction_x"] = (ins["dense"] / ins["delta"]) if ins["dense"] and ins["delta"] else None
        sec["cycles_per_inference"] = {"dense": dcyc, "delta": ccyc}
        sec["cycle_reduction_x"] = cred
        sec["mac_reduction_x_emulated"] = mred
        sec["cycle_vs_mac_reduction"] = (cred / mred) if cred and mred else None
        sec["flash_read_bytes_per_inference"] = {"dense": dfl, "delta": cfl}
        sec["flash_read_reduction_x"] = (dfl / cfl) if dfl and cfl else None
        sec["sequences_emulated"] = k
        sec["traffic_sampled_sequences"] = int(trc.sum())
        sec["dense_device_matches_golden"] = bool(np.array_equal(demu.out[:, : qm.output_dim], dense_out[:k]))
        sec["firmware_flash_bytes"] = {"dense": int(dense_fw.flash_bytes), "delta": None}
    if plots:
        sec["plots"] = write_plots(qm, ds, out_dir, spec)
    return sec


def table_rows(sec: dict):
    """(label, value) lines for the terminal table."""
    f = lambda v, d=3: "-" if v is None else (f"{v:,.{d}f}" if isinstance(v, float) and abs(v) < 10 else
                                                (f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)))
    th = ", ".join(f"{t['layer']} x{t['input']}/h{t['hidden']}" for t in sec["thresholds"])
    rows = [("delta thresholds", th),
            ("delta density in/hid", f"{sec['density']['input']:.3f} / {sec['density']['hidden']:.3f}"),
            ("delta MAC / inference", f"{f(sec['macs_per_inference']['effective'])} (dense "
                                     f"{f(sec['macs_per_inference']['dense'])}, {sec['mac_reduction_x']:.2f}x fewer)"),
            ("delta accuracy int8", f"{f(sec['accuracy']['delta_int8'])} (dense {f(sec['accuracy']['dense_int8'])})")]
    c = sec["cycles_per_inference"]
    if c["delta"]:
        rows.append(("delta cycles / inf", f"{f(c['delta'])} (dense {f(c['dense'])}, {sec['cycle_reduction_x']:.2f}x fewer; "
                                           f"{sec['cycle_vs_mac_reduction']:.2f} x the MAC reduction)"))
    elif sec.get("instruction_reduction_x") is not None:
        i = sec["instructions_per_inference"]
        rows.append(("delta instr. / inf", f"{f(i['delta'])} (dense {f(i['dense'])}, "
                                           f"{sec['instruction_reduction_x']:.2f}x fewer; no cycle model)"))
    if c["delta"]:
        fl = sec["flash_read_bytes_per_inference"]
        if fl["delta"]:
            rows.append(("delta flash read B", f"{f(fl['delta'])} (dense {f(fl['dense'])}, "
                                               f"{sec['flash_read_reduction_x']:.2f}x less)"))
    return rows


def write_plots(qm, ds, out_dir: Path, spec, n_seq: int = 4) -> list:
    """delta_density.png (fraction transmitting per step, a few sequences) and
    delta_pareto.png (from the tuning data in the thresholds file, when present)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = []
    k = min(n_seq, len(ds))
    if k:
        _, _, st = run_stats(qm, ds.x[:k], ds.lengths[:k], trace=True)
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        for i in range(k):
            d = st["density_t"][i]
            t = np.flatnonzero(~np.isnan(d))
            lab = f"sequence {i}" + (f" (label {ds.y[i]})" if ds.y is not None else "")
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
        xs = [dense / max(p["macs_per_inference"], 1) for p in par]
        ax.plot(xs, [100 * p["accuracy"] for p in par], "r.-", label="Pareto set (validation)")
        c = spec.tuning
        ax.scatter([c["mac_reduction"]], [100 * c["accuracy_delta_int8"]], marker="*", s=80, color="k", zorder=5,
                   label="chosen thresholds")
        ax.set_xscale("log")
        ax.set_xlabel("effective MAC reduction (x)")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("delta thresholds: accuracy vs effective MACs")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = Path(out_dir) / "delta_pareto.png"
        fig.savefig(p)
        plt.close(fig)
        out.append(p.name)
    return out
