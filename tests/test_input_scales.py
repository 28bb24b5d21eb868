"""Float input features -> int8: one scale per feature where the first layer folds it (a Dense or a
Conv1D), one shared scale where the first layer is recurrent (quantize.feature_scales)."""
from __future__ import annotations

import numpy as np
from helpers import quantize_on, quantized

from rnnskip.converter.ir import ConvLayer, DenseLayer, FeatureInput, ModelIR, RNNLayer
from rnnskip.quant.calibrate import calibrate
from rnnskip.quant.golden import GoldenModel, feature_inv_scale
from rnnskip.quant.quantize import quantize
from rnnskip.reference import FloatModel


def _calibrated_max(x, lengths):
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    return np.abs(x[valid].astype(np.float64)).max(axis=0)


def test_first_dense_gets_one_scale_per_feature():
    ir, qm, x, L = quantized("feat-dense-gru", seed=3, spread=True)
    m = _calibrated_max(x, L)
    assert np.ptp(m) > 1.0                              # the features' ranges differ
    np.testing.assert_array_equal(qm.feature_scales, m / 127.0)
    np.testing.assert_array_equal(feature_inv_scale(qm), (127.0 / m).astype(np.float32))
    assert qm.input_dense.in_scale == 1.0               # the scales are folded into its weights


def test_recurrent_first_layer_keeps_one_scale():
    ir, qm, x, L = quantized("feat-lstm", seed=3, spread=True)
    m = _calibrated_max(x, L)
    np.testing.assert_array_equal(qm.feature_scales, np.full(len(m), m.max() / 127.0))
    assert qm.layers[0].x_scale == m.max() / 127.0


def _two_sensor_ir(first):
    """Feature 0 in the thousands (ignored by the weights), feature 1 around 1 (all the signal)."""
    rng = np.random.default_rng(0)
    w = np.array([[0.0, 0.0], [1.0, -1.0]])
    layers = [RNNLayer(kind="lstm", units=4, kernel=rng.normal(0, 0.5, (2, 16)),
                       recurrent_kernel=rng.normal(0, 0.3, (4, 16)), bias=np.zeros(16), name="lstm")]
    if first == "dense":
        inp = FeatureInput(features=2, dense=DenseLayer(w, np.zeros(2), "linear", "in"))
    else:
        inp = FeatureInput(features=2, front=[ConvLayer(kernel=w[None], bias=np.zeros(2), name="conv")])
    return ModelIR(input=inp, rnn_layers=layers, head=[DenseLayer(rng.normal(0, 0.5, (4, 3)), np.zeros(3),
                                                                   "softmax", "out")], name=first)


def test_a_small_feature_keeps_its_resolution():
    """With one shared scale feature 1 would round to 0 (1 / (3000 / 127) < 0.5): the int8 model would
    see nothing. Per feature, its int8 values follow the float ones and so do the outputs."""
    rng = np.random.default_rng(1)
    x = np.stack([rng.uniform(-3000, 3000, (16, 8)), rng.uniform(-1, 1, (16, 8))], axis=-1).astype(np.float32)
    L = np.full(16, 8, np.int32)
    for first in ("dense", "conv"):
        ir = _two_sensor_ir(first)
        qm = quantize_on(ir, x, L)
        g = GoldenModel(qm)
        q = g.quantize_features(x)
        assert np.abs(q[..., 1]).max() == 127              # the small feature spans the int8 range
        out, _ = g.run(x, L)
        probs = FloatModel(ir).predict(x, L)
        pq = np.exp(out[:, :3] * qm.output_scale)
        pq /= pq.sum(1, keepdims=True)
        assert np.abs(pq - probs).max() < 0.02, first
        shared = GoldenModel(quantize(ir, calibrate(ir, FloatModel(ir), x, L, progress=False),
                                      per_feature_inputs=False))
        assert not shared.quantize_features(x)[..., 1].any()   # one scale: the small feature is lost


def test_report_names_the_input_scheme():
    from rnnskip.report import input_scales_report
    _, qm, x, L = quantized("feat-dense-gru", seed=3, spread=True)
    r = input_scales_report(qm)
    assert r["scheme"] == "int8 symmetric, one scale per feature (folded into the first layer's weights)"
    assert r["scales"] == [float(v) for v in _calibrated_max(x, L) / 127.0]
    _, qm, x, L = quantized("feat-lstm", seed=3, spread=True)
    m = _calibrated_max(x, L)
    assert input_scales_report(qm) == {"scheme": "int8 symmetric, one scale for all features",
                                       "scales": [m.max() / 127.0] * len(m)}


def test_a_feature_of_tiny_range_gets_a_finite_factor():
    """A feature whose calibrated range is below float32's reach (1e-38) must not make 1/scale infinite."""
    ir, _, x, L = quantized("feat-dense-gru", seed=3, spread=True)
    x = x.copy()
    x[..., 0] = np.where(x[..., 0] != 0, 1e-38, 0.0)
    qm = quantize_on(ir, x, L)
    assert np.isfinite(feature_inv_scale(qm)).all() and qm.per_feature_inputs
