"""Float IR + calibrated ranges -> QModel (int8 weights, int16 gates, int32 accumulators).

Scheme (TFLite int8 LSTM-like, all symmetric, zero points 0):
- weights int8 per output row, scale max|w_row|/127; a gate's input and
  recurrent weights share one per-row accumulator scale (one mat-vec on [x | h]);
- activations between layers int8, scale max|a|/127 from calibration;
- gate pre-activations int16 Q3.12, gate outputs int16 Q0.15 (LUT sigmoid/tanh);
- LSTM cell state int16 at a power-of-two scale chosen from its calibrated range;
- biases int32 on the accumulator scale; requantisation by (mult, shift) pairs.
"""
from __future__ import annotations

import math

import numpy as np

from ..converter.ir import EmbeddingInput, FeatureInput, ModelIR
from ..errors import RnnskipError
from . import fixedpoint as fp
from .calibrate import Ranges
from .model import QDense, QMat, QModel, QRNN, pad4

_GATE_ACTS = {"sigmoid", "tanh", "hard_sigmoid", "hard_sigmoid_k3", "softsign"}  # table activations


def _scale(maxabs: float, qmax: int = 127) -> float:
    return max(float(maxabs), 1e-8) / qmax


def _row_scales(w_cols: np.ndarray) -> np.ndarray:
    """Per-output scales for a Keras kernel ``[in, out]``: max|column| / 127."""
    m = np.abs(w_cols).max(axis=0) if w_cols.size else np.zeros(w_cols.shape[1])
    return np.where(m > 0, m / 127.0, 1.0)


def _q8(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.clip(np.round(w / s), -127, 127).astype(np.int8)


def _q32(b: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.clip(np.round(b / s), fp.INT32_MIN, fp.INT32_MAX).astype(np.int64)


def _pad_rows(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def quantize_dense(d, in_scale: float, in_p: int, out_max: float, final: bool) -> QDense:
    """Quantise one Dense layer whose int8 input has ``in_p`` (padded) columns."""
    act = d.activation
    if final:
        act = "linear"  # softmax/sigmoid are monotone: the device returns int16 logits
    elif act not in ("linear", "relu") and act not in _GATE_ACTS:
        raise RnnskipError(f"layer '{d.name}' (Dense) activation '{act}' is not supported between layers; "
                           f"use linear, relu, tanh, sigmoid, hard_sigmoid or softsign")
    rows_p = pad4(d.out_dim)
    sw = _row_scales(d.kernel)
    w = np.zeros((rows_p, in_p), dtype=np.int8)
    w[: d.out_dim, : d.in_dim] = _q8(d.kernel, sw).T
    bias = _pad_rows(_q32(d.bias, sw * in_scale), rows_p)
    q = QDense(mat=None, activation=act, out_dim=d.out_dim, in_scale=in_scale, out_scale=0.0, name=d.name)
    if act in _GATE_ACTS:
        eff = sw * in_scale * (1 << fp.Q12)
        q.out_scale = 1.0 / 127.0
        q.out_mult, q.out_ls = fp.quantize_multiplier(2.0 ** -fp.Q15 / q.out_scale)
    else:
        q.out_scale = _scale(out_max, 32767 if final else 127)
        eff = sw * in_scale / q.out_scale
    m, ls = fp.quantize_multipliers(_pad_rows(eff, rows_p))
    q.mat = QMat(w=w, bias=bias, mult=m, ls=ls, input="in")
    return q


def _gate_rows(a: np.ndarray, gates, units: int, up: int) -> np.ndarray:
    """Keras gate-major rows [G*U, ...] -> padded rows for the listed gates [len(gates)*up, ...]."""
    gates = list(gates)
    out = np.zeros((len(gates) * up,) + a.shape[1:], dtype=a.dtype)
    for i, g in enumerate(gates):
        out[i * up: i * up + units] = a[g * units: (g + 1) * units]
    return out


def _fused_mat(Wx, Wh, b, x_scale, h_scale, gates, U, up, in_p) -> QMat:
    """[W_x | W_h] for ``gates`` on one accumulator, quantised per row.

    Row r's accumulator scale is max(max|W_x[:,r]|*s_x, max|W_h[:,r]|*s_h)/127,
    so x-side weights are W_x*s_x/s_acc and h-side W_h*s_h/s_acc (both int8).
    """
    sx = np.abs(Wx).max(axis=0) * x_scale
    sh = np.abs(Wh).max(axis=0) * h_scale
    s_acc = np.maximum(sx, sh) / 127.0
    s_acc = np.where(s_acc > 0, s_acc, 1.0)
    wxq = _q8(Wx * x_scale, s_acc).T      # [G*U, in]
    whq = _q8(Wh * h_scale, s_acc).T      # [G*U, U]
    n = len(gates) * up
    w = np.zeros((n, in_p + up), dtype=np.int8)
    w[:, : Wx.shape[0]] = _gate_rows(wxq, gates, U, up)
    w[:, in_p: in_p + U] = _gate_rows(whq, gates, U, up)
    bias = _gate_rows(_q32(b, s_acc), gates, U, up)
    m, ls = fp.quantize_multipliers(_gate_rows(s_acc * (1 << fp.Q12), gates, U, up))
    return QMat(w=w, bias=bias, mult=m, ls=ls, input="xh")


def _single_mat(W, b, v_scale, gates, U, up, cols, input_name) -> QMat:
    sw = _row_scales(W)
    n = len(gates) * up
    w = np.zeros((n, cols), dtype=np.int8)
    w[:, : W.shape[0]] = _gate_rows(_q8(W, sw).T, gates, U, up)
    bias = _gate_rows(_q32(b, sw * v_scale), gates, U, up)
    m, ls = fp.quantize_multipliers(_gate_rows(sw * v_scale * (1 << fp.Q12), gates, U, up))
    return QMat(w=w, bias=bias, mult=m, ls=ls, input=input_name)


def quantize_rnn(layer, x_scale: float, in_p: int, h_max: float, c_max: float) -> QRNN:
    from .act import check_rnn, hidden_q
    check_rnn(layer)  # activation: any of act.ACT_IDS; recurrent_activation: gates in [0, 1]
    U = layer.units
    up = pad4(U)
    h_scale = _scale(h_max)
    Wx, Wh = np.asarray(layer.kernel, np.float64), np.asarray(layer.recurrent_kernel, np.float64)
    bias = np.asarray(layer.bias, dtype=np.float64)
    cell_shift = 15
    if layer.kind == "lstm":
        mats = {"gates": _fused_mat(Wx, Wh, bias, x_scale, h_scale, range(4), U, up, in_p)}
        if c_max > 1.0:
            cell_shift = max(8, 15 - math.ceil(math.log2(c_max)))
    elif layer.reset_after:
        b_in, b_rec = bias[0], bias[1]
        mats = {"zr": _fused_mat(Wx, Wh, b_in + b_rec, x_scale, h_scale, (0, 1), U, up, in_p),
                "cx": _single_mat(Wx, b_in, x_scale, (2,), U, up, in_p, "x"),
                "ch": _single_mat(Wh, b_rec, h_scale, (2,), U, up, up, "h")}
    else:
        b = bias.reshape(-1)
        mats = {"zr": _fused_mat(Wx, Wh, b, x_scale, h_scale, (0, 1), U, up, in_p),
                "c": _fused_mat(Wx, Wh, b, x_scale, h_scale, (2,), U, up, in_p)}
        mats["c"].input = "xrh"
    h_mult, h_ls = fp.quantize_multiplier(2.0 ** -hidden_q(layer, cell_shift) / h_scale)
    return QRNN(kind=layer.kind, units=U, up=up, in_dim=layer.input_dim, in_p=in_p, mats=mats,
                x_scale=x_scale, h_scale=h_scale, h_mult=h_mult, h_ls=h_ls,
                cell_shift=cell_shift, reset_after=layer.reset_after, name=layer.name,
                activation=layer.activation, recurrent_activation=layer.recurrent_activation)


def quantize(ir: ModelIR, ranges: Ranges) -> QModel:
    """Quantise ``ir`` with the activation ranges from :func:`calibrate`."""
    try:
        return _quantize(ir, ranges)
    except fp.ScaleError as e:
        raise RnnskipError(f"cannot quantise: {e}, so the calibration data's values are far outside what the "
                           f"weights expect; pass data preprocessed (scaled, normalised) as it was for "
                           f"training") from None


def _quantize(ir: ModelIR, ranges: Ranges) -> QModel:
    qm = QModel(token_input=ir.is_token_model, in_dim=ir.input_dim, in_p=pad4(ir.input_dim),
                name=ir.name)
    if isinstance(ir.input, EmbeddingInput):
        s = _scale(np.abs(ir.input.table).max())
        emb = np.zeros((ir.input.vocab, qm.in_p), dtype=np.int8)
        emb[:, : ir.input.dim] = _q8(ir.input.table, s)
        qm.embedding, qm.mask_zero, x_scale = emb, ir.input.mask_zero, s
    else:
        inp: FeatureInput = ir.input
        qm.features, qm.features_p = inp.features, pad4(inp.features)
        qm.feature_scale = _scale(ranges.features)
        qm.mask_value = inp.mask_value
        x_scale = qm.feature_scale
        if inp.dense is not None:
            qm.input_dense = quantize_dense(inp.dense, x_scale, qm.features_p, ranges.input_dense, final=False)
            x_scale = qm.input_dense.out_scale
    in_p = qm.in_p
    for i, layer in enumerate(ir.rnn_layers):
        q = quantize_rnn(layer, x_scale, in_p, ranges.h[i], ranges.c[i])
        qm.layers.append(q)
        x_scale, in_p = q.h_scale, q.up
    for i, d in enumerate(ir.head):
        final = i == len(ir.head) - 1
        q = quantize_dense(d, x_scale, in_p, ranges.head[i], final=final)
        qm.head.append(q)
        x_scale, in_p = q.out_scale, q.rows
    qm.output_dim = ir.output_dim
    qm.output_activation = ir.output_activation
    qm.per_step = bool(getattr(ir, "per_step", False))
    qm.output_scale = x_scale if ir.head else qm.layers[-1].h_scale
    return qm
