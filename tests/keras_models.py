"""Build, randomize and save tiny Keras models of every supported (and a few
refused) configuration, with both Keras generations:

* ``"k2"``: Keras 2 via ``import tf_keras`` -> ``.h5`` and ``.keras``
* ``"k3"``: Keras 3 via ``import keras``   -> ``.keras`` and legacy ``.h5``

``TF_USE_LEGACY_KERAS`` is not touched: ``import tf_keras`` gives Keras 2 and
``import keras`` gives Keras 3 either way.

Usage (tests get this through session fixtures in conftest.py)::

    zoo = build_zoo("k3", tmpdir)
    e = zoo.models["emb_lstm_softmax"]      # Entry: files {fmt: path}, X, y
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

T = 7          # time steps of the test data
N = 6          # sequences of the test data
VOCAB = 13
FEATURES = 3

FORMATS = {"k2": ("h5", "keras"), "k3": ("keras", "h5")}


def keras_module(gen: str):
    if gen == "k2":
        import tf_keras as keras
    elif gen == "k3":
        import keras
    else:
        raise ValueError(gen)
    return keras


@dataclass
class Spec:
    """A model configuration: its layers after the input, and the input."""
    layers: Callable  # (k) -> list of layers
    tokens: bool = False
    functional: bool = False
    mask_value: Optional[float] = None   # rows get masked steps in the data
    # what the IR must say (checked by test_import)
    expect: dict = field(default_factory=dict)


def _L(k):
    return k.layers


SPECS: Dict[str, Spec] = {
    "emb_lstm_softmax": Spec(
        lambda k: [_L(k).Embedding(VOCAB, 6, mask_zero=True), _L(k).LSTM(8),
                   _L(k).Dense(4, activation="softmax")],
        tokens=True,
        expect=dict(kinds=["lstm"], units=[8], mask_zero=True, head=["softmax"])),
    "emb_gru_ra_sigmoid": Spec(
        lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).GRU(7, reset_after=True),
                   _L(k).Dense(1, activation="sigmoid")],
        tokens=True, functional=True,
        expect=dict(kinds=["gru"], units=[7], reset_after=[True], mask_zero=True,
                    head=["sigmoid"])),
    "emb_gru_rb_sigmoid": Spec(
        lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).GRU(6, reset_after=False),
                   _L(k).Dense(1, activation="sigmoid")],
        tokens=True,
        expect=dict(kinds=["gru"], units=[6], reset_after=[False], mask_zero=True,
                    head=["sigmoid"])),
    "feat_lstm": Spec(
        lambda k: [_L(k).LSTM(6), _L(k).Dense(2)],
        functional=True,
        expect=dict(kinds=["lstm"], units=[6], mask_value=None, head=["linear"])),
    "feat_mask_gru": Spec(
        lambda k: [_L(k).Masking(0.0), _L(k).GRU(5), _L(k).Dense(3, activation="softmax")],
        functional=True, mask_value=0.0,
        expect=dict(kinds=["gru"], units=[5], mask_value=0.0, head=["softmax"])),
    "feat_mask_gru_01": Spec(   # a mask value float32 cannot hold: Keras compares in float32
        lambda k: [_L(k).Masking(0.1), _L(k).GRU(5), _L(k).Dense(3, activation="softmax")],
        mask_value=0.1,
        expect=dict(kinds=["gru"], units=[5], mask_value=float(np.float32(0.1)), head=["softmax"])),
    "feat_mask_lstm_m1": Spec(
        lambda k: [_L(k).Masking(-1.0), _L(k).LSTM(5), _L(k).Dense(2, activation="softmax")],
        mask_value=-1.0,
        expect=dict(kinds=["lstm"], units=[5], mask_value=-1.0, head=["softmax"])),
    "feat_td_lstm": Spec(
        lambda k: [_L(k).TimeDistributed(_L(k).Dense(4, activation="relu")), _L(k).LSTM(5),
                   _L(k).Dense(1, activation="sigmoid")],
        functional=True,
        expect=dict(kinds=["lstm"], units=[5], in_dense=(3, 4, "relu"), head=["sigmoid"])),
    "feat_mask_dense3d_gru": Spec(
        lambda k: [_L(k).Masking(0.0), _L(k).Dense(4, activation="tanh"),
                   _L(k).GRU(6, reset_after=False), _L(k).Dense(2, activation="softmax")],
        mask_value=0.0,
        expect=dict(kinds=["gru"], units=[6], reset_after=[False], mask_value=0.0,
                    in_dense=(3, 4, "tanh"), head=["softmax"])),
    "stack_lstm": Spec(
        lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True),
                   # names that collide with .keras storage keys (lstm, lstm_1) in
                   # the opposite order: weights must be found by layer, not key
                   _L(k).LSTM(6, return_sequences=True, name="lstm_1"),
                   _L(k).LSTM(5, name="lstm"), _L(k).Dense(3, activation="softmax")],
        tokens=True,
        expect=dict(kinds=["lstm", "lstm"], units=[6, 5], return_sequences=[True, False],
                    head=["softmax"])),
    "stack_gru": Spec(
        lambda k: [_L(k).Masking(0.0), _L(k).GRU(6, return_sequences=True), _L(k).GRU(5),
                   _L(k).Dense(2)],
        functional=True, mask_value=0.0,
        expect=dict(kinds=["gru", "gru"], units=[6, 5], return_sequences=[True, False],
                    reset_after=[True, True], head=["linear"])),
    "head_dense2": Spec(
        lambda k: [_L(k).LSTM(6), _L(k).Dense(8, activation="relu", name="hidden"),
                   _L(k).Dense(3, activation="softmax", name="out")],
        expect=dict(kinds=["lstm"], units=[6], head=["relu", "softmax"])),
    "dropout": Spec(
        lambda k: [_L(k).Embedding(VOCAB, 6, mask_zero=True), _L(k).SpatialDropout1D(0.2),
                   _L(k).LSTM(6, dropout=0.2, recurrent_dropout=0.1), _L(k).Dropout(0.3),
                   _L(k).GaussianNoise(0.1), _L(k).Dense(3, activation="softmax")],
        tokens=True,
        expect=dict(kinds=["lstm"], units=[6], head=["softmax"], notes=4)),
    "no_bias": Spec(
        lambda k: [_L(k).GRU(5, use_bias=False), _L(k).Dense(2, use_bias=False,
                                                             activation="sigmoid")],
        functional=True,
        expect=dict(kinds=["gru"], units=[5], head=["sigmoid"])),
    "rnn_only": Spec(
        lambda k: [_L(k).LSTM(4, use_bias=False)],
        expect=dict(kinds=["lstm"], units=[4], head=[])),
    "activation_layer": Spec(
        lambda k: [_L(k).GRU(5), _L(k).Dense(3), _L(k).Activation("softmax")],
        expect=dict(kinds=["gru"], units=[5], head=["softmax"])),
    "softmax_layer": Spec(
        lambda k: [_L(k).GRU(5), _L(k).Dense(3), _L(k).Softmax()],
        expect=dict(kinds=["gru"], units=[5], head=["softmax"])),
    # no time axis left after the last state: Flatten is the identity (it was refused)
    "flatten_last_state": Spec(
        lambda k: [_L(k).Masking(0.0), _L(k).GRU(5), _L(k).Flatten(), _L(k).Dense(3, activation="softmax")],
        mask_value=0.0,
        expect=dict(kinds=["gru"], units=[5], head=["softmax"], notes=1)),
    "td_dropout": Spec(
        lambda k: [_L(k).TimeDistributed(_L(k).Dropout(0.3)), _L(k).LSTM(5), _L(k).Dense(2)],
        functional=True,
        expect=dict(kinds=["lstm"], units=[5], head=["linear"], notes=1)),
}


def _custom_layer(k):
    class TimesTwo(k.layers.Layer):
        def call(self, x):
            return x * 2.0
    return TimesTwo(name="times_two")


# Refused configurations: name -> (layers(k), tokens, expected words in the error)
REFUSED = {
    # (two Bidirectional layers were refused here, and one after a Conv1D front end; they convert now:
    # tests/zoo_models.py BIDI_STACK_CASES and the frontend_*bidi* cases)
    "conv1d": (lambda k: [_L(k).Conv1D(4, 3, strides=2, padding="same"), _L(k).LSTM(4), _L(k).Dense(2)],
               ["'conv1d'", "(Conv1D)", "padding='same'", "strides=2"]),
    "stateful": (lambda k: [_L(k).LSTM(4, stateful=True), _L(k).Dense(2)],
                 ["'lstm'", "(LSTM)", "stateful"]),
    "custom": (lambda k: [_custom_layer(k), _L(k).LSTM(4), _L(k).Dense(2)],
               ["'times_two'", "TimesTwo", "not supported"]),
    "go_backwards": (lambda k: [_L(k).GRU(4, go_backwards=True), _L(k).Dense(2)],
                     ["'gru'", "(GRU)", "go_backwards"]),
    "flattened_sequences": (lambda k: [_L(k).LSTM(4, return_sequences=True),
                                       _L(k).Flatten(name="flat")],
                            ["'flat'", "(Flatten)", "no fixed number of steps"]),
    "elu_lstm": (lambda k: [_L(k).LSTM(4, activation="elu"), _L(k).Dense(2)],
                 ["'lstm'", "(LSTM)", "elu"]),
    # a LayerNormalization folds into the head's Dense after it (tests/test_layer_norm.py, the corpus), not the input
    "layer_norm": (lambda k: [_L(k).LayerNormalization(), _L(k).SimpleRNN(4), _L(k).Dense(2)],
                   ["'layer_normalization'", "(LayerNormalization) is on the model's input",
                    "into the head's Dense layer right after it"]),
    # each Masking masks by its own input, zeroed by the one before: an audit found the first one ignored
    "double_masking": (lambda k: [_L(k).Masking(-2.5, name="mask_a"), _L(k).Masking(0.0, name="mask_b"),
                                  _L(k).LSTM(4), _L(k).Dense(2)],
                       ["'mask_b'", "(Masking)", "follows another Masking layer", "keep one Masking layer"]),
    # a per-step Dense between recurrent layers was refused as if it were the head; it runs at every step now,
    # with any activation the recurrent layers have, which softmax is not
    "dense_between": (lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Dense(5, activation="softmax",
                                                                                  name="mid"),
                                 _L(k).GRU(4, name="gru"), _L(k).Dense(2)],
                      ["'mid'", "(Dense)", "activation='softmax'", "rnnskip supports tanh, sigmoid"]),
}


def _input(k, tokens: bool, batch: Optional[int] = None):
    if tokens:
        shape, dtype = (None,), "int32"
    else:
        shape, dtype = (None, FEATURES), "float32"
    if batch is not None:
        return k.Input(batch_shape=(batch,) + shape, dtype=dtype)
    return k.Input(shape=shape, dtype=dtype)


def build(k, layers: List, tokens: bool, functional: bool, batch: Optional[int] = None):
    if functional:
        inp = _input(k, tokens, batch)
        x = inp
        for layer in layers:
            x = layer(x)
        return k.Model(inp, x)
    return k.Sequential([_input(k, tokens, batch)] + layers)


def randomize(model, rng, scale: float = 0.6):
    """Random non-zero values for every weight, biases included."""
    model.set_weights([rng.normal(0.0, scale, w.shape).astype(np.float32)
                       for w in model.get_weights()])


def sample_data(spec: Spec, rng) -> np.ndarray:
    if spec.tokens:
        X = rng.integers(1, VOCAB, size=(N, T))
        X[0, 5:] = 0        # post-padding
        X[1, :3] = 0        # pre-padding
        X[2, [2, 4]] = 0    # holes
        X[3, :] = 0         # all padding
        return X.astype(np.int32)
    X = rng.normal(0.0, 1.0, size=(N, T, FEATURES)).astype(np.float32)
    if spec.mask_value is not None:
        X[0, 4:] = spec.mask_value
        X[1, :2] = spec.mask_value
        X[2, 3] = spec.mask_value
        X[4, 1, 0] = spec.mask_value   # only one feature equal: not masked
    return X


@dataclass
class Entry:
    name: str
    gen: str
    files: Dict[str, str]
    X: np.ndarray
    y: np.ndarray
    spec: Spec


@dataclass
class Zoo:
    gen: str
    keras_version: str
    models: Dict[str, Entry]
    refused: Dict[str, Dict[str, str]]   # name -> {fmt: path}


def _save(model, base: str, gen: str) -> Dict[str, str]:
    files = {}
    for fmt in FORMATS[gen]:
        path = f"{base}.{fmt}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save(path)
        files[fmt] = path
    return files


def build_zoo(gen: str, outdir, names=None, refused=True, seed: int = 1234) -> Zoo:
    import logging
    logging.getLogger("absl").setLevel(logging.ERROR)
    k = keras_module(gen)
    try:
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
    except Exception:  # pragma: no cover
        pass
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    models = {}
    for i, name in enumerate(names or SPECS):
        spec = SPECS[name]
        rng = np.random.default_rng(seed + i)
        model = build(k, spec.layers(k), spec.tokens, spec.functional)
        randomize(model, rng)
        X = sample_data(spec, rng)
        y = np.asarray(model.predict(X, verbose=0), np.float64)
        files = _save(model, os.path.join(outdir, f"{gen}_{name}"), gen)
        models[name] = Entry(name, gen, files, X, y, spec)
        k.backend.clear_session()
    bad = {}
    if refused:
        for name, (layers, _words) in REFUSED.items():
            batch = 2 if name == "stateful" else None
            model = build(k, layers(k), False, False, batch=batch)
            bad[name] = _save(model, os.path.join(outdir, f"{gen}_refused_{name}"), gen)
            k.backend.clear_session()
    return Zoo(gen, k.__version__, models, bad)
