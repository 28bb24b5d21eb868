"""What rnnskip converts, in one place: activation names per layer kind and
Keras generation, inference no-ops and folds, and the one-line reasons for refusals.

Used by the importer (``keras_import``), the float reference, the quantizer,
``rnnskip inspect`` and the support matrix.

Activation names in the IR are canonical:

* ``hard_sigmoid`` is Keras 1/2's ``clip(0.2*x + 0.5, 0, 1)``;
* ``hard_sigmoid_k3`` is Keras 3's ``clip(x/6 + 0.5, 0, 1)`` (``relu6(x + 3) / 6``).

A file says ``hard_sigmoid`` either way; :func:`resolve_generation` picks the
meaning from the file's ``keras_version`` (major version >= 3: Keras 3) and
leaves a note.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from rnnskip.errors import RnnskipError

from .ir import ConvLayer


class LayerError(RnnskipError):
    """A refusal about one layer of the model; ``layer`` is its name, so ``rnnskip inspect``
    shows the reason on that layer's row."""

    def __init__(self, message: str, layer: str):
        super().__init__(message)
        self.layer = layer

# --------------------------------------------------------------------------
# activations

#: recurrent ``activation`` (an LSTM's candidate and cell output, a GRU's candidate, a SimpleRNN's
#: output; canonical IR names)
RNN_ACTIVATIONS = frozenset({"tanh", "sigmoid", "hard_sigmoid", "hard_sigmoid_k3", "relu",
                             "linear", "softsign"})
#: recurrent ``recurrent_activation`` (the i, f, o / z, r gates): gates must stay in [0, 1],
#: otherwise the state is unbounded (c = f*c + i*g, h = z*h + (1-z)*n) and no fixed int16
#: format holds it
RNN_RECURRENT_ACTIVATIONS = frozenset({"sigmoid", "hard_sigmoid", "hard_sigmoid_k3"})

def leaky_relu(alpha: float) -> str:
    """The canonical name of LeakyReLU with slope ``alpha`` below 0: ``leaky_relu(0.3)`` (the slope is a
    parameter of the name, so every fold that moves an activation name moves it; frameworks keep it as float32,
    and so does the name)."""
    return f"leaky_relu({np.format_float_positional(np.float32(alpha))})"   # float32's shortest digits: 0.3


def activation_kind(act: str) -> str:
    """An activation name without its parameter: ``leaky_relu(0.3)`` -> ``leaky_relu``."""
    return act.split("(", 1)[0] if isinstance(act, str) else act


def leaky_alpha(act: str) -> float:
    """The slope of a ``leaky_relu(...)`` name."""
    return float(act[len("leaky_relu("):-1])


class _Kinds(frozenset):
    """A set of activation kinds that also holds each parameterised name of a kind it holds."""

    def __contains__(self, act) -> bool:
        return super().__contains__(activation_kind(act))

    def __or__(self, other):
        return _Kinds(frozenset(self) | frozenset(other))


#: Dense activations between layers (input Dense, hidden head layers, Conv1D), whose output is int8.
#: ``relu6`` (min(max(x, 0), 6)): relu on an int8 scale whose largest value is at most 6
#: (quant.act.int_activation), so it has no kernel of its own; ``leaky_relu(a)``: x below 0 times a, on
#: the int8 output's scale (rnnskip_requantize_act_s8), not in per-step layers (their cell has no slope)
HIDDEN_DENSE_ACTIVATIONS = _Kinds({"linear", "relu", "relu6", "leaky_relu", "tanh", "sigmoid", "hard_sigmoid",
                                   "hard_sigmoid_k3", "softsign"})
#: per-step Dense layers: a recurrent layer's activations and relu6
PER_STEP_DENSE_ACTIVATIONS = RNN_ACTIVATIONS | {"relu6"}
PER_STEP_DENSE_ACTIVATIONS_TEXT = "tanh, sigmoid, hard_sigmoid, relu, relu6, linear, softsign"
#: Conv1D activations (the front end): what a hidden Dense has
CONV_ACTIVATIONS_TEXT = "linear, relu, relu6, leaky_relu, tanh, sigmoid, hard_sigmoid, softsign"
#: activations over the classes, on the last layer only: the device returns that layer's int16 logits and the host
#: applies them (log_softmax: PyTorch's nn.LogSoftmax before NLLLoss, Keras 3's activation; the same argmax)
CLASS_ACTIVATIONS = frozenset({"softmax", "log_softmax"})


def constant_classes(act: str, outputs: int) -> Optional[str]:
    """Why ``act`` over ``outputs`` outputs is refused (None where it is not): softmax over one output is always 1 and
    log_softmax always 0, so the class never changes whatever the input (Keras' Dense(1, activation='softmax')
    mistake); the importers' one line, after the layer's name."""
    if act not in CLASS_ACTIVATIONS or outputs != 1:
        return None
    return (f"applies {act} to one output, which makes it the constant {1 if act == 'softmax' else 0} whatever the "
            f"input: a binary classifier ends in one sigmoid output, or one logit without an activation "
            f"(BCEWithLogitsLoss, from_logits=True), or in {act} over two outputs")


#: outputs that make the model a classifier by themselves (a linear one is a classifier's logits with integer labels)
CLASSIFIER_ACTIVATIONS = CLASS_ACTIVATIONS | {"sigmoid"}
#: any Dense (the last one may also be one of CLASS_ACTIVATIONS)
DENSE_ACTIVATIONS = HIDDEN_DENSE_ACTIVATIONS | CLASS_ACTIVATIONS

#: user-facing list (file names, not canonical names)
RNN_ACTIVATIONS_TEXT = "tanh, sigmoid, hard_sigmoid, relu, linear, softsign"
RNN_RECURRENT_ACTIVATIONS_TEXT = "sigmoid, hard_sigmoid (gates in [0, 1])"
DENSE_ACTIVATIONS_TEXT = ("linear, relu, relu6, leaky_relu, tanh, sigmoid, hard_sigmoid, softsign, softmax and "
                          "log_softmax (last layer)")


def hard_sigmoid_k2(x):
    """Keras 1/2 (and tf.keras / tf_keras 2.x): clip(0.2 x + 0.5, 0, 1)."""
    return np.clip(0.2 * np.asarray(x, np.float64) + 0.5, 0.0, 1.0)


def hard_sigmoid_k3(x):
    """Keras 3: clip(x / 6 + 0.5, 0, 1)."""
    return np.clip(np.asarray(x, np.float64) / 6.0 + 0.5, 0.0, 1.0)


def softsign(x):
    x = np.asarray(x, np.float64)
    return x / (1.0 + np.abs(x))


def log_softmax(x):
    x = np.asarray(x, np.float64)
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def relu6(x):
    return np.clip(np.asarray(x, np.float64), 0.0, 6.0)


def leaky_relu_fn(alpha: float):
    a = float(np.float32(alpha))   # Keras and torch multiply by the float32 slope

    def f(x):
        x = np.asarray(x, np.float64)
        return np.where(x < 0, a * x, x)
    return f


#: float functions the reference adds to its own (linear, relu, tanh, sigmoid, softmax)
FLOAT_ACTIVATIONS = {
    "hard_sigmoid": hard_sigmoid_k2,
    "hard_sigmoid_k3": hard_sigmoid_k3,
    "softsign": softsign,
    "relu6": relu6,
    "log_softmax": log_softmax,
}


def file_name(act: str) -> str:
    """The name a Keras file uses for a canonical activation."""
    return "hard_sigmoid" if act == "hard_sigmoid_k3" else act


def keras_major(version: str) -> int:
    """Major version of a ``keras_version`` string ('2.2.4-tf' -> 2); 2 when unknown."""
    try:
        return int(str(version).strip().split(".")[0])
    except (ValueError, IndexError):
        return 2


def generation(version: str) -> str:
    """A short label of the Keras generation that wrote a file."""
    v = str(version or "")
    if not v:
        return "Keras (version not recorded)"
    major = keras_major(v)
    if major >= 3:
        return f"Keras 3 ({v})"
    if major == 1:
        return f"Keras 1 ({v})"
    parts = v.split("-")[0].split(".")
    minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if v.endswith("-tf") or minor >= 4:
        return f"tf.keras / tf_keras ({v})"
    return f"standalone Keras 2 ({v})"


def check_generation(version: str, path: str) -> None:
    """Refuse files whose layout rnnskip does not read (Keras 1)."""
    if keras_major(version) < 2 and str(version).strip():
        raise RnnskipError(
            f"{path} was saved by Keras {version}: rnnskip reads files from Keras 2.0 and later "
            "(load it in Keras 2 and save it again)")


def resolve_generation(ir) -> None:
    """Give ``hard_sigmoid`` the meaning of the Keras generation that wrote ``ir``."""
    if keras_major(ir.keras_version) < 3:
        return
    seen = []

    def fix(obj, attr):
        if getattr(obj, attr) == "hard_sigmoid":
            setattr(obj, attr, "hard_sigmoid_k3")
            seen.append(obj.name)

    for r in ir.rnn_layers:
        fix(r, "activation")
        fix(r, "recurrent_activation")
    dense = list(ir.head)
    if not ir.is_token_model:
        if ir.input.dense is not None:
            dense.append(ir.input.dense)
        dense += [f for f in ir.input.front if isinstance(f, ConvLayer)]
    for d in dense:
        fix(d, "activation")
    if seen:
        names = ", ".join(f"'{n}'" for n in dict.fromkeys(seen))
        ir.notes.append(f"hard_sigmoid of {names} is Keras 3's clip(x/6 + 0.5) "
                        f"(keras_version {ir.keras_version})")


#: activations the int8 kernels compute through a table (rnnskip/quant/act.py LUTS): outputs within +-1 on a fixed
#: int8 scale
TABLE_ACTIVATIONS = ("sigmoid", "tanh", "hard_sigmoid", "hard_sigmoid_k3", "softsign")


def front_pad_problem(front: list):
    """(name, why) of a Conv1D whose padding frame (``ConvLayer.pad``) int8 cannot hold, or None: after a table
    activation (tanh, sigmoid, hard_sigmoid, softsign: outputs on a fixed int8 scale of +-1), a frame beyond +-1.
    Each importer words the refusal (``layer '<name>' (Conv1D) <why>``, ``node '<name>' (Conv) <why>``)."""
    from .ir import ConvLayer
    src = None   # the layer whose int8 scale the next Conv1D reads (a pooling layer keeps its input's)
    for f in front:
        if isinstance(f, ConvLayer) and f.pad is not None and src is not None and src.activation in TABLE_ACTIVATIONS:
            worst = float(np.abs(f.pad).max())
            if worst > 1.0 + 0.5 / 127:
                return f.name, (f"pads with {worst:.3g}, the input the normalisation before it maps to 0, but reads "
                                f"the {src.activation} output of '{src.name}', whose int8 scale holds +-1: put the "
                                "normalisation before that activation, or after this convolution")
        if isinstance(f, ConvLayer):
            src = f
    return None


def check_finite(ir) -> None:
    """Refuse NaN or infinite weights (a diverged training run): int8 has no such values."""
    from .ir import EmbeddingInput
    arrays = []   # (name in the message, layer name, weights)
    if isinstance(ir.input, EmbeddingInput):
        arrays.append(("embedding", ir.input.name, ir.input.table))
    elif ir.input.dense is not None:
        d = ir.input.dense
        arrays += [("input dense", d.name, d.kernel), ("input dense", d.name, d.bias)]
    else:
        for c in ir.input.front:
            if hasattr(c, "kernel"):
                arrays += [(c.name, c.name, c.kernel), (c.name, c.name, c.bias)]
    for l in ir.rnn_layers:
        for r in l.directions():
            arrays += [(r.name, l.name, r.kernel), (r.name, l.name, r.recurrent_kernel), (r.name, l.name, r.bias)]
    for i, d in enumerate(ir.head):
        name = getattr(d, "name", f"dense {i}")
        arrays += [(name, name, d.kernel), (name, name, d.bias)]
    for said, name, a in arrays:
        bad = ~np.isfinite(np.asarray(a, np.float64))
        if bad.any():
            raise LayerError(f"layer '{said}' has {int(bad.sum())} NaN or infinite weights (did training diverge?); "
                             f"re-train or restore a good checkpoint", name)


# --------------------------------------------------------------------------
# folds

def batchnorm_affine(cfg: dict, w: dict) -> Tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as ``y = a * x + c`` (per channel)."""
    eps = float(cfg.get("epsilon", 1e-3))
    mean = np.asarray(w["moving_mean"], np.float64)
    var = np.asarray(w["moving_variance"], np.float64)
    gamma = np.asarray(w["gamma"], np.float64) if "gamma" in w else np.ones_like(mean)
    beta = np.asarray(w["beta"], np.float64) if "beta" in w else np.zeros_like(mean)
    a = gamma / np.sqrt(var + eps)
    return a, beta - a * mean


def batchnorm_roles(cfg: dict) -> List[str]:
    roles = []
    if cfg.get("scale", True):
        roles.append("gamma")
    if cfg.get("center", True):
        roles.append("beta")
    return roles + ["moving_mean", "moving_variance"]


def batchnorm_axis_ok(cfg: dict, rank: int) -> bool:
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    try:
        axis = int(axis)
    except (TypeError, ValueError):
        return False
    return axis in (-1, rank - 1)


def fold_after(d, a: np.ndarray, c: np.ndarray) -> None:
    """BatchNormalization ``a*y + c`` after Dense ``d`` (linear): into its kernel and bias."""
    d.kernel = np.ascontiguousarray((np.asarray(d.kernel, np.float64) * a[None, :]).astype(np.float32))
    d.bias = np.ascontiguousarray((np.asarray(d.bias, np.float64) * a + c).astype(np.float32))


def fold_before_dense(d, a: np.ndarray, c: np.ndarray) -> None:
    """BatchNormalization ``a*x + c`` before Dense ``d``: ``W' = diag(a) W``, ``b' = b + c W``."""
    k = np.asarray(d.kernel, np.float64)
    d.bias = np.ascontiguousarray((np.asarray(d.bias, np.float64) + c @ k).astype(np.float32))
    d.kernel = np.ascontiguousarray((k * a[:, None]).astype(np.float32))


def linear_chain(denses, width: int):
    """Linear Dense layers applied in turn to ``width`` features as one map ``x @ w + c`` (float64), or None when a
    layer's input width is not the width before it."""
    w, c = np.eye(width), np.zeros(width)
    for d in denses:
        k = np.asarray(d.kernel, np.float64)
        if k.shape[0] != w.shape[1]:
            return None
        w, c = w @ k, c @ k + np.asarray(d.bias, np.float64)
    return w, c


def neutral_input(a: np.ndarray, b: np.ndarray):
    """The input ``p`` that the per-feature map ``a*x + b`` sends to 0 (``p = -b/a``), or the index of a
    feature it cannot: one scaled by 0 with a shift other than 0, which no input normalises to 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    bad = np.flatnonzero((a == 0) & (b != 0))
    if bad.size:
        return int(bad[0])
    return np.where(a == 0, 0.0, -b / np.where(a == 0, 1.0, a))


def input_center(a: np.ndarray, b: np.ndarray):
    """``FeatureInput.center`` of a normalisation ``a*x + b`` on the model's input: what it maps to 0, or None where
    that is 0 everywhere (nothing to subtract) or a feature has no such input (:func:`neutral_input`)."""
    c = neutral_input(a, b)
    if isinstance(c, int) or not np.any(c):
        return None
    return np.asarray(c, np.float64)


def identity_dense(activation: str, name: str):
    """An activation on the head's input (e.g. ReLU on a recurrent layer's final state) as a Dense layer: identity
    weights, no bias. Its width is left open (a 0 x 0 kernel) until :func:`size_identity_dense`."""
    from .ir import DenseLayer
    return DenseLayer(kernel=np.zeros((0, 0), np.float32), bias=np.zeros(0, np.float32), activation=activation,
                      name=name)


def size_identity_dense(d, width: int) -> None:
    """Give an :func:`identity_dense` placeholder its width (a no-op for any other Dense)."""
    if d.kernel.shape == (0, 0):
        d.kernel, d.bias = np.eye(width, dtype=np.float32), np.zeros(width, np.float32)


def is_identity_dense(d) -> bool:
    """``d`` is an :func:`identity_dense` (an activation on the head's input), sized or not."""
    k = np.asarray(d.kernel)
    return k.shape == (0, 0) or (k.ndim == 2 and k.shape[0] == k.shape[1] and np.array_equal(k, np.eye(k.shape[0]))
                                 and not np.any(d.bias))


def input_norm_scale(a: np.ndarray) -> np.ndarray:
    """``FeatureInput.norm_scale`` of a normalisation ``a*x + b`` into a recurrent first layer: ``|a|`` per feature,
    1 where ``a`` is 0 (that feature's kernel row folds to zeros, and the device divides by the scale)."""
    a = np.abs(np.asarray(a, np.float64))
    return np.where(a > 0, a, 1.0)


def fold_before_conv(c, a: np.ndarray, b: np.ndarray) -> None:
    """BatchNormalization ``a*x + b`` on the input of Conv1D ``c``: ``W'[k, i] = a[i] W[k, i]``,
    ``bias' = bias + sum_k b W[k]``. Keras pads the normalised input with zeros (causal, same); the folded
    convolution pads the raw input with the frame the map sends to 0 (``c.pad``), so every tap, padded or
    not, computes what Keras does. The caller checks :func:`neutral_input` first."""
    if c.padding != "valid":
        c.pad = np.asarray(neutral_input(a, b), np.float64)
    c.bias = np.ascontiguousarray((np.asarray(c.bias, np.float64) + c.input_shift(b)).astype(np.float32))
    c.kernel = np.ascontiguousarray((np.asarray(c.kernel, np.float64) * a[None, :, None]).astype(np.float32))


def fold_after_conv(c, a: np.ndarray, b: np.ndarray) -> None:
    """BatchNormalization ``a*y + b`` after Conv1D ``c`` (linear): per output channel into its kernel and bias."""
    c.kernel = np.ascontiguousarray((np.asarray(c.kernel, np.float64) * c.per_output(a)).astype(np.float32))
    c.bias = np.ascontiguousarray((np.asarray(c.bias, np.float64) * a + b).astype(np.float32))
