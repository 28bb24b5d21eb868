"""Full-system emulators for board images: QEMU (``qemu.py``) and Renode (``renode.py``).

Unicorn (``rnnskip.simulator``) calls one firmware function inside an emulated
core; these boot the whole image on a model of the board and read what it
prints over its UART. :func:`evaluate_on_board` is the pipeline stage that the
CLI's ``--emulator qemu|renode`` runs.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import RnnskipError

EMULATORS = ("unicorn", "qemu", "renode")


def check_emulator(name: str, installed: bool = True) -> str:
    """``name`` if it is a known emulator (and, with ``installed``, on PATH); else one line saying why not."""
    if name not in EMULATORS:
        raise RnnskipError(f"unknown --emulator '{name}'; choose one of {', '.join(EMULATORS)}")
    if not installed:
        return name
    if name == "renode":
        from .renode import require_renode
        require_renode()
    elif name == "qemu":
        from .qemu import _require_qemu
        _require_qemu()
    return name


def io_max_t(src_dir) -> int:
    """RNNSKIP_MAX_T of generated sources (the longest sequence the firmware holds)."""
    m = re.search(r"#define RNNSKIP_MAX_T (\d+)", (Path(src_dir) / "rnnskip_io.c").read_text())
    if not m:
        raise RnnskipError(f"{src_dir}/rnnskip_io.c has no RNNSKIP_MAX_T; regenerate the sources")
    return int(m.group(1))


def evaluate_on_board(ir, qm, ds, src_dir, out_dir, board, variant: str, emulator: str = "qemu",
                      max_n: Optional[int] = 16, timeout: float = 120.0, host_so=None,
                      wait_states: Optional[int] = None, model_name: Optional[str] = None,
                      progress: bool = False):
    """Float/golden/host evaluation of ``ds`` plus the board image booted under ``emulator``.

    The first ``max_n`` sequences are linked into the firmware; the UART output is
    compared bit for bit with the golden model, and the same ELF's ``rnnskip_io_run``
    is re-run under Unicorn (where it supports the core) for identical outputs,
    identical instruction counts and the cycle model's cycles.
    Returns ``(Evaluation, Firmware, info)``; ``info`` goes into report.json.
    """
    from .. import pipeline as P
    from ..boards import board_target
    from ..boards.firmware import build_board_firmware, make_bundle
    from ..emulate import STAT_FIELDS, EmulationResult
    from ..quant.golden import predict_classes
    from ..simulator.unicorn_backend import EmulationError
    from ..targets.fit import check_fits
    from . import qemu as Q

    check_emulator(emulator)
    ev = P.evaluate(ir, qm, ds, host_so=host_so, progress=progress)
    t0 = time.time()
    max_t = io_max_t(src_dir)
    if ds.x.shape[1] > max_t:
        raise RnnskipError(f"the data has sequences of {ds.x.shape[1]} steps but the firmware holds {max_t}")
    bundle = make_bundle(qm, ds.x, ds.lengths, max_n)
    t = board_target(board, wait_states)
    check_fits(qm, max_t, t, where=f"board {board.name}", bundled_bytes=bundle.flash_bytes())
    out_dir = Path(out_dir)
    fw = build_board_firmware(src_dir, out_dir, board, bundle, variant, model_name or ir.name, wait_states)
    info = {"emulator": emulator, "board": board.name, "part": board.part, "bundled_sequences": bundle.n}
    if emulator == "qemu":
        run = Q.run_firmware(fw.elf, board, timeout=timeout, workdir=out_dir)
        info.update(qemu_machine=run.machine, qemu_version=Q.qemu_version(), wall_s=round(run.wall_s, 3),
                    instruction_counts="QEMU TCG plugin (exact, per rnnskip_io_run call)" if run.icounts
                    else f"not available: {run.icount_note}",
                    device_summary=run.summary)
        if run.icount_note and run.icounts:
            info["note"] = run.icount_note
    else:
        from . import renode as R
        run = R.run_firmware(fw.elf, board, out_dir, timeout=timeout)
        info.update(renode_version=run.version, wall_s=round(run.wall_s, 3), device_summary=run.summary,
                    instruction_counts=(f"Renode ExecutedInstructions, whole run: {run.total_instructions}"
                                        if run.total_instructions is not None else "not available"))
    n = bundle.n
    if len(run.sequences) != n:
        raise EmulationError(f"the firmware printed {len(run.sequences)} result lines for {n} bundled sequences")
    out_len = P.out_len(qm)
    out = np.zeros((n, out_len), np.int64)
    flags, steps = [None] * n, np.zeros(n, np.int64)
    stats = np.full((n, len(STAT_FIELDS)), np.nan)
    for s in run.sequences:
        i = s["i"]
        out[i, :len(s["out"])] = s["out"]
        flags[i] = np.array([c == "1" for c in s["flags"]], np.uint8)
        steps[i] = s["steps"]
    if getattr(run, "icounts", None):
        stats[:, STAT_FIELDS.index("instructions")] = run.icounts
    # the same ELF under Unicorn: identical outputs, identical instruction counts, modelled cycles
    stack = None          # stack high water: measured by the Unicorn re-run only
    try:
        uni, stack = Q.unicorn_cross_check(fw.elf, board, bundle, wait_states)
        same_out = all(u["out"][:qm.output_dim] == s["out"][:qm.output_dim] and u["flags"] == s["flags"]
                       for u, s in zip(uni, sorted(run.sequences, key=lambda s: s["i"])))
        ui = [u["instructions"] for u in uni]
        qi = getattr(run, "icounts", None)
        info["unicorn_cross_check"] = {
            "outputs_identical": bool(same_out),
            "instructions_identical": (list(qi) == ui) if qi else None,
            "instructions_unicorn": ui, "instructions_qemu": list(qi) if qi else None}
        stats[:, STAT_FIELDS.index("cycles")] = [u["cycles"] for u in uni]
        if not qi:
            stats[:, STAT_FIELDS.index("instructions")] = ui
        if not same_out:
            ev.first_mismatch = f"{emulator} and Unicorn disagree on the same firmware ({fw.elf})"
    except EmulationError as e:
        info["unicorn_cross_check"] = {"skipped": str(e)}
    ev.emu = EmulationResult(out=out, flags=flags, steps_run=steps, stats=stats,
                             traffic_measured=np.zeros(n, bool),
                             stack_bytes=None if stack is None else int(stack))
    ev.device_checked = n
    d_out = out[:, :qm.output_dim]
    ev.device_acc = float(np.mean(predict_classes(d_out, qm.output_activation) == ds.y[:n])) if n else float("nan")
    for i in range(n):
        T = int(bundle.lengths[i])
        if not (np.array_equal(d_out[i], bundle.out[i]) and np.array_equal(flags[i], bundle.flags[i, :T])):
            ev.device_mismatches += 1
            ev.first_mismatch = ev.first_mismatch or (
                f"{emulator} {board.name}, sequence {i}: {d_out[i].tolist()} != golden {bundle.out[i].tolist()}")
    if "unicorn_cross_check" in info and info["unicorn_cross_check"].get("outputs_identical") is False:
        ev.device_mismatches = max(ev.device_mismatches, 1)
    ev.timings["emulate_s"] = time.time() - t0
    return ev, fw, info


def reference_on_board(ir, qm_ref, ds, work, board, variant: str, kernels: str, emulator: str, max_n: int,
                       timeout: float = 120.0, wait_states: Optional[int] = None):
    """The reference model ``qm_ref`` (the same model without its predictor or delta
    thresholds) as a board image on ``emulator``, on the same first ``max_n`` sequences:
    returns ``(Firmware, EmulationResult)`` (per-sequence instruction counts from the
    emulator; cycles where Unicorn has the core). For cores only a board emulator runs (cortex-m55),
    so the skip and delta sections can still compare the two images."""
    from ..generate import generate
    work = Path(work)
    generate(qm_ref, work / "src", max_t=int(ds.x.shape[1]), kernels=kernels)
    sub = ds.subset(slice(0, max_n))
    ev, fw, _ = evaluate_on_board(ir, qm_ref, sub, work / "src", work / "firmware", board, variant, emulator,
                                  max_n=max_n, timeout=timeout, wait_states=wait_states)
    return fw, ev.emu


def report_emulation(rep: dict, info: dict) -> dict:
    """Mark report.json's emulation section with what ran where."""
    e = rep.get("emulation")
    if e is not None:
        e["emulator"] = info["emulator"]
        cc = info.get("unicorn_cross_check", {})
        e["cycles_from"] = ("Unicorn cycle model on the same ELF" if "skipped" not in cc
                            else f"not modelled: {cc['skipped']}")
        e["board"] = info
        if not e.get("traffic_sampled_sequences"):   # board runs: QEMU/Renode do not count loads and stores
            e["traffic_note"] = (f"memory traffic is not measured on {info['emulator']} board runs; the Unicorn "
                                 f"backend counts it (--emulator unicorn)")
    return rep
