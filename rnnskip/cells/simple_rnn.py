"""SimpleRNN (Keras ``SimpleRNN``, ``SimpleRNNCell`` in ``RNN``): ``h = act(x W + b + h U)``.

One plane ``a`` (the pre-activation), filled by one int8 mat-vec ``[W_x | W_h]`` on
``xh = [x | h]``, one accumulator scale per row. The state is the int8 h alone::

    table activations (tanh, sigmoid, ...):  h8 = sat8(rq(act(pre(a)), h_mult, h_ls))   (pre Q3.12 -> Q0.15)
    relu, linear:                            h8 = sat8(rq(a)), then max(h8, 0) for relu

(relu/linear requantise the accumulator straight onto the hidden scale: a Q3.12
pre-activation would clip a relu state at 8). As a delta network it is the paper's
formulation with one running sum per unit.

C: ``rnnskip_rnn_cell_s16`` in rnnskip_rnn_cell.h.
"""
from __future__ import annotations

import numpy as np

from ..quant import fixedpoint as fp
from ..quant.act import LUTS
from .base import Cell, fused_block, pad4, planes16, put_gate_rows, real_bias, real_weights, scale_of


class SimpleRNN(Cell):
    kind = "simple_rnn"
    label = "SimpleRNN"
    keras_classes = ("SimpleRNN",)
    keras_cell_classes = ("SimpleRNNCell",)
    gates = 1
    gated = False
    float_state = ("h",)
    golden_state = ("h8",)
    template = "simple_rnn.c.j2"
    c_header = "rnnskip_rnn_cell.h"

    onnx_op = "RNN"

    @classmethod
    def to_keras(cls, keras, layer, return_sequences, name=None):
        from ..converter.support import file_name
        return keras.layers.SimpleRNN(layer.units, activation=file_name(layer.activation),
                                      return_sequences=return_sequences, name=name)

    # ---- float -------------------------------------------------------------------
    @classmethod
    def float_pre(cls, ops, w, x, h):
        return x @ w["kernel"] + w["bias"] + h @ w["recurrent_kernel"]   # Keras' order of the sums

    @classmethod
    def float_cell(cls, acts, state, acc):
        return (acts[0](acc),)

    # ---- quantisation ------------------------------------------------------------
    @classmethod
    def quantize(cls, layer, x_scale, in_p, ranges):
        U = layer.units
        h_scale = scale_of(ranges["h"])
        table = layer.activation in LUTS
        a = fused_block("a", np.asarray(layer.kernel, np.float64), np.asarray(layer.recurrent_kernel, np.float64),
                        np.asarray(layer.bias, np.float64), x_scale, h_scale, (0,), U, pad4(U), in_p, row0=0,
                        to_q12=table)
        # tables: h8 from the Q0.15 activation; relu/linear: the block's multipliers already give h8
        return cls.new_qrnn(layer, x_scale, in_p, ranges, [a], fp.Q15, {})

    @classmethod
    def dequantize(cls, q):
        U, up, n = q.units, q.up, q.in_dim
        kT, rT, b = np.zeros((U, n)), np.zeros((U, U)), np.zeros(U)
        a = q.block("a")
        put_gate_rows(kT, real_weights(a, slice(0, n), q.x_scale), (0,), U, up)
        put_gate_rows(rT, real_weights(a, slice(q.in_p, q.in_p + U), q.h_scale), (0,), U, up)
        put_gate_rows(b, real_bias(a), (0,), U, up)
        return {"kernel": kT.T, "recurrent_kernel": rT.T, "bias": b}

    # ---- golden model ------------------------------------------------------------
    @classmethod
    def golden_cell(cls, l, s, acc):
        pre = planes16(l, acc)
        if l.activation in LUTS:
            return {"h8": fp.sat8(fp.requantize(fp._lut_eval(pre, LUTS[l.activation]), l.h_mult, l.h_ls))}
        h8 = fp.sat8(pre)
        return {"h8": np.maximum(h8, 0) if l.activation == "relu" else h8}
