"""An LSTM's input and recurrent weights on their own per-row scales (rnnskip/cells/lstm.py): where the
input half's contributions are much larger than the recurrent half's, one shared row scale would leave
the recurrent weights a few int8 levels; on their own rows both use the int8 range, and the golden
pre-activations follow the float ones to within each half's rounding. A balanced LSTM keeps the one
shared mat-vec. (Golden = host = firmware for both forms: the random models of random_models.CONFIGS
have both, tested with every other configuration.)"""
from __future__ import annotations

import numpy as np
from helpers import quantize_on
from random_models import random_data, random_ir

from rnnskip.cells.base import fused_block, planes16
from rnnskip.cells.lstm import LSTM, SHARED_MIN_LEVELS, shared_levels
from rnnskip.converter.ir import DenseLayer, FeatureInput, ModelIR, RNNLayer
from rnnskip.quant import fixedpoint as fp

U, F = 6, 3


def _wide_input_lstm(input_sd: float = 3.0):
    rng = np.random.default_rng(4)
    layer = RNNLayer(kind="lstm", units=U, kernel=rng.normal(0, input_sd, (F, 4 * U)),
                     recurrent_kernel=rng.normal(0, 0.05, (U, 4 * U)), bias=rng.normal(0, 0.1, 4 * U), name="lstm")
    ir = ModelIR(input=FeatureInput(features=F), rnn_layers=[layer],
                 head=[DenseLayer(rng.normal(0, 0.5, (U, 2)), np.zeros(2), "softmax", "out")], name="wide")
    x = rng.uniform(-1, 1, (16, 8, F)).astype(np.float32)
    return ir, quantize_on(ir, x, np.full(16, 8, np.int32))


def _real_rows(l):
    return np.concatenate([np.arange(g * l.up, g * l.up + U) for g in range(4)])


def test_each_half_uses_the_whole_int8_range_on_every_row():
    ir, qm = _wide_input_lstm()
    l = qm.layers[0]
    assert l.options["split"] and l.options["shared_levels"] < SHARED_MIN_LEVELS
    assert [(b.name, b.input, b.row0, b.rows) for b in l.blocks] == [("gates_x", "x", 0, 4 * l.up),
                                                                        ("gates_h", "h", 4 * l.up, 4 * l.up)]
    rows = _real_rows(l)
    for b in l.blocks:
        np.testing.assert_array_equal(np.abs(b.w[rows].astype(np.int32)).max(axis=1), 127)
    # each row's bias is added once, in the half with the finer scale
    gx, gh = l.block("gates_x"), l.block("gates_h")
    assert not np.any((gx.bias != 0) & (gh.bias != 0))
    # on one shared row scale the input weights set it and the recurrent ones keep a few levels (median row)
    lay = ir.rnn_layers[0]
    shared = fused_block("gates", lay.kernel, lay.recurrent_kernel, lay.bias, l.x_scale, l.h_scale, range(4), U,
                         l.up, l.in_p, row0=0)
    assert np.median(np.abs(shared.w[rows, l.in_p:].astype(np.int32)).max(axis=1)) < 8


def test_golden_pre_activations_follow_the_float_ones_within_each_halfs_rounding():
    ir, qm = _wide_input_lstm()
    l, lay = qm.layers[0], ir.rnn_layers[0]
    rng = np.random.default_rng(5)
    x = np.zeros((64, l.in_p), np.int64)
    x[:, :F] = rng.integers(-127, 128, (64, F))
    h = np.zeros((64, l.up), np.int64)
    h[:, :U] = rng.integers(-127, 128, (64, U))
    pre = planes16(l, LSTM.golden_accumulate(l, {"h8": h}, x))
    pre = fp.sat16(pre[:, :4 * l.up] + pre[:, 4 * l.up:])[:, _real_rows(l)] / 4096.0
    z = (x[:, :F] * l.x_scale) @ lay.kernel + (h[:, :U] * l.h_scale) @ lay.recurrent_kernel + lay.bias
    ok = np.abs(z) < 7.9    # Q3.12 saturates at +-8
    # each weight is within half a step of its row's scale; the bias and the two requantisations
    # to Q3.12 round once each
    step_x = np.abs(lay.kernel).max(axis=0) * l.x_scale / 127
    step_h = np.abs(lay.recurrent_kernel).max(axis=0) * l.h_scale / 127
    bound = (0.5 * step_x * np.abs(x[:, :F]).sum(1, keepdims=True)
             + 0.5 * step_h * np.abs(h[:, :U]).sum(1, keepdims=True) + 3 / 4096 + step_x)
    assert ok.mean() > 0.5
    assert np.all(np.abs(pre - z)[ok] <= bound[ok])


def test_a_balanced_lstm_keeps_one_shared_mat_vec():
    _, qm = _wide_input_lstm(input_sd=0.003)
    l = qm.layers[0]
    assert not l.options["split"] and l.options["shared_levels"] >= SHARED_MIN_LEVELS
    assert [(b.name, b.input, b.row0, b.rows) for b in l.blocks] == [("gates", "xh", 0, 4 * l.up)]


def test_shared_levels_is_the_smaller_halfs_share_of_the_median_row():
    kernel = np.array([[1.0, 2.0, 0.0, 4.0]])          # rows' input maxima 1, 2, 0, 4 at x_scale 1
    recurrent = np.array([[0.5, 0.5, 3.0, 0.0]])       # recurrent maxima 0.5, 0.5, 3, 0 at h_scale 1
    # rows 2 and 3 have one half zero (nothing to lose); rows 0, 1: 127 * 0.5 / 1 and 127 * 0.5 / 2
    assert shared_levels(kernel, recurrent, 1.0, 1.0) == int(np.floor(127 * np.median([0.5, 0.25])))
    assert shared_levels(kernel * 0, recurrent, 1.0, 1.0) == 127


def test_the_terminal_table_names_the_split_layers():
    from rnnskip.report import _split_rows
    rep = {"quantization": {"layers": [{"name": "lstm", "kind": "lstm", "split": True, "shared_levels": 13},
                                       {"name": "lstm_1", "kind": "lstm", "split": False, "shared_levels": 44},
                                       {"name": "gru", "kind": "gru", "reset_after": True}]}}
    assert _split_rows(rep) == [("LSTM scales", "lstm: input and recurrent weights on their own row scales "
                                                "(one shared scale would keep 13 of 127 int8 levels)")]
    assert _split_rows({"quantization": {"layers": rep["quantization"]["layers"][1:]}}) == []


def test_a_row_without_input_weights_keeps_its_bias():
    """A gate row whose input weights are all zero next to a wide input range: its bias goes to the recurrent
    half's (fine) scale, not the input half's 1 x x_scale, where 1.0 would round to 0."""
    rng = np.random.default_rng(6)
    kernel = rng.normal(0, 3.0, (F, 4 * U))
    kernel[:, U] = 0.0                                   # forget gate of unit 0: no input weights
    bias = np.zeros(4 * U)
    bias[U] = 1.0
    layer = RNNLayer(kind="lstm", units=U, kernel=kernel, recurrent_kernel=rng.normal(0, 0.05, (U, 4 * U)),
                     bias=bias, name="lstm")
    ir = ModelIR(input=FeatureInput(features=F), rnn_layers=[layer],
                 head=[DenseLayer(rng.normal(0, 0.5, (U, 2)), np.zeros(2), "softmax", "out")], name="pruned")
    x = rng.uniform(-500, 500, (16, 8, F)).astype(np.float32)
    qm = quantize_on(ir, x, np.full(16, 8, np.int32))
    l = qm.layers[0]
    assert l.options["split"] and l.x_scale > 2.0
    pre = planes16(l, LSTM.golden_accumulate(l, {"h8": np.zeros((1, l.up), np.int64)}, np.zeros((1, l.in_p), np.int64)))
    pre = fp.sat16(pre[:, :4 * l.up] + pre[:, 4 * l.up:])
    assert abs(pre[0, l.up] / 4096 - 1.0) < 1e-3


def test_split_cost_is_what_the_estimate_adds():
    """LSTM.split_cost (what ``rnnskip inspect`` quotes) = the size estimate's difference between the
    same layer quantised shared and split (inputs 300x wider split it)."""
    from rnnskip import targets
    from rnnskip.targets.fit import estimate
    t = targets.load("cortex-m4")
    ir = random_ir("feat-lstm", seed=0, units=(64,), features=6)
    x, L = random_data(ir, n=8, T=10, seed=1)
    shared, split = (quantize_on(ir, x * m, L) for m in (1.0, 300.0))
    assert not shared.layers[0].options["split"] and split.layers[0].options["split"]
    e0, e1 = estimate(shared, 10, t), estimate(split, 10, t)
    assert (e1.flash - e0.flash, e1.ram - e0.ram) == LSTM.split_cost(64) == (2048, 1024)
