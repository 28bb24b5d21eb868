"""The symbolic values an ONNX graph is read into: the kinds of :class:`Sym`, the reader's state
(:class:`_Reader`), one node as its handler sees it (:class:`_Ctx`), and the helpers the handlers share.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from rnnskip import cells
from rnnskip.converter.ir import ConvLayer, DenseLayer, EmbeddingInput, RNNLayer
from rnnskip.converter.support import LayerError

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
                 f"holds the backward direction after only the last step, not its final state (any read rnnskip "
                 f"converts computes something else, so the model must be retrained reading it): {BIDI_READ}")
    if s.padded:
        ctx.fail("takes the last step of a recurrent output computed with sequence_lens (zero after each row's "
                 "length): read the layer's final state (output Y_h) instead")
    return Sym(STATE, axes=axes, width=s.width, layer=s.layer)


#: the axes (by role, size-1 axes aside) a head input or the output may have: last step, or every step
_OUTPUT_ROLES = {False: (["N", "F"],), True: (["N", "T", "F"], ["T", "N", "F"])}


def _roles(r: _Reader, s: Sym) -> List[str]:
    """``s``'s axes by role (N, T, F; "?" for an axis that is none of them), size-1 axes left out."""
    return [ax if ax == "F" else r.roles.get(ax, "?") for ax in s.axes if ax not in ("D", "1")]


def _affine_of(ctx: _Ctx, s: Sym, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """``s``'s pending normalisation as ``n`` values each (one for all when the graph left the feature count
    open: a scalar normalisation on a dynamic feature axis)."""
    a, b = (np.asarray(v, np.float64).reshape(-1) for v in s.affine)
    if a.size not in (1, n) or b.size not in (1, n):
        ctx.fail(f"reads {n} features normalised with {a.size} values: the graph is inconsistent")
    return np.broadcast_to(a, (n,)).copy(), np.broadcast_to(b, (n,)).copy()
