"""A per-step Dense (Keras ``Dense`` or ``TimeDistributed(Dense)`` on a recurrent layer's sequence):
``y = act(x W + b)`` at every step, a cell with no recurrent weights.

It runs where Keras runs it: between two recurrent layers or after the last one, before pooling
over time or a Flatten (a linear one between two recurrent layers folds into the next instead:
``cells.base.Cell.fold_input_linear``; an activation alone there runs as one with identity
weights). It is a SimpleRNN without ``h U``: one plane ``a``,
filled by one int8 mat-vec on the layer input ``x`` alone (no recurrent columns, so no MACs or
flash for them), and the same integer cell (``rnnskip_rnn_cell_s16``): a table activation through
Q3.12 -> Q0.15, relu/linear requantised straight onto the output scale. Its "state" is its last
output, which is what the next layer, the pooling or a held (skipped or masked) step reads; before a row's first
step it is its output on the layer before's initial output (act(bias) after a recurrent layer), as in Keras.
"""
from __future__ import annotations

import numpy as np

from ..quant import fixedpoint as fp
from ..quant.act import LUTS, int_activation
from .base import pad4, put_gate_rows, real_bias, real_weights, scale_of, single_block
from .simple_rnn import SimpleRNN


class Dense(SimpleRNN):
    kind = "dense"
    label = "Dense"
    keras_classes = ()        # read by the chain assembly (a per-step Dense), not as a recurrent layer
    keras_cell_classes = ()
    recurrent = False
    onnx_op = ""

    @classmethod
    def recurrent_kernel_shape(cls, units: int) -> tuple:
        return (0, units)

    @classmethod
    def activation_refusal(cls, layer):
        from ..converter import support
        if layer.activation in support.PER_STEP_DENSE_ACTIVATIONS:
            return None
        return (f"layer '{layer.name}' (Dense) runs at every step with activation='"
                f"{support.file_name(layer.activation)}': rnnskip supports "
                f"{support.PER_STEP_DENSE_ACTIVATIONS_TEXT} in per-step Dense layers (softmax and log_softmax on "
                "the head's last layer only)")

    @classmethod
    def to_keras(cls, keras, layer, return_sequences, name=None):
        from ..converter.support import file_name
        return keras.layers.Dense(layer.units, activation=file_name(layer.activation), name=name)

    # ---- float -------------------------------------------------------------------
    @classmethod
    def float_pre(cls, ops, w, x, h):
        return x @ w["kernel"] + w["bias"]

    # Keras runs a per-step Dense at every step, masked ones too: before a row's first step it reads the layer
    # before's initial output (a recurrent layer's zeros), which a max pooling or a Flatten then reads
    @classmethod
    def float_initial(cls, ops, w, acts, zero, prev):
        return cls.float_step(ops, w, acts, zero, prev)

    @classmethod
    def golden_initial(cls, l, zero, prev):
        return cls.golden_cell(l, zero, cls.golden_accumulate(l, zero, prev))

    # ---- quantisation ------------------------------------------------------------
    @classmethod
    def quantize(cls, layer, x_scale, in_p, ranges):
        U = layer.units
        table = layer.activation in LUTS
        ranges = dict(ranges, h=min(ranges["h"], int_activation(layer.activation)[1]))
        # tables: Q3.12 pre-activations; relu/linear: the multipliers give the int8 output itself
        a = single_block("a", np.asarray(layer.kernel, np.float64), np.asarray(layer.bias, np.float64), x_scale,
                         (0,), U, pad4(U), in_p, "x", row0=0,
                         out_scale=None if table else scale_of(ranges["h"]))
        return cls.new_qrnn(layer, x_scale, in_p, ranges, [a], fp.Q15, {})

    @classmethod
    def dequantize(cls, q):
        U, up, n = q.units, q.up, q.in_dim
        kT, b = np.zeros((U, n)), np.zeros(U)
        a = q.block("a")
        put_gate_rows(kT, real_weights(a, slice(0, n), q.x_scale), (0,), U, up)
        put_gate_rows(b, real_bias(a), (0,), U, up)
        return {"kernel": kT.T, "recurrent_kernel": np.zeros(cls.recurrent_kernel_shape(U)), "bias": b}
