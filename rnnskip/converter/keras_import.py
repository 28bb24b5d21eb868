"""Read a Keras model file (``.h5`` or ``.keras``) into the rnnskip IR.

The file is parsed with h5py / zipfile / json only; Keras itself is never
imported (Keras 3 cannot load Keras 2 ``.h5`` files, and TensorFlow is a
heavy, optional dependency).

File layouts handled (all seen in practice):

* ``.h5`` from Keras 2 (tf.keras / tf_keras): root attrs ``model_config``,
  ``keras_version``; weights under ``model_weights/<layer>/`` with the attr
  ``weight_names`` listing dataset paths relative to that group, e.g.
  ``lstm/lstm_cell/kernel:0``, ``lstm_1/kernel:0``, ``time_distributed/kernel:0``.
* ``.h5`` from Keras 3 (legacy format): same root attrs, weight names without
  ``:0`` and with a model prefix, e.g. ``sequential/lstm/lstm_cell/kernel``,
  ``time_distributed/dense_1/kernel``.
* ``.keras`` zip (Keras 3, and tf_keras >= 2.13): ``metadata.json``,
  ``config.json`` and ``model.weights.h5`` with variables by index,
  ``layers/<key>/vars/<i>`` and nested ``layers/<key>/cell/vars/<i>`` (RNNs)
  or ``layers/<key>/layer/vars/<i>`` (TimeDistributed).  ``<key>`` is the
  snake-cased class name made unique in layer order (``dense``, ``dense_1``),
  *not* the layer name; Keras 3 also stores the layer name as the ``name``
  attr of the ``vars`` group, tf_keras does not.

Weights are resolved by layer and role (kernel / recurrent_kernel / bias /
embeddings): by the basename of ``weight_names`` in ``.h5`` files, by index
in ``.keras`` files.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from rnnskip import cells
from rnnskip.errors import RnnskipError
from rnnskip.converter import support
from rnnskip.converter.ir import (
    DenseLayer,
    EmbeddingInput,
    FeatureInput,
    ModelIR,
    RNNLayer,
)

SUPPORTED_SUMMARY = (f"rnnskip converts Embedding/Dense input, 1-2 recurrent layers ({cells.labels()}) "
                     "and a Dense head")

# Activations the pipeline implements (canonical IR names, see converter/support.py);
# the IR records whatever the file says.
SUPPORTED_RNN_ACTIVATIONS = set(support.RNN_ACTIVATIONS)
SUPPORTED_RNN_RECURRENT_ACTIVATIONS = set(support.RNN_RECURRENT_ACTIVATIONS)
SUPPORTED_DENSE_ACTIVATIONS = set(support.DENSE_ACTIVATIONS)

# Layers that are the identity at inference time.
_NOOP_LAYERS = {"Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                "AlphaDropout", "ActivityRegularization"}
# Keras 3 functional models record the mask computation of Masking as op
# nodes (NotEqual -> Any) that feed layers only through their ``mask`` kwarg.
_MASK_OPS = {"NotEqual", "Any", "All", "Equal", "Cast", "LogicalNot",
             "LogicalAnd", "LogicalOr"}
_MODEL_CLASSES = {"Sequential", "Functional", "Model"}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


# --------------------------------------------------------------------------
# public entry point

def load_model_file(path) -> ModelIR:
    """Parse a Keras ``.h5`` / ``.keras`` file into a :class:`ModelIR`.

    Raises :class:`RnnskipError` (one line) for anything unreadable or
    unsupported.
    """
    ir = parse_model_file(path)
    check_supported(ir)
    return ir


def parse_model_file(path) -> ModelIR:
    """Like :func:`load_model_file` but without the activation check, so a
    caller that supports more activations can inspect the IR."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise RnnskipError(f"model file not found: {p}")
    if os.path.isdir(p):
        raise RnnskipError(
            f"{p} is a directory, not a model file: rnnskip reads Keras .h5 or "
            ".keras files (re-save a SavedModel with model.save('model.keras'))")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise RnnskipError(f"cannot read {p}: {e.strerror or e}") from None
    if not head:
        raise RnnskipError(f"{p} is empty: expected a Keras .h5 or .keras model file")
    try:
        if head.startswith(_ZIP_MAGIC):
            return _load_keras_zip(p)
        if _is_hdf5(p, head):
            return _load_h5(p)
    except RnnskipError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError,
            zipfile.BadZipFile, EOFError, UnicodeDecodeError) as e:
        raise RnnskipError(f"cannot read {p}: {_describe(e)}") from None
    raise RnnskipError(
        f"{p} is not a Keras model file: expected an HDF5 (.h5) file or a "
        ".keras zip archive")


def check_supported(ir: ModelIR) -> None:
    """Refuse IR features that later stages don't implement yet, and unusable weights."""
    for r in ir.rnn_layers:
        msg = cells.cell_of(r.kind).activation_refusal(r)
        if msg:
            raise RnnskipError(msg)
    support.check_finite(ir)


# --------------------------------------------------------------------------
# file containers

def _describe(e: BaseException) -> str:
    if isinstance(e, zipfile.BadZipFile):
        return f"the .keras archive is truncated or corrupt ({e})"
    if isinstance(e, KeyError):
        return f"the file is truncated, corrupt or not a Keras model (missing {e})"
    if isinstance(e, json.JSONDecodeError):
        return f"the model config is not valid JSON ({e.msg})"
    if isinstance(e, OSError):
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"the file is truncated or corrupt ({msg})"
    msg = str(e).splitlines()[0] if str(e) else ""
    return f"unexpected content ({type(e).__name__}{': ' + msg if msg else ''})"


def _is_hdf5(p: str, head: bytes) -> bool:
    if head == _HDF5_MAGIC:
        return True
    # HDF5 superblocks may also sit at 512, 1024, 2048, ... (user block).
    try:
        import h5py
        return bool(h5py.is_hdf5(p))
    except Exception:  # pragma: no cover - h5py is a hard dependency
        return False


def _attr_str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_str(v.item())
    return str(v)


def _load_h5(p: str) -> ModelIR:
    import h5py
    with h5py.File(p, "r") as f:
        if "model_config" not in f.attrs:
            if "layer_names" in f.attrs or "model_weights" in f or "layers" in f:
                raise RnnskipError(
                    f"{p} holds only weights, no model config: save the whole "
                    "model with model.save('model.h5') or model.save('model.keras')")
            raise RnnskipError(
                f"{p} is an HDF5 file but not a Keras model (no 'model_config' "
                "attribute): save the model with model.save('model.h5')")
        raw = f.attrs["model_config"]
        config = json.loads(_attr_str(raw))
        version = _attr_str(f.attrs.get("keras_version", ""))
        if "model_weights" not in f:
            raise RnnskipError(
                f"{p} has a model config but no weights (no 'model_weights' "
                "group): save the model with model.save()")
        support.check_generation(version, p)
        weights = _H5LegacyWeights(f["model_weights"])
        ir = _build_ir(config, weights, p)
    ir.keras_version = version
    ir.source = p
    support.resolve_generation(ir)
    return ir


def _load_keras_zip(p: str) -> ModelIR:
    import h5py
    with zipfile.ZipFile(p) as z:
        names = set(z.namelist())
        if "config.json" not in names:
            raise RnnskipError(
                f"{p} is a zip archive without config.json, not a Keras .keras "
                "model: save the model with model.save('model.keras')")
        config = json.loads(z.read("config.json").decode("utf-8"))
        version = ""
        if "metadata.json" in names:
            meta = json.loads(z.read("metadata.json").decode("utf-8"))
            version = str(meta.get("keras_version", ""))
        if "model.weights.h5" not in names:
            other = sorted(n for n in names if n.startswith("model.weights"))
            what = f" (found {', '.join(other)})" if other else ""
            raise RnnskipError(
                f"{p} has no model.weights.h5{what}: rnnskip reads .keras files "
                "with HDF5 weights as written by model.save('model.keras')")
        blob = io.BytesIO(z.read("model.weights.h5"))
    with h5py.File(blob, "r") as f:
        weights = _KerasV3Weights(f, config)
        ir = _build_ir(config, weights, p)
    ir.keras_version = version
    ir.source = p
    support.resolve_generation(ir)
    return ir


# --------------------------------------------------------------------------
# weight stores: layer name -> ordered list of (role, array)

def _basename_role(name: str) -> str:
    base = name.split("/")[-1]
    return base.split(":")[0]


class _H5LegacyWeights:
    """``model_weights/<layer>/`` + ``weight_names`` attr (Keras 2 and 3)."""

    def __init__(self, group):
        self.g = group

    def get(self, layer_name: str, layer_entry: dict) -> List[Tuple[str, np.ndarray]]:
        import h5py
        if layer_name not in self.g:
            return []
        lg = self.g[layer_name]
        out = []
        if "weight_names" in lg.attrs:
            for n in lg.attrs["weight_names"]:
                n = _attr_str(n)
                out.append((_basename_role(n), np.asarray(lg[n])))
        else:  # older writers: just walk the datasets in order
            found = []
            lg.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
            for n in found:
                out.append((_basename_role(n), np.asarray(lg[n])))
        return out

    positional = False


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _KerasV3Weights:
    """``model.weights.h5`` inside a ``.keras`` zip: vars by index."""

    positional = True

    def __init__(self, f, config):
        self.f = f
        self.root = None
        for key in ("layers", "_layer_checkpoint_dependencies"):
            if key in f:
                self.root = f[key]
                break
        self.by_name: Dict[str, object] = {}
        if self.root is not None:
            for key in self.root:
                g = self.root[key]
                vg = g.get("vars") if hasattr(g, "get") else None
                if vg is not None and "name" in vg.attrs:
                    self.by_name[_attr_str(vg.attrs["name"])] = g
        # Fallback (tf_keras .keras files have no name attrs): keys are the
        # snake-cased class names made unique in layer order.
        self.by_key_order: Dict[str, str] = {}
        used: Dict[str, int] = {}
        for entry in _layer_list(config.get("config", {})):
            cls = _class_name(entry)
            if cls in _MASK_OPS:
                continue
            key = _snake(cls)
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            self.by_key_order[_layer_name(entry)] = key

    def _group_for(self, layer_name: str):
        if self.root is None:
            return None
        if layer_name in self.by_name:
            return self.by_name[layer_name]
        key = self.by_key_order.get(layer_name)
        if key is not None and key in self.root:
            return self.root[key]
        return None

    def get(self, layer_name: str, layer_entry: dict) -> List[Tuple[str, np.ndarray]]:
        g = self._group_for(layer_name)
        if g is None:
            return []
        out: List[Tuple[str, np.ndarray]] = []
        self._collect(g, out)
        return out

    def _collect(self, g, out):
        import h5py
        if "vars" in g:
            vg = g["vars"]
            idx = sorted((k for k in vg if isinstance(vg[k], h5py.Dataset)),
                         key=lambda k: int(k) if k.isdigit() else 1 << 30)
            for k in idx:
                out.append((k, np.asarray(vg[k])))
        for k in sorted(g):
            if k != "vars" and isinstance(g[k], h5py.Group):
                self._collect(g[k], out)


def _resolve(weights, layer_name: str, entry: dict, roles: List[str]) -> Dict[str, np.ndarray]:
    """Map a layer's stored arrays onto ``roles`` (by name, else by position)."""
    got = weights.get(layer_name, entry)
    cls = _class_name(entry)
    if not got:
        raise RnnskipError(
            f"layer '{layer_name}' ({cls}) has no weights in the file: the file "
            "is incomplete; re-save the model with model.save()")
    if not weights.positional:
        by_role = {}
        for role, arr in got:
            by_role.setdefault(role, arr)
        if all(r in by_role for r in roles):
            return {r: by_role[r] for r in roles}
    if len(got) != len(roles):
        raise RnnskipError(
            f"layer '{layer_name}' ({cls}) stores {len(got)} weight arrays, expected "
            f"{len(roles)} ({', '.join(roles)}): unsupported layer variant "
            "(quantized or custom?)")
    return {r: arr for r, (_, arr) in zip(roles, got)}


# --------------------------------------------------------------------------
# config helpers

def _class_name(entry: dict) -> str:
    cls = str(entry.get("class_name", "?"))
    return cls


def _display_class(entry: dict) -> str:
    cls = _class_name(entry)
    return cls.split(">")[-1]


def _is_custom(entry: dict) -> bool:
    cls = _class_name(entry)
    if ">" in cls:
        return True
    module = entry.get("module")
    if isinstance(module, str) and module and module.split(".")[0] not in (
            "keras", "tf_keras", "tensorflow"):
        return True
    reg = entry.get("registered_name")
    return isinstance(reg, str) and reg.startswith("Custom>")


def _layer_name(entry: dict) -> str:
    cfg = entry.get("config", {})
    if isinstance(cfg, dict) and "name" in cfg:
        return str(cfg["name"])
    return str(entry.get("name", "?"))


def _layer_list(model_cfg) -> list:
    if isinstance(model_cfg, list):  # very old Keras 2 Sequential
        return model_cfg
    return list(model_cfg.get("layers", []))


def _unsupported(entry: dict, extra: str = "") -> RnnskipError:
    name = _layer_name(entry)
    cls = _display_class(entry)
    kind = f"{cls}, a custom layer" if _is_custom(entry) else cls
    return RnnskipError(f"layer '{name}' ({kind}) is not supported{extra}: {SUPPORTED_SUMMARY}")


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


def _tensor_refs_k3(obj) -> List[str]:
    """Layer names of ``__keras_tensor__`` objects (recursively) in ``obj``."""
    out = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            hist = obj.get("config", {}).get("keras_history")
            if hist:
                out.append(str(hist[0]))
        else:
            for v in obj.values():
                out.extend(_tensor_refs_k3(v))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(_tensor_refs_k3(v))
    return out


def _node_inputs(node) -> List[str]:
    """Names of the layers feeding one inbound node (data inputs only, not
    the ``mask`` kwarg)."""
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        return _tensor_refs_k3(node.get("args", []))
    out = []
    for t in node:  # Keras 2: [[name, node_idx, tensor_idx, kwargs], ...]
        if isinstance(t, (list, tuple)) and t and isinstance(t[0], str):
            out.append(t[0])
    return out


def _linear_chain(top: dict) -> Tuple[List[dict], str]:
    """The model's layers from input to output, and the model name."""
    cls = _class_name(top)
    cfg = top.get("config", {})
    model_name = cfg.get("name", "model") if isinstance(cfg, dict) else "model"
    if cls not in _MODEL_CLASSES:
        raise RnnskipError(
            f"the file holds a '{cls}' object, not a Keras Sequential or "
            f"Functional model: {SUPPORTED_SUMMARY}")
    layers = _layer_list(cfg)
    if cls == "Sequential":
        return layers, str(model_name)

    by_name = {}
    for entry in layers:
        by_name[str(entry.get("name", _layer_name(entry)))] = entry
    inputs = _tensor_refs(cfg.get("input_layers", []))
    outputs = _tensor_refs(cfg.get("output_layers", []))
    if len(inputs) != 1:
        raise RnnskipError(
            f"model '{model_name}' has {len(inputs)} inputs: rnnskip converts "
            "single-input models")
    if len(outputs) != 1:
        raise RnnskipError(
            f"model '{model_name}' has {len(outputs)} outputs: rnnskip converts "
            "single-output models")
    chain = []
    cur = outputs[0]
    seen = set()
    while True:
        if cur not in by_name or cur in seen:
            raise RnnskipError(f"model config is inconsistent: layer '{cur}' not found")
        seen.add(cur)
        entry = by_name[cur]
        chain.append(entry)
        if cur == inputs[0]:
            break
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) != 1:
            if len(nodes) > 1:
                raise RnnskipError(
                    f"layer '{cur}' ({_display_class(entry)}) is used {len(nodes)} "
                    "times (shared layer): rnnskip converts a single chain of layers")
            raise RnnskipError(
                f"layer '{cur}' ({_display_class(entry)}) has no input: "
                "rnnskip converts a single chain of layers")
        src = _node_inputs(nodes[0])
        if len(src) != 1:
            if not _known_class(entry):
                raise _unsupported(entry)
            raise RnnskipError(
                f"layer '{cur}' ({_display_class(entry)}) takes {len(src)} inputs: "
                "rnnskip converts a single chain of layers")
        cur = src[0]
    chain.reverse()
    on_chain = {id(e) for e in chain}
    for entry in layers:
        if id(entry) in on_chain:
            continue
        if _class_name(entry) in _MASK_OPS or _class_name(entry) == "InputLayer":
            continue
        if not _known_class(entry):
            raise _unsupported(entry)
        raise RnnskipError(
            f"layer '{_layer_name(entry)}' ({_display_class(entry)}) is not on the "
            "path from input to output: rnnskip converts a single chain of layers")
    return chain, str(model_name)


def _known_class(entry: dict) -> bool:
    cls = _class_name(entry)
    return (cls in _NOOP_LAYERS or _is_rnn(entry) or cls in
            {"InputLayer", "Embedding", "Masking", "Dense", "TimeDistributed",
             "Activation", "RNN", "BatchNormalization"})


def _activation(v, where: str) -> str:
    if v is None:
        return "linear"
    if isinstance(v, dict):  # serialized function object
        v = v.get("config", v.get("class_name", "?"))
        if isinstance(v, dict):
            v = v.get("name", "?")
    v = str(v)
    if v.startswith("keras.activations."):
        v = v.rsplit(".", 1)[-1]
    return v


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


# --------------------------------------------------------------------------
# IR construction

def _dense_from(entry: dict, cfg: dict, weights, wname: str) -> DenseLayer:
    name = _layer_name(entry)
    use_bias = bool(cfg.get("use_bias", True))
    roles = ["kernel", "bias"] if use_bias else ["kernel"]
    w = _resolve(weights, wname, entry, roles)
    kernel = _f32(w["kernel"])
    if kernel.ndim != 2:
        raise RnnskipError(
            f"layer '{name}' (Dense) has a {kernel.ndim}-D kernel: rnnskip supports "
            "plain 2-D Dense kernels")
    units = int(cfg.get("units", kernel.shape[1]))
    bias = _f32(w["bias"]) if use_bias else np.zeros(kernel.shape[1], np.float32)
    if kernel.shape[1] != units or bias.shape != (units,):
        raise RnnskipError(
            f"layer '{name}' (Dense): weight shapes {kernel.shape}/{bias.shape} don't "
            f"match units={units}: the file is inconsistent")
    act = _activation(cfg.get("activation", "linear"), name)
    if act not in SUPPORTED_DENSE_ACTIVATIONS:
        raise RnnskipError(
            f"layer '{name}' (Dense) uses activation='{act}': rnnskip supports "
            f"Dense activations {support.DENSE_ACTIVATIONS_TEXT}")
    return DenseLayer(kernel=kernel, bias=bias, activation=act, name=name)


def _rnn_cell(entry: dict):
    """The cell kind of a recurrent layer entry (``LSTM``, or ``RNN`` with an ``LSTMCell``), or None."""
    if _class_name(entry) == "RNN":
        cell = entry.get("config", {}).get("cell", {})
        return cells.keras_cell(_class_name(cell)) if isinstance(cell, dict) else None
    return cells.keras_cell(_class_name(entry))


def _is_rnn(entry: dict) -> bool:
    return _class_name(entry) == "RNN" or _class_name(entry) in cells.keras_layer_classes()


def _rnn_from(entry: dict, weights, notes: List[str]) -> RNNLayer:
    """A recurrent layer through its cell kind (``rnnskip/cells/``): options, weights by role, shapes."""
    name = _layer_name(entry)
    cls = _display_class(entry)
    cfg = dict(entry.get("config", {}))
    cell = _rnn_cell(entry)
    if _class_name(entry) == "RNN":
        ccfg = cfg.get("cell", {})
        if cell is None:
            ccls = _class_name(ccfg) if isinstance(ccfg, dict) else "?"
            raise RnnskipError(
                f"layer '{name}' (RNN with cell {ccls.split('>')[-1]}) is not supported: rnnskip converts RNN "
                f"layers with a {' or '.join(c for k in cells.CELLS.values() for c in k.keras_cell_classes)}")
        cfg.update({k: v for k, v in (ccfg.get("config", {}) or {}).items() if k not in ("name", "trainable",
                                                                                      "dtype")})

    for flag, hint in (("stateful", "stateless RNNs (re-save with stateful=False)"),
                       ("go_backwards", "forward RNNs (go_backwards=False)"),
                       ("time_major", "batch-major input (time_major=False)"),
                       ("return_state", "RNNs that return only their output "
                                        "(return_state=False)")):
        if cfg.get(flag):
            raise RnnskipError(
                f"layer '{name}' ({cls}) has {flag}=True, which is not supported: "
                f"rnnskip converts {hint}")
    for k in ("dropout", "recurrent_dropout"):
        if cfg.get(k):
            notes.append(f"{k}={cfg[k]} of '{name}' ignored (inference no-op)")

    units = int(cfg["units"])
    g = cell.gates
    use_bias = bool(cfg.get("use_bias", True))
    roles = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    w = _resolve(weights, name, entry, roles)
    if _class_name(entry).startswith("CuDNN"):  # Keras' own conversion of CuDNN weights
        w["kernel"], w["recurrent_kernel"], w["bias"] = cell.from_cudnn(w["kernel"], w["recurrent_kernel"],
                                                                        w["bias"])
        notes.append(f"{cls} '{name}' read as {cell.label} (Keras' CuDNN weight conversion)")
    kernel = _f32(w["kernel"])
    rk = _f32(w["recurrent_kernel"])
    options = cell.keras_options(cfg, _f32(w["bias"]) if use_bias else None)
    want_bias = cell.bias_shape(units, options)
    bias = _f32(w["bias"]) if use_bias else np.zeros(want_bias, np.float32)
    if (kernel.ndim != 2 or kernel.shape[1] != g * units or rk.shape != (units, g * units)
            or bias.shape != want_bias):
        raise RnnskipError(
            f"layer '{name}' ({cls}): weight shapes kernel {kernel.shape}, recurrent "
            f"{rk.shape}, bias {bias.shape} don't match units={units}: the file is "
            "inconsistent or a variant rnnskip does not support")
    return RNNLayer(
        kind=cell.kind, units=units, kernel=kernel, recurrent_kernel=rk, bias=bias,
        activation=_activation(cfg.get("activation", "tanh"), name),
        recurrent_activation=_activation(cfg.get("recurrent_activation", "sigmoid"), name) if cell.gated else None,
        return_sequences=bool(cfg.get("return_sequences", False)), options=options, name=name)


def _input_shape(entry: dict) -> Optional[list]:
    cfg = entry.get("config", {})
    for k in ("batch_shape", "batch_input_shape"):
        if isinstance(cfg, dict) and cfg.get(k) is not None:
            return list(cfg[k])
    return None


def _fold_bn(pending_bn, fold, layer, name: str, notes: list):
    """Fold a pending BatchNormalization ``(a, c, bn_name)`` (or None) into ``layer`` with
    ``fold`` (the cell's fold_input_affine / support.fold_before_dense), note it; returns None (nothing pending)."""
    if pending_bn is not None:
        fold(layer, *pending_bn[:2])
        notes.append(f"folded BatchNormalization '{pending_bn[2]}' into '{name}'")
    return None


def _build_ir(config: dict, weights, path: str) -> ModelIR:
    if not isinstance(config, dict) or "class_name" not in config:
        raise RnnskipError(f"cannot read {path}: the model config has no class_name")
    chain, model_name = _linear_chain(config)
    notes: List[str] = []

    embedding: Optional[EmbeddingInput] = None
    in_dense: Optional[DenseLayer] = None
    mask_value: Optional[float] = None
    rnns: List[RNNLayer] = []
    head: List[DenseLayer] = []
    shape: Optional[list] = None
    seen_weighted = False  # anything that transforms the input seen yet?
    last = None            # the last layer kept (Dense/RNN), for folds
    pending_bn = None      # (a, c, name): a BatchNormalization to fold into the next layer
    per_step = False       # Dense head on a return_sequences=True RNN: one output per step

    for entry in chain:
        cls = _class_name(entry)
        name = _layer_name(entry)
        cfg = entry.get("config", {}) or {}
        if shape is None:
            shape = _input_shape(entry)
        if cls == "InputLayer":
            continue
        if cls in _NOOP_LAYERS:
            notes.append(f"dropped {cls} '{name}' (inference no-op)")
            continue
        if cls in _MODEL_CLASSES:
            raise RnnskipError(
                f"layer '{name}' ({cls}) is a nested model: rnnskip converts a flat "
                "chain of layers (rebuild the model without nesting)")
        if cls == "Embedding":
            if seen_weighted or mask_value is not None:
                raise RnnskipError(
                    f"layer '{name}' (Embedding) is not the first layer: rnnskip "
                    "supports an Embedding only directly on the token-id input")
            w = _resolve(weights, name, entry, ["embeddings"])
            table = _f32(w["embeddings"])
            if table.ndim != 2:
                raise RnnskipError(f"layer '{name}' (Embedding): table is {table.ndim}-D")
            embedding = EmbeddingInput(table=table, mask_zero=bool(cfg.get("mask_zero", False)),
                                       name=name)
            seen_weighted = True
            continue
        if cls == "BatchNormalization":
            rank = 3 if not rnns or rnns[-1].return_sequences else 2
            if not support.batchnorm_axis_ok(cfg, rank):
                raise RnnskipError(
                    f"layer '{name}' (BatchNormalization) normalises axis {cfg.get('axis')}: "
                    "rnnskip folds BatchNormalization over the last (feature) axis into the "
                    "adjacent Dense or recurrent layer")
            bw = _resolve(weights, name, entry, support.batchnorm_roles(cfg))
            a, c = support.batchnorm_affine(cfg, bw)
            if pending_bn is not None:  # BN after BN: one affine map
                pa, pc, pname = pending_bn
                pending_bn = (pa * a, pc * a + c, pname)
                notes.append(f"folded BatchNormalization '{name}' into '{pname}'")
            elif isinstance(last, DenseLayer) and last.activation == "linear":
                support.fold_after(last, a, c)
                notes.append(f"folded BatchNormalization '{name}' into '{last.name}'")
            else:
                pending_bn = (a, c, name)
            seen_weighted = True
            continue
        if cls == "Masking":
            if seen_weighted:
                raise RnnskipError(
                    f"layer '{name}' (Masking) is not on the raw input: rnnskip "
                    "supports Masking only directly after the input")
            mask_value = float(cfg.get("mask_value", 0.0))
            continue
        if _is_rnn(entry):
            if head:
                raise _unsupported(entry, " after the Dense head")
            if len(rnns) == 2:
                raise RnnskipError(
                    f"layer '{name}' ({_display_class(entry)}) is a 3rd recurrent "
                    "layer: rnnskip converts 1 or 2 stacked recurrent layers")
            if rnns and not rnns[-1].return_sequences:
                raise RnnskipError(
                    f"layer '{rnns[-1].name}' ({cells.cell_of(rnns[-1].kind).label}) feeds '{name}' "
                    "but has return_sequences=False: the model config is inconsistent")
            rnns.append(_rnn_from(entry, weights, notes))
            pending_bn = _fold_bn(pending_bn, cells.cell_of(rnns[-1].kind).fold_input_affine, rnns[-1], name, notes)
            last = rnns[-1]
            seen_weighted = True
            continue
        if cls == "TimeDistributed" or cls == "Dense":
            if cls == "TimeDistributed":
                inner = cfg.get("layer", {})
                if _class_name(inner) != "Dense":
                    raise RnnskipError(
                        f"layer '{name}' (TimeDistributed of "
                        f"{_display_class(inner)}) is not supported: rnnskip supports "
                        "TimeDistributed(Dense) before the first RNN layer")
                dcfg = inner.get("config", {})
            else:
                dcfg = cfg
            if not rnns:
                if embedding is not None:
                    raise RnnskipError(
                        f"layer '{name}' ({cls}) between the Embedding and the RNN is "
                        "not supported: rnnskip supports a per-step Dense only on "
                        "float-feature input")
                if in_dense is not None:
                    raise RnnskipError(
                        f"layer '{name}' ({cls}) is a 2nd per-step Dense before the "
                        "RNN: rnnskip supports at most one")
                d = _dense_from(entry, dcfg, weights, name)
                d.name = name
                pending_bn = _fold_bn(pending_bn, support.fold_before_dense, d, name, notes)
                if d.activation == "softmax":
                    raise RnnskipError(
                        f"layer '{name}' ({cls}) before the RNN uses softmax: rnnskip "
                        "supports linear/relu/tanh/sigmoid there")
                in_dense = d
                last = d
                seen_weighted = True
                continue
            if cls == "TimeDistributed" and not rnns[-1].return_sequences:
                raise RnnskipError(
                    f"layer '{name}' (TimeDistributed) follows '{rnns[-1].name}', which has "
                    "return_sequences=False: the model config is inconsistent")
            if rnns[-1].return_sequences:
                per_step = True  # a Dense head on every step's output (sequence labelling)
            if head and head[-1].activation == "softmax":
                raise RnnskipError(
                    f"layer '{name}' (Dense) follows softmax layer '{head[-1].name}': "
                    "rnnskip supports softmax only on the last layer")
            d = _dense_from(entry, dcfg, weights, name)
            d.name = name
            pending_bn = _fold_bn(pending_bn, support.fold_before_dense, d, name, notes)
            head.append(d)
            last = d
            continue
        if cls == "Activation":
            act = _activation(cfg.get("activation", "linear"), name)
            if (isinstance(last, DenseLayer) and last.activation == "linear" and pending_bn is None
                    and act in SUPPORTED_DENSE_ACTIVATIONS
                    and (act != "softmax" or last is not in_dense)):
                last.activation = act
                notes.append(f"folded Activation '{name}' ({act}) into '{last.name}'")
                continue
            if act == "linear":
                notes.append(f"dropped Activation '{name}' (linear)")
                continue
            if act not in SUPPORTED_DENSE_ACTIVATIONS:
                raise RnnskipError(
                    f"layer '{name}' (Activation) uses activation='{act}': rnnskip supports "
                    f"{support.DENSE_ACTIVATIONS_TEXT} as an Activation after a linear Dense")
            raise RnnskipError(
                f"layer '{name}' (Activation '{act}') is supported only directly after "
                "a linear Dense (it is folded into it)")
        raise _unsupported(entry)

    if not rnns:
        raise RnnskipError(
            f"model '{model_name}' has no recurrent layer: {SUPPORTED_SUMMARY}")
    if pending_bn is not None:
        raise RnnskipError(
            f"layer '{pending_bn[2]}' (BatchNormalization) has no linear Dense before it and no "
            "Dense after it: rnnskip folds BatchNormalization into an adjacent Dense or recurrent layer")
    if rnns[-1].return_sequences:
        per_step = True  # return_sequences=True at the output: one output per step
    if embedding is not None:
        inp = embedding
    else:
        features = in_dense.in_dim if in_dense is not None else rnns[0].input_dim
        if shape and len(shape) == 3 and shape[2] is not None and int(shape[2]) != features:
            raise RnnskipError(
                f"model input has {shape[2]} features but the first layer expects "
                f"{features}: the file is inconsistent")
        if shape and len(shape) not in (3,):
            raise RnnskipError(
                f"model input has shape {shape}: rnnskip expects [batch, time, features] "
                "floats or [batch, time] token ids")
        inp = FeatureInput(features=int(features), dense=in_dense, mask_value=mask_value)
    if shape and len(shape) >= 2 and shape[1] is not None:
        notes.append(f"input declares a fixed length of {shape[1]} steps; rnnskip "
                     "accepts any length")

    # Chain width consistency.
    width = inp.dim
    for r in rnns:
        if r.input_dim != width:
            raise RnnskipError(
                f"layer '{r.name}' ({cells.cell_of(r.kind).label}) expects {r.input_dim} inputs but "
                f"gets {width}: the file is inconsistent")
        width = r.units
    for d in head:
        if d.in_dim != width:
            raise RnnskipError(
                f"layer '{d.name}' (Dense) expects {d.in_dim} inputs but gets {width}: "
                "the file is inconsistent")
        width = d.out_dim

    return ModelIR(input=inp, rnn_layers=rnns, head=head, name=model_name,
                   source=path, notes=notes, per_step=per_step)
