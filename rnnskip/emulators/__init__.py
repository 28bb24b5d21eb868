"""Emulators, one interface (``emulator.run(firmware, sequences) -> EmulationResult``,
see :mod:`rnnskip.emulators.base`):

* :class:`~rnnskip.emulators.unicorn.Unicorn` calls one firmware function inside an
  emulated core, with the cycle model and memory traffic (the default);
* :class:`~rnnskip.emulators.qemu.Qemu` and :class:`~rnnskip.emulators.renode.Renode`
  boot a whole board image on a model of the board and read what it prints over its UART.

:func:`choose` picks and checks one for a target and board before any work is done.
"""
from __future__ import annotations

from typing import Optional, Tuple

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


def default_board(target):
    """The board a core Unicorn lacks runs on under QEMU: the one its target file names
    (``board``), else the first board with that core and a QEMU machine."""
    from .. import boards
    name = target.raw.get("board")
    if name:
        return boards.load(name)
    for n in boards.available():
        b = boards.load(n)
        if b.target == target.name and b.qemu:
            return b
    raise RnnskipError(f"Unicorn has no {target.name} core and no board with QEMU has one; "
                       f"choose another --target (see 'rnnskip targets')")


def choose(name: Optional[str], target, board=None, wait_states: Optional[int] = None, *,
           traffic_sample: int = 16, workers: int = 2, progress: bool = True,
           timeout: float = 120.0) -> Tuple[object, str]:
    """(emulator, note) for ``target`` (with ``board``'s memory map when ``board`` is set).

    ``name`` None picks Unicorn where it has the core, else QEMU on ``board`` or the
    core's :func:`default_board`; ``note`` then says so in one line ("" otherwise).
    Unknown names, a board emulator without a board, Unicorn on a core it lacks and
    an emulator that is not installed are refused here, before any work."""
    note = ""
    if name is None and not target.unicorn_cpu:
        name = "qemu"
        if board is None:
            from ..boards import board_target
            board = default_board(target)
            target = board_target(board, wait_states)
            note = (f"note: Unicorn has no {target.name} core: emulating board {board.name} under QEMU "
                    f"(--board {board.name} --emulator qemu)")
        else:
            note = f"note: Unicorn has no {target.name} core: emulating board {board.name} under QEMU (--emulator qemu)"
    name = check_emulator(name or "unicorn", installed=False)
    if name == "unicorn":
        if not target.unicorn_cpu:
            raise RnnskipError(f"target {target.name} cannot run under Unicorn: "
                               + target.raw.get("unicorn_missing", "no Unicorn CPU model for this core"))
        from .unicorn import Unicorn
        return Unicorn(target, traffic_sample=traffic_sample, workers=workers, progress=progress), note
    if board is None:
        raise RnnskipError(f"--emulator {name} boots a whole board image: pass --board (see 'rnnskip boards')")
    board.require_uart(f"--emulator {name}")
    check_emulator(name)
    if name == "qemu":
        from .qemu import Qemu
        return Qemu(board, timeout=timeout, wait_states=wait_states), note
    from .renode import Renode
    return Renode(board, timeout=timeout, wait_states=wait_states), note
