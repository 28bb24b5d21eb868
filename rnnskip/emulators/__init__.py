"""Emulators, one interface (``emulator.run(firmware, sequences) -> EmulationResult``,
see :mod:`rnnskip.emulators.base`):

* :class:`~rnnskip.emulators.unicorn.Unicorn` calls one firmware function inside an
  emulated core, with the cycle model and memory traffic (the default);
* :class:`~rnnskip.emulators.qemu.Qemu` and :class:`~rnnskip.emulators.renode.Renode`
  boot a whole board image on a model of the board and read what it prints over its UART.

:func:`choose` picks and checks one for a target and board before any work is done.
"""
from __future__ import annotations

from typing import Optional

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
        from .qemu import require_qemu
        require_qemu()
    return name


def choose(name: str, target, board=None, wait_states: Optional[int] = None, *, traffic_sample: int = 16,
           workers: int = 2, progress: bool = True, timeout: float = 120.0):
    """The emulator ``name`` for ``target`` (with ``board``'s memory map when ``board`` is set).
    Unknown names, a board emulator without a board and an emulator that is not installed
    are refused here, before any work."""
    name = check_emulator(name, installed=False)
    if name == "unicorn":
        from .unicorn import Unicorn
        return Unicorn(target, traffic_sample=traffic_sample, workers=workers, progress=progress)
    if board is None:
        raise RnnskipError(f"--emulator {name} boots a whole board image: pass --board (see 'rnnskip boards')")
    check_emulator(name)
    if name == "qemu":
        from .qemu import Qemu
        return Qemu(board, timeout=timeout, wait_states=wait_states)
    from .renode import Renode
    return Renode(board, timeout=timeout, wait_states=wait_states)
