"""The layers of a Keras model config, and the chain from its input to its output.

A model config (``model_config`` of an ``.h5``, ``config.json`` of a ``.keras``) lists
layer entries ``{"class_name", "config", ...}``. :class:`KerasLayer` is one entry as the
importer reads it; :func:`linear_chain` orders a Sequential or single-path Functional
model's layers from input to output and refuses anything else (several inputs or
outputs, shared layers, branches).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from rnnskip.converter.support import LayerError, leaky_relu
from rnnskip.errors import RnnskipError

#: Keras 3 functional models record the mask computation of Masking as op nodes
#: (NotEqual -> Any) that feed layers only through their ``mask`` kwarg: not layers.
MASK_OPS = frozenset({"NotEqual", "Any", "All", "Equal", "Cast", "LogicalNot", "LogicalAnd", "LogicalOr"})
#: classes of a whole model (the file's top level; nested inside a model: refused)
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})


@dataclass(frozen=True)
class KerasLayer:
    """One layer entry of a model config; ``branches``: a Concatenate's input layers when the chain reads it as one
    step (several poolings over time of one recurrent output, :func:`linear_chain`)."""
    entry: dict
    branches: tuple = field(default=(), compare=False)
    #: which of the layer's outputs the next layer of the chain reads (the model's, for the last): 0, its output;
    #: a recurrent layer with return_state=True: 1.. its states (h, then an LSTM's c)
    output: int = field(default=0, compare=False)

    @property
    def class_name(self) -> str:
        """As stored: ``LSTM``, ``Custom>TimesTwo``."""
        return str(self.entry.get("class_name", "?"))

    @property
    def display(self) -> str:
        """The class as users wrote it (without a ``Custom>`` registration prefix)."""
        return self.class_name.split(">")[-1]

    @property
    def name(self) -> str:
        cfg = self.entry.get("config", {})
        if isinstance(cfg, dict) and "name" in cfg:
            return str(cfg["name"])
        return str(self.entry.get("name", "?"))

    @property
    def config(self) -> dict:
        cfg = self.entry.get("config", {})
        return cfg if isinstance(cfg, dict) else {}

    @property
    def is_custom(self) -> bool:
        """A layer class of the user's own code, not Keras'."""
        if ">" in self.class_name:
            return True
        module = self.entry.get("module")
        if isinstance(module, str) and module and module.split(".")[0] not in ("keras", "tf_keras", "tensorflow"):
            return True
        registered = self.entry.get("registered_name")
        return isinstance(registered, str) and registered.startswith("Custom>")

    @property
    def declared_shape(self) -> Optional[list]:
        """The input shape the layer declares (an InputLayer, or the first layer of an old file)."""
        for key in ("batch_shape", "batch_input_shape"):
            if self.config.get(key) is not None:
                return list(self.config[key])
        return None

    def inner(self, key: str) -> Optional["KerasLayer"]:
        """A wrapped layer or cell (``TimeDistributed``'s ``layer``, ``RNN``'s ``cell``), if any."""
        sub = self.config.get(key)
        return KerasLayer(sub) if isinstance(sub, dict) else None


def model_layers(config: dict) -> List[KerasLayer]:
    """Every layer entry of a model config, in file order."""
    cfg = config.get("config", {}) if isinstance(config, dict) else {}
    if isinstance(cfg, list):  # very old Keras 2 Sequential: the layer list itself
        return [KerasLayer(e) for e in cfg]
    return [KerasLayer(e) for e in (cfg.get("layers", []) if isinstance(cfg, dict) else [])]


def model_name(config: dict) -> str:
    cfg = config.get("config", {}) if isinstance(config, dict) else {}
    return str(cfg.get("name", "model")) if isinstance(cfg, dict) else "model"


def activation_name(value) -> str:
    """An activation as a config stores it (a name, ``keras.activations.relu``, or a
    serialised function object) -> its name."""
    if value is None:
        return "linear"
    if isinstance(value, dict):
        value = value.get("config", value.get("class_name", "?"))
        if isinstance(value, dict):
            value = value.get("name", "?")
    value = str(value)
    if value.startswith("keras.activations."):
        value = value.rsplit(".", 1)[-1]
    if value == "leaky_relu":   # by name: Keras 3's and tf.nn's default slope
        return leaky_relu(0.2)
    return value


# --------------------------------------------------------------------------
# the chain

def linear_chain(config: dict, unknown_refusal: Callable[[KerasLayer], Optional[str]],
                 summary: str) -> Tuple[List[KerasLayer], str]:
    """The model's layers from input to output, and the model name.

    ``unknown_refusal(layer)``: the refusal of a layer class the importer does not read
    (None for the ones it reads); a branch through such a layer is refused with that
    reason rather than as a branch. ``summary``: what rnnskip converts (for messages).
    """
    cls = str(config.get("class_name", "?")) if isinstance(config, dict) else "?"
    name = model_name(config)
    if cls not in MODEL_CLASSES:
        raise RnnskipError(f"the file holds a '{cls}' object, not a Keras Sequential or Functional model: {summary}")
    layers = model_layers(config)
    if cls == "Sequential":
        return layers, name

    cfg = config.get("config", {})
    by_name = {str(layer.entry.get("name", layer.name)): layer for layer in layers}
    inputs = _tensor_refs(cfg.get("input_layers", []))
    outputs = _tensor_refs(cfg.get("output_layers", []))
    if len(inputs) != 1:
        raise RnnskipError(f"model '{name}' has {len(inputs)} inputs: rnnskip converts single-input models")
    if len(outputs) != 1:
        raise RnnskipError(f"model '{name}' has {len(outputs)} outputs: rnnskip converts single-output models")
    chain: List[KerasLayer] = []
    current, index = outputs[0], _output_index(cfg.get("output_layers", []))
    seen = set()
    while True:
        if current not in by_name or current in seen:
            raise RnnskipError(f"model config is inconsistent: layer '{current}' not found")
        seen.add(current)
        layer = by_name[current]
        chain.append(KerasLayer(layer.entry, output=index) if index else layer)
        if current == inputs[0]:
            break
        nodes = layer.entry.get("inbound_nodes", [])
        if len(nodes) != 1:
            if len(nodes) > 1:
                raise LayerError(f"layer '{current}' ({layer.display}) is used {len(nodes)} times (shared layer): "
                                 "rnnskip converts a single chain of layers", layer.name)
            raise LayerError(f"layer '{current}' ({layer.display}) has no input: "
                             "rnnskip converts a single chain of layers", layer.name)
        sources = _node_inputs(nodes[0])
        pools = _pooling_branches(layer, sources, by_name) if len(sources) > 1 else None
        if pools is not None:   # Concatenate of poolings over time of one tensor: one step of the chain
            chain[-1] = KerasLayer(layer.entry, branches=tuple(pools))
            seen.update(p.name for p in pools)
            current, index = _node_refs(pools[0].entry["inbound_nodes"][0])[0]
            continue
        # Keras 3 passes initial_state as a kwarg; tf_keras as more inputs of a recurrent layer
        if _initial_state(nodes[0]) or (len(sources) > 1 and "return_sequences" in layer.config):
            raise LayerError(f"layer '{current}' ({layer.display}) starts from the states of another layer "
                             "(initial_state, as an encoder-decoder's decoder does): rnnskip converts recurrent layers "
                             "that start from zeros", layer.name)
        if len(sources) != 1:
            refusal = unknown_refusal(layer)
            if layer.class_name == "Concatenate":
                refusal = concat_refusal(layer.name)
            raise LayerError(refusal or f"layer '{current}' ({layer.display}) takes {len(sources)} inputs: "
                             "rnnskip converts a single chain of layers", layer.name)
        current, index = sources[0], _node_refs(nodes[0])[0][1]
    chain.reverse()
    on_chain = {id(layer.entry) for layer in chain} | {id(b.entry) for layer in chain for b in layer.branches}
    for layer in layers:
        if id(layer.entry) in on_chain or layer.class_name in MASK_OPS or layer.class_name == "InputLayer":
            continue
        raise LayerError(unknown_refusal(layer) or f"layer '{layer.name}' ({layer.display}) is not on the path from "
                         "input to output: rnnskip converts a single chain of layers", layer.name)
    return chain, name


def concat_refusal(name: str) -> str:
    """The refusal of a Concatenate that is not poolings over time of one tensor."""
    return (f"layer '{name}' (Concatenate) joins other tensors than poolings over time of one recurrent output: "
            "rnnskip converts a single chain of layers, and a Concatenate only of GlobalAveragePooling1D and "
            "GlobalMaxPooling1D of the same tensor")


#: the Keras classes of pooling over time (a Concatenate of them is read as one step: docs/pooling.md)
TIME_POOLING = {"GlobalAveragePooling1D": "avg", "GlobalAvgPool1D": "avg", "GlobalMaxPooling1D": "max",
                "GlobalMaxPool1D": "max"}
#: a mean or maximum as an op: Keras 3's ops.mean / ops.max (op layers Mean, Max), tf_keras' tf.reduce_mean /
#: tf.reduce_max (TFOpLambda, by function)
REDUCTIONS = {"Mean": "avg", "Max": "max", "math.reduce_mean": "avg", "math.reduce_max": "max"}


def reduction(layer: KerasLayer) -> Optional[Tuple[str, object, bool]]:
    """(kind, axis, keepdims) of a mean or maximum op layer (:data:`REDUCTIONS`), None for any other layer."""
    if layer.class_name in ("Mean", "Max"):
        cfg = layer.config
        return REDUCTIONS[layer.class_name], _one_axis(cfg.get("axis")), bool(cfg.get("keepdims"))
    fn = layer.config.get("function") if layer.class_name == "TFOpLambda" else None
    if fn not in REDUCTIONS:
        return None
    kw = op_kwargs(layer) or {}
    return REDUCTIONS[fn], _one_axis(kw.get("axis")), bool(kw.get("keepdims"))


def op_kwargs(layer: KerasLayer) -> Optional[dict]:
    """The call's arguments of a tf_keras op layer (TFOpLambda, SlicingOpLambda): its one inbound node is a flat
    ``[name, node_idx, tensor_idx, kwargs]``. None for any other layout."""
    nodes = layer.entry.get("inbound_nodes") or []
    node = nodes[0] if len(nodes) == 1 else None
    ok = isinstance(node, list) and len(node) > 3 and isinstance(node[0], str) and isinstance(node[3], dict)
    return node[3] if ok else None


def _one_axis(axis):
    """``axis=(1,)`` or ``[1]`` is ``axis=1``."""
    return axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis


def time_pool_kind(layer: KerasLayer) -> Optional[str]:
    """"avg" or "max" for a pooling over the time axis (GlobalAveragePooling1D, ..., or a mean / maximum op over
    axis 1 without keepdims), None otherwise."""
    if layer.class_name in TIME_POOLING:
        return TIME_POOLING[layer.class_name]
    r = reduction(layer)
    return r[0] if r is not None and r[1] in (1, -2) and not r[2] else None


def _pooling_branches(layer: KerasLayer, sources: List[str], by_name: dict) -> Optional[List[KerasLayer]]:
    """The inputs of a Concatenate when each is a pooling over time of one and the same tensor (the common
    ``concatenate([GlobalAveragePooling1D()(x), GlobalMaxPooling1D()(x)])``), in order; None otherwise."""
    if layer.class_name != "Concatenate" or any(s not in by_name for s in sources):
        return None
    pools = [by_name[s] for s in sources]
    if any(time_pool_kind(p) is None or len(p.entry.get("inbound_nodes", [])) != 1 for p in pools):
        return None
    feeds = [_node_inputs(p.entry["inbound_nodes"][0]) for p in pools]
    if any(len(f) != 1 for f in feeds) or len({f[0] for f in feeds}) != 1:
        return None
    return pools


def _tensor_refs(spec) -> List[str]:
    """Layer names referenced by ``input_layers``/``output_layers``."""
    if not spec:
        return []
    if isinstance(spec, list) and spec and isinstance(spec[0], str):
        return [spec[0]]
    out = []
    for s in spec:
        if isinstance(s, list) and s and isinstance(s[0], str):
            out.append(s[0])
        elif isinstance(s, dict):
            out.extend(_tensor_refs_k3(s))
        else:
            out.extend(_tensor_refs(s))
    return out


def _tensor_refs_k3(obj, with_index: bool = False) -> list:
    """Layer names of ``__keras_tensor__`` objects (recursively) in ``obj``; ``with_index``: (name, which of that
    layer's outputs) each."""
    out = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            history = obj.get("config", {}).get("keras_history")
            if history:
                name = str(history[0])
                out.append((name, _int(history[2]) if len(history) > 2 else 0) if with_index else name)
        else:
            for v in obj.values():
                out.extend(_tensor_refs_k3(v, with_index))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(_tensor_refs_k3(v, with_index))
    return out


def _node_inputs(node) -> List[str]:
    """Names of the layers feeding one inbound node (data inputs only, not the ``mask`` kwarg)."""
    return [name for name, _ in _node_refs(node)]


def _node_refs(node) -> List[Tuple[str, int]]:
    """(layer name, which of its outputs) of each tensor feeding one inbound node: its data inputs, not the
    ``mask`` kwarg (Keras 3 passes ``initial_state`` as a kwarg too: a tensor input)."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        kwargs = node.get("kwargs") or {}
        extra = [v for k, v in kwargs.items() if k != "mask"] if isinstance(kwargs, dict) else []
        return _tensor_refs_k3([node.get("args", []), extra], with_index=True)
    if isinstance(node, (list, tuple)) and node and isinstance(node[0], str):
        node = [node]   # tf_keras' op layers (TFOpLambda, SlicingOpLambda): one [name, node_idx, tensor_idx, kwargs]
    out = []
    for t in node:  # Keras 2: [[name, node_idx, tensor_idx, kwargs], ...]
        if isinstance(t, (list, tuple)) and t and isinstance(t[0], str):
            out.append((t[0], _int(t[2]) if len(t) > 2 else 0))
    return out


def _initial_state(node) -> bool:
    """A Keras 3 inbound node passes an ``initial_state`` kwarg (tf_keras passes the states as more inputs)."""
    kwargs = node.get("kwargs") if isinstance(node, dict) else None
    return isinstance(kwargs, dict) and kwargs.get("initial_state") is not None


def _int(v) -> int:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else 0


def _output_index(spec) -> int:
    """Which output of its layer the model's (single) output is, from ``output_layers``."""
    if isinstance(spec, list) and len(spec) == 1:
        spec = spec[0]
    if isinstance(spec, list) and len(spec) > 2 and isinstance(spec[0], str):
        return _int(spec[2])
    refs = _tensor_refs_k3(spec, with_index=True) if isinstance(spec, dict) else []
    return refs[0][1] if len(refs) == 1 else 0
