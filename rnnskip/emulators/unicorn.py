"""Unicorn: the firmware's ``rnnskip_io_run`` called once per sequence inside an emulated
core (rnnskip.simulator), with the cycle model and memory traffic; parallel worker processes."""
from __future__ import annotations

import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..progress import bar
from .base import STAT_FIELDS, EmulationResult, Sequences


class Unicorn:
    """The emulation image (rnnskip.build.build_target) under Unicorn; the first
    ``traffic_sample`` sequences, spread over the data, count memory traffic exactly."""
    name = "unicorn"
    label = "device"
    board = None
    counts_each_sequence = True

    def __init__(self, target, traffic_sample: int = 16, workers: int = 2, progress: bool = True):
        self.target, self.traffic_sample, self.workers, self.progress = target, traffic_sample, workers, progress

    def run(self, firmware, sequences: Sequences) -> EmulationResult:
        return emulate_dataset(firmware.elf, self.target, sequences, traffic_sample=self.traffic_sample,
                               workers=self.workers, progress=self.progress)

    def profile(self, firmware, sequences: Sequences) -> Dict[str, float]:
        """Modeled cycles by function symbol over ``sequences`` (:func:`profile_functions`)."""
        return profile_functions(firmware.elf, self.target, sequences.x, sequences.lengths, sequences.valid,
                                 sequences.macs_per_step)


def _max_instructions(macs_per_step: int, T: int) -> int:
    # generous: a plain-C int8 MAC takes < 8 instructions; cells and head are small
    return int(16 * macs_per_step * max(T, 1) + 2_000_000)


def _run_one(emu, n, x, T, valid, macs_per_step, mode):
    """One sequence through the firmware's rnnskip_io_run; returns the CallStats."""
    emu.max_instructions = _max_instructions(macs_per_step, T)
    emu.write("rnnskip_io_x", np.ascontiguousarray(x[:T]).tobytes())
    emu.write("rnnskip_io_T", int(T).to_bytes(4, "little", signed=True))
    if valid is not None:
        emu.write("rnnskip_io_valid", np.ascontiguousarray(valid[:T], np.uint8).tobytes())
    emu.write("rnnskip_io_use_valid", (1 if valid is not None else 0).to_bytes(4, "little"))
    return emu.call("rnnskip_io_run", context=f"sequence {n}", mode=mode)


def profile_functions(elf: Path, target, dev_x: np.ndarray, lengths: np.ndarray, valid: Optional[np.ndarray],
                      macs_per_step: int) -> Dict[str, float]:
    """Emulated cycles by function symbol, summed over the given sequences (one process).

    dev_x: device inputs [N, T, ...] (GoldenModel.device_inputs); valid: uint8 [N, T] or
    None. See UnicornEmulator.function_cycles for what is credited where.
    """
    from ..simulator import UnicornEmulator
    emu = UnicornEmulator(Path(elf), target)
    total: Dict[str, float] = {}
    for n in range(len(dev_x)):
        T = int(lengths[n])
        st = _run_one(emu, n, dev_x[n], T, None if valid is None else valid[n], macs_per_step, "blocks")
        for k, v in emu.function_cycles(st).items():
            total[k] = total.get(k, 0) + v
    return total


def _worker(elf, target, out_len, macs_per_step, jobs):
    from ..simulator import UnicornEmulator
    emu = UnicornEmulator(Path(elf), target)
    res = []
    for n, x, T, valid, exact in jobs:
        st = _run_one(emu, n, x, T, valid, macs_per_step, "exact" if exact else "blocks")
        out = np.frombuffer(emu.read("rnnskip_io_out", 2 * out_len), dtype="<i2").astype(np.int64)
        flags = np.frombuffer(emu.read("rnnskip_io_flags", T), dtype=np.uint8).copy()
        res.append((n, out, flags, int(st.return_value),
                    [float(getattr(st, f) or 0) for f in STAT_FIELDS], bool(exact)))
    return res, emu.stack_high_water(), weights_copy(emu, target)


def weights_copy(emu, target) -> Optional[dict]:
    """What the start-up copy of the weights cost (--weights sram|tcm), from the emulator; None
    when the firmware reads its weights in flash."""
    st = emu.weights_copy
    if st is None:
        return None
    mem = st.memory or {}
    return {"placement": target.weights, "bytes": int(emu.weights_bytes), "address": int(emu.weights_address),
            "cycles": int(st.cycles), "instructions": int(st.instructions),
            "flash_line_fills": mem.get("flash_line_fills"), "stall_cycles": mem.get("stall_cycles")}


def _ignore_sigint():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_now(ex) -> None:
    """Stop a pool at once (Ctrl-C, an error): its workers killed and its queued chunks dropped, where leaving a
    ``with`` block would wait for the chunks that run (a user waited 7-20 s after Ctrl-C)."""
    for p in list((getattr(ex, "_processes", None) or {}).values()):
        p.terminate()
    ex.shutdown(wait=False, cancel_futures=True)


def _mp_context():
    """fork is cheapest and needs no __main__ guard in user scripts; once TensorFlow
    has started its threads in this process, fork is unsafe, so spawn then."""
    return mp.get_context("spawn" if "tensorflow" in sys.modules else "fork")


#: sequences per worker call when their memory traffic is counted
TRAFFIC_CHUNK = 2


def emulate_dataset(elf: Path, target, sequences: Sequences, traffic_sample: int = 16, workers: int = 2,
                    chunk: int = 16, progress: bool = True) -> EmulationResult:
    """Emulate every sequence; ``traffic_sample`` of them, spread over the data, count memory traffic exactly."""
    from ..datasets import spread_rows
    N = len(sequences)
    valid = sequences.valid
    counts = np.zeros(N, bool)
    counts[spread_rows(N, traffic_sample)] = True
    jobs = [(n, sequences.x[n], int(sequences.lengths[n]), None if valid is None else valid[n], bool(counts[n]))
            for n in range(N)]
    # A sequence whose memory traffic is counted runs many times slower (a hook per load and store):
    # those go in chunks of TRAFFIC_CHUNK, so the progress bar moves while they run.
    counted = [j for j in jobs if j[4]]
    rest = [j for j in jobs if not j[4]]
    chunks = [counted[i:i + TRAFFIC_CHUNK] for i in range(0, len(counted), TRAFFIC_CHUNK)] + \
        [rest[i:i + chunk] for i in range(0, len(rest), chunk)]
    out = np.zeros((N, sequences.out_len), np.int64)
    flags: List[Optional[np.ndarray]] = [None] * N
    steps = np.zeros(N, np.int64)
    stats = np.zeros((N, len(STAT_FIELDS)))
    exact = np.zeros(N, bool)
    stack = 0
    copy = None
    # one bar each: a single one would time the fast sequences by the slow counted ones (a user saw 10 minutes
    # left on a 34-second run)
    bars = {ex: bar(total=len(js), desc="emulate, memory traffic counted" if ex else "emulate", position=k,
                    enabled=progress and bool(js))
            for k, (ex, js) in enumerate(((True, counted), (False, rest)))}

    def take(result):
        nonlocal stack, copy
        rows, hw, cp = result
        stack = max(stack, hw)
        copy = copy or cp
        for n, o, f, s, st, ex in rows:
            out[n], flags[n], steps[n], stats[n], exact[n] = o, f, s, st, ex
            bars[bool(ex)].update(1)

    args = (str(elf), target, sequences.out_len, sequences.macs_per_step)
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            take(_worker(*args, c))
    else:
        # the workers ignore SIGINT, which only the parent handles (a spawned worker printed a KeyboardInterrupt
        # traceback of its own); a worker that dies breaks the pool (BrokenProcessPool), where a Pool would wait
        ex = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=_ignore_sigint)
        try:
            for f in as_completed([ex.submit(_worker, *args, c) for c in chunks]):
                take(f.result())
        except BaseException:
            _stop_now(ex)
            raise
        ex.shutdown()
    for b in bars.values():
        b.close()
    return EmulationResult(out=out, flags=flags, steps_run=steps, stats=stats,
                           traffic_measured=exact, stack_bytes=stack, weights_copy=copy,
                           step_fit=_step_fit(args, jobs, steps))


def _step_fit(args, jobs, steps) -> list:
    """Every sequence ran as many steps: the per-step cost cannot be told from the fixed cost.
    The first sequence runs once more on its first half, for the fit only."""
    if len(jobs) == 0 or len(np.unique(steps)) > 1 or steps[0] < 2:
        return []
    n, x, T, valid, _ = jobs[0]
    (row,), _, _ = _worker(*args, [(n, x, T // 2, None if valid is None else valid[: T // 2], False)])
    return [(float(row[3]), float(row[4][STAT_FIELDS.index("cycles")]))]
