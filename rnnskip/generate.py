"""QModel -> C sources (Jinja2 templates) + the portable kernel provider.

Python decides (array contents, sizes, which kernels); the templates hold the C.
"""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Dict, List

import jinja2
import numpy as np

from . import __version__
from .quant.model import QModel

KERNEL_PROVIDERS = ("portable", "cmsis-nn")
ACT_IDS = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3}
_CTYPES = {np.int8: "int8_t", np.int16: "int16_t", np.int32: "int32_t"}


def templates_env() -> jinja2.Environment:
    root = resources.files("rnnskip") / "firmware_templates"
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def kernel_dir() -> Path:
    return Path(str(resources.files("rnnskip") / "kernels"))


def _c_array(name: str, values: np.ndarray, dtype, doc: str) -> dict:
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    info = np.iinfo(dtype)
    assert flat.size == 0 or (flat.min() >= info.min and flat.max() <= info.max), name
    per_line = 24 if dtype == np.int8 else 12
    lines = [", ".join(map(str, flat[i:i + per_line].tolist())) for i in range(0, flat.size, per_line)]
    return {"name": name, "ctype": _CTYPES[dtype], "size": max(1, flat.size),
            "body": "    " + ",\n    ".join(lines) if lines else "    0", "doc": doc}


def _arrays(qm: QModel) -> List[dict]:
    a = []
    if qm.token_input:
        a.append(_c_array("rnnskip_embedding", qm.embedding, np.int8,
                          f"embedding [{qm.embedding.shape[0]}][{qm.in_p}], int8"))
    dense = ([("in", qm.input_dense)] if qm.input_dense is not None else []) + \
        [(f"d{j}", d) for j, d in enumerate(qm.head)]
    for p, d in dense:
        a += [_c_array(f"rnnskip_{p}_w", d.w, np.int8, f"{d.name}: weights [{d.rows}][{d.cols}]"),
              _c_array(f"rnnskip_{p}_b", d.bias, np.int32, f"{d.name}: bias on the accumulator scale"),
              _c_array(f"rnnskip_{p}_m", d.mult, np.int32, f"{d.name}: requantisation multipliers"),
              _c_array(f"rnnskip_{p}_s", d.shift, np.int32, f"{d.name}: requantisation shifts")]
    for i, l in enumerate(qm.layers):
        n = l.name
        a += [_c_array(f"rnnskip_l{i}_wx", l.wx, np.int8, f"{n}: input weights [{l.wx.shape[0]}][{l.wx.shape[1]}]"),
              _c_array(f"rnnskip_l{i}_wh", l.wh, np.int8, f"{n}: recurrent weights [{l.wh.shape[0]}][{l.wh.shape[1]}]"),
              _c_array(f"rnnskip_l{i}_bx", l.bx, np.int32, f"{n}: input-side bias"),
              _c_array(f"rnnskip_l{i}_bh", l.bh, np.int32, f"{n}: recurrent-side bias"),
              _c_array(f"rnnskip_l{i}_mx", l.mx, np.int32, f"{n}: input-side multipliers"),
              _c_array(f"rnnskip_l{i}_sx", l.shx, np.int32, f"{n}: input-side shifts"),
              _c_array(f"rnnskip_l{i}_mh", l.mh, np.int32, f"{n}: recurrent-side multipliers"),
              _c_array(f"rnnskip_l{i}_sh", l.shh, np.int32, f"{n}: recurrent-side shifts")]
    return a


def model_context(qm: QModel, max_t: int) -> Dict:
    scratch = max(l.gates * l.up for l in qm.layers)
    pre = max((4 if l.kind == "lstm" else 5) * l.up for l in qm.layers)
    head_rows = [d.rows for d in qm.head[:-1]]
    out_len = qm.head[-1].rows if qm.head else qm.layers[-1].up
    return {
        "qm": qm, "version": __version__, "act_ids": ACT_IDS, "max_t": int(max_t),
        "scratch_rows": max(scratch, pre), "out_len": out_len,
        "needs_rh": any(l.kind == "gru" and not l.reset_after for l in qm.layers),
        "max_up": max(l.up for l in qm.layers),
        "head_scratch": max(head_rows + [d.rows for d in qm.head]) if qm.head else 0,
        "arrays": _arrays(qm),
    }


MODEL_FILES = ("rnnskip_model.h", "rnnskip_model.c", "rnnskip_weights.h", "rnnskip_weights.c",
               "rnnskip_io.c", "main.c")


def generate(qm: QModel, out_dir: Path, max_t: int, kernels: str = "portable") -> List[Path]:
    """Render the model's C sources into ``out_dir`` and copy the kernel provider.

    max_t: longest sequence the I/O buffers hold. Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = templates_env()
    ctx = model_context(qm, max_t)
    written = []
    for name in MODEL_FILES:
        p = out_dir / name
        p.write_text(env.get_template(f"model/{name}.j2").render(**ctx))
        written.append(p)
    kdir = out_dir / "kernels"
    kdir.mkdir(exist_ok=True)
    for f in sorted(kernel_dir().iterdir()):
        if f.suffix in (".c", ".h"):
            shutil.copy(f, kdir / f.name)
            written.append(kdir / f.name)
    return written
