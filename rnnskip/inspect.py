"""``rnnskip inspect model.h5``: what is in a Keras file and whether rnnskip converts it,
before any work (no calibration data, no compiler).

The verdict is the converter's own: the file is imported exactly as ``rnnskip-convert``
imports it and quantised with placeholder ranges (ranges change scales, never
whether a model quantises), so "converts" here means the conversion gets past
every model check. Besides the first blocking reason, every layer is checked on its
own so all blockers are listed at once.

Sizes: parameters and MACs per time step from the weights; int8 flash (weights,
tables, the target's code allowance) and RAM (state, I/O buffers for ``max_t``
steps, stack) from ``rnnskip.targets.fit.estimate`` for every target.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .cells import cell_of
from .converter import keras_import as K
from .converter import support
from .errors import RnnskipError


@dataclass
class LayerInfo:
    name: str
    cls: str
    params: int
    config: str = ""     # the options that matter to rnnskip, e.g. "units=32, activation=relu"
    status: str = ""     # converted | dropped | folded | refused: reason


@dataclass
class Inspection:
    path: str
    format: str = ""
    keras_version: str = ""
    generation: str = ""
    model: str = ""
    layers: List[LayerInfo] = field(default_factory=list)
    converts: bool = False
    blockers: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    params: int = 0
    macs_per_step: Optional[int] = None
    head_macs: Optional[int] = None
    per_step_outputs: bool = False
    max_t: int = 64
    targets: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------
# raw file contents (config, version, weight shapes per layer)

def _raw(path: str):
    """(format, config, keras_version, {layer name: [(role, shape)]})."""
    import h5py
    p = os.fspath(path)
    K.parse_model_file  # noqa: B018 - same entry checks as the importer below
    if not os.path.isfile(p):
        raise RnnskipError(f"model file not found: {p}")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(K._ZIP_MAGIC):
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            if "config.json" not in names or "model.weights.h5" not in names:
                raise RnnskipError(f"{p} is not a Keras .keras model (config.json or model.weights.h5 missing)")
            config = json.loads(z.read("config.json").decode("utf-8"))
            version = ""
            if "metadata.json" in names:
                version = str(json.loads(z.read("metadata.json").decode("utf-8")).get("keras_version", ""))
            blob = io.BytesIO(z.read("model.weights.h5"))
        with h5py.File(blob, "r") as f:
            store = K._KerasV3Weights(f, config)
            shapes = _shapes(config, store)
        return "keras", config, version, shapes
    if not K._is_hdf5(p, head):
        raise RnnskipError(f"{p} is not a Keras model file: expected an HDF5 (.h5) file or a .keras zip archive")
    with h5py.File(p, "r") as f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise RnnskipError(f"{p} is an HDF5 file without a Keras model config and weights")
        config = json.loads(K._attr_str(f.attrs["model_config"]))
        version = K._attr_str(f.attrs.get("keras_version", ""))
        shapes = _shapes(config, K._H5LegacyWeights(f["model_weights"]))
    return "h5", config, version, shapes


def _shapes(config: dict, store) -> Dict[str, list]:
    out = {}
    for entry in K._layer_list(config.get("config", {})):
        name = K._layer_name(entry)
        try:
            out[name] = [(r, tuple(np.shape(a))) for r, a in store.get(name, entry)]
        except Exception:  # a damaged group: no shapes
            out[name] = []
    return out


# --------------------------------------------------------------------------
# per-layer view

def _layer_config(entry: dict) -> str:
    cls = K._class_name(entry)
    cfg = entry.get("config", {}) or {}
    if cls == "TimeDistributed":
        cfg = (cfg.get("layer") or {}).get("config", {}) or {}
    if cls == "RNN" and isinstance(cfg.get("cell"), dict):
        cfg = dict(cfg, **(cfg["cell"].get("config", {}) or {}))
    parts = []
    for k in ("units", "output_dim", "input_dim", "rate", "mask_value", "mask_zero"):
        if k in cfg and cfg[k] not in (None, False):
            parts.append(f"{k}={cfg[k]}")
    for k in ("activation", "recurrent_activation"):
        if k in cfg:
            parts.append(f"{k}={K._activation(cfg[k], '')}")
    for k in ("return_sequences", "stateful", "go_backwards"):
        if cfg.get(k):
            parts.append(f"{k}=True")
    if "reset_after" in cfg:
        parts.append(f"reset_after={cfg['reset_after']}")
    if cfg.get("use_bias") is False:
        parts.append("use_bias=False")
    return ", ".join(parts)


def _display(entry: dict) -> str:
    cls = K._display_class(entry)
    if cls == "TimeDistributed":
        inner = (entry.get("config", {}) or {}).get("layer") or {}
        return f"TimeDistributed({K._display_class(inner)})"
    return cls


def _status(entry: dict, ir, names_kept: set) -> str:
    cls = K._class_name(entry)
    name = K._layer_name(entry)
    if cls == "InputLayer":
        return "input"
    if cls in K._NOOP_LAYERS:
        return "dropped (inference no-op)"
    if ir is not None:
        for n in ir.notes:  # "folded <cls> '<name>' into '<target>'", "dropped <cls> '<name>' (...)"
            quoted = n.split("'")[1::2]
            if quoted and quoted[0] == name and n.startswith(("folded", "dropped")):
                return n.split(" (")[0] if n.startswith("dropped") else "folded into " + f"'{quoted[-1]}'"
        if name in names_kept:
            return "converted"
        if cls == "Masking":
            return "converted (masking)"
    return ""


def _layer_problems(entry: dict, version: str) -> List[str]:
    """Reasons one layer alone cannot convert (independent of the others)."""
    cls = K._class_name(entry)
    name = K._layer_name(entry)
    cfg = entry.get("config", {}) or {}
    if cls in K._MASK_OPS:
        return []
    if not K._known_class(entry) and cls not in K._MODEL_CLASSES:
        return [str(K._unsupported(entry))]
    out = []
    if K._is_rnn(entry):
        c = dict(cfg)
        if cls == "RNN" and isinstance(cfg.get("cell"), dict):
            c.update(cfg["cell"].get("config", {}) or {})
        for flag in ("stateful", "go_backwards", "time_major", "return_state"):
            if c.get(flag):
                out.append(f"layer '{name}' ({K._display_class(entry)}) has {flag}=True, which is not supported")
        for k, default, ok, text in (
                ("activation", "tanh", support.RNN_ACTIVATIONS, support.RNN_ACTIVATIONS_TEXT),
                ("recurrent_activation", "sigmoid", support.RNN_RECURRENT_ACTIVATIONS,
                 support.RNN_RECURRENT_ACTIVATIONS_TEXT)):
            act = K._activation(c.get(k, default), name)
            if act not in ok:
                out.append(f"layer '{name}' ({K._display_class(entry)}) uses {k}='{act}': rnnskip "
                           f"supports {k} {text} in LSTM/GRU layers")
    dcfg = None
    if cls == "Dense":
        dcfg = cfg
    elif cls == "TimeDistributed":
        inner = cfg.get("layer") or {}
        if K._class_name(inner) == "Dense":
            dcfg = inner.get("config", {}) or {}
    if dcfg is not None or cls == "Activation":
        act = K._activation((dcfg or cfg).get("activation", "linear"), name)
        if act not in K.SUPPORTED_DENSE_ACTIVATIONS:
            out.append(f"layer '{name}' ({K._display_class(entry)}) uses activation='{act}': rnnskip "
                       f"supports {support.DENSE_ACTIVATIONS_TEXT}")
    return out


# --------------------------------------------------------------------------
# the inspection

def _placeholder_ranges(ir):
    from .quant.calibrate import Ranges
    return Ranges(features=1.0, input_dense=1.0, states=[{k: 1.0 for k in cell_of(l.kind).float_state} for l in ir.rnn_layers],
                  head=[1.0] * len(ir.head), sequences=0)


def inspect_file(path, max_t: Optional[int] = None, target_names: Optional[List[str]] = None) -> Inspection:
    """Inspect ``path``; never raises for a bad model (problems go to ``blockers``)."""
    ins = Inspection(path=os.fspath(path))
    if not os.path.exists(ins.path):
        raise RnnskipError(f"model file not found: {ins.path}")
    try:
        fmt, config, version, shapes = _raw(ins.path)
    except RnnskipError as e:
        ins.blockers.append(str(e))
        return ins
    except Exception as e:  # unreadable: the importer says why
        try:
            K.parse_model_file(ins.path)
        except RnnskipError as e2:
            ins.blockers.append(str(e2))
        else:
            ins.blockers.append(f"cannot read {ins.path}: {type(e).__name__}")
        return ins
    ins.format, ins.keras_version = fmt, version
    ins.generation = support.generation(version)
    cfg = config.get("config", {}) if isinstance(config, dict) else {}
    ins.model = str(cfg.get("name", "model")) if isinstance(cfg, dict) else "model"

    # the converter's verdict
    ir = qm = None
    try:
        ir = K.load_model_file(ins.path)
        from .quant.quantize import quantize
        qm = quantize(ir, _placeholder_ranges(ir))
    except RnnskipError as e:
        ins.blockers.append(str(e))
    ins.converts = qm is not None

    try:
        chain, _ = K._linear_chain(config)
    except RnnskipError:
        chain = K._layer_list(cfg)
    kept = set()
    if ir is not None:
        kept = {r.name for r in ir.rnn_layers} | {d.name for d in ir.head}
        kept |= {getattr(ir.input, "name", "")} if ir.is_token_model else set()
        if getattr(ir.input, "dense", None) is not None:
            kept.add(ir.input.dense.name)
    for entry in chain:
        if K._class_name(entry) in K._MASK_OPS:
            continue
        name = K._layer_name(entry)
        problems = _layer_problems(entry, version)
        status = _status(entry, ir, kept)
        if not problems and not ins.converts and ins.blockers and f"layer '{name}'" in ins.blockers[0]:
            status = "refused: " + ins.blockers[0]
        if problems:
            status = "refused: " + problems[0]
            for pr in problems:
                if not any(pr.split(":")[0] in b for b in ins.blockers):
                    ins.blockers.append(pr)
        ins.layers.append(LayerInfo(name=name, cls=_display(entry),
                                    params=int(sum(int(np.prod(s)) for _, s in shapes.get(name, []))),
                                    config=_layer_config(entry), status=status))
    ins.params = sum(l.params for l in ins.layers)
    if ins.blockers and ins.converts:  # a per-layer problem the converter does not see: trust the converter
        ins.blockers = []

    if ir is not None:
        ins.notes = list(ir.notes)
        ins.params = ir.params()
        ins.per_step_outputs = bool(getattr(ir, "per_step", False))
        ins.macs_per_step = ir.macs_per_step() + (ir.head_macs() if ins.per_step_outputs else 0)
        ins.head_macs = ir.head_macs()
    if qm is not None:
        ins.max_t = int(max_t or 64)
        _target_estimates(ins, qm, target_names)
    return ins


def _target_estimates(ins: Inspection, qm, names) -> None:
    from . import targets
    from .targets.fit import estimate
    for name in names or targets.available():
        t = targets.load(name)
        est = estimate(qm, ins.max_t, t)
        ins.targets.append({"target": t.name, "flash_bytes": int(est.flash), "ram_bytes": int(est.ram),
                            "weights_bytes": int(est.weights), "flash_capacity": int(t.flash_size),
                            "ram_capacity": int(t.ram_size),
                            "fits": bool(est.flash <= t.flash_size and est.ram <= t.ram_size)})


# --------------------------------------------------------------------------
# text

def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def format_text(ins: Inspection) -> str:
    lines = [f"{ins.path}", f"  format {ins.format or '?'}, written by {ins.generation or '?'}; model '{ins.model}'"]
    if ins.layers:
        w = [max(len(x) for x in col) for col in zip(*[(l.name, l.cls, f"{l.params:,}") for l in ins.layers],
                                                      ("layer", "class", "params"))]
        lines.append(f"  {'layer':<{w[0]}}  {'class':<{w[1]}}  {'params':>{w[2]}}  options / rnnskip")
        for l in ins.layers:
            opt = l.config + (" | " if l.config and l.status else "") + l.status
            lines.append(f"  {l.name:<{w[0]}}  {l.cls:<{w[1]}}  {l.params:>{w[2]},}  {opt}")
    raw = sum(l.params for l in ins.layers)
    lines.append(f"  parameters {ins.params:,}" + (f" after folding ({raw:,} in the file)" if raw != ins.params else "")
                 + (f", {ins.macs_per_step:,} MAC per time step" if ins.macs_per_step is not None else "")
                 + (f" (head included: one output per step)" if ins.per_step_outputs else
                    (f" + {ins.head_macs:,} MAC head" if ins.head_macs else "")))
    for n in ins.notes:
        lines.append(f"  note: {n}")
    if ins.converts:
        lines.append("  converts: yes")
        lines.append(f"  int8 estimate per target (flash: weights, tables, code allowance; RAM: state, I/O buffers "
                     f"for {ins.max_t} steps and the target's stack reservation - report.json's ram_bytes is the "
                     f"static part only):")
        for t in ins.targets:
            lines.append(f"    {t['target']:<14} flash {_kib(t['flash_bytes']):>10} of {_kib(t['flash_capacity']):>10}"
                         f"   RAM {_kib(t['ram_bytes']):>9} of {_kib(t['ram_capacity']):>9}   "
                         f"{'fits' if t['fits'] else 'DOES NOT FIT'}")
    else:
        lines.append("  converts: NO")
        for b in ins.blockers:
            lines.append(f"    blocked: {b}")
    return "\n".join(lines)
