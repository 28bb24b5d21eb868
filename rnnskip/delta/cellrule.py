"""The cell threshold of a delta layer (rnnskip/delta/golden.py has the whole rule): each
running sum's limit, and which units moved past theirs. The C is
``rnnskip_delta_unit_moved`` (rnnskip_delta_kernels.h); codegen writes the limits."""
from __future__ import annotations

import numpy as np

from ..cells import cell_of

LIM_MAX_T = 1 << 30


def cell_limits(l, theta_m: int) -> np.ndarray:
    """``lim`` per accumulator row of layer ``l`` (int64 holding uint32 values): ``2 T - 1``
    with ``T = ceil(theta_m * 2^(32 + q - 12) / (mult * 2^ls))`` capped at 2^30, ``q`` the row's
    fractional bits (Q3.12; a relu/linear candidate's calibrated format), so that theta_m counts
    steps of 2^-12 in real units on every row; 0 everywhere for theta_m 0."""
    mult = np.zeros(l.acc_rows, np.int64)
    ls = np.zeros(l.acc_rows, np.int64)
    for b in l.blocks:
        mult[b.row0:b.row0 + b.rows] = b.mult
        ls[b.row0:b.row0 + b.rows] = b.ls
    if theta_m <= 0:
        return np.zeros(l.acc_rows, np.int64)
    num = np.int64(theta_m) << (20 + cell_of(l.kind).plane_frac(l))
    den = mult << ls
    T = np.full(l.acc_rows, LIM_MAX_T, np.int64)
    pos = den > 0
    T[pos] = np.minimum(-(-num[pos] // den[pos]), LIM_MAX_T)
    return 2 * T - 1


def units_moved(l, M: np.ndarray, Ml: np.ndarray, lim: np.ndarray) -> np.ndarray:
    """bool ``[N, up]``: units with a row whose running sum moved past its limit."""
    d = (M - Ml + (lim >> 1)[None, :]) & 0xFFFFFFFF
    return (d >= lim[None, :]).reshape(len(M), -1, l.up).any(axis=1)
