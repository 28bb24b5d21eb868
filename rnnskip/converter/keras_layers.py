"""One handler per Keras layer class, registered in :data:`HANDLERS` by class name.

A handler knows everything about its class that does not depend on the layers around
it: the layer's own refusals (one line each), the options that matter to rnnskip (what
``rnnskip inspect`` shows) and how to read the layer into a :class:`Node` (its IR piece,
weights resolved by role). Where the layer may sit in the model, and what folds into
what, is the business of the passes in ``keras_passes.py``.

The recurrent handlers come from the cell registry (``rnnskip/cells/``): each cell kind
lists the Keras classes read as it, and owns its options, weight layouts and
activation refusals; nothing here depends on a particular cell kind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import numpy as np

from rnnskip import cells
from rnnskip.converter import support
from rnnskip.converter.ir import ConvLayer, DenseLayer, DepthwiseConvLayer, EmbeddingInput, PoolLayer, RNNLayer
from rnnskip.converter.keras_graph import (
    MODEL_CLASSES,
    KerasLayer,
    activation_name,
    concat_refusal,
    op_kwargs,
    reduction,
    time_pool_kind,
)
from rnnskip.errors import RnnskipError

SUPPORTED_SUMMARY = (f"rnnskip converts Embedding/Dense/Conv1D input, stacked recurrent layers ({cells.labels()}; "
                     "any may be Bidirectional), optional pooling over time and a Dense head")

# Node kinds: what the passes see of a layer.
INPUT = "input"            # InputLayer: nothing to compute
NOOP = "noop"              # the identity at inference time (Dropout, GaussianNoise, ...)
EMBEDDING = "embedding"    # value: EmbeddingInput
MASKING = "masking"        # value: the mask value (float)
DENSE = "dense"            # value: DenseLayer
RECURRENT = "recurrent"    # value: RNNLayer
BATCHNORM = "batchnorm"    # value: Affine
LAYERNORM = "layernorm"    # value: LayerNorm
ACTIVATION = "activation"  # value: the activation name
CONV = "conv"              # value: ConvLayer (a front-end layer: changes the time axis)
POOL = "pool"              # value: PoolLayer (a front-end layer)
TIME_POOL = "time_pool"    # value: "avg" | "max" (pooling over time after the recurrent layers)
FLATTEN = "flatten"        # the identity where there is no time axis left; over the time axis, refused
LAST_STEP = "last_step"    # x[:, -1]: the last step of a recurrent layer's sequence (keras_passes.read_last_step)


@dataclass
class Affine:
    """Inference BatchNormalization (or Normalization, Rescaling): ``y = scale * x + shift`` per
    feature; one value of each (size 1) applies to every feature."""
    scale: np.ndarray
    shift: np.ndarray


@dataclass
class LayerNorm:
    """Keras LayerNormalization over the features: ``scale * (x - mean) / sqrt(var + epsilon) + shift``
    (``scale``, ``shift``: its gamma and beta, or ones and zeros where it has none)."""
    scale: np.ndarray
    shift: np.ndarray
    epsilon: float


@dataclass
class Node:
    """One layer of the chain as its handler read it."""
    layer: KerasLayer
    kind: str
    value: object = None
    time_distributed: bool = False    # TimeDistributed(Dense): needs a sequence (one vector per step)
    notes: List[str] = field(default_factory=list)   # for ModelIR.notes, in chain order
    status: str = ""                  # what rnnskip did with it (rnnskip inspect), set by the passes
    input_center: Optional[np.ndarray] = None   # the first layer: what the normalisation folded into it maps to 0
    input_norm: Optional[np.ndarray] = None     # ... and (a recurrent first layer) its factor per feature, |a|
    activation_layer: Optional["Node"] = None   # a Dense: the Activation (ReLU, Softmax) layer folded into it

    @property
    def name(self) -> str:
        return self.layer.name


class LayerHandler:
    """How rnnskip reads the Keras layer classes in ``classes``."""

    classes: Tuple[str, ...] = ()
    #: what rnnskip does with such a layer whatever else the model holds ("" if that depends)
    fixed_status = ""

    def refusals(self, layer: KerasLayer) -> List[str]:
        """Why the layer cannot be read, from its config alone."""
        return []

    def kernel_refusals(self, layer: KerasLayer) -> List[str]:
        """What of the layer the int8 kernels do not implement (a recurrent layer's activations).
        The importer checks these on the IR once the chain is read (``check_supported``), and
        ``parse_model_file`` not at all."""
        return []

    def options(self, layer: KerasLayer) -> str:
        """The options that matter to rnnskip, e.g. ``units=32, activation=relu``."""
        return ""

    def title(self, layer: KerasLayer) -> str:
        """The class as ``rnnskip inspect`` shows it."""
        return layer.display

    def build(self, layer: KerasLayer, weights) -> Node:
        """The layer's node (weights from the file's :class:`~rnnskip.converter.keras_files.WeightStore`)."""
        raise NotImplementedError


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _join(parts: List[str]) -> str:
    return ", ".join(parts)


#: what to do instead, for unsupported layers people often put around their RNN
HINTS = {"Flatten": "before the recurrent layers it is not converted: rnnskip flattens the time axis of the last "
                    "recurrent layer's outputs (return_sequences=True, a fixed number of steps: docs/pooling.md)"}


def unsupported(layer: KerasLayer, extra: str = "") -> str:
    """The refusal of a layer rnnskip does not convert (``extra``: where, if it is the position)."""
    kind = f"{layer.display}, a custom layer" if layer.is_custom else layer.display
    hint = None if layer.is_custom else HINTS.get(layer.display)
    return f"layer '{layer.name}' ({kind}) is not supported{extra}: {hint or SUPPORTED_SUMMARY}"


# --------------------------------------------------------------------------
# layers without computation

class InputLayerHandler(LayerHandler):
    classes = ("InputLayer",)
    fixed_status = "input"

    def build(self, layer, weights):
        return Node(layer, INPUT, status=self.fixed_status)


class NoopHandler(LayerHandler):
    """Layers that are the identity at inference time: dropped, with a note."""
    classes = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
               "ActivityRegularization")
    fixed_status = "dropped (inference no-op)"

    def options(self, layer):
        rate = layer.config.get("rate")
        return f"rate={rate}" if rate else ""

    def build(self, layer, weights):
        return Node(layer, NOOP, notes=[f"dropped {layer.class_name} '{layer.name}' (inference no-op)"],
                    status=self.fixed_status)


class FlattenHandler(LayerHandler):
    """``Flatten``: after a recurrent layer that returns its last state, or after pooling over time,
    the tensor is already ``[batch, features]`` and Flatten is the identity; over a time axis it is
    refused (where it sits is the assembling pass's business)."""
    classes = ("Flatten",)

    def build(self, layer, weights):
        return Node(layer, FLATTEN)


class ReshapeHandler(LayerHandler):
    """``Reshape`` to one axis per row (``Reshape((-1,))``, ``Reshape((T * units,))``): what Flatten computes (Keras
    reshapes row-major, step by step), read as a Flatten; the assembling pass checks a given size against what it
    reshapes (and takes the number of steps from it when the input declares none)."""
    classes = ("Reshape",)

    def refusals(self, layer):
        target = list(layer.config.get("target_shape") or [])
        if len(target) != 1:
            return [f"layer '{layer.name}' (Reshape) has target_shape={tuple(target)}: rnnskip reads a Reshape to one "
                    "axis per row (Reshape((-1,)), which Flatten computes) and no other"]
        return []

    def build(self, layer, weights):
        return Node(layer, FLATTEN)


def _slice_key(layer: KerasLayer) -> Optional[list]:
    """The key of a Keras 3 ``GetItem`` (``x[key]``: its node's second argument) or tf_keras' ``SlicingOpLambda``
    (its node's ``slice_spec``), each item an int or a ``slice``; None where the file gives none."""
    nodes = layer.entry.get("inbound_nodes") or []
    node = nodes[0] if len(nodes) == 1 else None
    if isinstance(node, dict):   # Keras 3: {"args": [tensor, key], "kwargs": {}}
        args = node.get("args") or []
        key = args[1] if len(args) > 1 else node.get("kwargs", {}).get("key")
    elif op_kwargs(layer) is not None:   # tf_keras: {"slice_spec": key}
        key = op_kwargs(layer).get("slice_spec")
    else:
        return None
    items = key if isinstance(key, list) else [key]
    out = []
    for item in items:
        if isinstance(item, dict):
            cfg = item.get("config", item) if item.get("class_name") == "__slice__" else item
            if not set(cfg) <= {"start", "stop", "step"} or item.get("class_name", "__slice__") != "__slice__":
                return None
            out.append(slice(cfg.get("start"), cfg.get("stop"), cfg.get("step")))
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(item)
        else:
            return None
    return out


def _key_text(key: list) -> str:
    def one(k):
        if isinstance(k, int):
            return str(k)
        return ":".join("" if v is None else str(v) for v in (k.start, k.stop) + ((k.step,) if k.step else ()))
    return "[" + ", ".join(one(k) for k in key) + "]"


class LastStepHandler(LayerHandler):
    """``x[:, -1, :]`` or ``x[:, -1]``: Keras 3 records it as a ``GetItem`` op layer, tf_keras as a
    ``SlicingOpLambda`` (``tf.__operators__.getitem``). On a recurrent layer's sequence it is that layer's last
    output, which rnnskip reads as ``return_sequences=False`` where the two agree (``keras_passes.read_last_step``);
    any other slice is refused."""
    classes = ("GetItem", "SlicingOpLambda")
    WHOLE = slice(None, None, None)

    def refusals(self, layer):
        key = _slice_key(layer)
        if key in ([self.WHOLE, -1], [self.WHOLE, -1, self.WHOLE]):
            return []
        what = f"slices {_key_text(key)}" if key is not None else "slices the tensor by a key rnnskip cannot read"
        return [f"layer '{layer.name}' ({layer.display}) {what}: rnnskip reads a slice only as the last time step "
                "of a recurrent layer's outputs, x[:, -1, :] or x[:, -1]"]

    def options(self, layer):
        key = _slice_key(layer)
        return _key_text(key) if key is not None else ""

    def build(self, layer, weights):
        return Node(layer, LAST_STEP, "x" + _key_text(_slice_key(layer)))   # the slice as the model wrote it


# --------------------------------------------------------------------------
# input

class EmbeddingHandler(LayerHandler):
    classes = ("Embedding",)

    def options(self, layer):
        cfg = layer.config
        parts = [f"{k}={cfg[k]}" for k in ("output_dim", "input_dim") if cfg.get(k) is not None]
        return _join(parts + (["mask_zero=True"] if cfg.get("mask_zero") else []))

    def build(self, layer, weights):
        table = _f32(weights.by_role(layer, ["embeddings"])["embeddings"])
        if table.ndim != 2:
            raise RnnskipError(f"layer '{layer.name}' (Embedding): table is {table.ndim}-D")
        return Node(layer, EMBEDDING, EmbeddingInput(table=table, mask_zero=bool(layer.config.get("mask_zero", False)),
                                                      name=layer.name), status="converted")


class MaskingHandler(LayerHandler):
    classes = ("Masking",)

    def options(self, layer):
        return f"mask_value={layer.config.get('mask_value', 0.0)}"

    def build(self, layer, weights):
        # Keras compares the float32 inputs with the value cast to float32: 0.1 is float32(0.1) here too
        value = float(np.float32(layer.config.get("mask_value", 0.0)))
        return Node(layer, MASKING, value, status="converted (masking)")


# --------------------------------------------------------------------------
# Dense, TimeDistributed(Dense), Activation, BatchNormalization

def _dense_activation_refusals(name: str, cfg: dict) -> List[str]:
    act = activation_name(cfg.get("activation", "linear"))
    if act not in support.DENSE_ACTIVATIONS:
        return [f"layer '{name}' (Dense) uses activation='{act}': rnnskip supports "
                f"Dense activations {support.DENSE_ACTIVATIONS_TEXT}"]
    return []


def _dense_options(cfg: dict) -> str:
    parts = [f"units={cfg['units']}"] if cfg.get("units") else []
    if "activation" in cfg:
        parts.append(f"activation={activation_name(cfg['activation'])}")
    if cfg.get("use_bias") is False:
        parts.append("use_bias=False")
    return _join(parts)


def _dense_layer(layer: KerasLayer, cfg: dict, weights) -> DenseLayer:
    """A Dense from its config ``cfg`` and the weights stored under ``layer``."""
    name = layer.name
    use_bias = bool(cfg.get("use_bias", True))
    w = weights.by_role(layer, ["kernel", "bias"] if use_bias else ["kernel"])
    kernel = _f32(w["kernel"])
    if kernel.ndim != 2:
        raise RnnskipError(f"layer '{name}' (Dense) has a {kernel.ndim}-D kernel: rnnskip supports "
                           "plain 2-D Dense kernels")
    units = int(cfg.get("units", kernel.shape[1]))
    bias = _f32(w["bias"]) if use_bias else np.zeros(kernel.shape[1], np.float32)
    if kernel.shape[1] != units or bias.shape != (units,):
        raise RnnskipError(f"layer '{name}' (Dense): weight shapes {kernel.shape}/{bias.shape} don't "
                           f"match units={units}: the file is inconsistent")
    return DenseLayer(kernel=kernel, bias=bias, activation=activation_name(cfg.get("activation", "linear")),
                      name=name)


class DenseHandler(LayerHandler):
    classes = ("Dense",)

    def refusals(self, layer):
        return _dense_activation_refusals(layer.name, layer.config)

    def options(self, layer):
        return _dense_options(layer.config)

    def build(self, layer, weights):
        return Node(layer, DENSE, _dense_layer(layer, layer.config, weights), status="converted")


class TimeDistributedHandler(LayerHandler):
    """``TimeDistributed(Dense)``: the Dense on every step (its weights are stored under the wrapper);
    ``TimeDistributed`` of an inference no-op (Dropout, ...): dropped as that layer is."""
    classes = ("TimeDistributed",)

    @staticmethod
    def _inner_config(layer) -> dict:
        inner = layer.inner("layer")
        return inner.config if inner is not None else {}

    @staticmethod
    def _is_noop(layer) -> bool:
        inner = layer.inner("layer")
        return inner is not None and inner.class_name in NoopHandler.classes

    def refusals(self, layer):
        inner = layer.inner("layer")
        if self._is_noop(layer):
            return []
        if inner is None or inner.class_name != "Dense":
            return [f"layer '{layer.name}' (TimeDistributed of {inner.display if inner else '?'}) is not supported: "
                    "rnnskip supports TimeDistributed(Dense), per step before the first recurrent layer or as the "
                    "head on every step's output, and drops TimeDistributed(Dropout) and the other inference no-ops"]
        return _dense_activation_refusals(layer.name, inner.config)

    def options(self, layer):
        if self._is_noop(layer):
            return NoopHandler().options(layer.inner("layer"))
        return _dense_options(self._inner_config(layer))

    def title(self, layer):
        inner = layer.inner("layer")
        return f"TimeDistributed({inner.display if inner else '?'})"

    def build(self, layer, weights):
        if self._is_noop(layer):   # TimeDistributed(Dropout): the identity at inference, as its layer
            return Node(layer, NOOP, notes=[f"dropped {self.title(layer)} '{layer.name}' (inference no-op)"],
                        status=NoopHandler.fixed_status)
        return Node(layer, DENSE, _dense_layer(layer, self._inner_config(layer), weights), time_distributed=True,
                    status="converted")


class ActivationHandler(LayerHandler):
    """An Activation layer; the activation pass folds it into the Dense before it."""
    classes = ("Activation",)

    def refusals(self, layer):
        act = activation_name(layer.config.get("activation", "linear"))
        if act not in support.DENSE_ACTIVATIONS:
            return [f"layer '{layer.name}' (Activation) uses activation='{act}': rnnskip supports "
                    f"{support.DENSE_ACTIVATIONS_TEXT} as an Activation after a linear Dense"]
        return []

    def options(self, layer):
        return f"activation={activation_name(layer.config.get('activation', 'linear'))}"

    def build(self, layer, weights):
        return Node(layer, ACTIVATION, activation_name(layer.config.get("activation", "linear")))


class SoftmaxHandler(LayerHandler):
    """A Softmax layer over the last axis: an Activation('softmax'), folded the same way."""
    classes = ("Softmax",)

    # the axis is checked by the activation pass, which knows whether the output has a time axis

    def options(self, layer):
        return f"axis={layer.config.get('axis', -1)}"

    def build(self, layer, weights):
        return Node(layer, ACTIVATION, "softmax")


class ReLUHandler(LayerHandler):
    """A ReLU layer: with its defaults an Activation('relu'), with max_value=6 one of relu6, with a
    negative_slope one of leaky_relu; folded the same way."""
    classes = ("ReLU",)

    @staticmethod
    def _number(layer, key):
        v = layer.config.get(key)   # a key a Keras release did not write has its default
        return None if v is None else float(v)

    def _activation(self, layer) -> str:
        slope = self._number(layer, "negative_slope")
        if slope:
            return support.leaky_relu(slope)
        return "relu6" if self._number(layer, "max_value") == 6.0 else "relu"

    def refusals(self, layer):
        c = layer.config
        m, slope, thr = (self._number(layer, k) for k in ("max_value", "negative_slope", "threshold"))
        odd = [f"threshold={c['threshold']}"] if thr else []
        if m is not None and (m != 6.0 or slope):
            odd.insert(0, f"max_value={c['max_value']}")
        if slope and slope < 0:
            odd.append(f"negative_slope={c['negative_slope']}")
        if odd:
            return [f"layer '{layer.name}' ({layer.display}) has {', '.join(odd)}: rnnskip supports ReLU with its "
                    "defaults (max(x, 0)), max_value=6 (relu6) or a negative_slope >= 0 alone (leaky_relu)"]
        return []

    def options(self, layer):
        act = self._activation(layer)
        return "" if act == "relu" else f"as {act}"

    def build(self, layer, weights):
        return Node(layer, ACTIVATION, self._activation(layer))


class LeakyReLUHandler(LayerHandler):
    """LeakyReLU (tf_keras: alpha, Keras 3: negative_slope; 0.3 by default): an Activation('leaky_relu(a)')."""
    classes = ("LeakyReLU",)

    @staticmethod
    def _slope(layer) -> float:
        c = layer.config
        v = c.get("negative_slope", c.get("alpha"))
        return 0.3 if v is None else float(v)

    def refusals(self, layer):
        if self._slope(layer) < 0:
            return [f"layer '{layer.name}' (LeakyReLU) has a negative slope {self._slope(layer):g}: rnnskip supports "
                    "slopes >= 0"]
        return []

    def options(self, layer):
        return f"negative_slope={self._slope(layer):g}"

    def build(self, layer, weights):
        return Node(layer, ACTIVATION, support.leaky_relu(self._slope(layer)))


def batchnorm_axis_refusal(layer: KerasLayer) -> str:
    return (f"layer '{layer.name}' ({layer.display}) normalises axis {layer.config.get('axis')}: "
            f"rnnskip folds {layer.display} over the last (feature) axis into the "
            "adjacent Dense or recurrent layer")


class BatchNormalizationHandler(LayerHandler):
    """Inference BatchNormalization as an affine map; the batch-normalisation pass folds it
    into the adjacent Dense or recurrent layer."""
    classes = ("BatchNormalization",)

    def refusals(self, layer):
        # the feature axis is the last one: 2 on sequences, 1 after a recurrent layer's last
        # output; the pass checks which applies where the layer sits
        if not any(support.batchnorm_axis_ok(layer.config, rank) for rank in (2, 3)):
            return [batchnorm_axis_refusal(layer)]
        return []

    def build(self, layer, weights):
        w = weights.by_role(layer, support.batchnorm_roles(layer.config))
        scale, shift = support.batchnorm_affine(layer.config, w)
        return Node(layer, BATCHNORM, Affine(scale, shift))


class LayerNormalizationHandler(LayerHandler):
    """LayerNormalization over the features; the layer-normalisation pass folds it into the head's Dense layer
    after it (that layer normalises its input on the device, gamma and beta in its weights)."""
    classes = ("LayerNormalization",)

    def refusals(self, layer):
        cfg = layer.config
        if cfg.get("rms_scaling"):
            return [f"layer '{layer.name}' (LayerNormalization) has rms_scaling=True: rnnskip folds a "
                    f"LayerNormalization that centres its input (rms_scaling=False) into the Dense layer after it"]
        axis = cfg.get("axis", -1)
        if isinstance(axis, (list, tuple)) and len(axis) != 1:
            return [f"layer '{layer.name}' (LayerNormalization) normalises over axes {list(axis)}: rnnskip folds a "
                    f"LayerNormalization over the last (feature) axis into the Dense layer after it"]
        return []

    def options(self, layer):
        return f"epsilon={layer.config.get('epsilon', 1e-3):g}"

    def build(self, layer, weights):
        cfg = layer.config
        roles = [r for r, on in (("gamma", cfg.get("scale", True)), ("beta", cfg.get("center", True))) if on]
        w = weights.by_role(layer, roles) if roles else {}
        gamma = np.asarray(w.get("gamma", np.ones(1)), np.float64).reshape(-1)
        beta = np.asarray(w.get("beta", np.zeros(1)), np.float64).reshape(-1)
        return Node(layer, LAYERNORM, LayerNorm(gamma, beta, float(cfg.get("epsilon", 1e-3))))


def _per_feature(layer: KerasLayer, what: str, values) -> np.ndarray:
    a = np.asarray(values, np.float64)
    if a.ndim > 1 and all(n == 1 for n in a.shape[:-1]):   # Keras' broadcast shape [1, 1, features]
        a = a.reshape(-1)
    if a.ndim != 1:
        raise RnnskipError(f"layer '{layer.name}' ({layer.display}) has a {what} of shape {list(a.shape)}: "
                           "rnnskip folds one value per feature, or one for all")
    return a


class NormalizationHandler(LayerHandler):
    """``Normalization`` (the preprocessing layer, adapted or given its mean and variance):
    ``(x - mean) / max(sqrt(variance), 1e-7)`` per feature, as Keras computes it; an affine map
    the batch-normalisation pass folds like an inference BatchNormalization."""
    classes = ("Normalization",)
    EPSILON = 1e-7   # Keras' backend.epsilon(), the floor of the standard deviation

    def refusals(self, layer):
        out = []
        if layer.config.get("invert"):
            out.append(f"layer '{layer.name}' (Normalization) has invert=True: it undoes a normalisation "
                       "(x * std + mean); rnnskip folds Normalization with invert=False")
        if not any(support.batchnorm_axis_ok(layer.config, rank) for rank in (2, 3)):
            out.append(batchnorm_axis_refusal(layer))
        return out

    def options(self, layer):
        given = layer.config.get("mean") is not None
        return "mean and variance given" if given else "adapted"

    def build(self, layer, weights):
        cfg = layer.config
        if cfg.get("mean") is not None and cfg.get("variance") is not None:
            mean, var = cfg["mean"], cfg["variance"]
        else:
            w = weights.by_role(layer, ["mean", "variance", "count"])
            mean, var = w["mean"], w["variance"]
        mean, var = _per_feature(layer, "mean", mean), _per_feature(layer, "variance", var)
        std = np.maximum(np.sqrt(var), self.EPSILON)
        # a feature of variance 0 was constant (its mean) on the data adapted on, where Keras gives 0; folded as
        # 1e7 (x - mean), float32 would lose the other features to it (weights of 1e7 next to weights of 1): x - mean
        # gives the same 0 there and keeps the mean as the input's centre
        flat = np.sqrt(np.maximum(var, 0.0)) <= self.EPSILON
        a, b = np.where(flat, 1.0, 1.0 / std), np.where(flat, -mean, -mean / std)
        node = Node(layer, BATCHNORM, Affine(a, b))
        if flat.any():
            idx = [int(i) for i in np.flatnonzero(flat)]
            node.notes.append(f"'{layer.name}' (Normalization) has variance 0 for feature{'s' if len(idx) > 1 else ''} "
                              f"{', '.join(map(str, idx))}: constant on the data it was adapted on, where Keras and "
                              "rnnskip give 0; rnnskip takes another value's distance from the mean as it is, where "
                              "Keras multiplies it by 1e7")
        return node


class RescalingHandler(LayerHandler):
    """``Rescaling``: ``x * scale + offset`` (one value, or one per feature), folded like an
    inference BatchNormalization."""
    classes = ("Rescaling",)

    def options(self, layer):
        return f"scale={layer.config.get('scale', 1.0)}, offset={layer.config.get('offset', 0.0)}"

    def build(self, layer, weights):
        scale = _per_feature(layer, "scale", np.ravel(layer.config.get("scale", 1.0)))
        offset = _per_feature(layer, "offset", np.ravel(layer.config.get("offset", 0.0)))
        n = max(scale.size, offset.size)
        if {scale.size, offset.size} - {1, n}:
            raise RnnskipError(f"layer '{layer.name}' (Rescaling) has {scale.size} scales and {offset.size} offsets: "
                               "the file is inconsistent")
        return Node(layer, BATCHNORM, Affine(np.broadcast_to(scale, (n,)).copy(), np.broadcast_to(offset, (n,)).copy()))


# --------------------------------------------------------------------------
# the Conv1D front end (streamed: docs/frontends.md)

def _one(v, default: int) -> int:
    """A Keras 1-D size option: an int or a 1-tuple/list (None: ``default``)."""
    if v is None:
        return default
    if isinstance(v, (list, tuple)):
        return int(v[0]) if len(v) == 1 else -1
    return int(v)


def _channels_last(layer: KerasLayer) -> List[str]:
    fmt = layer.config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        return [f"layer '{layer.name}' ({layer.display}) has data_format='{fmt}': rnnskip streams "
                "channels_last ([batch, time, features]) front ends"]
    return []


class Conv1DHandler(LayerHandler):
    """``Conv1D``: a front-end layer, streamed one input frame at a time."""
    classes = ("Conv1D", "Convolution1D")
    PADDINGS = ("valid", "causal", "same")
    #: what options() names first, and what it names only away from its default 1
    LEAD, SIZES = ("filters",), ("strides", "dilation_rate")

    def refusals(self, layer):
        cfg, out = layer.config, _channels_last(layer)
        what = f"layer '{layer.name}' ({layer.display})"
        pad = str(cfg.get("padding", "valid")).lower()
        k, s, d = (_one(cfg.get("kernel_size"), 1), _one(cfg.get("strides"), 1), _one(cfg.get("dilation_rate"), 1))
        if pad not in self.PADDINGS:
            out.append(f"{what} has padding='{pad}': rnnskip supports valid, causal, same")
        if min(k, s, d) < 1:
            out.append(f"{what} has kernel_size/strides/dilation_rate {cfg.get('kernel_size')}/{cfg.get('strides')}/"
                       f"{cfg.get('dilation_rate')}: rnnskip reads one positive size each")
        if pad == "same" and s > 1:
            out.append(f"{what} has padding='same' with strides={s}: its padding then depends on the sequence length, "
                       "which a stream does not know in advance; rnnskip streams 'same' with strides=1 (or use "
                       "padding='causal' or 'valid')")
        if int(cfg.get("groups", 1) or 1) != 1:
            out.append(f"{what} has groups={cfg.get('groups')}: rnnskip supports groups=1 (and DepthwiseConv1D, one "
                       "group per input channel)")
        act = activation_name(cfg.get("activation", "linear"))
        if act not in support.HIDDEN_DENSE_ACTIVATIONS:
            out.append(f"{what} uses activation='{act}': rnnskip supports convolution activations "
                       f"{support.CONV_ACTIVATIONS_TEXT}")
        return out

    def options(self, layer):
        cfg = layer.config
        parts = [f"{key}={cfg.get(key)}" for key in self.LEAD] + [f"kernel_size={_one(cfg.get('kernel_size'), 1)}"]
        parts += [f"{key}={_one(cfg.get(key), 1)}" for key in self.SIZES if _one(cfg.get(key), 1) != 1]
        parts.append(f"padding={cfg.get('padding', 'valid')}")
        parts.append(f"activation={activation_name(cfg.get('activation', 'linear'))}")
        if cfg.get("use_bias") is False:
            parts.append("use_bias=False")
        return _join(parts)

    def build(self, layer, weights):
        cfg, name = layer.config, layer.name
        use_bias = bool(cfg.get("use_bias", True))
        w = weights.by_role(layer, ["kernel", "bias"] if use_bias else ["kernel"])
        kernel = _f32(w["kernel"])
        filters = int(cfg.get("filters", kernel.shape[-1]))
        bias = _f32(w["bias"]) if use_bias else np.zeros(filters, np.float32)
        if kernel.ndim != 3 or kernel.shape[0] != _one(cfg.get("kernel_size"), 1) or kernel.shape[2] != filters \
                or bias.shape != (filters,):
            raise RnnskipError(f"layer '{name}' (Conv1D): weight shapes {kernel.shape}/{bias.shape} don't match "
                               f"filters={filters}, kernel_size={cfg.get('kernel_size')}: the file is inconsistent")
        conv = ConvLayer(kernel=kernel, bias=bias, strides=_one(cfg.get("strides"), 1),
                         dilation=_one(cfg.get("dilation_rate"), 1), padding=str(cfg.get("padding", "valid")).lower(),
                         activation=activation_name(cfg.get("activation", "linear")), name=name)
        return Node(layer, CONV, conv, status="converted (streamed front end)")


class DepthwiseConv1DHandler(Conv1DHandler):
    """``DepthwiseConv1D``: a front-end layer, each input channel convolved on its own (``DepthwiseConvLayer``)."""
    classes = ("DepthwiseConv1D",)
    LEAD, SIZES = (), ("depth_multiplier", "strides", "dilation_rate")

    def build(self, layer, weights):
        cfg, name = layer.config, layer.name
        use_bias = bool(cfg.get("use_bias", True))
        w = weights.by_role(layer, ["kernel", "bias"] if use_bias else ["kernel"])
        kernel = _f32(w["kernel"])
        mult = int(cfg.get("depth_multiplier", 1) or 1)
        if kernel.ndim != 3 or kernel.shape[0] != _one(cfg.get("kernel_size"), 1) or kernel.shape[2] != mult:
            raise RnnskipError(f"layer '{name}' (DepthwiseConv1D): weight shape {kernel.shape} doesn't match "
                               f"kernel_size={cfg.get('kernel_size')}, depth_multiplier={mult}: the file is "
                               "inconsistent")
        out = kernel.shape[1] * mult
        bias = _f32(w["bias"]) if use_bias else np.zeros(out, np.float32)
        if bias.shape != (out,):
            raise RnnskipError(f"layer '{name}' (DepthwiseConv1D): bias shape {bias.shape} doesn't match its "
                               f"{out} output channels: the file is inconsistent")
        conv = DepthwiseConvLayer(kernel=kernel, bias=bias, strides=_one(cfg.get("strides"), 1),
                                  dilation=_one(cfg.get("dilation_rate"), 1),
                                  padding=str(cfg.get("padding", "valid")).lower(),
                                  activation=activation_name(cfg.get("activation", "linear")), name=name)
        return Node(layer, CONV, conv, status="converted (streamed front end)")


class SeparableConv1DHandler(Conv1DHandler):
    """``SeparableConv1D``: two front-end layers, as Keras computes it: a linear DepthwiseConv1D without bias (the
    layer's padding, strides, dilation and depth_multiplier), then a Conv1D of kernel 1 (its filters, bias and
    activation). The int8 model rounds between them, where Keras keeps floats."""
    classes = ("SeparableConv1D", "SeparableConvolution1D")
    SIZES = ("depth_multiplier", "strides", "dilation_rate")

    def build(self, layer, weights):
        cfg, name = layer.config, layer.name
        use_bias = bool(cfg.get("use_bias", True))
        roles = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if use_bias else [])
        w = weights.by_role(layer, roles)
        dk, pk = _f32(w["depthwise_kernel"]), _f32(w["pointwise_kernel"])
        filters = int(cfg.get("filters", pk.shape[-1]))
        mult = int(cfg.get("depth_multiplier", 1) or 1)
        bias = _f32(w["bias"]) if use_bias else np.zeros(filters, np.float32)
        if dk.ndim != 3 or dk.shape[0] != _one(cfg.get("kernel_size"), 1) or dk.shape[2] != mult or \
                pk.shape != (1, dk.shape[1] * mult, filters) or bias.shape != (filters,):
            raise RnnskipError(f"layer '{name}' (SeparableConv1D): weight shapes {dk.shape}/{pk.shape}/{bias.shape} "
                               f"don't match filters={filters}, kernel_size={cfg.get('kernel_size')}, "
                               f"depth_multiplier={mult}: the file is inconsistent")
        # both parts carry the layer's name and class: messages and `inspect` name what the user wrote
        depthwise = DepthwiseConvLayer(kernel=dk, bias=np.zeros(dk.shape[1] * mult, np.float32),
                                       strides=_one(cfg.get("strides"), 1), dilation=_one(cfg.get("dilation_rate"), 1),
                                       padding=str(cfg.get("padding", "valid")).lower(), name=name,
                                       layer_class=layer.display)
        pointwise = ConvLayer(kernel=pk, bias=bias, activation=activation_name(cfg.get("activation", "linear")),
                              name=name, layer_class=layer.display)
        return [Node(layer, CONV, depthwise, status="converted (streamed front end: its depthwise part)"),
                Node(layer, CONV, pointwise, status="converted (streamed front end: DepthwiseConv1D, then a Conv1D "
                                                    "of kernel 1)")]


class Pooling1DHandler(LayerHandler):
    """``MaxPooling1D`` / ``AveragePooling1D``: a front-end layer (``padding='valid'``)."""
    KINDS = {"MaxPooling1D": "max", "MaxPool1D": "max", "AveragePooling1D": "avg", "AvgPool1D": "avg"}
    classes = tuple(KINDS)

    @staticmethod
    def _sizes(cfg: dict) -> Tuple[int, int]:
        p = _one(cfg.get("pool_size"), 2)
        return p, _one(cfg.get("strides"), p)

    def refusals(self, layer):
        cfg, out = layer.config, _channels_last(layer)
        pad = str(cfg.get("padding", "valid")).lower()
        if pad != "valid":
            out.append(f"layer '{layer.name}' ({layer.display}) has padding='{pad}': its padding depends on the "
                       "sequence length, which a stream does not know in advance; rnnskip streams "
                       "padding='valid' pooling")
        if min(self._sizes(cfg)) < 1:
            out.append(f"layer '{layer.name}' ({layer.display}) has pool_size/strides {cfg.get('pool_size')}/"
                       f"{cfg.get('strides')}: rnnskip reads one positive size each")
        return out

    def options(self, layer):
        p, s = self._sizes(layer.config)
        return _join([f"pool_size={p}", f"strides={s}", f"padding={layer.config.get('padding', 'valid')}"])

    def build(self, layer, weights):
        p, s = self._sizes(layer.config)
        # the channel count is the width before it, filled in by the chain pass
        return Node(layer, POOL, PoolLayer(kind=self.KINDS[layer.class_name], pool_size=p, strides=s, channels=0,
                                           name=layer.name), status="converted (streamed front end)")


class TimePoolingHandler(LayerHandler):
    """``GlobalAveragePooling1D`` / ``GlobalMaxPooling1D`` on the last recurrent layer's outputs: the
    device pools each step's output as it comes (a running sum or maximum), the head runs once on it."""
    KINDS = {"GlobalAveragePooling1D": "avg", "GlobalAvgPool1D": "avg", "GlobalMaxPooling1D": "max",
             "GlobalMaxPool1D": "max"}
    classes = tuple(KINDS)

    def refusals(self, layer):
        cfg, out = layer.config, []
        fmt = cfg.get("data_format") or "channels_last"
        if fmt != "channels_last":
            out.append(f"layer '{layer.name}' ({layer.display}) has data_format='{fmt}': it pools over the "
                       "features, not the time steps; rnnskip pools over time (data_format='channels_last')")
        if cfg.get("keepdims"):
            out.append(f"layer '{layer.name}' ({layer.display}) has keepdims=True: rnnskip pools the time axis "
                       "away (keepdims=False) and runs the Dense head once on the pooled vector")
        return out

    def options(self, layer):
        return ""

    def build(self, layer, weights):
        return Node(layer, TIME_POOL, self.KINDS[layer.class_name], status="converted (pooled over time)")


class ReductionHandler(LayerHandler):
    """A mean or maximum over the time axis as an op (Keras 3 ``ops.mean(x, axis=1)`` / ``ops.max``, tf_keras
    ``tf.reduce_mean(x, axis=1)`` / ``tf.reduce_max``): GlobalAveragePooling1D / GlobalMaxPooling1D where no mask
    is involved (the op reads every step, padding included; ``keras_passes.assemble`` refuses it on a masked
    sequence). tf_keras records every TF function as a TFOpLambda: the other functions are refused as before."""
    classes = ("Mean", "Max", "TFOpLambda")

    def refusals(self, layer):
        r = reduction(layer)
        if r is None:
            return [unsupported(layer)]
        kind, axis, keepdims = r
        what = "mean" if kind == "avg" else "maximum"
        if axis not in (1, -2):
            return [f"layer '{layer.name}' ({layer.display}) takes the {what} over axis {axis}: rnnskip reads a "
                    f"{what} only over the time axis (axis=1), as Global{'Average' if kind == 'avg' else 'Max'}"
                    "Pooling1D"]
        if keepdims:
            return [f"layer '{layer.name}' ({layer.display}) has keepdims=True: rnnskip pools the time axis "
                    "away (keepdims=False) and runs the Dense head once on the pooled vector"]
        if layer.config.get("initial") is not None:
            return [f"layer '{layer.name}' ({layer.display}) has initial={layer.config['initial']}: rnnskip reads "
                    "a maximum over the time axis without an initial value"]
        return []

    def options(self, layer):
        r = reduction(layer)
        return f"axis={r[1]}" + (", keepdims=True" if r[2] else "") if r is not None else _generic_options(layer.config)

    def build(self, layer, weights):
        kind = time_pool_kind(layer)
        what = "mean" if kind == "avg" else "maximum"
        return Node(layer, TIME_POOL, kind, status=f"converted (pooled over time: the {what} op)")


class ConcatPoolingHandler(LayerHandler):
    """``Concatenate`` of poolings over time of one recurrent output (``concatenate([GlobalAveragePooling1D()(x),
    GlobalMaxPooling1D()(x)])``): the device keeps each kind's running sum or maximum, the head reads their vectors
    side by side. The chain (``keras_graph.linear_chain``) hands it its inputs as ``branches``."""
    classes = ("Concatenate",)

    def refusals(self, layer):
        name = layer.name
        if not layer.branches:
            return [concat_refusal(name)]
        out = [r for b in layer.branches for r in handler_for(b).refusals(b)]
        kinds = [time_pool_kind(b) for b in layer.branches]
        if len(set(kinds)) != len(kinds):
            out.append(f"layer '{name}' (Concatenate) joins {len(kinds)} poolings of which some are the same kind: "
                       "rnnskip converts one GlobalAveragePooling1D and one GlobalMaxPooling1D side by side")
        axis = layer.config.get("axis", -1)
        if axis not in (-1, 1):
            out.append(f"layer '{name}' (Concatenate) joins the poolings on axis {axis}: rnnskip joins them on the "
                       "feature axis (-1)")
        return out

    def options(self, layer):
        return _join(f"{b.display} '{b.name}'" for b in layer.branches)

    def build(self, layer, weights):
        kinds = [time_pool_kind(b) for b in layer.branches]
        return Node(layer, TIME_POOL, ",".join(kinds), status="converted (pooled over time: " + " and ".join(
            "mean" if k == "avg" else "max" for k in kinds) + ", side by side)")


# --------------------------------------------------------------------------
# recurrent layers

_FLAG_HINTS = (("stateful", "stateless RNNs (re-save with stateful=False)"),
               ("go_backwards", "forward RNNs (go_backwards=False)"),
               ("time_major", "batch-major input (time_major=False)"))


class RecurrentHandler(LayerHandler):
    """A recurrent layer class read as a cell kind of ``rnnskip/cells/`` (``cell``), or
    ``RNN(cell=...)`` (``cell`` None: the wrapped cell class says which)."""

    def __init__(self, class_name: str, cell=None):
        self.classes = (class_name,)
        self.cell = cell
        # CuDNN layers store CuDNN's weight layout (Keras converts it when loading)
        self.cudnn = class_name.startswith("CuDNN")

    def cell_of(self, layer: KerasLayer):
        if self.cell is not None:
            return self.cell
        inner = layer.inner("cell")
        return cells.keras_cell(inner.class_name) if inner is not None else None

    def merged_config(self, layer: KerasLayer) -> dict:
        """The layer's config with an ``RNN`` wrapper's cell options merged in."""
        cfg = dict(layer.config)
        inner = layer.inner("cell") if self.cell is None else None
        if inner is not None:
            cfg.update({k: v for k, v in inner.config.items() if k not in ("name", "trainable", "dtype")})
        return cfg

    def refusals(self, layer):
        out = []
        if self.cell_of(layer) is None:
            inner = layer.inner("cell")
            inner_cls = inner.display if inner is not None else "?"
            all_cells = " or ".join(c for kind in cells.CELLS.values() for c in kind.keras_cell_classes)
            out.append(f"layer '{layer.name}' (RNN with cell {inner_cls}) is not supported: rnnskip converts RNN "
                       f"layers with a {all_cells}")
        cfg = self.merged_config(layer)
        for flag, hint in _FLAG_HINTS:
            if cfg.get(flag):
                out.append(f"layer '{layer.name}' ({layer.display}) has {flag}=True, which is not supported: "
                           f"rnnskip converts {hint}")
        # return_state=True outputs [output, h] (an LSTM: [output, h, c]): the output, or h read as the output
        if cfg.get("return_state") and layer.output > 1:
            out.append(f"layer '{layer.name}' ({layer.display}) has return_state=True and the next layer reads its "
                       f"state {layer.output} (the cell state c): rnnskip converts a recurrent layer's output or its "
                       "final hidden state h")
        return out

    def _activations(self, cell, cfg: dict) -> Tuple[str, Optional[str]]:
        act = activation_name(cfg.get("activation", "tanh"))
        return act, activation_name(cfg.get("recurrent_activation", "sigmoid")) if cell.gated else None

    def kernel_refusals(self, layer):
        cell = self.cell_of(layer)
        if cell is None:
            return []
        act, recurrent_act = self._activations(cell, self.merged_config(layer))
        msg = cell.activation_refusal(SimpleNamespace(name=layer.name, activation=act,
                                                      recurrent_activation=recurrent_act))
        return [msg] if msg else []

    def options(self, layer):
        cfg = self.merged_config(layer)
        parts = [f"units={cfg['units']}"] if cfg.get("units") else []
        for key in ("activation", "recurrent_activation"):
            if key in cfg:
                parts.append(f"{key}={activation_name(cfg[key])}")
        parts += [f"{flag}=True" for flag in ("return_sequences", "return_state", "stateful", "go_backwards")
                  if cfg.get(flag)]
        cell = self.cell_of(layer)
        if cell is not None:  # the cell's own options, where the config states them
            parts += [f"{k}={cfg[k]}" for k in cell.keras_options(cfg, None) if k in cfg]
        if cfg.get("use_bias") is False:
            parts.append("use_bias=False")
        return _join(parts)

    def build(self, layer, weights):
        name, cls = layer.name, layer.display
        cell = self.cell_of(layer)
        cfg = self.merged_config(layer)
        notes = [f"{k}={cfg[k]} of '{name}' ignored (inference no-op)" for k in ("dropout", "recurrent_dropout")
                 if cfg.get(k)]
        units = int(cfg["units"])
        use_bias = bool(cfg.get("use_bias", True))
        w = weights.by_role(layer, ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else []))
        if self.cudnn:
            w["kernel"], w["recurrent_kernel"], w["bias"] = cell.from_cudnn(w["kernel"], w["recurrent_kernel"],
                                                                            w["bias"])
            notes.append(f"{cls} '{name}' read as {cell.label} (Keras' CuDNN weight conversion)")
        kernel = _f32(w["kernel"])
        recurrent_kernel = _f32(w["recurrent_kernel"])
        options = cell.keras_options(cfg, _f32(w["bias"]) if use_bias else None)
        want_bias = cell.bias_shape(units, options)
        bias = _f32(w["bias"]) if use_bias else np.zeros(want_bias, np.float32)
        gates = cell.gates
        if (kernel.ndim != 2 or kernel.shape[1] != gates * units or recurrent_kernel.shape != (units, gates * units)
                or bias.shape != want_bias):
            raise RnnskipError(
                f"layer '{name}' ({cls}): weight shapes kernel {kernel.shape}, recurrent "
                f"{recurrent_kernel.shape}, bias {bias.shape} don't match units={units}: the file is "
                "inconsistent or a variant rnnskip does not support")
        act, recurrent_act = self._activations(cell, cfg)
        sequences = bool(cfg.get("return_sequences", False))
        if cfg.get("return_state") and layer.output == 1:   # its final h: the output without return_sequences
            notes.append(f"the next layer reads the final state h of '{name}' (return_state=True): read as its "
                         "output with return_sequences=False")
            sequences = False
        rnn = RNNLayer(kind=cell.kind, units=units, kernel=kernel, recurrent_kernel=recurrent_kernel, bias=bias,
                       activation=act, recurrent_activation=recurrent_act,
                       return_sequences=sequences, options=options, name=name)
        return Node(layer, RECURRENT, rnn, notes=notes, status="converted")


MERGE_MODES = ("concat", "sum", "ave", "mul")
#: config keys a Bidirectional's backward layer may differ in from its forward layer
_DIRECTION_KEYS = ("name", "go_backwards", "trainable", "dtype", "seed")
_TRAINING_SUFFIXES = ("_initializer", "_regularizer", "_constraint")   # training only


class BidirectionalHandler(LayerHandler):
    """``Bidirectional`` around a recurrent layer: the forward direction streams step by step, the
    backward one runs over the buffered window at the end (docs/bidirectional.md)."""
    classes = ("Bidirectional",)

    @staticmethod
    def _inner(layer: KerasLayer):
        inner = layer.inner("layer")
        handler = HANDLERS.get(inner.class_name) if inner is not None else None
        return inner, handler if isinstance(handler, RecurrentHandler) else None

    def refusals(self, layer):
        name, cfg = layer.name, layer.config
        inner, handler = self._inner(layer)
        if handler is None:
            return [f"layer '{name}' (Bidirectional of {inner.display if inner else '?'}) is not supported: rnnskip "
                    f"converts Bidirectional around a recurrent layer ({cells.labels()})"]
        out = []
        if inner.config.get("return_state") and layer.output:
            out.append(f"layer '{name}' (Bidirectional) has return_state=True and the next layer reads its state "
                       f"{layer.output}: rnnskip converts a Bidirectional layer's merged output")
        merge = cfg.get("merge_mode", "concat")
        if merge not in MERGE_MODES:
            out.append(f"layer '{name}' (Bidirectional) has merge_mode={merge!r}: rnnskip supports merge_mode "
                       f"{', '.join(MERGE_MODES)} (one output per step or sequence)")
        backward = layer.inner("backward_layer")
        if backward is not None:
            differ = sorted(k for k in set(inner.config) | set(backward.config) if k not in _DIRECTION_KEYS
                            and not k.endswith(_TRAINING_SUFFIXES) and inner.config.get(k) != backward.config.get(k))
            if backward.class_name != inner.class_name or differ:
                what = f"class {backward.display}" if backward.class_name != inner.class_name else ", ".join(differ)
                out.append(f"layer '{name}' (Bidirectional) has a backward_layer that differs from its forward layer "
                           f"({what}): rnnskip converts a backward layer of the same class and options")
        if inner.config.get("go_backwards"):
            out.append(f"layer '{name}' (Bidirectional) wraps a layer with go_backwards=True: rnnskip converts "
                       "Bidirectional around a forward layer")
        out += [m.replace(f"layer '{inner.name}'", f"layer '{name}'")
                for m in handler.refusals(inner) + handler.kernel_refusals(inner)]
        return out

    def options(self, layer):
        inner, handler = self._inner(layer)
        head = f"merge_mode={layer.config.get('merge_mode', 'concat')}"
        return _join([head, handler.options(inner)]) if handler is not None else head

    def title(self, layer):
        inner = layer.inner("layer")
        return f"Bidirectional({inner.display if inner else '?'})"

    def build(self, layer, weights):
        inner, handler = self._inner(layer)
        nodes = [handler.build(inner, weights.direction(layer, which)) for which in ("forward", "backward")]
        forward, backward = (n.value for n in nodes)
        forward.name, backward.name = layer.name, f"{layer.name}_backward"
        forward.backward, forward.merge_mode = backward, layer.config.get("merge_mode", "concat")
        notes = [note.replace(f"'{inner.name}'", f"'{layer.name}'") for note in nodes[0].notes]
        return Node(layer, RECURRENT, forward, notes=notes, status="converted (bidirectional)")


# --------------------------------------------------------------------------
# everything else

def _generic_options(cfg: dict) -> str:
    """The usual options of a layer rnnskip has no handler for (shown, not used)."""
    parts = [f"{k}={cfg[k]}" for k in ("units", "output_dim", "input_dim", "rate")
             if k in cfg and cfg[k] is not None and cfg[k] is not False]
    parts += [f"{k}={activation_name(cfg[k])}" for k in ("activation", "recurrent_activation") if k in cfg]
    return _join(parts)


class UnsupportedHandler(LayerHandler):
    """Any class without a handler: refused."""

    def refusals(self, layer):
        if layer.class_name in MODEL_CLASSES:
            return [f"layer '{layer.name}' ({layer.class_name}) is a nested model: rnnskip converts a flat "
                    "chain of layers (rebuild the model without nesting)"]
        return [unsupported(layer)]

    def options(self, layer):
        return _generic_options(layer.config)

    def build(self, layer, weights):
        raise RnnskipError(self.refusals(layer)[0])


#: Keras class name -> its handler
HANDLERS: Dict[str, LayerHandler] = {}
UNSUPPORTED = UnsupportedHandler()


def _register(handler: LayerHandler) -> None:
    for cls in handler.classes:
        if cls in HANDLERS:
            raise ValueError(f"two handlers for the Keras class {cls}")
        HANDLERS[cls] = handler


for _handler in (InputLayerHandler(), NoopHandler(), EmbeddingHandler(), MaskingHandler(), DenseHandler(),
                 TimeDistributedHandler(), FlattenHandler(), ReshapeHandler(), LastStepHandler(), ActivationHandler(),
                 SoftmaxHandler(),
                 ReLUHandler(), LeakyReLUHandler(),
                 BatchNormalizationHandler(), NormalizationHandler(), RescalingHandler(),
                 Conv1DHandler(), DepthwiseConv1DHandler(), SeparableConv1DHandler(),
                 LayerNormalizationHandler(),
                 Pooling1DHandler(), TimePoolingHandler(), ReductionHandler(), ConcatPoolingHandler(),
                 RecurrentHandler("RNN"),
                 BidirectionalHandler()):
    _register(_handler)
for _cell in cells.CELLS.values():
    for _cls in _cell.keras_classes:
        _register(RecurrentHandler(_cls, _cell))


def handler_for(layer: KerasLayer) -> LayerHandler:
    """The layer's handler (:data:`UNSUPPORTED` for a class rnnskip does not read)."""
    return HANDLERS.get(layer.class_name, UNSUPPORTED)


def unknown_refusal(layer: KerasLayer) -> Optional[str]:
    """The refusal of a layer whose class has no handler, None if it has one."""
    return None if layer.class_name in HANDLERS else UNSUPPORTED.refusals(layer)[0]


def layer_refusals(layer: KerasLayer) -> List[str]:
    """Every refusal of the layer on its own."""
    handler = handler_for(layer)
    return handler.refusals(layer) + handler.kernel_refusals(layer)
