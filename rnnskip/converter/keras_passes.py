"""The passes from the handlers' nodes (one per layer of the chain, ``keras_layers.py``)
to the :class:`~rnnskip.converter.ir.ModelIR`:

0. :func:`drop_lost_masks`: a mask Keras 2 loses on the way to the recurrent layers is dropped;
   :func:`read_last_step`: ``x[:, -1]`` on a recurrent layer's sequence is its ``return_sequences=False``;
1. :func:`fold_batchnorm`: every BatchNormalization into the linear Dense or Conv1D right
   before it, else into the input of the next Dense or recurrent layer (BN after BN: one map);
2. :func:`fold_layernorm`: every LayerNormalization into the head's Dense right after it;
   :func:`fold_activations`: every Activation into the linear Dense or Conv1D right before
   it, or dropped when linear;
3. :func:`assemble`: the chain grammar, stated once, and the IR.

Each pass refuses, with a one-line :class:`~rnnskip.converter.support.LayerError`,
what it cannot place, and leaves every layer a status (``rnnskip inspect``) and its
notes (``ModelIR.notes``, in chain order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

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
    FeatureInput,
    ModelIR,
    PoolLayer,
    RNNLayer,
)
from rnnskip.converter.keras_graph import reduction, time_pool_kind
from rnnskip.converter.keras_layers import (
    ACTIVATION,
    BATCHNORM,
    CONV,
    DENSE,
    EMBEDDING,
    FLATTEN,
    INPUT,
    LAST_STEP,
    LAYERNORM,
    MASKING,
    NOOP,
    POOL,
    RECURRENT,
    SUPPORTED_SUMMARY,
    TIME_POOL,
    Affine,
    LayerNorm,
    Node,
    batchnorm_axis_refusal,
    unsupported,
)
from rnnskip.converter.support import LayerError
from rnnskip.errors import RnnskipError

#: nodes that compute nothing (so are no layer of the model to assemble)
_NOTHING = (INPUT, NOOP)


def _is_identity(node: Node) -> bool:
    """Nothing between two layers: a fold may reach across it (a Flatten over a time axis is refused
    when the chain is assembled)."""
    return node.kind in _NOTHING + (FLATTEN,) or (node.kind == ACTIVATION and node.value == "linear")


def _previous(nodes: List[Node]) -> Optional[Node]:
    """The last node of ``nodes`` that is not the identity."""
    return next((node for node in reversed(nodes) if not _is_identity(node)), None)


def _is_linear_dense(node: Optional[Node]) -> bool:
    return node is not None and node.kind == DENSE and node.value.activation == "linear"


def _is_linear_conv(node: Optional[Node]) -> bool:
    return node is not None and node.kind == CONV and node.value.activation == "linear"


# --------------------------------------------------------------------------
# 0. masks Keras 2 loses

#: layers Keras 2 (tf_keras) passes no mask through (supports_masking is False there, True in Keras 3)
KERAS2_MASK_DROPPERS = ("Normalization", "Rescaling")


def drop_lost_masks(nodes: List[Node], keras_version: str) -> List[Node]:
    """A Masking or Embedding(mask_zero=True) whose mask reaches a Normalization or Rescaling layer in a
    Keras 2 file: Keras 2 drops the mask there (silently) and runs every step, so rnnskip does too, with a
    note. Keras 3 passes the mask through them."""
    if support.keras_major(keras_version) >= 3:
        return nodes
    source: Optional[Node] = None
    for node in nodes:
        if node.kind == MASKING or (node.kind == EMBEDDING and node.value.mask_zero):
            source = node
        elif source is not None and node.layer.class_name in KERAS2_MASK_DROPPERS:
            what = f"{source.layer.display} '{source.name}'"
            note = (f"the mask of {what} is lost at {node.layer.display} '{node.name}', which Keras 2 passes no mask "
                    f"through: Keras runs every step, padding included, and so does rnnskip (Keras 3 passes the mask "
                    f"through it)")
            if source.kind == MASKING:
                source.kind, source.status = NOOP, "dropped (its mask is lost: see the note)"
            else:
                source.value.mask_zero = False
            source.notes.append(note)
            source = None
        elif node.kind == RECURRENT:
            source = None
    return nodes


def read_last_step(nodes: List[Node]) -> List[Node]:
    """``x[:, -1, :]`` (``LAST_STEP``) right after a unidirectional recurrent layer that returns sequences, with no
    mask on them: the layer's output at the last step, which is what it returns with ``return_sequences=False``
    (every row runs every step), so it is read as that and the slice dropped. Anywhere else refused in one line."""
    masked: Optional[Node] = None
    before: Optional[Node] = None
    for node in nodes:
        if node.kind == MASKING or (node.kind == EMBEDDING and node.value.mask_zero):
            masked = node
        if node.kind == LAST_STEP:
            name, cls = node.name, node.layer.display
            if before is None or before.kind != RECURRENT:
                what = f"the output of '{before.name}' ({before.layer.display})" if before is not None else "the input"
                raise LayerError(f"layer '{name}' ({cls}) takes x[:, -1] of {what}: rnnskip reads it only on a "
                                 "recurrent layer's sequence of outputs (as that layer's return_sequences=False)", name)
            r: RNNLayer = before.value
            if not r.return_sequences:
                raise LayerError(f"layer '{name}' ({cls}) slices the output of '{r.name}', which has "
                                 "return_sequences=False: there is no time axis left, so x[:, -1] takes its last "
                                 "unit; rnnskip reads x[:, -1] only on a sequence of outputs", name)
            if r.backward is not None:
                raise LayerError(f"layer '{name}' ({cls}) takes the last step of the Bidirectional layer '{r.name}': "
                                 "there its backward direction has run one step, an output rnnskip does not keep; "
                                 "use return_sequences=False (both directions' final states) or a pooling over "
                                 "time", name)
            if masked is not None:
                raise LayerError(f"layer '{name}' ({cls}) takes the last step of '{r.name}', whose steps the "
                                 f"{masked.layer.display} layer '{masked.name}' masks: for a padded row that step is "
                                 "padding, not the row's last valid output; use return_sequences=False (each row's "
                                 "last valid output), which rnnskip converts", name)
            r.return_sequences = False
            node.kind, node.status = NOOP, f"converted (the last step: return_sequences=False on '{r.name}')"
            node.notes.append(f"read {cls} '{name}' ({node.value}) as return_sequences=False on '{r.name}': its "
                              "output at the last step")
            continue
        if node.kind not in _NOTHING:
            before = node
    return nodes


# --------------------------------------------------------------------------
# 1. BatchNormalization

def fold_batchnorm(nodes: List[Node]) -> List[Node]:
    """Fold every BatchNormalization into an adjacent layer; returns the nodes left.

    After a linear Dense (nothing but no-ops and linear Activations between): into its
    kernel and bias. Otherwise into the input of the next Dense, recurrent layer or Conv1D (padded with the
    raw frame the map sends to 0, where Keras pads the normalised input with zeros), if only
    no-ops, linear Activations and further BatchNormalizations (combined with it) lie
    between, or pooling over time that the map commutes with (the mean; the max when every
    scale is positive). A BatchNormalization that fits neither stays in the chain: the next
    passes refuse it, or what stands in its way.
    """
    out: List[Node] = []
    pending: Optional[Node] = None   # folds into the next Dense / recurrent layer
    at_input = False                 # pending normalises the model's input (nothing computed before it)
    last_recurrent: Optional[RNNLayer] = None
    pooled = False   # after pooling over time (or a Flatten of the time axis): [batch, units]
    steps = _declared_steps(nodes)
    for node in nodes:
        over_time = node.kind == FLATTEN and not pooled and last_recurrent is not None and \
            last_recurrent.return_sequences
        if node.kind == BATCHNORM:
            # the feature axis: the last of [batch, time, features], or of [batch, units]
            # after a recurrent layer that returns only its last output, or after pooling over time
            rank = 3 if not pooled and (last_recurrent is None or last_recurrent.return_sequences) else 2
            if not support.batchnorm_axis_ok(node.layer.config, rank):
                raise LayerError(batchnorm_axis_refusal(node.layer), node.name)
            affine: Affine = node.value
            if pending is not None:  # BN after BN: one affine map
                first: Affine = pending.value
                pending.value = Affine(first.scale * affine.scale, first.shift * affine.scale + affine.shift)
                _folded(node, pending)
                continue
            before = _previous(out)
            if _is_linear_dense(before):
                support.fold_after(before.value, *_sized(node, affine, before.value.kernel.shape[1], before))
                _folded(node, before)
                continue
            if _is_linear_conv(before):   # per output channel, as after a Dense
                support.fold_after_conv(before.value, *_sized(node, affine, before.value.out_dim, before))
                _folded(node, before)
                continue
            pending = node
            at_input = not any(n.kind in (DENSE, RECURRENT, CONV, POOL, EMBEDDING, TIME_POOL) for n in out)
            out.append(node)
            continue
        if pending is not None:
            if at_input and node.kind in (CONV, DENSE, RECURRENT):   # the device centres raw inputs on its zero
                width = node.value.in_dim if node.kind == CONV else (
                    node.value.kernel.shape[0] if node.kind == DENSE else node.value.input_dim)
                a, b = _sized(pending, pending.value, width, node)
                node.input_center = support.input_center(a, b)
                if node.kind == RECURRENT and node.input_center is not None:
                    node.input_norm = support.input_norm_scale(a)
            if node.kind == CONV:
                conv: ConvLayer = node.value
                a, b = _sized(pending, pending.value, conv.in_dim, node)
                flat = support.neutral_input(a, b)
                if conv.padding != "valid" and isinstance(flat, int):   # Keras pads the normalised input with zeros
                    cls = pending.layer.display
                    raise LayerError(f"layer '{pending.name}' ({cls}) maps feature {flat} to a constant other than 0 "
                                     f"before '{node.name}' ({node.layer.display}) with padding='{conv.padding}', "
                                     f"whose zeros "
                                     f"pad the {cls}'s output: no input frame normalises to them, so the fold "
                                     f"cannot pad the raw input; rnnskip folds such a {cls} into a Conv1D with "
                                     f"padding='valid' (or put it after the convolution)", pending.name)
                support.fold_before_conv(conv, a, b)
                out.remove(pending)
                _folded(pending, node, note_on=node)
                if conv.pad is not None:
                    node.notes.append(f"'{node.name}' pads (padding='{conv.padding}') with the input frame "
                                      f"'{pending.name}' maps to 0, as Keras pads its output with zeros")
                pending = None
            elif node.kind in (DENSE, RECURRENT):
                for into in ([node.value] if node.kind == DENSE else node.value.directions()):
                    fold = (support.fold_before_dense if node.kind == DENSE
                            else cells.cell_of(into.kind).fold_input_affine)
                    fold(into, *_sized(pending, pending.value, into.kernel.shape[0], node))
                out.remove(pending)
                _folded(pending, node, note_on=node)   # noted where the layer it went into is
                pending = None
            elif node.kind == TIME_POOL and (node.value == "avg" or bool(np.all(pending.value.scale > 0))):
                # a per-feature affine map commutes with the mean, and with the max if it scales up; after a
                # Concatenate of several poolings it applies to each one's copy of the features
                k = len(node.value.split(",")) if pending.value.scale.size > 1 else 1   # one value: for all
                pending.value = Affine(np.tile(pending.value.scale, k), np.tile(pending.value.shift, k))
            elif node.kind == TIME_POOL:
                cls = pending.layer.display
                raise LayerError(f"layer '{pending.name}' ({cls}) scales some features by 0 or less "
                                 f"before the max pooling '{node.name}', which the maximum does not commute with: "
                                 f"rnnskip folds a {cls} through GlobalMaxPooling1D only when every "
                                 "scale is positive (put it after the pooling)", pending.name)
            elif over_time and steps:   # every step's features side by side: the map applies to each step's copy
                k = steps if pending.value.scale.size > 1 else 1
                pending.value = Affine(np.tile(pending.value.scale, k), np.tile(pending.value.shift, k))
            elif over_time or not _is_identity(node):
                pending = None   # blocked: stays in the chain, refused later
        if node.kind == RECURRENT:
            last_recurrent = node.value
        pooled = pooled or node.kind == TIME_POOL or over_time
        out.append(node)
    return out


def _declared_steps(nodes: List[Node]) -> int:
    """The fixed number of steps the model's input declares (0: none)."""
    shape = next((n.layer.declared_shape for n in nodes if n.layer.declared_shape is not None), None)
    return int(shape[1]) if shape and len(shape) >= 2 and shape[1] is not None else 0


def _folded(bn: Node, into: Node, note_on: Optional[Node] = None) -> None:
    """Record ``bn`` folded into ``into``; the note goes with ``note_on`` (default: ``bn``)."""
    bn.status = f"folded into '{into.name}'"
    (note_on or bn).notes.append(f"folded {bn.layer.display} '{bn.name}' into '{into.name}'")


def _sized(bn: Node, affine: Affine, width: int, into: Node):
    """(scale, shift) of ``affine`` (``bn``'s) for the ``width`` features of ``into``: one value applies to each."""
    if affine.scale.size not in (1, width):
        raise LayerError(f"layer '{bn.name}' ({bn.layer.display}) has {affine.scale.size} values per feature but "
                         f"'{into.name}' has {width} features there: the file is inconsistent", bn.name)
    return np.broadcast_to(affine.scale, (width,)).copy(), np.broadcast_to(affine.shift, (width,)).copy()


# --------------------------------------------------------------------------
# 2. Activation

def fold_layernorm(nodes: List[Node]) -> List[Node]:
    """Fold every LayerNormalization into the Dense layer right after it (no-ops and linear Activations between)
    where that Dense is in the head: after a recurrent layer, with no recurrent layer, pooling over time or front
    end after it; or, between two recurrent layers, into the later one (``RNNLayer.input_norm``, on the device
    ``rnnskip_layer_norm_s8`` on its input). The Dense normalises its input (``DenseLayer.norm_epsilon``; on the
    device, integer arithmetic: ``quant.model.QNorm``) and takes gamma and beta into its kernel and bias. With a
    time axis (an output per step) it normalises each step's features, as Keras does. Anywhere else: one line."""
    out: List[Node] = []
    per_step, seen_recurrent = False, False   # the output so far has a time axis: [batch, time, features]
    for i, node in enumerate(nodes):
        if node.kind == RECURRENT:
            seen_recurrent, per_step = True, node.value.return_sequences
        if node.kind == TIME_POOL or (node.kind == FLATTEN and per_step):
            per_step = False
        if node.kind != LAYERNORM:
            out.append(node)
            continue
        ln: LayerNorm = node.value
        where = ("on the model's input (a fixed normalisation there, BatchNormalization or Normalization, folds into "
                 "the first layer)") if not seen_recurrent else ""
        between = nodes[i + 1:]
        nxt = next((n for n in between if not _is_identity(n)), None)
        before = _previous(out)
        # between two recurrent layers: the later one normalises its input (both directions of a Bidirectional)
        into_rnn = not where and nxt is not None and nxt.kind == RECURRENT and before is not None and \
            before.kind == RECURRENT
        if not where and not into_rnn and (nxt is None or nxt.kind != DENSE):
            where = "last in the model" if nxt is None else f"before '{nxt.name}' ({nxt.layer.display})"
        if not where and not into_rnn and any(n.kind in (RECURRENT, TIME_POOL, CONV, POOL) for n in between):
            later = next(n for n in between if n.kind in (RECURRENT, TIME_POOL, CONV, POOL))
            where = f"before the per-step Dense '{nxt.name}', with '{later.name}' ({later.layer.display}) after it"
        if not where and per_step and any(n.kind == FLATTEN for n in between):
            where = "on each step, before a Flatten over time"
        axis = node.layer.config.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) else axis
        if not where and axis not in (-1, 2 if per_step else 1):
            where = f"over axis {axis}, not the features"
        if where:
            raise LayerError(f"layer '{node.name}' (LayerNormalization) is {where}: rnnskip folds a "
                             f"LayerNormalization over the features into the head's Dense layer right after it (the "
                             f"recurrent layers' output, or a Dense layer's, into the next Dense), or into the "
                             f"recurrent layer right after another one", node.name)
        for into in (nxt.value.directions() if into_rnn else [nxt.value]):
            n = into.kernel.shape[0]   # the features it reads
            if ln.scale.size not in (1, n) or ln.shift.size not in (1, n):
                raise LayerError(f"layer '{node.name}' (LayerNormalization) has {ln.scale.size} values per feature "
                                 f"but '{nxt.name}' reads {n} features: the file is inconsistent", node.name)
            fold = cells.cell_of(into.kind).fold_input_affine if into_rnn else support.fold_before_dense
            fold(into, np.broadcast_to(ln.scale, (n,)).astype(np.float64),
                 np.broadcast_to(ln.shift, (n,)).astype(np.float64))
            if into_rnn:
                into.input_norm = ln.epsilon
            else:
                into.norm_epsilon = ln.epsilon
        node.status = f"folded into '{nxt.name}' (which normalises its input)"
        nxt.notes.append(f"'{nxt.name}' layer-normalises its input ('{node.name}', epsilon {ln.epsilon:g}; its "
                         f"gamma and beta folded into the weights)")
    return out


def _reads_head_input(out: List[Node], bn: Node, rest: List[Node]) -> bool:
    """``bn`` (the last node of ``out`` that computes) normalises the last recurrent layer's final state or its
    pooling over time, and no recurrent layer or pooling follows."""
    before = _previous(out[: out.index(bn)])
    return before is not None and before.kind in (RECURRENT, TIME_POOL) and \
        not any(n.kind in (RECURRENT, TIME_POOL) for n in rest)


def fold_activations(nodes: List[Node]) -> List[Node]:
    """Fold every Activation into the linear Dense right before it (softmax not into the
    Dense before the recurrent layers), drop the linear ones elsewhere, refuse the rest."""
    out: List[Node] = []
    seen_recurrent = False
    per_step = False   # the output so far has a time axis: [batch, time, features]
    after_pool: List[Node] = []   # activations before a max pooling over time, moved after it
    for i, node in enumerate(nodes):
        seen_recurrent = seen_recurrent or node.kind == RECURRENT
        if node.kind == RECURRENT:
            per_step = node.value.return_sequences
        flattened = node.kind == FLATTEN and per_step   # over the time axis
        if node.kind == TIME_POOL or flattened:
            per_step = False
        if node.kind != ACTIVATION:
            out.append(node)
            if node.kind == TIME_POOL or flattened:
                out += after_pool
                after_pool = []
            continue
        act = node.value
        before = _previous(out)
        if node.layer.display == "Softmax":   # over the classes: the last axis, -1 or its number
            axis = node.layer.config.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis not in (-1, 2 if per_step or not seen_recurrent else 1):
                raise LayerError(f"layer '{node.name}' (Softmax) normalises axis {axis}, not the last one (the "
                                 f"classes): rnnskip supports a Softmax over the last axis after a linear Dense",
                                 node.name)
        cls = node.layer.display   # Activation, or Softmax (an Activation('softmax'))
        if _is_linear_conv(before) and act in support.HIDDEN_DENSE_ACTIVATIONS:
            before.value.activation = act
            node.status = f"folded into '{before.name}'"
            node.notes.append(f"folded {cls} '{node.name}' ({act}) into '{before.name}'")
        elif _is_linear_dense(before) and (act not in support.CLASS_ACTIVATIONS or seen_recurrent):
            before.value.activation = act
            before.activation_layer = node
            node.status = f"folded into '{before.name}'"
            node.notes.append(f"folded {cls} '{node.name}' ({act}) into '{before.name}'")
        elif act == "linear":
            node.status = "dropped (linear)"
            node.notes.append(f"dropped {cls} '{node.name}' (linear)")
        elif before is not None and before.kind == RECURRENT and per_step and act in support.HIDDEN_DENSE_ACTIVATIONS \
                and _read_per_step_next(nodes, i):
            # on every step of a recurrent layer's outputs that another recurrent layer, a mean over time or a Flatten
            # reads: a per-step layer (cells/dense.py) with identity weights, sized where the chain knows its width
            # (units^2 weights; after a Flatten it would take (T * units)^2)
            if act not in support.PER_STEP_DENSE_ACTIVATIONS:
                raise LayerError(f"layer '{node.name}' ({cls}, {act}) runs on every step of '{before.name}': rnnskip "
                                 f"supports {support.PER_STEP_DENSE_ACTIVATIONS_TEXT} in per-step layers", node.name)
            node.kind, node.value = DENSE, support.identity_dense(act, node.name)
            node.status = "converted (runs at every step: an identity per-step Dense with this activation)"
            node.notes.append(f"{cls} '{node.name}' ({act}) on every step of '{before.name}' runs as a per-step Dense "
                              "with identity weights and that activation (a square weight matrix: its flash and MACs "
                              "are in the report)")
            out.append(node)
        elif before is not None and act in support.HIDDEN_DENSE_ACTIVATIONS and (
                (before.kind in (RECURRENT, TIME_POOL) and not any(n.kind in (RECURRENT, TIME_POOL)
                                                                    for n in nodes[i + 1:]))
                or (before.kind == RECURRENT and _max_pooling_next(nodes, i))):
            # on the head's input (the last recurrent layer's output, or its pooling): an identity Dense with that
            # activation, its width set where the chain knows it (assemble), so every stage runs it as a Dense.
            # Before a max pooling it runs after it: every one of these activations is non-decreasing, so the
            # maximum over time of act(h) is act of the maximum
            moved = before.kind == RECURRENT and _max_pooling_next(nodes, i)
            node.kind, node.value = DENSE, support.identity_dense(act, node.name)
            node.status = f"converted ({'after the max pooling, as ' if moved else ''}an identity Dense with this " \
                          "activation)"
            where = "before a max pooling over time runs after it," if moved else \
                f"on the output of '{before.name}' runs"
            node.notes.append(f"{cls} '{node.name}' ({act}) {where} as an identity Dense with that activation (a "
                              "square weight matrix: its flash and MACs are in the report)")
            (after_pool if moved else out).append(node)
        elif before is not None and before.kind == BATCHNORM and act in support.HIDDEN_DENSE_ACTIVATIONS and \
                before.value.scale.size > 1 and not per_step and _reads_head_input(out, before, nodes[i + 1:]):
            # a normalisation, then the activation, on the head's input (BatchNormalization -> Activation('relu')
            # after the last recurrent layer): one Dense, the normalisation its diagonal weights and bias
            width = int(before.value.scale.size)
            dense = support.identity_dense(act, node.name)
            support.size_identity_dense(dense, width)
            support.fold_before_dense(dense, *_sized(before, before.value, width, node))
            out.remove(before)
            _folded(before, node, note_on=node)
            node.kind, node.value = DENSE, dense
            node.status = "converted (a Dense with this activation, the BatchNormalization before it its weights)"
            node.notes.append(f"{cls} '{node.name}' ({act}) after '{before.name}' runs as a Dense with that "
                              f"activation whose weights are the normalisation ({width} x {width}, diagonal: its "
                              "flash and MACs are in the report)")
            out.append(node)
        else:
            raise LayerError(f"layer '{node.name}' ({cls} '{act}') is supported only directly after "
                             "a linear Dense or Conv1D (it is folded into it), on a recurrent layer's outputs (at "
                             "every step, or first in the head: right after the last recurrent layer or its pooling "
                             "over time), not softmax or log_softmax", node.name)
    return out


def _flatten_next(nodes: List[Node], i: int) -> bool:
    """The first node after ``nodes[i]`` (an activation on a recurrent layer's outputs at every step) that is not a
    no-op is a Flatten (over the time axis), and no recurrent layer or pooling follows it."""
    rest = [n for n in nodes[i + 1:] if n.kind not in _NOTHING and not (n.kind == ACTIVATION and n.value == "linear")]
    return bool(rest) and rest[0].kind == FLATTEN and not any(n.kind in (RECURRENT, TIME_POOL) for n in rest[1:])


def _read_per_step_next(nodes: List[Node], i: int) -> bool:
    """The first node after ``nodes[i]`` (an activation on a recurrent layer's outputs at every step) that is not the
    identity is a recurrent layer, a Flatten over time, or a pooling over time other than a max alone (which the
    activation runs after)."""
    rest = [n for n in nodes[i + 1:] if not _is_identity(n)]
    return bool(rest) and (rest[0].kind == RECURRENT or (rest[0].kind == TIME_POOL and rest[0].value != "max")) \
        or _flatten_next(nodes, i)


def _max_pooling_next(nodes: List[Node], i: int) -> bool:
    """The first node after ``nodes[i]`` that is not the identity is one max pooling over time (alone, not in a
    Concatenate with a mean), and no recurrent layer or pooling follows that."""
    rest = [n for n in nodes[i + 1:] if not _is_identity(n)]
    return bool(rest) and rest[0].kind == TIME_POOL and rest[0].value == "max" and \
        not any(n.kind in (RECURRENT, TIME_POOL) for n in rest[1:])


# --------------------------------------------------------------------------
# 3. the chain

def assemble(nodes: List[Node], model_name: str, path: str, notes: List[str]) -> ModelIR:
    """The IR of a chain of nodes, once BatchNormalization and Activation layers are folded.

    The grammar (no-ops and InputLayer anywhere)::

        model  := front recurrent+ head
        front  := Embedding                        token ids
                | [Masking] [Dense]                float features, at most one per-step Dense
                | (Conv1D | MaxPooling1D | AveragePooling1D)+   a streamed front end
        recurrent := LSTM | GRU | SimpleRNN | RNN(cell) | Bidirectional(one of them)
        pool   := [GlobalAveragePooling1D | GlobalMaxPooling1D | Flatten]   on the last one's sequence
        head   := Dense*                           softmax, log_softmax only on the last

    and: an Embedding or Masking comes first; a recurrent layer after another needs that one to
    return sequences; a Dense head on a recurrent layer
    that returns sequences runs on every step (one output per step, as with
    ``return_sequences=True`` at the output); the per-step Dense is not softmax or log_softmax; every layer's
    input width is the width before it; the declared input shape, if any, is
    ``[batch, time, features]`` or token ids; a Flatten where no time axis is left (after the
    pooling, or a recurrent layer's last state) is the identity, over a time axis (a fixed number of
    steps, after unidirectional layers) it is a pooling of kind "flatten": every step side by side.
    ``notes``: what the handlers and folds noted, in chain order.
    """
    embedding = None
    input_dense: Optional[DenseLayer] = None
    input_nodes: List[Node] = []   # per-step Dense layers on the input, before the first recurrent layer
    mask_value: Optional[float] = None
    rnns: List[RNNLayer] = []
    head: List[DenseLayer] = []
    head_nodes: List[Node] = []    # their nodes
    seen_input_transform = False   # an Embedding, Dense or BatchNormalization on the raw input
    unfolded_bn: Optional[Node] = None
    per_step = False               # one output per time step
    front: List[object] = []       # ConvLayer | PoolLayer, in order
    pool: Optional[Node] = None    # pooling over time after the recurrent layers
    fold_notes: List[str] = []     # this pass's: Dense layers folded into the Embedding table, Flatten dropped
    flat_steps = 0                 # the steps a Flatten over time reads
    shape = next((n.layer.declared_shape for n in nodes if n.layer.declared_shape is not None), None)

    for node in nodes:
        name, layer = node.name, node.layer
        if node.kind in _NOTHING:
            continue
        if node.kind == BATCHNORM:   # one the fold pass could not place
            unfolded_bn = unfolded_bn or node
            seen_input_transform = True
            continue
        if node.kind == EMBEDDING:
            if seen_input_transform or mask_value is not None:
                raise LayerError(f"layer '{name}' (Embedding) is not the first layer: rnnskip supports an "
                                 "Embedding only directly on the token-id input", name)
            embedding = node.value
            seen_input_transform = True
            continue
        if node.kind in (CONV, POOL):
            cls = layer.display
            if rnns or head:
                raise LayerError(f"layer '{name}' ({cls}) comes after the recurrent layer '{rnns[0].name}': rnnskip "
                                 "streams Conv1D and pooling only between the input and the first recurrent layer",
                                 name)
            if embedding is not None:
                raise LayerError(f"layer '{name}' ({cls}) follows the Embedding: rnnskip streams Conv1D front ends "
                                 "on float features only", name)
            if mask_value is not None:
                raise LayerError(f"layer '{name}' ({cls}) follows a Masking layer: a masked step inside a window "
                                 "has no streaming meaning; rnnskip converts Conv1D front ends without Masking", name)
            if input_nodes:
                raise LayerError(f"layer '{name}' ({cls}) follows the per-step Dense '{input_nodes[-1].name}': rnnskip "
                                 "streams a Conv1D front end on the input features and runs per-step Dense layers "
                                 "after it, not before it", name)
            if unfolded_bn is not None:
                bn = unfolded_bn.layer.display
                raise LayerError(f"layer '{unfolded_bn.name}' ({bn}) stands before '{name}' ({cls}): "
                                 f"rnnskip folds {bn} into the linear Conv1D or Dense before it, or into "
                                 "the Conv1D, Dense or recurrent layer right after it", unfolded_bn.name)
            front.append(node.value)
            seen_input_transform = True
            continue
        if node.kind == MASKING:
            if seen_input_transform:
                raise LayerError(f"layer '{name}' (Masking) is not on the raw input: rnnskip supports Masking "
                                 "only directly after the input", name)
            if mask_value is not None:   # Keras: each builds its mask from its own input, zeroed by the one before
                raise LayerError(f"layer '{name}' (Masking) follows another Masking layer: Keras then masks by what "
                                 f"the first one leaves (its masked steps become zeros), which rnnskip does not model; "
                                 f"keep one Masking layer", name)
            mask_value = node.value
            continue
        if node.kind in (FLATTEN, TIME_POOL) and head and rnns and rnns[-1].return_sequences and pool is None:
            # per-step Dense layers on the last recurrent layer's sequence, then pooled or flattened over time
            fold_notes += _place_per_step(head_nodes, rnns, into=None)
            head, head_nodes, per_step = [], [], False
        if node.kind == FLATTEN:
            if rnns and rnns[-1].return_sequences and pool is None:   # over the time axis: the head reads every step
                flat_steps = _flatten_steps(layer, shape, front, rnns)
                node.value, pool = "flatten", node
                node.status = f"converted (the outputs of all {flat_steps} steps side by side)"
                continue
            if not rnns:
                raise LayerError(unsupported(layer), name)
            width = head[-1].out_dim if head else rnns[-1].out_dim * (
                flat_steps if pool is not None and pool.value == "flatten" else
                len(pool.value.split(",")) if pool is not None else 1)
            if _reshape_size(layer) not in (None, width) and width:
                raise LayerError(f"layer '{name}' (Reshape) has target_shape=({_reshape_size(layer)},) where there "
                                 f"are {width} values per row: the file is inconsistent", name)
            node.status = "dropped (no time axis left: the identity)"
            fold_notes.append(f"dropped {layer.display} '{name}' (after '{pool.name if pool else rnns[-1].name}' there "
                              "is no time axis left: the identity)")
            continue
        if node.kind == TIME_POOL:
            cls = layer.display
            if not rnns:
                raise LayerError(f"layer '{name}' ({cls}) pools the input before any recurrent layer: rnnskip pools "
                                 "over time only the last recurrent layer's outputs", name)
            if head:
                raise LayerError(f"layer '{name}' ({cls}) follows the Dense layer '{head[-1].name}': rnnskip pools "
                                 "over time the last recurrent layer's outputs, before the Dense head", name)
            if pool is not None:
                raise LayerError(f"layer '{name}' ({cls}) follows the pooling layer '{pool.name}': the time axis is "
                                 "already pooled away", name)
            if not rnns[-1].return_sequences:
                raise LayerError(f"layer '{name}' ({cls}) follows '{rnns[-1].name}', which has return_sequences="
                                 "False: the model config is inconsistent", name)
            if "max" in node.value.split(","):
                _check_masked_max(node, rnns, mask_value, embedding)
            _check_masked_reduction(node, mask_value, embedding)
            pool = node
            continue
        if node.kind == RECURRENT:
            if pool is not None:
                raise LayerError(f"layer '{name}' ({cells.cell_of(node.value.kind).label}) follows the pooling "
                                 f"layer '{pool.name}', which removed the time axis: the model config is "
                                 "inconsistent", name)
            if input_nodes and not rnns:   # per-step Dense layers on the input (the first one, then layers of the
                # stack) or on a front end's frames (all layers of the stack)
                input_dense, placed = _place_input(input_nodes, rnns, into=node, front=front)
                fold_notes += placed
            if head and rnns:   # per-step Dense layers between two recurrent layers: run, or folded into it
                fold_notes += _place_per_step(head_nodes, rnns, into=node)
                head, head_nodes, per_step = [], [], False
            if head:
                raise LayerError(unsupported(layer, " after the Dense head"), name)
            if rnns and not rnns[-1].return_sequences:
                raise LayerError(f"layer '{rnns[-1].name}' ({cells.cell_of(rnns[-1].kind).label}) feeds '{name}' "
                                 "but has return_sequences=False: the model config is inconsistent", rnns[-1].name)
            rnns.append(node.value)
            seen_input_transform = True
            continue
        if node.kind == DENSE:
            cls = layer.display
            dense: DenseLayer = node.value
            if not rnns:
                if embedding is not None:
                    if dense.activation in support.CLASS_ACTIVATIONS:
                        raise LayerError(f"layer '{name}' ({cls}) between the Embedding and the RNN "
                                         f"{EMBEDDING_FOLD_SOFTMAX}", name)
                    embedding, note = fold_dense_into_embedding(embedding, dense)
                    fold_notes.append(note)
                    continue
                if dense.activation in support.CLASS_ACTIVATIONS:
                    raise LayerError(f"layer '{name}' ({cls}) before the RNN uses {dense.activation}: rnnskip "
                                     "supports linear/relu/tanh/sigmoid there", name)
                input_nodes.append(node)   # placed at the first recurrent layer (_place_input)
                seen_input_transform = True
                continue
            if node.time_distributed and not rnns[-1].return_sequences:
                raise LayerError(f"layer '{name}' ({cls}) follows '{rnns[-1].name}', which has "
                                 "return_sequences=False: the model config is inconsistent", name)
            if rnns[-1].return_sequences and pool is None:
                per_step = True   # a Dense head on every step's output (sequence labelling)
            if head and head[-1].activation in support.CLASS_ACTIVATIONS:
                raise LayerError(f"layer '{name}' (Dense) follows {head[-1].activation} layer '{head[-1].name}': "
                                 f"rnnskip supports {head[-1].activation} only on the last layer", name)
            head.append(dense)
            head_nodes.append(node)
            continue
        raise LayerError(unsupported(layer), name)   # not reached: the passes place or refuse the rest

    if not rnns:
        raise RnnskipError(f"model '{model_name}' has no recurrent layer: {SUPPORTED_SUMMARY}")
    constant = head and support.constant_classes(head[-1].activation, head[-1].out_dim)
    if constant:
        raise LayerError(f"layer '{head[-1].name}' (Dense) {constant}", head[-1].name)
    if unfolded_bn is not None:
        bn = unfolded_bn.layer.display
        raise LayerError(f"layer '{unfolded_bn.name}' ({bn}) has no linear Dense or Conv1D before it "
                         f"and no Dense after it: rnnskip folds {bn} into an adjacent Dense, Conv1D or "
                         "recurrent layer", unfolded_bn.name)
    if rnns[-1].return_sequences and pool is None:
        per_step = True   # return_sequences=True at the output: one output per step
    if per_step and front:
        raise LayerError(f"layer '{rnns[-1].name}' returns one output per frame of the Conv1D front end, whose "
                         "frames are not the input's steps: rnnskip converts front-end models that return the last "
                         "state (return_sequences=False at the output)", rnns[-1].name)
    notes = list(notes) + fold_notes
    if embedding is not None:
        inp = embedding
    else:
        convs = [f for f in front if isinstance(f, ConvLayer)]
        features = input_dense.in_dim if input_dense is not None else \
            convs[0].in_dim if convs else rnns[0].input_dim
        if shape and len(shape) == 3 and shape[2] is not None and int(shape[2]) != features:
            raise RnnskipError(f"model input has {shape[2]} features but the first layer expects {features}: "
                               "the file is inconsistent")
        if shape and len(shape) != 3:
            raise RnnskipError(f"model input has shape {shape}: rnnskip expects [batch, time, features] floats "
                               "or [batch, time] token ids")
        width = int(features)
        for f in front:   # the widths through the front end (a pooling layer keeps its input's)
            if isinstance(f, PoolLayer):
                f.channels = width
            elif f.in_dim != width:
                raise LayerError(f"layer '{f.name}' ({f.display}) expects {f.in_dim} channels but gets {width}: "
                                 "the file is inconsistent", f.name)
            width = f.out_dim
        first = next((n for n in nodes if n.kind in (CONV, POOL, DENSE, RECURRENT)), None)
        bad = support.front_pad_problem(front)
        if bad is not None:
            shown = next(f.display for f in front if getattr(f, "name", None) == bad[0])
            raise LayerError(f"layer '{bad[0]}' ({shown}) {bad[1]}", bad[0])
        inp = FeatureInput(features=int(features), dense=input_dense, mask_value=mask_value, front=front,
                           center=first.input_center if first is not None else None,
                           norm_scale=first.input_norm if first is not None else None)
    steps = 0
    if pool is not None and pool.value == "flatten":
        steps = flat_steps
        given = "the input declares" if shape and len(shape) >= 2 and shape[1] is not None else "its size gives"
        notes.append(f"{pool.layer.display} '{pool.name}' reads the outputs of '{rnns[-1].name}' at all {steps} "
                     f"steps {given}: every sequence runs {steps} steps (the data's lengths are not used)")
    elif shape and len(shape) >= 2 and shape[1] is not None:
        notes.append(f"input declares a fixed length of {shape[1]} steps; rnnskip accepts any length")

    width = inp.dim
    for r in rnns:
        if r.input_dim != width:
            raise LayerError(f"layer '{r.name}' ({cells.cell_of(r.kind).label}) expects {r.input_dim} inputs "
                             f"but gets {width}: the file is inconsistent", r.name)
        width = r.out_dim
    if pool is not None:   # a Concatenate of several poolings, or a Flatten's steps: their vectors side by side
        width *= steps or len(pool.value.split(","))
    for d in head:
        support.size_identity_dense(d, width)
        if d.in_dim != width:
            raise LayerError(f"layer '{d.name}' (Dense) expects {d.in_dim} inputs but gets {width}: "
                             "the file is inconsistent", d.name)
        width = d.out_dim
    return ModelIR(input=inp, rnn_layers=rnns, head=head, name=model_name, source=path, notes=notes,
                   per_step=per_step, pool=pool.value if pool is not None else "",
                   pool_name=pool.name if pool is not None else "", pool_steps=steps,
                   input_steps=_declared_steps(nodes))


def _place_per_step(dense_nodes: List[Node], rnns: List[RNNLayer], into: Optional[Node]) -> List[str]:
    """Per-step Dense layers on the sequence of ``rnns[-1]``, before the recurrent layer ``into`` (None: before
    pooling or a Flatten over time). Each with an activation runs at every step as a per-step Dense layer appended
    to ``rnns``, the linear ones right before it folded into it (:func:`folds.per_step_layers`); linear ones after
    the last activation fold into ``into`` (:func:`_fold_between`), or run as one linear per-step layer before the
    pooling. Returns the notes for the model."""
    placed = per_step_layers([d.value for d in dense_nodes], rnns[-1].out_dim, run_tail=into is None)
    if placed is None:
        raise LayerError(f"the per-step Dense layers {', '.join(repr(d.name) for d in dense_nodes)} after "
                         f"'{rnns[-1].name}' do not chain on its {rnns[-1].out_dim} outputs: the file is inconsistent",
                         dense_nodes[0].name)
    layers, groups, tail = placed
    return _join_stack(dense_nodes, layers, groups, tail, rnns, into, rnns[-1])


def _join_stack(dense_nodes: List[Node], layers: List[RNNLayer], groups, tail, rnns: List[RNNLayer],
                into: Optional[Node], before) -> List[str]:
    """The per-step layers :func:`folds.per_step_layers` made of ``dense_nodes`` appended to ``rnns``, each node's
    status set; the linear ``tail`` folded into ``into`` (after ``before``, or the last of ``layers``). Returns the
    notes for the model."""
    by_value = {id(d.value): d for d in dense_nodes}
    notes: List[str] = []
    for layer, group in zip(layers, groups):
        by_value[id(group[-1])].status = per_step_status(group[-1])
        notes += _folded_notes([by_value[id(d)] for d in group[:-1]], layer.name)
        rnns.append(layer)
    if tail:
        notes += _fold_between([by_value[id(d)] for d in tail], into, rnns[-1] if layers else before)
    return notes


def _place_input(dense_nodes: List[Node], rnns: List[RNNLayer], into: Node,
                 front: list) -> Tuple[Optional[DenseLayer], List[str]]:
    """Per-step Dense layers before the first recurrent layer ``into`` (:func:`folds.input_dense_layers`): on the
    input features the input's Dense, the later ones with an activation appended to ``rnns`` as per-step layers;
    after a front end each one with an activation a per-step layer. The linear ones after the last activation fold
    into ``into``. Returns (the input's Dense or None, the notes)."""
    placed = input_dense_layers([d.value for d in dense_nodes], front=bool(front))
    if placed is None:
        raise LayerError(f"the per-step Dense layers {', '.join(repr(d.name) for d in dense_nodes)} on the "
                         f"{'front end' if front else 'input'} do not chain: the file is inconsistent",
                         dense_nodes[0].name)
    first, composed, (layers, groups, tail) = placed
    by_value = {id(d.value): d for d in dense_nodes}
    notes = _folded_notes([by_value[id(d)] for d in composed], first.name) if composed else []
    before = first if first is not None else _FrontOutput(front[-1].name, dense_nodes[0].value.in_dim)
    return first, notes + _join_stack(dense_nodes, layers, groups, tail, rnns, into, before)


@dataclass
class _FrontOutput:
    """What :func:`_fold_between` reads of the layer before: a front end's last layer and its width."""
    name: str
    out_dim: int


def _check_masked_reduction(node: Node, mask_value, embedding) -> None:
    """A mean or maximum op over time (``ops.mean(x, axis=1)``, ``tf.reduce_max``) reads every step of the
    sequence, padding included, where the pooling layers apply the mask: refused on a masked sequence."""
    masked = mask_value is not None or (embedding is not None and embedding.mask_zero)
    for layer in (node.layer.branches or (node.layer,)) if masked else ():
        if reduction(layer) is not None:
            what = "mean" if time_pool_kind(layer) == "avg" else "maximum"
            pool = "GlobalAveragePooling1D" if what == "mean" else "GlobalMaxPooling1D"
            raise LayerError(f"layer '{layer.name}' ({layer.display}) takes the {what} over every step of a masked "
                             f"sequence, padding included: rnnskip converts it on sequences without a mask (or "
                             f"{pool} there, which pools a masked sequence as Keras does)", layer.name)


def _check_masked_max(node: Node, rnns: List[RNNLayer], mask_value, embedding) -> None:
    """A max pooling (it ignores the mask) of per-step Dense layers after a Bidirectional layer, over a masked
    sequence: Keras' Bidirectional layer gives zeros at every masked step, on which the Dense gives its activation of
    the bias, and rnnskip holds the output before: refused in one line. (After a unidirectional layer, a masked step
    repeats the output before it, and before a row's first the Dense's output on zeros is its initial one.)"""
    masked = mask_value is not None or (embedding is not None and embedding.mask_zero)
    rec = next(r for r in reversed(rnns) if cells.cell_of(r.kind).recurrent)
    if masked and rec is not rnns[-1] and rec.backward is not None:
        raise LayerError(f"layer '{node.name}' ({node.layer.display}) takes the maximum over a masked sequence of the "
                         f"per-step Dense '{rnns[-1].name}' after the Bidirectional layer '{rec.name}': Keras gives "
                         "that Dense the Bidirectional layer's zeros at every masked step (its output: the activation "
                         "of the bias), which rnnskip does not model; use GlobalAveragePooling1D (it skips masked "
                         "steps) or no mask", node.name)


def _folded_notes(dense_nodes: List[Node], into: str) -> List[str]:
    for d in dense_nodes:
        d.status = f"folded into '{into}'"
    return [f"folded {d.layer.display} '{d.name}' into '{into}'" for d in dense_nodes]


def _fold_between(dense_nodes: List[Node], into: Node, before: RNNLayer) -> List[str]:
    """Linear per-step Dense layers between the layers ``before`` and ``into``: one linear map ``x @ w + c``
    folded into ``into``'s input kernel and bias (each direction's), as Keras computes it (a Dense keeps the
    mask, and a masked step is one the next layer skips). Returns the notes for the model."""
    label = cells.cell_of(into.value.kind).label
    chain = support.linear_chain([d.value for d in dense_nodes], before.out_dim)
    if chain is None:
        raise LayerError(f"the per-step Dense layers {', '.join(repr(d.name) for d in dense_nodes)} after "
                         f"'{before.name}' do not chain on its {before.out_dim} outputs: the file is inconsistent",
                         dense_nodes[0].name)
    w, c = chain
    if w.shape[1] != into.value.input_dim:
        raise LayerError(f"layer '{into.name}' ({label}) expects {into.value.input_dim} inputs but gets "
                         f"{w.shape[1]}: the file is inconsistent", into.name)
    directions = into.value.directions()
    before_params = sum(d.value.kernel.size for d in dense_nodes) + sum(r.kernel.size for r in directions)
    for direction in directions:
        cells.cell_of(direction.kind).fold_input_linear(direction, w, c)
    notes = _folded_notes(dense_nodes, into.name)
    after = sum(r.kernel.size for r in directions)
    if after > before_params:   # a narrowing Dense: its product is the larger matrix
        kernels = "kernels have" if len(directions) > 1 else "kernel has"
        notes.append(f"'{into.name}' reads {w.shape[0]} inputs through the folded Dense: its input {kernels} "
                     f"{after:,} weights where the Dense and the {kernels.split()[0]} had {before_params:,} (a "
                     "per-step Dense runs as a layer of its own only when it has an activation)")
    return notes


def _reshape_size(layer) -> Optional[int]:
    """The one size a Reshape to one axis gives (None: a Flatten, or -1)."""
    if layer.display != "Reshape":
        return None
    k = int(list(layer.config.get("target_shape"))[0])
    return None if k == -1 else k


def _flatten_steps(layer, shape, front, rnns) -> int:
    """The number of steps a Flatten over the time axis reads side by side (the input's declared length), or a
    one-line refusal of a Flatten rnnskip does not run that way."""
    name = layer.name
    where = f"layer '{name}' ({layer.display}) flattens the time axis"
    if layer.config.get("data_format") == "channels_first":   # Keras moves the units first: unit-major
        raise LayerError(f"{where} with data_format='channels_first', which puts each unit's outputs at every step "
                         "side by side (unit-major): rnnskip flattens step by step, as the default "
                         "data_format='channels_last' does", name)
    if front:
        raise LayerError(f"{where} after a Conv1D front end: rnnskip converts Flatten over time without one", name)
    bidi = next((r.name for r in rnns if r.backward is not None), None)
    if bidi is not None:
        raise LayerError(f"{where} after the Bidirectional layer '{bidi}': rnnskip converts Flatten over time after "
                         "unidirectional recurrent layers", name)
    units, size = rnns[-1].out_dim, _reshape_size(layer)
    if not shape or len(shape) < 2 or shape[1] is None:
        if size is not None and size % units == 0:   # Reshape((T * units,)) fixes T itself
            return size // units
        raise LayerError(f"{where} of an input with no fixed number of steps: declare it (Input(shape=(T, features)))"
                         ", as the Dense after the Flatten needs", name)
    if size is not None and size != int(shape[1]) * units:
        raise LayerError(f"layer '{name}' (Reshape) has target_shape=({size},) for {int(shape[1])} steps of {units} "
                         "units: the file is inconsistent", name)
    return int(shape[1])
