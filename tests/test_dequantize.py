"""The float model with the int8 model's weights (rnnskip.quant.dequantize): every weight back in the
IR's layout within half an int8 step of the original, for every cell kind and input stage."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import quantize_on
from random_models import CONFIGS, bidi_ir, random_data, random_ir
from test_frontend import front_ir

from rnnskip.converter.ir import ConvLayer
from rnnskip.quant.dequantize import int8_weights_ir
from rnnskip.reference import FloatModel


def _steps(q):
    """Half an int8 step of layer ``q``'s input and recurrent weights, and of its biases (largest row)."""
    sx = max(b.scale.max() for b in q.blocks if b.input != "h") / q.x_scale
    sh = max((b.scale.max() for b in q.blocks if b.input != "x"), default=0.0) / q.h_scale   # 0: a per-step Dense
    return 0.5 * sx, 0.5 * sh, 0.5 * max(b.scale.max() for b in q.blocks)


def _bias(layer, b):
    """A GRU's (reset_after) z and r gates add their input and recurrent biases: compare the sum."""
    b = np.asarray(b, np.float64)
    if b.ndim == 2:
        U = layer.units
        return np.concatenate([b[0, :2 * U] + b[1, :2 * U], b[0, 2 * U:], b[1, 2 * U:]])
    return b


def _check_layer(layer, new, q):
    hx, hh, hb = _steps(q)
    for key, half in (("kernel", hx), ("recurrent_kernel", hh), ("bias", hb)):
        a, b = np.asarray(getattr(layer, key)), getattr(new, key)
        assert b.shape == a.shape, key
        if not a.size:   # a per-step Dense's recurrent kernel: no weights
            continue
        if key == "bias":
            a, b = _bias(layer, a), _bias(layer, b)
        assert np.abs(b - a).max() <= half * (1 + 1e-9), (layer.name, key, np.abs(b - a).max(), half)


def _check(ir, qm):
    new = int8_weights_ir(ir, qm)
    qs = iter(qm.layers)
    for layer, nl in zip(ir.rnn_layers, new.rnn_layers):
        _check_layer(layer, nl, next(qs))
        if layer.backward is not None:
            _check_layer(layer.backward, nl.backward, next(qs))
    for d, nd, q in zip(ir.head, new.head, qm.head):
        half = 0.5 * q.mat.scale.max() / q.in_scale
        assert nd.kernel.shape == d.kernel.shape and np.abs(nd.kernel - d.kernel).max() <= half * (1 + 1e-9)
        assert np.abs(nd.bias - d.bias).max() <= 0.5 * q.mat.scale.max()
    return new


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
def test_int8_weights_within_half_a_step(cfg):
    ir = random_ir(cfg, seed=3)
    x, L = random_data(ir, n=8, T=8, seed=4)
    qm = quantize_on(ir, x, L)
    new = _check(ir, qm)
    if not qm.token_input and ir.input.dense is not None:   # per-feature scales folded in, unfolded here
        assert qm.per_feature_inputs
        d, nd = ir.input.dense, new.input.dense
        steps = qm.input_dense.mat.scale.max() / qm.feature_scales     # per input feature
        assert np.all(np.abs(nd.kernel - d.kernel) <= 0.5 * steps[:, None] * (1 + 1e-9))
    if qm.token_input:
        s = qm.layers[0].x_scale
        assert np.abs(new.input.table - ir.input.table).max() <= 0.5 * s * (1 + 1e-9)
    # the float model runs on it and stays close to the original's outputs
    p0, p1 = FloatModel(ir).predict(x, L), FloatModel(new).predict(x, L)
    assert p1.shape == p0.shape and not np.array_equal(p1, p0) and np.abs(p1 - p0).max() < 0.05   # 0.009 seen


@pytest.mark.parametrize("cfg,merge", [("feat-lstm", "concat"), ("tok-gru-v1", "sum"), ("feat-rnn", "ave")])
def test_int8_weights_bidirectional(cfg, merge):
    ir = bidi_ir(cfg, merge=merge, seed=1)
    x, L = random_data(ir, n=8, T=8, seed=2)
    _check(ir, quantize_on(ir, x, L))


def test_int8_weights_front_end_unfolds_the_input_scales():
    ir = front_ir("feat-lstm-gru")
    x, L = random_data(ir, n=8, T=12, seed=5)
    x = x * np.array([1.0, 30.0, 0.2, 5.0, 1.0])      # features on different scales: per-feature inputs
    qm = quantize_on(ir, x, L)
    assert qm.per_feature_inputs
    new = _check(ir, qm)
    convs = [(f, nf, q) for f, nf, q in zip(ir.input.front, new.input.front, qm.front) if isinstance(f, ConvLayer)]
    assert len(convs) == 2
    for i, (f, nf, q) in enumerate(convs):
        step = q.dense.mat.scale[:f.kernel.shape[2]] / q.dense.in_scale          # per output channel
        if i == 0:
            step = step[None, :] / qm.feature_scales[:, None]                      # [in, out]
        assert nf.kernel.shape == f.kernel.shape
        assert np.all(np.abs(nf.kernel - f.kernel) <= 0.5 * step * (1 + 1e-9))
        assert np.abs(nf.bias - f.bias).max() <= 0.5 * q.dense.mat.scale.max()


def test_int8_weights_of_a_split_lstm():
    """Split scales: input and recurrent halves each within their own half step (tighter than shared)."""
    ir = random_ir("feat-lstm", seed=0, units=(16,), features=6)
    x, L = random_data(ir, n=8, T=10, seed=1)
    qm = quantize_on(ir, x * 300.0, L)
    q = qm.layers[0]
    assert q.options["split"]
    new = int8_weights_ir(ir, qm).rnn_layers[0]
    bx, bh = q.block("gates_x"), q.block("gates_h")
    assert np.abs(new.kernel - ir.rnn_layers[0].kernel).max() <= 0.5 * bx.scale.max() / q.x_scale * (1 + 1e-9)
    assert np.abs(new.recurrent_kernel - ir.rnn_layers[0].recurrent_kernel).max() \
        <= 0.5 * bh.scale.max() / q.h_scale * (1 + 1e-9)


def test_evaluation_scores_the_int8_weights_model():
    """pipeline.evaluate's float_int8_weights is that model's accuracy on the labels (per step with
    return_sequences=True, valid steps only)."""
    from helpers import dataset

    from rnnskip.outputs import step_mask
    from rnnskip.pipeline.stages import evaluate
    ir = random_ir("feat-mask-gru", seed=2)
    x, L = random_data(ir, n=12, T=9, seed=3)
    qm = quantize_on(ir, x, L)
    y = np.argmax(FloatModel(ir).predict(x, L), -1)
    ev = evaluate(ir, qm, dataset(x, L, y))
    p = np.argmax(FloatModel(int8_weights_ir(ir, qm)).predict(x, L), -1)
    assert ev.float_acc == 1.0 and ev.float_int8_weights == float(np.mean(p == y))

    ir.per_step = True
    ir.rnn_layers[-1].return_sequences = True
    p0 = np.argmax(FloatModel(ir).predict(x, L), -1)
    qm = quantize_on(ir, x, L)
    ev = evaluate(ir, qm, dataset(x, L, p0))
    p = np.argmax(FloatModel(int8_weights_ir(ir, qm)).predict(x, L), -1)
    m = step_mask(L, x.shape[1])
    assert ev.float_int8_weights == float(np.mean(p[m] == p0[m]))
