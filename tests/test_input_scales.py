"""Float input features -> int8: one scale per feature where the first layer folds it (a Dense or a
Conv1D), one shared scale where the first layer is recurrent (quantize.feature_scales)."""
from __future__ import annotations

import numpy as np
import pytest
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


# ---- centred inputs: a normalisation on the model's input (FeatureInput.center) ----------------------------

OFFSETS, SPREADS = np.array([100.0, -50.0, 1013.0]), np.array([1.0, 2.0, 5.0])


def _sensor_data(n=120, T=14, seed=0):
    """Raw sensor readings far from 0 with small spreads (a temperature, a depth, a pressure)."""
    rng = np.random.default_rng(seed)
    return (OFFSETS + SPREADS * rng.normal(size=(n, T, 3))).astype(np.float32), np.full(n, T, np.int32)


def _normalized_ir(first: str):
    """Normalization(mean=OFFSETS, variance=SPREADS**2) folded into a first LSTM, per-step Dense or causal Conv1D."""
    from rnnskip.cells import cell_of
    from rnnskip.converter import support
    rng = np.random.default_rng(1)
    lstm = RNNLayer(kind="lstm", units=6, kernel=rng.normal(0, 0.5, (3, 24)),
                    recurrent_kernel=rng.normal(0, 0.3, (6, 24)), bias=rng.normal(0, 0.1, 24), name="lstm")
    head = [DenseLayer(rng.normal(0, 0.8, (6, 3)), np.zeros(3), "softmax", "out")]
    a, b = 1.0 / SPREADS, -OFFSETS / SPREADS
    inp = FeatureInput(features=3, center=OFFSETS.copy())
    if first == "lstm":
        cell_of("lstm").fold_input_affine(lstm, a, b)
    elif first == "dense":
        d = DenseLayer(rng.normal(0, 0.6, (3, 3)), rng.normal(0, 0.1, 3), "tanh", "in")
        support.fold_before_dense(d, a, b)
        inp.dense = d
    else:
        c = ConvLayer(kernel=rng.normal(0, 0.5, (3, 3, 3)), bias=rng.normal(0, 0.1, 3), padding="causal",
                      activation="tanh", name="conv")
        support.fold_before_conv(c, a, b)
        inp.front = [c]
    return ModelIR(input=inp, rnn_layers=[lstm], head=head, name=f"normalized-{first}")


@pytest.mark.parametrize("first", ["lstm", "dense", "conv"])
def test_a_normalised_input_is_quantised_centred(first, tmp_path):
    """The device quantises x - center (the normalisation's mean), folded into the first layer: int8 agrees with
    the float model on nearly every row, the golden model equals the host build, the float model with the int8
    weights is the float model. Uncentred, the raw readings (|x| up to ~1030 against spreads of 1-5) leave a
    feature a handful of int8 steps and the classes agree on about half the rows."""
    from helpers import dataset

    from rnnskip import pipeline
    from rnnskip.generate import generate
    from rnnskip.quant.dequantize import int8_weights_ir
    ir = _normalized_ir(first)
    x, L = _sensor_data()
    qm = quantize_on(ir, x, L)
    np.testing.assert_array_equal(qm.feature_offsets, OFFSETS.astype(np.float32))
    if first == "conv":   # the padding frame (the mean) minus the centre: zeros
        np.testing.assert_allclose(ir.input.front[0].pad, OFFSETS)
        assert np.array_equal(qm.front[0].pad_frame, np.zeros(4))
    f = FloatModel(ir).predict(x)
    g, _ = GoldenModel(qm).run(x, L)
    assert (g[:, :3].argmax(1) == f.argmax(1)).mean() >= 0.95
    uncentred = quantize_on(ModelIR(input=FeatureInput(features=3, dense=ir.input.dense, front=ir.input.front),
                                    rnn_layers=ir.rnn_layers, head=ir.head, name="raw"), x, L)
    assert uncentred.feature_offsets is None
    gu, _ = GoldenModel(uncentred).run(x, L)
    assert (gu[:, :3].argmax(1) == f.argmax(1)).mean() < (g[:, :3].argmax(1) == f.argmax(1)).mean()
    np.testing.assert_allclose(FloatModel(int8_weights_ir(ir, qm)).predict(x), f, atol=0.05)
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    assert "rnnskip_f0_pad" not in (tmp_path / "src" / "rnnskip_model.c").read_text()   # zeros: as no padding frame
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    ev = pipeline.evaluate(ir, qm, dataset(x, L, np.zeros(len(x), np.int64)), host_so=so)
    assert ev.host_checked == len(x) and ev.host_mismatches == 0, ev.first_mismatch


@pytest.mark.parametrize("ptype", ["logistic", "tree"])
def test_skip_predictor_reads_centred_features(ptype):
    """The int8 predictor of a model whose first recurrent layer reads centred features scores what the float
    predictor scores on the raw features those int8 values stand for (x = x_q s + offset)."""
    from test_skip_device import random_predictor

    from rnnskip.skip.qpredictor import feature_scales, quantize_predictor
    ir = _normalized_ir("lstm")
    x, L = _sensor_data()
    qm = quantize_on(ir, x, L)
    p = random_predictor(ptype, 3, [6], seed=2)
    if ptype == "tree":   # split the raw features around their readings
        for t in p.trees:
            t["threshold"] = np.where(t["feature"] < 3, OFFSETS[np.minimum(t["feature"], 2)] +
                                      SPREADS[np.minimum(t["feature"], 2)] * t["threshold"], t["threshold"])
    qp = quantize_predictor(p, qm)
    rng = np.random.default_rng(3)
    feats = np.concatenate([rng.integers(-100, 101, (500, qm.in_p)), rng.integers(-127, 128, (500, qm.layers[0].up))],
                           axis=1)
    feats[:, 3:qm.in_p] = 0
    scale, col, _, _ = feature_scales(qm)
    real = feats[:, col] * scale[col]
    real[:, :3] += OFFSETS.astype(np.float32)
    if ptype == "tree":
        agree = (qp.score(feats) > qp.score_thr) == (p.score(real) > p.threshold)
        assert agree.mean() >= 0.97
    else:
        np.testing.assert_allclose(qp.score(feats) * qp.score_scale, p.score(real), atol=0.25)


def _normalised_gru(keras, x, path):
    """tf_keras Normalization adapted on ``x``, GRU(8), Dense(3, softmax), saved at ``path``."""
    norm = keras.layers.Normalization()
    norm.adapt(x.reshape(-1, 3))
    m = keras.Sequential([keras.Input((None, 3)), norm, keras.layers.GRU(8),
                          keras.layers.Dense(3, activation="softmax")])
    m.save(path)
    return m


@pytest.mark.keras
def test_keras_normalization_on_raw_readings_sets_the_centre(tmp_path):
    """A tf_keras Normalization adapted on raw readings, then a GRU: the importer records its mean as the input
    centre, and int8 keeps the float model's classes (uncentred, one shared scale of ~8 for all three features)."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.converter.keras_import import load_model_file
    x, L = _sensor_data(n=150, T=20)
    m = _normalised_gru(keras, x, tmp_path / "m.h5")
    ir = load_model_file(str(tmp_path / "m.h5"))
    np.testing.assert_allclose(ir.input.center, x.reshape(-1, 3).mean(0), rtol=1e-4)
    f = FloatModel(ir).predict(x)
    assert np.abs(f - m.predict(x, verbose=0)).max() <= 1e-5
    qm = quantize_on(ir, x, L)
    g, _ = GoldenModel(qm).run(x, L)
    assert qm.feature_scales[0] < 0.5 and (g[:, :3].argmax(1) == f.argmax(1)).mean() >= 0.95


@pytest.mark.keras
def test_delta_train_fine_tunes_a_model_that_normalises_its_input(tmp_path):
    """delta-train on Normalization -> GRU (it was refused): the model it writes normalises its input the same way,
    rnnskip reads the same centre and scale from it, Keras and rnnskip's float model agree on it, and its int8
    model keeps its float classes."""
    keras = pytest.importorskip("tf_keras")
    from helpers import dataset

    from rnnskip.datasets import save_npz
    from rnnskip.delta.train import run_delta_train
    from rnnskip.pipeline import import_model
    x, L = _sensor_data(n=96, T=12)
    _normalised_gru(keras, x, tmp_path / "m.h5")
    ir = import_model(tmp_path / "m.h5")
    y = FloatModel(ir).predict(x).argmax(1)
    save_npz(str(tmp_path / "d.npz"), dataset(x, L, y))
    out = tmp_path / "dt.h5"
    run_delta_train(tmp_path / "m.h5", tmp_path / "d.npz", tmp_path / "d.npz", out, theta_x=2, theta_h=2, epochs=1,
                    batch_size=16, log=lambda s: None)
    back = import_model(out)
    np.testing.assert_allclose(back.input.center, ir.input.center, rtol=1e-5)
    np.testing.assert_allclose(back.input.norm_scale, ir.input.norm_scale, rtol=1e-5)
    f = FloatModel(back).predict(x)
    assert np.abs(f - keras.models.load_model(out, compile=False).predict(x, verbose=0)).max() <= 1e-5
    qm = quantize_on(back, x, L)
    assert (GoldenModel(qm).run(x, L)[0][:, :3].argmax(1) == f.argmax(1)).mean() >= 0.95


@pytest.mark.keras
def test_delta_train_refuses_a_masked_normalised_input_in_one_line(tmp_path):
    """Keras 3 passes Masking's mask through Normalization, tf_keras (what delta-train writes) drops it: refused."""
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip("needs Keras 3")
    from helpers import dataset

    from rnnskip.datasets import save_npz
    from rnnskip.delta.train import run_delta_train
    from rnnskip.errors import RnnskipError
    x, L = _sensor_data(n=16, T=6)
    norm = keras.layers.Normalization(mean=OFFSETS, variance=SPREADS ** 2)
    m = keras.Sequential([keras.Input((None, 3)), keras.layers.Masking(0.0), norm, keras.layers.GRU(4),
                          keras.layers.Dense(2, activation="softmax")])
    m.save(tmp_path / "m.keras")
    save_npz(str(tmp_path / "d.npz"), dataset(x, L, np.arange(len(x)) % 2))
    with pytest.raises(RnnskipError) as e:
        run_delta_train(tmp_path / "m.keras", tmp_path / "d.npz", tmp_path / "d.npz", tmp_path / "o.h5", epochs=1,
                        log=lambda s: None)
    assert str(e.value) == ("the model masks (Masking) and normalises its input: the tf_keras model delta-train writes "
                            "would drop the mask at its Normalization layer (tf_keras passes no mask through it); use "
                            "delta-tune (no retraining) on this model")
    assert not (tmp_path / "o.h5").exists()


def test_a_recurrent_first_layer_takes_the_normalisations_units():
    """A recurrent first layer keeps one int8 input scale (a delta threshold is one number): centred raw readings of
    spreads 5 and 0.03 (a pressure and a temperature) on one raw scale leave the temperature ~0 steps. The device
    takes |a| (x - center), one scale in the normalisation's units (an audit measured chance-level int8 before)."""
    from rnnskip.cells import cell_of
    rng = np.random.default_rng(4)
    mean, sd = np.array([1013.0, 21.5]), np.array([5.0, 0.03])
    x = (mean + sd * rng.normal(size=(200, 12, 2))).astype(np.float32)
    L = np.full(len(x), 12, np.int32)
    gru = RNNLayer(kind="gru", units=8, kernel=rng.normal(0, 0.6, (2, 24)),
                   recurrent_kernel=rng.normal(0, 0.3, (8, 24)),
                   bias=rng.normal(0, 0.1, (2, 24)), options={"reset_after": True}, name="gru")
    cell_of("gru").fold_input_affine(gru, 1.0 / sd, -mean / sd)
    ir = ModelIR(input=FeatureInput(features=2, center=mean, norm_scale=1.0 / sd), rnn_layers=[gru],
                 head=[DenseLayer(rng.normal(0, 1.0, (8, 2)), np.zeros(2), "softmax", "out")], name="pt")
    f = FloatModel(ir).predict(x).argmax(1)
    qm = quantize_on(ir, x, L)
    np.testing.assert_allclose(qm.feature_scales[0] / qm.feature_scales[1], sd[0] / sd[1], rtol=1e-6)
    assert qm.layers[0].x_scale == max(qm.feature_scales * (1.0 / sd))   # one scale, normalised units
    assert (GoldenModel(qm).run(x, L)[0][:, :2].argmax(1) == f).mean() >= 0.95
    raw = quantize_on(ModelIR(input=FeatureInput(features=2, center=mean), rnn_layers=[gru], head=ir.head,
                              name="raw"), x, L)
    assert (GoldenModel(raw).run(x, L)[0][:, :2].argmax(1) == f).mean() < 0.9
