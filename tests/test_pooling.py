"""Pooling over time after the recurrent layers (Keras GlobalAveragePooling1D / GlobalMaxPooling1D, docs/pooling.md).
The Keras corpus (tests/zoo_models.py, POOL_CASES) checks float = Keras and golden = host = firmware on Keras 2 and 3
files; here: the integer rounding, what a skipped, masked or padded step contributes, and golden = host = firmware
with delta thresholds and skip predictors on the plain, front-end and Bidirectional paths."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_host_and_device, dataset, needs_arm, quantize_on
from random_models import bidi_ir, random_data, random_ir

from rnnskip.errors import RnnskipError
from rnnskip.quant.golden import GoldenModel, Pool
from rnnskip.reference import FloatModel, pool_over_time


def pool_ir(cfg: str, kind: str, seed: int = 0):
    """random_ir(cfg) whose last recurrent layer returns sequences into pooling over time (``kind``)."""
    ir = random_ir(cfg, seed=seed)
    return _pooled(ir, kind)


def _pooled(ir, kind: str):
    """``ir`` pooling over time (``kind``: avg, max, or both concatenated, e.g. avg,max): the head reads each kind's
    vector side by side."""
    ir.rnn_layers[-1].return_sequences = True
    ir.pool, ir.pool_name = kind, f"global_{kind.replace(',', '_')}"
    k = len(kind.split(","))
    if ir.head and k > 1:
        w = ir.head[0].kernel
        rng = np.random.default_rng(7)
        ir.head[0].kernel = np.concatenate([w] + [rng.normal(0, 0.5, w.shape) for _ in range(k - 1)], axis=0)
    for d in [ir.rnn_layers[-1]] + ([ir.rnn_layers[-1].backward] if ir.rnn_layers[-1].backward else []):
        d.return_sequences = True
    return ir


def test_integer_mean_rounds_half_away_from_zero_and_max_keeps_the_largest():
    p = Pool("avg", 5, 1)
    steps = np.array([[1, -1, 1, 1, 9], [1, -1, 2, 2, 9], [1, -1, 2, -2, 9]])   # 3 steps of 5 rows
    for v in steps:
        p.add(np.array([True, True, True, True, False]), v.reshape(5, 1))
    # 3/3, -3/3, 5/3 = 1.67 -> 2, 1/3 -> 0; the last row pooled nothing -> 0
    assert p.out()[:, 0].tolist() == [1, -1, 2, 0, 0]
    q = Pool("avg", 2, 1)
    for v in ([1, -1], [2, -2]):
        q.add(np.array([True, True]), np.array(v).reshape(2, 1))
    assert q.out()[:, 0].tolist() == [2, -2]                    # 1.5 -> 2, -1.5 -> -2
    m = Pool("max", 2, 2)
    m.add(np.array([True, True]), np.array([[-5, 3], [-128, -128]]))
    m.add(np.array([True, False]), np.array([[-7, 4], [100, 100]]))
    assert m.out().tolist() == [[-5, 4], [-128, -128]]


def test_float_pooling_follows_keras_masking():
    """GlobalAveragePooling1D: the mean over the steps the mask keeps (0 where there is none; Keras divides 0 by
    0); GlobalMaxPooling1D: every step of the row, a masked one with the output Keras gives it."""
    seq = np.array([[[1.0], [3.0], [-4.0]], [[-2.0], [-1.0], [0.0]]])
    counted = np.array([[True, True, False], [False, False, False]])
    fed = np.array([[True, True, True], [True, True, False]])
    assert pool_over_time("avg", seq, counted, fed)[:, 0].tolist() == [2.0, 0.0]
    assert pool_over_time("max", seq, counted, fed)[:, 0].tolist() == [3.0, -1.0]


def test_a_skipped_step_is_pooled_with_its_output_held():
    """Skipping a step keeps the state, so the step's output is the one before it: the mean counts it again."""
    ir = pool_ir("feat-lstm", "avg")
    x, L = random_data(ir, n=5, T=8, seed=2)
    qm = quantize_on(ir, x, L)
    skip = np.zeros(x.shape[:2], bool)
    skip[:, 3] = skip[:, 5] = True
    g = GoldenModel(qm)
    hs = []
    out, flags = g.run(x, L, collect=lambda t, state, ran: hs.append(state[-1]["h8"].copy()), skip=skip)
    hs = np.stack(hs, 1)   # the output after every step, held at the skipped ones
    fed = np.arange(x.shape[1])[None, :] < L[:, None]
    assert np.array_equal(hs[:, 3], hs[:, 2]) and not flags[:, 3].any()
    total = (hs * fed[..., None]).sum(1)
    n = fed.sum(1)[:, None]
    mean = np.sign(total) * ((np.abs(total) + n // 2) // n)
    np.testing.assert_array_equal(out, g.head(mean))


def test_a_skip_mask_is_refused_on_the_paths_that_do_not_step_the_input():
    ir = bidi_ir("feat-lstm-gru", 0, "concat")
    x, L = random_data(ir, n=3, T=5)
    with pytest.raises(RnnskipError, match="skip mask over its input steps does not apply"):
        GoldenModel(quantize_on(ir, x, L)).run(x, L, skip=np.zeros(x.shape[:2], bool))


def _delta(qm, theta: int):
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    return with_delta(qm, DeltaSpec([theta] * len(qm.layers), [theta] * len(qm.layers)))


def _predictor(qm, x, L, ptype):
    """A random int8 skip predictor at the median score of the steps it sees (about half are skipped)."""
    from test_frontend import _with_predictor
    return _with_predictor(qm, x, L, ptype)


def _check(ir, variants, tmp_path, T=11):
    x, L = random_data(ir, n=8, T=T, seed=3)
    dense = quantize_on(ir, x, L)
    for name in variants:
        qm = dense
        if name == "delta":
            qm = _delta(dense, 2)
            np.testing.assert_array_equal(GoldenModel(_delta(dense, 0)).run(x, L)[0], GoldenModel(dense).run(x, L)[0])
        elif name.startswith("skip-"):
            qm = quantize_on(ir, x, L)
            _predictor(qm, x, L, name[5:])
            flags = GoldenModel(qm).run(x, L)[1]
            assert 0 < flags.sum() < GoldenModel(dense).run(x, L)[1].sum()   # some steps are skipped
        check_host_and_device(ir, qm, dataset(x, L), tmp_path / name, x.shape[1])


@needs_arm
@pytest.mark.parametrize("cfg,kind,variants", [
    ("feat-mask-rnn-lstm", "avg", ["dense", "delta", "skip-mlp"]),   # Masking: masked steps not counted
    ("tok-lstm-gru-lstm-gru", "max", ["dense", "delta", "skip-mlp"]),   # mask_zero: held outputs pooled
    ("tok-lstm-nohead", "avg", ["dense"]),                            # no head: the pooled vector is the output
    ("feat-mask-gru", "max,avg", ["dense", "delta", "skip-mlp"]),     # both, concatenated (max first)
    ("tok-lstm-nohead", "avg,max", ["dense"]),                        # both, no head: both are the output
])
def test_pooled_models_bitexact_with_delta_and_skip(cfg, kind, variants, tmp_path):
    ir = pool_ir(cfg, kind)
    if not ir.head:   # the output is the pooled vector: every kind's, side by side
        assert ir.output_dim == len(kind.split(",")) * ir.rnn_layers[-1].units
    _check(ir, variants, tmp_path)


@needs_arm
@pytest.mark.parametrize("kind", ["avg", "max", "avg,max"])
def test_pooled_front_end_bitexact_with_skip(kind, tmp_path):
    """Every frame the front end emits is pooled (the flush's too), a skipped one with its output held."""
    from test_frontend import front_ir
    _check(_pooled(front_ir("feat-lstm-gru"), kind), ["dense", "skip-mlp"], tmp_path, T=14)


@needs_arm
@pytest.mark.parametrize("cfg,index,merge_mode,kind", [
    ("feat-mask-gru", 0, "sum", "max"),         # the Bidirectional layer last: its zeros at masked steps pooled
    ("feat-mask-rnn-lstm", 1, "concat", "avg"),
    ("feat-mask-rnn-lstm", 0, "ave", "max"),    # a later layer: its held output, zeros before the first step
    ("tok-lstm-gru-lstm-gru", 2, "mul", "avg"),
    ("feat-mask-gru", 0, "concat", "avg,max"),   # both poolings of both directions, side by side
    ("feat-mask-rnn-lstm", 0, "sum", "max,avg"),
])
def test_pooled_bidirectional_bitexact_with_delta(cfg, index, merge_mode, kind, tmp_path):
    _check(_pooled(bidi_ir(cfg, index, merge_mode), kind), ["dense", "delta"], tmp_path)


def test_float_pooling_of_a_bidirectional_layer_pools_its_zeros_at_masked_steps():
    """GlobalMaxPooling1D on a Bidirectional layer's outputs: units whose output is negative at every step that runs
    pool to exactly 0 in a row with a masked step (Keras writes zeros there), and stay negative in a row without."""
    ir = _pooled(bidi_ir("feat-mask-gru", 0, "sum"), "max")
    ir.head = []
    for d in ir.rnn_layers[0].directions():   # candidate strongly negative, update gate open: h < 0 after step 1
        d.kernel, d.recurrent_kernel = d.kernel * 0.01, d.recurrent_kernel * 0.01
        d.bias = np.zeros_like(d.bias)
        d.bias[0, : d.units] = -4.0          # z (Keras' GRU gates z, r, h): keep little of the old state
        d.bias[0, 2 * d.units:] = -4.0       # the candidate's input bias
    x = np.random.default_rng(4).normal(0, 1, (2, 6, ir.input.features)).astype(np.float32)
    x[0, 3] = 0.0                            # masked
    y = FloatModel(ir).predict(x, np.array([6, 6]))
    assert np.all(y[0] == 0.0) and np.all(y[1] < -0.5)


def test_fit_estimate_counts_the_pooling_state():
    """The RAM estimate holds the pooled sums (and, after a Bidirectional layer that is last, its per-step merged
    outputs, which the pooling reads in rnnskip_finish)."""
    from rnnskip.targets.fit import state_bytes
    ir = random_ir("feat-lstm")
    x, L = random_data(ir, n=4, T=6)
    plain = quantize_on(ir, x, L)
    pooled = quantize_on(pool_ir("feat-lstm", "avg"), x, L)
    up = pooled.layers[-1].up
    assert state_bytes(pooled) - state_bytes(plain) == 4 * up + 4 + up
    b = quantize_on(_pooled(bidi_ir("feat-mask-gru", 0, "sum"), "max"), x, L)
    fl = b.layers[b.bidi]
    assert state_bytes(b, 100) - state_bytes(b, 50) == 50 * (fl.in_p + fl.merge_p)


@pytest.mark.parametrize("kind", ["avg", "max", "max,avg"])
def test_delta_train_model_pools_and_exports_the_pooling_layer(kind, tmp_path):
    """delta-train's Keras model of a pooled model pools every step's output, the float delta model with thresholds 0
    gives the float model's outputs (Masking included), and the fine-tuned file it writes has the pooling layer,
    read back as the same model."""
    pytest.importorskip("tf_keras")
    from rnnskip.delta.floatdelta import FloatDeltaModel
    from rnnskip.delta.train import build_delta_model, export_keras
    from rnnskip.pipeline import import_model
    ir = pool_ir("feat-mask-gru", kind, seed=2)
    x, L = random_data(ir, n=6, T=7, seed=3)
    L[:] = x.shape[1]   # Keras runs every step of the arrays (the Masking layer skips the masked ones)
    qm = quantize_on(ir, x, L)
    want = FloatModel(ir).predict(x, L)
    m, cells, pre, head = build_delta_model(ir, qm, [0], [0], l1=0.0, noise=0.0)
    names = [l.__class__.__name__ for l in m.layers]
    assert all({"avg": "GlobalAveragePooling1D", "max": "GlobalMaxPooling1D"}[k] in names for k in kind.split(","))
    assert ("Concatenate" in names) == ("," in kind)
    # the training model sees int8-rounded inputs and states (fake quantisation): close to the float model
    np.testing.assert_allclose(np.asarray(m(x, training=False)), want, atol=0.01)
    np.testing.assert_allclose(FloatDeltaModel(ir, [0], [0]).run(x, L)[0], want, atol=1e-9)
    export_keras(ir, cells, pre, head, tmp_path / "m.h5")
    back = import_model(tmp_path / "m.h5")
    assert (back.pool, back.pool_name, back.per_step) == (kind, ir.pool_name, False)
    np.testing.assert_allclose(FloatModel(back).predict(x, L), want, atol=1e-5)


def _keras_bidi_max(path, seed=0):
    """A tf_keras Embedding(mask_zero) -> Bidirectional(LSTM, return_sequences) -> GlobalMaxPooling1D -> Dense file and
    post-padded ids with their lengths (rows of 3..8 tokens in 8 steps)."""
    import os
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from zoo_models import keras_module
    k = keras_module("k2")
    rng = np.random.default_rng(seed)
    m = k.Sequential([k.Input((None,), dtype="int32"), k.layers.Embedding(20, 4, mask_zero=True),
                      k.layers.Bidirectional(k.layers.LSTM(3, return_sequences=True)),
                      k.layers.GlobalMaxPooling1D(name="gmp"), k.layers.Dense(2, activation="softmax")])
    m.set_weights([rng.normal(0, 0.7, w.shape).astype(np.float32) for w in m.get_weights()])
    m.save(str(path))
    L = rng.integers(3, 9, 10).astype(np.int32)
    x = rng.integers(1, 20, (10, 8)).astype(np.int32)
    x[np.arange(8)[None, :] >= L[:, None]] = 0
    return m, x, L


def test_lengths_of_a_bidirectional_max_pooled_model_run_to_the_padded_length(tmp_path):
    """Keras pools the zeros a Bidirectional layer writes at the masked padding after each row's tokens; with the
    rows' lengths in the data file rnnskip stopped there and missed them (an audit measured up to 0.032 off Keras).
    The rows now run to the padded length, said in a note, and the float reference equals Keras."""
    pytest.importorskip("tf_keras")
    from rnnskip.converter.keras_import import load_model_file
    from rnnskip.datasets import Dataset, load_npz, save_npz
    m, x, L = _keras_bidi_max(tmp_path / "m.h5")
    save_npz(str(tmp_path / "d.npz"), Dataset(x=x, y=np.zeros(len(x), np.int64), lengths=L))
    ir = load_model_file(tmp_path / "m.h5")
    assert ir.pools_masked_zeros
    ds = load_npz(str(tmp_path / "d.npz"), ir)
    assert ds.lengths.tolist() == [8] * 10
    assert any("run to the padded length 8" in n for n in ds.notes)
    np.testing.assert_allclose(FloatModel(ir).predict(ds.x, ds.lengths), np.asarray(m(x)), atol=1e-5)
    assert np.abs(FloatModel(ir).predict(x, L) - np.asarray(m(x))).max() > 1e-3   # what stopping at L gave


def test_reference_check_leaves_out_rows_keras_makes_nan():
    """GlobalAveragePooling1D over a row whose every step is masked is 0 / 0 in Keras: that row no longer turns the
    whole comparison into NaN; it is named in its own warning and the other rows are compared."""
    from rnnskip.converter import source_check
    got = np.array([[0.5, 0.5], [0.25, 0.75], [0.1, 0.9]])
    want = got.copy()
    want[1] = np.nan
    from types import SimpleNamespace
    pooled = SimpleNamespace(pool="avg")
    res = source_check._compared("keras", np.array([4, 7, 9]), got, want, pooled)
    assert (res["rows"], res["max_abs_diff"], res["nonfinite_rows"]) == (2, 0.0, [7])
    assert source_check.warning(res) == (
        "warning: keras gives NaN (or inf) on 1 row of the data (e.g. row 7), where rnnskip gives numbers: a row "
        "whose every step is masked, which GlobalAveragePooling1D divides by zero steps (rnnskip's mean is 0 there); "
        "the other 2 rows agree within 0.0001")
    assert "please report it" in source_check.warning(source_check._compared(
        "keras", np.array([4, 7, 9]), got, want, SimpleNamespace(pool="")))   # NaN where no pooling explains it
    want[2, 0] += 0.01
    assert "differs from keras by up to 0.01 on 2 rows" in source_check.warning(source_check._compared(
        "keras", np.array([4, 7, 9]), got, want, pooled))


def test_import_and_inspect_name_the_pooling(tmp_path):
    pytest.importorskip("tf_keras")
    from test_cli import cli

    from rnnskip.inspect import inspect_file
    _keras_bidi_max(tmp_path / "m.h5")
    p = cli("rnnskip", "import", tmp_path / "m.h5", "--out", tmp_path / "w")
    assert p.returncode == 0, p.stderr
    assert "tokens -> Bidirectional(LSTM(3), concat) -> max over time -> Dense(2, softmax);" in p.stdout
    ins = inspect_file(tmp_path / "m.h5")
    assert ins.converts and ins.pool_over_time == "max" and not ins.per_step_outputs


def test_a_delta_tune_baseline_must_pool_as_the_model_does():
    from rnnskip.delta.cli import check_baseline
    with pytest.raises(RnnskipError) as e:
        check_baseline(pool_ir("feat-lstm", "avg"), pool_ir("feat-lstm", "max"), "b.h5")
    assert str(e.value) == ("--baseline b.h5 has max over time but the model mean over time; give the model it "
                            "was fine-tuned from")
    with pytest.raises(RnnskipError, match="has no pooling over time but the model mean and max over time"):
        check_baseline(pool_ir("feat-lstm", "avg,max"), random_ir("feat-lstm"), "b.h5")
    check_baseline(pool_ir("feat-lstm", "max"), pool_ir("feat-lstm", "max"), "b.h5")


def test_the_terminal_model_line_names_the_pooling():
    from rnnskip.report import _model_line
    m = {"type": "gru", "layers": [{"name": "g", "units": 4}], "params": 10, "macs_per_step": 5,
         "pool_over_time": {"kind": "avg", "layer": "gap"}}
    assert _model_line(m) == "gru 4 units -> mean over time, 10 params, 5 MAC/step"
