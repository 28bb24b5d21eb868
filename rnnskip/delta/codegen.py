"""C generation for delta mode: weights in the column-major paired layout,
state sizes and the template context (see rnnskip_delta_kernels.h)."""
from __future__ import annotations

import numpy as np

from ..quant.layout import pack_paired


def pack_columns(w: np.ndarray) -> np.ndarray:
    """int8 ``W [rows, cols]`` -> int16 ``[cols, rows // 2]``, ``v[k][p] = 256 W[2p+1][k] + W[2p][k]``.

    Column k occupies ``rows`` bytes at byte offset ``k * rows``.
    """
    return np.ascontiguousarray(pack_paired(np.asarray(w, np.int8)).T, dtype="<i2")


def list_words(max_cols: int) -> int:
    """int32 words a transmit list needs for ``max_cols`` columns (+ the padding entry)."""
    return 3 * ((int(max_cols) + 2) // 2)
