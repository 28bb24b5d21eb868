"""rnnskip-convert checks the float reference against the source file's own runtime on the user's data
(report.json reference_check): the Keras generation that wrote the file (tf_keras for Keras 2, keras for
Keras 3) on the rows Keras runs as rnnskip does. ONNX: tests/test_onnx_import.py."""
from __future__ import annotations

import numpy as np
import pytest

from rnnskip.converter import source_check
from rnnskip.converter.keras_import import load_model_file


def _model(gen, d, mask=True):
    import keras_models
    k = keras_models.keras_module(gen)
    L = k.layers
    inp = k.Input((8, 3))
    h = L.Masking(0.0)(inp) if mask else inp
    h = L.GRU(6)(h)
    m = k.Model(inp, L.Dense(3, activation="softmax")(h))
    rng = np.random.default_rng(0)
    m.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in m.get_weights()])
    path = d / f"{gen}{'-nomask' if not mask else ''}.{'h5' if gen == 'k2' else 'keras'}"
    m.save(path)
    return path


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 8, 3)).astype(np.float32)
    L = np.full(10, 8)
    x[2, 5:] = 0            # padded at the end, lengths agree with the mask
    L[2] = 5
    L[3] = 4                # lengths end row 3 early where the mask would run it: left out
    return x, L


@pytest.mark.keras
@pytest.mark.parametrize("gen", ["k2", "k3"])
def test_keras_reference_check(gen, tmp_path):
    pytest.importorskip("tf_keras" if gen == "k2" else "keras")
    x, L = _data()
    ir = load_model_file(str(_model(gen, tmp_path)))
    res = source_check.check(ir, x, L)
    assert res["runtime"] == ("tf_keras" if gen == "k2" else "keras")
    assert res["rows"] == 9 and res["max_abs_diff"] <= 1e-5 and source_check.warning(res) == ""
    ir.rnn_layers[0].bias = ir.rnn_layers[0].bias + 0.05      # a float reference that is off
    res = source_check.check(ir, x, L)
    assert res["max_abs_diff"] > 1e-3 and source_check.warning(res).startswith(
        f"warning: the float reference differs from {res['runtime']} by up to ")


@pytest.mark.keras
def test_keras_reference_check_rows_without_a_mask(tmp_path):
    """No mask: only the rows the lengths do not end early are compared (Keras runs every step)."""
    pytest.importorskip("tf_keras")
    x, L = _data()
    res = source_check.check(load_model_file(str(_model("k2", tmp_path, mask=False))), x, L)
    assert res["rows"] == 8 and res["max_abs_diff"] <= 1e-5


@pytest.mark.keras
def test_keras_that_cannot_load_its_file_is_skipped(tmp_path):
    """A file Keras cannot load (here: gone since the import): the check is skipped with the reason, no
    warning, and the conversion goes on."""
    pytest.importorskip("tf_keras")
    x, L = _data()
    ir = load_model_file(str(_model("k2", tmp_path)))
    ir.source = str(tmp_path / "missing.h5")
    res = source_check.check(ir, x, L)
    assert res["skipped"].startswith(f"tf_keras cannot load or run {ir.source} (") and source_check.warning(res) == ""


@pytest.mark.keras
@pytest.mark.parametrize("gen", ["k2", "k3"])
def test_dense_after_embedding_folds_into_the_table(gen, tmp_path):
    """Embedding(mask_zero) -> per-step Dense(tanh) -> LSTM: the Dense is a per-token lookup, folded into the
    table exactly (it was refused). Float reference = Keras on masked rows, golden = host build."""
    import keras_models
    from helpers import dataset, quantize_on

    from rnnskip import pipeline
    from rnnskip.generate import generate
    pytest.importorskip("tf_keras" if gen == "k2" else "keras")
    k = keras_models.keras_module(gen)
    L = k.layers
    inp = k.Input((9,), dtype="int32")
    h = L.Dense(7, activation="tanh")(L.Embedding(25, 5, mask_zero=True)(inp))
    m = k.Model(inp, L.Dense(3, activation="softmax")(L.LSTM(6)(h)))
    rng = np.random.default_rng(2)
    m.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in m.get_weights()])
    path = tmp_path / f"m.{'h5' if gen == 'k2' else 'keras'}"
    m.save(path)
    ir = load_model_file(str(path))
    assert ir.is_token_model and ir.input.table.shape == (25, 7)
    assert any(n.startswith("folded per-step Dense") for n in ir.notes)
    x = rng.integers(1, 25, (12, 9)).astype(np.int32)
    x[3, 5:] = 0
    lengths = np.where((x != 0).any(1), (x != 0).sum(1), 0)
    res = source_check.check(ir, x, lengths)
    assert res["rows"] == 12 and res["max_abs_diff"] <= 1e-5
    qm = quantize_on(ir, x, lengths)
    generate(qm, tmp_path / "src", max_t=9)
    ev = pipeline.evaluate(ir, qm, dataset(x, lengths), host_so=pipeline.build_host(tmp_path / "src", tmp_path / "h"))
    assert ev.host_checked == 12 and ev.host_mismatches == 0


@pytest.mark.keras
def test_float16_policy_noted_and_named_in_the_warning(tmp_path):
    """A mixed_float16 model computes in float16 in Keras: the import says so, and the reference check's warning
    names that as the cause instead of asking for a bug report (an audit found it blamed rnnskip)."""
    k = pytest.importorskip("tf_keras")
    k.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = k.Sequential([k.Input(shape=(None, 3)), k.layers.GRU(8), k.layers.Dense(2, activation="softmax")])
    finally:
        k.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    m.set_weights([rng.normal(0, 0.6, w.shape).astype(w.dtype) for w in m.get_weights()])
    m.save(tmp_path / "half.h5")
    ir = load_model_file(str(tmp_path / "half.h5"))
    assert ir.compute_dtype == "float16" and any("computes in float16 (dtype policy mixed_float16)" in n
                                                 for n in ir.notes)
    x = rng.normal(size=(24, 8, 3)).astype(np.float32)
    res = source_check.check(ir, x, np.full(24, 8))
    assert res["compute_dtype"] == "float16" and res["max_abs_diff"] > res["tolerance"]
    assert source_check.warning(res).endswith("the model computes in float16 (its dtype policy) and the reference in "
                                              "float32, so part or all of that is float16 rounding")


def test_the_tolerance_grows_with_the_outputs_size():
    """float32 rounding grows with the outputs: 0.004 off on outputs near 101,325 (a pressure in Pa) is within the
    tolerance (1e-4 of the largest |output|), as 4e-5 on outputs near 1 is; 0.004 on outputs near 1 is not (a review
    saw 'please report this' on the pressure model)."""
    from types import SimpleNamespace
    ir = SimpleNamespace()
    rows = np.arange(3)
    for size, diff, warned in ((101325.0, 0.004, False), (1.0, 4e-5, False), (1.0, 0.004, True)):
        want = np.full((3, 1), size)
        res = source_check._compared("tf_keras", rows, want + diff, want, ir)
        assert res["tolerance"] == pytest.approx(1e-4 * max(1.0, size))
        assert bool(source_check.warning(res)) == warned, (size, diff)


def test_a_batch_of_one_exported_with_its_axis_squeezed(tmp_path):
    """PyTorch's tutorial head fc(h_n.squeeze()) exported with a one-row example and no dynamic axes squeezes the
    batch axis away: the check runs it row by row and compares (it warned of output shapes [N, 2] and [N] and said
    to report it)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import warnings

    from rnnskip.converter.formats import load_model_file as load_any

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = torch.nn.LSTM(5, 8, batch_first=True), torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[1][0].squeeze())

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(6, 10, 5)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.tensor(x[:1]),), str(tmp_path / "m.onnx"), opset_version=17,
                          dynamo=False, input_names=["x"], output_names=["y"])
    ir = load_any(tmp_path / "m.onnx")
    res = source_check.check(ir, x, np.full(6, 10))
    assert "shape_mismatch" not in res and res["rows"] == 6 and res["max_abs_diff"] <= 1e-5, res
    assert source_check.warning(res) == ""
