"""``rnnskip inspect`` (API and CLI), regression and per-step outputs through
``rnnskip-convert`` (report ``error``, float / per-step ``y``), on Keras-2.2-style files
written with h5py (no TensorFlow needed)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import needs_arm

from rnnskip.converter.keras_import import load_model_file
from rnnskip.datasets import Dataset, load_npz, save_npz
from rnnskip.errors import RnnskipError
from rnnskip.inspect import format_text, inspect_file
from rnnskip.reference import FloatModel

F, T, N = 3, 6, 8


def old_h5(path, layers, version="2.2.4", seed=0, steps=None):
    """A Keras 2.2-era Sequential .h5: ``layers`` = [(class, config, {role: shape})]; ``steps``: the input's fixed
    number of steps (None: any)."""
    rng = np.random.default_rng(seed)
    entries = []
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        mw = f.create_group("model_weights")
        for i, (cls, cfg, roles) in enumerate(layers):
            cfg = dict(cfg)
            if i == 0:
                cfg["batch_input_shape"] = [None, steps, F]
            entries.append({"class_name": cls, "config": cfg})
            g = mw.create_group(cfg["name"])
            names = [f"{cfg['name']}/{r}:0" for r in roles]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, shape in zip(names, roles.values()):
                g[n] = rng.normal(0, 0.5, shape).astype(np.float32)
        f.attrs["model_config"] = json.dumps(
            {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": entries}}).encode()
    return path


def lstm(name, units, inp, **kw):
    return ("LSTM", dict(name=name, units=units, activation=kw.pop("activation", "tanh"),
                         recurrent_activation="hard_sigmoid", use_bias=True, **kw),
            {"kernel": (inp, 4 * units), "recurrent_kernel": (units, 4 * units), "bias": (4 * units,)})


def dense(name, units, inp, activation="linear"):
    return ("Dense", dict(name=name, units=units, activation=activation, use_bias=True),
            {"kernel": (inp, units), "bias": (units,)})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("insp")
    td = ("TimeDistributed", {"name": "time_distributed_1",
                              "layer": {"class_name": "Dense", "config": dense("d", 3, 4, "softmax")[1]}},
          {"kernel": (4, 3), "bias": (3,)})
    return {
        "regression": old_h5(d / "reg.h5", [lstm("lstm_1", 5, F), dense("dense_1", 2, 5)]),
        "per_step": old_h5(d / "seq.h5", [lstm("lstm_1", 4, F, return_sequences=True), td]),
        "blocked": old_h5(d / "bad.h5", [("Conv1D", {"name": "conv1d_1", "filters": 4, "kernel_size": [3],
                                                     "strides": [2], "padding": "same"},
                                          {"kernel": (3, F, 4), "bias": (4,)}),
                                         lstm("lstm_1", 4, 4, activation="elu"), dense("dense_1", 2, 4)]),
        "dir": d,
    }


def test_inspect_convertible(files):
    ins = inspect_file(files["regression"])
    assert ins.converts and not ins.blockers
    assert ins.generation.startswith("standalone Keras 2") and ins.keras_version == "2.2.4"
    assert [l.name for l in ins.layers] == ["lstm_1", "dense_1"]
    assert ins.params == F * 20 + 5 * 20 + 20 + 5 * 2 + 2 == load_model_file(files["regression"]).params()
    assert ins.macs_per_step == F * 20 + 5 * 20
    from rnnskip import targets
    assert [t["target"] for t in ins.targets] == [targets.load(n).name for n in targets.available()]
    assert all(t["fits"] and t["flash_bytes"] > t["weights_bytes"] > 0 for t in ins.targets)
    text = format_text(ins)
    assert "converts: yes" in text and "cortex-m4" in text
    # the LSTM's scale layout is the calibration's choice: said, with what the other layout costs
    assert ("note: LSTM 'lstm_1': shared or split input/recurrent weight scales is decided on the calibration "
            "ranges (split when either half keeps fewer than 32 int8 levels); the sizes below are for split, which "
            "costs 256 B more flash and up to 128 B more RAM than shared") in text


def test_inspect_lists_every_blocker(files):
    ins = inspect_file(files["blocked"])
    assert not ins.converts
    assert any("'conv1d_1' (Conv1D)" in b for b in ins.blockers)
    assert any("'lstm_1'" in b and "elu" in b for b in ins.blockers)
    assert ins.blockers[0] == _import_error(files["blocked"])  # the converter's own reason first
    assert ins.params == 3 * F * 4 + 4 + 4 * 16 + 4 * 16 + 16 + 4 * 2 + 2
    assert "converts: NO" in format_text(ins)


def _import_error(path) -> str:
    with pytest.raises(RnnskipError) as ei:
        load_model_file(path)
    return str(ei.value)


def test_inspect_per_step(files):
    ins = inspect_file(files["per_step"])
    assert ins.converts and ins.per_step_outputs
    assert ins.macs_per_step == F * 16 + 4 * 16 + 4 * 3   # the head runs every step


def test_inspect_on_a_board(files):
    """--board: the board's core on its part's flash and RAM, named as the board, the estimate the conversion checks
    (a user check: inspect could not say whether a model fits an stm32l073)."""
    from rnnskip import boards
    from rnnskip.quant.quantize import quantize
    from rnnskip.targets.fit import estimate
    ins = inspect_file(files["regression"], board_names=["stm32l073"])
    [t] = ins.targets
    bt = boards.board_target(boards.load("stm32l073"))
    assert (t["board"], t["target"], t["flash_capacity"], t["ram_capacity"]) == \
        ("stm32l073", "cortex-m0plus", bt.flash_size, bt.ram_size)
    from rnnskip.inspect import _placeholder_ranges
    ir = load_model_file(files["regression"])
    assert t["ram_bytes"] >= estimate(quantize(ir, _placeholder_ranges(ir)), ins.max_t, bt).ram
    assert "stm32l073 (cortex-m0plus) flash" in format_text(ins)
    p = cli("rnnskip", "inspect", files["regression"], "--board", "stm32l073", "--max-t", "1000000")
    assert p.returncode == 1 and "stm32l073 (cortex-m0plus)" in p.stdout and "DOES NOT FIT" in p.stdout


def test_inspect_not_a_model(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello")
    ins = inspect_file(p)
    assert not ins.converts and "not a Keras model" in ins.blockers[0]
    with pytest.raises(RnnskipError):
        inspect_file(tmp_path / "missing.h5")


def cli(*args):
    exe = Path(sys.executable).parent
    return subprocess.run([str(exe / args[0])] + [str(a) for a in args[1:]], capture_output=True, text=True)


def test_inspect_cli_exit_status(files, tmp_path):
    p = cli("rnnskip", "inspect", files["regression"], "--target", "cortex-m0plus")
    assert p.returncode == 0 and "converts: yes" in p.stdout and "cortex-m0plus" in p.stdout, p.stderr
    p = cli("rnnskip", "inspect", files["regression"], "--target", "cortex-m0plus", "--max-t", "1000000")
    assert p.returncode == 1 and "DOES NOT FIT" in p.stdout, p.stdout     # converts, but not for that core
    p = cli("rnnskip", "inspect", files["blocked"], "--json")
    assert p.returncode == 1
    assert json.loads(p.stdout)["converts"] is False
    p = cli("rnnskip", "inspect", tmp_path / "missing.h5")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "not found" in p.stderr
    # a file rnnskip cannot read as a model is bad input too: one line and 2, not a report of an empty model and 1
    (tmp_path / "model.pt").write_bytes(b"PK-not-quite" + bytes(64))
    (tmp_path / "trunc.h5").write_bytes(Path(files["regression"]).read_bytes()[:3000])
    for bad, needle in (("model.pt", "or an ONNX file (.onnx; a PyTorch model: export it with torch.onnx.export)"),
                        ("trunc.h5", "truncated or corrupt")):
        for extra in ((), ("--json",)):
            p = cli("rnnskip", "inspect", tmp_path / bad, *extra)
            assert p.returncode == 2 and p.stdout == "" and p.stderr.startswith("error: ") and needle in p.stderr, \
                (bad, p.returncode, p.stdout, p.stderr)
            assert len(p.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------
# labels

def _data(path, ir, y):
    x = np.random.default_rng(1).normal(0, 1, (N, T, F)).astype(np.float32)
    save_npz(str(path), Dataset(x=x, y=y, lengths=np.full(N, T, np.int32)))
    return path


def test_load_npz_target_shapes(files, tmp_path):
    reg = load_model_file(files["regression"])
    seq = load_model_file(files["per_step"])
    ds = load_npz(str(_data(tmp_path / "a.npz", reg, np.zeros((N, 2), np.float32))), reg)
    assert ds.y.shape == (N, 2) and ds.y.dtype == np.float32
    with pytest.raises(RnnskipError, match=r"float targets \[N, 2\]"):
        load_npz(str(_data(tmp_path / "b.npz", reg, np.zeros((N, 2), np.int64))), reg)
    ds = load_npz(str(_data(tmp_path / "c.npz", seq, np.zeros((N, T), np.int64))), seq)
    assert ds.y.shape == (N, T)
    with pytest.raises(RnnskipError, match="one output per time step"):
        load_npz(str(_data(tmp_path / "d.npz", seq, np.zeros(N, np.int64))), seq)
    with pytest.raises(RnnskipError, match="out of range"):
        load_npz(str(_data(tmp_path / "e.npz", seq, np.full((N, T), 5, np.int64))), seq)
    # a softmax classifier given one-hot labels (Keras' to_categorical): one line with the fix
    cls = load_model_file(old_h5(tmp_path / "cls.h5", [lstm("lstm_1", 4, F), dense("dense_1", 3, 4, "softmax")]))
    onehot = np.eye(3, dtype=np.float32)[np.arange(N) % 3]
    msg = (r"y in .*f\.npz is one-hot \[8, 3\] but the model is a softmax classifier, which takes one class index "
           r"per sequence: save y\.argmax\(axis=1\) as y")
    with pytest.raises(RnnskipError, match=msg):
        load_npz(str(_data(tmp_path / "f.npz", cls, onehot)), cls)
    with pytest.raises(RnnskipError, match=r"is \[8, 3\] but the model is a softmax classifier"):
        load_npz(str(_data(tmp_path / "g.npz", cls, onehot * 0.9)), cls)
    # where labels are not needed (calibration data), such a y is dropped, not refused
    assert load_npz(str(tmp_path / "f.npz"), cls, labels=False).y is None


@needs_arm
def test_convert_regression_and_per_step(files, tmp_path):
    reg = load_model_file(files["regression"])
    x = np.random.default_rng(1).normal(0, 1, (N, T, F)).astype(np.float32)
    y = (FloatModel(reg).predict(x) + 0.1).astype(np.float32)
    data = tmp_path / "reg.npz"
    save_npz(str(data), Dataset(x=x, y=y, lengths=np.full(N, T, np.int32)))
    p = cli("rnnskip-convert", files["regression"], "--data", data, "--out", tmp_path / "r", "--workers", "1")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["accuracy"] is None and rep["bitexact"]["mismatches"] == 0
    assert rep["bitexact"]["device_checked"] == N
    e = rep["error"]
    assert abs(e["float_vs_label_rmse"] - 0.1) < 1e-4
    assert 0 < e["int8_vs_float_rmse"] <= e["int8_vs_float_max_abs"] < 0.05
    assert 0 < e["int8_weights_vs_float_rmse"] < 0.05      # the int8 weights alone, activations float
    assert "error int8 vs float" in p.stdout and "(int8 weights, float activations: " in p.stdout

    seq = load_model_file(files["per_step"])
    probs = FloatModel(seq).predict(x)
    data = tmp_path / "seq.npz"
    lengths = np.array([T, 3, T, 1, 5, T, 2, T], np.int32)
    save_npz(str(data), Dataset(x=x, y=np.argmax(probs, -1), lengths=lengths))
    p = cli("rnnskip-convert", files["per_step"], "--data", data, "--out", tmp_path / "s", "--workers", "1")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rep["model"]["per_step_outputs"] is True
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == N
    assert rep["accuracy"]["float"] == 1.0 and rep["accuracy"]["int8_device"] >= 0.8
    assert 0.8 <= rep["accuracy"]["float_int8_weights"] <= 1.0 and "(with the int8 weights: " in p.stdout


def test_inspect_sizes_are_for_the_larger_lstm_layout(files):
    """An LSTM's split scales are the calibration's choice: inspect sizes it split (the larger), so its
    "fits" holds whichever the data gives; equal to the estimate of the same model calibrated into split."""
    from helpers import quantize_on

    from rnnskip import targets
    from rnnskip.targets.fit import estimate
    ir = load_model_file(files["regression"])
    x = np.random.default_rng(0).normal(0, 1, (N, T, F))
    shared, split = quantize_on(ir, x, np.full(N, T)), quantize_on(ir, x * 1e4, np.full(N, T))
    assert not shared.layers[0].options["split"] and split.layers[0].options["split"]
    t = targets.load("cortex-m4")
    got = next(e for e in inspect_file(files["regression"], max_t=64).targets if e["target"] == t.name)
    want = estimate(split, 64, t)
    assert (got["flash_bytes"], got["ram_bytes"], got["weights_bytes"]) == (want.flash, want.ram, want.weights)
    assert got["flash_bytes"] > estimate(shared, 64, t).flash


def test_inspect_sizes_the_buffers_for_the_declared_steps(files, tmp_path):
    """A model whose input declares its steps (Input(shape=(100, 6))) is estimated for that many, not 64 (a user
    check: 'I/O buffers for 64 steps' for a 100-sample IMU window); --max-t still decides."""
    fixed = old_h5(tmp_path / "fixed.h5", [lstm("lstm_1", 5, F), dense("dense_1", 2, 5)], steps=37)
    assert load_model_file(fixed).input_steps == 37 and load_model_file(files["regression"]).input_steps == 0
    assert inspect_file(fixed).max_t == 37 and inspect_file(files["regression"]).max_t == 64
    assert inspect_file(fixed, max_t=50).max_t == 50


def test_inspect_lstm_stack_adds_one_accumulator_set(tmp_path):
    """The layers share one accumulator buffer: a stack of two LSTMs sized split adds 16 up B of RAM once,
    and each layer's 32 up B of flash."""
    from helpers import quantize_on

    from rnnskip import targets
    from rnnskip.targets.fit import estimate
    path = old_h5(tmp_path / "stack.h5", [lstm("lstm_1", 16, F, return_sequences=True), lstm("lstm_2", 16, 16),
                                         dense("dense_1", 2, 16)])
    ir = load_model_file(path)
    x = np.random.default_rng(0).normal(0, 1, (N, T, F))
    shared = quantize_on(ir, x, np.full(N, T))
    assert not any(l.options["split"] for l in shared.layers)
    t = targets.load("cortex-m4")
    got = next(e for e in inspect_file(path, max_t=64).targets if e["target"] == t.name)
    want = estimate(shared, 64, t)
    assert (got["flash_bytes"] - want.flash, got["ram_bytes"] - want.ram) == (2 * 32 * 16, 16 * 16)
