"""Integer primitives, vectorised over numpy int64 arrays, bit-exact with
rnnskip/kernels/rnnskip_kernels.h and its tables in rnnskip_luts.c.

Every function takes and returns int64 arrays holding int32/int16 values, and
reproduces the C code's int32 arithmetic exactly. Requantisation is a rounding
most-significant-word multiply (Arm SMMULR), one instruction on Armv7E-M.
"""
from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
Q12 = 12   # gate pre-activations: int16 Q3.12, range [-8, 8)
Q15 = 15   # gate outputs: int16 Q0.15

# Sigmoid/tanh look-up tables: 257 int16 points over [-8, 8] in steps of 1/16,
# linearly interpolated. rnnskip_luts.c is generated from these (see luts.py).
LUT_POINTS = 257


def _lut(fn) -> np.ndarray:
    xs = (np.arange(LUT_POINTS) - 128) / 16.0
    return np.clip(np.round(fn(xs) * 32768.0), -32767, 32767).astype(np.int64)


SIGMOID_LUT = _lut(lambda v: 1.0 / (1.0 + np.exp(-v)))
TANH_LUT = _lut(np.tanh)


def wrap32(v):
    """Two's-complement wrap to int32, as C's int32 arithmetic does."""
    v = np.asarray(v, dtype=np.int64)
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def sat(v, lo, hi):
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def sat8(v):
    return sat(v, -128, 127)


def sat16(v):
    return sat(v, -32768, 32767)


def round_shift(v, n: int):
    """(v + 2^(n-1)) >> n for n >= 1 (arithmetic shift): rnnskip_round_shift."""
    v = np.asarray(v, dtype=np.int64)
    return (v + (1 << (n - 1))) >> n


def requantize(val, mult, ls):
    """round(val * 2^ls * mult / 2^32): rnnskip_requantize, i.e. Arm's SMMULR on
    (val << ls) and mult (one instruction on cores with the DSP extension).

    ``ls`` (0..31) is one left shift per accumulator set; ``mult`` per row.
    """
    v = wrap32(np.asarray(val, dtype=np.int64) << np.asarray(ls, dtype=np.int64))
    return (v * np.asarray(mult, dtype=np.int64) + (1 << 31)) >> 32


class ScaleError(ValueError):
    """A scale ratio that int32 fixed point cannot represent (the data is far off the weights' range)."""


def quantize_multipliers(scales):
    """Per-row real scales -> (mult int64 [n], ls int) for :func:`requantize`.

    ``ls`` is the smallest left shift keeping every ``mult = round(scale * 2^(32-ls))``
    below 2^31, so the largest scale gets 31 bits of precision and smaller ones
    proportionally fewer.
    """
    s = np.asarray(scales, dtype=np.float64).reshape(-1)
    if s.size == 0 or not np.all(np.isfinite(s)) or (s < 0).any():
        raise ValueError("requantisation scales must be finite and >= 0")
    top = float(s.max()) if s.size else 0.0
    ls = 0
    while top * 2.0 ** (32 - ls) >= 2.0 ** 31 - 0.5:
        ls += 1
        if ls > 31:
            raise ScaleError(f"requantisation scale {top:.3g} is too large for int32 fixed point")
    m = np.round(s * 2.0 ** (32 - ls)).astype(np.int64)
    return m, ls


def quantize_multiplier(scale: float):
    """One scale -> (mult, ls)."""
    m, ls = quantize_multipliers([scale])
    return int(m[0]), ls


def _lut_eval(x, table):
    u = np.asarray(x, dtype=np.int64) + 32768
    idx = u >> 8
    frac = u & 0xFF
    a = table[idx]
    b = table[np.minimum(idx + 1, LUT_POINTS - 1)]
    return a + (((b - a) * frac + 128) >> 8)


def sigmoid_q15(x):
    """int16 Q3.12 -> int16 Q0.15 sigmoid (rnnskip_sigmoid_s16)."""
    return _lut_eval(x, SIGMOID_LUT)


def tanh_q15(x):
    """int16 Q3.12 -> int16 Q0.15 tanh (rnnskip_tanh_s16)."""
    return _lut_eval(x, TANH_LUT)


def to_q12(c, cs: int):
    """Cell state int16 with scale 2^-cs -> int16 Q3.12 (rnnskip_lstm_cell_s16)."""
    if cs > Q12:
        return round_shift(c, cs - Q12)
    if cs < Q12:
        return sat16(np.asarray(c, dtype=np.int64) << (Q12 - cs))
    return np.asarray(c, dtype=np.int64)
