"""Activation ranges from running the float reference over user data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..cells import cell_of
from ..converter.ir import ConvLayer, DenseLayer, FeatureInput, ModelIR, steps_run
from ..errors import RnnskipError
from ..progress import bar
from ..reference import layer_norm


@dataclass
class Ranges:
    """Max |value| seen per quantised tensor (float units)."""
    #: per input feature, max |x| over the steps the model reads (feature models)
    features: np.ndarray = field(default_factory=lambda: np.zeros(0))
    input_dense: float = 0.0
    #: per front-end layer (Conv1D, pooling), max |output|
    front: List[float] = field(default_factory=list)
    #: per recurrent layer, max |value| of each entry of its cell's float state ({"h": .., "c": ..}) and, for a
    #: relu/linear cell, of its candidate's parts ("cand", ...: ``Cell.float_candidates``)
    states: List[dict] = field(default_factory=list)
    head: List[float] = field(default_factory=list)
    #: per head layer, max |value| of its layer-normalised input (``DenseLayer.norm_epsilon``; 0 without one)
    head_norm: List[float] = field(default_factory=list)
    sequences: int = 0


def dense_forward(d: DenseLayer, x: np.ndarray, final: bool = False, normalised: bool = False) -> np.ndarray:
    """Float Dense; ``final`` returns the pre-activation (the device's int16 output;
    the host applies the last activation); ``normalised``: ``x`` is already its layer-normalised input."""
    if d.norm_epsilon is not None and not normalised:
        x = layer_norm(x, d.norm_epsilon)
    y = x @ d.kernel + d.bias
    act = d.activation
    if final:
        return y
    if act == "relu":
        return np.maximum(y, 0.0)
    if act == "tanh":
        return np.tanh(y)
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-y))
    if act == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if act != "linear":  # hard_sigmoid(_k3), softsign
        from ..reference import activation
        return activation(act)(y)
    return y


def _head_ranges(ir: ModelIR, r: Ranges, h) -> None:
    y = np.asarray(h, dtype=np.float64)
    for i, d in enumerate(ir.head):
        if d.norm_epsilon is not None:   # the normalised input's range (its int8 scale), then the layer on it
            y = layer_norm(y, d.norm_epsilon)
            r.head_norm[i] = max(r.head_norm[i], float(np.abs(y).max()))
        y = dense_forward(d, y, final=(i == len(ir.head) - 1), normalised=True)
        r.head[i] = max(r.head[i], float(np.abs(y).max()))


def norm_scale(inp) -> Optional[np.ndarray]:
    """``inp.norm_scale`` where it applies (a centred input into a recurrent first layer), else None."""
    if not isinstance(inp, FeatureInput) or inp.center is None or inp.norm_scale is None or \
            not inp.raw_into_recurrent:
        return None
    return np.asarray(inp.norm_scale, np.float64)


def _feature_max(m: np.ndarray, steps: np.ndarray, center=None, norm=None) -> np.ndarray:
    """``m`` raised to each feature's max |x - center| over ``steps`` ``[n, F]`` (``FeatureInput.center``: the
    device quantises the features centred on it; times ``norm``, ``quantize.norm_scale``, where it applies)."""
    steps = np.asarray(steps, np.float64)
    if center is not None:
        steps = steps - np.asarray(center, np.float64)
    if norm is not None:
        steps = steps * norm
    return np.maximum(m, np.abs(steps).max(axis=0)) if len(steps) else m


def calibrate(ir: ModelIR, fm, x: np.ndarray, lengths: np.ndarray, progress: bool = True) -> Ranges:
    """Run ``fm`` (a reference.FloatModel of ``ir``) over ``x`` and record ranges.

    x: int ids ``[N,T]`` or float features ``[N,T,F]``; lengths ``[N]``.
    """
    if len(x) == 0:
        raise RnnskipError("calibration data is empty; pass --data (or --calib) with at least one sequence")
    lengths = steps_run(ir, lengths, np.shape(x)[1])
    front = [] if ir.is_token_model else ir.input.front
    center = None if ir.is_token_model else ir.input.center
    norm = norm_scale(ir.input)
    # one entry per direction: a Bidirectional layer's forward, then its backward
    r = Ranges(states=[{k: 0.0 for k in cell_of(d.kind).float_state} for l in ir.rnn_layers for d in l.directions()],
               head=[0.0] * len(ir.head), head_norm=[0.0] * len(ir.head), front=[0.0] * len(front),
               features=np.zeros(0 if ir.is_token_model else ir.input.features))
    j = 0   # each layer's output before a row's first step (a per-step Dense's act(bias)): read at masked steps there
    for layer, init in zip(ir.rnn_layers, fm.initial_state()):
        for k, part in zip(r.states[j], init):
            r.states[j][k] = max(r.states[j][k], float(np.abs(part).max()))
        j += len(layer.directions())
    if ir.bidirectional is not None:
        return cover_pads(ir, _calibrate_windows(ir, fm, x, lengths, r))
    from ..reference import pool_over_time  # imported where used, as the other reference helpers here
    it = bar(range(len(x)), desc="calibrate", enabled=progress)
    for n in it:
        seq = x[n][: int(lengths[n])]
        valid = fm.valid_steps(seq)
        if front:   # every input step runs; the recurrent layers run on the front end's frames
            _front_ranges(r, fm, seq, center)
        elif isinstance(ir.input, FeatureInput) and valid.any():
            r.features = _feature_max(r.features, seq[valid], center, norm)
        v = fm.inputs(seq)
        if isinstance(ir.input, FeatureInput) and ir.input.dense is not None and valid.any():
            r.input_dense = max(r.input_dense, float(np.abs(v[valid]).max()))
        valid = fm.frames_ok(seq, v)
        state = fm.initial_state()
        hs = []   # pooling over time: the last layer's output after every step (held where it did not run)
        for t in range(len(v)):
            if valid[t]:
                state = fm.step(state, v[t], track=r.states)
                if ir.per_step:  # the head runs on every step's state
                    _head_ranges(ir, r, state[-1][0])
            hs.append(state[-1][0])
        if ir.pool and hs:   # the head runs once, on the pooled outputs
            seq_h = np.asarray(hs, np.float64).reshape(1, len(hs), -1)
            _head_ranges(ir, r, pool_over_time(ir.pool, seq_h, valid[None, :len(hs)], np.ones((1, len(hs)), bool)))
        elif not ir.pool:
            _head_ranges(ir, r, state[-1][0])
    r.sequences = len(x)
    if isinstance(ir.input, FeatureInput) and not r.features.any():
        raise RnnskipError("calibration data is constant zero; rnnskip needs representative inputs to set int8 ranges")
    return cover_pads(ir, r)


def cover_pads(ir: ModelIR, r: Ranges) -> Ranges:
    """Widen the range of each padded Conv1D's input to its padding frame (``ConvLayer.pad``), so int8 holds it."""
    for i, f in enumerate([] if ir.is_token_model else ir.input.front):
        if getattr(f, "pad", None) is None:
            continue
        j = i - 1   # a pooling layer keeps its input's scale: widen the layer (or the input) that sets it
        while j >= 0 and not isinstance(ir.input.front[j], ConvLayer):
            j -= 1
        if j < 0 and ir.input.dense is not None:
            r.input_dense = max(r.input_dense, float(np.abs(f.pad).max()))
        elif j < 0:
            r.features = _feature_max(r.features, np.asarray(f.pad)[None, :], ir.input.center)
        else:
            r.front[j] = max(r.front[j], float(np.abs(f.pad).max()))
    return r


def _front_ranges(r: Ranges, fm, seq, center) -> None:
    """A sequence's steps into the input features' ranges, each front-end layer's outputs into its range."""
    r.features = _feature_max(r.features, seq, center)
    for i, y in enumerate(fm.front_outputs(seq)):
        if y.size:
            r.front[i] = max(r.front[i], float(np.abs(y).max()))


def front_end(ir: ModelIR) -> bool:
    return isinstance(ir.input, FeatureInput) and bool(ir.input.front)


def _calibrate_windows(ir: ModelIR, fm, x: np.ndarray, lengths: np.ndarray, r: Ranges) -> Ranges:
    """:func:`calibrate` of a model with a Bidirectional layer: whole windows (``FloatModel.windows``)."""
    V, ok = fm.frames(x, lengths)
    if front_end(ir):   # every input step runs; V holds the front's frames
        for n in range(len(x)):
            _front_ranges(r, fm, x[n][: int(lengths[n])], ir.input.center)
    elif isinstance(ir.input, FeatureInput) and ok.any():
        X = np.asarray(x, np.float64)
        r.features = _feature_max(r.features, X[ok], ir.input.center, norm_scale(ir.input))
        if ir.input.dense is not None:
            r.input_dense = float(np.abs(V[ok]).max())
    if isinstance(ir.input, FeatureInput):
        if not r.features.any():
            raise RnnskipError("calibration data is constant zero; rnnskip needs representative inputs to set int8 "
                               "ranges")
    if ir.pool:   # the steps given to rnnskip_step; with a front end, the frames it emitted (V's steps are frames)
        fed = ok if front_end(ir) else np.arange(V.shape[1])[None, :] < np.asarray(lengths).reshape(-1)[:, None]
        _head_ranges(ir, r, fm.pooled(V, ok, fed, track=r.states))
    else:
        _head_ranges(ir, r, fm.windows(V, ok, track=r.states, sequence=ir.per_step))
    r.sequences = len(x)
    return r
