"""Keras file -> IR: fields, weights, refusals and unreadable files."""
import json
import zipfile

import h5py
import keras_models as km
import numpy as np
import pytest

from rnnskip.converter.ir import EmbeddingInput, FeatureInput
from rnnskip.converter.keras_import import load_model_file, parse_model_file
from rnnskip.errors import RnnskipError


def _err(path) -> str:
    with pytest.raises(RnnskipError) as ei:
        load_model_file(path)
    msg = str(ei.value)
    assert msg and "\n" not in msg, repr(msg)
    assert "Traceback" not in msg
    return msg


# --------------------------------------------------------------------------
# real Keras files, both generations


@pytest.mark.keras
@pytest.mark.parametrize("name", list(km.SPECS))
def test_ir_fields(zoo, name):
    e = zoo.models[name]
    want = e.spec.expect
    irs = {fmt: load_model_file(p) for fmt, p in e.files.items()}
    for fmt, ir in irs.items():
        where = f"{zoo.gen} {fmt}"
        assert ir.source == e.files[fmt]
        assert ir.keras_version.split(".")[0] == ("2" if zoo.gen == "k2" else "3"), where
        assert ir.name
        assert [r.kind for r in ir.rnn_layers] == want["kinds"], where
        assert [r.units for r in ir.rnn_layers] == want["units"], where
        if "return_sequences" in want:
            assert [r.return_sequences for r in ir.rnn_layers] == want["return_sequences"]
        else:
            assert [r.return_sequences for r in ir.rnn_layers] == [False]
        if "reset_after" in want:
            assert [r.options["reset_after"] for r in ir.rnn_layers] == want["reset_after"], where
        for r in ir.rnn_layers:
            assert (r.activation, r.recurrent_activation) == ("tanh", "sigmoid")
            g = 4 if r.kind == "lstm" else 3
            assert r.kernel.shape == (r.input_dim, g * r.units)
            assert r.recurrent_kernel.shape == (r.units, g * r.units)
            want_b = (2, g * r.units) if r.kind == "gru" and r.options["reset_after"] else (g * r.units,)
            assert r.bias.shape == want_b
            assert r.kernel.dtype == np.float32
        assert [d.activation for d in ir.head] == want["head"], where
        if e.spec.tokens:
            assert isinstance(ir.input, EmbeddingInput)
            assert ir.input.vocab == km.VOCAB
            assert ir.input.mask_zero is want.get("mask_zero", True)
        else:
            assert isinstance(ir.input, FeatureInput)
            assert ir.input.features == km.FEATURES
            assert ir.input.mask_value == want.get("mask_value", e.spec.mask_value)
            if "in_dense" in want:
                fin, fout, act = want["in_dense"]
                d = ir.input.dense
                assert (d.in_dim, d.out_dim, d.activation) == (fin, fout, act), where
            else:
                assert ir.input.dense is None
        if "notes" in want:
            assert len(ir.notes) >= want["notes"], ir.notes
    # Both file formats of one generation hold the same weights.
    a, b = irs.values()
    assert a.params() == b.params()
    for ra, rb in zip(a.rnn_layers, b.rnn_layers):
        np.testing.assert_array_equal(ra.kernel, rb.kernel)
        np.testing.assert_array_equal(ra.recurrent_kernel, rb.recurrent_kernel)
        np.testing.assert_array_equal(ra.bias, rb.bias)
    for da, db in zip(a.head, b.head):
        np.testing.assert_array_equal(da.kernel, db.kernel)
        np.testing.assert_array_equal(da.bias, db.bias)


@pytest.mark.keras
def test_biases_are_nonzero_and_use_bias_false_gives_zeros(zoo):
    ir = load_model_file(zoo.models["emb_gru_ra_sigmoid"].files["h5"])
    assert np.all(ir.rnn_layers[0].bias[1] != 0)  # recurrent bias row really read
    ir = load_model_file(zoo.models["no_bias"].files["keras"])
    assert ir.rnn_layers[0].bias.shape == (2, 15) and not ir.rnn_layers[0].bias.any()
    assert not ir.head[0].bias.any()


@pytest.mark.keras
def test_noop_layers_are_noted(zoo):
    ir = load_model_file(zoo.models["dropout"].files["h5"])
    text = " ".join(ir.notes)
    for word in ("SpatialDropout1D", "Dropout", "GaussianNoise", "recurrent_dropout", "dropout=0.2"):
        assert word in text, ir.notes


@pytest.mark.keras
@pytest.mark.parametrize("name", list(km.REFUSED))
def test_refused_layers(zoo, name):
    _layers, words = km.REFUSED[name]
    for fmt, path in zoo.refused[name].items():
        msg = _err(path)
        for w in words:
            assert w in msg, f"{zoo.gen} {fmt}: {w!r} not in {msg!r}"


@pytest.mark.keras
def test_custom_layer_flagged_custom_in_keras3_zip(k3_zoo):
    assert "custom layer" in _err(k3_zoo.refused["custom"]["keras"])


@pytest.mark.keras
def test_activation_refused_but_parsed(zoo):
    ir = parse_model_file(zoo.refused["elu_lstm"]["h5"])
    assert ir.rnn_layers[0].activation == "elu"


@pytest.mark.keras
def test_truncated_real_files(zoo, tmp_path):
    for fmt, path in zoo.models["emb_lstm_softmax"].files.items():
        data = open(path, "rb").read()
        cut = tmp_path / f"cut_{zoo.gen}.{fmt}"
        cut.write_bytes(data[: len(data) // 2])
        msg = _err(cut)
        assert str(cut) in msg and ("truncated" in msg or "corrupt" in msg), msg


# --------------------------------------------------------------------------
# unreadable files (no TensorFlow needed)


def test_missing_file(tmp_path):
    msg = _err(tmp_path / "nope.h5")
    assert "not found" in msg and "nope.h5" in msg


def test_directory(tmp_path):
    assert "directory" in _err(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.h5"
    p.write_bytes(b"")
    assert "empty" in _err(p)


def test_text_file_renamed_h5(tmp_path):
    p = tmp_path / "notes.h5"
    p.write_text("this is not a model\n")
    assert "not a Keras model file" in _err(p)


def test_plain_hdf5_without_model_config(tmp_path):
    p = tmp_path / "data.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    msg = _err(p)
    assert "model_config" in msg and "not a Keras model" in msg


def test_weights_only_h5(tmp_path):
    p = tmp_path / "w.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = np.array([b"lstm"])
        f.create_group("lstm")
    assert "only weights" in _err(p)


def test_bad_json_config(tmp_path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = "{not json"
        f.create_group("model_weights")
    assert "JSON" in _err(p)


def test_keras_zip_without_config(tmp_path):
    p = tmp_path / "m.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("model.weights.h5", b"")
    assert "config.json" in _err(p)


def test_keras_zip_without_weights(tmp_path):
    p = tmp_path / "m.keras"
    cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": []}}
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("config.json", json.dumps(cfg))
    assert "model.weights.h5" in _err(p)


def test_truncated_zip(tmp_path):
    src = tmp_path / "m.keras"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential"}) * 200)
        z.writestr("metadata.json", "{}")
    data = src.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    assert "cut.keras" in _err(cut)


# --------------------------------------------------------------------------
# hand-written Keras-2-style files: old weight paths, role resolution by name


def _old_keras2_file(path, with_weight_names=True, shuffled=False):
    """An .h5 laid out like Keras 2.2-era files: no InputLayer (batch_input_shape
    on the first layer), weights at ``model_weights/<l>/<l>/kernel:0``."""
    rng = np.random.default_rng(0)
    W = {"lstm_1": {"kernel": rng.normal(size=(4, 12)), "recurrent_kernel": rng.normal(size=(3, 12)),
                    "bias": rng.normal(size=(12,))},
         "dense_1": {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=(2,))}}
    cfg = {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [
        {"class_name": "LSTM", "config": {"name": "lstm_1", "batch_input_shape": [None, None, 4],
                                          "units": 3, "activation": "tanh",
                                          "recurrent_activation": "sigmoid", "use_bias": True,
                                          "return_sequences": False, "recurrent_dropout": 0.0}},
        {"class_name": "Dense", "config": {"name": "dense_1", "units": 2,
                                           "activation": "softmax", "use_bias": True}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg).encode()
        f.attrs["keras_version"] = b"2.2.4"
        mw = f.create_group("model_weights")
        for layer, ws in W.items():
            g = mw.create_group(layer)
            names = [f"{layer}/{role}:0" for role in ws]
            if shuffled:
                names = names[::-1]
            for n in names:
                g[n] = ws[n.split("/")[1][:-2]].astype(np.float32)
            if with_weight_names:
                g.attrs["weight_names"] = [n.encode() for n in names]
    return W


@pytest.mark.parametrize("with_weight_names", [True, False])
def test_old_keras2_layout(tmp_path, with_weight_names):
    p = tmp_path / "old.h5"
    W = _old_keras2_file(p, with_weight_names=with_weight_names, shuffled=True)
    ir = load_model_file(p)
    assert ir.keras_version == "2.2.4" and ir.name == "sequential_1"
    assert ir.input.features == 4 and ir.input.mask_value is None
    r = ir.rnn_layers[0]
    np.testing.assert_array_equal(r.kernel, W["lstm_1"]["kernel"].astype(np.float32))
    np.testing.assert_array_equal(r.recurrent_kernel, W["lstm_1"]["recurrent_kernel"].astype(np.float32))
    np.testing.assert_array_equal(r.bias, W["lstm_1"]["bias"].astype(np.float32))
    np.testing.assert_array_equal(ir.head[0].kernel, W["dense_1"]["kernel"].astype(np.float32))
    assert ir.head[0].activation == "softmax"


def test_missing_weights_group(tmp_path):
    p = tmp_path / "old.h5"
    _old_keras2_file(p)
    with h5py.File(p, "a") as f:
        del f["model_weights/lstm_1"]
    msg = _err(p)
    assert "'lstm_1'" in msg and "no weights" in msg


def test_wrong_weight_shape(tmp_path):
    p = tmp_path / "old.h5"
    _old_keras2_file(p)
    with h5py.File(p, "r+") as f:
        del f["model_weights/lstm_1/lstm_1/bias:0"]
        f["model_weights/lstm_1/lstm_1/bias:0"] = np.zeros(7, np.float32)
    msg = _err(p)
    assert "'lstm_1' (LSTM)" in msg and "units=3" in msg
