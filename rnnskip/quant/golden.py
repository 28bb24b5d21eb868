"""The integer golden model: the specification of the generated C code.

Vectorised over a batch of sequences: state arrays are ``[N, units_p]``. Every
operation mirrors one C kernel call in rnnskip_model.c (same order, same rounding,
same saturation), so golden, host build and firmware agree bit for bit. The cell
arithmetic is each cell kind's own (``rnnskip/cells/``); step methods (a skip
predictor, delta thresholds: :mod:`rnnskip.stepmethod`) attached to the model take
part through their hooks.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..cells import cell_of
from ..cells.base import matvec
from ..converter.ir import steps_run
from ..errors import RnnskipError
from . import fixedpoint as fp
from .act import LUTS
from .model import QConv, QDense, QDepthwise, QMat, QModel


def mat(m: QMat, v: np.ndarray) -> np.ndarray:
    """int32 accumulators ``bias + w @ v`` ``[N, rows]``."""
    return m.bias[None, :] + matvec(m.w, v)


#: the layer normalisation's per-row multiplier ``g = round(mult 2^NORM_SHIFT / R)``: where D > 0, R >= 2^frac and
#: mult <= 127 2^frac, so g <= 127 2^31; and |n x - S| <= sqrt(n) sqrt(D) (no value is further than sqrt(n - 1)
#: standard deviations from the mean), so |n x - S| g stays near sqrt(n) 127 2^31 < 2^47 for n <= 65536
NORM_SHIFT = 31


def isqrt64(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of int64 ``v`` in [0, 2^62), exactly (the C's integer square root): the float root, then
    corrected by whole steps in integers (its error is a step or two at most)."""
    v = np.asarray(v, np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def layer_norm(q, x: np.ndarray) -> np.ndarray:
    """rnnskip_layer_norm_s8 (quant.model.QNorm ``q``): int8 ``[N, cols]`` -> the normalised int8 ``[N, cols]``
    (padding columns 0), in int64 as the C: ``D << 2 frac`` stays below 2^62 (quantize.quantize_norm)."""
    v = np.asarray(x, np.int64)[:, : q.n]
    s = v.sum(axis=1, keepdims=True)
    d = q.n * (v * v).sum(axis=1, keepdims=True) - s * s + q.eps_term
    root = isqrt64(d << (2 * q.frac))
    div = np.maximum(root, 1)
    g = ((np.int64(q.mult) << NORM_SHIFT) + div // 2) // div   # mult / R on 2^31, once per row
    num = q.n * v - s
    z = np.sign(num) * ((np.abs(num) * g + (1 << (NORM_SHIFT - 1))) >> NORM_SHIFT)   # half away from zero
    out = np.zeros(np.shape(x), np.int64)
    out[:, : q.n] = np.where(root == 0, 0, np.clip(z, -127, 127))
    return out


def dense(q: QDense, x: np.ndarray, final: bool) -> np.ndarray:
    """rnnskip_fully_connected_s8: int8 ``[N, cols]`` -> int8 ``[N, rows]`` (int16 logits if final); a layer with
    ``norm`` normalises its input first (:func:`layer_norm`)."""
    if q.norm is not None:
        x = layer_norm(q.norm, x)
    return dense_out(q, mat(q.mat, x), final)


def dense_out(q: QDense, acc: np.ndarray, final: bool) -> np.ndarray:
    """The int8 outputs (int16 logits if final) of Dense ``q`` from its int32 accumulators ``acc``."""
    m = q.mat
    if q.activation in LUTS:  # tanh, sigmoid, hard_sigmoid(_k3), softsign: table -> Q0.15
        pre = fp.sat16(fp.requantize(acc, m.mult, m.ls))
        y = fp._lut_eval(pre, LUTS[q.activation])
        return fp.sat8(fp.requantize(y, q.out_mult, q.out_ls))
    y = fp.requantize(acc, m.mult, m.ls)
    if final:
        return fp.sat16(y)
    if q.activation == "leaky_relu":
        y = np.where(y < 0, fp.requantize(y, q.out_mult, q.out_ls), y)
    y = fp.sat8(y)
    return np.maximum(y, 0) if q.activation == "relu" else y


def depthwise(q, win: np.ndarray) -> np.ndarray:
    """rnnskip_depthwise_conv1d_s8 (quant.model.QDepthwise ``q``) on the taps ``win`` ``[N, taps, cin_p]``, oldest
    first: output channel ``o < cout`` accumulates ``bias[o] + sum_k w[o, k] win[:, k, o // multiplier]``, the padded
    ones their bias (0); then requantised as a Dense's."""
    m = q.dense.mat
    acc = np.tile(np.asarray(m.bias, np.int64), (len(win), 1))
    o = np.arange(q.cout)
    acc[:, o] += np.einsum("nko,ok->no", np.asarray(win, np.int64)[:, :, o // q.multiplier],
                           np.asarray(m.w, np.int64)[o])
    return dense_out(q.dense, acc, final=False)


def avg_pool(window: np.ndarray) -> np.ndarray:
    """rnnskip_avg_pool1d_s8: the mean of int8 ``[N, window, C]`` over the window, rounded half away
    from zero (``(sum +- window/2) / window`` with C's truncating division, as CMSIS-NN's arm_avgpool_s8)."""
    total = window.sum(axis=1)
    n = window.shape[1]
    return np.sign(total) * ((np.abs(total) + n // 2) // n)


def merge(l, f: np.ndarray, b: np.ndarray) -> np.ndarray:
    """rnnskip_merge_*_s8: a Bidirectional layer's int8 outputs ``f``, ``b`` ``[N, up]`` (one scale s) merged as
    its ``merge_mode`` says (scales in ``quantize.merge_scale``): concat ``[f | b]`` (real units side by side, padded
    to ``merge_p``); sum and ave ``(f + b) / 2`` (scale 2s and s); mul ``f * b / 127`` (scale 127 s^2, saturated); both
    divisions round half away from zero (C's truncating division on ``|v| + d/2``)."""
    if l.merge_mode == "concat":
        out = np.zeros((len(f), l.merge_p), np.int64)
        out[:, : l.units] = f[:, : l.units]
        out[:, l.units: 2 * l.units] = b[:, : l.units]
        return out
    v, d = (f * b, 127) if l.merge_mode == "mul" else (f + b, 2)
    return fp.sat8(np.sign(v) * ((np.abs(v) + d // 2) // d))   # only -128 * -128 / 127 saturates


class Pool:
    """Pooling over time of the last layer's int8 outputs (``rnnskip_pool_<kind>_add``, and the division in
    ``rnnskip_output``, in the C), per row: ``avg`` an int32 sum and a count, the mean rounded half away from zero
    at the end (as :func:`avg_pool`); ``max`` the running maximum. Either is 0 where nothing was pooled. The
    pooled vector has the outputs' scale."""

    def __init__(self, kind: str, n: int, width: int):
        self.kind = kind
        self.acc = np.zeros((n, width), np.int64)
        self.count = np.zeros(n, np.int64)

    def add(self, rows: np.ndarray, y: np.ndarray) -> None:
        """Pool ``y`` ``[N, width]`` into the rows where ``rows`` (bool ``[N]``)."""
        rows = np.asarray(rows, bool)
        if self.kind == "avg":
            self.acc[rows] += y[rows]
        else:
            first = (self.count[rows] == 0)[:, None]
            self.acc[rows] = np.where(first, y[rows], np.maximum(self.acc[rows], y[rows]))
        self.count[rows] += 1

    def out(self) -> np.ndarray:
        n = self.count[:, None]
        if self.kind == "avg":
            q = np.sign(self.acc) * ((np.abs(self.acc) + n // 2) // np.maximum(n, 1))
            return np.where(n > 0, q, 0)
        return np.where(n > 0, self.acc, 0)


class Flatten(Pool):
    """Keras' Flatten over the time axis (``rnnskip_pool_flatten_add`` in the C), per row: each step's output's
    ``real`` units into the next of ``steps`` slots, side by side (then padding to ``width``); a step past the last
    slot is not kept. The vector has the outputs' scale."""

    def __init__(self, n: int, real: int, steps: int, width: int):
        self.kind, self.real, self.steps = "flatten", real, steps
        self.acc = np.zeros((n, width), np.int64)
        self.count = np.zeros(n, np.int64)

    def add(self, rows: np.ndarray, y: np.ndarray) -> None:
        rows = np.asarray(rows, bool)
        idx = np.flatnonzero(rows & (self.count < self.steps))
        cols = self.count[idx][:, None] * self.real + np.arange(self.real)[None, :]
        self.acc[idx[:, None], cols] = y[idx, : self.real]
        self.count[rows] += 1

    def out(self) -> np.ndarray:
        return self.acc.copy()


class Pools:
    """The model's pooling over time: one :class:`Pool` per kind (several: a Concatenate of poolings, whose
    vectors the head reads side by side, each kind's real units in order, then padding)."""

    def __init__(self, qm: QModel, n: int):
        self.qm = qm
        self.pools = [Flatten(n, qm.pool_real, qm.pool_steps, qm.pool_width) if k == "flatten" else
                      Pool(k, n, qm.out_width) for k in qm.pool_kinds]

    def add(self, counted: np.ndarray, fed: np.ndarray, y: np.ndarray) -> None:
        """One step's outputs ``y``: into a mean on the ``counted`` rows (the steps the mask keeps), into a maximum on
        the ``fed`` ones (every step, a masked one with the output Keras gives it)."""
        for p in self.pools:
            p.add(counted if p.kind == "avg" else fed, y)

    def add_zero(self, rows: np.ndarray) -> None:
        """A zero output into the maxima of ``rows`` (a Bidirectional layer's steps that did not run)."""
        for p in self.pools:
            if p.kind == "max":
                p.add(rows, np.zeros_like(p.acc))

    def out(self) -> np.ndarray:
        if len(self.pools) == 1:
            return self.pools[0].out()
        real = self.qm.pool_real
        out = np.zeros((len(self.pools[0].count), self.qm.pool_width), np.int64)
        for i, p in enumerate(self.pools):
            out[:, i * real:(i + 1) * real] = p.out()[:, :real]
        return out


class FrontEnd:
    """The streamed front end of :class:`GoldenModel` (``rnnskip_front`` in the C): per layer a ring of
    its last ``window`` int8 input frames (padding frames before the first: ``pad_frame``) and a countdown to
    the next output frame, per row."""

    def __init__(self, qm: QModel, n: int):
        self.qm = qm
        self.rings = [np.tile(f.pad_frame, (n, f.window, 1)) for f in qm.front]
        # frames to push before the next output: window - 1 - left at the start, then strides - 1
        self.wait = [np.full(n, f.window - 1 - f.left, np.int64) for f in qm.front]

    def push(self, rows: np.ndarray, frames: np.ndarray, first: int = 0):
        """Push int8 ``frames`` ``[len(rows), C_p]`` into layer ``first`` for ``rows`` and on through the
        later layers; returns (the rows that emitted a frame of the last layer, those frames)."""
        for i in range(first, len(self.qm.front)):
            f, ring, wait = self.qm.front[i], self.rings[i], self.wait[i]
            ring[rows] = np.concatenate([ring[rows, 1:], frames[:, None, :]], axis=1)
            emit = wait[rows] == 0
            wait[rows] = np.where(emit, f.strides - 1, wait[rows] - 1)
            rows = rows[emit]
            if not len(rows):
                return rows, np.zeros((0, f.cout_p), np.int64)
            win = ring[rows][:, :: f.dilation]            # the taps, oldest first
            if isinstance(f, QDepthwise):
                frames = depthwise(f, win)
            elif isinstance(f, QConv):
                frames = dense(f.dense, win.reshape(len(rows), -1), final=False)
            elif f.kind == "max":
                frames = win.max(axis=1)
            else:
                frames = avg_pool(win)
        return rows, frames

    def flush(self, rows: np.ndarray):
        """The end of the sequences ``rows``: each ``padding='same'`` layer in order gets its right-hand
        padding frames (its outputs go on through the later layers); yields (rows, frames) that emerge."""
        for i, f in enumerate(self.qm.front):
            for _ in range(f.right):
                out = self.push(rows, np.tile(f.pad_frame, (len(rows), 1)), first=i)
                if len(out[0]):
                    yield out


def feature_inv_scale(qm) -> np.ndarray:
    """The float32 factor the device multiplies each float feature by (``rnnskip_feature_inv_scale``)."""
    return (1.0 / np.asarray(qm.feature_scales, np.float64)).astype(np.float32)


def layer_initial_states(qm, n: int) -> List[dict]:
    """Each layer's state before a row's first step: zeros, but for a per-step Dense its output on the layer
    before's (``Cell.golden_initial``; a Bidirectional layer's merged output is zeros). The C's rnnskip_init sets
    the same (:func:`initial_outputs`)."""
    state: List[dict] = []
    for i, l in enumerate(qm.layers):
        zero = cell_of(l.kind).golden_zero_state(l, n)
        before = qm.layers[i - 1] if i else None
        prev = state[-1]["h8"][:, : l.in_p] if before is not None and not before.direction else \
            np.zeros((n, l.in_p), np.int64)
        state.append(cell_of(l.kind).golden_initial(l, zero, prev))
    return state


def initial_outputs(qm) -> Dict[int, np.ndarray]:
    """Layer index -> its int8 output ``[up]`` before a row's first step, for the layers where it is not zeros."""
    return {i: s["h8"][0] for i, s in enumerate(layer_initial_states(qm, 1)) if s["h8"].any()}


class GoldenModel:
    """Integer reference of the firmware, one time step at a time.

    State: one dict per layer with the cell's arrays (``h8``, the int8 hidden state the
    recurrent mat-vec reads, first) plus whatever the model's step methods keep.
    ``methods``: the step methods to run with (default: those attached to ``qm``;
    ``[]`` is the dense model).
    """

    def __init__(self, qm: QModel, methods: Optional[list] = None):
        self.qm = qm
        self.pool: Optional[Pools] = None   # a model that pools over time: the pooling of the last run
        self.ran_steps: Optional[np.ndarray] = None   # executed_steps of the last run, where flags do not give them
        self.methods = list(qm.methods if methods is None else methods)
        for m in self.methods:
            m.golden_prepare(self)

    # -- inputs --------------------------------------------------------------
    def quantize_features(self, x: np.ndarray) -> np.ndarray:
        """Float features ``[..., F]`` -> int8 ``[..., F_p]``: ``clip(rint(float32(x) * inv), -127, 127)``
        with one float32 multiply by each feature's :func:`feature_inv_scale`, ties to even, NaN -> 0 (with
        ``feature_offsets``, ``(float32(x) - offset) * inv``, each in float32); the generated
        ``rnnskip_quantize_features()`` does the same on the device."""
        qm = self.qm
        v = self.scaled_features(x)
        q = np.clip(np.rint(np.where(np.isnan(v), np.float32(0), v)), -127, 127).astype(np.int8)
        out = np.zeros(q.shape[:-1] + (qm.features_p,), dtype=np.int8)
        out[..., : qm.features] = q
        return out

    def scaled_features(self, x: np.ndarray) -> np.ndarray:
        """Float features on their int8 scales before rounding and clipping (float32, NaN kept):
        ``(float32(x) - offset) * inv`` as :meth:`quantize_features` computes them."""
        with np.errstate(over="ignore", invalid="ignore"):   # beyond float32: inf, clipped to +-127 as on the device
            v = np.asarray(x, np.float32)
            if self.qm.feature_offsets is not None:
                v = v - np.asarray(self.qm.feature_offsets, np.float32)
            return v * feature_inv_scale(self.qm)

    def valid_steps(self, x: np.ndarray) -> np.ndarray:
        """bool ``[N, T]``: steps that run (masking). Token models: id != 0 when mask_zero."""
        qm = self.qm
        if qm.token_input:
            return (x != 0) if qm.mask_zero else np.ones(x.shape, dtype=bool)
        if qm.mask_value is not None:
            return ~np.all(np.asarray(x, np.float32) == np.float32(qm.mask_value), axis=-1)   # as Keras
        return np.ones(x.shape[:2], dtype=bool)

    def step_input(self, xin: np.ndarray) -> np.ndarray:
        """Device input of one step (ids ``[N]`` or int8 features ``[N, F_p]``) -> int8 ``[N, in_p]``."""
        qm = self.qm
        if qm.token_input:
            return qm.embedding[xin].astype(np.int64)
        v = xin.astype(np.int64)
        if qm.input_dense is not None:
            v = dense(qm.input_dense, v, final=False)
        return v

    # -- recurrent step ------------------------------------------------------
    def initial_state(self, n: int) -> List[dict]:
        state = layer_initial_states(self.qm, n)
        for m in self.methods:
            m.golden_init(self, state, n)
        return state

    def layer_step(self, i: int, s: dict, x: np.ndarray) -> dict:
        """Layer ``i``, one step. ``x`` int8 ``[N, in_p]`` (layer-normalised first where the layer has a ``norm``);
        returns the new state."""
        l = self.qm.layers[i]
        if l.norm is not None:
            x = layer_norm(l.norm, x)
        new = {}
        acc = None
        for m in self.methods:
            acc = m.golden_accumulate(self, i, s, x, new)
            if acc is not None:
                break
        cell = cell_of(l.kind)
        if acc is None:
            acc = cell.golden_accumulate(l, s, x)
        out = None
        for m in self.methods:
            out = m.golden_cell(self, i, s, acc, new)
            if out is not None:
                break
        new.update(cell.golden_cell(l, s, acc) if out is None else out)
        return new

    def step(self, state: List[dict], xin: np.ndarray, run: Optional[np.ndarray] = None) -> List[dict]:
        """One time step from the device input ``xin`` (ids ``[N]`` or int8 features); rows where
        ``run`` is False keep their state. Step methods' skip decisions are not applied here."""
        x = self.step_input(xin)
        return self._step_rows(state, x, np.ones(len(x), bool) if run is None else np.asarray(run, bool))

    def _layers(self, state: List[dict], x: np.ndarray, lo: int = 0, hi: Optional[int] = None) -> List[dict]:
        """Layers ``lo .. hi - 1`` (default: every one; with a Bidirectional layer those up to its forward
        direction), every row; ``x``: layer ``lo``'s input (:meth:`step_input` for layer 0)."""
        hi = self.streamed_layers() if hi is None else hi
        new = list(state)
        for i in range(lo, hi):
            ns = self.layer_step(i, state[i], x)
            new[i] = {**state[i], **ns}
            x = ns["h8"]
        return new

    def streamed_layers(self) -> int:
        """The layers that run as steps arrive: all, or those up to a Bidirectional's forward direction."""
        b = self.qm.bidi
        return len(self.qm.layers) if b is None else b + 1

    def output(self, state: List[dict]) -> np.ndarray:
        """int16 logits ``[N, output_dim]`` (int8 h of the last layer when there is no head); a model that pools
        over time: the head on the pooling of the last :meth:`run`."""
        if self.qm.pool:
            if self.pool is None:
                raise RnnskipError(f"model '{self.qm.name}' pools over time: its output comes from run(), which "
                                   "pools every step, not from a state")
            return self.head(self.pool.out())
        last = self.qm.layers[-1]
        y = merge(self.qm.layers[-2], state[-2]["h8"], state[-1]["h8"]) if last.direction == "backward" \
            else state[-1]["h8"]
        return self.head(y)

    def _new_pool(self, n: int) -> Optional[Pools]:
        """The pooling over time of a run of ``n`` rows (None for a model without)."""
        qm = self.qm
        if not qm.pool:
            return None
        self.pool = Pools(qm, n)
        return self.pool

    def head(self, y: np.ndarray) -> np.ndarray:
        """The head on the last layer's int8 output ``y`` ``[N, width]``: int16 logits ``[N, output_dim]``."""
        for i, d in enumerate(self.qm.head):
            y = dense(d, y, final=(i == len(self.qm.head) - 1))
        return y[:, : self.qm.output_dim]

    # -- whole sequences -----------------------------------------------------
    def device_inputs(self, x: np.ndarray) -> np.ndarray:
        """What the device receives per step: int32 ids ``[N,T]`` or int8 features ``[N,T,F_p]``."""
        return np.asarray(x, np.int32) if self.qm.token_input else self.quantize_features(x)

    def run(self, x: np.ndarray, lengths: np.ndarray, collect=None, skip: Optional[np.ndarray] = None):
        """Run sequences; returns (int16 logits ``[N, out]`` (per-step models ``[N, T, out]``),
        uint8 step flags ``[N, T]``).

        flags[n, t] = 1 where step t ran, 0 where it was masked, beyond the length or skipped
        by a step method. ``collect(t, state, ran)``, if given, is called after every step. ``skip`` bool ``[N, T]``:
        steps to skip besides (a skip oracle's; models without a front end or Bidirectional layer).
        """
        x = np.asarray(x)
        lengths = steps_run(self.qm, lengths, x.shape[1])
        self.ran_steps = None   # set by the front-end paths, whose flush runs steps no input step flags
        if skip is not None and (self.qm.front or self.qm.bidi is not None):
            raise RnnskipError(f"model '{self.qm.name}' has a Conv1D front end or a Bidirectional layer: a skip mask "
                               "over its input steps does not apply")
        if self.qm.front and self.qm.bidi is not None:
            return self._run_front_bidi(x, lengths, collect)
        if self.qm.front:
            return self._run_front(x, lengths, collect)
        if self.qm.bidi is not None:
            return self._run_bidi(x, lengths, collect)
        N, T = x.shape[:2]
        dev = self.device_inputs(x)
        ran = self.valid_steps(x) & (np.arange(T)[None, :] < np.asarray(lengths)[:, None])
        state = self.initial_state(N)
        seq = [] if self.qm.per_step else None
        pool = self._new_pool(N)
        fed = np.arange(T)[None, :] < np.asarray(lengths).reshape(-1)[:, None]
        for t in range(T):
            run = ran[:, t]
            counted = run.copy()   # the steps the mask keeps, skipped ones included (their output is held)
            if run.any():
                xin = self.step_input(dev[:, t])
                for m in self.methods:    # a skip predictor decides on the state reached
                    run &= ~m.golden_skip(self, xin, state)
                if skip is not None:
                    run &= ~np.asarray(skip[:, t], bool)
                state = self._step_rows(state, xin, run)
            if pool is not None:
                pool.add(counted, fed[:, t], state[-1]["h8"])
            if collect is not None:
                collect(t, state, run)
            if seq is not None:  # per-step outputs: the head on the state after step t
                seq.append(self.output(state))
        self.final_state = state
        if seq is not None:
            out = np.stack(seq, axis=1) if seq else np.zeros((N, 0, self.qm.output_dim), np.int64)
            return out, ran.astype(np.uint8)
        return self.output(state), ran.astype(np.uint8)

    def executed_steps(self, flags: np.ndarray) -> np.ndarray:
        """Per row, the steps the recurrent layers ran in the last :meth:`run` (``steps_run`` in the C): the flagged
        ones, and with a front end its flush's (padding='same'), which come after the last input step."""
        return self.ran_steps if self.ran_steps is not None else np.asarray(flags).sum(axis=1)

    def _run_front(self, x: np.ndarray, lengths: np.ndarray, collect=None):
        """:meth:`run` of a model with a streamed front end: each input step goes into the front end
        (every step of the length runs; there is no masking), the recurrent layers run on the frames
        it emits (after the step methods' skip decision), and at each sequence's end the flush
        (``padding='same'``). flags[n, t] = 1 where input step t made the recurrent layers run."""
        N, T = x.shape[:2]
        lengths = np.asarray(lengths).reshape(-1)
        dev = self.device_inputs(x)
        front = FrontEnd(self.qm, N)
        state = self.initial_state(N)
        flags = np.zeros((N, T), np.uint8)
        pool = self._new_pool(N)
        self.ran_steps = np.zeros(N, np.int64)

        def recurrent(state, rows, frames):
            xin = np.zeros((N, self.qm.in_p), np.int64)
            xin[rows] = frames
            run = np.zeros(N, bool)
            run[rows] = True
            emitted = run.copy()
            for m in self.methods:    # a skip predictor decides on the state reached
                run &= ~m.golden_skip(self, xin, state)
            state = self._step_rows(state, xin, run)
            self.ran_steps += run
            if pool is not None:   # every frame the front end emits, a skipped one with the output held
                pool.add(emitted, emitted, state[-1]["h8"])
            return state, run

        for t in range(T):
            rows = np.flatnonzero(t < lengths)
            run = np.zeros(N, bool)
            if len(rows):
                rows, frames = front.push(rows, dev[rows, t])
                if len(rows):
                    state, run = recurrent(state, rows, frames)
            flags[:, t] = run
            if collect is not None:
                collect(t, state, run)
            ending = np.flatnonzero(lengths == t + 1)
            if len(ending):
                for rows, frames in front.flush(ending):
                    state, _ = recurrent(state, rows, frames)
        self.final_state = state
        return self.output(state), flags

    def _run_bidi(self, x: np.ndarray, lengths: np.ndarray, collect=None):
        """:meth:`run` of a model with Bidirectional layers (``rnnskip_step`` and ``rnnskip_finish``): the layers
        up to the first one's forward direction run step by step, that direction's inputs (and, when it returns
        sequences, its outputs) are buffered per step that ran; at the end its backward direction runs over the
        buffered steps in reverse, each merged with the forward output of its step. The layers up to the next
        Bidirectional's forward direction then run over the merged outputs in time order, buffering that
        direction's inputs and outputs, its backward direction in reverse, and so on; the layers after the last
        one run over its merged outputs in time order."""
        N, T = x.shape[:2]
        dev = self.device_inputs(x)
        ran = self.valid_steps(x) & (np.arange(T)[None, :] < np.asarray(lengths)[:, None])
        fed = np.arange(T)[None, :] < np.asarray(lengths).reshape(-1)[:, None]
        return self._bidi(lambda t: self.step_input(dev[:, t]), ran, fed, collect)

    def _run_front_bidi(self, x: np.ndarray, lengths: np.ndarray, collect=None):
        """:meth:`run` of a model with a streamed front end and Bidirectional layers: the front end's frames, each
        row's in the order it emits them (the flush's last), are the steps of :meth:`_bidi` (all run: a front end
        has no mask). flags[n, t] = 1 where input step t emitted a frame; ``collect`` sees the frames' steps."""
        N, T = x.shape[:2]
        lengths = np.asarray(lengths).reshape(-1)
        dev = self.device_inputs(x)
        front = FrontEnd(self.qm, N)
        frames: List[list] = [[] for _ in range(N)]
        flags = np.zeros((N, T), np.uint8)
        for t in range(T):
            rows = np.flatnonzero(t < lengths)
            if len(rows):
                rows, out = front.push(rows, dev[rows, t])
                for r, f in zip(rows, out):
                    frames[r].append(f)
                flags[rows, t] = 1
            for rows, out in front.flush(np.flatnonzero(lengths == t + 1)):
                for r, f in zip(rows, out):
                    frames[r].append(f)
        steps = max([len(f) for f in frames] + [1])
        xin = np.zeros((N, steps, self.qm.in_p), np.int64)
        ran = np.zeros((N, steps), bool)
        for r, f in enumerate(frames):
            if f:
                xin[r, :len(f)] = f
                ran[r, :len(f)] = True
        out, _ = self._bidi(lambda k: xin[:, k], ran, ran.copy(), collect)
        self.ran_steps = ran.sum(axis=1)
        return out, flags

    def _bidi(self, xin_at, ran: np.ndarray, fed: np.ndarray, collect=None):
        """:meth:`_run_bidi` on the inputs of layer 0 at each step (``xin_at(t)``), ``ran`` the steps that run and
        ``fed`` those given to ``rnnskip_step`` (within the length), both bool ``[N, T]``."""
        qm = self.qm
        bidis = qm.bidis
        b = bidis[0]
        N, T = ran.shape
        ran = ran.copy()
        state = self.initial_state(N)
        xs = np.zeros((N, T, qm.layers[b].in_p), np.int64)    # the forward direction's input at each step
        hs = np.zeros((N, T, qm.layers[b].up), np.int64)      # its output
        for t in range(T):
            run = ran[:, t]
            if run.any():
                xin = xin_at(t)
                for m in self.methods:
                    run &= ~m.golden_skip(self, xin, state)
                state = self._step_rows(state, xin, run)
                xs[:, t] = xin if b == 0 else state[b - 1]["h8"]
                hs[:, t] = state[b]["h8"]
            ran[:, t] = run
            if collect is not None:
                collect(t, state, run)
        pool = self._new_pool(N)
        last = bidis[-1]
        later = last + 2 < len(qm.layers)
        ys = None   # the previous Bidirectional layer's merged outputs
        for j, b in enumerate(bidis):
            fl = qm.layers[b]
            if j:   # the layers from the previous Bidirectional's to this one's forward direction, in time order
                lo = bidis[j - 1] + 2
                xs = np.zeros((N, T, fl.in_p), np.int64)
                hs = np.zeros((N, T, fl.up), np.int64)
                for t in range(T):
                    if ran[:, t].any():
                        state = self._step_rows(state, ys[:, t], ran[:, t], lo, b + 1)
                        xs[:, t] = ys[:, t] if b == lo else state[b - 1]["h8"]
                        hs[:, t] = state[b]["h8"]
            ys = np.zeros((N, T, fl.merge_p), np.int64)   # the merged outputs (zero where the step did not run)
            for t in range(T - 1, -1, -1):              # rnnskip_finish: the backward direction, the steps in reverse
                if ran[:, t].any():
                    state = self._step_rows(state, xs[:, t], ran[:, t], b + 1, b + 2)
                    ys[ran[:, t], t] = merge(fl, hs[:, t], state[b + 1]["h8"])[ran[:, t]]
                    if pool is not None and b == last and not later:
                        pool.add(ran[:, t], ran[:, t], ys[:, t])
        if pool is not None:   # Keras max-pools the outputs of the steps that did not run too:
            # zeros (the Bidirectional layer's), or the later layer's output before them (zeros before the first)
            gap = fed & ~ran
            if later:
                gap &= np.cumsum(ran, axis=1) == 0
            pool.add_zero(gap.any(axis=1))
        seq = []   # per-step models: the head after each step (rnnskip_output_step)
        if later:                                   # then the later layers on the merged outputs, in time order
            for t in range(T):
                if ran[:, t].any():
                    state = self._step_rows(state, ys[:, t], ran[:, t], last + 2, len(qm.layers))
                    if pool is not None:
                        pool.add(ran[:, t], ran[:, t], state[-1]["h8"])
                if qm.per_step:   # a step that did not run repeats the output before it
                    seq.append(self.head(state[-1]["h8"]))
        elif qm.per_step:   # Keras' Bidirectional outputs zeros at the steps that did not run
            seq = [self.head(ys[:, t]) for t in range(T)]
        self.final_state = state
        if qm.per_step:
            out = np.stack(seq, axis=1) if seq else np.zeros((N, 0, qm.output_dim), np.int64)
            return out, ran.astype(np.uint8)
        return self.output(state), ran.astype(np.uint8)

    def _step_rows(self, state: List[dict], xin: np.ndarray, run: np.ndarray, lo: int = 0,
                   hi: Optional[int] = None) -> List[dict]:
        """One step (of layers ``lo .. hi - 1``) for the rows where ``run``; the others keep their state
        (as the C does)."""
        if run.all():
            return self._layers(state, xin, lo, hi)
        idx = np.flatnonzero(run)
        if not len(idx):
            return state
        sub = self._layers([{k: v[idx] for k, v in s.items()} for s in state], xin[idx], lo, hi)
        out = []
        for s, ns in zip(state, sub):
            s = {k: v.copy() for k, v in s.items()}
            for k, v in ns.items():
                s[k][idx] = v
            out.append(s)
        return out


def predict_classes(logits: np.ndarray, activation: str) -> np.ndarray:
    """Class ids from int16 logits ``[N(, T), K]``: argmax, or logit > 0 for a 1-unit sigmoid."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.int64)
    return np.argmax(logits, axis=-1)
