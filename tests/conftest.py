"""Shared fixtures.

``k2_zoo`` / ``k3_zoo`` (session-scoped): tiny random-weight Keras models of
every supported configuration, built once per Keras generation and saved in
both of its file formats, with Keras' own predictions (see keras_models.py).
``zoo`` runs a test once per generation. ``small_lstm`` (module-scoped): a small
feature LSTM, quantised, its C generated into a folder of its own per test module.

Markers and plain helpers the test modules import (``needs_arm``, ``quantized``,
``dataset`` ...) are in helpers.py.
"""
import keras_models
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "keras: builds Keras models (needs TensorFlow; slow-ish)")


def _zoo(gen, tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras" if gen == "k2" else "keras")
    return keras_models.build_zoo(gen, tmp_path_factory.mktemp(f"zoo_{gen}"))


@pytest.fixture(scope="session")
def k2_zoo(tmp_path_factory):
    return _zoo("k2", tmp_path_factory)


@pytest.fixture(scope="session")
def k3_zoo(tmp_path_factory):
    return _zoo("k3", tmp_path_factory)


@pytest.fixture(scope="session", params=["k2", "k3"])
def zoo(request):
    return request.getfixturevalue(f"{request.param}_zoo")


@pytest.fixture(scope="module")
def small_lstm(tmp_path_factory):
    """(ir, qm, Dataset, folder holding src/): 3 sequences of up to 8 steps."""
    from helpers import dataset, quantized

    from rnnskip.generate import generate
    d = tmp_path_factory.mktemp("small-lstm")
    ir, qm, x, L = quantized("feat-lstm-lstm", seed=0, n=3, T=8)
    generate(qm, d / "src", max_t=x.shape[1])
    return ir, qm, dataset(x, L), d
