"""``rnnskip inspect model.h5`` (or ``model.onnx``): what is in a model file and whether rnnskip converts it,
before any work (no calibration data, no compiler).

The verdict is the converter's own: the file is imported exactly as ``rnnskip-convert``
imports it and quantised with placeholder ranges (ranges change scales, never
whether a model quantises; they do decide whether an LSTM keeps its input and recurrent
weights on one scale or two, so its sizes are for the larger layout), so "converts" here means the conversion gets past
every model check. The layers, their options and what became of each come from the
importer's own steps (``describe_model_file``); besides the first blocking reason, every
layer's own refusals are listed, so all blockers show at once.

Sizes: parameters and MACs per time step from the weights; int8 flash (weights,
tables, the target's code allowance) and RAM (state, I/O buffers for ``max_t``
steps, stack) from ``rnnskip.targets.fit.estimate`` for every target.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from .cells import cell_of
from .converter.formats import describe_model_file, load_model_file
from .converter.support import generation
from .errors import RnnskipError


@dataclass
class LayerInfo:
    name: str
    cls: str
    params: int
    config: str = ""     # the options that matter to rnnskip, e.g. "units=32, activation=relu"
    status: str = ""     # input | converted | dropped ... | folded into 'x' | refused: reason


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
    front_macs: int = 0   # a Conv1D front end's per frame it emits, i.e. per recurrent step (ModelIR.front_macs)
    per_step_outputs: bool = False
    pool_over_time: str = ""   # "avg" | "max" | "avg,max" | "max,avg": the pooling over time before the head
    max_t: int = 64
    targets: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------
# the inspection

def _placeholder_ranges(ir):
    import numpy as np

    from .quant.calibrate import Ranges, cover_pads
    states = [{k: 1.0 for k in cell_of(d.kind).float_state} for l in ir.rnn_layers for d in l.directions()]
    front = [] if ir.is_token_model else ir.input.front
    features = np.ones(0 if ir.is_token_model else ir.input.features)
    return cover_pads(ir, Ranges(features=features, input_dense=1.0, states=states, head=[1.0] * len(ir.head),
                                 head_norm=[1.0] * len(ir.head), sequences=0,
                                 front=[1.0] * len(front)))   # a Conv1D's padding frame in range


def inspect_file(path, max_t: Optional[int] = None, target_names: Optional[List[str]] = None,
                 board_names: Optional[List[str]] = None) -> Inspection:
    """Inspect ``path``; never raises for a bad model (problems go to ``blockers``)."""
    ins = Inspection(path=os.fspath(path))
    if not os.path.exists(ins.path):
        raise RnnskipError(f"model file not found: {ins.path}")
    try:
        desc = describe_model_file(ins.path)
    except RnnskipError as e:   # not a model file rnnskip can read
        ins.blockers.append(str(e))
        return ins
    ins.format, ins.keras_version, ins.model = desc.format, desc.keras_version, desc.model_name
    ins.generation = desc.producer or generation(desc.keras_version)

    # the converter's verdict
    ir = qm = None
    try:
        ir = load_model_file(ins.path)
        from .quant.quantize import quantize
        qm = quantize(ir, _placeholder_ranges(ir))
    except RnnskipError as e:
        ins.blockers.append(str(e))
    ins.converts = qm is not None

    for layer in desc.layers:
        ins.layers.append(LayerInfo(name=layer.name, cls=layer.cls, params=layer.params, config=layer.options,
                                    status=layer.status))
        ins.blockers += [r for r in layer.refusals if r not in ins.blockers]
    ins.params = sum(l.params for l in ins.layers)
    if ins.blockers and ins.converts:  # a per-layer problem the converter does not see: trust the converter
        ins.blockers = []

    if ir is not None:
        ins.notes = list(ir.notes)
        ins.params = ir.params()
        ins.per_step_outputs = bool(getattr(ir, "per_step", False))
        ins.pool_over_time = getattr(ir, "pool", "")
        ins.macs_per_step = ir.macs_per_step() + (ir.head_macs() if ins.per_step_outputs else 0)
        ins.head_macs = ir.head_macs()
        ins.front_macs = ir.front_macs()
    if qm is not None:
        ins.notes += [n for n in (cell_of(q.kind).calibration_note(q) for q in qm.layers) if n]
        # a Flatten over time reads its fixed number of steps; otherwise the steps the input declares, if any
        ins.max_t = int(max_t or qm.pool_steps or (ir.input_steps if ir is not None else 0) or 64)
        _target_estimates(ins, qm, target_names, board_names)
    return ins


def _target_estimates(ins: Inspection, qm, names, board_names=None) -> None:
    from . import boards, targets
    from .targets.fit import estimate
    # what calibration ranges may add (an LSTM's split scales): the sizes are upper bounds
    ef = sum(cell_of(q.kind).calibration_flash(q) for q in qm.layers)
    er = 4 * (max(cell_of(q.kind).calibration_acc_rows(q) for q in qm.layers) - max(q.acc_rows for q in qm.layers))
    cores = [(None, boards.load_target(n)) for n in (names or ([] if board_names else targets.available()))]
    # a board: its core on its part's memory map (a user asked whether the model fits an stm32l073)
    cores += [(b.name, boards.board_target(b)) for b in (boards.load(n) for n in board_names or [])]
    for board, t in cores:
        est = estimate(qm, ins.max_t, t)
        flash, ram = est.flash + ef, est.ram + er
        ins.targets.append({"target": t.name, **({"board": board} if board else {}),
                            "flash_bytes": int(flash), "ram_bytes": int(ram),
                            "weights_bytes": int(est.weights + ef), "flash_capacity": int(t.flash_size),
                            "ram_capacity": int(t.ram_size),
                            "fits": bool(flash <= t.flash_size and ram <= t.ram_size)})


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
                 + (" (head included: one output per step)" if ins.per_step_outputs else
                    (f" + {ins.head_macs:,} MAC head" if ins.head_macs else ""))
                 + (f" + {ins.front_macs:,} MAC front end per step" if ins.front_macs else ""))
    for n in ins.notes:
        lines.append(f"  note: {n}")
    if ins.converts:
        lines.append("  converts: yes")
        lines.append(f"  int8 estimate per target (flash: weights, tables, code allowance; RAM: state, I/O buffers "
                     f"for {ins.max_t} steps and the target's stack reservation - report.json's ram_bytes is the "
                     f"static part only):")
        names = [f"{t['board']} ({t['target']})" if t.get("board") else t["target"] for t in ins.targets]
        w = max([14] + [len(n) for n in names])
        for t, where in zip(ins.targets, names):
            lines.append(f"    {where:<{w}} flash {_kib(t['flash_bytes']):>10} of {_kib(t['flash_capacity']):>10}"
                         f"   RAM {_kib(t['ram_bytes']):>9} of {_kib(t['ram_capacity']):>9}   "
                         f"{'fits' if t['fits'] else 'DOES NOT FIT'}")
    else:
        lines.append("  converts: NO")
        for b in ins.blockers:
            lines.append(f"    blocked: {b}")
    return "\n".join(lines)
