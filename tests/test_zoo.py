"""The model corpus of tests/zoo_models.py -- every Keras generation's files
convert bit-exact (float reference = Keras to 1e-5; golden = host build = emulated
Cortex-M4 firmware) or are refused with their one-line reason; ``rnnskip inspect``
agrees on every file; docs/support_matrix.md is generated from these results.

Regenerate the matrix with ``RNNSKIP_WRITE_SUPPORT_MATRIX=1 pytest tests/test_zoo.py``
(or ``tools/support_matrix.py``).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import zoo_models
from helpers import HAVE_ARM

IDS = [f"{c.name}-{g}-{fmt}" for c in zoo_models.CASES for g in c.gens for fmt in zoo_models.FORMATS[g]]
pytestmark = pytest.mark.keras


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    pytest.importorskip("keras")
    if not HAVE_ARM:
        pytest.skip("arm-none-eabi-gcc not installed (run 'make setup')")
    d = tmp_path_factory.mktemp("corpus")
    files = zoo_models.build_corpus(d / "models")
    results = zoo_models.run_corpus(files, d / "work")
    return {r.file.id: r for r in results}


def test_corpus_covers_every_generation_format_and_version(corpus):
    assert sorted(corpus) == sorted(IDS)
    ok = [r for r in corpus.values() if r.status == "bit-exact"]
    assert len(corpus) >= 30 and len(ok) >= 30
    gens = {r.file.gen for r in ok}
    assert gens == {"k2", "k3", "legacy"}
    versions = {r.keras_version for r in ok if r.file.gen == "legacy"}
    assert {"2.0.8", "2.1.2", "2.2.4", "2.2.4-tf", "2.3.0-tf", "2.3.1"} <= versions
    assert {(r.file.gen, r.file.fmt) for r in ok} == {("k2", "h5"), ("k2", "keras"), ("k3", "keras"),
                                                    ("k3", "h5"), ("legacy", "h5")}


@pytest.mark.parametrize("fid", IDS)
def test_file_converts_bitexact_or_is_refused(corpus, fid):
    r = corpus[fid]
    case = r.file.case
    if case.refused:
        assert r.status == "refused", (r.status, r.reason)
        assert r.reason and "\n" not in r.reason
        for w in case.refused:
            assert w in r.reason, (w, r.reason)
        return
    assert r.status == "bit-exact", r.reason
    assert r.float_err <= 1e-5, f"float reference vs Keras: {r.float_err}"
    assert r.host_mismatches == 0 and r.device_mismatches == 0
    assert r.device_checked == zoo_models.N


@pytest.mark.parametrize("fid", IDS)
def test_inspect_agrees(corpus, fid):
    r = corpus[fid]
    assert r.inspect_converts is (r.status == "bit-exact"), r.inspect_blocker
    if r.status == "refused":
        assert r.inspect_blocker == r.reason


def test_int8_error_is_bounded(corpus):
    """int8 vs float on the corpus: regression errors small against the outputs' range (absolute for outputs within
    +-1, relative to the largest |output| beyond: a model whose outputs reach -5 rounds its weights to 0.03 RMSE),
    classifiers agree with the float model on these tiny random models."""
    for r in corpus.values():
        e = r.int8_error
        if not e:
            continue
        if "int8_vs_float_max_abs" in e:
            scale = max(1.0, float(np.abs(r.file.y_keras).max()))
            assert e["int8_vs_float_max_abs"] < 0.06 * scale, (r.file.id, e, scale)
            assert e["int8_vs_float_rmse"] < 0.03 * scale, (r.file.id, e, scale)
        else:
            assert e["int8_acc"] >= e["float_acc"] - 0.2, (r.file.id, e)


def test_hard_sigmoid_follows_the_generation(tmp_path):
    """The same GRU file content read as Keras 2 and as Keras 3: different semantics."""
    import h5py

    from rnnskip.converter.keras_import import load_model_file
    pytest.importorskip("tf_keras")
    files = zoo_models.build_corpus(tmp_path, gens=("k2",), names={"gru_v1_hard_sigmoid"})
    f = next(z for z in files if z.case.name == "gru_v1_hard_sigmoid" and z.fmt == "h5")
    ir2 = load_model_file(f.path)
    assert ir2.rnn_layers[0].recurrent_activation == "hard_sigmoid"
    with h5py.File(f.path, "r+") as h:
        h.attrs["keras_version"] = b"3.1.0"
    ir3 = load_model_file(f.path)
    assert ir3.rnn_layers[0].recurrent_activation == "hard_sigmoid_k3"
    assert any("Keras 3" in n for n in ir3.notes)


def test_support_matrix_is_generated_from_the_corpus(corpus):
    text = zoo_models.render_matrix([corpus[i] for i in IDS])
    if os.environ.get("RNNSKIP_WRITE_SUPPORT_MATRIX"):
        zoo_models.MATRIX_PATH.write_text(text)
    assert zoo_models.MATRIX_PATH.is_file(), "run tools/support_matrix.py"
    assert zoo_models.MATRIX_PATH.read_text() == text, \
        "docs/support_matrix.md is out of date: run .venv/bin/python tools/support_matrix.py"
