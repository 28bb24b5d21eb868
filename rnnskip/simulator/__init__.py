"""Emulator backend: run firmware functions under Unicorn, count cycles and memory traffic.

    from rnnskip.simulator import UnicornEmulator, CallStats, EmulationError

    emu = UnicornEmulator(elf_path, target, max_instructions=50_000_000)
    emu.symbol("name") -> (addr, size)
    emu.write("sym_or_addr", data, offset=0); emu.read("sym_or_addr", size, offset=0) -> bytes
    stats = emu.call("func", args=(), context="sequence 17", mode="blocks" | "exact")
    emu.stack_high_water() -> int;  emu.reset();  emu.merge_profile(other.profile)

Firmware is built with the runtime and flags of :mod:`rnnskip.build`
(``render_runtime``, ``cflags``, ``ldflags``, ``build_firmware``); the cycle
model lives in :mod:`rnnskip.simulator.cycles`.
"""
from .unicorn_backend import CallStats, EmulationError, UnicornEmulator

__all__ = ["UnicornEmulator", "CallStats", "EmulationError"]
