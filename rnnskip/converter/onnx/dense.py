"""Handlers of Dense layers (Gemm, MatMul + Add) and of the elementwise arithmetic that folds into them
(normalisations, constant scales).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rnnskip.converter import support
from rnnskip.converter.ir import DenseLayer
from rnnskip.converter.onnx.glue import _summed_directions, h_generic_shape
from rnnskip.converter.onnx.lengths import LAST, _idx, _idx_arith, _masked, _masked_mean, _static_rows
from rnnskip.converter.onnx.symbolic import (
    _OUTPUT_ROLES,
    BIDI_READ,
    CELL,
    CONST,
    IDX,
    LENS,
    MASK,
    MSUM,
    SEQ,
    SHAPE,
    STATE,
    SUPPORTED_SUMMARY,
    VEC,
    Sym,
    X,
    _affine_of,
    _Ctx,
    _data,
    _entries_of,
    _f32,
    _roles,
    _shape_like,
)

# --------------------------------------------------------------------------
# handlers: Dense (Gemm, MatMul + Add) and activations

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
