"""The emulator interface: ``emulator.run(firmware, sequences) -> EmulationResult``.

Three implementations: :class:`rnnskip.emulators.unicorn.Unicorn` calls the
firmware's ``rnnskip_io_run`` once per sequence inside an emulated core (cycle
model, memory traffic); :class:`rnnskip.emulators.qemu.Qemu` and
:class:`rnnskip.emulators.renode.Renode` boot a board image with the sequences
linked in and read its results from the UART. None of them judges the results:
the pipeline compares every emulator's outputs with the golden model the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Protocol

import numpy as np

from ..stagefile import stage_data

#: the counters of EmulationResult.stats, one column each (NaN: not measured). The last six
#: come from a board's memory system (rnnskip.simulator.memory); a unified cache counts as icache.
STAT_FIELDS = ("instructions", "cycles", "flash_read_bytes", "sram_read_bytes", "sram_write_bytes",
               "flash_line_fills", "stall_cycles", "icache_hits", "icache_misses", "dcache_hits", "dcache_misses")


@dataclass
class Sequences:
    """Sequences as the firmware reads them (``rnnskip_io_x``, ``rnnskip_io_T``, ``rnnskip_io_valid``)."""
    x: np.ndarray                  # device inputs [N, T(, step)]: int32 token ids or int8 features
    lengths: np.ndarray            # [N]
    valid: Optional[np.ndarray]    # [N, T] steps that run (feature models' Masking); None for token models
    out_len: int                   # int16 values of rnnskip_io_out per sequence
    macs_per_step: int             # sizes the instruction budget that tells a hung firmware from a slow one

    def __len__(self) -> int:
        return int(len(self.lengths))


@stage_data
@dataclass
class EmulationResult:
    """Per-sequence outputs and counters; traffic only where ``traffic_measured``."""
    out: np.ndarray          # int16 [N, out_len]
    flags: List[np.ndarray]  # uint8 [T_n] per sequence: the steps that ran
    steps_run: np.ndarray    # [N]
    stats: np.ndarray        # float [N, len(STAT_FIELDS)]
    traffic_measured: np.ndarray  # bool [N]: exact traffic counted for this sequence
    stack_bytes: Optional[int]
    board_run: Optional[dict] = None   # board emulators: what ran where (report.json's emulation.board)
    disagreement: str = ""   # board emulators: why the Unicorn re-run of the same image gave other outputs
    # (steps run, cycles) of extra runs made only to fit cycles per step, when every sequence
    # ran the same number of steps (a model without masking on rows without lengths)
    step_fit: List[tuple] = field(default_factory=list)
    #: --weights sram|tcm: the start-up copy, emulated once ({placement, bytes, address, cycles,
    #: instructions, flash_line_fills, stall_cycles}); None when the weights stay in flash
    weights_copy: Optional[dict] = None


class Emulator(Protocol):
    """Runs firmware on sequences and returns what it computed and counted."""
    name: str                # "unicorn", "qemu", "renode"
    label: str               # names the device in mismatch messages
    target: object           # the core (rnnskip.targets.Target) with the memory map the firmware is built for
    board: object            # the board whose image this emulator boots; None: Unicorn runs the emulation image
    counts_each_sequence: bool   # per-sequence instruction or cycle counts (the dense references need them)

    def run(self, firmware, sequences: Sequences) -> EmulationResult:
        """``firmware`` (rnnskip.build.Firmware) on ``sequences``; a board image must hold exactly these."""
        ...
