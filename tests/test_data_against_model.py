"""Data that does not fit how the model runs it, said in one line before anything is written.

* ``lengths`` that contradict the model's own mask (a ``Masking`` layer or ``Embedding(mask_zero=True)``):
  rows padded at the front, as Keras' ``pad_sequences`` does by default, with the lengths of their
  tokens. rnnskip runs the steps before each length, Keras every unmasked step, so the float
  reference differs from Keras on those rows: one ``warning:`` line. Post-padded rows with their
  lengths agree with Keras and get none.
* Sequences shorter than a Conv1D/pooling front end needs to emit one frame (Keras refuses them):
  refused in one ``error:`` line naming the option, the front end's shortest input and the longest
  sequence found (no internal error, no output folder); rows only some of which are that short
  (by their ``lengths``): one ``warning:`` line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras_models as km
import numpy as np
import pytest
from helpers import needs_arm

from rnnskip.converter.ir import ConvLayer, PoolLayer, front_frames, front_min_steps
from rnnskip.errors import RnnskipError
from rnnskip.pipeline import stages

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

T = 8
LENGTHS = np.array([8, 3, 5, 2, 7, 8, 4, 6], np.int32)   # rows 1, 2, 3, 4, 6, 7 are padded
N = len(LENGTHS)
VOCAB = 11


def cli(*args):
    """A console script in a fresh interpreter, like a user would run it."""
    exe = Path(sys.executable).parent
    return subprocess.run([str(exe / args[0])] + [str(a) for a in args[1:]], capture_output=True, text=True)


def _save_keras(m, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(path)


def _collect(path, ir, what="--data", labels=None):
    lines = []
    ds = stages.load_data(path, ir, what, labels=labels, note=lines.append)
    return ds, lines


# ---------------------------------------------------------------- lengths against the model's mask

@pytest.fixture(scope="module", params=["masking", "mask_zero"])
def masked(request, tmp_path_factory):
    """A Keras 3 model with a mask, ragged rows padded at the front and at the end (with lengths
    and Keras' predictions on each padding)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    from rnnskip.converter.keras_import import load_model_file
    k = km.keras_module("k3")
    kind = request.param
    rng = np.random.default_rng(7)
    tokens = kind == "mask_zero"
    first = k.layers.Embedding(VOCAB, 4, mask_zero=True) if tokens else k.layers.Masking(0.0)
    inp = k.Input((None,), dtype="int32") if tokens else k.Input((None, 3))
    m = k.Sequential([inp, first, k.layers.GRU(6), k.layers.Dense(3, activation="softmax")])
    km.randomize(m, rng)
    seqs = [rng.integers(1, VOCAB, size=int(n)) if tokens else rng.normal(0, 1, (int(n), 3)).astype(np.float32)
            for n in LENGTHS]
    d = tmp_path_factory.mktemp(f"mask-{kind}")
    path = d / "model.keras"
    _save_keras(m, path)
    rows = {}
    for padding in ("pre", "post"):
        x = k.utils.pad_sequences(seqs, maxlen=T, padding=padding, value=0, dtype="int32" if tokens else "float32")
        y_keras = np.asarray(m.predict(x, verbose=0), np.float64)
        p = d / f"{padding}.npz"
        np.savez(p, x=x, y=np.argmax(y_keras, 1), lengths=LENGTHS)
        rows[padding] = (p, x, y_keras)
    k.backend.clear_session()
    return {"kind": kind, "path": path, "ir": load_model_file(str(path)), "rows": rows}


def _mask_warning(kind, option, file):
    mask = "Embedding(mask_zero=True)" if kind == "mask_zero" else "Masking layer"
    return (f"warning: lengths in {option} {file} contradict the model's {mask}: 6 of 8 rows have unmasked steps at "
            f"or after their length (e.g. row 1: length 3, step 5 unmasked), as if padded at the front (Keras' "
            f"pad_sequences default); rnnskip runs only the steps before each length and Keras every unmasked step, "
            f"so results on those rows differ from Keras: drop lengths to let the model's mask decide, or pad at "
            f"the end")


@pytest.mark.keras
def test_pre_padded_rows_with_lengths_warn(masked):
    from rnnskip.reference import FloatModel
    p, x, y_keras = masked["rows"]["pre"]
    ir = masked["ir"]
    ds, lines = _collect(p, ir)
    assert lines == [_mask_warning(masked["kind"], "--data", "pre.npz")]
    assert ds.notes == lines
    # what the warning is about: with the lengths the float reference is not Keras', without them it is
    padded = LENGTHS < T
    diff = np.abs(FloatModel(ir).predict(ds.x, ds.lengths) - y_keras).max(axis=1)
    assert (diff[padded] > 1e-3).all() and (diff[~padded] < 1e-5).all()
    no_lengths = Path(p).with_name("pre-no-lengths.npz")
    np.savez(no_lengths, x=x, y=np.argmax(y_keras, 1))
    ds, lines = _collect(no_lengths, ir)
    assert lines == []
    np.testing.assert_allclose(FloatModel(ir).predict(ds.x, ds.lengths), y_keras, rtol=0, atol=1e-5)


@pytest.mark.keras
def test_post_padded_rows_with_lengths_do_not_warn(masked):
    from rnnskip.reference import FloatModel
    p, _, y_keras = masked["rows"]["post"]
    ds, lines = _collect(p, masked["ir"])
    assert lines == [] and ds.notes == []
    np.testing.assert_array_equal(ds.lengths, LENGTHS)
    np.testing.assert_allclose(FloatModel(masked["ir"]).predict(ds.x, ds.lengths), y_keras, rtol=0, atol=1e-5)


@needs_arm
@pytest.mark.keras
def test_convert_prints_the_lengths_warning_once(masked, tmp_path):
    pre = cli("rnnskip-convert", masked["path"], "--data", masked["rows"]["pre"][0], "--out", tmp_path / "pre",
              "--workers", "1")
    assert pre.returncode == 0, pre.stderr
    warned = [line for line in pre.stderr.splitlines() if line.startswith("warning:")]
    assert warned == [_mask_warning(masked["kind"], "--data", "pre.npz")]
    assert "Traceback" not in pre.stderr
    post = cli("rnnskip-convert", masked["path"], "--data", masked["rows"]["post"][0], "--out", tmp_path / "post",
               "--workers", "1")
    assert post.returncode == 0, post.stderr
    assert "warning:" not in post.stderr and "contradict" not in post.stderr


# ---------------------------------------------------------------- sequences too short for the front end

def test_front_min_steps_is_the_shortest_input_that_emits_a_frame():
    """front_min_steps against front_frames over the lengths 1..40, for each padding, stride,
    dilation and pooling the front end takes."""
    k = np.zeros((3, 2, 2))
    fronts = [
        [ConvLayer(k, np.zeros(2))],                                                        # valid: 3
        [ConvLayer(k, np.zeros(2)), PoolLayer("max", 2, 2, 2)],                             # 4
        [ConvLayer(k, np.zeros(2), dilation=2), PoolLayer("avg", 3, 2, 2)],                 # 7
        [ConvLayer(k, np.zeros(2), strides=2), ConvLayer(k, np.zeros(2), strides=3)],       # 7
        [ConvLayer(k, np.zeros(2), padding="causal"), PoolLayer("max", 4, 4, 2)],           # 4
        [ConvLayer(k, np.zeros(2), padding="same")],                                        # 1
        [ConvLayer(k, np.zeros(2), padding="causal", dilation=3)],                          # 1
    ]
    for front, want in zip(fronts, [3, 4, 7, 7, 4, 1, 1]):
        shortest = min(t for t in range(1, 41) if front_frames(front, t) >= 1)
        assert front_min_steps(front) == shortest == want


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
    """Keras 3 Conv1D(kernel 3) -> MaxPooling1D(2) -> GRU -> Dense(1) (regression, random weights and
    biases), and data of 2, 3, 4 and 10 steps."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    k = km.keras_module("k3")
    rng = np.random.default_rng(1)
    m = k.Sequential([k.Input((None, 3)), k.layers.Conv1D(4, 3), k.layers.MaxPooling1D(2), k.layers.GRU(5),
                      k.layers.Dense(1)])
    km.randomize(m, rng, 0.5)
    d = tmp_path_factory.mktemp("short")
    _save_keras(m, d / "model.keras")
    for t in (2, 3, 4, 10):
        np.savez(d / f"t{t}.npz", x=rng.normal(size=(6, t, 3)).astype(np.float32),
                 y=rng.normal(size=6).astype(np.float32))
    keras_refuses = {}
    for t in (3, 4):
        try:
            m.predict(np.zeros((1, t, 3), np.float32), verbose=0)
            keras_refuses[t] = False
        except ValueError:
            keras_refuses[t] = True
    k.backend.clear_session()
    return d, keras_refuses


def _too_short(option, file, longest):
    return (f"error: the longest sequence in {option} {file} has {longest} steps, but the model's front end "
            f"(Conv1D 'conv1d' -> MaxPooling1D 'max_pooling1d') needs at least 4 steps to emit one frame for the "
            f"recurrent layers (Keras refuses shorter input too); pass sequences of at least 4 steps")


@pytest.mark.keras
@pytest.mark.parametrize("data,calib,option,file,longest", [
    ("t2.npz", None, "--data", "t2.npz", 2),            # was: internal error: AssertionError: rnnskip_d0_b
    ("t3.npz", "t10.npz", "--data", "t3.npz", 3),       # was: converted, no recurrent step on any row
    ("t10.npz", "t3.npz", "--calib", "t3.npz", 3),
])
def test_sequences_too_short_for_the_front_end_refused(conv_model, data, calib, option, file, longest, tmp_path):
    d, keras_refuses = conv_model
    assert keras_refuses == {3: True, 4: False}   # the front end's shortest input is Keras' too
    p = cli("rnnskip-convert", d / "model.keras", "--data", d / data, *(["--calib", d / calib] if calib else []),
            "--out", tmp_path / "o")
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines() == [_too_short(option, file, longest)]
    assert not (tmp_path / "o").exists()


@pytest.mark.keras
def test_rows_too_short_by_their_lengths(conv_model, tmp_path):
    from rnnskip.converter.keras_import import load_model_file
    d, _ = conv_model
    ir = load_model_file(str(d / "model.keras"))
    x = np.random.default_rng(0).normal(size=(5, 10, 3)).astype(np.float32)
    p = tmp_path / "some.npz"
    np.savez(p, x=x, lengths=np.array([10, 3, 4, 1, 9]))
    ds, lines = _collect(p, ir, "--calib", labels=False)
    assert lines == ["warning: lengths in --calib some.npz end 4 of 5 rows before their last step (e.g. row 1: "
                     "length 3 of 10), but the model has no mask: rnnskip runs only the steps before each length and "
                     "Keras every step of x, so results on those rows differ from what Keras gives on the same "
                     "arrays: drop lengths (every step runs)",
                     "warning: 2 of 5 rows in --calib some.npz are shorter than the 4 steps the model's front end "
                     "needs to emit one frame, e.g. row 1 (length 3): no recurrent step runs on them (Keras would "
                     "refuse them); drop those rows or give them at least 4 steps"]
    np.savez(p, x=x, lengths=np.array([3, 3, 2, 1, 3]))   # long rows, every one cut short by its length
    with pytest.raises(RnnskipError) as e:
        stages.load_data(p, ir, "--data", labels=None)
    assert "error: " + str(e.value) == _too_short("--data", "some.npz", 3)
    np.savez(p, x=x[:, :4])
    assert _collect(p, ir)[1] == []


@needs_arm
@pytest.mark.keras
def test_shortest_input_converts(conv_model, tmp_path):
    d, _ = conv_model
    p = cli("rnnskip-convert", d / "model.keras", "--data", d / "t4.npz", "--calib", d / "t10.npz",
            "--out", tmp_path / "o", "--workers", "1")
    assert p.returncode == 0, p.stderr
    assert "warning:" not in p.stderr and "error:" not in p.stderr
    assert (tmp_path / "o" / "report.json").is_file()


@pytest.mark.keras
def test_delta_tune_gives_the_same_data_warning(masked, tmp_path):
    """The commands that read data themselves (delta-tune here; delta-train and train-predictor the same
    way, through pipeline.load_data) pass its warnings on, once per file."""
    from rnnskip.delta.cli import run_delta_tune
    lines = []
    pre = str(masked["rows"]["pre"][0])
    run_delta_tune(str(masked["path"]), pre, 50.0, str(tmp_path / "d.json"), calib=pre,
                   log=lambda s: None, warn=lines.append)
    assert lines[0] == _mask_warning(masked["kind"], "--val", "pre.npz")
    assert sum("contradict the model's" in line for line in lines) == 1   # once, though --calib is the same file
