"""Folds both importers (Keras, ONNX) apply to the IR they build: rewrites that leave the model's outputs
exactly as they are."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .. import cells
from ..reference import activation
from . import support
from .ir import DenseLayer, EmbeddingInput, RNNLayer

#: why a softmax (log_softmax) Dense after an Embedding does not fold (the importers' refusal)
EMBEDDING_FOLD_SOFTMAX = ("uses softmax or log_softmax: rnnskip folds a per-step Dense into the embedding table only "
                          "without them (they belong on the head's last layer)")


def fold_dense_into_embedding(emb: EmbeddingInput, dense: DenseLayer) -> Tuple[EmbeddingInput, str]:
    """Embedding -> per-step Dense is a lookup of act(table @ kernel + bias): the same rows for every id, so the
    Dense folds into the table exactly (computed in float64, stored float32 as Keras' and PyTorch's own).
    Returns the new embedding and the note saying so. The caller refuses softmax (EMBEDDING_FOLD_SOFTMAX)."""
    rows = activation(dense.activation)(np.asarray(emb.table, np.float64) @ np.asarray(dense.kernel, np.float64)
                                        + np.asarray(dense.bias, np.float64))
    new = EmbeddingInput(table=np.asarray(rows, np.float32), mask_zero=emb.mask_zero, name=emb.name)
    return new, (f"folded per-step Dense '{dense.name}' into the embedding table (every id's row is the Dense of "
                 f"its vector: {new.vocab} rows of {new.dim})")


def per_step_layers(denses, width: int, run_tail: bool):
    """Per-step Dense layers applied in turn to ``width`` features (a recurrent layer's outputs), as the layers they
    run as: each one with an activation becomes a per-step Dense layer of the stack (``cells.per_step_cell``), the
    linear ones right before it composed and folded into its input. The linear ones after the last activation are
    one more (linear) layer when ``run_tail`` (before pooling over time), else left for the caller to fold into the
    next recurrent layer. Returns ``(layers, groups, tail)``: the layers, per layer the Dense layers it holds (the one
    that names it last), and the linear Dense layers left; None when they do not chain on ``width`` features (the file
    is inconsistent). An activation the layer cannot run is refused in one line (``Cell.activation_refusal``)."""
    cell = cells.per_step_cell()
    layers, groups, linear = [], [], []
    for i, d in enumerate(denses):
        if support.is_identity_dense(d):   # an activation alone: the width before it
            support.size_identity_dense(d, linear[-1].out_dim if linear else width)
        linear.append(d)
        if d.activation == "linear" and not (run_tail and i == len(denses) - 1):
            continue
        chain = support.linear_chain(linear[:-1], width)
        if chain is None or chain[0].shape[1] != d.in_dim:
            return None
        layer = RNNLayer(kind=cell.kind, units=d.out_dim, kernel=np.asarray(d.kernel, np.float32),
                         recurrent_kernel=np.zeros(cell.recurrent_kernel_shape(d.out_dim), np.float32),
                         bias=np.asarray(d.bias, np.float32), activation=d.activation, recurrent_activation=None,
                         return_sequences=True, name=d.name)
        if len(linear) > 1:
            cell.fold_input_linear(layer, *chain)
        refusal = cell.activation_refusal(layer)
        if refusal is not None:
            raise support.LayerError(refusal, layer.name)
        layers.append(layer)
        groups.append(linear)
        linear, width = [], d.out_dim
    if linear and support.linear_chain(linear, width) is None:
        return None
    return layers, groups, linear


def input_dense_layers(denses, front: bool = False):
    """Per-step Dense layers before the first recurrent layer, as the layers they run as. On the input features the
    first one with an activation (the linear ones before it composed into it; all of them when none has one) is the
    input's Dense (``FeatureInput.dense``: its weights take the per-feature input scales) and the later ones are
    :func:`per_step_layers` on its outputs; on a streamed front end's frames (``front``: no input the per-feature
    scales apply to) all of them are. The linear ones after the last activation are left for the caller to fold into
    the recurrent layer. Returns ``(input Dense or None, the Dense layers composed into it, per_step_layers(...))``,
    or None when they do not chain (the file is inconsistent)."""
    if front:
        placed = per_step_layers(denses, denses[0].in_dim, run_tail=False)
        return None if placed is None else (None, [], placed)
    k = next((i for i, d in enumerate(denses) if d.activation != "linear"), len(denses) - 1)
    first = denses[k]
    if k:   # x @ w + c, then the Dense: its kernel w @ W, its bias c @ W + b
        chain = support.linear_chain(denses[:k], denses[0].in_dim)
        if chain is None or chain[0].shape[1] != first.in_dim:
            return None
        w, c = chain
        kernel = np.asarray(first.kernel, np.float64)
        first = DenseLayer(kernel=(w @ kernel).astype(np.float32),
                           bias=(c @ kernel + np.asarray(first.bias, np.float64)).astype(np.float32),
                           activation=first.activation, name=first.name)
    placed = per_step_layers(denses[k + 1:], first.out_dim, run_tail=False)
    return None if placed is None else (first, list(denses[:k]), placed)


def per_step_status(d) -> str:
    """What became of the Dense ``d`` that names a per-step layer (``rnnskip inspect``)."""
    identity = " with identity weights" if support.is_identity_dense(d) else ""
    return f"converted (runs at every step: a per-step Dense layer{identity})"
