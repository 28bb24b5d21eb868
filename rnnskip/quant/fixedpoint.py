"""Integer primitives, vectorised over numpy int64 arrays, bit-exact with
rnnskip/kernels/rnnskip_kernels.h and rnnskip_activation_s16.c.

Every function takes and returns int64 arrays holding int32/int16 values, and
reproduces the C code's int32 arithmetic (including CMSIS-NN's requantisation
rounding) exactly.
"""
from __future__ import annotations

import math

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


def doubling_high_mult(a, b):
    r = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64) + (1 << 30)
    return r >> 31


def divide_by_pot(v, exp):
    v = np.asarray(v, dtype=np.int64)
    exp = np.asarray(exp, dtype=np.int64)
    mask = (np.int64(1) << exp) - 1
    rem = v & mask
    res = v >> exp
    thr = (mask >> 1) + (res < 0)
    return res + (rem > thr)


def requantize(val, mult, shift):
    """CMSIS-NN arm_nn_requantize: round(val * mult * 2^(shift-31)), shift>0 = left."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    v = wrap32(np.asarray(val, dtype=np.int64) << left)
    return divide_by_pot(doubling_high_mult(v, mult), right)


def quantize_multiplier(scale: float):
    """(mult, shift) with scale == mult * 2^(shift-31), mult in [2^30, 2^31)."""
    if scale <= 0.0:
        return 0, 0
    m, e = math.frexp(scale)
    q = int(round(m * (1 << 31)))
    if q == (1 << 31):
        q //= 2
        e += 1
    if e < -31:  # too small to represent: flush to zero
        return 0, 0
    if e > 30:
        raise ValueError(f"requantisation scale {scale} too large")
    return q, e


def quantize_multipliers(scales):
    pairs = [quantize_multiplier(float(s)) for s in np.ravel(scales)]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


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
