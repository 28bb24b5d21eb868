"""Emulator backend: run firmware functions under Unicorn, count cycles and memory traffic.

    from rnnskip.simulator import UnicornEmulator, CallStats, EmulationError
"""
from .unicorn_backend import CallStats, EmulationError, UnicornEmulator
from .runtime import build_firmware, cflags, ldflags, render_runtime

__all__ = ["UnicornEmulator", "CallStats", "EmulationError",
           "render_runtime", "cflags", "ldflags", "build_firmware"]
