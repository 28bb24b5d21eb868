"""Recurrent cell kinds, one module each (``lstm.py``, ``gru.py``, ...), registered here.

Each module defines one :class:`~rnnskip.cells.base.Cell` subclass and sits next to its
C kernel (``rnnskip_<cell>_cell.h``) and its Jinja2 macros (``<kind>.c.j2``). Every
module of this package is imported and its cells registered by ``kind``, so adding a
cell kind is adding its module (docs/ARCHITECTURE.md says what goes in it).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Dict, Optional, Type

from ..errors import RnnskipError
from .base import Cell

#: cell kind -> its class
CELLS: Dict[str, Type[Cell]] = {}

#: the folder holding the cells' C headers and templates
CELL_DIR = Path(__file__).resolve().parent


def _register_all() -> None:
    for m in pkgutil.iter_modules(__path__):
        if m.name == "base":
            continue
        mod = importlib.import_module(f"{__name__}.{m.name}")
        for obj in vars(mod).values():   # the classes the module defines (not one it imports to subclass)
            if inspect.isclass(obj) and issubclass(obj, Cell) and obj.__module__ == mod.__name__ and obj.kind:
                CELLS[obj.kind] = obj


def cell_of(kind: str) -> Type[Cell]:
    try:
        return CELLS[kind]
    except KeyError:
        raise RnnskipError(f"unknown recurrent cell kind '{kind}' (rnnskip has {', '.join(sorted(CELLS))}); "
                           f"the file was written by another rnnskip version") from None


def per_step_cell() -> Type[Cell]:
    """The kind that runs a per-step Dense with an activation between (or after) recurrent layers."""
    return next(c for c in CELLS.values() if not c.recurrent)


def keras_cell(class_name: str) -> Optional[Type[Cell]]:
    """The cell kind a Keras layer class (``LSTM``) or RNN cell class (``LSTMCell``) is read as."""
    for c in CELLS.values():
        if class_name in c.keras_classes or class_name in c.keras_cell_classes:
            return c
    return None


def labels() -> str:
    """'LSTM, GRU, SimpleRNN' (for messages: the recurrent kinds)."""
    return ", ".join(c.label for c in CELLS.values() if c.recurrent)


_register_all()
