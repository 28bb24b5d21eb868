"""Handlers of the glue PyTorch emits around the model: constants, shapes and layout (Constant, Shape,
Reshape, Transpose, Squeeze, Slice, Concat, Gather, ...) and pooling over time.
"""
from __future__ import annotations

from dataclasses import replace
from typing import List, Optional

import numpy as np

from rnnskip.converter import support
from rnnskip.converter.ir import EmbeddingInput
from rnnskip.converter.onnx.lengths import _gather_flat, _idx_concat, _idx_reshape, _masked_sum
from rnnskip.converter.onnx.recurrent import _steps_of_per_step_head
from rnnskip.converter.onnx.symbolic import (
    BIDI_READ,
    CELL,
    CONST,
    FLAT,
    IDS,
    IDX,
    LENGTHS_READ,
    LENS,
    MASK,
    MSEQ,
    MSUM,
    SEQ,
    SHAPE,
    STATE,
    SUPPORTED_SUMMARY,
    VEC,
    ZEROS,
    Sym,
    X,
    _axes_arg,
    _axis_entry,
    _Ctx,
    _data,
    _f32,
    _last_step,
    _norm,
    _raw_slice_args,
    _roles,
    _shape_like,
    _slice_args,
    _time_label,
)

# --------------------------------------------------------------------------
# handlers: glue

def h_constant(ctx: _Ctx):
    from onnx import numpy_helper
    a = ctx.attrs
    if "value" in a:
        v = numpy_helper.to_array(a["value"])
    elif "value_float" in a or "value_int" in a:
        v = np.asarray(a.get("value_float", a.get("value_int")))
    elif "value_floats" in a or "value_ints" in a:
        v = np.asarray(a.get("value_floats", a.get("value_ints")))
    else:
        ctx.fail("holds a sparse or string constant: rnnskip folds dense numeric constants")
    return [Sym(CONST, value=np.asarray(v))], "folded (constant)"


def h_shape(ctx: _Ctx):
    s = ctx.inp(0)
    if s.kind == CONST:
        return [Sym(CONST, value=np.asarray(s.value.shape, np.int64))], "folded (glue)"
    dims = None
    if _data(s.kind) and s.axes:   # opset 15+: start, end (clamped as Python slices)
        rank = len(s.axes)
        start, end = int(ctx.attrs.get("start", 0)), ctx.attrs.get("end")
        dims = tuple(_axis_entry(s, k) for k in range(rank))[slice(start, None if end is None else int(end))]
    return [Sym(SHAPE, dims=dims)], "folded (glue)"


def h_constant_of_shape(ctx: _Ctx):
    s = ctx.inp(0)
    from onnx import numpy_helper
    value = numpy_helper.to_array(ctx.attrs["value"]) if "value" in ctx.attrs else np.zeros(1, np.float32)
    if s.kind == CONST:
        return [Sym(CONST, value=np.full([int(v) for v in s.value], value.reshape(-1)[0], value.dtype))], \
            "folded (glue)"
    if s.kind == SHAPE:
        if np.any(value != 0):   # shape arithmetic (torch's expand(-1, B, -1) builds its target shape so)
            return [Sym(SHAPE)], "folded (glue)"
        return [Sym(ZEROS, dims=s.dims)], "folded (zero initial state)"
    ctx.fail(f"on model data is not supported: {SUPPORTED_SUMMARY}")


def h_expand(ctx: _Ctx):
    """Expand: torch.onnx.export writes the zero initial states of a graph with static shapes as
    Expand(0, Concat(Shape...)) instead of ConstantOfShape; a constant's expansion folds."""
    s, shape = ctx.inp(0), ctx.inp(1)
    if s.kind == IDX and not _data(shape.kind):   # the per-row index broadcast over the hidden axis (gather)
        return [s], "folded (index glue)"
    if s.kind == ZEROS or (s.kind == CONST and not np.any(s.value) and shape.kind == SHAPE):
        return [Sym(ZEROS, dims=shape.dims if shape.kind == SHAPE else None)], "folded (zero initial state)"
    if s.kind == CONST and shape.kind == CONST:
        return [Sym(CONST, value=s.value * np.ones([int(v) for v in shape.value], s.value.dtype))], "folded (glue)"
    if s.kind == CONST and shape.kind == SHAPE:
        ctx.fail("expands a non-zero constant to a batch-dependent size, as a learned initial state does: rnnskip "
                 "runs every sequence from a zero state (export the model with zero initial states)")
    if s.kind == SHAPE:
        return [Sym(SHAPE)], "folded (glue)"
    ctx.fail(f"on model data is not supported: {SUPPORTED_SUMMARY}")


def h_identity(ctx: _Ctx):
    s = ctx.inp(0)
    return [s], "folded (identity)"


def h_dropout(ctx: _Ctx):
    """Dropout (left in by an exporter that does not drop it): the identity at inference."""
    training = ctx.inp(2)
    if training is not None and (training.kind != CONST or np.any(training.value)):
        ctx.fail("runs in training mode: export the model after model.eval()")
    ctx.r.notes.append(f"dropped Dropout '{ctx.key}' (inference no-op)")
    return [ctx.inp(0)], "dropped (inference no-op)"   # its mask output is never read at inference


#: Casts that keep every float32 value (the reference computes in float64)
_FLOAT_CASTS = {1: "float", 11: "double"}   # TensorProto.FLOAT, DOUBLE (onnx is imported lazily)


def h_cast(ctx: _Ctx):
    """Cast of the token ids or lengths (between integer types) passes them on; a zero state or float data cast to
    float or double (torch's ``.to(device)`` on ``torch.zeros(..)``, ``x.float()`` on float32 input) keeps its
    values; else shape glue."""
    s = ctx.inp(0)
    if s.kind in (MASK, LENS):   # to float for a product or a division: the same values
        return [s], "folded (glue)"
    to = ctx.attrs.get("to")
    if s.kind == ZEROS and to in _FLOAT_CASTS:
        return [s], "folded (zero initial state)"
    if s.kind in (X, SEQ, STATE, VEC) and to in _FLOAT_CASTS:
        return [s], f"folded (cast to {_FLOAT_CASTS[to]}: float values)"
    if s.kind in (IDS, LENS, IDX):
        from onnx import helper
        if not np.issubdtype(helper.tensor_dtype_to_np_dtype(ctx.attrs["to"]), np.integer):
            ctx.fail("casts the token ids to a non-integer type: rnnskip reads ids as integers")
        return [s], "folded (glue)"
    return _shape_like(ctx), "folded (glue)"


def h_generic_shape(ctx: _Ctx):
    """Cast, Reshape, arithmetic ... on constants or shape values only."""
    return _shape_like(ctx), "folded (glue)"


def _flattens_time(ctx: _Ctx, s: Sym) -> bool:
    """A Reshape of a recurrent output ``[batch, time, hidden]`` to ``[batch, time * hidden]`` (y.reshape(batch,
    -1), y.flatten(1) with shape glue), its size-1 axes dropped: the target's first entry is the batch (the input's
    batch size, 0, or -1 with the second entry the time and hidden sizes), its second every step's features or
    -1. Batch and time merged (reshape(batch * time, -1)) is not."""
    r = ctx.r
    if _roles(r, s) != ["N", "T", "F"]:
        return False
    kept = [i for i, ax in enumerate(s.axes) if ax not in ("D", "1")]
    tgt, dims_in = ctx.inp(1), r.dims.get(ctx.node.input[0])
    n_ax, t_ax = s.axes[kept[0]], s.axes[kept[1]]
    t = dims_in[kept[1]] if dims_in is not None else None
    if tgt.kind == SHAPE and tgt.dims is not None and None not in tgt.dims and len(tgt.dims) == 2:
        # a target built from shapes, followed symbolically (the batch as the input's own axis)
        steps = [(s.width, (t_ax,))] + ([(t * s.width, ())] if isinstance(t, int) else [])
        return tgt.dims[0] == (1, (n_ax,)) and (tgt.dims[1] == (-1, ()) or tgt.dims[1] in steps)
    if tgt.kind == CONST:
        dims_out = [int(v) for v in np.asarray(tgt.value).reshape(-1)]
    else:   # shape inference's result
        dims_out = r.dims.get(ctx.node.output[0])
    if dims_out is None or len(dims_out) != 2:
        return False
    n = dims_in[kept[0]] if dims_in is not None else None
    whole = isinstance(t, int) and dims_out[1] == t * s.width
    if tgt.kind == CONST:
        return (dims_out[0] in (0, n) and dims_out[1] == -1) or (dims_out[0] in (0, -1, n) and whole)
    return whole and (dims_out[0] == n or not isinstance(dims_out[0], int))


def _flatten_time(ctx: _Ctx, s: Sym) -> Sym:
    """Every step's output side by side, as Keras' Flatten over time: the head reads them once (a pooling of kind
    "flatten" over the input's fixed number of steps)."""
    r = ctx.r
    t = r.dims.get(ctx.node.input[0])[[i for i, ax in enumerate(s.axes) if ax not in ("D", "1")][1]]
    if not isinstance(t, int):
        ctx.fail("flattens the time axis of a recurrent output whose number of steps is not fixed: export with a "
                 "fixed sequence length (dynamic axes on the batch only), as the Linear after it needs")
    if s.padded:
        ctx.fail("flattens a recurrent output computed with sequence_lens (zeros after each row's length): rnnskip "
                 "flattens outputs of rows that run every step; export without sequence_lens")
    if any(l.backward is not None for l in ctx.r.rnns[: s.layer + 1]) or "B" in s.axes:
        ctx.fail("flattens the time axis of a bidirectional operator's output: rnnskip flattens the outputs of "
                 "unidirectional layers")
    r.pool_steps = int(t)
    n = next(ax for ax in s.axes if r.roles.get(ax) == "N")
    return Sym(STATE, axes=(n, "F"), width=int(t) * s.width, layer=s.layer, pooled=("flatten", ctx.key))


def h_flatten(ctx: _Ctx):
    """ONNX Flatten: on shapes, glue; on a recurrent output [batch, time, hidden] with axis=1 (torch.flatten(y, 1)),
    every step side by side as Keras' Flatten over time."""
    s = ctx.inp(0)
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
    if s.kind in (SEQ, VEC) and int(ctx.attrs.get("axis", 1)) == 1 and [ax for ax in s.axes if ax not in ("D", "1")] \
            == list(s.axes) and _roles(ctx.r, s) == ["N", "T", "F"]:
        seq = s if s.kind == SEQ else _steps_of_per_step_head(ctx, s)
        if seq is not None:
            return [_flatten_time(ctx, seq)], f"converted (every step side by side: {ctx.r.pool_steps} steps)"
    if s.kind == SEQ and _norm(int(ctx.attrs.get("axis", 1)), len(s.axes)) == 2 and len(s.axes) == 3 and \
            sorted(_roles(ctx.r, s)) == ["F", "N", "T"] and s.axes[2] == "F":
        # [batch * time, hidden] for an indexed Gather (TorchScript's out[arange(B), lengths - 1])
        return [Sym(FLAT, axes=("M", "F"), width=s.width, layer=s.layer, padded=s.padded,
                    merged=(s.axes[0], s.axes[1]))], "folded (glue)"
    ctx.fail(f"flattens {s.kind} data: rnnskip converts a Flatten (axis=1) of a recurrent output [batch, time, "
             "hidden], every step side by side into the head")


def _split_layers(ctx: _Ctx, s: Sym) -> Sym:
    """h_n.view(num_layers, 2, batch, hidden) of stacked bidirectional layers (PyTorch's documented way to read
    them): the layer and direction axes apart (L, B), so h_n[-1] is the last layer's two final states."""
    r, j, n = ctx.r, s.axes.index("LB"), len(s.layers)
    dims_in, dims_out = r.dims.get(ctx.node.input[0]), r.dims.get(ctx.node.output[0])
    if ctx.inp(1).kind == CONST:
        dims_out = [int(v) for v in np.asarray(ctx.inp(1).value).reshape(-1)]
    ok = dims_in is not None and dims_out is not None and len(dims_out) == len(dims_in) + 1 and \
        dims_out[j:j + 2] == [n, 2] and \
        all(a == b or b in (-1, 0, None) or a is None for a, b in zip(dims_in[:j] + dims_in[j + 1:],
                                                                      dims_out[:j] + dims_out[j + 2:]))
    if not ok:
        ctx.fail(f"reshapes the final states of {n} stacked bidirectional layers (h_n) other than into their layer "
                 f"and direction axes (h_n.view(num_layers, 2, batch, hidden)): {BIDI_READ}, of the last layer "
                 f"(h_n[-2], h_n[-1])")
    return Sym(s.kind, axes=s.axes[:j] + ("L", "B") + s.axes[j + 1:], width=s.width, layers=s.layers)


def h_concat(ctx: _Ctx):
    """Shape glue, or PyTorch's h_n / c_n: every layer's final state stacked on the direction axis."""
    ins = ctx.ins
    kinds = {s.kind for s in ins}
    if IDX in kinds:
        return [_idx_concat(ctx)], "folded (index columns)"
    if kinds & {LENS, MASK, MSEQ, MSUM}:
        ctx.fail(LENGTHS_READ)
    if len(kinds) == 1 and kinds <= {STATE, CELL}:
        first = ins[0]
        axis = _norm(int(ctx.attrs.get("axis", 0)), len(first.axes))
        if all(s.axes == first.axes and s.axes[axis] == "B" and s.layer >= 0 and s.direction < 0 and not s.pooled
               and not s.summed for s in ins) and len({s.layer for s in ins}) == len(ins):
            # h_n of nn.LSTM(num_layers=n, bidirectional=True): per layer its two directions' final states (axis LB)
            axes = tuple("LB" if i == axis else ax for i, ax in enumerate(first.axes))
            return [Sym(first.kind, axes=axes, width=first.width, layer=-1,
                        layers=tuple(s.layer for s in ins))], "folded (final states)"
        if any("B" in s.axes for s in ins):
            ctx.fail("concatenates a bidirectional operator's final states with their direction axis in place: "
                     f"{BIDI_READ}")
        if any(s.direction >= 0 for s in ins):
            return [_merge_directions(ctx, ins, axis)], "folded (both directions' final states)"
        if any(s.pooled for s in ins):
            return [_concat_pools(ctx, ins, axis)], "folded (poolings over time side by side)"
        if all(s.axes == first.axes and not s.layers for s in ins) and first.axes[axis] == "D":
            axes = tuple("L" if i == axis else ax for i, ax in enumerate(first.axes))
            return [Sym(first.kind, axes=axes, width=first.width, layer=-1,
                        layers=tuple(s.layer for s in ins))], "folded (final states)"
    return _shape_like(ctx), "folded (glue)"


def _concat_pools(ctx: _Ctx, ins: List[Sym], axis: int) -> Sym:
    """torch.cat([y.mean(1), y.amax(1)], 1): poolings over time of one output side by side, as Keras' Concatenate of
    GlobalAveragePooling1D and GlobalMaxPooling1D."""
    first = ins[0]
    kinds = [s.pooled[0] if s.pooled else "" for s in ins]
    if (not all(kinds) or any(s.layer != first.layer or s.axes != first.axes for s in ins)
            or first.axes[axis] != "F" or len(set(kinds)) != len(kinds) or any("," in k for k in kinds)):
        ctx.fail("concatenates other tensors than one mean and one maximum over time of the same recurrent output on "
                 "the feature axis: rnnskip converts torch.cat([y.mean(1), y.amax(1)], -1) (either order)")
    return Sym(STATE, axes=first.axes, width=first.width * len(ins), layer=first.layer,
               pooled=(",".join(kinds), ctx.key))


def _merge_directions(ctx: _Ctx, ins: List[Sym], axis: int) -> Sym:
    """Concat of a bidirectional operator's two final states on the feature axis, forward first: Keras'
    Bidirectional(merge_mode='concat') output."""
    first = ins[0]
    if (len(ins) != 2 or ins[0].kind != STATE or any(s.layer != first.layer or s.axes != first.axes for s in ins)
            or first.axes[axis] != "F"):
        ctx.fail(f"concatenates {len(ins)} final states that are not the forward and backward state of one "
                 f"operator on the feature axis: {BIDI_READ}")
    dirs = [s.direction for s in ins]
    if dirs != [0, 1]:
        ctx.fail(("concatenates the backward final state before the forward one" if dirs == [1, 0] else
                  f"concatenates the {'forward' if dirs[0] == 0 else 'backward'} final state with itself")
                 + f": {BIDI_READ}")
    _set_merge(ctx, first.layer)
    return Sym(STATE, axes=first.axes, width=2 * first.width, layer=first.layer)


def _set_merge(ctx: _Ctx, layer: int, mode: str = "concat") -> None:
    """How the graph reads the bidirectional layer's two outputs, as Keras' merge_mode: concatenated, forward first;
    summed; or averaged."""
    r = ctx.r.rnns[layer]
    if r.merge_mode and r.merge_mode != mode:
        ctx.fail(f"reads bidirectional operator '{r.name}' merged by {mode} where another node reads it by "
                 f"{r.merge_mode}: rnnskip converts one reading of its outputs")
    r.merge_mode = mode


def _summed_directions(ctx: _Ctx, a: Sym, b: Sym) -> Optional[Sym]:
    """h_n[-2] + h_n[-1] (either order): Keras' Bidirectional(merge_mode='sum') final output; None if a and b are not
    one operator's two final states."""
    if a.kind == b.kind == STATE and a.layer == b.layer and a.axes == b.axes and {a.direction, b.direction} == {0, 1}:
        _set_merge(ctx, a.layer, "sum")
        return Sym(STATE, axes=a.axes, width=a.width, layer=a.layer, summed=True)
    return None


def _folded_without_data(ctx: _Ctx, s: Sym, zeros: str = "glue"):
    """What a layout operator (Transpose, Squeeze, Unsqueeze, Reshape) returns when its input carries no data: a
    zero initial state passes through and a shape computation folds to a shape; None when it carries data."""
    if s.kind == ZEROS:
        return [s], f"folded ({zeros})"
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
    return None


def h_transpose(ctx: _Ctx):
    s = ctx.inp(0)
    folded = _folded_without_data(ctx, s)
    if folded:
        return folded
    perm = ctx.attrs.get("perm", list(range(len(s.axes)))[::-1])
    if sorted(perm) != list(range(len(s.axes))):
        ctx.fail(f"has perm {perm} for a rank-{len(s.axes)} tensor: the graph is inconsistent")
    return [_with_axes(s, tuple(s.axes[p] for p in perm))], "folded (glue)"


def _with_axes(s: Sym, axes, squeezed: Optional[bool] = None, keep_dense: bool = False) -> Sym:
    """``s`` with other axes; a head output keeps its Dense (activations still fold into it) only when its
    one output axis was squeezed away, or (``keep_dense``) only size-1 axes were: both leave the values as
    they are. Per-step input data keeps it (the last Dense of the input chain, as it keeps its Conv): a transpose
    moves the feature axis and back around a BatchNorm1d, elementwise ops commute with it."""
    sq = s.squeezed if squeezed is None else squeezed
    return Sym(s.kind, value=s.value, axes=tuple(axes), width=s.width, layer=s.layer,
               dense=s.dense if keep_dense or (sq and not s.squeezed) or s.kind == X else None, padded=s.padded,
               layers=s.layers, squeezed=sq, direction=s.direction, pooled=s.pooled, affine=s.affine, conv=s.conv,
               tpad=s.tpad, act_conv=s.act_conv, norm=s.norm, norm_node=s.norm_node, terms=s.terms, merged=s.merged)


def _squeezable(s: Sym, ax: str) -> bool:
    """Axis label ``ax`` of ``s`` has size 1 for every input: the direction axis, a size-1 axis, or the
    outputs of a one-output head (a binary classifier's [batch, 1], squeezed to [batch] in PyTorch)."""
    return ax in ("D", "1") or (ax == "F" and s.kind == VEC and s.width == 1)


def h_squeeze(ctx: _Ctx):
    s = ctx.inp(0)
    folded = _folded_without_data(ctx, s)
    if folded:
        return folded
    axes = _axes_arg(ctx)
    rank = len(s.axes)
    # no axes (torch's squeeze()): every size-1 axis, a one-output head's output axis included
    drop = ({_norm(a, rank) for a in axes} if axes is not None
            else {i for i, ax in enumerate(s.axes) if _squeezable(s, ax)})
    for i in drop:
        if not _squeezable(s, s.axes[i]):
            ctx.fail(f"squeezes axis {i}, which is not of size 1 for every input: rnnskip folds squeezes of the "
                     "direction axis, of size-1 axes and of a one-output head's output axis")
    squeezed = s.squeezed or any(s.axes[i] == "F" for i in drop)
    return [_with_axes(s, [ax for i, ax in enumerate(s.axes) if i not in drop], squeezed, keep_dense=True)], \
        "folded (glue)"


def h_reshape(ctx: _Ctx):
    """Reshape: shape glue, zero states (zeros of any shape), or on data only the reshape that drops size-1
    axes - PyTorch's dynamo exporter merges a recurrent output's direction axis (size 1) into its hidden axis
    so, and a one-output head's view(-1) drops its output axis. Every kept axis's target entry is checked
    against that axis's size: a constant target entry is 0 at the same position, the known static size, the
    hidden width, or the one -1; a target computed from shapes is read through ONNX shape inference (data
    propagation), each kept axis's inferred size the input's own (the hidden width may stay unknown). So a
    reshape that merges or reinterprets the batch and time axes is refused, whatever its rank."""
    s = ctx.inp(0)
    folded = _folded_without_data(ctx, s, "zero initial state")
    if folded:
        return folded
    if s.kind == IDX:
        return [_idx_reshape(ctx, s)], "folded (index glue)"
    if "LB" in s.axes:
        return [_split_layers(ctx, s)], "folded (final states per layer and direction)"
    # a per-step head of one output reshaped to [batch, time] is that output, squeezed (below), not a flatten
    if (s.kind == SEQ or (s.kind == VEC and (s.width > 1 or _activation_on_steps(ctx, s)))) and _flattens_time(ctx, s):
        seq = s if s.kind == SEQ else _steps_of_per_step_head(ctx, s)
        if seq is not None:
            return [_flatten_time(ctx, seq)], f"converted (every step side by side: {ctx.r.pool_steps} steps)"
    why = ("reshapes data other than by dropping size-1 axes: rnnskip folds the Reshape that drops a recurrent "
           "output's direction axis, and one that flattens a batch-major output of a fixed number of steps into "
           "the head (y.reshape(batch, -1), torch.flatten(y, 1)); other merges of axes (view(-1, H), "
           "reshape(B*T, H)) go after rnnskip's model, in your own code")
    r, tgt = ctx.r, ctx.inp(1)
    dims_in = r.dims.get(ctx.node.input[0])
    if dims_in is None or len(dims_in) != len(s.axes):
        ctx.fail(why + " (the graph gives no shape for its input)")
    merged = "B" in s.axes
    if merged:   # a bidirectional output's [.., 2, H] -> [.., 2H]: both directions side by side, forward first
        b = s.axes.index("B")
        if b + 1 >= len(s.axes) or s.axes[b + 1] != "F" or s.kind not in (SEQ, STATE):
            ctx.fail(f"reshapes a bidirectional operator's output other than by merging its direction axis into "
                     f"the feature axis that follows it: {BIDI_READ}")
        f = dims_in[b + 1]
        dims_in = dims_in[:b] + [2 * f if isinstance(f, int) else None] + dims_in[b + 2:]
        s = Sym(s.kind, axes=s.axes[:b] + s.axes[b + 1:], width=2 * s.width, layer=s.layer, padded=s.padded)
    kept = [i for i, ax in enumerate(s.axes) if ax not in ("D", "1")]
    if tgt.kind == SHAPE and tgt.dims is not None and None not in tgt.dims and r.last_valid:
        # the lengths input's axis is the batch: its size in a target is the batch size
        n = next(ax for ax in s.axes if r.roles.get(ax) == "N") if "N" in _roles(r, s) else "LN"
        tgt = replace(tgt, dims=tuple((f, tuple(sorted(n if x == "LN" else x for x in labels)))
                                      for f, labels in tgt.dims))
    if tgt.kind == SHAPE and tgt.dims is not None and None not in tgt.dims:
        # a target built from shapes, followed symbolically: each kept axis's own size, in order
        want = [_axis_entry(s, j) for j in kept]
        free = [d for d in tgt.dims if d == (-1, ())]

        def same(ws):   # entry by entry; one -1 stands for whatever size is left
            return len(ws) == len(tgt.dims) and len(free) <= 1 and \
                all(d == w or d == (-1, ()) for d, w in zip(tgt.dims, ws))

        if kept and s.axes[kept[-1]] == "F" and _squeezable(s, "F") and same(want[:-1]):
            out = _with_axes(s, [s.axes[j] for j in kept[:-1]], True)   # view(-1) / flatten() of a one-output head
        elif same(want):   # only size-1 axes dropped: a head output keeps its Dense
            out = _with_axes(s, [s.axes[j] for j in kept], s.squeezed, keep_dense=True)
        else:
            out = None
        if out is not None:
            if merged:
                _set_merge(ctx, s.layer)
                return [out], "folded (both directions side by side)"
            return [out], "folded (glue)"
    if tgt.kind == CONST:
        target = [int(v) for v in np.asarray(tgt.value).reshape(-1)]
    else:
        target = r.dims.get(ctx.node.output[0])
        if target is None:
            ctx.fail(why + " (shape inference cannot follow its target shape)")
    squeezed = s.squeezed
    if len(target) == len(kept) - 1 and kept and _squeezable(s, s.axes[kept[-1]]) and s.axes[kept[-1]] == "F":
        kept, squeezed = kept[:-1], True         # view(-1) of a one-output head
    if len(target) != len(kept):
        ctx.fail(why)
    free = 0
    fixed = None   # (size, label, role): a free batch or time axis the target gives a fixed size
    for pos, (j, n) in enumerate(zip(kept, target)):
        ax, size = s.axes[j], dims_in[j]
        width = s.width if ax == "F" else len(s.layers) if ax == "L" else None
        if tgt.kind == CONST and n == -1:
            free += 1
        elif tgt.kind == CONST and n == 0 and not ctx.attrs.get("allowzero", 0):
            if pos != j:
                ctx.fail(why)
        elif ax == "F" and (n is None or (isinstance(n, str) and n.startswith("unk__") and n != size)):
            free += 1                            # an inferred hidden width left open (the merged direction axis)
        elif tgt.kind == CONST and isinstance(size, str) and r.roles.get(ax) in ("T", "N") and n >= 2 \
                and n not in [dims_in[k] for k in kept if k != j and r.roles.get(s.axes[k]) in ("T", "N")]:
            # torch's dynamo exporter writes a time-major output's example length so (torch fixes sizes 0 and 1
            # itself, and the size of the other batch or time axis is a reinterpretation): refused below with what
            # to export
            fixed = (n, size, {"T": "time", "N": "batch"}[r.roles[ax]])
        elif not (n is not None and (n == size or (width is not None and n == width))):
            ctx.fail(why)
    if free > 1:
        ctx.fail(why)
    if fixed is not None:   # otherwise the reshape that drops size-1 axes: onnxruntime is wrong at other sizes
        n, size, what = fixed
        ctx.fail(f"fixes the {what} axis at {n} where the graph's input leaves it free ('{size}'), so onnxruntime's "
                 f"outputs at any other {what} size are not the model's (the exporter wrote the example input's "
                 f"size there, as torch's dynamo exporter does on a time-major output); export with "
                 f"batch_first=True, with the TorchScript exporter (dynamo=False, dynamic_axes), or with static "
                 f"shapes at the size you deploy")
    if merged:
        _set_merge(ctx, s.layer)
        return [_with_axes(s, [s.axes[j] for j in kept], squeezed)], "folded (both directions side by side)"
    # only size-1 axes dropped (a head output keeps its Dense), or a one-output head's view(-1)
    return [_with_axes(s, [s.axes[j] for j in kept], squeezed, keep_dense=squeezed == s.squeezed)], "folded (glue)"


def h_unsqueeze(ctx: _Ctx):
    s = ctx.inp(0)
    folded = _folded_without_data(ctx, s)
    if folded:
        return folded
    axes = _axes_arg(ctx)
    rank = len(s.axes) + len(axes)
    out = list(s.axes)
    for a in sorted(_norm(a, rank) for a in axes):
        out.insert(a, "1")
    return [_with_axes(s, out)], "folded (glue)"


def h_slice(ctx: _Ctx):
    s = ctx.inp(0)
    if s.kind == ZEROS:
        if s.dims:   # its width stays known while the slice leaves the last axis alone
            axes = _raw_slice_args(ctx)[2]
            rank = len(s.dims)
            if any(int(a) % rank == rank - 1 for a in axes):
                s = replace(s, dims=None)
        return [s], "folded (glue)"
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
    _, starts, ends, axes, steps = _slice_args(ctx)
    if s.kind == SEQ and len(axes) == 1:
        t = _time_label(ctx, s)
        # the end must reach past any length (T is dynamic): torch writes INT64_MAX for y[:, -1:]
        if s.axes[axes[0]] == t and starts[0] == -1 and steps[0] == 1 and ends[0] >= 2 ** 31 - 1:
            out = tuple("1" if ax == t else ax for ax in s.axes)
            return [_last_step(ctx, s, out)], "folded (last step)"
    channels_first = s.kind == X and len(s.axes) == 3 and s.axes[1] == "F"
    ctx.fail(f"slices {s.kind} data: rnnskip folds a Slice only where it takes the last time step "
             "(starts=-1) of a recurrent layer's output" + (
                 "; on [batch, channels, time] before a Conv, a slice of the time axis is what Conv1d's "
                 "padding_mode='circular' (or a causal convolution's chomp, x[:, :, :-k]) exports: rnnskip pads "
                 "with zeros only (padding_mode='zeros', F.pad(x, (k - 1, 0)) for causal)" if channels_first else
                 "; slices of the model input are what torch.onnx.export(..., dynamo=True) unrolls some torch "
                 "recurrent modules into: export with dynamo=False" if s.kind == X else ""))


_POOL = ("a sum over time is not converted: rnnskip pools over time with the mean or the maximum (out.mean(1), "
         "out.amax(1)), or feeds the head the last step (out[:, -1]) or h_n[-1]")


def h_reduce_pool(ctx: _Ctx):
    """ReduceMean / ReduceMax over the time axis of a recurrent layer's output (PyTorch ``out.mean(1)``,
    ``out.amax(1)``, ``out.max(1).values``): pooling over time, as Keras' GlobalAverage/MaxPooling1D."""
    s = ctx.inp(0)
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
    if s.kind in (MSEQ, MASK) and ctx.op == "ReduceSum":
        return [_masked_sum(ctx, s)], "folded (a sum over each row's own steps)"
    axes = _axes_arg(ctx)
    if s.kind == STATE and "B" in s.axes and ctx.op in ("ReduceSum", "ReduceMean") and axes is not None and \
            [_norm(a, len(s.axes)) for a in axes] == [s.axes.index("B")]:
        # h_n.sum(0) / h_n.mean(0) of one bidirectional layer: Keras' merge_mode='sum' / 'ave'
        mode = "sum" if ctx.op == "ReduceSum" else "ave"
        _set_merge(ctx, s.layer, mode)
        keep = int(ctx.attrs.get("keepdims", 1))
        out = tuple(("1" if ax == "B" else ax) for ax in s.axes if keep or ax != "B")
        return [Sym(STATE, axes=out, width=s.width, layer=s.layer, summed=mode == "sum")], \
            f"folded (both directions' final states {'summed' if mode == 'sum' else 'averaged'}: merge_mode='{mode}')"
    if s.kind in (STATE, CELL) and "LB" in s.axes:
        ctx.fail(f"reduces the final states of all {len(s.layers)} stacked bidirectional layers (h_n): rnnskip "
                 "converts the last layer's two summed or averaged (h_n[-2] + h_n[-1], its half), or concatenated")
    if ctx.op == "ReduceMean" and s.kind in (STATE, VEC, SEQ) and axes is not None and s.axes and \
            [_norm(a, len(s.axes)) for a in axes] == [len(s.axes) - 1] and s.axes[-1] == "F":
        # a mean over the features: what nn.LayerNorm exports as below opset 17 (ReduceMean, Sub, Pow, Sqrt, Div)
        ctx.fail(f"takes the mean over the features of {s.kind} data, as nn.LayerNorm exported below opset 17 does "
                 f"(ReduceMean, Sub, Pow, ReduceMean, Sqrt, Div): export with opset_version=17 or later, where it is "
                 f"one LayerNormalization node rnnskip folds into the head's Dense after it")
    if ctx.op == "ReduceSum":
        ctx.fail(f"is not supported: {_POOL}" if s.kind == SEQ else
                 f"sums {s.kind} data over axes {axes}: rnnskip converts a sum over a bidirectional layer's two final "
                 f"states (h_n.sum(0)) and, over time, pools with the mean or the maximum")
    kind = {"ReduceMean": "avg", "ReduceMax": "max"}[ctx.op]
    if _max_after_activation(ctx, s, axes):
        # relu(y).amax(1): the activation runs after the maximum (every one rnnskip runs is non-decreasing, so the
        # maximum over time of act(y) is act of the maximum), as the identity Dense _add_dense made of it
        r = ctx.r
        r.pool, r.pool_name, r.per_step = "max", ctx.key, False
        t = _time_label(ctx, s)
        keep = int(ctx.attrs.get("keepdims", 1))
        out = tuple(("1" if ax == t else ax) for ax in s.axes if keep or ax != t)
        return [Sym(VEC, axes=out, width=s.width, dense=s.dense)], \
            f"converted (pooled over time: max; the {s.dense.activation} on the output before it runs after it)"
    s = _steps_of_per_step_head(ctx, s) or s
    if s.kind != SEQ:
        ctx.fail(f"reduces {s.kind} data: rnnskip converts {ctx.op} only over the time axis of a recurrent layer's "
                 "output (pooling over time)" + ("; an activation right on that output may come before a maximum "
                                                 "over time (ReduceMax), which it commutes with, but no other "
                                                 "reduction" if s.kind == VEC else ""))
    t = _time_label(ctx, s)
    if axes is None or [s.axes[_norm(a, len(s.axes))] for a in axes] != [t]:
        role = {"T": "time", "N": "batch"}
        other = {"F": "features", "1": "size 1", "D": "direction", "B": "direction"}
        names = ", ".join(f"{i} {role.get(ctx.r.roles.get(ax, ''), other.get(ax, 'other'))}"
                          for i, ax in enumerate(s.axes))
        ctx.fail(f"reduces axes {'all' if axes is None else axes} of a recurrent output whose axes are {names}: "
                 f"rnnskip pools over the time axis alone (axis {s.axes.index(t)} here)")
    if "B" in s.axes:
        ctx.fail(f"pools a bidirectional operator's output with its direction axis: {BIDI_READ}")
    if s.padded:
        ctx.fail("pools a recurrent output computed with sequence_lens: onnxruntime pools its zeros after each row's "
                 "length too; pool only the steps of each row's length in your own code, or export without "
                 "sequence_lens")
    keep = int(ctx.attrs.get("keepdims", 1))
    out = tuple(("1" if ax == t else ax) for ax in s.axes if keep or ax != t)
    # the model pools only if this is what the head (or the output) reads: _add_dense and _assemble look
    return [Sym(STATE, axes=out, width=s.width, layer=s.layer, pooled=(kind, ctx.key))], \
        f"converted (pooled over time: {kind})"


def _activation_on_steps(ctx: _Ctx, s: Sym) -> bool:
    """``s`` is an activation on every step of a recurrent output: the head's only layer so far, an identity Dense
    with it (h_activation)."""
    head = ctx.r.head
    if s.kind != VEC or s.dense is None or len(head) != 1 or head[0] is not s.dense or "B" in s.axes \
            or not ctx.r.per_step:
        return False
    return support.is_identity_dense(s.dense) and s.dense.activation in support.HIDDEN_DENSE_ACTIVATIONS


def _max_after_activation(ctx: _Ctx, s: Sym, axes) -> bool:
    """``s`` is an activation on every step of a recurrent output (the head's only layer so far, an identity Dense
    with it) and this node is a ReduceMax over its time axis alone."""
    if ctx.op != "ReduceMax" or not _activation_on_steps(ctx, s):
        return False
    t = next((ax for ax in s.axes if ctx.r.roles.get(ax) == "T"), None)
    return t is not None and axes is not None and [s.axes[_norm(a, len(s.axes))] for a in axes] == [t]


def h_gather(ctx: _Ctx):
    data, idx = ctx.inp(0), ctx.inp(1)
    axis = int(ctx.attrs.get("axis", 0))
    if data.kind == CONST and idx.kind == IDS:
        table = np.asarray(data.value)
        if table.ndim != 2 or axis != 0:
            ctx.fail(f"looks up ids in a {table.ndim}-D table along axis {axis}: rnnskip supports an embedding "
                     "as Gather of a 2-D [vocab, dim] table along axis 0")
        if ctx.r.embedding is not None:
            ctx.fail("is a second embedding lookup: rnnskip supports one embedding on the token-id input")
        ctx.r.embedding = EmbeddingInput(table=_f32(table), mask_zero=False, name=ctx.key)
        return [Sym(X, axes=idx.axes + ("F",), width=int(table.shape[1]))], "converted (embedding)"
    if data.kind == FLAT and idx.kind == IDX:
        return [_gather_flat(ctx, data, idx)], "converted (each row's last valid step)"
    if data.kind == SEQ and idx.kind == CONST:
        t = _time_label(ctx, data)
        ax = _norm(axis, len(data.axes))
        if data.axes[ax] == t and np.ndim(idx.value) == 0 and int(idx.value) == -1:
            return [_last_step(ctx, data, tuple(a for a in data.axes if a != t))], "folded (last step)"
        if ctx.r.roles.get(data.axes[ax]) == "N" and t in data.axes:   # out[-1] on a batch-first output, or back
            last = "out[-1]" if data.axes.index(t) == 0 else "out[:, -1]"
            ctx.fail(f"gathers index {idx.value.tolist()} of axis {ax}, which is the batch axis of this recurrent "
                     f"output (its time axis is {data.axes.index(t)}): the last time step is {last}; check "
                     f"batch_first against the indexing")
        ctx.fail(f"gathers index {idx.value.tolist()} of axis {ax}: rnnskip folds a Gather of a recurrent "
                 "output only where it takes the last time step (index -1)")
    if data.kind in (STATE, CELL) and "B" in data.axes and idx.kind == CONST and np.ndim(idx.value) == 0:
        ax = _norm(axis, len(data.axes))
        if data.axes[ax] == "B" and int(idx.value) in (-2, -1, 0, 1):   # h_n[-2]: forward, h_n[-1]: backward
            return [Sym(data.kind, axes=tuple(a for a in data.axes if a != "B"), width=data.width,
                        layer=data.layer, direction=int(idx.value) % 2)], "folded (one direction's final state)"
    if data.kind in (STATE, CELL) and "LB" in data.axes and idx.kind == CONST and np.ndim(idx.value) == 0:
        ax = _norm(axis, len(data.axes))
        if data.axes[ax] == "LB":   # h_n[2 * i + d]: layer i's direction d (h_n[-2], h_n[-1]: the last layer's)
            i = int(idx.value) % (2 * len(data.layers))
            return [Sym(data.kind, axes=tuple(a for a in data.axes if a != "LB"), width=data.width,
                        layer=data.layers[i // 2], direction=i % 2)], "folded (one direction's final state)"
    if data.kind in (STATE, CELL) and data.layers and idx.kind == CONST and np.ndim(idx.value) == 0:
        ax = _norm(axis, len(data.axes))
        if data.axes[ax] == "L":   # h_n[i]: layer i's final state
            i = int(idx.value)
            return [Sym(data.kind, axes=tuple(a for a in data.axes if a != "L"), width=data.width,
                        layer=data.layers[i])], "folded (final state)"
    if data.kind in (STATE, CELL) and idx.kind == CONST and np.ndim(idx.value) == 0 and int(idx.value) in (0, -1):
        ax = _norm(axis, len(data.axes))
        if data.axes[ax] in ("D", "1"):   # h_n[-1] of one layer: its size-1 direction axis
            return [Sym(data.kind, axes=tuple(a for i, a in enumerate(data.axes) if i != ax), width=data.width,
                        layer=data.layer, layers=data.layers)], "folded (final state)"
    if not _data(data.kind) and not _data(idx.kind):
        return _shape_like(ctx), "folded (glue)"
    ctx.fail(f"gathers from {data.kind} data with {idx.kind} indices: rnnskip supports Gather as an embedding "
             "(a constant table indexed by the token-id input) or as the last step of a recurrent output")
