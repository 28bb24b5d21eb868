"""Handlers of the recurrent operators (:data:`RECURRENT_OPS`) and LayerNormalization between them."""
from __future__ import annotations

from dataclasses import replace
from typing import List, Optional

import numpy as np

from rnnskip.converter import support
from rnnskip.converter.folds import input_dense_layers, per_step_layers, per_step_status
from rnnskip.converter.ir import DenseLayer, RNNLayer
from rnnskip.converter.onnx.symbolic import (
    _ACTS,
    BIDI_READ,
    CELL,
    CONST,
    LENS,
    RECURRENT_OPS,
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
    _Reader,
)

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
