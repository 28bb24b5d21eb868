"""Read a Keras model file (``.h5`` or ``.keras``) into the rnnskip IR.

What rnnskip converts is stated once, in three places that each own one part:

* ``keras_layers.py``: one handler per Keras layer class (:data:`~rnnskip.converter.keras_layers.HANDLERS`),
  with the layer's own refusals, the options that matter and how to read it; a class
  without a handler is refused;
* ``keras_passes.py``: where layers may sit, as passes over the chain: BatchNormalization
  folded, Activation layers folded or dropped, then the chain grammar and the IR;
* ``support.py``: the activations the integer kernels implement.

The steps: open the file (``keras_files.py``), order its layers from input to output
(``keras_graph.py``), read every layer with its handler (its refusals first), run the
passes. :func:`load_model_file` is what the converter calls; :func:`describe_model_file`
runs the same steps for ``rnnskip inspect`` and reports on every layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from rnnskip import cells
from rnnskip.converter import support
from rnnskip.converter.ir import ModelIR
from rnnskip.converter.keras_files import READ_ERRORS, ModelFile, open_model_file, read_errors
from rnnskip.converter.keras_graph import MASK_OPS, KerasLayer, linear_chain, model_layers, model_name
from rnnskip.converter.keras_layers import SUPPORTED_SUMMARY, Node, handler_for, layer_refusals, unknown_refusal
from rnnskip.converter.keras_passes import (
    assemble,
    drop_lost_masks,
    fold_activations,
    fold_batchnorm,
    fold_layernorm,
    read_last_step,
)
from rnnskip.converter.support import LayerError
from rnnskip.errors import RnnskipError

__all__ = ["load_model_file", "parse_model_file", "check_supported", "describe_model_file", "ModelDescription",
           "LayerDescription", "SUPPORTED_SUMMARY"]


# --------------------------------------------------------------------------
# public entry points

def load_model_file(path) -> ModelIR:
    """Parse a Keras ``.h5`` / ``.keras`` file into a :class:`ModelIR`.

    Raises :class:`RnnskipError` (one line) for anything unreadable or
    unsupported.
    """
    ir = parse_model_file(path)
    check_supported(ir)
    return ir


def parse_model_file(path) -> ModelIR:
    """Like :func:`load_model_file` but without the activation check, so a caller that
    supports more activations can inspect the IR."""
    with open_model_file(path) as model_file:
        ir, _nodes = _convert(model_file)
    return ir


def check_supported(ir: ModelIR) -> None:
    """Refuse IR features that later stages don't implement yet, and unusable weights."""
    # each recurrent layer's activations (both directions of a Bidirectional), as its cell's int8 kernel implements them
    for r in (d for l in ir.rnn_layers for d in l.directions()):
        msg = cells.cell_of(r.kind).activation_refusal(r)
        if msg:
            raise LayerError(msg, r.name)
    support.check_finite(ir)


# --------------------------------------------------------------------------
# the steps

def _chain(model_file: ModelFile) -> Tuple[List[KerasLayer], str]:
    config = model_file.config
    if not isinstance(config, dict) or "class_name" not in config:
        raise RnnskipError(f"cannot read {model_file.path}: the model config has no class_name")
    return linear_chain(config, unknown_refusal, SUPPORTED_SUMMARY)


def _read(layer: KerasLayer, weights) -> List[Node]:
    """The layer's nodes from its handler (one, or a SeparableConv1D's two); its own refusals first."""
    handler = handler_for(layer)
    refusals = handler.refusals(layer)
    if refusals:
        raise LayerError(refusals[0], layer.name)
    try:
        node = handler.build(layer, weights)
        return node if isinstance(node, list) else [node]
    except LayerError:
        raise
    except RnnskipError as e:   # its weights: missing, or not what its config says
        raise LayerError(str(e), layer.name) from None


def _convert(model_file: ModelFile) -> Tuple[ModelIR, List[Node]]:
    """The IR of an open file (not yet checked against the kernels: :func:`check_supported`),
    and the nodes of its chain (one per layer, two for a SeparableConv1D, in order)."""
    support.check_generation(model_file.keras_version, model_file.path)
    chain, name = _chain(model_file)
    nodes = read_last_step(drop_lost_masks([n for layer in chain for n in _read(layer, model_file.weights)],
                                           model_file.keras_version))
    remaining = fold_activations(fold_layernorm(fold_batchnorm(nodes)))
    # from every node, the folded ones too, in chain order
    notes = [note for node in nodes for note in node.notes]
    ir = assemble(remaining, name, model_file.path, notes)
    ir.keras_version = model_file.keras_version
    half = sorted({p for p in (_policy(layer) for layer in chain) if "float16" in p})
    if half:   # Keras computes in (b)float16: the float reference cannot equal it to 1e-5
        ir.compute_dtype = "bfloat16" if all("bfloat16" in p for p in half) else "float16"
        ir.notes.append(f"the model computes in {ir.compute_dtype} (dtype policy {', '.join(half)}): the float "
                        f"reference computes in float32, so it differs from Keras by {ir.compute_dtype} rounding; the "
                        f"int8 model is calibrated and checked against the float32 reference")
    support.resolve_generation(ir)
    return ir, nodes


def _policy(layer) -> str:
    """A layer's dtype policy name as its config stores it (Keras 2: a string or a Policy; Keras 3: a DTypePolicy)."""
    dt = (layer.entry.get("config") or {}).get("dtype")
    if isinstance(dt, dict):
        dt = (dt.get("config") or {}).get("name", "")
    return dt if isinstance(dt, str) else ""


# --------------------------------------------------------------------------
# every layer, for rnnskip inspect

@dataclass
class LayerDescription:
    name: str
    cls: str               # the class as users know it: "LSTM", "TimeDistributed(Dense)"
    params: int            # stored weights (whether or not the model converts)
    options: str           # the options that matter to rnnskip, e.g. "units=32, activation=relu"
    status: str            # input | converted | dropped ... | folded into 'x' | refused: reason | "" (the model
                           # does not convert, for a reason elsewhere)
    refusals: List[str] = field(default_factory=list)   # the layer's own, each one line


@dataclass
class ModelDescription:
    path: str
    format: str            # "h5" | "keras"
    keras_version: str
    model_name: str
    layers: List[LayerDescription] = field(default_factory=list)
    error: str = ""        # what the importer refuses ("" when it reads the model)
    producer: str = ""     # who wrote a non-Keras file (ONNX: opset and exporter), for inspect


def describe_model_file(path) -> ModelDescription:
    """Every layer of a Keras file and what the importer makes of it, by the importer's own
    steps. Raises :class:`RnnskipError` only for a file it cannot read at all; a model it
    refuses gets ``error`` (the same line :func:`load_model_file` raises) and each layer's
    own refusals."""
    with open_model_file(path) as model_file:
        desc = ModelDescription(model_file.path, model_file.format, model_file.keras_version,
                                model_name(model_file.config))
        one_chain = True
        try:
            chain, _name = _chain(model_file)
        except RnnskipError:   # not one chain: show every layer (the error comes again below)
            chain = [layer for layer in model_layers(model_file.config) if layer.class_name not in MASK_OPS]
            one_chain = False
        for layer in chain:
            handler = handler_for(layer)
            try:
                params = sum(int(np.prod(shape)) for shape in model_file.weights.shapes(layer))
            except READ_ERRORS:   # a damaged group: no weights to count
                params = 0
            # off a chain a Concatenate's inputs are unknown: the chain's own error says what is wrong
            refusals = layer_refusals(layer) if one_chain or layer.class_name != "Concatenate" else []
            desc.layers.append(LayerDescription(layer.name, handler.title(layer), int(params),
                                                handler.options(layer), handler.fixed_status, refusals))
        try:
            with read_errors(model_file.path):
                ir, nodes = _convert(model_file)
                check_supported(ir)   # as load_model_file
        except RnnskipError as e:
            desc.error = str(e)
            refused = getattr(e, "layer", None)
            for row in desc.layers:
                if row.name == refused:
                    row.status = f"refused: {desc.error}"
        else:
            status = {node.name: node.status for node in nodes}   # a layer of two nodes: its last's
            for row in desc.layers:
                row.status = status.get(row.name, row.status)
    for row in desc.layers:
        if row.refusals:
            row.status = f"refused: {row.refusals[0]}"
    return desc
