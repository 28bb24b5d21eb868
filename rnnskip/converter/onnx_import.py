"""Read an ONNX file (what ``torch.onnx.export`` writes) into the rnnskip IR.

One handler per ONNX op type, registered in :data:`HANDLERS`; an op type without one is
refused in one line naming the node, its op type and what is supported.

The graph is read by symbolic evaluation in node order (ONNX keeps nodes topologically
sorted): every tensor becomes a :class:`Sym` saying *what it is* — a constant, a value
derived only from input shapes, all zeros, the token ids, the per-step vectors entering
the first recurrent layer, a recurrent layer's output sequence or final state, a head
vector — and, for data tensors, which axis is which. Axes of the model input are
labelled ``a0``, ``a1`` until a recurrent op's ``layout`` says which one is time and which
is batch; ``Transpose``/``Squeeze``/``Unsqueeze`` move labels around, so the glue PyTorch
emits (batch_first transposes, the squeezed direction axis, ``Shape``-driven zero initial
states, the last step taken by ``Gather``/``Slice``) folds away and whatever does not fit
is refused where it stands. A ``Conv``/``MaxPool``/``AveragePool`` on the input's
``[batch, channels, time]`` fixes those roles itself and becomes a layer of the streamed front
end (the IR's ``ConvLayer``/``PoolLayer``, as Keras' Conv1D): its output frames get a time axis
of their own, since a stride or valid padding changes the length.

Weights are converted to Keras layout (the IR's) with what each cell kind of ``rnnskip/cells/``
says about its ONNX operator (``onnx_op``, ``onnx_gate_order``, ``onnx_activations``,
``from_onnx``): ONNX ``W [1, G*H, I]`` in the operator's gate order (LSTM i-o-f-c, GRU z-r-h)
-> ``kernel [I, G*H]`` in Keras order (i-f-c-o, z-r-h); the bias halves ``[Wb | Rb]`` are
summed, except for a GRU with ``linear_before_reset=1`` (PyTorch's), which is Keras'
``reset_after=True`` and keeps both as ``[2, 3H]``. Nothing here names a cell kind.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from rnnskip import cells
from rnnskip.converter import support
from rnnskip.converter.folds import (
    EMBEDDING_FOLD_SOFTMAX,
    fold_dense_into_embedding,
    input_dense_layers,
    per_step_layers,
    per_step_status,
)
from rnnskip.converter.ir import (
    ConvLayer,
    DenseLayer,
    EmbeddingInput,
    FeatureInput,
    ModelIR,
    PoolLayer,
    RNNLayer,
)
from rnnskip.converter.support import LayerError
from rnnskip.errors import RnnskipError

#: ONNX recurrent operator -> the cell kind it is read as (each cell knows its ONNX layout, rnnskip/cells/)
RECURRENT_OPS = {c.onnx_op: c for c in cells.CELLS.values() if c.onnx_op}

SUPPORTED_SUMMARY = (f"rnnskip converts ONNX graphs of forward {'/'.join(RECURRENT_OPS)} operators "
                     "(any number stacked, any of them bidirectional), "
                     "a Gather embedding or float features (optionally through MatMul+Add, or a streamed front end of "
                     "Conv/MaxPool/AveragePool on [batch, channels, time]), ReduceMean/ReduceMax over "
                     "time or a flatten of a fixed number of steps, a Gemm or MatMul+Add head "
                     "with Relu/Sigmoid/Tanh/Softmax/LogSoftmax (BatchNormalization and constant scales fold into it), "
                     "normalisations (BatchNormalization, (x - mean) / std with per-feature constants; "
                     "LayerNormalization into the head's Dense), each row's last valid step or mean over its own "
                     "steps with lengths as a graph input (out[torch.arange(B), lengths - 1], (out * mask).sum(1) / "
                     "lengths), and the "
                     "Transpose/Squeeze/Unsqueeze/Slice/Gather/Shape "
                     "glue torch.onnx.export emits")

#: how a bidirectional operator's outputs must be read (the refusals say it)
BIDI_READ = ("rnnskip converts the final states of both directions concatenated, forward first "
             "(torch.cat([h_n[-2], h_n[-1]], 1) or h_n.transpose(0, 1).reshape(batch, -1)), summed or averaged "
             "(h_n[-2] + h_n[-1], its half), or the output sequence "
             "with both directions side by side (PyTorch's output) into a further recurrent layer or a per-step head")

#: ONNX activation names -> canonical IR names (HardSigmoid by its alpha, beta)
_ACTS = {"Tanh": "tanh", "Sigmoid": "sigmoid", "Relu": "relu", "Softsign": "softsign"}


# --------------------------------------------------------------------------
# symbolic tensors

CONST = "const"     # value: np.ndarray
SHAPE = "shape"     # computed from input shapes only (folded away)
ZEROS = "zeros"     # all zeros of a shape-dependent size (ConstantOfShape(0) and slices of it)
IDS = "ids"         # the token-id input
LENS = "lens"       # the data's lengths: a sequence_lens input, or one that picks each row's last valid step
IDX = "idx"         # integer indices built from the lengths and the batch positions (out[arange(B), lengths - 1])
FLAT = "flat"       # a recurrent output with its first two axes merged (torch's Flatten before an indexed Gather)
MASK = "mask"       # each row's valid steps, torch.arange(T)[None, :] < lengths[:, None] (size-1 axes as exported)
MSEQ = "mseq"       # a recurrent output times that mask: zeros after each row's length
MSUM = "msum"       # its sum over time, which a division by the lengths makes each row's mean over its own steps
LENGTHS_READ = ("computes with the lengths input: rnnskip reads the lengths as each row's last valid step "
                "(out[torch.arange(B), lengths - 1]) or to average each row over its own steps ((out * mask).sum(1) / "
                "lengths)")
#: what may read the lengths and the values built from them (anything else is refused: _run)
_LENGTH_OPS = ("Sub", "Add", "Mul", "Div", "Cast", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Concat", "Gather",
               "GatherND", "GatherElements", "Less", "Greater", "ReduceSum", "Shape", "Identity", *RECURRENT_OPS)
X = "x"             # per-step vectors entering the first recurrent layer
SEQ = "seq"         # a recurrent layer's output sequence (Y)
STATE = "state"     # a recurrent layer's last output (Y_h, or the last step of Y)
CELL = "cell"       # a final cell state (Y_c): no model output rnnskip computes
VEC = "vec"         # a head Dense's output


@dataclass
class Sym:
    kind: str
    value: Optional[np.ndarray] = None
    axes: Tuple[str, ...] = ()            # per axis: a0/a1 (input axes), F (features), D (direction), 1 (size 1),
    #                                       B (a bidirectional direction), L / LB (stacked per layer / and direction)
    width: int = 0                        # size of the F axis
    layer: int = -1                       # SEQ/STATE/CELL: the recurrent layer's index
    dense: Optional[DenseLayer] = None    # the Dense whose direct output this is (Add, activations fold in)
    padded: bool = False                  # SEQ with sequence_lens: zeros after each row's length
    layers: Tuple[int, ...] = ()          # STATE/CELL stacked per layer (axis L): PyTorch's h_n, c_n
    squeezed: bool = False                # VEC of width 1 whose F axis was squeezed away (x.squeeze(1))
    direction: int = -1                   # STATE/CELL of a bidirectional operator: one direction's (0, 1)
    pooled: Tuple[str, str] = ()          # STATE pooled over time from SEQ: (avg | max, the node's key)
    summed: bool = False                  # STATE: a bidirectional operator's two final states added
    dims: Optional[tuple] = None          # SHAPE: its entries as _shape_entries computes them (None: unknown)
    affine: Optional[tuple] = None        # (a, b) per F entry: a normalisation the next Dense/Conv/RNN folds in
    conv: Optional[ConvLayer] = None      # X: the front-end Conv whose direct output this is (activations fold in)
    act_conv: Optional[ConvLayer] = None  # X: a linear Conv a monotone activation still folds into (through MaxPool)
    tpad: Tuple[int, int] = (0, 0)        # X: zero frames a Pad put before and after the time axis (the next Conv's)
    norm: Optional[float] = None          # a LayerNormalization's epsilon: the next (head) Dense normalises its input
    norm_node: str = ""                   # ... and that LayerNormalization node's name, for refusals
    # IDX: per column of the index (its last axis after a Concat; one column before), a sum of terms, each
    # (name, entry): "last" (lengths - 1) or "pos:<label>" (the positions 0, 1, .. along input axis <label>) times
    # the shape entry (factor, labels) (see _shape_entries)
    terms: tuple = ()
    merged: Tuple[str, str] = ()          # FLAT: the labels of the two axes merged, outer first


def _data(kind):
    return kind not in (CONST, SHAPE, ZEROS)


# --------------------------------------------------------------------------
# the reader's state

@dataclass
class _Reader:
    path: str
    graph: object
    opset: int
    syms: Dict[str, Sym] = field(default_factory=dict)
    roles: Dict[str, str] = field(default_factory=dict)   # input axis label -> "T" | "N"
    embedding: Optional[EmbeddingInput] = None
    head_reads: int = -1   # the recurrent layer whose final state (or every step) the head reads
    pool: str = ""          # pooling over time of a recurrent output (ReduceMean / ReduceMax): "avg" | "max"
    pool_name: str = ""
    pool_steps: int = 0     # a flatten of the time axis (y.reshape(batch, -1)): the number of steps it reads
    per_step: bool = False  # the head runs on every step (one output per step)
    input_dense: Optional[DenseLayer] = None
    input_more: List[DenseLayer] = field(default_factory=list)   # per-step Dense layers after it (_place_input)
    front: List[object] = field(default_factory=list)   # the streamed front end: ConvLayer | PoolLayer, in order
    center: Optional[np.ndarray] = None   # FeatureInput.center: a BatchNormalization on the input, folded in
    norm_scale: Optional[np.ndarray] = None   # FeatureInput.norm_scale (into a recurrent first layer)
    rnns: List[RNNLayer] = field(default_factory=list)
    rnn_lens: List[Optional[str]] = field(default_factory=list)   # each layer's sequence_lens input
    last_valid: str = ""    # the lengths input a Gather of each row's last valid step reads (out[arange, lengths - 1])
    head: List[DenseLayer] = field(default_factory=list)
    # per-step Dense layers that joined the stack (_place_per_step): id of the Dense -> its layer's index, so a
    # second reader of the same output (a mean and a max of it) finds its sequence
    placed_per_step: Dict[int, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    status: Dict[str, str] = field(default_factory=dict)   # node key -> what became of it (inspect)
    dims: Dict[str, list] = field(default_factory=dict)    # value -> per axis: int size, str symbol or None

    def sym(self, name: str) -> Optional[Sym]:
        return self.syms.get(name) if name else None


def node_key(node, index: int) -> str:
    """A node's name as users see it (torch names start with '/'; unnamed nodes by op and position)."""
    name = node.name.lstrip("/") if node.name else ""
    return name or f"{node.op_type}_{index}"


def _attrs(node) -> dict:
    return {a.name: _attr_value(a) for a in node.attribute}


def _attr_value(a):
    """One attribute's value, bytes decoded to str."""
    from onnx import helper
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [x.decode() if isinstance(x, bytes) else x for x in v]
    return v


class _Ctx:
    """One node as its handler sees it."""

    def __init__(self, reader: _Reader, node, key: str):
        self.r, self.node, self.key = reader, node, key
        self.op = node.op_type
        self.attrs = _attrs(node)
        self.ins = [reader.sym(n) for n in node.input]

    def fail(self, msg: str):
        raise LayerError(f"node '{self.key}' ({self.op}) {msg}", self.key)

    def inp(self, i: int) -> Optional[Sym]:
        return self.ins[i] if i < len(self.ins) else None

    def const(self, i: int, what: str) -> np.ndarray:
        s = self.inp(i)
        if s is None or s.kind != CONST:
            self.fail(f"needs a constant {what}: rnnskip folds only constant {what}s")
        return s.value


# --------------------------------------------------------------------------
# helpers

def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, np.float32))


def _axes_arg(ctx: _Ctx, attr: str = "axes", index: int = 1) -> Optional[List[int]]:
    """Axes as an attribute (older opsets) or a constant input (newer)."""
    if attr in ctx.attrs:
        return [int(a) for a in ctx.attrs[attr]]
    if ctx.inp(index) is not None:
        return [int(a) for a in np.asarray(ctx.const(index, attr)).reshape(-1)]
    return None


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _shape_like(ctx: _Ctx) -> List[Sym]:
    """Glue on constants and shape values: constants fold, anything shape-derived stays SHAPE (with its
    entries where :func:`_shape_entries` can follow them)."""
    if any(s is not None and (_data(s.kind) or s.kind == ZEROS) for s in ctx.ins):
        ctx.fail(f"on model data is not supported: {SUPPORTED_SUMMARY}")
    if any(s is not None and s.kind == SHAPE for s in ctx.ins):
        dims = _shape_entries(ctx) if len(ctx.node.output) == 1 else None
        return [Sym(SHAPE, dims=dims) for _ in ctx.node.output]
    return [Sym(CONST, value=v) for v in _fold(ctx)]


# A shape value's entries, followed symbolically through the ops exporters build Reshape targets with, so a
# target computed from shapes is checked without ONNX's data propagation (which loses dims at some opsets).
# An entry is (factor, labels): factor times the sizes of the input axes labelled so (a0, a1: the model input's
# axes, the same size wherever they appear); None where the value is not followed.

def _axis_entry(s: Sym, k: int):
    """Axis ``k`` of data ``s`` as an entry: an input axis by its label, F by its width, size-1 axes as 1."""
    ax = s.axes[k]
    if ax in ("D", "1"):
        return (1, ())
    if ax == "F":
        return (int(s.width), ()) if s.width else None
    if ax == "B":
        return (2, ())
    if ax == "L":
        return (len(s.layers), ()) if s.layers else None
    if ax == "LB":
        return (2 * len(s.layers), ())
    return (1, (ax,))


def _entries_of(s: Optional[Sym]):
    if s is None:
        return None
    if s.kind == CONST:
        v = np.asarray(s.value)
        return [(int(x), ()) for x in v.reshape(-1)] if v.dtype.kind in "iu" and v.ndim <= 1 else None
    return list(s.dims) if s.kind == SHAPE and s.dims is not None else None


def _shape_entries(ctx: _Ctx) -> Optional[tuple]:
    op, ins = ctx.op, ctx.ins
    if op in ("Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"):   # 0-D and 1-D alike here
        e = _entries_of(ins[0])
    elif op == "Concat":
        parts = [_entries_of(s) for s in ins]
        e = None if any(p is None for p in parts) else [x for p in parts for x in p]
    elif op == "Gather":
        e, idx = _entries_of(ins[0]), ins[1]
        if e is not None and idx is not None and idx.kind == CONST and int(ctx.attrs.get("axis", 0)) == 0:
            try:
                e = [e[int(i)] for i in np.asarray(idx.value).reshape(-1)]
            except IndexError:
                e = None
        else:
            e = None
    elif op == "Slice":
        e = _entries_of(ins[0])
        if e is not None:
            starts, ends, axes, steps = _raw_slice_args(ctx)
            e = e[slice(starts[0], ends[0], steps[0])] if len(starts) == 1 and axes[0] in (0, -1) else None
    elif op == "Mul":
        a, b = _entries_of(ins[0]), _entries_of(ins[1])
        if a is None or b is None or (len(a) != len(b) and 1 not in (len(a), len(b))):
            e = None
        else:
            n = max(len(a), len(b))
            a, b = (a * n if len(a) == 1 else a), (b * n if len(b) == 1 else b)
            e = [None if x is None or y is None else (x[0] * y[0], tuple(sorted(x[1] + y[1]))) for x, y in zip(a, b)]
    else:
        e = None
    return tuple(e) if e is not None else None


def _raw_slice_args(ctx: _Ctx):
    """A Slice's (starts, ends, axes, steps), attribute (opset < 10) or input form, its axes as given."""
    if "starts" in ctx.attrs:
        starts, ends = list(ctx.attrs["starts"]), list(ctx.attrs["ends"])
        axes, steps = list(ctx.attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        starts = [int(v) for v in np.asarray(ctx.const(1, "starts")).reshape(-1)]
        ends = [int(v) for v in np.asarray(ctx.const(2, "ends")).reshape(-1)]
        axes = ([int(v) for v in np.asarray(ctx.const(3, "axes")).reshape(-1)] if ctx.inp(3) is not None
                else list(range(len(starts))))
        steps = ([int(v) for v in np.asarray(ctx.const(4, "steps")).reshape(-1)] if ctx.inp(4) is not None
                 else [1] * len(starts))
    return starts, ends, [int(x) for x in axes], steps


def _fold(ctx: _Ctx) -> List[np.ndarray]:
    """Constant folding of the few ops constants pass through in exported graphs."""
    vals = [s.value if s is not None else None for s in ctx.ins]
    op, a = ctx.op, ctx.attrs
    if op == "Identity":
        return [vals[0]]
    if op == "Cast":
        from onnx import helper
        return [vals[0].astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(v) for v in vals], axis=a.get("axis", 0))]
    if op == "Gather":
        return [np.take(vals[0], vals[1], axis=a.get("axis", 0))]
    if op == "Unsqueeze":
        v = vals[0]
        axes = sorted(_norm(x, v.ndim + len(_axes_arg(ctx))) for x in _axes_arg(ctx))
        for x in axes:
            v = np.expand_dims(v, x)
        return [v]
    if op == "Squeeze":
        axes = _axes_arg(ctx)
        return [np.squeeze(vals[0], axis=None if axes is None else tuple(axes))]
    if op == "Transpose":
        return [np.transpose(vals[0], a.get("perm"))]
    if op == "Reshape":
        return [np.reshape(vals[0], [int(x) for x in vals[1]])]
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
        return [f(vals[0], vals[1]).astype(np.result_type(vals[0], vals[1]))]
    if op in ("Neg", "Reciprocal", "Sqrt"):   # a normalisation's std from its variance: 1 / sqrt(var + eps)
        f = {"Neg": np.negative, "Reciprocal": np.reciprocal, "Sqrt": np.sqrt}[op]
        return [f(vals[0]).astype(np.result_type(vals[0]))]
    if op == "Equal":
        return [np.equal(vals[0], vals[1])]
    if op == "Where":
        return [np.where(vals[0], vals[1], vals[2])]
    if op == "Slice":
        data, starts, ends, axes, steps = _slice_args(ctx)
        idx = [slice(None)] * vals[0].ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            idx[ax] = slice(s, e, st)
        return [vals[0][tuple(idx)]]
    ctx.fail(f"on constants is not folded by rnnskip: {SUPPORTED_SUMMARY}")


def _slice_args(ctx: _Ctx):
    """(data, starts, ends, axes, steps) of a Slice, attribute (opset < 10) or input form."""
    data = ctx.inp(0)
    rank = np.ndim(data.value) if data.kind == CONST else len(data.axes)
    starts, ends, axes, steps = _raw_slice_args(ctx)
    return data, starts, ends, [_norm(x, rank) for x in axes], steps


def _time_label(ctx: _Ctx, s: Sym) -> str:
    t = next((ax for ax in s.axes if ctx.r.roles.get(ax) == "T"), None)
    if t is None:
        ctx.fail("reads a sequence whose time axis is unknown: rnnskip reads the last step of a recurrent "
                 "layer's output")
    return t


def _last_step(ctx: _Ctx, s: Sym, axes: Tuple[str, ...]) -> Sym:
    if ctx.r.rnns[s.layer].backward is not None:
        ctx.fail(f"takes the last step of the output of bidirectional operator '{ctx.r.rnns[s.layer].name}', which "
                 f"holds the backward direction after only the last step, not its final state: {BIDI_READ}")
    if s.padded:
        ctx.fail("takes the last step of a recurrent output computed with sequence_lens (zero after each row's "
                 "length): read the layer's final state (output Y_h) instead")
    return Sym(STATE, axes=axes, width=s.width, layer=s.layer)


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


def h_transpose(ctx: _Ctx):
    s = ctx.inp(0)
    if s.kind == ZEROS:
        return [s], "folded (glue)"
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
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
    if s.kind == ZEROS:
        return [s], "folded (glue)"
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
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
    if s.kind == ZEROS:
        return [s], "folded (zero initial state)"
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
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
    if s.kind == ZEROS:
        return [s], "folded (glue)"
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
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


# --------------------------------------------------------------------------
# handlers: each row's last valid step (out[torch.arange(B), lengths - 1])
#
# PyTorch runs every step of a padded batch; reading each row's output at lengths - 1 reads the state after that
# row's own steps, which is the final state rnnskip computes when the data's lengths stop each row (as Keras'
# masking does). The index is followed as a sum of terms, so a gather converts only where it reads exactly that.

LAST = "last"   # the term lengths - 1


def _idx(axes, *cols) -> Sym:
    return Sym(IDX, axes=tuple(axes), terms=tuple(tuple(sorted(c.items())) for c in cols))


def _lengths_input(r: _Reader) -> str:
    return next(n for n, s in r.syms.items() if s.kind == LENS)


def h_range(ctx: _Ctx):
    """Range: constants fold; Range(0, size, 1) of an input axis's size is the positions along it (torch.arange(
    x.size(0)): the batch positions that index each row's last valid step; along time, the steps a mask compares
    with the lengths)."""
    start, limit, delta = ctx.ins[:3]
    if all(s.kind == CONST for s in (start, limit, delta)):
        return [Sym(CONST, value=np.arange(start.value, limit.value, delta.value))], "folded (glue)"
    e = _entries_of(limit)
    if start.kind == CONST and delta.kind == CONST and np.ndim(start.value) == 0 and int(start.value) == 0 and \
            int(delta.value) == 1 and e is not None and len(e) == 1 and e[0] is not None and e[0][0] == 1 and \
            len(e[0][1]) == 1:
        lab = e[0][1][0]
        return [_idx((lab,), {f"pos:{lab}": (1, ())})], "folded (positions along an axis)"
    if not any(_data(s.kind) for s in ctx.ins):
        return [Sym(SHAPE)], "folded (glue)"
    ctx.fail("builds a range from model data: rnnskip reads a Range only as the positions along an input axis "
             "(torch.arange(batch), torch.arange(time))")


def _static_rows(s: Sym) -> Sym:
    """A constant 0, k, 2k, .. (k >= 1), one per row ([B] or [B, 1]): the batch positions times k, as a graph exported
    with a static batch holds torch.arange(B), or torch.arange(B) * T folded (k then checked against the axis size it
    stands for: _gather_flat)."""
    v = np.asarray(s.value) if s.kind == CONST else None
    if v is None or v.ndim not in (1, 2) or (v.ndim == 2 and v.shape[1] != 1) or len(v) < 2 or v.dtype.kind not in "iu":
        return s
    v = v.reshape(-1)
    if v[1] >= 1 and np.array_equal(v, np.arange(len(v)) * v[1]):
        return _idx(("LN",) + ("1",) * (np.ndim(s.value) - 1), {"pos:LN": (int(v[1]), ())})
    return s


def _idx_arith(ctx: _Ctx) -> Sym:
    """Add of two indices, Mul of an index by a size or a constant: the terms' coefficients follow."""
    a, b = _static_rows(ctx.inp(0)), _static_rows(ctx.inp(1))
    if ctx.op == "Add" and a.kind == b.kind == IDX and len(a.terms) == len(b.terms) == 1:
        if len(a.axes) != len(b.axes):
            ctx.fail(LENGTHS_READ)
        terms = dict(a.terms[0])
        for name, (f, labels) in b.terms[0]:
            if name in terms and terms[name][1] != labels:
                ctx.fail(LENGTHS_READ)
            terms[name] = (terms.get(name, (0, labels))[0] + f, labels)
        return _idx(a.axes, terms)
    s, c = (a, b) if a.kind == IDX else (b, a)
    e = _entries_of(c)
    if ctx.op == "Mul" and len(s.terms) == 1 and e is not None and len(e) == 1 and e[0] is not None:
        f2, l2 = e[0]
        return _idx(s.axes, {name: (f * f2, tuple(sorted(labels + l2))) for name, (f, labels) in s.terms[0]})
    ctx.fail(LENGTHS_READ)


def _idx_concat(ctx: _Ctx) -> Sym:
    """Indices side by side on their last axis, each one column: GatherND's [batch, 2] index."""
    ins = [_static_rows(s) for s in ctx.ins]
    first = ins[0]
    axis = _norm(int(ctx.attrs.get("axis", 0)), len(first.axes))
    if any(s.kind != IDX or len(s.axes) != len(first.axes) or s.axes[axis] != "1" for s in ins) or \
            axis != len(first.axes) - 1:
        ctx.fail("concatenates indices other than the batch positions and lengths - 1 as GatherND's columns: "
                 "rnnskip reads out[arange(batch), lengths - 1]")
    return Sym(IDX, axes=first.axes[:-1] + ("K",), terms=tuple(t for s in ins for t in s.terms))


def _idx_reshape(ctx: _Ctx, s: Sym) -> Sym:
    """(lengths - 1).view(-1, 1, 1): the per-row index with size-1 axes around it."""
    tgt = ctx.inp(1)
    rows = [ax for ax in s.axes if ax != "1"]
    target = [int(v) for v in np.asarray(tgt.value).reshape(-1)] if tgt.kind == CONST else None
    if len(s.terms) != 1 or len(rows) != 1 or target is None or [v for v in target if v != 1] not in ([-1], [0]):
        ctx.fail("reshapes an index other than by adding size-1 axes to the per-row lengths - 1: rnnskip reads "
                 "out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden))")
    return _idx(tuple(rows[0] if v != 1 else "1" for v in target), dict(s.terms[0]))


def _data_axes(ctx: _Ctx, data: Sym) -> Tuple[str, str]:
    """The batch and time labels of a recurrent output [batch, time, hidden] (either order of the first two)."""
    if data.kind != SEQ or len(data.axes) != 3 or data.axes[2] != "F" or \
            sorted(_roles(ctx.r, data)) != ["F", "N", "T"]:
        ctx.fail(f"gathers from {data.kind} data of axes {data.axes}: rnnskip reads each row's last valid step of "
                 "a recurrent output [batch, time, hidden] (out[arange(batch), lengths - 1])")
    n = next(ax for ax in data.axes if ctx.r.roles.get(ax) == "N")
    return n, _time_label(ctx, data)


def _index_of(terms, n: str) -> dict:
    """One index column's terms, the batch named by its label (the lengths input's own axis is the batch too)."""
    fix = lambda labels: tuple(sorted(n if x == "LN" else x for x in labels))   # noqa: E731
    return {("pos:" + n if name == "pos:LN" else name): (f, fix(labels)) for name, (f, labels) in terms}


def _reads_lengths(ctx: _Ctx, rnn, what: str) -> None:
    """The model reads each row's own steps (``what``): the lengths input becomes the data's lengths, which stop
    each row in rnnskip. Not through a bidirectional layer (PyTorch's backward direction has run over the padding
    there) or a Conv front end (its frames are not the input's steps)."""
    r = ctx.r
    if rnn.backward is not None:
        ctx.fail(f"{what} of bidirectional operator '{rnn.name}', whose backward direction there has read the "
                 "padding after the row's length: rnnskip reads each row's own steps of forward layers (a "
                 "bidirectional layer with lengths: sequence_lens on the operator, Y_h read)")
    if r.front:
        ctx.fail(f"{what} after a Conv front end, whose frames are not the input's steps: rnnskip streams each row's "
                 "steps through the front end; read out[:, -1]")
    name = _lengths_input(r)
    if any(n and n != name for n in r.rnn_lens):
        ctx.fail(f"reads the lengths '{name}' where the recurrent operator's sequence_lens is another input: not "
                 "supported")
    if not r.last_valid:
        r.notes.append(f"'{name}' gives each row's length (the model reads each row's own steps): pass it as lengths "
                       "in --data")
    r.last_valid = name


def _last_valid(ctx: _Ctx, data: Sym, axes: Tuple[str, ...]) -> Sym:
    _reads_lengths(ctx, ctx.r.rnns[data.layer], "takes each row's last valid step")
    return Sym(STATE, axes=axes, width=data.width, layer=data.layer)


def h_gather_nd(ctx: _Ctx):
    """out[torch.arange(B), lengths - 1] as the dynamo exporter writes it: GatherND with a [batch, 2] index."""
    data, idx = ctx.inp(0), ctx.inp(1)
    if idx.kind != IDX or int(ctx.attrs.get("batch_dims", 0)) != 0:
        ctx.fail(f"gathers from {data.kind} data with {idx.kind} indices: rnnskip reads GatherND only as each row's "
                 "last valid step of a recurrent output (out[arange(batch), lengths - 1])")
    n, t = _data_axes(ctx, data)
    want = [{f"pos:{n}": (1, ())} if ax == n else {LAST: (1, ())} for ax in data.axes[:2]]
    if [_index_of(c, n) for c in idx.terms] != want:
        ctx.fail("indexes a recurrent output other than at each row's last valid step: rnnskip reads "
                 "out[arange(batch), lengths - 1] (out[lengths - 1, arange(batch)] time-major)")
    return [_last_valid(ctx, data, (n, "F"))], "converted (each row's last valid step)"


def h_gather_elements(ctx: _Ctx):
    """out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden)): one step per row along the time axis."""
    data, idx = ctx.inp(0), ctx.inp(1)
    if idx.kind != IDX:
        ctx.fail(f"gathers from {data.kind} data with {idx.kind} indices: rnnskip reads GatherElements only as each "
                 "row's last valid step of a recurrent output (out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, "
                 "1, hidden)))")
    n, t = _data_axes(ctx, data)
    ax = _norm(int(ctx.attrs.get("axis", 0)), 3)
    rows = ["1" if a == "1" else n if a in ("LN", n) else "?" for a in idx.axes]
    sizes = ctx.r.dims.get(ctx.node.input[1])   # the index's own shape: one step, every hidden unit
    fixed = sizes is not None and len(sizes) == 3 and all(isinstance(sizes[k], int) for k, a in enumerate(data.axes)
                                                          if a != n)
    if not fixed:
        ctx.fail("gathers with an index whose shape the graph does not fix, so rnnskip cannot check it reads every "
                 "hidden unit of one step: export with dynamo=True, or index out[torch.arange(B), lengths - 1]")
    whole = all(sizes[k] == (1 if a == t else data.width) for k, a in enumerate(data.axes) if a != n)
    if data.axes[ax] != t or len(idx.terms) != 1 or _index_of(idx.terms[0], n) != {LAST: (1, ())} or \
            rows != ["1" if a != n else n for a in data.axes] or not whole:
        ctx.fail("gathers a recurrent output other than at each row's last valid step along its time axis, every "
                 "hidden unit: rnnskip reads out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden))")
    return [_last_valid(ctx, data, tuple("1" if a == t else a for a in data.axes))], \
        "converted (each row's last valid step)"


def _gather_flat(ctx: _Ctx, data: Sym, idx: Sym) -> Sym:
    """TorchScript's out[arange(B), lengths - 1]: the output flattened to [batch * time, hidden] (or time-major) and
    gathered at row * time + lengths - 1 (or (lengths - 1) * batch + row)."""
    outer, inner = data.merged
    n = next((ax for ax in data.merged if ctx.r.roles.get(ax) == "N"), "")
    pos = lambda ax: f"pos:{n}" if ax == n else LAST   # noqa: E731
    want = {pos(outer): (1, (inner,)), pos(inner): (1, ())}
    got = _index_of(idx.terms[0], n) if len(idx.terms) == 1 else {}
    size = _input_size(ctx.r, inner)
    if got.get(pos(outer)) == (size, ()) and size:   # a static export's constant offsets: the inner axis's size
        got[pos(outer)] = (1, (inner,))
    if int(ctx.attrs.get("axis", 0)) != 0 or got != want:
        ctx.fail("gathers a flattened recurrent output other than at each row's last valid step: rnnskip reads "
                 "out[arange(batch), lengths - 1]")
    return _last_valid(ctx, data, (n, "F"))


def _static_steps(s: Sym) -> Sym:
    """A constant 0, 1, .., k - 1 along one axis (size-1 axes around it): the positions along a static axis of k
    (label "*k", checked against the axis it meets), as the dynamo exporter writes torch.arange(T)."""
    if s.kind == CONST and np.ndim(s.value) >= 1 and sum(d != 1 for d in np.shape(s.value)) == 1:
        k = max(np.shape(s.value))
        if np.array_equal(np.asarray(s.value).reshape(-1), np.arange(k)):
            lab = f"*{k}"
            return _idx(tuple(lab if d != 1 else "1" for d in np.shape(s.value)), {f"pos:{lab}": (1, ())})
    return s


def h_compare(ctx: _Ctx):
    """arange(T)[None, :] < lengths[:, None] (or lengths[:, None] > arange(T)[None, :]): each row's valid steps."""
    a, b = ctx.inp(0), ctx.inp(1)
    pos, lens = (a, b) if ctx.op == "Less" else (b, a)
    pos = _static_steps(pos)
    terms = dict(pos.terms[0]) if pos.kind == IDX and len(pos.terms) == 1 else {}
    name = next(iter(terms), "")
    if lens.kind != LENS or len(terms) != 1 or not name.startswith("pos:") or terms[name] != (1, ()) or \
            len(pos.axes) != len(lens.axes) or any("1" not in (p, q) for p, q in zip(pos.axes, lens.axes)):
        ctx.fail("compares other values than the steps with the lengths: rnnskip reads a comparison only as each "
                 "row's valid steps, torch.arange(time)[None, :] < lengths[:, None]")
    return [Sym(MASK, axes=tuple(q if p == "1" else p for p, q in zip(pos.axes, lens.axes)))], \
        "folded (each row's valid steps)"


def _time_size(ctx: _Ctx, i: int, k: int) -> Optional[int]:
    dims = ctx.r.dims.get(ctx.node.input[i])
    return dims[k] if dims is not None and isinstance(dims[k], int) else None


def _mask_fits(ctx: _Ctx, data: Sym, mask: Sym, i: int) -> bool:
    """``mask`` lines up with recurrent output ``data`` (input ``i`` of this node): its batch, time and size-1
    feature axes where ``data`` has batch, time and features."""
    n, t = _data_axes(ctx, data)
    if len(mask.axes) != len(data.axes):
        return False
    for k, (d, m) in enumerate(zip(data.axes, mask.axes)):
        static = m.startswith("*") and _time_size(ctx, i, k) == int(m[1:])
        if not ((d == n and m in ("LN", n)) or (d == t and (m == t or static)) or (d == "F" and m == "1")):
            return False
    return True


def _masked(ctx: _Ctx) -> Sym:
    """A recurrent output times each row's valid steps: zeros after each row's length."""
    i = 0 if ctx.inp(0).kind == SEQ else 1
    data, mask = ctx.inp(i), ctx.inp(1 - i)
    if ctx.op != "Mul" or data.kind != SEQ or mask.kind != MASK or not _mask_fits(ctx, data, mask, i):
        ctx.fail("applies each row's valid steps other than as a mask on a recurrent output [batch, time, hidden]: "
                 "rnnskip reads (out * mask.unsqueeze(-1)).sum(1) / lengths, each row's mean over its own steps")
    return Sym(MSEQ, axes=data.axes, width=data.width, layer=data.layer, padded=data.padded)


def _masked_sum(ctx: _Ctx, s: Sym) -> Sym:
    """ReduceSum over time of the masked output (the sum of each row's own steps), or of the mask itself (each
    row's length)."""
    axes = _axes_arg(ctx)
    t = [ax for ax in s.axes if ctx.r.roles.get(ax) == "T" or ax.startswith("*")]
    if axes is None or len(t) != 1 or [s.axes[_norm(a, len(s.axes))] for a in axes] != t:
        ctx.fail(f"sums {s.kind} data over axes {axes}: rnnskip sums a masked recurrent output over its time axis "
                 "alone, for each row's mean over its own steps")
    keep = int(ctx.attrs.get("keepdims", 1))
    out = tuple(("1" if ax == t[0] else ax) for ax in s.axes if keep or ax != t[0])
    if s.kind == MASK:   # each row's length only where the mask spans the input's every step
        if t[0].startswith("*") and _input_steps(ctx.r) != int(t[0][1:]):
            steps = _input_steps(ctx.r)
            ctx.fail(f"sums a mask over {t[0][1:]} steps where the input "
                     f"{f'has {steps}' if steps else 'has no fixed number of steps'}: that is not each row's length; "
                     "rnnskip reads mask.sum(1) of torch.arange(T) with T the input's own steps")
        return Sym(LENS, axes=out)
    return Sym(MSUM, axes=out, width=s.width, layer=s.layer)


def _input_size(r: _Reader, label: str) -> int:
    """The size the graph fixes for the model input's axis ``label`` (a0, a1; 0: not fixed)."""
    i = next(i for i in r.graph.input if r.syms.get(i.name) is not None and r.syms[i.name].kind in (IDS, X))
    dims = i.type.tensor_type.shape.dim
    k = ("a0", "a1").index(label) if label in ("a0", "a1") else None
    return int(dims[k].dim_value) if k is not None and k < len(dims) and dims[k].HasField("dim_value") else 0


def _input_steps(r: _Reader) -> int:
    """The model input's number of steps as the graph fixes it (0: not fixed)."""
    return _input_size(r, next((ax for ax in ("a0", "a1") if r.roles.get(ax) == "T"), ""))


def _masked_mean(ctx: _Ctx) -> Sym:
    """The masked sum divided by the lengths: each row's mean over its own steps, which is what rnnskip's mean over
    time gives when the data's lengths stop each row (Keras' GlobalAveragePooling1D under a mask)."""
    a, b = ctx.inp(0), ctx.inp(1)
    if ctx.op != "Div" or a.kind != MSUM or b.kind != LENS or len(a.axes) != len(b.axes):
        ctx.fail("divides a masked sum by other values than the lengths: rnnskip reads (out * mask).sum(1) / "
                 "lengths, each row's mean over its own steps")
    n = next(ax for ax in a.axes if ctx.r.roles.get(ax) == "N")
    if any(not ((x == n and y in ("LN", n)) or (x in ("F", "1") and y == "1")) for x, y in zip(a.axes, b.axes)):
        ctx.fail("divides a masked sum by the lengths along other axes than the batch: rnnskip reads "
                 "(out * mask).sum(1) / lengths[:, None]")
    _reads_lengths(ctx, ctx.r.rnns[a.layer], "averages each row over its own steps")
    return Sym(STATE, axes=a.axes, width=a.width, layer=a.layer, pooled=("avg", ctx.key))


# --------------------------------------------------------------------------
# handlers: recurrent operators

def _activation_names(ctx: _Ctx) -> List[str]:
    names = list(ctx.attrs.get("activations", RECURRENT_OPS[ctx.op].onnx_activations))
    alphas = list(ctx.attrs.get("activation_alpha", []))
    betas = list(ctx.attrs.get("activation_beta", []))
    out, k = [], 0
    for n in names:
        if n in _ACTS:
            out.append(_ACTS[n])
            continue
        if n == "HardSigmoid":
            # HardSigmoid carries (alpha, beta) in the activation_alpha/beta lists, in order
            a = alphas[k] if k < len(alphas) else 0.2
            b = betas[k] if k < len(betas) else 0.5
            k += 1
            if np.isclose(a, 0.2) and np.isclose(b, 0.5):
                out.append("hard_sigmoid")
                continue
            if np.isclose(a, 1.0 / 6.0) and np.isclose(b, 0.5):
                out.append("hard_sigmoid_k3")
                continue
        ctx.fail(f"uses activation {n}: rnnskip supports Tanh, Sigmoid, Relu, Softsign and HardSigmoid "
                 "(alpha 0.2 or 1/6, beta 0.5) in recurrent operators")
    return out


def _check_zero_state(ctx: _Ctx, i: int, what: str, hidden: int) -> None:
    s = ctx.inp(i)
    if s is None:
        return
    if s.kind == ZEROS or (s.kind == CONST and not np.any(s.value)):
        last = (s.dims[-1] if s.dims else None) if s.kind == ZEROS else \
            ((int(np.shape(s.value)[-1]), ()) if np.ndim(s.value) else None)
        if last is not None and not last[1] and last[0] != hidden:   # the graph is inconsistent: refused, not guessed
            ctx.fail(f"has a zero {what} of width {last[0]} but hidden_size={hidden}: the graph is inconsistent "
                     f"(torch's dynamo exporter writes this for a layer with proj_size, dropping the projection; "
                     f"rnnskip does not convert proj_size)")
        return
    ctx.fail(f"has a non-zero {what}: rnnskip runs every sequence from a zero state (leave {what} out or zero)")


def h_recurrent(ctx: _Ctx):
    r, a = ctx.r, ctx.attrs
    cell = RECURRENT_OPS[ctx.op]
    direction = a.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        ctx.fail(f"has direction={direction}: rnnskip converts forward and bidirectional recurrent layers "
                 "(a reverse one alone is not supported)")
    dirs = 2 if direction == "bidirectional" else 1
    if len(ctx.node.input) > 7 and ctx.node.input[7]:
        ctx.fail("has peephole weights (input P): rnnskip converts recurrent operators without peepholes")
    if "clip" in a:
        ctx.fail(f"has clip={a['clip']}: rnnskip converts recurrent layers without cell clipping")
    if a.get("input_forget", 0):
        ctx.fail("has input_forget=1 (coupled input and forget gates): not supported")
    layout = int(a.get("layout", 0))
    x = ctx.inp(0)
    k = len(r.rnns)
    if x.kind == SEQ:
        if "B" in x.axes:
            ctx.fail(f"reads a bidirectional operator's output with its direction axis: {BIDI_READ}")
        if x.layer != k - 1:
            ctx.fail(f"reads the output of recurrent layer {x.layer + 1}, not of the one before it: rnnskip "
                     "converts a plain stack")
    elif (x.kind != X or k) and not _reads_per_step_head(r, x, k):   # (those run or fold below)
        ctx.fail(f"reads {x.kind} data: its input must be the model input (optionally through an embedding or a "
                 "per-step MatMul+Add) or the previous recurrent layer's output sequence")
    if len(x.axes) != 3 or x.axes[2] != "F":
        ctx.fail(f"gets a rank-{len(x.axes)} input with axes {x.axes}: the input must be [time, batch, features] "
                 "(layout=0) or [batch, time, features] (layout=1)")
    t, n = (x.axes[0], x.axes[1]) if layout == 0 else (x.axes[1], x.axes[0])
    for label, role in ((t, "T"), (n, "N")):
        if label in ("D", "1") or r.roles.get(label, role) != role:
            ctx.fail(f"reads time and batch axes swapped relative to the model input (layout={layout}): the graph "
                     "transposes its data in a way rnnskip does not follow")
        r.roles[label] = role

    hidden = int(a.get("hidden_size", 0))
    W = np.asarray(ctx.const(1, "W"), np.float64)
    R = np.asarray(ctx.const(2, "R"), np.float64)
    gates = cell.gates
    if W.ndim != 3 or W.shape[0] != dirs or W.shape[1] != gates * hidden or W.shape[2] != (x.width or W.shape[2]) \
            or R.shape != (dirs, gates * hidden, hidden):
        ctx.fail(f"has W {W.shape}, R {R.shape} for hidden_size={hidden} on {x.width} inputs: the graph is "
                 "inconsistent")
    B = None
    if ctx.inp(3) is not None:
        B = np.asarray(ctx.const(3, "B"), np.float64)
        if B.shape != (dirs, 2 * gates * hidden):
            ctx.fail(f"has B {B.shape}, expected ({dirs}, {2 * gates * hidden})")
    lens = ctx.node.input[4] if len(ctx.node.input) > 4 and ctx.node.input[4] else None
    if lens is not None:
        ls = ctx.inp(4)
        if ls.kind != LENS:
            ctx.fail("has a sequence_lens that is not a graph input: rnnskip takes each row's length from the "
                     "data (the lengths array of --data)")
        if k and r.rnn_lens[-1] != lens:
            ctx.fail("has a sequence_lens different from the layer before it: not supported")
        if r.front:
            ctx.fail("has a sequence_lens after a Conv front end, whose frames are not the input's steps: export "
                     "the model without it (rnnskip streams each row's steps through the front end)")
    elif x.padded:
        ctx.fail("reads an output computed with sequence_lens without sequence_lens itself: not supported")
    _check_zero_state(ctx, 5, "initial_h", hidden)
    _check_zero_state(ctx, 6, "initial_c", hidden)

    def keras(m):   # [G*H, cols] in the operator's gate order -> [cols, G*H] in Keras order
        blocks = np.split(m, gates, axis=0)
        return np.concatenate([blocks[g] for g in cell.onnx_gate_order], axis=0).T

    B = np.zeros((dirs, 2 * gates * hidden)) if B is None else B
    acts = _activation_names(ctx)
    per = len(acts) // dirs if "activations" in a else len(acts)   # the default names one direction's
    if dirs == 2 and "activations" in a and acts[:per] != acts[per:]:
        ctx.fail(f"uses activations {acts[:per]} forward and {acts[per:]} backward: rnnskip's bidirectional "
                 "layers use the same cell both ways")
    layers = []
    for d in range(dirs):   # ONNX direction index 0 forward, 1 reverse (the valid steps from last to first)
        b_in, b_rec = keras(B[d, :gates * hidden, None])[0], keras(B[d, gates * hidden:, None])[0]
        fields = cell.from_onnx(a, acts[:per], b_in, b_rec)
        if isinstance(fields, str):
            ctx.fail(fields)
        layers.append(RNNLayer(kind=cell.kind, units=hidden, kernel=_f32(keras(W[d])),
                               recurrent_kernel=_f32(keras(R[d])), bias=_f32(fields["bias"]),
                               activation=fields["activation"], recurrent_activation=fields["recurrent_activation"],
                               options=fields["options"], name=ctx.key if d == 0 else f"{ctx.key}_backward"))
    if x.affine is not None:   # a BatchNormalization of its input (nn.BatchNorm1d on [batch, channels, time])
        a_, b_ = _affine_of(ctx, x, W.shape[2])
        if k == 0 and not r.front and r.input_dense is None and r.embedding is None:   # the model's input: centred
            r.center = support.input_center(a_, b_)
            r.norm_scale = None if r.center is None else support.input_norm_scale(a_)
        for l in layers:
            cell.fold_input_affine(l, np.asarray(a_, np.float64), np.asarray(b_, np.float64))
    if x.norm is not None:   # a LayerNormalization (its scale and bias: x.affine, folded above) of the layer before
        if x.kind != SEQ:
            ctx.fail(f"reads '{x.norm_node}' (LayerNormalization) of {x.kind} data: rnnskip folds a "
                     "LayerNormalization into a recurrent layer only when it normalises the previous recurrent "
                     "layer's output sequence")
        for l in layers:
            l.input_norm = x.norm
    first_operator = k == 0
    if x.kind == X and k == 0 and r.input_more:   # after the normalisation's fold, as below
        _place_input(ctx, layers, cell, lens)
        k = len(r.rnns)
    if x.kind == VEC:   # after the normalisation's fold: the layer reads affine(y @ w + c)
        r.head = _place_per_step(ctx, run_tail=False)   # the ones with an activation join the stack
        k = len(r.rnns)
    if x.kind == VEC and r.head:
        _no_norm_in_stack(ctx)
        chain = support.linear_chain(r.head, r.rnns[-1].out_dim)
        if chain is None:
            ctx.fail(f"reads per-step Dense layers that do not chain on the previous layer's {r.rnns[-1].out_dim} "
                     "outputs: the graph is inconsistent")
        w, c = chain
        before = sum(d.kernel.size for d in r.head) + sum(l.kernel.size for l in layers)
        for l in layers:
            cell.fold_input_linear(l, w, c)
        r.notes.append(f"folded the per-step {' and '.join(repr(d.name) for d in r.head)} into '{ctx.key}'")
        for d in r.head:   # their nodes' rows in rnnskip inspect
            r.status[d.name] = f"folded into '{ctx.key}'"
        after = sum(l.kernel.size for l in layers)
        if after > before:   # a bottleneck: its product is the larger matrix
            r.notes.append(f"'{ctx.key}' reads {w.shape[0]} inputs through the folded MatMul+Add: its input weights "
                           f"are {after:,} where they and the recurrent operator's were {before:,} (a per-step "
                           "MatMul+Add runs as a layer of its own only when it has an activation)")
    if x.kind == VEC:
        r.head, r.per_step, r.head_reads = [], False, -1
    layer = layers[0]
    if dirs == 2:
        layer.backward = layers[1]   # merge_mode is set where the graph reads both directions (_set_merge)
    if k:
        r.rnns[-1].return_sequences = True
    r.rnns.append(layer)
    r.rnn_lens.append(lens)
    if lens is not None and first_operator:
        r.notes.append(f"sequence_lens of '{ctx.key}' is each row's length: pass it as lengths in --data")
    dax = "B" if dirs == 2 else "D"   # B: the direction axis of size 2
    y = (t, dax, n, "F") if layout == 0 else (n, t, dax, "F")
    yh = (dax, n, "F") if layout == 0 else (n, dax, "F")
    outs = [Sym(SEQ, axes=y, width=hidden, layer=k, padded=lens is not None),
            Sym(STATE, axes=yh, width=hidden, layer=k),
            Sym(CELL, axes=yh, width=hidden, layer=k)]
    return outs[:len(ctx.node.output)], "converted"


def _place_input(ctx: _Ctx, layers: List[RNNLayer], cell, lens: Optional[str]) -> None:
    """Per-step Dense layers before the first recurrent operator, whose directions are ``layers``: on the input
    features (:func:`folds.input_dense_layers`) the input's Dense, then the later ones with an activation as per-step
    layers of the stack; on a front end's frames each one with an activation a per-step layer; the linear ones after
    the last activation folded into ``layers``."""
    r = ctx.r
    if r.embedding is not None:   # each folds into the embedding table in turn (_assemble)
        return
    placed = input_dense_layers(r.input_more if r.front else [r.input_dense] + r.input_more, front=bool(r.front))
    if placed is None:
        ctx.fail("reads per-step MatMul+Add layers on the input that do not chain: the graph is inconsistent")
    first, composed, (stack, groups, tail) = placed
    r.input_dense, r.input_more = first, []
    for into, group in [(first.name if first else "", composed)] + [(layer.name, g[:-1])
                                                                       for layer, g in zip(stack, groups)]:
        if group:
            r.notes.append(f"folded the per-step {' and '.join(repr(d.name) for d in group)} into '{into}'")
        for d in group:
            r.status[d.name] = f"folded into '{into}'"
    for layer, group in zip(stack, groups):
        r.rnns.append(layer)
        r.rnn_lens.append(lens)
        r.status[layer.name] = per_step_status(group[-1])
    if tail:
        w, c = support.linear_chain(tail, tail[0].in_dim)
        for l in layers:
            cell.fold_input_linear(l, w, c)
        r.notes.append(f"folded the per-step {' and '.join(repr(d.name) for d in tail)} into '{ctx.key}'")
        for d in tail:
            r.status[d.name] = f"folded into '{ctx.key}'"


def _reads_per_step_head(r: _Reader, x: Sym, k: int) -> bool:
    """``x`` is the output of per-step MatMul+Add layers (or an activation) on every step of the last of the ``k``
    recurrent layers so far."""
    return bool(x.kind == VEC and k and r.per_step and r.head and r.head_reads == k - 1 and not r.pool
                and x.width == r.head[-1].out_dim)


def _place_per_step(ctx: _Ctx, run_tail: bool) -> List[DenseLayer]:
    """The per-step Dense layers of ``r.head`` (on the last recurrent layer's outputs) as the layers they run as
    (:func:`folds.per_step_layers`): each with an activation joins the stack, the linear ones before it folded into
    it; returns the linear ones after the last activation (none when ``run_tail``: they run as one more layer)."""
    r = ctx.r
    _no_norm_in_stack(ctx)
    placed = per_step_layers(r.head, r.rnns[-1].out_dim, run_tail)
    if placed is None:
        ctx.fail(f"reads per-step Dense layers that do not chain on the previous layer's {r.rnns[-1].out_dim} "
                 "outputs: the graph is inconsistent")
    layers, groups, tail = placed
    for layer, group in zip(layers, groups):
        r.rnns[-1].return_sequences = True
        r.rnns.append(layer)
        r.rnn_lens.append(r.rnn_lens[-1])
        r.placed_per_step[id(group[-1])] = len(r.rnns) - 1
        r.status[layer.name] = per_step_status(group[-1])
        if len(group) > 1:
            r.notes.append(f"folded the per-step {' and '.join(repr(d.name) for d in group[:-1])} into "
                           f"'{layer.name}'")
            for d in group[:-1]:
                r.status[d.name] = f"folded into '{layer.name}'"
    return tail


def _no_norm_in_stack(ctx: _Ctx) -> None:
    """Per-step Dense layers about to join the recurrent stack (or fold into the next layer) carry no layer
    normalisation: rnnskip normalises the input of a head's Dense only."""
    d = next((d for d in ctx.r.head if d.norm_epsilon is not None), None)
    if d is not None:
        ctx.fail(f"reads the per-step '{d.name}', which a LayerNormalization feeds: rnnskip folds a LayerNormalization "
                 f"into the head's Dense layer after it, not into a per-step layer before pooling, a Flatten over "
                 f"time or another recurrent layer")


def h_layer_norm(ctx: _Ctx):
    """LayerNormalization over the features (nn.LayerNorm on the recurrent layers' output, opset >= 17): the next
    Dense (Gemm/MatMul) of the head normalises its input (DenseLayer.norm_epsilon), or the next recurrent layer
    (RNNLayer.input_norm), with the scale and bias folded into its weights like a BatchNormalization's."""
    s = ctx.inp(0)
    if not _data(s.kind):
        ctx.fail("on constants is not folded by rnnskip")
    rank = len(s.axes)
    axis = _norm(int(ctx.attrs.get("axis", -1)), rank)
    if s.kind == X:   # the model input, a per-step input layer's or a front end's output
        ctx.fail("is before the recurrent layers: rnnskip folds a LayerNormalization into the head's Dense layer "
                 "or the next recurrent layer after it (a fixed normalisation of the input, BatchNormalization or "
                 "(x - mean) / std with constants, folds into the first layer)")
    if s.kind not in (STATE, VEC, SEQ) or axis != rank - 1 or s.axes[-1] != "F":
        ctx.fail(f"normalises axis {axis} of {s.kind} data with axes {s.axes}: rnnskip folds a LayerNormalization of "
                 "the recurrent layers' output features (the last axis) into the head's Dense layer or the next "
                 "recurrent layer after it")
    if s.affine is not None or s.norm is not None:
        ctx.fail("reads a normalisation's output: rnnskip folds a LayerNormalization of a recurrent or Dense layer's "
                 "output into the head's Dense layer or the next recurrent layer after it")
    n = s.width
    gamma = np.asarray(ctx.const(1, "scale"), np.float64).reshape(-1)
    beta = np.zeros(n) if ctx.inp(2) is None else np.asarray(ctx.const(2, "B"), np.float64).reshape(-1)
    if gamma.size not in (1, n) or beta.size not in (1, n):
        ctx.fail(f"has {gamma.size} scales on {n} features: the graph is inconsistent")
    affine = (np.broadcast_to(gamma, (n,)).copy(), np.broadcast_to(beta, (n,)).copy())
    # (dense kept: the next Dense must read the last head layer; an activation cannot fold through, _NORM_PASSES)
    return [replace(s, affine=affine, norm=float(ctx.attrs.get("epsilon", 1e-5)), norm_node=ctx.key)] + \
        [None] * (len(ctx.node.output) - 1), "folded (layer normalisation, into the next Dense or recurrent layer)"


def _steps_of_per_step_head(ctx: _Ctx, s: Sym) -> Optional[Sym]:
    """``s``, the output of per-step Dense layers (``r.head``, an activation alone among them) on the last recurrent
    layer's outputs, about to be pooled or flattened over time: those layers join the stack, and this is the last
    one's output sequence (None when ``s`` is not that)."""
    r = ctx.r
    if s.kind == VEC and r.placed_per_step.get(id(s.dense)) == len(r.rnns) - 1:   # placed by another reader
        return Sym(SEQ, axes=s.axes, width=s.width, layer=len(r.rnns) - 1)
    if s.kind != VEC or not r.head or s.dense is not r.head[-1] or not r.per_step or r.pool or "B" in s.axes \
            or r.head_reads != len(r.rnns) - 1:
        return None
    _place_per_step(ctx, run_tail=True)
    r.head, r.per_step, r.head_reads = [], False, -1
    return Sym(SEQ, axes=s.axes, width=s.width, layer=len(r.rnns) - 1)


# --------------------------------------------------------------------------
# handlers: Dense (Gemm, MatMul + Add) and activations

#: the axes (by role, size-1 axes aside) a head input or the output may have: last step, or every step
_OUTPUT_ROLES = {False: (["N", "F"],), True: (["N", "T", "F"], ["T", "N", "F"])}


def _roles(r: _Reader, s: Sym) -> List[str]:
    """``s``'s axes by role (N, T, F; "?" for an axis that is none of them), size-1 axes left out."""
    return [ax if ax == "F" else r.roles.get(ax, "?") for ax in s.axes if ax not in ("D", "1")]


def _dense_input(ctx: _Ctx, s: Sym) -> str:
    """Where a Dense on ``s`` goes: "head" or "input" (per step, before the first recurrent layer)."""
    r = ctx.r
    if s.kind == X and r.front and not r.rnns and (s.dense is None or r.input_more and s.dense is r.input_more[-1]):
        return "input_more"   # on the front end's frames: all of them layers of the stack (_place_input)
    if s.kind == X and r.input_dense is None and not r.rnns and s.dense is None:
        return "input"   # after an embedding it folds into the table (_assemble)
    if s.kind == X and not r.rnns and s.dense is not None and s.dense is (r.input_more or [r.input_dense])[-1]:
        return "input_more"   # placed at the first recurrent operator (_place_input); after an embedding, folded
    if s.kind == CELL:
        ctx.fail("reads a final cell state (Y_c): rnnskip converts models whose head reads the hidden "
                 "state")
    if s.kind in (STATE, SEQ) and (s.direction >= 0 or "B" in s.axes):
        what = ("one direction's final state (h_n[-1] is the backward direction's)" if s.direction >= 0 else
                "output with its direction axis")
        ctx.fail(f"reads a bidirectional operator's {what}: {BIDI_READ}")
    if s.kind in (STATE, VEC, SEQ):
        if s.kind == VEC and s.dense is not r.head[-1]:
            ctx.fail("reads a head layer other than the last one: rnnskip converts a chain of Dense layers")
        if r.head and r.head[-1].activation in support.CLASS_ACTIVATIONS:
            act = r.head[-1].activation
            ctx.fail(f"follows a {'Softmax' if act == 'softmax' else 'LogSoftmax'}: rnnskip supports {act} only on "
                     f"the last layer")
        if s.kind == SEQ and s.padded:
            ctx.fail("runs on every step of an output computed with sequence_lens (zero after each row's "
                     "length): not supported")
        if _roles(r, s) not in _OUTPUT_ROLES[s.kind == SEQ or r.per_step]:
            ctx.fail(f"reads axes {s.axes}: rnnskip expects [batch, features] here (or [batch, time, features] "
                     "on every step)")
        r.per_step = r.per_step or s.kind == SEQ
        return "head"
    ctx.fail(f"on {s.kind} data is not supported: {SUPPORTED_SUMMARY}")


def _add_dense(ctx: _Ctx, s: Sym, kernel: np.ndarray, bias: np.ndarray):
    r = ctx.r
    where = _dense_input(ctx, s)
    if kernel.shape[0] != s.width and not (s.kind == X and s.width == 0):
        ctx.fail(f"has a [{kernel.shape[0]}, {kernel.shape[1]}] weight on {s.width} inputs: the graph is "
                 "inconsistent")
    if s.norm is not None and where != "head":
        ctx.fail("reads a LayerNormalization's output before the recurrent layers: rnnskip folds a "
                 "LayerNormalization into the head's Dense layer after it")
    if s.affine is not None:   # x -> a x + b before it: W' = diag(a) W, b' = b W + bias
        a, b = _affine_of(ctx, s, kernel.shape[0])
        if where == "input" and s.kind == X and not r.front and r.embedding is None:   # the model's input: centred
            r.center = support.input_center(a, b)
        kernel, bias = a[:, None] * kernel, np.asarray(bias, np.float64) + b @ kernel
    d = DenseLayer(kernel=_f32(kernel), bias=_f32(bias), name=ctx.key, norm_epsilon=s.norm)
    if s.kind in (STATE, SEQ):
        r.head_reads = s.layer
        r.pool, r.pool_name = s.pooled or ("", "")
    if where == "input":
        r.input_dense = d
        return [Sym(X, axes=s.axes, width=d.out_dim, dense=d)], "converted (per-step dense)"
    if where == "input_more":
        r.input_more.append(d)
        return [Sym(X, axes=s.axes, width=d.out_dim, dense=d)], "converted (per-step dense)"
    r.head.append(d)
    return [Sym(VEC, axes=s.axes, width=d.out_dim, dense=d)], "converted"


def h_gemm(ctx: _Ctx):
    a = ctx.attrs
    if a.get("transA", 0):
        ctx.fail("has transA=1: rnnskip reads Gemm as x @ W + b (transA=0)")
    s = ctx.inp(0)
    if not _data(s.kind):
        return _shape_like(ctx), "folded (glue)"
    if s.kind == X:
        ctx.fail("runs on the per-step input: a Gemm has 2-D input; rnnskip converts a head Gemm")
    B = np.asarray(ctx.const(1, "B"), np.float64)
    if B.ndim != 2:
        ctx.fail(f"has a {B.ndim}-D B: the graph is inconsistent")
    kernel = float(a.get("alpha", 1.0)) * (B.T if a.get("transB", 0) else B)
    bias = np.zeros(kernel.shape[1])
    if ctx.inp(2) is not None:
        C = np.asarray(ctx.const(2, "C"), np.float64)
        if C.size not in (1, kernel.shape[1]) or (C.ndim == 2 and C.shape[0] != 1):
            ctx.fail(f"has a bias of shape {C.shape}: rnnskip supports one bias per output")
        bias = float(a.get("beta", 1.0)) * np.broadcast_to(C.reshape(-1), (kernel.shape[1],))
    return _add_dense(ctx, s, kernel, bias)


def h_matmul(ctx: _Ctx):
    s, w = ctx.inp(0), ctx.inp(1)
    if not _data(s.kind) and not _data(w.kind):
        return _shape_like(ctx), "folded (glue)"
    if not _data(s.kind) or w.kind != CONST or np.ndim(w.value) != 2:
        ctx.fail("is not data @ a constant 2-D weight: rnnskip reads MatMul as a Dense layer's kernel")
    if s.axes[-1] != "F":
        ctx.fail(f"multiplies axis {s.axes[-1]} of its input: rnnskip expects the features last")
    return _add_dense(ctx, s, np.asarray(w.value, np.float64), np.zeros(np.shape(w.value)[1]))


def h_add(ctx: _Ctx):
    a, b = ctx.inp(0), ctx.inp(1)
    if any(x.kind in (IDX, LENS) for x in (a, b)):
        return [_idx_arith(ctx)], "folded (index arithmetic)"
    if not _data(a.kind) and not _data(b.kind):
        return _shape_like(ctx), "folded (glue)"
    both = _summed_directions(ctx, a, b)
    if both is not None:
        return [both], "folded (both directions' final states summed: merge_mode='sum')"
    s, c = (a, b) if b.kind == CONST else (b, a)
    if c.kind != CONST or s.dense is None or s.dense.activation != "linear" or s.affine is not None:
        return _normalisation(ctx)
    d = s.dense
    v = np.asarray(c.value, np.float64)
    if v.size not in (1, d.out_dim):
        ctx.fail(f"adds a constant of shape {v.shape} to {d.out_dim} outputs: rnnskip folds one bias per output")
    d.bias = _f32(np.asarray(d.bias, np.float64) + _per_feature(ctx, replace(s, width=d.out_dim), v, "adds"))
    return [Sym(s.kind, axes=s.axes, width=s.width, layer=s.layer, dense=d)], f"folded into '{d.name}' (bias)"


def _per_feature(ctx: _Ctx, s: Sym, v: np.ndarray, verb: str) -> np.ndarray:
    """Constant ``v`` broadcast against data ``s`` (numpy's rules, right-aligned) as one value per feature: it may
    vary along the F axis only."""
    v = np.asarray(v, np.float64)
    if v.ndim > len(s.axes) or any(n != 1 and s.axes[len(s.axes) - v.ndim + i] != "F" for i, n in enumerate(v.shape)):
        ctx.fail(f"{verb} a constant of shape {list(v.shape)} on data with axes {s.axes}: rnnskip folds a "
                 "normalisation with one value per feature ((x - mean) / std, mean and std of shape [features])")
    flat = v.reshape(-1)
    if flat.size != 1 and s.width and flat.size != s.width:
        ctx.fail(f"{verb} {flat.size} values on {s.width} features: the graph is inconsistent")
    if not np.all(np.isfinite(flat)):
        ctx.fail(f"{verb} a constant that is not finite: rnnskip folds finite normalisations")
    return np.broadcast_to(flat, (s.width or flat.size,)).astype(np.float64)


#: the largest factor a written-out normalisation may apply (a standard deviation of 1e-6): sharper ones are refused
_SHARPEST = 1e6

#: (data OP constant, constant OP data) -> x -> a x + b, per feature, for the four elementwise ops
_ELEMENTWISE = {"Add": (lambda c: (1.0, c), lambda c: (1.0, c)),
                "Sub": (lambda c: (1.0, -c), lambda c: (-1.0, c)),
                "Mul": (lambda c: (c, 0.0), lambda c: (c, 0.0)),
                "Div": (lambda c: (1.0 / c, 0.0), None)}


def _normalisation(ctx: _Ctx):
    """Add/Sub/Mul/Div of data and a per-feature constant: a normalisation written out ((x - mean) / std,
    x * scale + shift), read as BatchNormalization is: into the Dense or Conv before it when that is linear, else
    pending (Sym.affine) for the Dense, Conv or recurrent layer after it (the model input is then centred)."""
    a_, b_ = ctx.inp(0), ctx.inp(1)
    pos = 0 if a_ is not None and _data(a_.kind) else 1
    s, c = (a_, b_) if pos == 0 else (b_, a_)
    verb = {"Add": "adds", "Sub": "subtracts", "Mul": "multiplies by", "Div": "divides by"}[ctx.op]
    if c is not None and c.kind == SHAPE:
        ctx.fail(f"{verb} a value computed from the input's shape (e.g. x.shape[1]), which changes with the "
                 "sequence: rnnskip folds elementwise arithmetic on model data only with a constant")
    if c is None or c.kind != CONST:
        ctx.fail(f"{verb} model data: rnnskip folds elementwise arithmetic on model data only with a constant "
                 "(a normalisation such as (x - mean) / std)")
    rule = _ELEMENTWISE[ctx.op][pos]
    if rule is None:
        ctx.fail("divides a constant by model data: rnnskip folds a normalisation x / std, not std / x")
    if s.kind not in (X, STATE, VEC) or "B" in s.axes:
        ctx.fail(f"{verb} a constant on {s.kind} data: rnnskip folds a normalisation of the model's features, of a "
                 "front-end layer's output or of the head's input")
    v = _per_feature(ctx, s, c.value, verb)
    if ctx.op == "Div" and np.any(v == 0):
        ctx.fail("divides by a constant with a zero entry: rnnskip folds finite normalisations")
    a, b = (np.broadcast_to(t, v.shape).astype(np.float64) for t in rule(v))
    sharp = np.flatnonzero(np.abs(a) > _SHARPEST)
    if sharp.size:   # x / 1e-8 for a constant feature: its folded weights and bias swamp float32's precision
        i = int(sharp[0])
        ctx.fail(f"scales feature {i} by {a[i]:.3g} (a standard deviation of {1 / abs(a[i]):.3g}): folded into "
                 "float32 weights, a normalisation this sharp loses the other features' precision; clamp the "
                 "standard deviation in the model (e.g. std.clamp(min=1e-3)) or drop that feature, and export again")
    return _fold_normalisation(ctx, s, a, b)


def _affine_of(ctx: _Ctx, s: Sym, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``s``'s pending normalisation as ``n`` values each (one for all when the graph left the feature count
    open: a scalar normalisation on a dynamic feature axis)."""
    a, b = (np.asarray(v, np.float64).reshape(-1) for v in s.affine)
    if a.size not in (1, n) or b.size not in (1, n):
        ctx.fail(f"reads {n} features normalised with {a.size} values: the graph is inconsistent")
    return np.broadcast_to(a, (n,)).copy(), np.broadcast_to(b, (n,)).copy()


def _fold_normalisation(ctx: _Ctx, s: Sym, a: np.ndarray, b: np.ndarray):
    """x -> a x + b per feature on data ``s``: into the linear Dense or Conv that computed it, else pending."""
    d = s.dense
    if d is not None and d.activation == "linear" and s.affine is None:   # a linear Dense's output: into it
        d.kernel = _f32(np.asarray(d.kernel, np.float64) * a[None, :])
        d.bias = _f32(np.asarray(d.bias, np.float64) * a + b)
        return [s], f"folded into '{d.name}' (normalisation)"
    cv = s.conv if s.kind == X else None
    if cv is not None and cv.activation == "linear" and s.affine is None:   # a linear Conv's output: into it
        support.fold_after_conv(cv, a, b)
        return [s], f"folded into '{cv.name}' (normalisation)"
    if s.affine is not None:   # after another normalisation: they compose
        a0, b0 = s.affine
        a, b = a0 * a, b0 * a + b
    # (a Dense before it stays named, its activation applied: the next Dense must read the last head layer)
    return [replace(s, affine=(a, b), conv=None, act_conv=None)], \
        "folded (normalisation, into the next Dense, Conv or recurrent layer)"


def _is_normalisation(ctx: _Ctx) -> bool:
    """Elementwise arithmetic between model data and a constant (not glue, not a Dense's bias or scale)."""
    return any(s is not None and _data(s.kind) for s in ctx.ins[:2])


def h_sub(ctx: _Ctx):
    a, b = ctx.inp(0), ctx.inp(1)
    if a.kind == LENS and b.kind == CONST and np.asarray(b.value).size == 1:
        if float(np.asarray(b.value).reshape(-1)[0]) != 1:
            ctx.fail(f"subtracts {np.asarray(b.value).reshape(-1)[0]} from the lengths: rnnskip reads them as each "
                     "row's last valid step, lengths - 1")
        return [_idx(a.axes, {LAST: (1, ())})], "folded (each row's last valid step: lengths - 1)"
    if any(x.kind in (LENS, IDX) for x in (a, b)):
        return [_idx_arith(ctx)], "folded (index arithmetic)"
    return _normalisation(ctx) if _is_normalisation(ctx) else h_generic_shape(ctx)


def h_unary(ctx: _Ctx):
    """Neg, Reciprocal, Sqrt: on constants (a normalisation's 1 / sqrt(var + eps)) folded; Neg of data is x -> -x."""
    s = ctx.inp(0)
    if not _data(s.kind):
        return h_generic_shape(ctx)
    if ctx.op != "Neg" or s.kind not in (X, STATE, VEC) or "B" in s.axes:
        ctx.fail(f"on model data is not supported: {SUPPORTED_SUMMARY}")
    n = s.width or 1
    return _fold_normalisation(ctx, s, -np.ones(n), np.zeros(n))


def h_scale(ctx: _Ctx):
    """Div by 2 (or Mul by 0.5) of the two final states summed: their mean, Keras' merge_mode='ave'; elsewhere
    glue on constants and shapes only."""
    a, b = ctx.inp(0), ctx.inp(1)
    kinds = {x.kind for x in (a, b) if x is not None}
    if MASK in kinds:
        return [_masked(ctx)], "folded (zeros after each row's length)"
    if MSUM in kinds:
        return [_masked_mean(ctx)], "converted (pooled over time: avg over each row's own steps)"
    # a static export's torch.arange(B) (a constant) times an axis's size: the row offsets of a flattened output
    rows_times_size = ctx.op == "Mul" and SHAPE in kinds and any(_static_rows(x).kind == IDX for x in (a, b)) and \
        len(_entries_of(a if a.kind == SHAPE else b) or ()) == 1
    if kinds & {IDX, LENS} or rows_times_size:
        return [_idx_arith(ctx)], "folded (index arithmetic)"
    pos = 0 if a is not None and _data(a.kind) else 1   # Mul takes the constant on either side
    s, c = (a, b) if pos == 0 else (b, a)
    if s is not None and s.kind == STATE and s.summed and c is not None and c.kind == CONST and \
            (ctx.op == "Mul" or pos == 0):
        v = np.asarray(c.value, np.float64)
        if v.size == 1 and float(v.reshape(-1)[0]) == (2.0 if ctx.op == "Div" else 0.5):
            name = ctx.node.input[pos]   # the sum: this must be its only reader, or the graph reads it both ways
            readers = sum(name in n.input for n in ctx.r.graph.node) + sum(o.name == name for o in ctx.r.graph.output)
            if readers != 1:
                ctx.fail(f"averages the two final states of bidirectional operator '{ctx.r.rnns[s.layer].name}' whose "
                         "sum another node reads too: rnnskip converts one reading of its outputs")
            ctx.r.rnns[s.layer].merge_mode = "ave"
            return [Sym(STATE, axes=s.axes, width=s.width, layer=s.layer)], \
                "folded (both directions' final states averaged: merge_mode='ave')"
    if s is not None and s.dense is not None and s.dense.activation == "linear" and s.affine is None and \
            c is not None and c.kind == CONST and (ctx.op == "Mul" or pos == 0):
        # a constant scale of a Dense layer's linear output (logits / temperature): folded into its weights
        d = s.dense
        v = np.asarray(c.value, np.float64)
        if v.size not in (1, d.out_dim) or not np.all(np.isfinite(v)) or (ctx.op == "Div" and np.any(v == 0)):
            ctx.fail(f"scales {d.out_dim} outputs by a constant of {v.size} values: rnnskip folds one finite "
                     f"scale, or one per output, into the Dense layer before it")
        v = _per_feature(ctx, replace(s, width=d.out_dim), v, "multiplies by" if ctx.op == "Mul" else "divides by")
        f = 1.0 / v if ctx.op == "Div" else v
        d.kernel = _f32(np.asarray(d.kernel, np.float64) * f[None, :])
        d.bias = _f32(np.asarray(d.bias, np.float64) * f)
        return [Sym(s.kind, axes=s.axes, width=s.width, layer=s.layer, dense=d)], f"folded into '{d.name}' (scale)"
    return _normalisation(ctx) if _is_normalisation(ctx) else h_generic_shape(ctx)


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
    if int(ctx.attrs.get("group", 1)) != 1:
        ctx.fail(f"has group={ctx.attrs.get('group')}: rnnskip streams convolutions with group=1 (grouped and "
                 "depthwise convolutions are not converted)")
    cout, cin, k = W.shape
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
    conv = ConvLayer(kernel=_f32(W.transpose(2, 1, 0)), bias=_f32(bias), strides=stride, dilation=dilation,
                     padding=padding, name=ctx.key)
    status = "converted (streamed front end)"
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


#: ONNX op type -> its handler
HANDLERS: Dict[str, Callable] = {
    **{op: h_recurrent for op in RECURRENT_OPS},
    "ReduceMean": h_reduce_pool, "ReduceMax": h_reduce_pool, "ReduceSum": h_reduce_pool,
    "Gather": h_gather, "GatherND": h_gather_nd, "GatherElements": h_gather_elements, "Range": h_range,
    "Less": h_compare, "Greater": h_compare,
    "Gemm": h_gemm, "MatMul": h_matmul, "Add": h_add,
    "Relu": h_activation, "Sigmoid": h_activation, "Tanh": h_activation, "Softmax": h_activation,
    "LogSoftmax": h_activation, "Clip": h_clip,
    "LeakyRelu": h_leaky_relu,
    "Transpose": h_transpose, "Squeeze": h_squeeze, "Unsqueeze": h_unsqueeze, "Slice": h_slice,
    "Shape": h_shape, "Constant": h_constant, "ConstantOfShape": h_constant_of_shape, "Expand": h_expand,
    "Identity": h_identity,
    "Dropout": h_dropout,
    # glue on constants and shapes only (refused on model data)
    "Cast": h_cast, "Concat": h_concat, "Reshape": h_reshape, "Sub": h_sub,
    "Mul": h_scale, "Div": h_scale, "Equal": h_generic_shape, "Where": h_generic_shape,
    "BatchNormalization": h_batch_norm, "LayerNormalization": h_layer_norm, "Neg": h_unary, "Reciprocal": h_unary,
    "Sqrt": h_unary,
    "Conv": h_conv, "MaxPool": h_pool, "AveragePool": h_pool, "Pad": h_pad, "Flatten": h_flatten,
}


_POOL = ("a sum over time is not converted: rnnskip pools over time with the mean or the maximum (out.mean(1), "
         "out.amax(1)), or feeds the head the last step (out[:, -1]) or h_n[-1]")
#: what to do instead, for op types PyTorch models often have where rnnskip has no handler
HINTS = {"ReduceSum": _POOL,
         "Log": "a logarithm of model data is not converted; for log(softmax(z)) use torch.log_softmax(z, -1) (or "
                "nn.LogSoftmax), which converts",
         "If": "a run-time branch on a dimension's size (torch emits one for .squeeze(1) of an axis whose size is "
               "not fixed, as after out[:, -1:] or out.gather(1, idx)): index the axis instead (out[:, -1], "
               "out[torch.arange(B), lengths - 1])"}


def unsupported(key: str, op: str) -> str:
    return f"node '{key}' ({op}) is not supported: {HINTS.get(op, SUPPORTED_SUMMARY)}"


# --------------------------------------------------------------------------
# the file

def _load(path: str):
    p = os.fspath(path)
    if not os.path.exists(p):
        raise RnnskipError(f"model file not found: {p}")
    if os.path.isdir(p):
        raise RnnskipError(f"{p} is a directory, not a model file: rnnskip reads .onnx, Keras .h5 or .keras files")
    try:
        import onnx
    except ImportError:
        raise RnnskipError(f"reading {p} needs the onnx package: pip install 'rnnskip[onnx]'") from None
    try:
        model = onnx.load(p, load_external_data=False)
    except Exception as e:   # protobuf's DecodeError and friends: one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RnnskipError(f"cannot read {p}: not an ONNX model or damaged ({msg})") from None
    _load_external_data(model, p)
    if not model.graph.node:
        raise RnnskipError(f"cannot read {p}: the ONNX graph has no nodes")
    return model


def _load_external_data(model, p: str) -> None:
    """Weights kept in files beside the .onnx (external data, as exporters write for large models): a
    missing file is named as such, not as a damaged model."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    base = os.path.dirname(os.path.abspath(p))

    def tensors(g):   # initializers and attribute tensors, subgraphs included
        yield from g.initializer
        for n in g.node:
            for a in n.attribute:
                yield from ([a.t] if a.HasField("t") else []) + list(a.tensors)
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    yield from tensors(sub)

    files = sorted({e.value for t in tensors(model.graph) if uses_external_data(t)
                    for e in t.external_data if e.key == "location"})
    missing = [f for f in files if not os.path.isfile(os.path.join(base, f))]
    if missing:
        raise RnnskipError(f"{p} keeps its weights in {missing[0]} (ONNX external data), which is not next to it; "
                           f"copy that file beside the .onnx (or export the model as one file)")
    try:
        onnx.load_external_data_for_model(model, base)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RnnskipError(f"cannot read the external data of {p}: {msg}") from None


def _opset(model) -> int:
    return max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _model_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", os.path.splitext(os.path.basename(path))[0]) or "model"


def _inputs(r: _Reader) -> None:
    """The graph inputs: one model input (token ids [batch, time] or floats [batch, time, features], in
    either axis order) and optionally a sequence_lens input."""
    from onnx import TensorProto
    inits = {i.name for i in r.graph.initializer}
    data = [i for i in r.graph.input if i.name not in inits]
    lens_names = {n.input[4] for n in r.graph.node if n.op_type in RECURRENT_OPS and len(n.input) > 4 and n.input[4]}
    model_inputs = [i for i in data if i.name not in lens_names]
    state_names = {v for n in r.graph.node if n.op_type in RECURRENT_OPS for v in list(n.input)[5:7] if v}
    for i in (model_inputs if len(model_inputs) > 1 else []):   # which extra input feeds what, for its refusal
        seen = {i.name}
        for n in r.graph.node:   # in graph order (ONNX sorts it); values, not shapes: zero states use x's shape
            if n.op_type != "Shape" and any(v in seen for v in n.input):
                seen |= set(n.output)
        if seen & state_names:
            raise RnnskipError(
                f"{r.path}: input '{i.name}' is a recurrent operator's initial state: rnnskip runs every sequence "
                f"from a zero state; export the model without it (rnn(x), not rnn(x, h0))")
        if seen & lens_names:   # torch's pack_padded_sequence: the lengths reach sequence_lens through other nodes
            raise RnnskipError(
                f"{r.path}: input '{i.name}' reaches the recurrent operator's sequence_lens through other nodes, as "
                f"torch's pack_padded_sequence exports it: rnnskip converts a sequence_lens that is a graph input "
                f"itself, not a packed sequence; export the model without pack_padded_sequence (rnnskip then runs "
                f"every step of --data, as the unpacked model does)")
    if len(model_inputs) == 2:   # each row's length as an index (out[arange(B), lengths - 1]): [batch] integers
        lens_names |= {i.name for i in model_inputs if _is_lengths(i)}
        model_inputs = [i for i in model_inputs if i.name not in lens_names] or model_inputs
    if len(model_inputs) != 1:
        raise RnnskipError(f"{r.path} has {len(model_inputs)} model inputs "
                           f"({', '.join(i.name for i in model_inputs)}): rnnskip converts models with one input "
                           "(token ids or float features), plus optionally each row's length (sequence_lens, or "
                           "[batch] integers that index each row's last valid step)")
    for i in data:
        if i.name in lens_names:
            r.syms[i.name] = Sym(LENS, axes=("LN",))   # LN: the batch axis, before the recurrent layer names it
    i = model_inputs[0]
    t = i.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    ints = t.elem_type in (TensorProto.INT32, TensorProto.INT64, TensorProto.INT16, TensorProto.INT8,
                           TensorProto.UINT8, TensorProto.UINT16)
    if ints and len(dims) == 2:
        r.syms[i.name] = Sym(IDS, axes=("a0", "a1"))
    elif t.elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16) and len(dims) == 3:
        # width 0: a dynamic feature axis, taken from the first layer's weights
        r.syms[i.name] = Sym(X, axes=("a0", "a1", "F"), width=dims[2] or 0)
    else:
        one = "take x with a batch axis in forward and export it on a batch of sequences"
        uni = ("; a univariate series unsqueezed inside forward (x.unsqueeze(-1)): move that out of the model and "
               f"export it on x of shape [batch, time, 1]; one sequence [time, features] without a batch axis: {one}"
               if not ints and len(dims) == 2 else "")
        if ints and len(dims) == 1:
            uni = ("; this one takes a single sequence without a batch axis (as the PyTorch tutorials' "
                   f"sentence.view(len(sentence), 1, -1) inside forward): {one}")
        raise RnnskipError(f"{r.path}: input '{i.name}' is rank {len(dims)} ({'integer' if ints else 'float'}): "
                           "rnnskip expects token ids [batch, time] (or [time, batch]) or float features "
                           f"[batch, time, features] (or [time, batch, features]){uni}")


def _lengths_dtype(r: _Reader) -> str:
    """The numpy type of the lengths input, as onnxruntime takes it ("" without one)."""
    from onnx import helper
    name = next((n for n in r.rnn_lens if n), r.last_valid)
    i = next((i for i in r.graph.input if name and i.name == name), None)
    return str(np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))) if i is not None else ""


def _is_lengths(i) -> bool:
    """A graph input of rank 1 holding integers: each row's length."""
    from onnx import TensorProto
    t = i.type.tensor_type
    return len(t.shape.dim) == 1 and t.elem_type in (TensorProto.INT32, TensorProto.INT64)


def _read(path) -> Tuple[_Reader, object]:
    """Run every node's handler; the reader holds the pieces and each node's status."""
    from onnx import numpy_helper
    model = _load(path)
    r = _Reader(path=os.fspath(path), graph=model.graph, opset=_opset(model))
    r.dims = _inferred_dims(model)
    for init in model.graph.initializer:
        r.syms[init.name] = Sym(CONST, value=numpy_helper.to_array(init))
    return r, model


def _inferred_dims(model) -> Dict[str, list]:
    """Every value's shape as ONNX shape inference (with data propagation, so shape-computed Reshape targets
    resolve) gives it: per axis an int, a symbol, or None where unknown. {} when inference fails."""
    from onnx import shape_inference
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:   # a graph inference cannot follow: data reshapes are then refused
        return {}
    out = {}
    g = inferred.graph
    for v in list(g.value_info) + list(g.input) + list(g.output):
        t = v.type.tensor_type if v.type.HasField("tensor_type") else None
        if t is None or not t.HasField("shape"):
            continue
        out[v.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) if d.HasField("dim_param")
                       else None for d in t.shape.dim]
    return out


#: ops a pending normalisation (Sym.affine) passes through to the layer that folds it (or composes with)
_AFFINE_PASSES = ("Gemm", "MatMul", "Identity", "Dropout", "Squeeze", "Unsqueeze", "Reshape", "BatchNormalization",
                  "Add", "Sub", "Mul", "Div", "Neg", "Conv", "Pad", "Transpose", "Shape", *RECURRENT_OPS)


#: ops a pending layer normalisation (Sym.norm) passes through to the head's Dense or the recurrent layer that folds it
_NORM_PASSES = ("Gemm", "MatMul", "Identity", "Dropout", "Squeeze", "Unsqueeze", "Shape", "Transpose", *RECURRENT_OPS)


def _run(r: _Reader) -> ModelIR:
    # before the inputs: a cell exported one step per call takes the hidden state as a second input
    if not any(n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx") for n in r.graph.node):
        raise RnnskipError(f"{os.path.basename(r.path)} has no recurrent operator ({', '.join(RECURRENT_OPS)}): "
                           "rnnskip converts those operators, not a recurrence unrolled into per-step ops: "
                           "torch.onnx.export(..., dynamo=True) unrolls some torch recurrent modules (export with "
                           "dynamo=False), every exporter unrolls a Python loop over a torch cell module, "
                           "nn.*Cell (use the layer module instead), and a cell written with nn.Linear layers and "
                           f"exported one step at a time takes the hidden state as an input (run one of "
                           f"{', '.join('nn.' + op for op in RECURRENT_OPS)} over the whole sequence instead)")
    _inputs(r)
    for i, node in enumerate(r.graph.node):
        key = node_key(node, i)
        handler = HANDLERS.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx"):
            raise LayerError(unsupported(key, node.op_type if node.domain in ("", "ai.onnx")
                                         else f"{node.domain}.{node.op_type}"), key)
        ctx = _Ctx(r, node, key)
        ln = next((s.norm_node for s in ctx.ins if s is not None and s.norm is not None), None)
        if node.op_type not in _NORM_PASSES and ln is not None:
            raise LayerError(f"node '{key}' ({node.op_type}) reads the output of '{ln}' (LayerNormalization): rnnskip "
                             "folds a LayerNormalization only into the head's Gemm/MatMul or the recurrent layer "
                             "right after it (through Squeeze, Transpose or Dropout at most), not before pooling or "
                             "an activation", key)
        if node.op_type not in _AFFINE_PASSES and any(s is not None and s.affine is not None for s in ctx.ins) \
                and not _affine_activation(node.op_type, ctx.ins[0]):
            raise LayerError(f"node '{key}' ({node.op_type}) reads a normalisation's output (a BatchNormalization, "
                             "or arithmetic with constants): rnnskip folds one only into the Gemm/MatMul, Conv or "
                             "recurrent layer that reads it (through Squeeze, Reshape or Dropout at most)", key)
        if node.op_type not in ("Conv", "Pad", "Identity", "Dropout") and \
                any(s is not None and s.tpad != (0, 0) for s in ctx.ins):
            raise LayerError(f"node '{key}' ({node.op_type}) reads a Pad's output: rnnskip folds a zero Pad of the "
                             "time axis only into the Conv that reads it", key)
        if node.op_type not in _LENGTH_OPS and \
                any(s is not None and s.kind in (LENS, IDX, MASK, MSEQ, MSUM) for s in ctx.ins):
            raise LayerError(f"node '{key}' ({node.op_type}) {LENGTHS_READ}", key)
        missing = [n for n, s in zip(node.input, ctx.ins) if n and s is None]
        if missing:
            raise RnnskipError(f"{r.path}: node '{key}' ({node.op_type}) reads '{missing[0]}', which no earlier node "
                               "computes: the graph is not sorted or is damaged")
        try:
            outs, status = handler(ctx)
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:   # a malformed node: one line
            raise RnnskipError(f"{r.path}: node '{key}' ({node.op_type}) cannot be read: "
                               f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        for name, s in zip(node.output, outs):
            if name:
                r.syms[name] = s
        r.status[key] = status
        if status.startswith(_FOLD_NOTES):   # what changed the model's arithmetic, as the Keras import notes it
            r.notes.append(f"folded {node.op_type} '{key}' {status[len('folded '):]}")
    return _assemble(r)


#: node statuses the model's notes repeat (report.json, the conversion's output): folds into another layer's
#: weights or activation, not glue
_FOLD_NOTES = ("folded into '", "folded (batch normalisation", "folded (normalisation", "folded (layer normalisation")


def _assemble(r: _Reader) -> ModelIR:
    outs = list(r.graph.output)
    if len(outs) != 1:
        raise RnnskipError(f"{r.path} has {len(outs)} outputs ({', '.join(o.name for o in outs)}): rnnskip "
                           "converts models with one output (export only the prediction, not the states)")
    if not r.rnns:
        raise RnnskipError(f"{r.path} has no recurrent operator ({', '.join(RECURRENT_OPS)}): {SUPPORTED_SUMMARY}")
    s = r.syms.get(outs[0].name)
    last = len(r.rnns) - 1
    if s is None or s.kind not in (STATE, VEC, SEQ) or (s.kind == SEQ and s.padded):
        raise RnnskipError(f"{r.path}: output '{outs[0].name}' is {s.kind if s is not None else '?'} data: rnnskip "
                           "converts models whose output is the last recurrent layer's final state or every step's "
                           "output, through an optional Dense head")
    if s.affine is not None:
        raise RnnskipError(f"{r.path}: output '{outs[0].name}' is a normalisation's output (a BatchNormalization, "
                           "or arithmetic with constants) with no Dense layer after it: rnnskip folds a normalisation "
                           "into the head's Dense layers")
    if s.kind in (STATE, SEQ) and (s.layer != last or r.head):
        raise RnnskipError(f"{r.path}: output '{outs[0].name}' is the output of recurrent layer {s.layer + 1} of "
                           f"{last + 1}: rnnskip converts models whose output reads the last recurrent layer")
    if s.kind == VEC and s.dense is not r.head[-1]:
        raise RnnskipError(f"{r.path}: output '{outs[0].name}' is not the last head layer's output")
    per_step = r.per_step or s.kind == SEQ
    roles = _roles(r, s) + (["F"] if s.squeezed else [])
    if s.squeezed:
        shape = "[batch, time]" if per_step else "[batch]"
        r.notes.append(f"output '{outs[0].name}' is the one-output head squeezed to {shape}; rnnskip's output is "
                       f"{shape[:-1]}, 1]")
    if roles not in _OUTPUT_ROLES[per_step]:
        raise RnnskipError(f"{r.path}: output '{outs[0].name}' has axes {s.axes}: rnnskip expects [batch, outputs]"
                           " (or [batch, time, outputs] for one output per step)")
    unit_axes = [i for i, ax in enumerate(s.axes) if ax in ("D", "1")]   # keepdim pooling, h_n[-1:], ...
    if unit_axes:
        r.notes.append(f"output '{outs[0].name}' has size-1 axes {unit_axes} (of {len(s.axes)}); rnnskip's output "
                       f"leaves them out")
    # the head must read the last recurrent layer's state (first: reading an earlier one also leaves the last
    # bidirectional operator's outputs unread, which would hide what is wrong)
    if r.head and r.head_reads != last:
        raise RnnskipError(f"{r.path}: the head reads the state of recurrent layer {r.head_reads + 1} of {last + 1}: "
                           "rnnskip converts models whose head reads the last recurrent layer"
                           + (" (of stacked bidirectional layers, h_n[-2] and h_n[-1] are the last one's)"
                              if r.rnns[last].backward is not None else ""))
    unread = next((l for l in r.rnns if l.backward is not None and not l.merge_mode), None)
    if unread is not None:
        raise RnnskipError(f"{r.path}: the outputs of bidirectional operator '{unread.name}' are not read as rnnskip "
                           f"converts them: {BIDI_READ}")
    if r.embedding is not None:
        inp = r.embedding
        for d in [r.input_dense] + r.input_more if r.input_dense is not None else []:
            # a per-step Dense on embedded ids is a lookup too
            if d.activation in support.CLASS_ACTIVATIONS:
                raise RnnskipError(f"{r.path}: the per-step Dense '{d.name}' after the embedding "
                                   f"{EMBEDDING_FOLD_SOFTMAX}")
            inp, note = fold_dense_into_embedding(inp, d)
            r.notes.append(note)
    elif r.front:
        if per_step:
            raise RnnskipError(f"{r.path}: output '{outs[0].name}' is one output per frame of the Conv front end, "
                               "whose frames are not the input's steps: rnnskip converts front-end models whose output "
                               "reads the last state (or pools over time)")
        bad = support.front_pad_problem(r.front)
        if bad is not None:
            raise LayerError(f"node '{bad[0]}' (Conv) {bad[1]}", bad[0])
        first = r.front[0]
        inp = FeatureInput(features=int(first.in_dim if isinstance(first, ConvLayer) else first.channels),
                           front=list(r.front), center=r.center)
    else:
        features = r.input_dense.in_dim if r.input_dense is not None else r.rnns[0].input_dim
        inp = FeatureInput(features=int(features), dense=r.input_dense, center=r.center,
                           norm_scale=r.norm_scale if r.input_dense is None else None)
    notes = list(r.notes)
    if not r.head:   # no head: the output itself is pooled or not
        r.pool, r.pool_name = s.pooled or ("", "")
    if r.pool:
        r.rnns[-1].return_sequences = True   # the pooling reads every step's output
    if per_step:
        r.rnns[-1].return_sequences = True   # one output per step, as Keras' return_sequences=True at the output
        if roles[0] == "T":
            notes.append(f"output '{outs[0].name}' is [time, batch, outputs]; rnnskip's per-step outputs are "
                         "[batch, time, outputs]")
    model_in = next(i for i in r.graph.input if r.syms.get(i.name) is not None and r.syms[i.name].kind in (IDS, X))
    from onnx import helper
    io = {"runtime": "onnxruntime", "input": model_in.name,
          "input_dtype": str(np.dtype(helper.tensor_dtype_to_np_dtype(model_in.type.tensor_type.elem_type))),
          "input_time_major": r.roles.get("a0") == "T",
          "lengths": next((n for n in r.rnn_lens if n), r.last_valid), "lengths_dtype": _lengths_dtype(r),
          # static sizes of the input's first two axes as the graph declares them (0: dynamic)
          "input_static": [d.dim_value if d.HasField("dim_value") else 0
                           for d in model_in.type.tensor_type.shape.dim][:2],
          "output_time_major": bool(per_step and roles[0] == "T"), "output_squeezed": bool(s.squeezed),
          "output_unit_axes": unit_axes}
    return ModelIR(input=inp, rnn_layers=r.rnns, head=r.head, name=_model_name(r.path), source=r.path,
                   notes=notes, per_step=per_step, lengths_input=any(r.rnn_lens) or bool(r.last_valid), source_io=io,
                   pool=r.pool, pool_name=r.pool_name, pool_steps=r.pool_steps if r.pool == "flatten" else 0)


# --------------------------------------------------------------------------
# public entry points

def load_onnx_file(path) -> ModelIR:
    """Parse an ONNX file into a :class:`ModelIR` and check it against the kernels (one-line
    :class:`RnnskipError` for anything unreadable or unsupported)."""
    from rnnskip.converter.keras_import import check_supported
    r, _model = _read(path)
    ir = _run(r)
    check_supported(ir)
    return ir


def parse_onnx_file(path) -> ModelIR:
    r, _model = _read(path)
    return _run(r)


def _params_per_node(r: _Reader) -> List[int]:
    """Parameters per node for inspect: the float constants a node computing on model data reads, each counted where
    it meets the data, so a weight sliced, transposed or reshaped on the way (the dynamo exporter slices one flat
    tensor into every layer's W, R and B) counts once, at the layer that uses it. Nodes on constants alone fold
    (0); integer constants (shapes, axes, indices) count nothing."""
    from onnx import TensorProto
    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    const = {i.name: (int(np.prod(i.dims)), i.data_type in floats) for i in r.graph.initializer}
    out = []
    for node in r.graph.node:
        ins = [n for n in node.input if n]
        if node.op_type == "Constant" or (ins and all(n in const for n in ins)):
            if node.op_type == "Constant":
                v = next((a.t for a in node.attribute if a.name == "value"), None)
                total, is_float = (int(np.prod(v.dims)), v.data_type in floats) if v is not None else \
                    (1, any(a.name.startswith("value_float") for a in node.attribute))
            else:
                total, is_float = sum(const[n][0] for n in ins), any(const[n][1] for n in ins)
            for o in node.output:
                d = r.dims.get(o)
                known = d is not None and all(isinstance(v, int) for v in d)
                const[o] = (int(np.prod(d)) if known else total, is_float)
            out.append(0)
        elif node.op_type in ("Expand", "ConstantOfShape"):   # a fill value (zero states), no parameters
            out.append(0)
        else:   # a recurrent operator's W, R, B and P (its initial states, zeros, are no parameters)
            read = [n for i, n in enumerate(node.input)
                    if n and (node.op_type not in RECURRENT_OPS or i in (1, 2, 3, 7))]
            out.append(sum(const[n][0] for n in read if n in const and const[n][1]))
    return out


def _node_options(node) -> str:
    """A node's attributes on one line for inspect: subgraphs (If/Loop bodies) and tensors summarised."""
    from onnx import AttributeProto
    parts = []
    for a in node.attribute:
        if a.name == "value":
            continue
        if a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            parts.append(f"{a.name}=<graph>")
        elif a.type in (AttributeProto.TENSOR, AttributeProto.SPARSE_TENSOR, AttributeProto.TENSORS):
            parts.append(f"{a.name}=<tensor>")
        else:
            parts.append(f"{a.name}={_attr_value(a)}")
    return ", ".join(parts)


def describe_onnx_file(path):
    """Every node (Constants left out) and what the importer makes of it, for ``rnnskip inspect``."""
    from rnnskip.converter.keras_import import LayerDescription, ModelDescription, check_supported
    r, model = _read(path)
    producer = f"{model.producer_name} {model.producer_version}".strip() or "unknown producer"
    desc = ModelDescription(r.path, "onnx", "", _model_name(r.path), producer=f"ONNX opset {r.opset} ({producer})")
    rows = {}
    params = _params_per_node(r)
    for i, node in enumerate(model.graph.node):
        if node.op_type == "Constant":
            continue
        key = node_key(node, i)
        row = LayerDescription(key, node.op_type, params[i], _node_options(node), "")
        if node.op_type not in HANDLERS:
            row.refusals.append(unsupported(key, node.op_type))
        desc.layers.append(row)
        rows[key] = row
    try:
        ir = _run(r)
        check_supported(ir)
    except RnnskipError as e:
        desc.error = str(e)
        refused = getattr(e, "layer", None)
        if refused in rows:
            rows[refused].status = f"refused: {desc.error}"
    else:
        for key, row in rows.items():
            row.status = r.status.get(key, "unused")
    for row in desc.layers:
        if row.refusals:
            row.status = f"refused: {row.refusals[0]}"
    return desc
