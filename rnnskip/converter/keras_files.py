"""Keras model files (``.h5`` and ``.keras``): the model config, the Keras version and the
stored weights, read with h5py / zipfile / json only.

Keras itself is never imported (Keras 3 cannot load Keras 2 ``.h5`` files, and
TensorFlow is a heavy, optional dependency).

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

import contextlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Tuple

import numpy as np

from rnnskip.converter.keras_graph import MASK_OPS, KerasLayer, model_layers
from rnnskip.errors import RnnskipError

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
#: what a damaged or foreign file raises while it is read
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, zipfile.BadZipFile,
                EOFError, UnicodeDecodeError)


@dataclass
class ModelFile:
    """An open Keras model file: its config, Keras version and weights (readable while
    the :func:`open_model_file` block runs)."""
    path: str
    format: str            # "h5" | "keras"
    config: dict           # the model: {"class_name": "Sequential", "config": {...}}
    keras_version: str
    weights: "WeightStore"


@contextlib.contextmanager
def open_model_file(path) -> Iterator[ModelFile]:
    """Open a Keras ``.h5`` / ``.keras`` file. Anything unreadable, here or while the
    block reads it, raises :class:`RnnskipError` (one line)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise RnnskipError(f"model file not found: {p}")
    if os.path.isdir(p):
        raise RnnskipError(
            f"{p} is a directory, not a model file: rnnskip reads Keras .h5 or .keras files and ONNX .onnx files "
            "(re-save a SavedModel with model.save('model.keras'))")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise RnnskipError(f"cannot read {p}: {e.strerror or e}") from None
    if not head:
        raise RnnskipError(f"{p} is empty: expected a Keras .h5 or .keras model file or an ONNX .onnx file")
    with read_errors(p):
        if head.startswith(_ZIP_MAGIC):
            opened = _open_keras_zip(p)
        elif _is_hdf5(p, head):
            opened = _open_h5(p)
        else:
            raise RnnskipError(
                f"{p} is not a Keras model file: expected an HDF5 (.h5) file or a .keras zip archive, or an ONNX "
                "file (.onnx; a PyTorch model: export it with torch.onnx.export)")
        with opened as model_file:
            yield model_file


@contextlib.contextmanager
def read_errors(path: str) -> Iterator[None]:
    """What a damaged or foreign file raises while ``path`` is read -> one line."""
    try:
        yield
    except RnnskipError:
        raise
    except READ_ERRORS as e:
        raise RnnskipError(f"cannot read {path}: {_describe(e)}") from None


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


@contextlib.contextmanager
def _open_h5(p: str) -> Iterator[ModelFile]:
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
        config = json.loads(_attr_str(f.attrs["model_config"]))
        version = _attr_str(f.attrs.get("keras_version", ""))
        if "model_weights" not in f:
            raise RnnskipError(
                f"{p} has a model config but no weights (no 'model_weights' "
                "group): save the model with model.save()")
        yield ModelFile(p, "h5", config, version, _H5LegacyWeights(f["model_weights"]))


@contextlib.contextmanager
def _open_keras_zip(p: str) -> Iterator[ModelFile]:
    import h5py
    with zipfile.ZipFile(p) as z:
        names = set(z.namelist())
        if "config.json" not in names:
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):   # torch.save's zip format
                raise RnnskipError(
                    f"{p} is a PyTorch file (torch.save), which holds Python objects, not a graph rnnskip can read: "
                    "export the model with torch.onnx.export(model.eval(), (example_x,), 'model.onnx') and pass "
                    "the .onnx file")
            if names and all(n.endswith(".npy") for n in names):   # np.savez's zip: the data, not the model
                raise RnnskipError(f"{p} is a NumPy .npz data file, not a model: give the model file (.h5, .keras or "
                                   ".onnx) first and the data with --data")
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
        yield ModelFile(p, "keras", config, version, _KerasV3Weights(f, config))


# --------------------------------------------------------------------------
# weight stores: a layer -> its stored arrays in order, each with its role

class WeightStore:
    """The weights of a file's layers. ``positional``: roles are stored by position
    (``.keras``), not by name."""

    positional = False

    def datasets(self, layer: KerasLayer) -> list:
        """``[(role, h5py.Dataset)]`` of the layer, in stored order (empty if none)."""
        raise NotImplementedError

    def shapes(self, layer: KerasLayer) -> List[Tuple[int, ...]]:
        """The shapes of the layer's stored arrays (without reading them)."""
        return [tuple(ds.shape) for _, ds in self.datasets(layer)]

    def direction(self, layer: KerasLayer, which: str) -> "WeightStore":
        """A ``Bidirectional`` wrapper's ``forward`` or ``backward`` layer's weights, as a store
        whose ``datasets`` are that direction's only."""
        return _Arrays(self._direction(layer, which), self.positional)

    def _direction(self, layer: KerasLayer, which: str) -> list:
        raise NotImplementedError

    def by_role(self, layer: KerasLayer, roles: List[str]) -> Dict[str, np.ndarray]:
        """The layer's arrays as ``roles`` (by name, else by position); one-line refusal
        when they are missing or their number differs."""
        got = [(role, np.asarray(ds)) for role, ds in self.datasets(layer)]
        if not got:
            raise RnnskipError(
                f"layer '{layer.name}' ({layer.class_name}) has no weights in the file: the file "
                "is incomplete; re-save the model with model.save()")
        if not self.positional:
            named: Dict[str, np.ndarray] = {}
            for role, arr in got:
                named.setdefault(role, arr)
            if all(r in named for r in roles):
                return {r: named[r] for r in roles}
        if len(got) != len(roles):
            raise RnnskipError(
                f"layer '{layer.name}' ({layer.class_name}) stores {len(got)} weight arrays, expected "
                f"{len(roles)} ({', '.join(roles)}): unsupported layer variant (quantized or custom?)")
        return {r: arr for r, (_, arr) in zip(roles, got)}


class _Arrays(WeightStore):
    """A fixed list of ``(role, dataset)``, whatever layer is asked for."""

    def __init__(self, arrays: list, positional: bool):
        self.arrays, self.positional = arrays, positional

    def datasets(self, layer):
        return self.arrays


def _basename_role(name: str) -> str:
    return name.split("/")[-1].split(":")[0]


class _H5LegacyWeights(WeightStore):
    """``model_weights/<layer>/`` + ``weight_names`` attr (Keras 2 and 3)."""

    def __init__(self, group):
        self.group = group

    def datasets(self, layer):
        import h5py
        if layer.name not in self.group:
            return []
        lg = self.group[layer.name]
        if "weight_names" in lg.attrs:
            names = [_attr_str(n) for n in lg.attrs["weight_names"]]
        else:  # older writers: just walk the datasets in order
            names = []
            lg.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        return [(_basename_role(n), lg[n]) for n in names]

    def _direction(self, layer, which):
        # weight names like 'bidi/forward_lstm/lstm_cell/kernel:0' (both generations)
        if layer.name not in self.group or "weight_names" not in self.group[layer.name].attrs:
            return []
        lg = self.group[layer.name]
        names = [_attr_str(n) for n in lg.attrs["weight_names"]]
        got = [(_basename_role(n), lg[n]) for n in names if any(part.startswith(f"{which}_") for part in n.split("/"))]
        if got or which != "backward":
            return got
        # an explicit backward_layer keeps its own name (Keras 3 .h5: 'bidi/lstm_1/lstm_cell/kernel'): the weights
        # under the wrapper that are not the forward layer's
        def sub(n):
            parts = n.split("/")
            return parts[parts.index(layer.name) + 1] if layer.name in parts[:-1] else ""
        others = list(dict.fromkeys(sub(n) for n in names if not sub(n).startswith("forward_")))
        return [(_basename_role(n), lg[n]) for n in names if len(others) == 1 and others[0] and sub(n) == others[0]]


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class _KerasV3Weights(WeightStore):
    """``model.weights.h5`` inside a ``.keras`` zip: vars by index."""

    positional = True

    def __init__(self, f, config):
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
        for layer in model_layers(config):
            if layer.class_name in MASK_OPS:
                continue
            key = _snake(layer.class_name)
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            self.by_key_order[layer.name] = key

    def _group_for(self, layer_name: str):
        if self.root is None:
            return None
        if layer_name in self.by_name:
            return self.by_name[layer_name]
        key = self.by_key_order.get(layer_name)
        if key is not None and key in self.root:
            return self.root[key]
        return None

    def datasets(self, layer):
        g = self._group_for(layer.name)
        out: list = []
        if g is not None:
            self._collect(g, out)
        return out

    def _direction(self, layer, which):
        g = self._group_for(layer.name)
        out: list = []
        if g is not None and f"{which}_layer" in g:
            self._collect(g[f"{which}_layer"], out)
        return out

    def _collect(self, g, out):
        import h5py
        if "vars" in g:
            vg = g["vars"]
            idx = sorted((k for k in vg if isinstance(vg[k], h5py.Dataset)),
                         key=lambda k: int(k) if k.isdigit() else 1 << 30)
            for k in idx:
                out.append((k, vg[k]))
        for k in sorted(g):
            if k != "vars" and isinstance(g[k], h5py.Group):
                self._collect(g[k], out)
