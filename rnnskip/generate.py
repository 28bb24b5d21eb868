"""QModel -> C sources (Jinja2 templates) + the portable kernel provider.

Python decides (array contents, sizes, which kernels); the templates hold the C. A
recurrent layer's code is its cell's macros (``rnnskip/cells/<kind>.c.j2``: how its
accumulators are filled, then the cell kernel on them), unless a step method fills the
accumulators itself (a delta network's running sums); step methods add their own state,
definitions and code before the layers (``firmware_templates/model/<method>.c.j2``).
"""
from __future__ import annotations

import hashlib
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Dict, List

import jinja2
import numpy as np

from . import __version__
from .cells import CELL_DIR, CELLS, cell_of
from .cells.base import interleaved_mults, plane_shift
from .converter.ir import front_frames
from .errors import RnnskipError
from .quant.act import ACT_IDS
from .quant.golden import initial_outputs
from .quant.model import QConv, QModel

KERNEL_PROVIDERS = ("portable", "naive", "cmsis-nn")
_CTYPES = {np.int8: "int8_t", np.int16: "int16_t", np.int32: "int32_t", np.uint32: "uint32_t"}


def act_enum(name: str) -> str:
    """The C id of an activation (RNNSKIP_ACT_* of rnnskip_kernels.h)."""
    if name not in ACT_IDS:
        raise RnnskipError(f"activation '{name}' has no int8 kernel; rnnskip implements {', '.join(ACT_IDS)}")
    return f"RNNSKIP_ACT_{name.upper()}"


#: the column limit of the generated C (.clang-format's)
C_COLUMNS = 120


def c_call(fn: str, *args, indent: int = 4, end: str = ";") -> str:
    """One C call laid out as clang-format lays it out with the project's style: on one line
    when it fits in C_COLUMNS, else one argument per line aligned after the parenthesis."""
    args = [str(a) for a in args]
    pad = " " * indent
    one = f"{pad}{fn}({', '.join(args)}){end}"
    if len(one) <= C_COLUMNS:
        return one
    sep = ",\n" + " " * (indent + len(fn) + 1)
    return f"{pad}{fn}({sep.join(args)}){end}"


def templates_env() -> jinja2.Environment:
    root = resources.files("rnnskip") / "firmware_templates"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(root), str(CELL_DIR)]), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.globals.update(act=act_enum, shift=plane_shift, cell=cell_of, call=c_call,
                       candidate_q=lambda l: cell_of(l.kind).candidate_q(l))
    env.filters["rstrip"] = lambda s: str(s).rstrip()   # a macro's C without its last newline
    return env


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


#: kernel provider -> (weight layout of the recurrent matrices, mat-vec function)
PROVIDERS = {
    "portable": ("paired", "rnnskip_mat_vec_paired_s8"),
    "naive": ("rowmajor", "rnnskip_mat_vec_acc_s8_naive"),
    "cmsis-nn": ("rowmajor", "rnnskip_mat_vec_acc_s8"),
}


def tap_major(w: np.ndarray, taps: int) -> np.ndarray:
    """A Conv1D's weights ``[cout_p, taps * cin_p]`` (the golden model's Dense on the window) as
    ``rnnskip_conv1d_acc_s8`` reads them: ``[taps, cout_p, cin_p]``, each tap's row-major matrix
    contiguous for ``rnnskip_mat_vec_acc_s8``. The same bytes, reordered: no padding."""
    rows, cols = w.shape
    return np.asarray(w).reshape(rows, taps, cols // taps).transpose(1, 0, 2)


def _mat_arrays(prefix: str, m, what: str, layout: str, mults: bool = True, taps: int = 1) -> List[dict]:
    if layout == "paired":
        from .quant.layout import pack_paired
        w = _c_array(f"{prefix}_w", pack_paired(m.w), np.int16,
                     f"{what}: weights [{m.rows}][{m.cols}], row pairs packed as int16 256*w[2p+1]+w[2p]")
    elif layout == "tapmajor":
        per_tap = (f"[{taps}][{m.rows}], tap-major: per tap one weight per output channel" if m.cols == taps else
                   f"[{taps}][{m.rows}][{m.cols // taps}], tap-major: per tap a row-major [cout][cin] matrix")
        w = _c_array(f"{prefix}_w", tap_major(m.w, taps), np.int8, f"{what}: weights {per_tap}")
    else:
        w = _c_array(f"{prefix}_w", m.w, np.int8, f"{what}: weights [{m.rows}][{m.cols}], row-major")
    out = [w, _c_array(f"{prefix}_b", m.bias, np.int32, f"{what}: bias on the accumulator scale")]
    if mults:
        out.append(_c_array(f"{prefix}_m", m.mult, np.int32, f"{what}: requantisation multipliers (left shift {m.ls})"))
    return out


def _arrays(qm: QModel, layout: str) -> List[dict]:
    a = []
    if qm.token_input:
        a.append(_c_array("rnnskip_embedding", qm.embedding, np.int8,
                          f"embedding [{qm.embedding.shape[0]}][{qm.in_p}], int8"))
    # Dense layers always row-major int8 (rnnskip_fully_connected_s8), Conv1D and DepthwiseConv1D tap-major
    # (rnnskip_conv1d_s8, rnnskip_depthwise_conv1d_s8)
    dense = ([("in", qm.input_dense, 0)] if qm.input_dense is not None else []) + \
        [(f"f{j}", f.dense, f.taps) for j, f in enumerate(qm.front) if isinstance(f, QConv)] + \
        [(f"d{j}", d, 0) for j, d in enumerate(qm.head)]
    for p, d, taps in dense:
        a += _mat_arrays(f"rnnskip_{p}", d.mat, d.name, "tapmajor" if taps else "rowmajor", taps=taps or 1)
    for i, l in enumerate(qm.layers):
        # a step method that fills the accumulators itself keeps its own copy of the weights
        if not any(m.c_accumulators(qm, i) is not None for m in qm.methods):
            for b in l.blocks:
                a += _mat_arrays(f"rnnskip_l{i}_{b.name}", b, f"{l.name} {b.name}", layout, mults=False)
        a.append(_c_array(f"rnnskip_l{i}_mi", interleaved_mults(l), np.int32,
                          f"{l.name}: requantisation multipliers of its {l.planes} accumulator planes, "
                          f"interleaved per unit"))
    for m in qm.methods:
        a += [_c_array(*arr) for arr in m.c_arrays(qm)]
    return a


def header_guard(qm: QModel, what: str) -> str:
    """The include guard of a generated header (``what``: MODEL, WEIGHTS, PREFIX), per --prefix so two
    models' headers do not mask each other, in the RNNSKIP_ namespace an application does not use."""
    return f"RNNSKIP_{what}_H" if qm.c_prefix == "rnnskip" else f"RNNSKIP_{what}_{qm.c_prefix.upper()}_H"


def weights_id(arrays) -> str:
    """A fingerprint of the generated arrays (names, types, values) as a C literal: rnnskip_weights.h
    defines it and rnnskip_model.c and rnnskip_weights.c check it, so files of two conversions do not
    compile together."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a['name']}:{a['ctype']}:{a['size']}:{a['body']};".encode())
    return f"0x{h.hexdigest()[:8]}u"


def weights_bytes(qm: QModel, kernels: str = "portable") -> int:
    """Bytes of the model's constant arrays as :func:`generate` writes them (weights, biases,
    multipliers, the step methods' arrays; not the activation tables): one copy of the weights,
    whichever layout holds it. What the fit check counts and what the report calls the weights."""
    size = {"int8_t": 1, "int16_t": 2, "int32_t": 4, "uint32_t": 4}
    return int(sum(a["size"] * size[a["ctype"]] for a in _arrays(qm, PROVIDERS[kernels][0])))


def _f32_literal(v) -> str:
    """A C float literal that reads back as exactly float32(v)."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise RnnskipError(f"cannot write {v!r} as a finite C float")
    t = f"{f:.9g}"
    return (t if any(c in t for c in ".en") else t + ".0") + "f"


def _feature_literals(qm: QModel) -> Dict:
    """Float features -> int8 on the device: the factor and the Masking value as float32 literals."""
    if qm.token_input:
        return {}
    from .quant.golden import feature_inv_scale
    offsets = qm.feature_offsets
    return {"feature_inv_scale": [_f32_literal(v) for v in feature_inv_scale(qm)],
            "feature_offset": None if offsets is None else [_f32_literal(v) for v in np.asarray(offsets, np.float32)],
            "mask_value_f": _f32_literal(qm.mask_value) if qm.mask_value is not None else None}


def tables_used(qm: QModel) -> list:
    """The activation tables the generated C of ``qm`` reads (the linker keeps only these)."""
    from .quant.act import LUTS
    acts = [a for l in qm.layers for a in cell_of(l.kind).activations(l)]
    acts += [d.activation for d in ([qm.input_dense] if qm.input_dense is not None else []) + list(qm.head[:-1])]
    acts += [f.dense.activation for f in qm.front if isinstance(f, QConv)]
    return [a for a in LUTS if a in acts]


def _macro(env, template: str, name: str):
    return getattr(env.get_template(template).module, name, None)


HOOKS = ("state", "definitions", "init", "before_layers", "step_doc")


def _code(env, qm: QModel):
    """(step-method hooks {hook: [C code]}, per layer {"accumulate": C code, "cells": C code}) for ``qm``."""
    hooks: Dict[str, List[str]] = {h: [] for h in HOOKS}
    ctxs = [(m, m.c_context(qm)) for m in qm.methods]
    for m, ctx in ctxs:
        for h in HOOKS:
            mac = _macro(env, m.template, h)
            if mac is not None:
                hooks[h].append(str(mac(qm, ctx)).rstrip())
    layers = []
    for i, l in enumerate(qm.layers):
        cell = cell_of(l.kind)
        acc, code = "s->acc", None
        for m, ctx in ctxs:
            ptr = m.c_accumulators(qm, i)
            if ptr is not None:
                acc, code = ptr, str(_macro(env, m.template, "accumulate")(qm, ctx, l, i))
                break
        if code is None:
            own = _macro(env, cell.template, "accumulate")
            code = str(own(l, i, acc)) if own is not None else \
                str(_macro(env, "model/blocks.c.j2", "mat_vecs")(l, i, f"s->xh{i}", acc))
        cell_code = ""
        for m, ctx in ctxs:
            mac = _macro(env, m.template, "cell")
            if mac is not None:
                cell_code = str(mac(qm, ctx, l, i, acc, _macro(env, cell.template, "unit"))).strip("\n")
                if cell_code.strip():
                    break
        if not cell_code.strip():
            cell_code = str(_macro(env, cell.template, "cell")(l, i, acc))
        layers.append({"accumulate": code.rstrip(), "cells": cell_code.rstrip()})
    return hooks, layers


def model_context(qm: QModel, max_t: int, kernels: str = "portable", env=None) -> Dict:
    layout, matvec_fn = PROVIDERS[kernels]
    env = env or templates_env()
    head_rows = [d.rows for d in qm.head]
    hooks, layer_code = _code(env, qm)
    arrays = _arrays(qm, layout)
    headers = sorted({cell_of(l.kind).c_header for l in qm.layers})
    headers += [h for m in qm.methods for h in m.c_headers if h not in headers]
    return {
        "qm": qm, "version": __version__, "max_t": int(max_t), "hooks": hooks, "layer_code": layer_code,
        "bidi_max_t": bidi_steps(qm, max_t),
        # rnnskip_class(): a classifier's head, or several linear outputs (a Keras classifier trained from_logits)
        "has_class": qm.output_activation != "linear" or qm.output_dim > 1,
        "headers": headers, "kernels": kernels, "layout": layout, "matvec_fn": matvec_fn,
        "wtype": "int16_t" if layout == "paired" else "int8_t",
        "acc_rows": max(l.acc_rows for l in qm.layers),
        # per layer whose output before a row's first step is not zeros (a per-step Dense): that output
        "initial_outputs": {i: [int(v) for v in h] for i, h in initial_outputs(qm).items()},
        "out_len": qm.out_len,
        **bidi_context(qm),
        "head_scratch": max(head_rows) if head_rows else 0,
        "norm_len": max((d.cols for d in qm.head if d.norm is not None), default=0),
        **_feature_literals(qm), "output_scale_f": _f32_literal(qm.output_scale),
        "arrays": arrays, "weights_id": weights_id(arrays), "kernels_id": kernels_id(kernel_files(kernels)),
        "guard": {w: header_guard(qm, w) for w in ("MODEL", "WEIGHTS")}, "selftest_n": 0,
        **_front_context(qm), **_pool_context(qm),
    }


def bidi_steps(qm: QModel, max_t: int) -> int:
    """The steps a Bidirectional layer's window buffer holds for windows of ``max_t`` input steps: the frames a
    Conv1D front end emits for them (``ir.front_frames``), else ``max_t``."""
    return max(1, front_frames(qm.front, max_t)) if qm.front else int(max_t)


def bidi_context(qm: QModel) -> Dict:
    """Bidirectional layers: the first one's forward direction's index (None: none), the layers that run per step,
    whether layers follow the last one, and per Bidirectional layer (``bidi_stages``, in order) what its
    ``rnnskip_finish`` code needs: its directions' indices, the buffers of its input and (merged) output per step,
    the layers run in time order before it (after the first), the bytes of its forward output that start its merged
    output."""
    bidis = qm.bidis
    if not bidis:
        return {"bidi": None, "bidi_later": False, "streamed": len(qm.layers), "bidi_stages": []}
    later = bidis[-1] + 2 < len(qm.layers)
    stages = []
    for j, f in enumerate(bidis):
        fl = qm.layers[f]
        tag = "" if j == 0 else str(j + 1)
        lo = f if j == 0 else bidis[j - 1] + 2   # the first layer of its time-order pass (j > 0)
        last = j == len(bidis) - 1
        st = {"j": j, "f": f, "b": f + 1, "lo": lo, "fl": fl, "tag": tag, "last": last,
              # its merged output kept per step: read by the next Bidirectional or the later layers, the per-step
              # head or the pooling
              "seq": not last or later or qm.per_step or bool(qm.pool),
              "fwd_len": fl.units if fl.merge_mode == "concat" else fl.up,
              "y": f"bidi{tag}_y"}
        # its input per step: buffered, or (right after the previous Bidirectional) that one's merged outputs
        st["own_x"] = j == 0 or f > lo
        st["x"] = f"bidi{tag}_x" if st["own_x"] else stages[-1]["y"]
        stages.append(st)
    return {"bidi": bidis[0], "bidi_later": later, "streamed": bidis[0] + 1, "bidi_stages": stages,
            "bidi_step_len": qm.layers[-1].up if later else qm.layers[bidis[-1]].merge_p}   # rnnskip_output_step


def _pool_context(qm: QModel) -> Dict:
    """Pooling over time: the width pooled, where the last layer's int8 output is, which path pools (the plain step
    wraps its body; a front end's recurrent call and a Bidirectional's rnnskip_finish pool themselves)."""
    last, i = qm.layers[-1], len(qm.layers) - 1
    from .converter.ir import POOL_CLASSES, POOL_WORDS
    return {"pool_classes": POOL_CLASSES, "pool_words": POOL_WORDS.get(qm.pool, ""),
            "pool_w": qm.out_width,   # one kind's accumulators; pool_len of each kind's result goes to the head
            "pool_len": qm.out_width if len(qm.pool_kinds) <= 1 else qm.pool_real,
            "last_out": f"s->xh{i} + {last.in_p}",
            "plain_pool": bool(qm.pool) and not qm.front and qm.bidi is None}


def finish_pending(qm: QModel) -> bool:
    """rnnskip_finish has work at the end of a window (a Bidirectional layer's backward direction, a 'same' front
    end's padding frames): the state then records that it ran, so a second call does nothing."""
    return qm.bidi is not None or any(f.right for f in qm.front)


def _front_context(qm: QModel) -> Dict:
    """Sizes of the streamed front end: the Conv1D accumulators, the layers flushed at the end, the padding
    frames that are not zeros (a normalisation folded into a padded Conv1D)."""
    flush = [(i, f) for i, f in enumerate(qm.front) if f.right]
    pads = {i: [int(v) for v in f.pad] for i, f in enumerate(qm.front)   # all zeros (a centred input): as none
            if getattr(f, "pad", None) is not None and np.any(f.pad)}
    return {"finish_pending": finish_pending(qm),
            "front_acc": max([f.cout_p for f in qm.front if isinstance(f, QConv)], default=0),
            "front_flush": flush, "front_flush_len": max([f.cin_p for _, f in flush], default=0),
            "front_pads": pads}


SELFTEST_FILE = "rnnskip_selftest.c"
MODEL_FILES = ("rnnskip_model.h", "rnnskip_model.c", "rnnskip_weights.h", "rnnskip_weights.c",
               "rnnskip_io.c", "main.c")


def generate(qm: QModel, out_dir: Path, max_t: int, kernels: str = "portable", selftest=None) -> List[Path]:
    """Render the model's C sources into ``out_dir`` and copy the kernel provider and the
    cells' kernels into ``out_dir/kernels``.

    max_t: longest sequence the I/O buffers hold. selftest: a :class:`rnnskip.selftest.SelfTest`
    (``rnnskip_selftest.c`` and its declaration) or None. Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = templates_env()
    ctx = model_context(qm, max_t, kernels, env)
    names = list(MODEL_FILES)
    if selftest is not None:
        from .selftest import context as selftest_context
        ctx.update(selftest_context(selftest))
        names.append(SELFTEST_FILE)
    elif (out_dir / SELFTEST_FILE).exists():   # an earlier --selftest's vectors: stale, and would not compile
        (out_dir / SELFTEST_FILE).unlink()
    written = []
    for name in names:
        p = out_dir / name
        p.write_text(env.get_template(f"model/{name}.j2").render(**ctx))
        written.append(p)
    kdir = out_dir / "kernels"
    kdir.mkdir(exist_ok=True)
    files = kernel_files(kernels)
    keep = {f.name for f in files}
    for k in KERNEL_PROVIDERS:   # another provider's kernels from an earlier run: stale, and would not link
        for f in kernel_files(k):
            if f.name not in keep and (kdir / f.name).exists():
                (kdir / f.name).unlink()
    for f in files:
        shutil.copy(f, kdir / f.name)
        written.append(kdir / f.name)
    written.append(_write_kernels_id(kdir, ctx["kernels_id"]))
    if qm.c_prefix != "rnnskip":
        written.append(_write_prefix_header(qm, out_dir, files))
    return written


KERNELS_ID_HEADER = "rnnskip_kernels_id.h"


def kernel_files(kernels: str = "portable") -> List[Path]:
    """The files of kernels/: the provider's kernels and the cells' headers."""
    files = [f for f in sorted(kernel_dir().iterdir()) if f.suffix in (".c", ".h")]
    files += [CELL_DIR / h for h in sorted({c.c_header for c in CELLS.values()})]
    if kernels == "cmsis-nn":  # CMSIS-NN does the mat-vec; the rest stays portable
        files = [f for f in files if f.name != "rnnskip_mat_vec_s8.c"]
        files += sorted((kernel_dir() / "cmsis_nn").glob("*.c"))
    return files


def kernels_id(files) -> str:
    """C literal naming a kernel set: sha256 over the files' names and contents (8 hex digits)."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: Path(f).name):
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes())
    return f"0x{h.hexdigest()[:8]}u"


def _write_kernels_id(kdir: Path, kid: str) -> Path:
    """kernels/rnnskip_kernels_id.h: which kernel set this folder holds. Every model's C checks it, so a
    kernels/ folder shared by several models (README: compile one copy) that comes from another rnnskip
    version or kernel provider is a compile error, not a silent mismatch."""
    p = kdir / KERNELS_ID_HEADER
    p.write_text("/* Generated by rnnskip; do not edit. The kernel set in this folder (rnnskip/generate.py "
                 "kernels_id). */\n"
                 "#ifndef RNNSKIP_KERNELS_ID\n"
                 f"#define RNNSKIP_KERNELS_ID {kid}\n"
                 "#endif\n")
    return p


#: names of the emulation harness (rnnskip_io.c, startup.c) the emulators call by name: never prefixed
HARNESS_NAMES = re.compile(r"rnnskip_io_\w+|rnnskip_copy_weights")
_C_NOISE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', re.S)


def c_identifiers(text: str, prefix: str = "rnnskip_") -> set:
    """The identifiers starting with ``prefix`` in C ``text``, comments and string literals left out."""
    return set(re.findall(rf"\b{prefix}\w+", _C_NOISE.sub(" ", text)))


def check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,23}", prefix or "") or prefix.endswith("_") or \
            (prefix != "rnnskip" and prefix.startswith("rnnskip")) or prefix == "arm" or prefix.startswith("arm_"):
        raise RnnskipError(f"--prefix '{prefix}': give a short lowercase C name (letters, digits, '_'; e.g. kws) "
                           f"other than rnnskip_* and arm_* (the kernels' and CMSIS-NN's); the model's C names "
                           f"become <prefix>_init, <prefix>_step ...")
    return prefix


def _write_prefix_header(qm: QModel, out_dir: Path, kernel_files) -> Path:
    """rnnskip_prefix.h: every external name the model's own files define, renamed to ``qm.c_prefix``
    for the preprocessor, so the compiled symbols of two models differ. The kernels' names stay (one copy
    of the kernels serves every model of one rnnskip version), and so do the harness's."""
    names = set()
    for name in ("rnnskip_model.h", "rnnskip_model.c", "rnnskip_weights.h", "rnnskip_weights.c"):
        names |= c_identifiers((out_dir / name).read_text())
    shared = set()
    for f in kernel_files:
        shared |= c_identifiers(Path(f).read_text())
    names = sorted(n for n in names - shared if not HARNESS_NAMES.fullmatch(n))
    lines = [f"/* Generated by rnnskip; do not edit. This model's external C names with the prefix {qm.c_prefix}_",
             f" * (rnnskip-convert --prefix {qm.c_prefix}): rnnskip_init is {qm.c_prefix}_init, and so on, so models",
             " * with different prefixes link into one image (compile one copy of kernels/ for them all). Include",
             " * each model's rnnskip_model.h from its own source file: the RNNSKIP_* macros keep their names. */",
             f"#ifndef {header_guard(qm, 'PREFIX')}", f"#define {header_guard(qm, 'PREFIX')}"]
    lines += [f"#define {n} {qm.c_name(n)}" for n in names]
    lines += ["#endif", ""]
    path = out_dir / "rnnskip_prefix.h"
    path.write_text("\n".join(lines))
    return path
