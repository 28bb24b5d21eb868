"""Padding as Keras runs it (issue 19, part 1): token rows padded by Keras' own
``pad_sequences`` (``padding='post'`` and the default ``'pre'``), given to rnnskip
without ``lengths``. With ``Embedding(mask_zero=True)`` id 0 is skipped wherever it
is; without it every step runs, trailing zeros included. Expected outputs are Keras'
``predict`` on the same padded arrays (float reference to 1e-5), and the int8 golden
model equals the host C build on them, step flags included."""
from __future__ import annotations

import copy
import warnings

import keras_models as km
import numpy as np
import pytest
from helpers import quantize_on

from rnnskip import pipeline
from rnnskip.converter.keras_import import load_model_file
from rnnskip.datasets import infer_lengths, load_npz
from rnnskip.generate import generate
from rnnskip.reference import FloatModel

pytestmark = pytest.mark.keras

T = 9
N = 12
VOCAB = 17
CELL = {"k2": "LSTM", "k3": "GRU"}   # both cells, one per generation


def _sequences(rng):
    """Ragged id lists of 1..T tokens, first and last id non-zero, an id 0 inside some."""
    seqs = []
    for i in range(N):
        s = rng.integers(1, VOCAB, size=int(rng.integers(1, T + 1)))
        if len(s) > 2 and i % 3 == 0:
            s[len(s) // 2] = 0
        seqs.append(s.tolist())
    seqs[0] = rng.integers(1, VOCAB, size=T).tolist()   # one full row: no padding at all
    return seqs


@pytest.fixture(scope="module", params=[(g, m) for g in ("k2", "k3") for m in (False, True)],
                ids=lambda p: f"{p[0]}-{'mask_zero' if p[1] else 'no_mask'}")
def model(request, tmp_path_factory):
    gen, mask_zero = request.param
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras" if gen == "k2" else "keras")
    k = km.keras_module(gen)
    rng = np.random.default_rng(19 + 2 * mask_zero + (gen == "k3"))
    m = km.build(k, [k.layers.Embedding(VOCAB, 5, mask_zero=mask_zero), getattr(k.layers, CELL[gen])(6),
                     k.layers.Dense(3, activation="softmax")], tokens=True, functional=False)
    km.randomize(m, rng)
    seqs = _sequences(rng)
    d = tmp_path_factory.mktemp(f"pad-{gen}-{mask_zero}")
    path = str(d / ("model.h5" if gen == "k2" else "model.keras"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tf_keras: .h5 is "legacy", still what many published models are
        m.save(path)
    rows = {}
    for padding in ("post", "pre"):
        X = np.asarray(k.utils.pad_sequences(seqs, maxlen=T, padding=padding, value=0), np.int32)
        rows[padding] = (X, np.asarray(m.predict(X, verbose=0), np.float64))
    k.backend.clear_session()
    return {"gen": gen, "mask_zero": mask_zero, "path": path, "seqs": seqs, "rows": rows, "dir": d}


def _load(model, padding):
    """The padded rows written as a user would (x, y, no lengths) and read back."""
    X, y_keras = model["rows"][padding]
    p = model["dir"] / f"{padding}.npz"
    np.savez(p, x=X, y=np.argmax(y_keras, 1))
    ir = load_model_file(model["path"])
    return ir, load_npz(str(p), ir), y_keras


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_float_reference_equals_keras_predict(model, padding):
    ir, ds, y_keras = _load(model, padding)
    assert ir.input.mask_zero is model["mask_zero"]
    X = model["rows"][padding][0]
    np.testing.assert_array_equal(ds.x, X)   # rows are never moved
    if model["mask_zero"]:
        assert ds.padding == "mask_zero: id-0 steps skipped"
        want = [len(s) for s in model["seqs"]] if padding == "post" else [T] * N
    else:
        assert ds.padding == "no mask: every step run"
        want = [T] * N
    np.testing.assert_array_equal(ds.lengths, want)
    y = FloatModel(ir).predict(ds.x, ds.lengths)
    np.testing.assert_allclose(y, y_keras, rtol=0, atol=1e-5)


def test_the_padding_changes_the_answer(model):
    """The rows really exercise the rule: the other reading of id 0 disagrees with Keras."""
    ir = load_model_file(model["path"])
    X, y_keras = model["rows"]["post"]
    if model["mask_zero"]:
        other = copy.deepcopy(ir)
        other.input.mask_zero = False
        y = FloatModel(other).predict(X)
    else:   # the rule before issue 19: a row ends at its last non-zero id
        y = FloatModel(ir).predict(X, infer_lengths(X, mask_zero=True))
    assert np.abs(y - y_keras).max() > 1e-2


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_golden_equals_host_build(model, padding, tmp_path):
    ir, ds, _ = _load(model, padding)
    qm = quantize_on(ir, ds.x, ds.lengths)
    generate(qm, tmp_path / "src", max_t=T)
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    ev = pipeline.evaluate(ir, qm, ds, host_so=so)
    assert ev.host_checked == N
    assert ev.host_mismatches == 0, ev.first_mismatch
    # the steps that ran (golden flags, which the host build's flags equal): id 0 only where masked
    X = model["rows"][padding][0]
    want = (X != 0).sum(1) if model["mask_zero"] else np.full(N, T)
    np.testing.assert_array_equal(ev.golden_steps, want)
    assert ev.padding == ds.padding


def test_report_says_which_rule_applied(model):
    from rnnskip import targets
    from rnnskip.report import build_report, table
    ir, ds, _ = _load(model, "post")
    qm = quantize_on(ir, ds.x, ds.lengths)
    rep = build_report(ir, qm, pipeline.evaluate(ir, qm, ds), targets.load("cortex-m4"), "portable", "dsp")
    rule = "mask_zero: id-0 steps skipped" if model["mask_zero"] else "no mask: every step run"
    assert rep["data"] == {"labels": True, "padding": rule}
    assert f"  padding               {rule}" in table(rep).splitlines()


@pytest.mark.parametrize("gen", ["k2", "k3"])
def test_per_step_accuracy_is_scored_on_the_steps_the_mask_keeps(gen, tmp_path):
    """A tagger behind Masking: Keras' evaluate weights its metric by the output mask, so masked steps (padding, holes)
    are not scored; rnnskip scored every step before the length (an earlier session noted it). Float accuracy equals
    Keras' evaluate, and the int8 golden model is scored on the same steps."""
    from zoo_models import keras_module

    from rnnskip import outputs
    from rnnskip.quant.golden import GoldenModel
    k = keras_module(gen)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = k.Sequential([k.Input((None, 3)), k.layers.Masking(0.0), k.layers.LSTM(4, return_sequences=True),
                          k.layers.TimeDistributed(k.layers.Dense(3, activation="softmax"))])
        m.set_weights([rng.normal(0, 0.7, w.shape).astype(np.float32) for w in m.get_weights()])
        m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        x = rng.normal(0, 1, (20, T, 3)).astype(np.float32)
        L = rng.integers(3, T + 1, 20)
        x[np.arange(T)[None, :] >= L[:, None]] = 0.0
        x[2, 1] = 0.0   # a hole
        y = rng.integers(0, 3, (20, T))
        keras_acc = m.evaluate(x, y, verbose=0)[1]
        m.save(str(tmp_path / "m.h5"))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ir = load_model_file(tmp_path / "m.h5")
    ds = load_npz(str(tmp_path / "d.npz"), ir)
    qm = quantize_on(ir, ds.x, ds.lengths)
    probs = FloatModel(ir).predict(ds.x, ds.lengths)
    g_out = GoldenModel(qm).run(ds.x, ds.lengths)[0]
    f_acc, q_acc, _ = outputs.score(ir, qm, ds, probs, g_out)
    valid = np.any(x != 0, axis=-1)
    assert valid.sum() < x.shape[0] * T and f_acc == pytest.approx(keras_acc, abs=1e-6)
    assert q_acc == pytest.approx(float((g_out.argmax(-1) == y)[valid].mean()))
