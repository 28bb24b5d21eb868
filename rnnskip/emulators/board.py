"""What QEMU and Renode share: a board image (rnnskip.boards.firmware, the sequences
linked in) booted whole, its UART lines turned into an EmulationResult, and the same
ELF re-run under Unicorn for identical outputs, instruction counts and modelled cycles."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..simulator.unicorn_backend import EmulationError
from .base import STAT_FIELDS, EmulationResult, Sequences


class BoardEmulator:
    """Base of :class:`rnnskip.emulators.qemu.Qemu` and :class:`rnnskip.emulators.renode.Renode`:
    subclasses set ``name`` and implement :meth:`boot`."""
    name = ""

    def __init__(self, board, timeout: float = 120.0, wait_states: Optional[int] = None):
        from ..boards import board_target
        self.board, self.timeout, self.wait_states = board, timeout, wait_states
        self.target = board_target(board, wait_states)
        self.label = f"{self.name} {board.name}"

    def boot(self, elf: Path, workdir: Path) -> Tuple[List[dict], Optional[List[int]], dict]:
        """Boot ``elf``: (parsed result lines, instructions per sequence or None, what ran where)."""
        raise NotImplementedError

    def run(self, firmware, sequences: Sequences) -> EmulationResult:
        from .unicorn import Unicorn
        n = len(sequences)
        lines, icounts, info = self.boot(Path(firmware.elf), Path(firmware.elf).parent)
        info = {"emulator": self.name, "board": self.board.name, "part": self.board.part, "bundled_sequences": n,
                **info}
        if len(lines) != n:
            raise EmulationError(f"the firmware printed {len(lines)} result lines for {n} bundled sequences")
        out = np.zeros((n, sequences.out_len), np.int64)
        flags: List[Optional[np.ndarray]] = [None] * n
        steps = np.zeros(n, np.int64)
        stats = np.full((n, len(STAT_FIELDS)), np.nan)
        printed = np.zeros(n, np.int64)   # values each line printed (per-step models: T rows of its own T)
        for s in lines:
            i = s["i"]
            out[i, :len(s["out"])] = s["out"]
            flags[i] = np.array([c == "1" for c in s["flags"]], np.uint8)
            steps[i] = s["steps"]
            printed[i] = len(s["out"])
        if icounts:
            stats[:, STAT_FIELDS.index("instructions")] = icounts
        stack, disagreement, step_fit = None, "", []   # stack high water: measured by the Unicorn re-run only
        try:
            uni = Unicorn(self.target, traffic_sample=0, workers=1, progress=False).run(firmware, sequences)
        except EmulationError as e:
            info["unicorn_cross_check"] = {"skipped": str(e)}
        else:
            same_out = all(np.array_equal(uni.out[i, :printed[i]], out[i, :printed[i]])
                           and np.array_equal(uni.flags[i], flags[i]) for i in range(n))
            ui = [int(v) for v in uni.stats[:, STAT_FIELDS.index("instructions")]]
            info["unicorn_cross_check"] = {
                "outputs_identical": bool(same_out),
                "instructions_identical": (list(icounts) == ui) if icounts else None,
                "instructions_unicorn": ui, "instructions_qemu": list(icounts) if icounts else None}
            # cycles and the memory system's counters are the Unicorn model's (QEMU/Renode count neither)
            for f in ("cycles", "flash_line_fills", "stall_cycles", "icache_hits", "icache_misses",
                      "dcache_hits", "dcache_misses"):
                stats[:, STAT_FIELDS.index(f)] = uni.stats[:, STAT_FIELDS.index(f)]
            if not icounts:
                stats[:, STAT_FIELDS.index("instructions")] = ui
            stack, step_fit = uni.stack_bytes, uni.step_fit
            if not same_out:
                disagreement = f"{self.name} and Unicorn disagree on the same firmware ({firmware.elf})"
        return EmulationResult(out=out, flags=flags, steps_run=steps, stats=stats,
                               traffic_measured=np.zeros(n, bool), stack_bytes=stack,
                               board_run=info, disagreement=disagreement, step_fit=step_fit)
