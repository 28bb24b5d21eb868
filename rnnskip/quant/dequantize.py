"""The float model with the int8 model's weights: every weight and bias of a QModel back on its
real scale, in the IR's (Keras) layout.

The float reference run on it keeps activations and state in float and uses exactly the weights
the int8 model computes with, so the int8 model's accuracy loss splits in two: float ->
float with int8 weights is the weights' rounding, the rest is the activations' (int8 inputs and
hidden states, Q3.12 pre-activations, the tables). report.json gives it as
``accuracy.float_int8_weights``.

Each weight is ``w * scale / operand scale``: ``QMat.scale`` is the real value of one accumulator
unit of the row; a first layer that folds per-feature input scales is unfolded (its input axis
divided by them), so the model reads the float features as given.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..cells import cell_of
from ..cells.base import real_bias, real_weights
from ..converter.ir import ConvLayer, DepthwiseConvLayer, EmbeddingInput, ModelIR
from .model import QDense, QModel


def dense_weights(q: QDense, in_dim: int, out_dim: int) -> dict:
    """A Dense layer's real ``kernel`` ``[in, out]`` and ``bias``."""
    return {"kernel": real_weights(q.mat, slice(0, in_dim), q.in_scale)[:out_dim].T,
            "bias": real_bias(q.mat)[:out_dim]}


def has_row_scales(qm: QModel) -> bool:
    """Whether ``qm`` keeps its rows' scales (a stage file written before they were kept does not)."""
    return all(b.scale is not None for b in qm.all_mats())


def int8_weights_ir(ir: ModelIR, qm: QModel) -> ModelIR:
    """``ir`` with the weights of ``qm`` (quantised from it)."""
    if not has_row_scales(qm):
        raise ValueError("the quantised model has no row scales (written before they were kept)")
    inp, rnns = _input(ir, qm), _recurrent(ir, qm)
    if qm.feature_offsets is not None:   # the int8 first layer reads x - offset: back to reading x
        from .quantize import shift_first_layer
        pads = [getattr(f, "pad", None) for f in inp.front]
        inp, rnns[0] = shift_first_layer(inp, rnns[0], undo=True)
        inp = replace(inp, front=[replace(f, pad=p) if isinstance(f, ConvLayer) else f
                                                          for f, p in zip(inp.front, pads)])
    return replace(ir, input=inp, rnn_layers=rnns,
                   head=[replace(d, **dense_weights(q, d.kernel.shape[0], d.kernel.shape[1]))
                         for d, q in zip(ir.head, qm.head)])


def _recurrent(ir: ModelIR, qm: QModel) -> list:
    qs, out = iter(qm.layers), []
    for layer in ir.rnn_layers:
        q = next(qs)
        new = replace(layer, **cell_of(q.kind).dequantize(q))
        if layer.backward is not None:
            qb = next(qs)
            new = replace(new, backward=replace(layer.backward, **cell_of(qb.kind).dequantize(qb)))
        out.append(new)
    return out


def _input(ir: ModelIR, qm: QModel):
    inp = ir.input
    if isinstance(inp, EmbeddingInput):
        dim = inp.table.shape[1]
        return replace(inp, table=qm.embedding[:, :dim].astype(np.float64) * qm.layers[0].x_scale)
    unfold = np.asarray(qm.feature_scales, np.float64) if qm.per_feature_inputs else None
    if inp.dense is not None:
        d = inp.dense
        w = dense_weights(qm.input_dense, d.kernel.shape[0], d.kernel.shape[1])
        if unfold is not None:
            w["kernel"] = w["kernel"] / unfold[:, None]
        inp = replace(inp, dense=replace(d, **w))
    front = []
    for i, (f, q) in enumerate(zip(inp.front, qm.front)):
        if isinstance(f, ConvLayer):
            taps, cin, cout = f.kernel.shape[0], f.in_dim, f.out_dim
            k = real_weights(q.dense.mat, slice(0, q.dense.mat.cols), q.dense.in_scale)[:cout]
            if isinstance(f, DepthwiseConvLayer):
                k = k.T.reshape(f.kernel.shape)                                        # [taps, in, multiplier]
            else:
                k = k.reshape(cout, taps, q.cin_p)[:, :, :cin].transpose(1, 2, 0)     # [taps, in, out]
            if i == 0 and unfold is not None and inp.dense is None:
                k = k / unfold[None, :, None]
            f = replace(f, kernel=k, bias=real_bias(q.dense.mat)[:cout])
        front.append(f)
    return replace(inp, front=front)
