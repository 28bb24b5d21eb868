"""Float reference: equals Keras predict; the step API is self-consistent."""
import copy

import keras_models as km
import numpy as np
import pytest

from rnnskip.converter.ir import DenseLayer, EmbeddingInput, FeatureInput, ModelIR, RNNLayer
from rnnskip.converter.keras_import import load_model_file
from rnnskip.errors import RnnskipError
from rnnskip.reference import FloatModel, sigmoid

# --------------------------------------------------------------------------
# against Keras, both generations and both file formats of each


@pytest.mark.keras
@pytest.mark.parametrize("name", list(km.SPECS))
def test_matches_keras_predict(zoo, name):
    e = zoo.models[name]
    for fmt, path in e.files.items():
        fm = FloatModel(load_model_file(path))
        y = fm.predict(e.X)
        assert y.shape == e.y.shape, (zoo.gen, fmt)
        np.testing.assert_allclose(y, e.y, rtol=0, atol=1e-5, err_msg=f"{zoo.gen} {fmt} {name}")
        # the per-sequence path agrees with the batched one
        np.testing.assert_allclose(fm.run(e.X[2]), y[2], rtol=0, atol=1e-12)


@pytest.mark.keras
@pytest.mark.parametrize("name", ["emb_lstm_softmax", "feat_mask_gru", "stack_lstm",
                                  "feat_mask_dense3d_gru", "stack_gru"])
def test_masking_is_exercised(zoo, name):
    """The test data really has masked steps that change the answer."""
    e = zoo.models[name]
    ir = load_model_file(e.files["h5"])
    fm = FloatModel(ir)
    assert not fm.valid_steps(e.X).all()
    ir2 = copy.deepcopy(ir)
    if isinstance(ir2.input, EmbeddingInput):
        ir2.input.mask_zero = False
    else:
        ir2.input.mask_value = None
    y_nomask = FloatModel(ir2).predict(e.X)
    assert np.abs(y_nomask - e.y).max() > 1e-3


# --------------------------------------------------------------------------
# step API on hand-made IRs (no TensorFlow)


def _ir(kind="lstm", layers=1, tokens=True, reset_after=True, head=(3,), seed=0,
        mask_value=None, in_dense=False):
    rng = np.random.default_rng(seed)
    if tokens:
        inp = EmbeddingInput(table=rng.normal(0, 0.7, (11, 4)).astype(np.float32), mask_zero=True)
    else:
        dense = None
        if in_dense:
            dense = DenseLayer(rng.normal(0, .5, (3, 4)).astype(np.float32),
                               rng.normal(0, .3, 4).astype(np.float32), "relu", "td")
        inp = FeatureInput(features=3, dense=dense, mask_value=mask_value)
    rnns, d = [], inp.dim
    for i, U in enumerate([5, 4][:layers]):
        g = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
        bshape = (2, g * U) if kind == "gru" and reset_after else (g * U,)
        rnns.append(RNNLayer(kind, U, rng.normal(0, .6, (d, g * U)).astype(np.float32),
                             rng.normal(0, .6, (U, g * U)).astype(np.float32),
                             rng.normal(0, .4, bshape).astype(np.float32),
                             return_sequences=i < layers - 1,
                             options={"reset_after": reset_after} if kind == "gru" else {}, name=f"{kind}{i}"))
        d = U
    hd = []
    for j, n in enumerate(head):
        act = "softmax" if j == len(head) - 1 else "relu"
        hd.append(DenseLayer(rng.normal(0, .6, (d, n)).astype(np.float32),
                             rng.normal(0, .3, n).astype(np.float32), act, f"d{j}"))
        d = n
    return ModelIR(inp, rnns, hd)


def _lstm_step(r, h, c, x):
    """Textbook LSTM (Keras gate order i, f, c, o)."""
    W, U, b = (np.asarray(a, np.float64) for a in (r.kernel, r.recurrent_kernel, r.bias))
    n = r.units
    i = sigmoid(x @ W[:, :n] + h @ U[:, :n] + b[:n])
    f = sigmoid(x @ W[:, n:2*n] + h @ U[:, n:2*n] + b[n:2*n])
    g = np.tanh(x @ W[:, 2*n:3*n] + h @ U[:, 2*n:3*n] + b[2*n:3*n])
    o = sigmoid(x @ W[:, 3*n:] + h @ U[:, 3*n:] + b[3*n:])
    c = f * c + i * g
    return o * np.tanh(c), c


def _gru_step(r, h, x):
    """Textbook GRU (Keras gate order z, r, h)."""
    W, U, b = (np.asarray(a, np.float64) for a in (r.kernel, r.recurrent_kernel, r.bias))
    n = r.units
    Wz, Wr, Wh = W[:, :n], W[:, n:2*n], W[:, 2*n:]
    Uz, Ur, Uh = U[:, :n], U[:, n:2*n], U[:, 2*n:]
    if r.options["reset_after"]:
        bi, br = b[0], b[1]
        z = sigmoid(x @ Wz + bi[:n] + h @ Uz + br[:n])
        rr = sigmoid(x @ Wr + bi[n:2*n] + h @ Ur + br[n:2*n])
        hh = np.tanh(x @ Wh + bi[2*n:] + rr * (h @ Uh + br[2*n:]))
    else:
        z = sigmoid(x @ Wz + h @ Uz + b[:n])
        rr = sigmoid(x @ Wr + h @ Ur + b[n:2*n])
        hh = np.tanh(x @ Wh + (rr * h) @ Uh + b[2*n:])
    return z * h + (1 - z) * hh


def _rnn_step(r, h, x):
    """Textbook Elman RNN: h = tanh(x W + b + h U)."""
    return np.tanh(x @ np.asarray(r.kernel, np.float64) + np.asarray(r.bias, np.float64)
                   + h @ np.asarray(r.recurrent_kernel, np.float64))


@pytest.mark.parametrize("kind,reset_after", [("lstm", True), ("gru", True), ("gru", False), ("simple_rnn", True)])
def test_step_matches_textbook_cells(kind, reset_after):
    ir = _ir(kind, layers=2, reset_after=reset_after)
    fm = FloatModel(ir)
    rng = np.random.default_rng(1)
    state = fm.initial_state()
    mine = [tuple(np.zeros(r.units) for _ in range(2 if kind == "lstm" else 1))
            for r in ir.rnn_layers]
    for _ in range(4):
        x = rng.normal(size=ir.input_dim)
        state = fm.step(state, x)
        inp = x
        for i, r in enumerate(ir.rnn_layers):
            if kind == "lstm":
                mine[i] = _lstm_step(r, *mine[i], inp)
            elif kind == "gru":
                mine[i] = (_gru_step(r, mine[i][0], inp),)
            else:
                mine[i] = (_rnn_step(r, mine[i][0], inp),)
            inp = mine[i][0]
        for a, b in zip(state, mine):
            for u, v in zip(a, b):
                np.testing.assert_allclose(u, v, atol=1e-12)


def test_state_shapes_and_immutability():
    fm = FloatModel(_ir("lstm", layers=2))
    s0 = fm.initial_state()
    assert [len(s) for s in s0] == [2, 2] and s0[0][0].shape == (5,) and s0[1][1].shape == (4,)
    s1 = fm.step(s0, np.ones(4))
    assert not np.any(s0[0][0]) and np.any(s1[0][0])  # step returns a new state
    fm = FloatModel(_ir("gru", layers=1))
    assert [len(s) for s in fm.initial_state()] == [1]
    b = fm.initial_state(batch=3)
    assert b[0][0].shape == (3, 5)


def test_run_equals_manual_loop_and_masking_carries_state():
    fm = FloatModel(_ir("gru", layers=2))
    x = np.array([3, 0, 5, 7, 0, 0, 2])
    ok = fm.valid_steps(x)
    np.testing.assert_array_equal(ok, x != 0)
    v = fm.inputs(x)
    assert v.shape == (7, 4) and v.dtype == np.float64
    s = fm.initial_state()
    for t in range(len(x)):
        if ok[t]:
            s = fm.step(s, v[t])
    np.testing.assert_allclose(fm.run(x), fm.readout(s), atol=0)
    # Removing the masked steps changes nothing.
    np.testing.assert_allclose(fm.run(x), fm.run(x[x != 0]), atol=1e-15)
    trace = fm.hidden_trace(x)
    assert len(trace) == 7
    np.testing.assert_array_equal(trace[1][0][0], trace[0][0][0])   # masked step
    np.testing.assert_array_equal(trace[-1][1][0], s[1][0])


def test_length_and_batched_predict():
    fm = FloatModel(_ir("lstm", layers=2, tokens=False, head=(6, 3), in_dense=True, mask_value=0.0))
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 9, 3))
    X[1, 2] = 0.0
    lengths = [9, 4, 1, 0, 6]
    y = fm.predict(X, lengths)
    assert y.shape == (5, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    for n, L in enumerate(lengths):
        np.testing.assert_allclose(y[n], fm.run(X[n], L), atol=1e-12)
        np.testing.assert_allclose(y[n], fm.run(X[n][:L]) if L else fm.readout(fm.initial_state()),
                                   atol=1e-12)
    assert len(fm.hidden_trace(X[0], 4)) == 4
    # ragged list input
    ragged = [X[0], X[1][:4], X[4][:6]]
    np.testing.assert_allclose(fm.predict(ragged), y[[0, 1, 4]], atol=1e-12)


def test_readout_is_activation_of_logits():
    fm = FloatModel(_ir("gru", head=(6, 3)))
    s = fm.step(fm.initial_state(), np.ones(4))
    z = fm.logits(s)
    p = fm.readout(s)
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum())
    ir = _ir("gru", head=())
    fm = FloatModel(ir)
    s = fm.step(fm.initial_state(), np.ones(4))
    np.testing.assert_array_equal(fm.readout(s), s[-1][0])
    assert fm.predict(np.array([[1, 2, 3]])).shape == (1, ir.rnn_layers[-1].units)


def test_bad_inputs():
    fm = FloatModel(_ir("lstm"))
    with pytest.raises(RnnskipError, match="outside the embedding vocabulary"):
        fm.predict(np.array([[1, 11]]))
    fm = FloatModel(_ir("lstm", tokens=False))
    with pytest.raises(RnnskipError, match=r"\[T, 3\]"):
        fm.inputs(np.zeros((4, 5)))
