"""Float IR + calibrated ranges -> QModel (int8 weights, int16 gates, int32 accumulators).

Scheme (TFLite int8 LSTM-like, all symmetric, zero points 0):
- weights int8 per output row, scale max|w_row|/127; a gate's input and recurrent
  weights share one per-row accumulator scale (one mat-vec on [x | h]), except an LSTM's
  where that scale would leave either half few int8 levels (cells/lstm.py: two mat-vecs,
  each half on its own scales, summed in Q3.12);
- activations between layers int8, scale max|a|/127 from calibration;
- float input features int8 with one scale per feature when the first layer is a Dense or a Conv1D
  (:func:`feature_scales`, folded into that layer's per-row weight scales), else one scale;
- gate pre-activations int16 Q3.12, gate outputs int16 Q0.15 (LUT sigmoid/tanh);
- biases int32 on the accumulator scale; requantisation by (mult, shift) pairs;
- each recurrent layer by its cell kind (``rnnskip/cells/``: an LSTM's cell state,
  a GRU's Q0.15 hidden state).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..cells import cell_of
from ..cells.base import q8, q32, scale_of
from ..converter.ir import ConvLayer, DenseLayer, DepthwiseConvLayer, EmbeddingInput, FeatureInput, ModelIR
from ..converter.support import leaky_alpha
from ..errors import RnnskipError
from . import fixedpoint as fp
from .act import LUTS, int_activation
from .calibrate import Ranges, norm_scale
from .model import QConv, QDense, QDepthwise, QMat, QModel, QNorm, QPool, pad4


def _row_scales(w_cols: np.ndarray) -> np.ndarray:
    """Per-output scales for a Keras kernel ``[in, out]``: max|column| / 127."""
    m = np.abs(w_cols).max(axis=0) if w_cols.size else np.zeros(w_cols.shape[1])
    return np.where(m > 0, m / 127.0, 1.0)


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def quantize_dense(d, in_scale: float, in_p: int, out_max: float, final: bool) -> QDense:
    """Quantise one Dense layer whose int8 input has ``in_p`` (padded) columns."""
    act, cap = int_activation(d.activation)
    if final:
        act = "linear"  # the host applies softmax, log_softmax or sigmoid: the device returns int16 logits
    elif act not in ("linear", "relu", "leaky_relu") and act not in LUTS:
        raise RnnskipError(f"layer '{d.name}' (Dense) activation '{act}' is not supported between layers; "
                           f"use linear, relu, tanh, sigmoid, hard_sigmoid or softsign")
    rows_p = pad4(d.out_dim)
    sw = _row_scales(d.kernel)
    w = np.zeros((rows_p, in_p), dtype=np.int8)
    w[: d.out_dim, : d.in_dim] = q8(d.kernel, sw).T
    bias = _pad_rows(q32(d.bias, sw * in_scale), rows_p)
    q = QDense(mat=None, activation=act, out_dim=d.out_dim, in_scale=in_scale, out_scale=0.0, name=d.name)
    if act in LUTS:
        eff = sw * in_scale * (1 << fp.Q12)
        q.out_scale = 1.0 / 127.0
        q.out_mult, q.out_ls = fp.quantize_multiplier(2.0 ** -fp.Q15 / q.out_scale)
    else:
        q.out_scale = scale_of(out_max if final else min(out_max, cap), 32767 if final else 127)
        eff = sw * in_scale / q.out_scale
        if act == "leaky_relu":   # the slope on the output's own scale: below 0, y = rq(y, alpha)
            q.out_mult, q.out_ls = fp.quantize_multiplier(float(np.float32(leaky_alpha(d.activation))))
    m, ls = fp.quantize_multipliers(_pad_rows(eff, rows_p))
    q.mat = QMat(w=w, bias=bias, mult=m, ls=ls, input="in", scale=_pad_rows(sw * in_scale, rows_p))
    return q


#: fractional bits of the layer normalisation's square root, at most (fewer where D << 2 frac would pass 2^62)
NORM_FRAC = 12


def quantize_norm(d, in_scale: float, z_max: float) -> QNorm:
    """The integer layer normalisation of Dense ``d``'s input (:func:`quantize_input_norm`)."""
    return quantize_input_norm(f"layer '{d.name}' (Dense)", int(d.in_dim), float(d.norm_epsilon), in_scale, z_max)


def quantize_input_norm(what: str, n: int, epsilon: float, in_scale: float, z_max: float) -> QNorm:
    """The integer layer normalisation of a layer's input (``n`` int8 features on ``in_scale``; ``what`` names the
    layer), its output on the int8 scale of the calibrated max |z| ``z_max``. ``D`` is at most
    ``n^2 128^2 + eps_term`` (n^2 times the largest variance of int8 values, half -128 and half 127, below 128^2),
    so ``frac`` keeps ``D << 2 frac`` below 2^62 (int64 in the C)."""
    if n > 65536:   # sum x^2 in int32, and the bound in golden.NORM_SHIFT
        raise RnnskipError(f"{what}: its LayerNormalization normalises {n:,} features; rnnskip's "
                           f"integer normalisation takes at most 65,536")
    eps_term = int(round(n * n * epsilon / (in_scale * in_scale)))
    top = n * n * 128 * 128 + eps_term
    frac = min(NORM_FRAC, (62 - top.bit_length()) // 2)
    if frac < 0:
        raise RnnskipError(f"{what}: its LayerNormalization's epsilon {epsilon:g} is "
                           f"{epsilon / in_scale ** 2:.3g} squared int8 steps of its input, beyond the "
                           f"integer normalisation's range; use a smaller epsilon")
    z_scale = scale_of(max(float(z_max), 1.0))   # a row that varies has some |z| >= 1; a constant one gives 0
    return QNorm(n=n, eps_term=eps_term, mult=max(1, int(round(2.0 ** frac / z_scale))), frac=frac)


def feature_scales(maxabs: np.ndarray, per_feature: bool) -> np.ndarray:
    """The int8 scale of each input feature from its calibrated max |x| (``maxabs`` ``[F]``).

    ``per_feature`` (:func:`per_feature_input`, where the first layer is a Dense or a Conv1D): each
    feature's own scale, folded into that layer's weights (:func:`fold_first_layer`), whose per-row
    scales absorb it, so a feature with a small range is not quantised on the scale of the largest one
    (an IMU's accelerometer next to its gyroscope). A recurrent first layer keeps one scale: a delta
    model's input threshold is one number of int8 steps for every feature of the layer's input. A
    feature never seen non-zero gets the shared scale. No headroom: a value beyond its feature's
    calibrated range clamps at +-127."""
    m = np.asarray(maxabs, np.float64)
    shared = scale_of(m.max())
    if not per_feature:
        return np.full(len(m), shared)
    return np.where(m > 0, np.maximum(m, 1e-8) / 127.0, shared)   # scale_of's floor: 1/s stays finite


def per_feature_input(inp: FeatureInput) -> bool:
    """Whether the first layer folds one input scale per feature (a Dense or a Conv1D)."""
    first = inp.dense if inp.dense is not None else (inp.front[0] if inp.front else None)
    return isinstance(first, (DenseLayer, ConvLayer))


def fold_first_layer(inp: FeatureInput, scales: np.ndarray) -> FeatureInput:
    """``inp`` with its first layer's (Dense or Conv1D) input axis multiplied by the per-feature
    ``scales``, so it reads int8 inputs of unit scale: ``sum_f w[f] x[f] = sum_f (w[f] s[f]) (x[f] / s[f])``."""
    if inp.dense is not None:   # kernel [in, out]
        return replace(inp, dense=replace(inp.dense, kernel=inp.dense.kernel * scales[:, None]))
    conv = inp.front[0]         # kernel [taps, in, out]; its padding frame, if any, in the same units as x / s
    pad = None if conv.pad is None else np.asarray(conv.pad, np.float64) / scales
    return replace(inp, front=[replace(conv, kernel=conv.kernel * scales[None, :, None], pad=pad)] + inp.front[1:])


def shift_first_layer(inp: FeatureInput, rnn0, undo: bool = False):
    """(inp, first recurrent layer) reading ``x - c`` instead of ``x``, ``c = inp.center`` (float32, as the device
    subtracts it): ``c`` folds into the first layer that computes, ``W (x' + c) + b = W x' + (b + W c)``. Poolings
    before it commute with the shift; a padded Conv1D then pads with its padding frame minus ``c`` (a Normalization's
    mean minus itself: zeros). A recurrent first layer with ``inp.norm_scale`` ``n`` reads ``n (x - c)``. ``undo``:
    the other way, a first layer reading that back to one reading ``x`` (dequantize). Copies: the IR stays the float
    model of the file."""
    import copy

    from ..converter import support
    c = np.asarray(inp.center, np.float32).astype(np.float64)
    ones = np.ones_like(c)
    if undo:   # x' = n (x - c): the layer on x' as a layer on x
        c = -c
    n = norm_scale(inp)
    if n is not None:
        a, b = (n, c * n) if undo else (1.0 / n, c)   # x = x' / n + c;  x' = n x - n c
        layer = copy.deepcopy(rnn0)
        for d in layer.directions():
            cell_of(d.kind).fold_input_affine(d, a, b)
        return inp, layer
    if inp.dense is not None:
        d = copy.deepcopy(inp.dense)
        support.fold_before_dense(d, ones, c)
        return replace(inp, dense=d), rnn0
    convs = [i for i, f in enumerate(inp.front) if isinstance(f, ConvLayer)]
    if convs:
        front = list(inp.front)
        conv = copy.deepcopy(front[convs[0]])
        old = np.zeros_like(c) if conv.pad is None else np.asarray(conv.pad, np.float64)
        support.fold_before_conv(conv, ones, c)
        conv.pad = None if conv.padding == "valid" else old - c
        front[convs[0]] = conv
        return replace(inp, front=front), rnn0
    layer = copy.deepcopy(rnn0)
    for d in layer.directions():
        cell_of(d.kind).fold_input_affine(d, ones, c)
    return inp, layer


def quantize_front(front: list, x_scale: float, ranges: list) -> list:
    """The streamed front end: each Conv1D as a Dense on its window ``[taps * cin_p]`` (per-channel
    weight scales, int8 out on its calibrated scale), each DepthwiseConv1D as one on each output channel's
    taps ``[taps]``, each pooling layer on its input's scale."""
    out = []
    for f, rng in zip(front, ranges):
        cin, cin_p = f.in_dim, pad4(f.in_dim)
        if isinstance(f, ConvLayer):
            if isinstance(f, DepthwiseConvLayer):   # one weight per tap and output channel
                cols, kernel = f.taps, np.asarray(f.kernel, np.float64).reshape(f.taps, f.out_dim)
            else:
                k = np.zeros((f.taps, cin_p, f.out_dim), np.float64)
                k[:, :cin] = f.kernel
                cols, kernel = f.taps * cin_p, k.reshape(f.taps * cin_p, f.out_dim)
            d = DenseLayer(kernel=kernel, bias=np.asarray(f.bias, np.float64), activation=f.activation, name=f.name)
            pad = None
            if f.pad is not None:   # the padding frame on the input's int8 scale (calibration covers it)
                steps = np.asarray(f.pad, np.float64) / x_scale
                if np.abs(steps).max() > 127.5:   # a table activation's output has a fixed scale (+-1)
                    raise RnnskipError(
                        f"'{f.name}' ({f.display}) pads with {float(np.abs(steps).max() * x_scale):.3g} (the input its "
                        f"normalisation maps to 0), outside the int8 range of its input (+-{127 * x_scale:.3g}, the "
                        "output of the layer before it): int8 cannot hold the padding frame; put the normalisation "
                        "before that layer's activation, or after this Conv1D")
                pad = np.zeros(cin_p, np.int64)
                pad[:cin] = np.clip(np.round(steps), -127, 127)
            geometry = dict(dense=quantize_dense(d, x_scale, cols, rng, final=False), taps=f.taps,
                            dilation=f.dilation, strides=f.strides, left=f.left, right=f.right, cin=cin, cin_p=cin_p,
                            name=f.name, pad=pad)
            q = QDepthwise(multiplier=f.multiplier, **geometry) if isinstance(f, DepthwiseConvLayer) else \
                QConv(**geometry)
        else:
            q = QPool(kind=f.kind, window=f.window, strides=f.strides, cin=cin, cin_p=cin_p, scale=x_scale,
                      name=f.name)
        out.append(q)
        x_scale = q.out_scale
    return out


def merge_scale(l) -> float:
    """The scale of a Bidirectional layer's merged int8 output (``golden.merge``): concat and ave keep the
    directions' scale, sum halves its values (scale 2s), mul divides the product by 127 (scale 127 s^2)."""
    s = l.h_scale
    return {"concat": s, "ave": s, "sum": 2 * s, "mul": 127 * s * s}[l.merge_mode]


def quantize_rnn(layer, x_scale: float, in_p: int, ranges: dict):
    """One recurrent layer, by its cell kind (``rnnskip/cells/``); ``ranges``: its calibrated state ranges (and
    ``"norm"``, the max |value| of its layer-normalised input, where it normalises its input)."""
    cell = cell_of(layer.kind)
    msg = cell.activation_refusal(layer)
    if msg:
        raise RnnskipError(msg)
    norm = None
    if layer.input_norm is not None:   # the cell reads the normalised input, on the normalisation's own scale
        n = int(layer.input_dim)
        norm = quantize_input_norm(f"layer '{layer.name}' ({cell.label})", n, float(layer.input_norm), x_scale,
                                   ranges.get("norm", np.sqrt(max(n - 1, 1))))   # |z| <= sqrt(n - 1)
        x_scale = norm.scale
    q = cell.quantize(layer, x_scale, in_p, ranges)
    q.norm = norm
    return q


def quantize(ir: ModelIR, ranges: Ranges, per_feature_inputs: bool = True) -> QModel:
    """Quantise ``ir`` with the activation ranges from :func:`calibrate` (``per_feature_inputs``:
    :func:`feature_scales`)."""
    try:
        return _quantize(ir, ranges, per_feature_inputs)
    except fp.ScaleError as e:
        raise RnnskipError(f"cannot quantise: {e}, so the calibration data's values are far outside what the "
                           f"weights expect; pass data preprocessed (scaled, normalised) as it was for "
                           f"training") from None


def _quantize(ir: ModelIR, ranges: Ranges, per_feature_inputs: bool) -> QModel:
    qm = QModel(token_input=ir.is_token_model, in_dim=ir.input_dim, in_p=pad4(ir.input_dim),
                name=ir.name)
    rnn_layers = list(ir.rnn_layers)
    if isinstance(ir.input, EmbeddingInput):
        s = scale_of(np.abs(ir.input.table).max())
        emb = np.zeros((ir.input.vocab, qm.in_p), dtype=np.int8)
        emb[:, : ir.input.dim] = q8(ir.input.table, s)
        qm.embedding, qm.mask_zero, x_scale = emb, ir.input.mask_zero, s
    else:
        inp: FeatureInput = ir.input
        qm.features, qm.features_p = inp.features, pad4(inp.features)
        qm.mask_value = inp.mask_value
        if inp.center is not None:   # the device quantises x - center; the first layer reads that
            qm.feature_offsets = np.asarray(inp.center, np.float32)
            inp, rnn0 = shift_first_layer(inp, rnn_layers[0])
            rnn_layers[0] = rnn0
        qm.per_feature_inputs = per_feature_inputs and per_feature_input(inp)
        maxabs = np.broadcast_to(np.asarray(ranges.features, np.float64), (inp.features,))   # calibrate: n (x - c)
        qm.feature_scales = feature_scales(maxabs, qm.per_feature_inputs)
        if qm.per_feature_inputs:   # the first layer reads int8 features of unit scale
            inp, x_scale = fold_first_layer(inp, qm.feature_scales), 1.0
        else:
            x_scale = float(qm.feature_scales[0])
            n = norm_scale(inp)
            if n is not None:   # one scale in the normalisation's units: raw units per step differ
                qm.feature_scales = x_scale / n
        if inp.dense is not None:
            qm.input_dense = quantize_dense(inp.dense, x_scale, qm.features_p, ranges.input_dense, final=False)
            x_scale = qm.input_dense.out_scale
        if inp.front:
            qm.front = quantize_front(inp.front, x_scale, ranges.front)
            x_scale = qm.front[-1].out_scale
    in_p = qm.in_p
    states = iter(ranges.states)   # one per direction
    for layer in rnn_layers:
        if layer.backward is None:
            q = quantize_rnn(layer, x_scale, in_p, next(states))
            qm.layers.append(q)
            x_scale, in_p = q.h_scale, q.up
            continue
        # Bidirectional: both directions on one int8 output scale, so the merge is integer arithmetic
        rf, rb = next(states), next(states)
        h = max(rf["h"], rb["h"])
        qf = quantize_rnn(layer, x_scale, in_p, {**rf, "h": h})
        qb = quantize_rnn(layer.backward, x_scale, in_p, {**rb, "h": h})
        qf.direction, qf.merge_mode, qb.direction = "forward", layer.merge_mode, "backward"
        qm.layers += [qf, qb]
        x_scale, in_p = merge_scale(qf), qf.merge_p
    qm.pool, qm.pool_name, qm.pool_steps = ir.pool, ir.pool_name, ir.pool_steps   # the last layer's scale
    if qm.pool:
        in_p = qm.pool_width
    for i, d in enumerate(ir.head):
        final = i == len(ir.head) - 1
        norm = None if d.norm_epsilon is None else quantize_norm(d, x_scale, ranges.head_norm[i] if i < len(
            ranges.head_norm) else np.sqrt(max(d.in_dim - 1, 1)))   # ranges without it: |z| <= sqrt(n - 1)
        q = quantize_dense(d, x_scale if norm is None else norm.scale, in_p, ranges.head[i], final=final)
        q.norm = norm
        qm.head.append(q)
        x_scale, in_p = q.out_scale, q.rows
    qm.output_dim = ir.output_dim
    qm.output_activation = ir.output_activation
    qm.per_step = bool(ir.per_step)
    qm.output_scale = x_scale
    return qm
