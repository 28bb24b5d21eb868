"""Stage outputs as plain data: ``NAME.json`` (structure, numbers, text) and ``NAME.npz``
(the arrays it refers to), readable without rnnskip and never executed when read.

Only dataclasses registered with :func:`stage_data` are written: each becomes a JSON object
with its module and class name under ``"__type__"`` (``rnnskip.quant.model.QModel``) and its
fields; a numpy array becomes
``{"__array__": key}`` into the ``.npz``. Lists, dicts with string keys, strings, numbers,
booleans and None are written as they are.

:func:`save` returns the content hash of what a stage wrote (the JSON text and every array's dtype,
shape and bytes): the work folder records it, so a later stage can tell whether the outputs
it was made from are still the ones on disk.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Dict, Tuple, Type

import numpy as np

from .errors import RnnskipError

FORMAT = "rnnskip-stage-2"
#: "module.Class" -> class, filled as the modules defining stage data are imported
_TYPES: Dict[str, Type] = {}


def _type_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def stage_data(cls):
    """Class decorator: ``cls`` (a dataclass) may be written into stage files."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    _TYPES[_type_name(cls)] = cls
    return cls


def _registered(name: str) -> Type:
    """The stage-data class ``name`` ("module.Class"); its module is imported first when it is one
    of rnnskip's own and not loaded yet (a step method the reading command never imported)."""
    if name not in _TYPES:
        module = name.rpartition(".")[0]
        if module.split(".")[0] == __name__.split(".")[0]:
            importlib.import_module(module)
    cls = _TYPES.get(name)
    if cls is None:
        raise KeyError(f"unknown type {name}")
    return cls


def _encode(obj, arrays: Dict[str, np.ndarray]):
    if is_dataclass(obj) and not isinstance(obj, type):
        name = _type_name(type(obj))
        if _TYPES.get(name) is not type(obj):
            raise TypeError(f"{name} is not registered as stage data")
        return {"__type__": name, **{f.name: _encode(getattr(obj, f.name), arrays) for f in fields(obj)}}
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"a dict with non-string keys cannot be stage data: {list(obj)[:3]}")
        return {k: _encode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{type(obj).__name__} cannot be stage data")


def _decode(v, arrays):
    if isinstance(v, dict):
        if "__array__" in v:
            return arrays[v["__array__"]]
        if "__type__" in v:
            cls = _registered(v["__type__"])
            return cls(**{k: _decode(x, arrays) for k, x in v.items() if k != "__type__"})
        return {k: _decode(x, arrays) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x, arrays) for x in v]
    return v


def _hash(text: str, arrays: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(text.encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def content_hash(obj) -> str:
    """The hash :func:`save` would return for ``obj`` (without writing anything)."""
    arrays: Dict[str, np.ndarray] = {}
    doc = {"format": FORMAT, "kind": "", "data": _encode(obj, arrays)}
    return _hash(json.dumps(doc, indent=1), arrays)


def paths(stem) -> Tuple[Path, Path]:
    stem = Path(stem)
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".npz")


def save(obj, stem, kind: str) -> str:
    """Write ``obj`` to ``stem.json`` and ``stem.npz`` (``kind``: what wrote it, e.g. "quantize");
    returns its content hash."""
    arrays: Dict[str, np.ndarray] = {}
    doc = {"format": FORMAT, "kind": kind, "data": _encode(obj, arrays)}
    text = json.dumps(doc, indent=1)
    jpath, npath = paths(stem)
    jpath.write_text(text)
    np.savez(npath, **arrays)
    return _hash(text, arrays)


def load(stem, kind: str, cls: Type, stage: str):
    """(object, content hash) from ``stem.json``/``.npz`` written by ``save(..., kind)``; one-line
    RnnskipError naming ``stage`` (the command that writes it) when missing or not such a file."""
    jpath, npath = paths(stem)
    again = f"run 'rnnskip {stage}' again"
    if not jpath.is_file():
        raise RnnskipError(f"{jpath} not found; run the '{stage}' stage first")
    try:
        text = jpath.read_text()
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("kind") != kind:
            raise ValueError("not a stage file")
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        obj = _decode(doc["data"], arrays)
    except FileNotFoundError:
        raise RnnskipError(f"{npath} not found ({jpath.name} refers to its arrays); {again}") from None
    except Exception:
        raise RnnskipError(f"{jpath} is not a file written by rnnskip's '{stage}' stage "
                           f"(or by another rnnskip version); {again}") from None
    if not isinstance(obj, cls):
        raise RnnskipError(f"{jpath} is not a file written by rnnskip's '{stage}' stage; {again}")
    return obj, _hash(text, arrays)
