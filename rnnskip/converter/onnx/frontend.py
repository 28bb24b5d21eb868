"""Handlers of the streamed front end (Conv, MaxPool, AveragePool, Pad, BatchNormalization on
[batch, channels, time]) and of activations.
"""
from __future__ import annotations

from dataclasses import replace
from typing import List, Optional, Tuple

import numpy as np

from rnnskip.converter import support
from rnnskip.converter.ir import ConvLayer, DepthwiseConvLayer, PoolLayer
from rnnskip.converter.onnx.dense import _add_dense
from rnnskip.converter.onnx.symbolic import (
    SEQ,
    STATE,
    VEC,
    ZEROS,
    Sym,
    X,
    _affine_of,
    _Ctx,
    _data,
    _f32,
    _norm,
    _shape_like,
)

# --------------------------------------------------------------------------
# handlers: the streamed front end (Conv, MaxPool, AveragePool, Pad on [batch, channels, time])

_FRONT_AXES = "[batch, channels, time] (x.transpose(1, 2) of [batch, time, features])"


def _front_input(ctx: _Ctx, what: str) -> Sym:
    """The input of a front-end node: the model's features (or an earlier front-end layer's output) as
    [batch, channels, time]; fixes the batch and time roles of its axes."""
    r, s = ctx.r, ctx.inp(0)
    if s is None or s.kind != X or r.rnns:
        ctx.fail(f"reads {s.kind if s is not None else '?'} data: rnnskip streams {what} only between the float "
                 "input and the first recurrent layer")
    if r.embedding is not None:
        ctx.fail(f"follows the embedding: rnnskip streams {what} front ends on float features, not on token ids")
    if r.input_dense is not None or r.input_more:
        ctx.fail("follows a per-step MatMul: rnnskip streams a Conv front end on the input features and runs "
                 "per-step MatMul+Add layers after it, not before it")
    if len(s.axes) != 3 or s.axes[1] != "F" or any(ax in ("D", "1", "F", "B") for ax in (s.axes[0], s.axes[2])):
        ctx.fail(f"reads axes {s.axes}: rnnskip streams {what} over {_FRONT_AXES}")
    n, t = s.axes[0], s.axes[2]
    if r.roles.get(n, "N") != "N" or r.roles.get(t, "T") != "T":
        ctx.fail(f"runs over the batch axis: rnnskip streams {what} over {_FRONT_AXES}")
    r.roles[n], r.roles[t] = "N", "T"
    return s


def _front_output(ctx: _Ctx, s: Sym, layer, width: int) -> List[Sym]:
    """The output frames of front-end ``layer``: a new time axis (its length is the layer's frame count)."""
    r = ctx.r
    r.front.append(layer)
    t = f"{s.axes[2]}:{len(r.front)}"
    r.roles[t] = "T"
    return [Sym(X, axes=(s.axes[0], "F", t), width=width, conv=layer if isinstance(layer, ConvLayer) else None)]


def _one_int(ctx: _Ctx, attr: str, default: int) -> int:
    v = [int(x) for x in ctx.attrs.get(attr, [default])]
    if len(v) != 1:
        ctx.fail(f"has {attr} {v}: rnnskip streams 1-D operations over {_FRONT_AXES}")
    return v[0]


def _time_pads(ctx: _Ctx, window: int, stride: int) -> Tuple[int, int]:
    """(before, after) zero frames of a Conv / pooling node from pads or auto_pad."""
    auto = str(ctx.attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if stride != 1:
            ctx.fail(f"has auto_pad={auto} with stride {stride}: its padding then depends on the sequence length, "
                     "which a stream does not know in advance; rnnskip streams it with stride 1 (or give pads)")
        total = window - 1
        before = total // 2 if auto == "SAME_UPPER" else total - total // 2
        return before, total - before
    if auto not in ("NOTSET", "VALID"):
        ctx.fail(f"has auto_pad={auto}: not supported")
    pads = [int(x) for x in ctx.attrs.get("pads", [0, 0])] if auto == "NOTSET" else [0, 0]
    if len(pads) != 2:
        ctx.fail(f"has pads {pads}: rnnskip streams 1-D operations over {_FRONT_AXES}")
    return pads[0], pads[1]


def h_conv(ctx: _Ctx):
    """Conv over [batch, channels, time] (torch nn.Conv1d): a streamed front-end layer, as Keras' Conv1D. Its zero
    padding (pads, auto_pad, or a Pad before it) must be one a stream can run: none (valid), window - 1 frames
    before (causal), or with stride 1 Keras' 'same' split."""
    s = _front_input(ctx, "Conv")
    W = np.asarray(ctx.const(1, "W"), np.float64)
    if W.ndim != 3:
        ctx.fail(f"is a {W.ndim - 2}-D convolution: rnnskip streams 1-D convolutions over {_FRONT_AXES}")
    group = int(ctx.attrs.get("group", 1))
    cout, cin, k = W.shape
    depthwise = group > 1 and cin == 1 and cout % group == 0 and (not s.width or s.width == group)
    if group != 1 and not depthwise:
        ctx.fail(f"has group={group} with a weight of {W.shape[1]} input channel(s) per group: rnnskip streams "
                 "convolutions with group=1 and depthwise ones (group = the input channels, nn.Conv1d(C, C * m, k, "
                 "groups=C)), not other grouped convolutions")
    cin = cin * group
    if s.width and cin != s.width:
        ctx.fail(f"has a weight for {cin} input channels on {s.width}: the graph is inconsistent")
    if [int(v) for v in ctx.attrs.get("kernel_shape", [k])] != [k]:
        ctx.fail(f"has kernel_shape {ctx.attrs.get('kernel_shape')} for a weight of {k} taps: the graph is "
                 "inconsistent")
    stride, dilation = _one_int(ctx, "strides", 1), _one_int(ctx, "dilations", 1)
    window = dilation * (k - 1) + 1
    before, after = _time_pads(ctx, window, stride)
    before, after = before + s.tpad[0], after + s.tpad[1]
    same = ((window - 1) // 2, window - 1 - (window - 1) // 2)
    if (before, after) == (0, 0):
        padding = "valid"
    elif (before, after) == (window - 1, 0):
        padding = "causal"
    elif stride == 1 and (before, after) == same:
        padding = "same"
    else:
        ctx.fail(f"pads the time axis with {before} frames before and {after} after (a {window}-frame window, "
                 f"stride {stride}): rnnskip streams a Conv with no padding, with {window - 1} frames before "
                 f"(causal: F.pad(x, ({window - 1}, 0))) or, with stride 1, {same[0]} before and {same[1]} after "
                 "('same')")
    bias = np.asarray(ctx.const(2, "B"), np.float64).reshape(-1) if ctx.inp(2) is not None else np.zeros(cout)
    if bias.shape != (cout,):
        ctx.fail(f"has a bias of shape {bias.shape} for {cout} channels: the graph is inconsistent")
    if depthwise:   # torch's output channel c * m + j reads input channel c, as Keras' DepthwiseConv1D
        conv = DepthwiseConvLayer(kernel=_f32(W[:, 0].reshape(group, cout // group, k).transpose(2, 0, 1)),
                                  bias=_f32(bias), strides=stride, dilation=dilation, padding=padding, name=ctx.key)
    else:
        conv = ConvLayer(kernel=_f32(W.transpose(2, 1, 0)), bias=_f32(bias), strides=stride, dilation=dilation,
                         padding=padding, name=ctx.key)
    status = "converted (streamed front end" + (", depthwise)" if depthwise else ")")
    if s.affine is not None:   # a BatchNormalization on its input: into the kernel, padded with what it maps to 0
        a, b = _affine_of(ctx, s, conv.kernel.shape[1])
        flat = support.neutral_input(a, b)
        if padding != "valid" and isinstance(flat, int):
            ctx.fail(f"is padded ({padding}) after a BatchNormalization that maps channel {flat} to a constant other "
                     "than 0: no input frame normalises to the zeros the Conv pads with, so the fold cannot pad the "
                     "raw input; rnnskip folds it before a Conv without padding (or put it after the Conv)")
        if not ctx.r.front:   # normalises the model input: the device centres it
            ctx.r.center = support.input_center(a, b)
        support.fold_before_conv(conv, a, b)
        status += ", the BatchNormalization before it folded in" + (
            " (padded with the input it maps to 0)" if conv.pad is not None else "")
    return _front_output(ctx, s, conv, cout), status


def h_pool(ctx: _Ctx):
    """MaxPool / AveragePool over [batch, channels, time] (torch nn.MaxPool1d / nn.AvgPool1d): a streamed front-end
    layer, as Keras' MaxPooling1D / AveragePooling1D, without padding."""
    s = _front_input(ctx, ctx.op)
    if s.tpad != (0, 0):
        ctx.fail("reads a Pad's output: rnnskip streams pooling without padding")
    if not s.width:
        ctx.fail("reads an input whose channel count the graph does not declare: rnnskip needs a static feature "
                 "axis before a first pooling layer")
    size = _one_int(ctx, "kernel_shape", 0)
    stride, dilation = _one_int(ctx, "strides", 1), _one_int(ctx, "dilations", 1)
    if dilation != 1:
        ctx.fail(f"has dilations [{dilation}]: rnnskip streams pooling without dilation")
    if _time_pads(ctx, size, stride) != (0, 0):
        ctx.fail("pads the time axis: rnnskip streams pooling without padding (its padding would depend on where "
                 "the sequence ends)")
    if int(ctx.attrs.get("ceil_mode", 0)):
        ctx.fail("has ceil_mode=1: its last window depends on where the sequence ends; rnnskip streams pooling with "
                 "ceil_mode=0")
    if size < 1 or stride < 1:
        ctx.fail(f"has kernel_shape [{size}], strides [{stride}]: rnnskip reads one positive size each")
    pool = PoolLayer("max" if ctx.op == "MaxPool" else "avg", size, stride, s.width, name=ctx.key)
    out = _front_output(ctx, s, pool, s.width)
    c = s.conv or s.act_conv
    if pool.kind == "max" and c is not None and c.activation == "linear":   # act(max(z)) = max(act(z)): monotone
        out[0].act_conv = c
    return out, "converted (streamed front end)"


def h_pad(ctx: _Ctx):
    """Pad with zeros of the time axis of [batch, channels, time] (torch F.pad(x, (k - 1, 0)) for a causal Conv):
    folded into the Conv that reads it."""
    s = ctx.inp(0)
    if s.kind == ZEROS or not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
    if str(ctx.attrs.get("mode", "constant")) != "constant":
        ctx.fail(f"has mode={ctx.attrs.get('mode')}: rnnskip folds a zero Pad of the time axis into the next Conv")
    pads = ([int(v) for v in ctx.attrs["pads"]] if "pads" in ctx.attrs
            else [int(v) for v in np.asarray(ctx.const(1, "pads")).reshape(-1)])
    value = (float(ctx.attrs.get("value", 0.0)) if ctx.inp(2) is None
             else float(np.asarray(ctx.const(2, "constant_value")).reshape(-1)[0]))
    rank = len(s.axes)
    axes = list(range(rank)) if ctx.inp(3) is None else [_norm(int(a), rank) for a in
                                                         np.asarray(ctx.const(3, "axes")).reshape(-1)]
    if len(pads) != 2 * len(axes):
        ctx.fail(f"has pads {pads} for axes {axes}: the graph is inconsistent")
    before = dict(zip(axes, pads[:len(axes)]))
    after = dict(zip(axes, pads[len(axes):]))
    if s.kind != X or rank != 3 or s.axes[1] != "F" or value != 0.0 or \
            any(before.get(i, 0) or after.get(i, 0) for i in (0, 1)) or min(pads) < 0:
        ctx.fail(f"pads {s.kind} data with axes {s.axes} by {pads} (value {value:g}): rnnskip folds a zero Pad of "
                 f"the time axis of {_FRONT_AXES} into the Conv that reads it")
    return [replace(s, tpad=(s.tpad[0] + before.get(2, 0), s.tpad[1] + after.get(2, 0)), conv=None, act_conv=None)], \
        "folded (padding of the next Conv)"


def h_batch_norm(ctx: _Ctx):
    """BatchNormalization at inference (nn.BatchNorm1d on [batch, features]) is x -> a x + b per feature: folded
    into the Dense layer before it when it follows one directly, else into the Dense layer after it."""
    s = ctx.inp(0)
    if not _data(s.kind):
        ctx.fail("on constants is not folded by rnnskip")
    if int(ctx.attrs.get("training_mode", 0)):
        ctx.fail("runs in training mode: export the model after model.eval()")
    channels_first = s.kind == X and len(s.axes) == 3 and s.axes[1] == "F" and not ctx.r.rnns
    if not channels_first and (len(s.axes) < 2 or s.axes[1] != "F" or
                               any(ax not in ("D", "1") for ax in s.axes[2:])):
        ctx.fail(f"normalises axis 1 of data with axes {s.axes}: rnnskip folds a BatchNormalization of "
                 "[batch, features] (nn.BatchNorm1d before or after the head's nn.Linear) or of the "
                 f"{_FRONT_AXES} of a Conv front end")
    scale, bias, mean, var = (np.asarray(ctx.const(i, n), np.float64).reshape(-1)
                              for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
    a = scale / np.sqrt(var + float(ctx.attrs.get("epsilon", 1e-5)))
    b = bias - mean * a
    if s.width and a.size != s.width:
        ctx.fail(f"has {a.size} channels on {s.width} features: the graph is inconsistent")
    if channels_first:
        if s.tpad != (0, 0):
            ctx.fail("normalises a Pad's output, whose zero frames it would shift: rnnskip folds a BatchNormalization "
                     "into the Conv after it when the Pad (or the Conv's own padding) comes after the normalisation")
        c = s.conv
        if c is not None and c.activation == "linear" and s.affine is None:   # after a linear Conv: into it
            support.fold_after_conv(c, a, b)
            return [s], f"folded into '{c.name}' (batch normalisation)"
        d = s.dense
        if c is None and d is not None and d.activation == "linear" and s.affine is None:   # a per-step Dense's
            d.kernel = _f32(np.asarray(d.kernel, np.float64) * a[None, :])
            d.bias = _f32(np.asarray(d.bias, np.float64) * a + b)
            return [s], f"folded into '{d.name}' (batch normalisation)"
        if s.affine is not None:
            a0, b0 = s.affine
            a, b = a0 * a, b0 * a + b
        return [replace(s, affine=(a, b), conv=None, act_conv=None)], \
            "folded (batch normalisation, into the next Conv or recurrent layer)"
    d = s.dense
    if d is not None and d.activation == "linear" and s.affine is None:   # after the Dense: into its outputs
        d.kernel = _f32(np.asarray(d.kernel, np.float64) * a[None, :])
        d.bias = _f32(np.asarray(d.bias, np.float64) * a + b)
        return [s], f"folded into '{d.name}' (batch normalisation)"
    if s.kind not in (STATE, VEC):
        ctx.fail(f"normalises {s.kind} data: rnnskip folds a BatchNormalization into the head's Dense layers")
    if s.affine is not None:   # two in a row compose
        a0, b0 = s.affine
        a, b = a0 * a, b0 * a + b
    # (the Dense before stays named: the next one must read the last head layer; nothing else reads this)
    return [replace(s, affine=(a, b))], "folded (batch normalisation, into the next Dense layer)"


def h_clip(ctx: _Ctx):
    """Clip(0, 6), what nn.ReLU6 (and F.hardtanh(x, 0, 6)) exports: the activation relu6."""
    if ctx.r.opset >= 11:
        lo, hi = (float(np.asarray(ctx.const(i, what)).reshape(-1)[0]) if ctx.inp(i) is not None else None
                  for i, what in ((1, "min"), (2, "max")))
    else:
        lo, hi = ctx.attrs.get("min"), ctx.attrs.get("max")
    if (lo, hi) != (0.0, 6.0):
        ctx.fail(f"clips to [{lo}, {hi}]: rnnskip supports Clip(0, 6) (nn.ReLU6) as an activation")
    return h_activation(ctx, "relu6")


def h_leaky_relu(ctx: _Ctx):
    """LeakyRelu (nn.LeakyReLU, F.leaky_relu; alpha 0.01 by default): the activation leaky_relu(alpha)."""
    alpha = float(ctx.attrs.get("alpha", 0.01))
    if alpha < 0:
        ctx.fail(f"has a negative slope {alpha:g}: rnnskip supports slopes >= 0")
    return h_activation(ctx, support.leaky_relu(alpha))


def _affine_activation(op: str, s: Optional[Sym]) -> bool:
    """An activation on a normalised final state (or its pooling over time), the head's input: it runs as an identity
    Dense whose weights take the normalisation (h_activation)."""
    return op in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip") and s is not None and s.kind == STATE and \
        s.dense is None and s.affine is not None and s.norm is None


def h_activation(ctx: _Ctx, act: Optional[str] = None):
    s = ctx.inp(0)
    act = act or {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
                  "LogSoftmax": "log_softmax"}[ctx.op]
    over_classes = act in support.CLASS_ACTIVATIONS   # the head's last layer only, applied on the host
    if not _data(s.kind):
        ctx.fail("on constants is not folded by rnnskip")
    c = (s.conv or s.act_conv) if s.kind == X else None
    if c is not None and c.activation == "linear" and not over_classes:   # through a MaxPool: it commutes
        c.activation = act
        return [replace(s, conv=None, act_conv=None)], f"folded into '{c.name}' ({act})"
    if s.dense is None and s.kind in (STATE, SEQ) and not over_classes and s.width and \
            (s.affine is None or _affine_activation(ctx.op, s)):
        # on the head's input (a recurrent output, or its pooling): an identity Dense with the activation, which
        # takes a normalisation before it (nn.BatchNorm1d -> nn.ReLU on h_n[-1]) as its weights: diag(a), b
        outs, _ = _add_dense(ctx, s, np.eye(s.width), np.zeros(s.width))
        outs[0].dense.activation = act
        return outs, "converted (an identity Dense with this activation)"
    if s.dense is None or s.dense.activation != "linear" or s.affine is not None:
        ctx.fail("does not follow a Gemm/MatMul(+Add) or a Conv directly: rnnskip folds an activation only into the "
                 "Dense or Conv layer before it, or (not softmax or log_softmax) runs it first in the head, on a "
                 "recurrent output or its pooling over time")
    if over_classes and s.squeezed:
        ctx.fail(f"normalises a one-output head squeezed to [batch] (or [batch, time]): over those axes, not over "
                 f"outputs; rnnskip supports {act} over the features of the last layer")
    if over_classes and s.kind == X:
        ctx.fail(f"follows '{s.dense.name}', a per-step layer before the recurrent layers: rnnskip supports {act} "
                 "only on the head's last layer")
    if over_classes:
        axis = int(ctx.attrs.get("axis", -1 if ctx.r.opset >= 13 else 1))
        if _norm(axis, len(s.axes)) != len(s.axes) - 1 or s.kind != VEC:
            ctx.fail(f"normalises axis {axis}: rnnskip supports {act} over the features of the last layer")
        constant = support.constant_classes(act, s.dense.out_dim)
        if constant:
            ctx.fail(constant)
    s.dense.activation = act
    return [Sym(s.kind, axes=s.axes, width=s.width, layer=s.layer, dense=s.dense, squeezed=s.squeezed)], \
        f"folded into '{s.dense.name}' ({act})"
