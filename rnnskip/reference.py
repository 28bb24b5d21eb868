"""Float reference of a :class:`~rnnskip.converter.ir.ModelIR`, step by step.

numpy, float64 internally; matches Keras ``model.predict`` (float32) to ~1e-6.

State is explicit so callers (time-step skipping, delta networks) can drive
the recurrence one step at a time::

    fm = FloatModel(ir)
    v = fm.inputs(x_seq)            # [T, D] vectors entering the 1st RNN layer
    ok = fm.valid_steps(x_seq)      # [T] False where Keras masks the step
    s = fm.initial_state()          # per layer its cell's state tuple, h first: LSTM (h, c), GRU (h,)
    for t in range(len(v)):
        if ok[t]:
            s = fm.step(s, v[t])    # all RNN layers, layer 2 eats layer 1's new h
    y = fm.readout(s)               # head output after its final activation

Every method also accepts a leading batch axis (``inputs`` of ``[N, T, ...]``,
``step`` on ``[N, D]`` with batched states), which :meth:`predict` uses.

Keras semantics reproduced: each recurrent layer is its cell kind's float step (the
formulas are in ``rnnskip/cells/<kind>.py``); a masked step leaves every layer's state
unchanged.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from rnnskip.cells import cell_of
from rnnskip.cells.base import NUMPY_OPS
from rnnskip.converter.ir import ConvLayer, EmbeddingInput, ModelIR, RNNLayer, runs_every_step
from rnnskip.converter.support import (
    FLOAT_ACTIVATIONS,
    TABLE_ACTIVATIONS,
    activation_kind,
    leaky_alpha,
    leaky_relu_fn,
)
from rnnskip.errors import RnnskipError

State = List[Tuple[np.ndarray, ...]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Numerically stable logistic.
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "softmax": softmax,
}
_ACTIVATIONS.update(FLOAT_ACTIVATIONS)  # hard_sigmoid (Keras 2), hard_sigmoid_k3, softsign, relu6


def activation(name: str):
    """The numpy function for a Keras activation name."""
    if activation_kind(name) == "leaky_relu":
        return leaky_relu_fn(leaky_alpha(name))
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise RnnskipError(
            f"activation '{name}' is not implemented in the float reference "
            f"(have: {', '.join(sorted(_ACTIVATIONS))})") from None


def layer_norm(x: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras LayerNormalization over the last axis without its gamma and beta: ``(x - mean) / sqrt(var + eps)``
    (the biased variance, as Keras' moments)."""
    x = np.asarray(x, np.float64)
    mu = x.mean(axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + epsilon)


class _Dense:
    def __init__(self, d):
        self.kernel = np.asarray(d.kernel, np.float64)
        self.bias = np.asarray(d.bias, np.float64)
        self.activation = d.activation
        self.act = activation(d.activation)
        self.norm_epsilon = getattr(d, "norm_epsilon", None)

    def pre(self, x):
        if self.norm_epsilon is not None:
            x = layer_norm(x, self.norm_epsilon)
        return x @ self.kernel + self.bias


class _RNN:
    """One recurrent layer: its cell kind's float step (``rnnskip/cells/``) on float64 weights."""

    def __init__(self, r: RNNLayer):
        self.cell = cell_of(r.kind)
        self.units = r.units
        self.w = {k: np.asarray(getattr(r, k), np.float64) for k in ("kernel", "recurrent_kernel", "bias")}
        self.acts = (activation(r.activation),
                     activation(r.recurrent_activation) if r.recurrent_activation else None)
        self.own_candidate = r.activation not in TABLE_ACTIVATIONS   # relu/linear
        self.input_norm = r.input_norm

    def input(self, x):
        """What the cell reads of the layer's input ``x``: ``x``, or its layer normalisation (``RNNLayer.input_norm``;
        gamma and beta are in the kernel and bias)."""
        return x if self.input_norm is None else layer_norm(x, self.input_norm)

    def track(self, d: dict, before, after, x, m: Optional[np.ndarray] = None) -> None:
        """Calibration, for the step from state ``before`` on input ``x`` to ``after``: raise ``d``'s entry of each
        float state part (the cell's ``float_state``) to its largest |value| after the step and, for a relu/linear
        cell, ``d["cand"]`` to the largest its candidate takes (``Cell.float_candidates``), over the rows ``m``
        (None: all)."""
        rows = (lambda v: np.asarray(v)) if m is None else (lambda v: np.asarray(v)[m])
        parts = list(zip(self.cell.float_state, after))
        x = self.input(x)
        cand = self.cell.float_candidates(self.w, self.acts, before, x) if self.own_candidate else None
        if cand is not None:
            parts.append(("cand", cand))
        if self.input_norm is not None:   # the normalised input's range: its int8 scale
            parts.append(("norm", x))
        for key, v in parts:
            v = rows(v)
            d[key] = max(d.get(key, 0.0), float(np.abs(v).max()) if v.size else 0.0)

    def zero_state(self, batch: Optional[int]):
        shape = (self.units,) if batch is None else (batch, self.units)
        return tuple(np.zeros(shape) for _ in self.cell.float_state)

    def initial(self, batch: Optional[int], prev: Optional[np.ndarray]):
        """The state before a row's first step; ``prev``: the layer before's output then (None: zeros)."""
        if prev is None:
            n = self.w["kernel"].shape[0]
            prev = np.zeros((n,) if batch is None else (batch, n))
        return self.cell.float_initial(NUMPY_OPS, self.w, self.acts, self.zero_state(batch), prev)

    def step(self, st, x):
        return self.cell.float_step(NUMPY_OPS, self.w, self.acts, st, self.input(x))


def front_layer(f, x: np.ndarray) -> np.ndarray:
    """One front-end layer (Conv1D or pooling) over whole sequences ``[..., T, C]``, as Keras runs it:
    zero padding (valid: none; causal: window-1 before; same: split as Keras splits it for stride 1), or
    frames of ``f.pad`` where a normalisation folded into the kernel (the input it maps to zeros)."""
    x = np.asarray(x, np.float64)
    pad = [(0, 0)] * x.ndim
    pad[-2] = (f.left, f.right)
    xp = np.pad(x, pad)
    if getattr(f, "pad", None) is not None:
        xp[..., : f.left, :] = f.pad
        xp[..., xp.shape[-2] - f.right:, :] = f.pad
    n = 0 if xp.shape[-2] < f.window else (xp.shape[-2] - f.window) // f.strides + 1
    starts = np.arange(n) * f.strides
    if isinstance(f, ConvLayer):
        y = np.zeros(x.shape[:-2] + (n, f.out_dim)) + np.asarray(f.bias, np.float64)
        for tap in range(f.taps):
            y = y + f.tap_outputs(xp[..., starts + tap * f.dilation, :], tap)
        return activation(f.activation)(y)
    win = np.stack([xp[..., starts + i, :] for i in range(f.window)], axis=-1)   # [..., n, C, window]
    return win.max(axis=-1) if f.kind == "max" else win.mean(axis=-1)


def merge(mode: str, f: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Keras ``Bidirectional``'s merge of the forward and backward outputs."""
    if mode == "concat":
        return np.concatenate([f, b], axis=-1)
    return {"sum": f + b, "ave": (f + b) / 2, "mul": f * b}[mode]


def pool_over_time(kind: str, seq: np.ndarray, counted: np.ndarray, fed: np.ndarray) -> np.ndarray:
    """Keras' GlobalAveragePooling1D / GlobalMaxPooling1D of the last recurrent layer's outputs ``seq``
    ``[N, T, D]`` as Keras gives them (a masked step repeats the output before it, zeros before the first
    step that ran; a Bidirectional layer's are zeros). ``avg``: the mean over the steps the mask keeps,
    ``counted`` ``[N, T]`` (0 where none is: Keras divides 0 by 0 there); ``max``: the maximum over every step
    of the row, ``fed`` (the layer ignores the mask). Several kinds (``avg,max``: a Concatenate of the poolings)
    give their vectors side by side, in that order. ``flatten`` (Keras' Flatten over time): every step's output side
    by side, ``[N, T * D]`` (a model that flattens runs every step: it has no mask)."""
    seq = np.asarray(seq, np.float64)
    if kind == "flatten":
        return seq.reshape(len(seq), -1)
    if "," in kind:
        return np.concatenate([pool_over_time(k, seq, counted, fed) for k in kind.split(",")], axis=-1)
    if kind == "avg":
        c = np.asarray(counted, bool)
        n = c.sum(axis=1)[:, None]
        return np.where(n > 0, (seq * c[..., None]).sum(axis=1) / np.maximum(n, 1), 0.0)
    f = np.asarray(fed, bool)
    m = np.where(f[..., None], seq, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(np.isfinite(m), m, 0.0)


def check_flatten_steps(ir, steps: int, where: str = "the data") -> None:
    """A model that flattens the time axis reads exactly its declared number of steps: a one-line error for
    sequences of another length."""
    if ir.pool == "flatten" and steps != ir.pool_steps:
        raise RnnskipError(f"model '{ir.name}' flattens the outputs of exactly {ir.pool_steps} steps (its layer "
                           f"'{ir.pool_name}'), but {where} has {steps} steps per sequence; give sequences of "
                           f"{ir.pool_steps} steps")


class FloatModel:
    """Float64 numpy evaluation of a ModelIR with explicit recurrent state."""

    def __init__(self, ir: ModelIR):
        self.ir = ir
        self.is_token_model = isinstance(ir.input, EmbeddingInput)
        if self.is_token_model:
            self.table = np.asarray(ir.input.table, np.float64)
            self.mask_zero = bool(ir.input.mask_zero)
            self.in_dense = None
            self.mask_value = None
        else:
            self.table = None
            self.mask_zero = False
            self.in_dense = _Dense(ir.input.dense) if ir.input.dense is not None else None
            self.mask_value = ir.input.mask_value
            self.features = int(ir.input.features)
        # a Conv1D / pooling front end: the recurrent layers run on its frames, not the input's steps
        self.front = [] if self.is_token_model else list(ir.input.front)
        self.layers = [_RNN(r) for r in ir.rnn_layers]
        self.head = [_Dense(d) for d in ir.head]
        # a Bidirectional layer: its backward direction runs over whole windows (``windows``)
        self.bidi = ir.bidirectional
        self.backward = {i: _RNN(r.backward) for i, r in enumerate(ir.rnn_layers) if r.backward is not None}

    # ---- per-step input -------------------------------------------------
    def _ids(self, x):
        ids = np.asarray(x)
        if ids.dtype.kind == "f":
            if not np.all(ids == np.round(ids)):
                raise RnnskipError("token model input must be integer ids")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.table.shape[0]):
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise RnnskipError(
                f"token id {int(bad)} is outside the embedding vocabulary "
                f"0..{self.table.shape[0] - 1}")
        return ids

    def _features(self, x):
        x = np.asarray(x, np.float64)
        if x.ndim < 2 or x.shape[-1] != self.features:
            raise RnnskipError(
                f"feature input must be [T, {self.features}] (or [N, T, {self.features}]); "
                f"got shape {x.shape}")
        return x

    def inputs(self, x_seq) -> np.ndarray:
        """Vectors entering the first RNN layer: ``[T, D]`` (or ``[N, T, D]``)."""
        if self.is_token_model:
            return self.table[self._ids(x_seq)]
        x = self._features(x_seq)
        if self.in_dense is not None:
            x = self.in_dense.act(self.in_dense.pre(x))
        for f in self.front:
            x = front_layer(f, x)
        return x

    def front_outputs(self, x_seq) -> list:
        """Every front-end layer's output over whole sequences ``[..., T', C]`` (calibration)."""
        x, out = self._features(x_seq), []
        for f in self.front:
            x = front_layer(f, x)
            out.append(x)
        return out

    def valid_steps(self, x_seq) -> np.ndarray:
        """bool ``[T]`` (or ``[N, T]``): False where Keras masks the step (input steps; with a front end
        all of them, and :meth:`frames_ok` says which of its frames run)."""
        if self.is_token_model:
            ids = self._ids(x_seq)
            if self.mask_zero:
                return ids != 0
            return np.ones(ids.shape, bool)
        x = self._features(x_seq)
        if self.front:   # every input step goes into the front end (no masking with a front end)
            return np.ones(x.shape[:-1], bool)
        if self.mask_value is not None:   # Keras compares in float32 (the input's dtype)
            return np.any(x.astype(np.float32) != np.float32(self.mask_value), axis=-1)
        return np.ones(x.shape[:-1], bool)

    def frames_ok(self, x_seq, v: np.ndarray) -> np.ndarray:
        """bool ``[T']`` (or ``[N, T']``) for the vectors ``v = inputs(x_seq)``: the recurrent steps that run
        (with a front end every frame it emitted, else the valid steps)."""
        return np.ones(v.shape[:-1], bool) if self.front else self.valid_steps(x_seq)

    def frames(self, X, lengths=None):
        """(vectors ``[N, T', D]`` entering the first recurrent layer, bool ``[N, T']`` where they run) for
        sequences ``X`` of ``lengths`` input steps. With a front end, each row's frames are those Keras
        computes on its first ``length`` steps (zero-padded to the longest row; T' <= T)."""
        X = np.asarray(X)
        N, T = X.shape[:2]
        L = np.full(N, T) if lengths is None else np.asarray(lengths).reshape(-1)
        if not self.front:
            return self.inputs(X), self.valid_steps(X) & (np.arange(T)[None, :] < L[:, None])
        rows = [self.inputs(X[n, : int(L[n])]) for n in range(N)]
        Tf = max([len(v) for v in rows], default=0)
        V = np.zeros((N, Tf, int(self.ir.input_dim)))
        ok = np.zeros((N, Tf), bool)
        for n, v in enumerate(rows):
            V[n, : len(v)] = v
            ok[n, : len(v)] = True
        return V, ok

    # ---- recurrence ----------------------------------------------------
    def initial_state(self, batch: Optional[int] = None) -> State:
        """The state before a row's first step, one tuple per RNN layer (its cell's ``float_state``, h first): zeros,
        but for a per-step Dense its output on the layer before's (``Cell.float_initial``; a Bidirectional layer's
        merged output is zeros). ``batch`` adds a leading batch axis."""
        out: State = []
        for i, l in enumerate(self.layers):
            prev = out[-1][0] if i and (i - 1) not in self.backward else None
            out.append(l.initial(batch, prev))
        return out

    def layer_step(self, index: int, layer_state, x) -> tuple:
        """One step of RNN layer ``index`` alone (input ``x``)."""
        return self.layers[index].step(layer_state, np.asarray(x, np.float64))

    def _no_bidi(self):
        if self.bidi is not None:
            raise RnnskipError(f"layer '{self.ir.rnn_layers[self.bidi].name}' is Bidirectional: its backward direction "
                               "runs over whole windows, so the step-by-step float model does not apply "
                               "(docs/bidirectional.md)")

    def step(self, state: State, v_t, track: Optional[List[dict]] = None) -> State:
        """One time step through all RNN layers; returns a new state list. ``track``: per layer a dict of the
        ranges calibration keeps (``_RNN.track``), updated in place."""
        self._no_bidi()
        x = np.asarray(v_t, np.float64)
        new = []
        for j, (layer, st) in enumerate(zip(self.layers, state)):
            after = layer.step(st, x)
            if track is not None:
                layer.track(track[j], st, after, x)
            new.append(after)
            x = after[0]
        return new

    @staticmethod
    def last_h(state: State) -> np.ndarray:
        return state[-1][0]

    def windows(self, V: np.ndarray, ok: np.ndarray, track: Optional[List[dict]] = None,
                sequence: bool = False) -> np.ndarray:
        """The head's input ``[N, D]`` for whole windows ``V`` ``[N, T, D]`` whose steps ``ok`` run, layer by layer
        as Keras runs them: a Bidirectional layer's backward direction over the valid steps in reverse, its outputs
        re-aligned to time order and merged (zeros at the steps that did not run, as Keras writes them).
        ``sequence``: the last layer's outputs at every step ``[N, T, D]`` instead. ``track``: per direction of
        every layer in order (a Bidirectional's forward then backward) a dict of the ranges calibration keeps over
        the steps that ran (``_RNN.track``), updated in place."""
        ok = np.asarray(ok, bool)
        N, T = ok.shape
        x_seq, flat, final = np.asarray(V, np.float64), 0, None
        init = self.initial_state(N)
        for i, (r, layer) in enumerate(zip(self.ir.rnn_layers, self.layers)):
            outs = []
            for lay, steps in [(layer, range(T))] + ([(self.backward[i], range(T - 1, -1, -1))] if i in self.backward
                                                     else []):
                st, hs = (init[i] if lay is layer else lay.zero_state(N)), np.zeros((N, T, lay.units))
                for t in steps:
                    m = ok[:, t]
                    after = lay.step(st, x_seq[:, t])
                    if track is not None and m.any():
                        lay.track(track[flat], st, after, x_seq[:, t], m)
                    st = tuple(np.where(m[:, None], a, b) for a, b in zip(after, st))
                    hs[:, t] = st[0]
                flat += 1
                outs.append((st[0], hs))
            if r.backward is None:
                final, x_seq = outs[0]
            else:
                final = merge(r.merge_mode, outs[0][0], outs[1][0])
                x_seq = np.where(ok[..., None], merge(r.merge_mode, outs[0][1], outs[1][1]), 0.0)
        return x_seq if sequence else final

    def pooled(self, V: np.ndarray, ok: np.ndarray, fed: np.ndarray, track: Optional[List[dict]] = None) -> np.ndarray:
        """The head's input ``[N, D]`` of a model that pools over time (``ir.pool``): :func:`pool_over_time` of
        the last layer's outputs over whole windows ``V`` whose steps ``ok`` run (``fed``: the row's steps)."""
        return pool_over_time(self.ir.pool, self.windows(V, ok, track=track, sequence=True), ok, fed)

    def pooled_readout(self, hs: list, ok: np.ndarray, lengths=None) -> np.ndarray:
        """The head output of a model that pools over time, from the last layer's outputs ``hs`` (one ``[N, D]`` per
        step) after every step of a step-by-step run (held where it did not run) whose steps ``ok`` ran or were
        skipped (``frames``) of rows of ``lengths`` input steps."""
        N, T = np.asarray(ok).shape
        hs = np.stack(hs, 1) if len(hs) else np.zeros((N, 0, self.ir.rnn_layers[-1].out_dim))
        if self.front:
            fed = np.asarray(ok, bool)
        elif lengths is None:
            fed = np.ones((N, T), bool)
        else:
            fed = np.arange(T)[None, :] < np.asarray(lengths).reshape(-1)[:, None]
        return self.head_out(pool_over_time(self.ir.pool, hs, ok, fed))

    def head_out(self, x: np.ndarray) -> np.ndarray:
        """The head on its input ``x`` (after the final activation)."""
        if not self.head:
            return x
        for d in self.head[:-1]:
            x = d.act(d.pre(x))
        return self.head[-1].act(self.head[-1].pre(x))

    # ---- head ----------------------------------------------------------
    def logits(self, state: State) -> np.ndarray:
        """Head output before the final activation (the last layer's h if
        there is no head)."""
        x = self.last_h(state)
        if not self.head:
            return x
        for d in self.head[:-1]:
            x = d.act(d.pre(x))
        return self.head[-1].pre(x)

    def readout(self, state: State) -> np.ndarray:
        """Head output after the final activation (probabilities for softmax/sigmoid, log-probabilities for
        log_softmax)."""
        z = self.logits(state)
        return self.head[-1].act(z) if self.head else z

    # ---- whole sequences -----------------------------------------------
    def _limit(self, valid: np.ndarray, length) -> np.ndarray:
        if length is None:
            return valid
        valid = valid.copy()
        valid[int(length):] = False
        return valid

    def _cut(self, x_seq, length):
        """With a front end, ``length`` counts input steps: the front end runs on those only
        (its frames are then all used)."""
        if self.front and length is not None:
            return np.asarray(x_seq)[: int(length)], None
        return x_seq, length

    def hidden_trace(self, x_seq, length=None) -> List[State]:
        """State after every step ``t < length`` (masked steps repeat the
        previous state); with a front end, after every frame it emits."""
        x_seq, length = self._cut(x_seq, length)
        v = self.inputs(x_seq)
        ok = self._limit(self.frames_ok(x_seq, v), length)
        T = len(v) if length is None else min(int(length), len(v))
        state = self.initial_state()
        trace = []
        for t in range(T):
            if ok[t]:
                state = self.step(state, v[t])
            trace.append(state)
        return trace

    def final_state(self, x_seq, length=None) -> State:
        x_seq, length = self._cut(x_seq, length)
        v = self.inputs(x_seq)
        ok = self._limit(self.frames_ok(x_seq, v), length)
        state = self.initial_state()
        for t in range(len(v)):
            if ok[t]:
                state = self.step(state, v[t])
        return state

    def run(self, x_seq, length=None) -> np.ndarray:
        """Model output for one sequence (``[out]``); steps at and after
        ``length`` are ignored, masked steps carry the state unchanged.
        Per-step models (``ir.per_step``) give ``[T, out]``."""
        if self.ir.per_step or self.bidi is not None or self.ir.pool:
            x_seq, length = self._cut(x_seq, length)
            return self.predict(np.asarray(x_seq)[None], None if length is None else [length])[0]
        return self.readout(self.final_state(x_seq, length))

    def predict(self, X, lengths: Optional[Sequence[int]] = None) -> np.ndarray:
        """``[N, out]`` for int ids ``[N, T]`` or floats ``[N, T, F]`` (a list of
        sequences of different lengths works too)."""
        if isinstance(X, (list, tuple)) and len({len(x) for x in X}) > 1:
            return np.stack([self.run(x, None if lengths is None else lengths[i])
                             for i, x in enumerate(X)])
        X = np.asarray(X)
        if self.front and lengths is not None and X.ndim == 3 and np.any(np.asarray(lengths) != X.shape[1]):
            return np.stack([self.run(x, lengths[i]) for i, x in enumerate(X)])   # rows of their own length
        want = 2 if self.is_token_model else 3
        if X.ndim != want:
            raise RnnskipError(
                f"predict expects {'[N, T] token ids' if self.is_token_model else '[N, T, F] floats'}"
                f"; got shape {X.shape}")
        N = X.shape[0]
        check_flatten_steps(self.ir, X.shape[1])
        if runs_every_step(self.ir):
            lengths = None
        V = self.inputs(X)
        T = V.shape[1]
        ok = self.frames_ok(X, V)
        fed = np.ones(ok.shape, bool) if self.front else np.ones((N, T), bool)
        if lengths is not None and not self.front:
            lengths = np.asarray(lengths).reshape(-1)
            fed = np.arange(T)[None, :] < lengths[:, None]
            ok = ok & fed
        if self.ir.pool:
            return self.head_out(self.pooled(V, ok, fed))
        if self.bidi is not None:   # whole windows
            return self.head_out(self.windows(V, ok, sequence=self.ir.per_step))
        state = self.initial_state(N)
        seq = [] if self.ir.per_step else None
        for t in range(T):
            new = self.step(state, V[:, t])
            m = ok[:, t][:, None]
            state = [tuple(np.where(m, a, b) for a, b in zip(sn, so))
                     for sn, so in zip(new, state)]
            if seq is not None:  # return_sequences=True at the output: [N, T, out]
                seq.append(self.readout(state))
        if seq is not None:
            return np.stack(seq, axis=1) if seq else np.zeros((N, 0, self.ir.output_dim))
        return self.readout(state)
