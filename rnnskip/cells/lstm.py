"""LSTM (Keras ``LSTM``, ``LSTMCell`` in ``RNN``, ``CuDNNLSTM``).

Float (Keras): gates ``i, f, g, o`` = ``x W + h U + b`` split in four,
``c = f*c + i*g(...)``, ``h = o * act(c)`` with i, f, o through ``recurrent_activation``.

Integer: one int8 mat-vec ``[W_x | W_h]`` on ``xh = [x | h]`` fills the four planes
(rows quantised per row on a shared accumulator scale); pre-activations Q3.12; gate
outputs Q0.15 (table activations) or Q3.12 (relu, linear: ``qa``/``qr`` below); cell
state int16 at ``2^-cell_shift`` (chosen from the calibrated range of c)::

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
from .base import Cell, cell_shift_for, fused_block, pad4, planes16, scale_of


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
        cell_shift = cell_shift_for(ranges.get("c", 0.0))
        h_scale = scale_of(ranges["h"])
        kernel = np.asarray(layer.kernel, np.float64)
        recurrent = np.asarray(layer.recurrent_kernel, np.float64)
        gates = fused_block("gates", kernel, recurrent, np.asarray(layer.bias, np.float64), x_scale, h_scale,
                            range(4), U, pad4(U), in_p, row0=0)
        # h8 is requantised from o * act(c): Q0.15 for table activations, the cell's format otherwise
        h_q = fp.Q15 if layer.activation in LUTS else cell_shift
        return cls.new_qrnn(layer, x_scale, in_p, ranges, [gates], h_q, {"cell_shift": cell_shift})

    # ---- golden model ------------------------------------------------------------
    @classmethod
    def golden_cell(cls, l, s, acc):
        U, cs = l.up, l.options["cell_shift"]
        a, ra = l.activation, l.recurrent_activation
        qa, qr = out_q(a), out_q(ra)
        pre = planes16(l, acc)
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

    # ---- C -------------------------------------------------------------------------
    @classmethod
    def c_state(cls, l, i):
        return [("int16_t", f"c{i}", l.up, f"cell state, scale 2^-{l.options['cell_shift']}")]
