"""Weight layouts the C kernels read (converter side).

Paired-row int16 layout (``rnnskip_mat_vec_paired_s8``)
--------------------------------------------------------
Two int8 output rows share one int16 per column::

    v[p][k] = 256 * w[2p + 1][k] + w[2p][k]        (int16, little-endian)

stored row-major as ``int16 [rows // 2, cols]`` - the same flash size as the
int8 matrix (2 bytes per 2 weights). Weights must lie in [-127, 127] (the
quantiser's symmetric range), so ``v`` is in [-32639, 32639]. The kernel
recovers both rows exactly: ``SXTB16(v)`` gives ``w[2p]`` (the low byte,
sign-extended) and ``(v - w[2p]) >> 8`` gives ``w[2p + 1]``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pack_paired", "unpack_paired"]


def pack_paired(w: np.ndarray) -> np.ndarray:
    """Pack an int8 matrix ``w [rows, cols]`` into the paired layout ``int16 [rows // 2, cols]``.

    ``out[p, k] = 256 * w[2p + 1, k] + w[2p, k]``. Preconditions (the generator
    pads with zero rows/columns to meet them): ``w`` is 2-D int8, ``rows % 4 == 0``,
    ``cols % 4 == 0`` and no weight is -128. Raises ValueError otherwise.
    The result is C-contiguous with a little-endian dtype (``<i2``), ready to be
    written to flash as-is.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"pack_paired: expected a 2-D [rows, cols] matrix, got shape {w.shape}")
    if w.dtype != np.int8:
        raise ValueError(f"pack_paired: expected int8 weights, got {w.dtype}")
    rows, cols = w.shape
    if rows % 4 or cols % 4:
        raise ValueError(f"pack_paired: rows and cols must be multiples of 4, got {rows}x{cols} "
                         "(pad with zeros)")
    if rows == 0 or cols == 0:
        raise ValueError(f"pack_paired: empty matrix {rows}x{cols}")
    if (w == -128).any():
        r, c = np.argwhere(w == -128)[0]
        raise ValueError(f"pack_paired: weight -128 at [{r}, {c}]; the paired layout needs "
                         "weights in [-127, 127] (clip when quantising)")
    w16 = w.astype(np.int16)
    v = w16[1::2] * 256 + w16[0::2]
    return np.ascontiguousarray(v, dtype="<i2")


def unpack_paired(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_paired`: ``int16 [rows // 2, cols]`` -> int8 ``[rows, cols]``.

    Decodes exactly like the kernel: ``w[2p] = int8(v & 0xFF)``,
    ``w[2p + 1] = (v - w[2p]) >> 8``. For tests and debugging.
    Raises ValueError if ``v`` is not 2-D integer data, or a value is not a
    valid packed pair (outside [-32639, 32639] or with a byte equal to -128).
    """
    v = np.asarray(v)
    if v.ndim != 2 or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"unpack_paired: expected a 2-D integer array, got {v.dtype} {v.shape}")
    v32 = v.astype(np.int32)
    lo = ((v32 & 0xFF) ^ 0x80) - 0x80            # low byte, sign-extended
    hi = (v32 - lo) >> 8
    if (lo == -128).any() or (hi < -127).any() or (hi > 127).any():
        raise ValueError("unpack_paired: values are not a valid paired layout (weights outside [-127, 127])")
    w = np.empty((2 * v.shape[0], v.shape[1]), np.int8)
    w[0::2] = lo
    w[1::2] = hi
    return w
