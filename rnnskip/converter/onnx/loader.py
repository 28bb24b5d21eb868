"""The ONNX file read into the IR: the handler table (op type -> handler), the graph run node by node,
the IR assembled, and the public entry points.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Tuple

import numpy as np

from rnnskip.converter import support
from rnnskip.converter.folds import EMBEDDING_FOLD_SOFTMAX, fold_dense_into_embedding
from rnnskip.converter.ir import ConvLayer, FeatureInput, ModelIR
from rnnskip.converter.onnx.dense import h_add, h_gemm, h_matmul, h_scale, h_sub, h_unary
from rnnskip.converter.onnx.frontend import (
    _affine_activation,
    h_activation,
    h_batch_norm,
    h_clip,
    h_conv,
    h_leaky_relu,
    h_pad,
    h_pool,
)
from rnnskip.converter.onnx.glue import (
    _POOL,
    h_cast,
    h_concat,
    h_constant,
    h_constant_of_shape,
    h_dropout,
    h_expand,
    h_flatten,
    h_gather,
    h_generic_shape,
    h_identity,
    h_reduce_pool,
    h_reshape,
    h_shape,
    h_slice,
    h_squeeze,
    h_transpose,
    h_unsqueeze,
)
from rnnskip.converter.onnx.lengths import h_compare, h_gather_elements, h_gather_nd, h_range
from rnnskip.converter.onnx.recurrent import h_layer_norm, h_recurrent
from rnnskip.converter.onnx.symbolic import (
    _LENGTH_OPS,
    _OUTPUT_ROLES,
    BIDI_READ,
    CONST,
    IDS,
    IDX,
    LENGTHS_READ,
    LENS,
    MASK,
    MSEQ,
    MSUM,
    RECURRENT_OPS,
    SEQ,
    STATE,
    SUPPORTED_SUMMARY,
    VEC,
    Sym,
    X,
    _attr_value,
    _Ctx,
    _Reader,
    _roles,
    node_key,
)
from rnnskip.converter.support import LayerError
from rnnskip.errors import RnnskipError

# --------------------------------------------------------------------------
# the handler table

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


#: what to do instead, for op types PyTorch models often have where rnnskip has no handler
HINTS = {"ReduceSum": _POOL,
         "Log": "a logarithm of model data is not converted; for log(softmax(z)) use torch.log_softmax(z, -1) (or "
                "nn.LogSoftmax), which converts",
         "ConstantFill": "an experimental operator torch's exporter writes below opset 9 (a recurrent layer's "
                         "zero initial state): export with opset_version=17",
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
                f"itself, not a packed sequence; export the model without pack_padded_sequence, then give each "
                f"row's length as lengths in --data (rnnskip runs each row's own steps, as the packed model does; "
                f"without lengths every step, as the unpacked graph does)")
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
                   pool=r.pool, pool_name=r.pool_name, pool_steps=r.pool_steps if r.pool == "flatten" else 0,
                   input_steps=io["input_static"][0 if io["input_time_major"] else 1]
                   if len(io["input_static"]) == 2 else 0)


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
