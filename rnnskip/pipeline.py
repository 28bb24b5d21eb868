"""The convert flow, one stage per function: import -> quantize -> generate ->
build -> evaluate (float, golden, host, emulator) -> report. Data flows one way."""
from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import outputs as O
from . import targets as targets_mod
from .build import Firmware, build_host, build_target
from .converter.ir import ModelIR
from .datasets import Dataset, load_npz
from .emulate import STAT_FIELDS, EmulationResult, emulate_dataset
from .errors import RnnskipError
from .generate import KERNEL_PROVIDERS, generate
from .host import HostModel
from .quant.calibrate import Ranges, calibrate
from .quant.golden import GoldenModel, predict_classes
from .quant.model import QModel
from .quant.quantize import quantize


def import_model(path) -> ModelIR:
    from .converter.keras_import import load_model_file
    return load_model_file(str(path))


def float_model(ir: ModelIR):
    from .reference import FloatModel
    return FloatModel(ir)


def quantize_model(ir: ModelIR, calib: Dataset, max_sequences: int = 1000, progress: bool = True):
    """Calibrate on (a sample of) ``calib`` and quantise. Returns (QModel, Ranges)."""
    ds = calib.sample(max_sequences, seed=0) if len(calib) > max_sequences else calib
    ranges = calibrate(ir, float_model(ir), ds.x, ds.lengths, progress=progress)
    return quantize(ir, ranges), ranges


def out_len(qm: QModel) -> int:
    return qm.head[-1].rows if qm.head else qm.layers[-1].up


def step_len(qm: QModel) -> int:
    return 1 if qm.token_input else qm.features_p


@dataclass
class Evaluation:
    """Everything measured on one dataset; ``report.build_report`` turns it into JSON."""
    n: int
    float_acc: float
    golden_acc: float
    host_mismatches: int = 0
    host_checked: int = 0
    device_acc: Optional[float] = None
    device_checked: int = 0
    device_mismatches: int = 0
    first_mismatch: str = ""
    emu: Optional[EmulationResult] = None
    golden_steps: Optional[np.ndarray] = None
    timings: dict = field(default_factory=dict)
    error: Optional[dict] = None   # regression (float y): errors in the output's units (issue 7)


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if len(y) else float("nan")


def evaluate(ir: ModelIR, qm: QModel, ds: Dataset, host_so: Optional[Path] = None,
             firmware: Optional[Firmware] = None, target=None, emulate_max: Optional[int] = None,
             traffic_sample: int = 16, workers: int = 2, progress: bool = True) -> Evaluation:
    """Float, golden, host and emulated runs over ``ds``, compared bit for bit."""
    t0 = time.time()
    probs = float_model(ir).predict(ds.x, ds.lengths)
    t1 = time.time()
    g = GoldenModel(qm)  # with the model's step methods (skip predictor, delta thresholds)
    g_out, g_flags = g.run(ds.x, ds.lengths)
    float_acc, golden_acc, error = O.score(ir, qm, ds, probs, g_out)  # accuracy, or regression error
    ev = Evaluation(n=len(ds), float_acc=float_acc, golden_acc=golden_acc,
                    golden_steps=g_flags.sum(axis=1), error=error)
    t2 = time.time()
    ev.timings.update(float_s=t1 - t0, golden_s=t2 - t1)
    dev_x = g.device_inputs(ds.x)
    valid = None if qm.token_input else g.valid_steps(ds.x)
    if host_so is not None:
        hm = HostModel(host_so, qm.token_input, step_len(qm), O.io_out_len(qm, ds.x.shape[1]))
        for n in range(len(ds)):
            L = int(ds.lengths[n])
            o, f = hm.run(dev_x[n], L, None if valid is None else valid[n])
            o, gn = O.rows(qm, o, L), O.golden_rows(qm, g_out, n, L)  # per-step models: [L, out]
            ev.host_checked += 1
            if not (np.array_equal(o, gn) and np.array_equal(f, g_flags[n, :L])):
                ev.host_mismatches += 1
                ev.first_mismatch = ev.first_mismatch or f"host, sequence {n}: {o.tolist()} != golden {gn.tolist()}"
        ev.timings["host_s"] = time.time() - t2
    if firmware is not None:
        t3 = time.time()
        m = len(ds) if emulate_max is None else min(emulate_max, len(ds))
        emu = emulate_dataset(firmware.elf, target, dev_x[:m], ds.lengths[:m],
                              None if valid is None else valid[:m], qm.token_input, step_len(qm),
                              O.io_out_len(qm, ds.x.shape[1]), O.macs_budget(qm), traffic_sample=traffic_sample,
                              workers=workers, progress=progress)
        ev.emu = emu
        ev.device_checked = m
        d_out = [O.rows(qm, emu.out[n], int(ds.lengths[n])) for n in range(m)]
        ev.device_acc = O.device_accuracy(qm, ds, d_out, m)
        for n in range(m):
            L = int(ds.lengths[n])
            gn = O.golden_rows(qm, g_out, n, L)
            if not (np.array_equal(d_out[n], gn) and np.array_equal(emu.flags[n], g_flags[n, :L])):
                ev.device_mismatches += 1
                ev.first_mismatch = ev.first_mismatch or f"device, sequence {n}: {d_out[n].tolist()} != golden {gn.tolist()}"
        ev.timings["emulate_s"] = time.time() - t3
    return ev


def cycles_per_step(emu: EmulationResult) -> tuple:
    """Least-squares fit cycles = a + b * steps_run over the emulated sequences -> (a, b)."""
    steps = emu.steps_run.astype(float)
    cyc = emu.stats[:, STAT_FIELDS.index("cycles")]
    if len(np.unique(steps)) < 2:
        return float("nan"), float("nan")
    b, a = np.polyfit(steps, cyc, 1)
    return float(a), float(b)


def save_pickle(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


#: what each stage's output was made from (the stage commands of ``rnnskip``)
STAGE_READS = {"import": (), "quantize": ("import",), "generate": ("quantize",), "build": ("quantize", "generate"),
               "emulate": ("import", "quantize", "build"), "report": ("import", "quantize", "emulate")}
_STAGE_OUTPUT = {"import": "model.ir.pkl", "quantize": "model.q.pkl", "generate": "src/", "build": "firmware/",
                 "emulate": "evaluation.pkl"}


def _manifest_path(work) -> Path:
    return Path(work) / "stages.json"


def _manifest(work) -> dict:
    import json
    try:
        m = json.loads(_manifest_path(work).read_text())
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def check_fresh(work, stage: str) -> None:
    """Refuse to run ``stage`` on outputs of earlier stages that no longer match each
    other (say 'quantize' ran again after 'build': the firmware holds the old weights)."""
    m = _manifest(work)
    todo, seen = list(STAGE_READS[stage]), set()
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        todo += STAGE_READS[s]
        rec = m.get(s)
        if not isinstance(rec, dict):
            continue                      # made before stages.json existed: nothing to compare
        for d, run in (rec.get("read") or {}).items():
            now = (m.get(d) or {}).get("run")
            if run and now and run != now:
                raise RnnskipError(f"{Path(work) / _STAGE_OUTPUT[s]} was made from an earlier '{d}' run; run "
                                   f"'rnnskip {s} {work}' (and the stages after it) again")


def stage_done(work, stage: str) -> None:
    """Record that ``stage`` wrote its output, from the current outputs of the stages it read."""
    import json
    import uuid
    m = _manifest(work)
    m[stage] = {"run": uuid.uuid4().hex[:12],
                "read": {d: (m.get(d) or {}).get("run") for d in STAGE_READS[stage]}}
    tmp = _manifest_path(work).with_suffix(".json.partial")
    tmp.write_text(json.dumps(m, indent=1))
    tmp.replace(_manifest_path(work))


def load_pickle(path: Path, what: str, kind=None):
    """A stage's pickle; ``kind``: the type it must hold (a foreign pickle is refused)."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    except FileNotFoundError:
        raise RnnskipError(f"{path} not found; run the '{what}' stage first")
    except Exception:
        raise RnnskipError(f"{path} is not a file written by rnnskip's '{what}' stage; run that stage again")
    if kind is not None and not isinstance(obj, kind):
        raise RnnskipError(f"{path} is not a file written by rnnskip's '{what}' stage; run that stage again")
    return obj


def check_kernels(kernels: str) -> None:
    if kernels not in KERNEL_PROVIDERS:
        raise RnnskipError(f"unknown --kernels '{kernels}'; choose one of {', '.join(KERNEL_PROVIDERS)}")
