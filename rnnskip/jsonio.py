"""JSON that every parser reads: NaN and infinities become null (Python's json
writes them as bare NaN/Infinity, which JavaScript and most other parsers reject);
numpy scalars and arrays become numbers and lists."""
from __future__ import annotations

import json
import math

import numpy as np


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(float(o)) else None
    if o is None or isinstance(o, str):
        return o
    return str(o)


def dumps(obj, indent: int = 2) -> str:
    """Strict JSON text of ``obj`` (no NaN/Infinity tokens), ending with a newline."""
    return json.dumps(_clean(obj), indent=indent, allow_nan=False) + "\n"
