"""LSTM (Keras ``LSTM``, ``LSTMCell`` in ``RNN``, ``CuDNNLSTM``).

Float (Keras): gates ``i, f, g, o`` = ``x W + h U + b`` split in four,
``c = f*c + i*g(...)``, ``h = o * act(c)`` with i, f, o through ``recurrent_activation``.

Integer: ``[W_x | W_h]`` fills the four gate planes ``[i | f | g | o]`` from ``xh = [x | h]``,
rows quantised per row on one shared accumulator scale, while that scale leaves both halves
at least ``SHARED_MIN_LEVELS`` int8 levels on the layer's median row. Otherwise (an input range
wide against the hidden state's, as a Conv1D front end's ReLU output against tanh's +-1, leaves
the recurrent weights a few levels) the halves are kept apart as CMSIS-NN's and TFLite's int8
LSTMs keep input-to-gate and recurrent-to-gate weights: ``W_x`` on ``x`` fills
``[ix | fx | gx | ox]``, ``W_h`` on ``h`` fills ``[ih | fh | gh | oh]``, each row on its own
scale, and each half is requantised to Q3.12 before they are added and saturated,
``pre = sat16(rq(acc_x) + rq(acc_h))`` (one more requantisation per gate row and step, and
``16 up`` bytes of accumulators; saturating each half first would clip a gate whose halves are
large and cancel, as raw inputs make them: +40 and -35 gave 8 - 8 = 0); each row's bias goes
to the half with the finer scale. Pre-activations Q3.12; gate outputs Q0.15 (table
activations) or Q3.12 (relu gates: ``qr`` below). A relu or linear candidate ``g`` keeps its
pre-activation (with split scales: each half) on its own int16 format, ``qa = cand_q``
fractional bits chosen from its calibrated range (Q3.12 while that stays within +-8: a model
fed raw values, readings of 20-80, takes g far past it); tables: ``qa`` = 15. Cell state int16 at
``2^-cell_shift`` (chosen from the calibrated range of c; relu/linear down to 0 fractional bits)::

    c  = sat16(rshift(f*c, qr) + rshift(i*g, qr + qa - cell_shift))
    t  = act(c)    (tables: of c as Q3.12 -> Q0.15; relu/linear: c itself at 2^-cell_shift)
    h8 = sat8(rq(rshift(o*t, qr), h_mult, h_ls))

C: ``rnnskip_lstm_cell_s16`` in rnnskip_lstm_cell.h, called on ``s->acc`` (dense) or a
delta network's running sums.
"""
from __future__ import annotations

import numpy as np

from ..quant import fixedpoint as fp
from ..quant.act import LUTS, act_q, out_q
from .base import (
    Cell,
    candidate_q_for,
    cell_shift_for,
    fused_block,
    pad4,
    planes16,
    planes_rq,
    put_gate_rows,
    real_bias,
    real_weights,
    row_scale,
    scale_of,
    single_block,
)

#: the fewest int8 levels either half of the median row may keep on the shared row scale (5 bits)
SHARED_MIN_LEVELS = 32


class LSTM(Cell):
    kind = "lstm"
    label = "LSTM"
    keras_classes = ("LSTM", "LSTMV1", "CuDNNLSTM")
    keras_cell_classes = ("LSTMCell",)
    gates = 4
    float_state = ("h", "c")
    golden_state = ("h8", "c")
    template = "lstm.c.j2"
    c_header = "rnnskip_lstm_cell.h"

    # ---- Keras -------------------------------------------------------------------
    @classmethod
    def from_cudnn(cls, kernel, recurrent_kernel, bias):
        """CuDNN layout -> LSTM, as Keras converts it when loading: per gate the input kernel
        transposed and re-laid out C <-> Fortran, the recurrent kernel transposed; the input
        and recurrent bias halves summed."""
        def per_gate(m, fn):
            return np.hstack([fn(b) for b in np.hsplit(np.asarray(m), 4)])
        k = per_gate(kernel, lambda b: b.T.reshape(b.shape, order="F"))
        r = per_gate(recurrent_kernel, lambda b: b.T)
        b = np.asarray(bias)
        return k, r, b[: b.size // 2] + b[b.size // 2:]

    @classmethod
    def to_keras(cls, keras, layer, return_sequences, name=None):
        from ..converter.support import file_name
        return keras.layers.LSTM(layer.units, activation=file_name(layer.activation),
                                 recurrent_activation=file_name(layer.recurrent_activation),
                                 return_sequences=return_sequences, name=name)

    # ---- ONNX --------------------------------------------------------------------
    onnx_op = "LSTM"
    onnx_gate_order = (0, 2, 3, 1)   # ONNX blocks i, o, f, c -> Keras i, f, c, o
    onnx_activations = ("Sigmoid", "Tanh", "Tanh")

    @classmethod
    def from_onnx(cls, attrs, acts, b_in, b_rec):
        if len(acts) != 3 or acts[1] != acts[2]:
            return (f"uses activations {attrs.get('activations')}: rnnskip's LSTM has one activation for the "
                    "candidate and the cell output (g = h)")
        return {"bias": b_in + b_rec, "activation": acts[1], "recurrent_activation": acts[0], "options": {}}

    # ---- float -------------------------------------------------------------------
    @classmethod
    def float_pre(cls, ops, w, x, h):
        return x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]

    @classmethod
    def float_cell(cls, acts, state, acc):
        act, ract = acts
        U = acc.shape[-1] // 4
        c = ract(acc[..., U:2 * U]) * state[1] + ract(acc[..., :U]) * act(acc[..., 2 * U:3 * U])
        return (ract(acc[..., 3 * U:]) * act(c), c)

    # ---- quantisation ------------------------------------------------------------
    @classmethod
    def quantize(cls, layer, x_scale, in_p, ranges):
        U = layer.units
        own = layer.activation not in LUTS   # relu/linear: c and g on formats from their ranges
        h_scale = scale_of(ranges["h"])
        up = pad4(U)
        kernel = np.asarray(layer.kernel, np.float64)
        recurrent = np.asarray(layer.recurrent_kernel, np.float64)
        bias = np.asarray(layer.bias, np.float64)
        levels = shared_levels(kernel, recurrent, x_scale, h_scale)
        cand_q = candidate_q_for(ranges.get("cand", 0.0))   # g's pre-activation (split: its halves' sum)
        cell_shift = cell_shift_for(ranges.get("c", 0.0), least=0 if own else 8)
        if own:   # the i*g product's shift, qr + qa - cell_shift, stays >= 1: c gives up precision, g never clips
            cell_shift = min(cell_shift, out_q(layer.recurrent_activation) + cand_q - 1)
        frac = {2: cand_q} if own else None
        if levels >= SHARED_MIN_LEVELS:
            blocks = [fused_block("gates", kernel, recurrent, bias, x_scale, h_scale, range(4), U, up, in_p, row0=0,
                                  frac=frac)]
        else:
            # each row's bias on the finer of its halves' scales (a row of zero weights: 1 x its operand's)
            on_x = row_scale(kernel, x_scale) <= row_scale(recurrent, h_scale)
            blocks = [single_block("gates_x", kernel, np.where(on_x, bias, 0.0), x_scale, range(4), U, up, in_p,
                                   "x", row0=0, frac=frac),
                      single_block("gates_h", recurrent, np.where(on_x, 0.0, bias), h_scale, range(4), U, up, up,
                                   "h", row0=4 * up, frac=frac)]
        # h8 is requantised from o * act(c): Q0.15 for table activations, the cell's format otherwise
        h_q = fp.Q15 if layer.activation in LUTS else cell_shift
        options = {"cell_shift": cell_shift, "split": len(blocks) == 2, "shared_levels": levels}
        return cls.new_qrnn(layer, x_scale, in_p, ranges, blocks, h_q, dict(options, cand_q=cand_q) if own else options)

    @classmethod
    def split_cost(cls, up: int) -> tuple:
        """(flash, RAM) bytes split scales add to a layer of ``up`` padded units: the recurrent half's
        int32 bias and multiplier per gate row (4 up rows each), its four int32 accumulator planes (RAM
        only where this layer has the model's largest accumulator set: the layers share one)."""
        return 2 * 4 * up * 4, 4 * up * 4

    @classmethod
    def calibration_note(cls, q) -> str:
        flash, ram = cls.split_cost(q.up)
        who = f"{q.name} ({q.direction})" if q.direction else q.name
        return (f"LSTM '{who}': shared or split input/recurrent weight scales is decided on the calibration "
                f"ranges (split when either half keeps fewer than {SHARED_MIN_LEVELS} int8 levels); the sizes "
                f"below are for split, which costs {flash:,} B more flash and up to {ram:,} B more RAM than shared")

    @classmethod
    def calibration_flash(cls, q):
        return 0 if q.options.get("split") else cls.split_cost(q.up)[0]

    @classmethod
    def calibration_acc_rows(cls, q):
        return 8 * q.up    # split: input and recurrent halves, four planes each

    @classmethod
    def dequantize(cls, q):
        U, up, n = q.units, q.up, q.in_dim
        kT, rT, b = np.zeros((4 * U, n)), np.zeros((4 * U, U)), np.zeros(4 * U)
        if q.options.get("split"):
            bx, bh = q.block("gates_x"), q.block("gates_h")
            parts, blocks = [(bx, slice(0, n), q.x_scale, kT), (bh, slice(0, U), q.h_scale, rT)], (bx, bh)
        else:
            g = q.block("gates")
            parts, blocks = [(g, slice(0, n), q.x_scale, kT), (g, slice(q.in_p, q.in_p + U), q.h_scale, rT)], (g,)
        for blk, cols, scale, dst in parts:
            put_gate_rows(dst, real_weights(blk, cols, scale), range(4), U, up)
        for blk in blocks:
            put_gate_rows(b, real_bias(blk), range(4), U, up)
        return {"kernel": kT.T, "recurrent_kernel": rT.T, "bias": b}

    # ---- golden model ------------------------------------------------------------
    @classmethod
    def golden_cell(cls, l, s, acc):
        U, cs = l.up, l.options["cell_shift"]
        a, ra = l.activation, l.recurrent_activation
        qa, qr = cls.candidate_q(l), out_q(ra)
        pre = cls.gate_pre(l, acc)
        i = act_q(ra, pre[:, 0:U])
        f = act_q(ra, pre[:, U:2 * U])
        g = act_q(a, pre[:, 2 * U:3 * U])
        o = act_q(ra, pre[:, 3 * U:4 * U])
        c = fp.sat16(fp.round_shift(f * s["c"], qr) + fp.round_shift(i * g, qr + qa - cs))
        if a in LUTS:
            t = fp._lut_eval(fp.to_q12(c, cs), LUTS[a])
        else:
            t = act_q(a, c)     # relu / linear of the cell itself, still at 2^-cell_shift
        h8 = fp.sat8(fp.requantize(fp.round_shift(o * t, qr), l.h_mult, l.h_ls))
        return {"h8": h8, "c": c}

    @classmethod
    def gate_pre(cls, l, acc):
        """The int16 pre-activations ``[N, 4 up]`` (i, f, g, o): split scales add the halves' requantised values
        before they saturate."""
        if not l.options.get("split"):
            return planes16(l, acc)
        r = planes_rq(l, acc)
        return fp.sat16(r[:, :4 * l.up] + r[:, 4 * l.up:])

    @classmethod
    def plane_frac(cls, l):
        f = super().plane_frac(l)
        for p in (2, 6) if l.options.get("split") else (2,):   # g, each half with split scales
            f[p * l.up:(p + 1) * l.up] = cls.candidate_q(l) if l.activation not in LUTS else fp.Q12
        return f

    @classmethod
    def float_candidates(cls, w, acts, state, x):
        U = w["recurrent_kernel"].shape[0]
        g = slice(2 * U, 3 * U)   # g's pre-activation (split scales add the halves before they saturate)
        return x @ w["kernel"][:, g] + state[0] @ w["recurrent_kernel"][:, g] + w["bias"][g]

    @classmethod
    def candidate_values(cls, l, s, acc, pre):
        return [cls.gate_pre(l, acc)[:, 2 * l.up:3 * l.up]]

    # ---- C -------------------------------------------------------------------------
    @classmethod
    def c_state(cls, l, i):
        return [("int16_t", f"c{i}", l.up, f"cell state, scale 2^-{l.options['cell_shift']}")]


def shared_levels(kernel, recurrent, x_scale: float, h_scale: float) -> int:
    """On one shared scale per row, ``max(max|W_x| s_x, max|W_h| s_h) / 127``, the int8 levels the
    smaller half keeps (``127 * smaller / larger``) on the median row (rows with both halves nonzero;
    127 when there are none)."""
    sx = np.abs(kernel).max(axis=0) * x_scale if kernel.size else np.zeros(recurrent.shape[1])
    sh = np.abs(recurrent).max(axis=0) * h_scale
    both = (sx > 0) & (sh > 0)
    if not both.any():
        return 127
    ratio = np.minimum(sx[both], sh[both]) / np.maximum(sx[both], sh[both])
    return int(np.floor(127 * np.median(ratio)))

