"""LayerNormalization before a head Dense: the integer normalisation (quant.golden.layer_norm, the C
rnnskip_layer_norm_s8) against an independent integer reference, the host C against the golden model on edge
cases, the float semantics, and the choice of fractional bits."""
from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from kernel_build import host_kernel_lib

from rnnskip.converter.ir import DenseLayer
from rnnskip.errors import RnnskipError
from rnnskip.generate import kernel_dir
from rnnskip.quant.golden import isqrt64, layer_norm
from rnnskip.quant.model import QNorm
from rnnskip.quant.quantize import NORM_FRAC, quantize_norm


def _reference(q: QNorm, v) -> list:
    """The QNorm arithmetic on Python integers (unbounded), math.isqrt for the root (no float anywhere)."""
    v = [int(a) for a in v[: q.n]]
    s = sum(v)
    d = q.n * sum(a * a for a in v) - s * s + q.eps_term
    root = math.isqrt(d << (2 * q.frac))
    if root == 0:
        return [0] * len(v)
    g = ((q.mult << 31) + root // 2) // root
    out = []
    for a in v:
        num = q.n * a - s
        z = (abs(num) * g + (1 << 30)) >> 31
        assert abs(num) * g < 2 ** 47   # the bound golden.NORM_SHIFT states, so int64 / uint64 never overflow
        out.append(max(-127, min(127, z if num >= 0 else -z)))
    return out


def _cases():
    """(QNorm, int8 rows): random rows of several widths, and the edges (a constant row with and without epsilon,
    +-127 in turn, one feature, clipping, the largest epsilon term the fractional bits allow)."""
    rng = np.random.default_rng(7)
    out = []
    for n in (1, 3, 20, 64, 300):
        rows = rng.integers(-128, 128, (6, n)).astype(np.int8)
        out.append((QNorm(n=n, eps_term=int(rng.integers(0, 5000)), mult=int(rng.integers(500, 200000)),
                          frac=NORM_FRAC), rows))
    edge = np.array([[5] * 8, [-127, 127] * 4, [-128, 127] * 4, [0] * 8, [127] + [-128] * 7, [1, 0, 0, 0, 0, 0, 0, 0]],
                    np.int8)   # -128 and 127 in turn: the largest variance, D's bound (quantize_norm)
    out.append((QNorm(n=8, eps_term=0, mult=4096 * 40, frac=NORM_FRAC), edge))     # root 0 rows; clipping
    out.append((QNorm(n=8, eps_term=3, mult=4096 * 40, frac=NORM_FRAC), edge))
    big = 2 ** 40 - 8 * 8 * 128 * 128 - 1000   # the largest epsilon term at this frac: D << 2 frac just below 2^62
    frac = (62 - (8 * 8 * 128 * 128 + big).bit_length()) // 2
    out.append((QNorm(n=8, eps_term=big, mult=2 ** frac * 30, frac=frac), edge))
    return out


def test_golden_is_the_integer_reference():
    for q, rows in _cases():
        g = layer_norm(q, rows)
        assert g.tolist() == [_reference(q, r) for r in rows]


def test_isqrt64_exact_at_squares_and_the_top():
    r = np.array([0, 1, 2, 3, 2 ** 31 - 1, 1518500249, 2 ** 30 + 12345], np.int64)   # r * r < 2^62: its domain
    v = np.concatenate([r * r, r * r - 1, r * r + 1, [2 ** 62 - 1]]).clip(0)
    assert isqrt64(v).tolist() == [math.isqrt(int(a)) for a in v]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = kernel_dir()
    lib = host_kernel_lib(tmp_path_factory.mktemp("ln"), "ln", d / "rnnskip_fully_connected_s8.c",
                          d / "rnnskip_mat_vec_s8.c")
    lib.rnnskip_layer_norm_s8.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int64,
                                          ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
    return lib


def test_host_c_is_the_golden_model(lib):
    """Edge rows included; the padding columns after the n real features come out 0 whatever was there."""
    for q, rows in _cases():
        cols = (q.n + 3) // 4 * 4 + 4
        for r in rows:
            x = np.full(cols, 99, np.int8)
            x[: q.n] = r
            out = np.full(cols, 55, np.int8)
            lib.rnnskip_layer_norm_s8(x.ctypes.data, q.n, cols, q.eps_term, q.mult, q.frac, out.ctypes.data)
            want = layer_norm(q, x[None, :])[0]
            assert out.tolist() == want.tolist()


def test_it_computes_keras_layer_normalisation():
    """On int8 inputs of scale s, the normalised values on the QNorm's scale are Keras' (x - mean) /
    sqrt(var + eps) within half an int8 step (+ the multiplier's rounding)."""
    rng = np.random.default_rng(3)
    n, s, eps = 40, 0.02, 1e-3
    d = DenseLayer(kernel=np.zeros((n, 2), np.float32), bias=np.zeros(2, np.float32), norm_epsilon=eps)
    x = rng.integers(-127, 128, (50, n)).astype(np.int8)
    real = x * s
    from rnnskip.reference import layer_norm as float_ln
    z = float_ln(real, eps)
    q = quantize_norm(d, s, float(np.abs(z).max()))
    assert q.frac == NORM_FRAC and q.eps_term == round(n * n * eps / s ** 2)
    got = layer_norm(q, x) * q.scale
    assert np.abs(got - z).max() <= 0.5 * q.scale * 1.001


def test_fractional_bits_shrink_with_epsilon_and_refuse_past_the_range():
    n = 16
    d = DenseLayer(kernel=np.zeros((n, 2), np.float32), bias=np.zeros(2, np.float32), norm_epsilon=1e-3)
    assert quantize_norm(d, 0.05, 3.0).frac == NORM_FRAC
    q = quantize_norm(d, 1e-7, 3.0)   # epsilon of 1e11 squared steps: D << 2 frac must stay below 2^62
    assert q.frac < NORM_FRAC and (n * n * 128 * 128 + q.eps_term) << (2 * q.frac) < 2 ** 62
    d.norm_epsilon = 1e6
    with pytest.raises(RnnskipError, match="LayerNormalization's epsilon 1e[+]06 is .* squared int8 steps"):
        quantize_norm(d, 1e-6, 3.0)
