"""The delta form of a recurrent layer's accumulators, from its blocks (``rnnskip/cells/``).

An input column updates the accumulator rows of the blocks that read ``x``, a hidden
column those of the blocks that read ``h`` (none in a per-step Dense); each must be one contiguous range (an LSTM:
all rows for both, or with its halves on their own scales rows [0, 4up) for input columns
and [4up, 8up) for hidden ones; a GRU with planes
[n | z | r | hn]: rows [0, 3up) for input columns, [up, 4up) for hidden ones). A cell
whose blocks read anything else cannot run as a delta network (its ``delta_refusal``
says why).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RnnskipError
from .spec import check_supported


@dataclass
class DeltaLayout:
    """A layer's accumulator matrix in delta form (int8, row-major here; the C code stores it column-major)."""
    wx: np.ndarray      # [rows_x, in_p]  columns of the input part
    wh: np.ndarray      # [rows_h, up]    columns of the hidden part
    x_row0: int         # first accumulator row the input columns update
    h_row0: int         # first accumulator row the hidden columns update
    m0: np.ndarray      # [acc_rows] int64: M at sequence start (the biases)
    macs_x: int         # real (unpadded) MACs of one transmitting input column
    macs_h: int         # ... of one transmitting hidden column

    @property
    def m_rows(self) -> int:
        return int(self.m0.shape[0])

    @property
    def rows_x(self) -> int:
        return int(self.wx.shape[0])

    @property
    def rows_h(self) -> int:
        return int(self.wh.shape[0])


def _row_range(rows: np.ndarray, what: str, l) -> tuple:
    idx = np.flatnonzero(rows)
    if not len(idx) or idx[-1] - idx[0] + 1 != len(idx):
        raise RnnskipError(f"layer '{l.name}': the rows its {what} columns update are not one range; "
                           f"delta mode cannot keep them as one running sum")
    return int(idx[0]), int(idx[-1]) + 1


def delta_layout(l) -> DeltaLayout:
    check_supported([l])
    P, up, R = l.in_p, l.up, l.acc_rows
    A = np.zeros((R, P + up), np.int8)
    reads_x, reads_h = np.zeros(R, bool), np.zeros(R, bool)
    m0 = np.zeros(R, np.int64)
    for b in l.blocks:
        rows = slice(b.row0, b.row0 + b.rows)
        cols = {"x": slice(0, P), "h": slice(P, P + up), "xh": slice(0, P + up)}[b.input]
        A[rows, cols] = b.w
        reads_x[rows] |= b.input in ("x", "xh")
        reads_h[rows] |= b.input in ("h", "xh")
        m0[rows] = b.bias
    x0, x1 = _row_range(reads_x, "input", l)
    # no block reads h (a per-step Dense): no hidden columns, nothing for them to update
    h0, h1 = _row_range(reads_h, "hidden", l) if reads_h.any() else (0, 0)
    return DeltaLayout(wx=A[x0:x1, :P], wh=A[h0:h1, P:], x_row0=x0, h_row0=h0, m0=m0,
                       macs_x=(x1 - x0) // up * l.units, macs_h=(h1 - h0) // up * l.units)
