"""Delta networks: integer golden model (theta = 0 is the dense model bit for bit),
float delta model (theta = 0 is the float reference), thresholds files and refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import quantize_on, quantized
from random_models import CONFIGS, random_data, random_ir

from rnnskip.cells import cell_of
from rnnskip.delta.floatdelta import FloatDeltaModel
from rnnskip.delta.golden import delta_layout, densities, effective_macs, run_stats, with_delta
from rnnskip.delta.spec import DeltaSpec, model_signature
from rnnskip.errors import RnnskipError
from rnnskip.quant.golden import GoldenModel
from rnnskip.reference import FloatModel

DELTA_CFGS = sorted(c for c, v in CONFIGS.items() if v[2] or "gru" not in v[1])  # reset_after=False refused
V1_CFGS = sorted(c for c, v in CONFIGS.items() if not v[2] and "gru" in v[1])
PER_STEP_DENSE_CFGS = sorted(c for c, v in CONFIGS.items() if "dense" in v[1])


@pytest.mark.parametrize("cfg", DELTA_CFGS)
def test_theta0_bitexact_with_dense_golden(cfg):
    ir, qm, x, L = quantized(cfg, n=24, T=11)
    out, flags = GoldenModel(qm).run(x, L)
    d_out, d_flags, st = run_stats(with_delta(qm, DeltaSpec.uniform(len(qm.layers))), x, L)
    np.testing.assert_array_equal(d_out, out)
    np.testing.assert_array_equal(d_flags, flags)
    # every running sum equals bias + W @ last (checked through the outputs) and
    # theta = 0 transmits every element that changed, never more
    m = effective_macs(qm, st)
    assert (m["effective"] <= m["dense"]).all()
    assert st["steps"].sum() == flags.sum()


@pytest.mark.parametrize("cfg", ["feat-lstm-lstm", "feat-dense-gru", "tok-gru-sigmoid"])
def test_thresholds_cut_work_monotonically(cfg):
    ir, qm, x, L = quantized(cfg, n=24, T=11)
    prev = None
    for th in (0, 2, 6, 20, 255):
        _, _, st = run_stats(with_delta(qm, DeltaSpec.uniform(len(qm.layers), th, th)), x, L)
        eff = effective_macs(qm, st)["effective"].sum()
        if prev is not None:
            assert eff <= prev
        prev = eff
    # theta 255 never transmits: only the input Dense (not delta-coded) remains
    d = densities(qm, st)
    assert d["input"] == 0 and d["hidden"] == 0


def test_running_sums_equal_bias_plus_w_last():
    ir, qm, x, L = quantized("feat-dense-gru", n=24, T=11)
    dg = GoldenModel(with_delta(qm, DeltaSpec([3], [2])))
    dev = dg.device_inputs(x)
    st = dg.initial_state(len(x))
    D = delta_layout(qm.layers[0])
    for t in range(x.shape[1]):
        st = dg.step(st, dev[:, t])
        l, s = qm.layers[0], st[0]
        want = np.repeat(D.m0[None, :], len(x), axis=0)
        want[:, D.x_row0:D.x_row0 + D.rows_x] += s["last"][:, :l.in_p] @ D.wx.T.astype(np.int64)
        want[:, D.h_row0:D.h_row0 + D.rows_h] += s["last"][:, l.in_p:] @ D.wh.T.astype(np.int64)
        np.testing.assert_array_equal(s["M"], want)
        assert (np.abs(s["last"]) <= 127).all()


@pytest.mark.parametrize("cfg", [c for c in DELTA_CFGS if c.startswith("feat") or c.startswith("tok-gru")])
def test_float_delta_theta0_equals_reference(cfg):
    ir = random_ir(cfg, seed=3)
    x, L = random_data(ir, n=16, T=9, seed=4)
    n = len(ir.rnn_layers)
    y, st = FloatDeltaModel(ir, [0.0] * n, [0.0] * n).run(x, L)
    np.testing.assert_allclose(y, FloatModel(ir).predict(x, L), atol=1e-9)
    _, st2 = FloatDeltaModel(ir, [0.2] * n, [0.2] * n).run(x, L)
    assert st2["tx_h"].sum() < st["tx_h"].sum()


@pytest.mark.parametrize("cfg", V1_CFGS)
def test_gru_reset_after_false_refused(cfg):
    ir, qm, x, L = quantized(cfg, n=24, T=11)
    with pytest.raises(RnnskipError, match="reset_after=False: delta mode needs reset_after=True"):
        GoldenModel(with_delta(qm, DeltaSpec.uniform(len(qm.layers))))
    with pytest.raises(RnnskipError, match="reset_after=True"):
        DeltaSpec.uniform(len(ir.rnn_layers), ir=ir).check_model(ir)


@pytest.mark.parametrize("cfg", PER_STEP_DENSE_CFGS)
def test_a_per_step_dense_transmits_input_columns_only(cfg):
    """A per-step Dense keeps running sums of its input columns; it reads no hidden columns, so none transmits
    whatever its hidden threshold, and the densities leave its units out of the hidden columns."""
    ir, qm, x, L = quantized(cfg, n=16, T=9)
    dense = [i for i, l in enumerate(qm.layers) if l.kind == "dense"]
    assert dense and delta_layout(qm.layers[dense[0]]).rows_h == 0
    out, flags = GoldenModel(qm).run(x, L)
    d_out, d_flags, st = run_stats(with_delta(qm, DeltaSpec.uniform(len(qm.layers))), x, L)
    np.testing.assert_array_equal(d_out, out)   # theta 0: the dense model
    for th in (0, 5):
        _, _, st = run_stats(with_delta(qm, DeltaSpec([2] * len(qm.layers), [th] * len(qm.layers))), x, L)
        assert (st["tx_h"][:, dense] == 0).all() and st["tx_x"][:, dense].sum() > 0
        hid = sum(l.units for l in qm.layers if l.kind != "dense")
        assert densities(qm, st)["hidden"] == st["tx_h"].sum() / (st["steps"].sum() * hid)


@pytest.mark.parametrize("bad,msg", [(-1, "negative"), ("3", "not a number"), (1.5, "whole number"),
                                     (None, "not a number"), (float("nan"), "not a finite")])
def test_bad_threshold_values(bad, msg):
    with pytest.raises(RnnskipError, match=msg):
        DeltaSpec([bad], [0])
    with pytest.raises(RnnskipError, match=msg):
        DeltaSpec.from_json({"format": "rnnskip-delta-1", "thresholds": [{"input": 0, "hidden": bad}]})


def test_thresholds_file_roundtrip_and_other_model(tmp_path):
    ir = random_ir("feat-dense-gru", seed=0)
    other = random_ir("feat-lstm", seed=0)
    same_shape = random_ir("feat-dense-gru", seed=5)
    s = DeltaSpec([3], [4], tuning={"note": "x"})
    p = tmp_path / "delta.json"
    s.save(p, ir)
    back = DeltaSpec.load(p)
    assert (back.theta_x, back.theta_h) == ([3], [4]) and back.model == model_signature(ir)
    back.check_model(ir)
    with pytest.raises(RnnskipError, match="written for another model"):
        back.check_model(other)
    with pytest.raises(RnnskipError, match="other weights"):
        back.check_model(same_shape)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RnnskipError, match="not valid JSON"):
        DeltaSpec.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"thresholds": 3}))
    with pytest.raises(RnnskipError, match="not an rnnskip delta file"):
        DeltaSpec.load(tmp_path / "other.json")
    with pytest.raises(RnnskipError, match="not found"):
        DeltaSpec.load(tmp_path / "missing.json")


def test_int8_grid_roundtrip_mismatch_and_bad_values(tmp_path):
    """delta.json records the int8 grid its thresholds were chosen on; another grid is detected,
    a malformed record is one line."""
    from rnnskip.quant.grid import grid_mismatch, grid_of
    ir, qm, x, L = quantized("feat-dense-gru", n=8, T=10)
    qm2 = quantize_on(ir, 3 * x, L)   # other calibration data
    s = DeltaSpec([3], [4], grid=grid_of(qm))
    s.save(tmp_path / "d.json", ir)
    back = DeltaSpec.load(tmp_path / "d.json")
    assert back.grid == grid_of(qm) and grid_mismatch(back.grid, qm) is None
    assert "input scale" in grid_mismatch(back.grid, qm2)
    assert grid_mismatch([], qm2) is None                     # older files record no grid: nothing to compare
    for bad in ([{"input_scale": -1, "hidden_scale": 1}], [{"input_scale": 1}], {"input_scale": 1}):
        with pytest.raises(RnnskipError, match="int8_grid must list"):
            DeltaSpec.from_json({"format": "rnnskip-delta-1", "thresholds": [{"input": 0, "hidden": 0}],
                                 "int8_grid": bad})


@pytest.mark.parametrize("cfg,acts", [("feat-lstm", ("relu", "hard_sigmoid")),
                                      ("feat-dense-gru", ("softsign", "sigmoid")),
                                      ("feat-rnn", ("tanh", None)), ("tok-rnn-relu", ("relu", None))])
def test_delta_train_cell_is_the_cells_float_step(cfg, acts):
    """delta-train's Keras cell runs each cell kind's own float arithmetic (through TensorFlow):
    the same step as the float reference, with the layer's activations."""
    tf = pytest.importorskip("tensorflow")
    from rnnskip.cells.base import NUMPY_OPS, tf_ops
    from rnnskip.delta.train import _tf_activation
    from rnnskip.reference import activation
    ir = random_ir(cfg, seed=2)
    l = ir.rnn_layers[0]
    l.activation = acts[0]
    if acts[1]:
        l.recurrent_activation = acts[1]
    cell = cell_of(l.kind)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (5, l.input_dim))
    state = tuple(rng.normal(0, 0.5, (5, l.units)) for _ in cell.float_state)
    w = {k: np.asarray(getattr(l, k), np.float64) for k in ("kernel", "recurrent_kernel", "bias")}
    want = cell.float_cell((activation(l.activation), activation(acts[1]) if acts[1] else None), state,
                           cell.float_pre(NUMPY_OPS, w, x, state[0]))
    tw = {k: tf.constant(v) for k, v in w.items()}
    got = cell.float_cell((_tf_activation(tf, l.activation), _tf_activation(tf, acts[1])),
                          tuple(map(tf.constant, state)),
                          cell.float_pre(tf_ops(), tw, tf.constant(x), tf.constant(state[0])))
    for a, b in zip(want, got):
        np.testing.assert_allclose(np.asarray(b), a, atol=1e-12)


@pytest.mark.parametrize("cfg,acts", [("feat-lstm", ("relu", "hard_sigmoid")), ("feat-rnn", ("relu", None))])
def test_delta_train_exports_the_layer_options(cfg, acts, tmp_path):
    """The fine-tuned model is written with each layer's activations (it once wrote default LSTM/GRU layers)."""
    pytest.importorskip("tf_keras")
    from rnnskip.delta.train import build_delta_model, export_keras
    from rnnskip.pipeline import import_model
    ir = random_ir(cfg, seed=2)
    for l in ir.rnn_layers:
        l.activation = acts[0]
        if acts[1]:
            l.recurrent_activation = acts[1]
    x, L = random_data(ir, n=6, T=7, seed=3)
    qm = quantize_on(ir, x, L)
    _, cells, pre, head = build_delta_model(ir, qm, [0], [0], l1=0.0, noise=0.0)
    export_keras(ir, cells, pre, head, tmp_path / "m.h5")
    back = import_model(tmp_path / "m.h5")
    assert [(r.kind, r.activation, r.recurrent_activation) for r in back.rnn_layers] == \
        [(r.kind, r.activation, r.recurrent_activation) for r in ir.rnn_layers]
    np.testing.assert_allclose(FloatModel(back).predict(x, L), FloatModel(ir).predict(x, L), atol=1e-5)


def test_delta_train_keeps_a_layer_normalised_head(tmp_path):
    """A head Dense that layer-normalises its input (norm_epsilon) trains and is written back with its
    LayerNormalization (a review found both dropped: a fine-tuned model without the normalisation); the file read
    again is the same function."""
    pytest.importorskip("tf_keras")
    from rnnskip.delta.train import build_delta_model, export_keras
    from rnnskip.pipeline import import_model
    ir = random_ir("feat-lstm", seed=2)
    ir.head[0].norm_epsilon = 1e-3
    x, L = random_data(ir, n=6, T=7, seed=3)
    qm = quantize_on(ir, x, L)
    m, cells, pre, head = build_delta_model(ir, qm, [0], [0], l1=0.0, noise=0.0)
    assert "LayerNormalization" in [type(layer).__name__ for layer in m.layers]
    export_keras(ir, cells, pre, head, tmp_path / "m.h5")
    back = import_model(tmp_path / "m.h5")
    assert [d.norm_epsilon for d in back.head] == pytest.approx([1e-3])
    np.testing.assert_allclose(FloatModel(back).predict(x, L), FloatModel(ir).predict(x, L), atol=1e-5)


@pytest.mark.parametrize("cfg", PER_STEP_DENSE_CFGS)
def test_delta_train_exports_a_per_step_dense(cfg, tmp_path):
    """A per-step Dense trains as a delta cell without recurrent weights and is written back as a Dense: read again,
    the same layers and the same float outputs."""
    pytest.importorskip("tf_keras")
    from rnnskip.delta.train import build_delta_model, export_keras
    from rnnskip.pipeline import import_model
    ir = random_ir(cfg, seed=2)
    x, L = random_data(ir, n=6, T=7, seed=3)
    qm = quantize_on(ir, x, L)
    k = len(ir.rnn_layers)
    m, cells, pre, head = build_delta_model(ir, qm, [0] * k, [0] * k, l1=0.0, noise=0.0)
    export_keras(ir, cells, pre, head, tmp_path / "m.h5")
    back = import_model(tmp_path / "m.h5")
    assert [(r.kind, r.activation, r.recurrent_kernel.shape) for r in back.rnn_layers] == \
        [(r.kind, r.activation, r.recurrent_kernel.shape) for r in ir.rnn_layers]
    np.testing.assert_allclose(FloatModel(back).predict(x, L), FloatModel(ir).predict(x, L), atol=1e-5)


@pytest.mark.parametrize("cfg", ["feat-lstm", "feat-dense-gru"])
def test_delta_train_keeps_the_input_normalisation(cfg, tmp_path):
    """A model that normalises its input (FeatureInput.center) is rebuilt with a Normalization layer in front and
    its first layer on the normalised input: written back, rnnskip reads the same centre, scale and function (it
    was refused: the rebuilt model had no normalisation and would have quantised the raw features uncentred)."""
    pytest.importorskip("tf_keras")
    from rnnskip.delta.train import build_delta_model, export_keras
    from rnnskip.pipeline import import_model
    ir = random_ir(cfg, seed=4)
    x, L = random_data(ir, n=6, T=7, seed=5)
    F = ir.input.features
    center, scale = np.linspace(-3.0, 90.0, F), np.linspace(0.5, 4.0, F)
    first = ir.input.dense if ir.input.dense is not None else ir.rnn_layers[0]
    if ir.input.dense is None:   # the normalisation folded into the first layer, as the importers do
        from rnnskip.cells import cell_of
        cell_of(first.kind).fold_input_affine(first, scale, -center * scale)
        ir.input.norm_scale = scale
    else:
        k = np.asarray(first.kernel, np.float64)
        first.bias, first.kernel = first.bias - (center * scale) @ k, k * scale[:, None]
    ir.input.center = center
    x = x / scale + center   # raw readings whose normalisation is the original data
    qm = quantize_on(ir, x, L)
    _, cells, pre, head = build_delta_model(ir, qm, [0], [0], l1=0.0, noise=0.0)
    export_keras(ir, cells, pre, head, tmp_path / "m.h5")
    back = import_model(tmp_path / "m.h5")
    np.testing.assert_allclose(back.input.center, center, rtol=1e-6)
    if ir.input.dense is None:
        np.testing.assert_allclose(back.input.norm_scale, scale, rtol=1e-6)
    else:
        assert back.input.norm_scale is None
    np.testing.assert_allclose(FloatModel(back).predict(x, L), FloatModel(ir).predict(x, L), atol=1e-5)


def test_delta_train_keeps_an_activation_on_the_heads_input(tmp_path):
    """Activation('relu') on the recurrent output is an identity Dense in the IR; delta-train writes it back as an
    Activation, not a Dense it would train (an audit found 72 new trainable weights)."""
    pytest.importorskip("tf_keras")
    import tf_keras as keras

    from rnnskip.converter.ir import DenseLayer
    from rnnskip.delta.train import build_delta_model, export_keras
    from rnnskip.pipeline import import_model
    ir = random_ir("feat-lstm", seed=2)
    u = ir.rnn_layers[-1].units
    ir.head.insert(0, DenseLayer(np.eye(u, dtype=np.float32), np.zeros(u, np.float32), "relu", "act"))
    x, L = random_data(ir, n=6, T=7, seed=3)
    qm = quantize_on(ir, x, L)
    m, cells, pre, head = build_delta_model(ir, qm, [0], [0], l1=0.0, noise=0.0)
    assert [type(layer).__name__ for layer in m.layers].count("Activation") == 1 and len(head) == 1
    export_keras(ir, cells, pre, head, tmp_path / "m.h5")
    written = keras.models.load_model(tmp_path / "m.h5", compile=False)
    assert [type(layer).__name__ for layer in written.layers][-2:] == ["Activation", "Dense"]
    back = import_model(tmp_path / "m.h5")
    assert np.array_equal(back.head[0].kernel, np.eye(u)) and back.head[0].activation == "relu"
    np.testing.assert_allclose(FloatModel(back).predict(x, L), FloatModel(ir).predict(x, L), atol=1e-5)
