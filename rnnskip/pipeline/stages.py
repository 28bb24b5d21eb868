"""The stages on in-memory objects: import -> quantize -> (generate) -> build ->
evaluate (float, golden, host, emulator) -> dense reference. Data flows one way."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import outputs
from ..build import Firmware, build_target
from ..converter.ir import ModelIR, steps_run
from ..datasets import Dataset
from ..emulators.base import EmulationResult, Sequences
from ..errors import RnnskipError
from ..generate import KERNEL_PROVIDERS, generate
from ..host import HostModel
from ..quant.calibrate import calibrate
from ..quant.dequantize import has_row_scales, int8_weights_ir
from ..quant.diagnose import saturation
from ..quant.golden import GoldenModel
from ..quant.model import QModel, c_name
from ..quant.quantize import quantize
from ..stagefile import stage_data
from ..stepmethod import model_without


def import_model(path) -> ModelIR:
    from ..converter.formats import load_model_file  # Keras or ONNX, by the suffix
    return load_model_file(str(path))


def float_model(ir: ModelIR):
    from ..reference import FloatModel
    return FloatModel(ir)


def load_data(path, ir: ModelIR, what: str = "--data", labels: Optional[bool] = True,
              note: Optional[Callable[[str], None]] = None, loaded: Sequence = ()) -> Dataset:
    """``path``'s .npz checked against ``ir``; ``labels``: y is required (True), optional (None:
    evaluation data without labels), or not needed (False: calibration data). ``note`` gets the
    data's ``warning:`` lines (lengths that contradict the model's mask, rows too short for its
    front end), unless the file is one of ``loaded`` (the same file given to another option)."""
    from ..datasets import load_npz
    if path is None:
        raise RnnskipError(f"{what} is required: an .npz with x" + (", y" if labels is True else "")
                           + (" and optional y and lengths" if labels is None else " and optional lengths"))
    ds = load_npz(str(path), ir, labels=labels, what=what)
    if note is not None and not any(_same_file(path, p) for p in loaded):   # its warnings once per file
        for line in ds.notes:
            note(line)
    return ds


def _same_file(a, b) -> bool:
    try:
        return b is not None and os.path.samefile(a, b)
    except OSError:
        return False


def calibration_sample(calib: Dataset, max_sequences: int = 1000) -> tuple:
    """(x, lengths) of the sequences :func:`quantize_model` calibrates on."""
    ds = calib.sample(max_sequences, seed=0) if len(calib) > max_sequences else calib
    return ds.x, ds.lengths


def quantize_model(ir: ModelIR, calib: Dataset, max_sequences: int = 1000, progress: bool = True):
    """Calibrate on (a sample of) ``calib`` and quantise. Returns (QModel, Ranges)."""
    x, lengths = calibration_sample(calib, max_sequences)
    ranges = calibrate(ir, float_model(ir), x, lengths, progress=progress)
    return quantize(ir, ranges), ranges


def check_kernels(kernels: str) -> None:
    if kernels not in KERNEL_PROVIDERS:
        raise RnnskipError(f"unknown --kernels '{kernels}'; choose one of {', '.join(KERNEL_PROVIDERS)}")


def weights_unicorn_only(placement: str) -> str:
    """Why --weights sram|tcm is refused with a board image (QEMU, Renode, --export)."""
    return (f"--weights {placement} is measured with the Unicorn emulator only (the board images and exported "
            f"projects keep their weights in flash); drop --emulator/--export or use --weights flash")


def kernel_variant(target, variant: Optional[str], kernels: str = "portable") -> str:
    """The portable kernels' path: ``variant``, else DSP where the core has it."""
    if kernels == "naive":  # the baseline is plain C throughout
        return "plain"
    if variant == "dsp" and not target.dsp:
        raise RnnskipError(f"--variant dsp needs a core with the DSP extension (Armv7E-M or later); {target.name} "
                           f"has none: use --variant plain (its default)")
    return variant or ("dsp" if target.dsp else "plain")


def _step_len(qm: QModel) -> int:
    return 1 if qm.token_input else qm.features_p


def as_run(qm: QModel, ds: Dataset) -> Dataset:
    """``ds`` with the number of steps each row runs on ``qm`` (:func:`~rnnskip.converter.ir.steps_run`: all of
    them for a model that flattens the time axis, whatever lengths the caller gave)."""
    lengths = steps_run(qm, ds.lengths, ds.max_len)
    return ds if lengths is ds.lengths else replace(ds, lengths=lengths)


def device_sequences(qm: QModel, ds: Dataset, n: Optional[int] = None) -> Sequences:
    """The first ``n`` sequences of ``ds`` (all: None) as the firmware reads them."""
    ds = as_run(qm, ds)
    g = GoldenModel(qm)
    m = len(ds) if n is None else min(int(n), len(ds))
    return Sequences(x=g.device_inputs(ds.x[:m]), lengths=np.asarray(ds.lengths[:m]),
                     valid=None if qm.token_input else g.valid_steps(ds.x[:m]),
                     out_len=outputs.io_out_len(qm, ds.x.shape[1]), macs_per_step=outputs.macs_budget(qm))


def build_firmware(src: Path, out: Path, emulator, variant: str, qm: QModel, ds: Dataset, n: Optional[int],
                   max_t: int, model_name: str = "model") -> Firmware:
    """The image ``emulator`` runs, compiled from the sources in ``src`` into ``out``: the
    emulation image (rnnskip.build), or for a board emulator the board image with the first
    ``n`` sequences of ``ds`` and their golden results linked in (rnnskip.boards.firmware)."""
    if emulator.board is None:
        return build_target(src, out, emulator.target, variant)
    from ..boards.firmware import build_board_firmware, make_bundle
    from ..targets.fit import check_fits
    bundle = make_bundle(qm, ds.x, as_run(qm, ds).lengths, n)
    check_fits(qm, max_t, emulator.target, where=f"board {emulator.board.name}", bundled_bytes=bundle.flash_bytes())
    return build_board_firmware(src, out, emulator.board, bundle, variant, model_name, emulator.wait_states)


@stage_data
@dataclass
class Evaluation:
    """Everything measured on one dataset; ``report.build_report`` turns it into JSON."""
    n: int
    float_acc: float
    golden_acc: float
    host_mismatches: int = 0
    host_checked: int = 0
    device_acc: Optional[float] = None
    #: the float model with the int8 model's weights (rnnskip.quant.dequantize): what rounding the weights
    #: alone costs; regression: its RMSE against the float model's outputs
    float_int8_weights: Optional[float] = None
    device_checked: int = 0
    device_mismatches: int = 0
    first_mismatch: str = ""
    emu: Optional[EmulationResult] = None
    golden_steps: Optional[np.ndarray] = None
    timings: dict = field(default_factory=dict)
    error: Optional[dict] = None   # regression (float y): errors in the output's units
    padding: str = ""              # which steps of a row ran (Dataset.padding: lengths or the model's masking)
    labelled: bool = True          # False: the data had no y, so no accuracy (bit-exactness, cycles, memory only)
    saturation: dict = field(default_factory=dict)   # quant.diagnose.saturation: clipped outputs and inputs

    @property
    def mismatches(self) -> int:
        return self.host_mismatches + self.device_mismatches


def evaluate(ir: ModelIR, qm: QModel, ds: Dataset, host_so: Optional[Path] = None, firmware: Optional[Firmware] = None,
             emulator=None, emulate_max: Optional[int] = None) -> Evaluation:
    """Float, golden, host build and ``firmware`` on ``emulator`` over ``ds`` (the emulator:
    its first ``emulate_max``), each output and step flag compared with the golden model."""
    ds = as_run(qm, ds)
    t0 = time.time()
    probs = float_model(ir).predict(ds.x, ds.lengths)
    t1 = time.time()
    g = GoldenModel(qm)  # with the model's step methods (skip predictor, delta thresholds)
    g_out, g_flags = g.run(ds.x, ds.lengths)
    float_acc, golden_acc, error = outputs.score(ir, qm, ds, probs, g_out)  # accuracy, or regression error
    ev = Evaluation(n=len(ds), float_acc=float_acc, golden_acc=golden_acc,
                    golden_steps=g.executed_steps(g_flags), error=error, padding=ds.padding, labelled=ds.y is not None,
                    saturation=saturation(qm, ds.x, ds.lengths, probs))
    t2 = time.time()
    if has_row_scales(qm):
        ev.float_int8_weights = outputs.score_like_float(
            qm, ds, probs, float_model(int8_weights_ir(ir, qm)).predict(ds.x, ds.lengths))
    ev.timings.update(float_s=t1 - t0 + time.time() - t2, golden_s=t2 - t1)
    if host_so is not None:
        dev_x = g.device_inputs(ds.x)
        valid = None if qm.token_input else g.valid_steps(ds.x)
        hm = HostModel(host_so, qm.token_input, _step_len(qm), outputs.io_out_len(qm, ds.x.shape[1]))
        for n in range(len(ds)):
            L = int(ds.lengths[n])
            o, f = hm.run(dev_x[n], L, None if valid is None else valid[n])
            o, gn = outputs.rows(qm, o, L), outputs.golden_rows(qm, g_out, n, L)  # per-step models: [L, out]
            ev.host_checked += 1
            if not (np.array_equal(o, gn) and np.array_equal(f, g_flags[n, :L])):
                ev.host_mismatches += 1
                ev.first_mismatch = ev.first_mismatch or f"host, sequence {n}: {o.tolist()} != golden {gn.tolist()}"
        ev.timings["host_s"] = time.time() - t2
    if firmware is not None and emulator is not None:
        t3 = time.time()
        emu = emulator.run(firmware, device_sequences(qm, ds, emulate_max))
        m = len(emu.steps_run)
        ev.emu, ev.device_checked = emu, m
        if emu.disagreement:
            ev.first_mismatch = emu.disagreement
        d_out = [outputs.rows(qm, emu.out[n], int(ds.lengths[n])) for n in range(m)]
        ev.device_acc = outputs.device_accuracy(qm, ds, d_out, m)
        for n in range(m):
            L = int(ds.lengths[n])
            gn = outputs.golden_rows(qm, g_out, n, L)
            if not (np.array_equal(d_out[n], gn) and np.array_equal(emu.flags[n], g_flags[n, :L])):
                ev.device_mismatches += 1
                ev.first_mismatch = ev.first_mismatch or (f"{emulator.label}, sequence {n}: {d_out[n].tolist()} "
                                                          f"!= golden {gn.tolist()}")
        if emu.disagreement:
            ev.device_mismatches = max(ev.device_mismatches, 1)
        ev.timings["emulate_s"] = time.time() - t3
    return ev


@dataclass
class Reference:
    """The dense reference of a skip or delta model: the model, its firmware, what the emulator
    measured and how long the emulation took (seconds)."""
    qm: QModel
    firmware: Firmware
    result: EmulationResult
    seconds: float = 0.0


def compare_without(qm: QModel, key: str, ir, ds: Dataset, ev, firmware, emulator, work: Path, kernels: str,
                    variant: str, target) -> Optional[dict]:
    """The emulated ``firmware`` of ``qm`` against the same model without its step method ``key``
    (built and run by :func:`dense_reference` into ``work/without-<key>``), on the sequences ``ev``
    emulated: rnnskip.report.compare_with_dense. None when nothing was emulated per sequence."""
    from ..report import compare_with_dense
    if ev.emu is None:
        return None
    k = int(ev.device_checked)
    q_ref = model_without(qm, key)
    ref = dense_reference(q_ref, Path(work) / f"without-{key}", emulator, ds, k, kernels, variant, ir.name)
    if ref is None:
        return None
    ref_golden, _ = GoldenModel(q_ref).run(ds.x[:k], ds.lengths[:k])
    out = compare_with_dense(ref, ev, firmware, key, target, ref_golden, ir, ds.lengths)
    if out is not None and hasattr(emulator, "profile") and emulator.board is None \
            and out["cycles_per_inference"].get(key):
        out["cycles_per_step_by_part"] = cycle_profile(qm, key, emulator, firmware, ref.firmware, ds,
                                                       PROFILE_SEQUENCES, kernels)
    return out


#: sequences the per-part cycle profile of a step method's report section runs
PROFILE_SEQUENCES = 4
#: the recurrent layers' mat-vec function per kernel provider (symbol-name prefixes)
RECURRENT_MATVEC = {"portable": ("rnnskip_mvp", "rnnskip_mat_vec_paired"),
                    "naive": ("rnnskip_mat_vec_acc_s8_naive",),
                    # CMSIS-NN's one row-major function serves the recurrent and the Dense/Conv1D layers
                    "cmsis-nn": ("rnnskip_mat_vec_acc", "arm_")}
#: the row-major mat-vec a Conv1D front end calls once per tap and a Dense layer once per call
ROW_MAJOR_MATVEC = ("rnnskip_mat_vec_acc", "rnnskip_mv4")
#: a Conv1D front end's own code (its mat-vecs are under the row-major mat-vec): the kernels (a DepthwiseConv1D's
#: MACs are its own kernel's) and rnnskip_front, the model's per-frame driver (the conv requantisation is inlined
#: into it)
FRONT_END = ("rnnskip_front", "rnnskip_conv1d", "rnnskip_depthwise_conv1d", "rnnskip_ring_push", "rnnskip_max_pool1d",
             "rnnskip_avg_pool1d")
#: the step code: rnnskip_step and each layer's cell function rnnskip_step_l<i>_cells, or with a front end
#: rnnskip_recurrent (the layers, once per emitted frame), and rnnskip_finish with what it calls (a Bidirectional
#: layer's backward pass and the layers after it, which the compiler inlines into it; a front end's flush)
STEP_CODE = ("rnnskip_step", "rnnskip_recurrent", "rnnskip_bidi", "rnnskip_finish")
#: the integer layer normalisation (a LayerNormalization before a head Dense or between recurrent layers) and its
#: integer square root (its one 64-bit division is a libgcc call other code may share: under "other")
LAYER_NORM = ("rnnskip_layer_norm_s8", "rnnskip_isqrt64")


def kernel_parts(kernels: str, methods=(), c_prefix: str = "rnnskip") -> Dict[str, Tuple[str, ...]]:
    """The per-part profile's parts, in the order they claim functions: the step methods' own
    kernels (``c_parts``), the recurrent mat-vec, the row-major mat-vec (a shared function: the
    profile is by function, so its callers - Conv1D taps, Dense layers and any method's
    ``c_row_major_users``, e.g. the skip predictor's MLP - are one part) and the front end's own
    code. Requantisation is always inlined into its callers and counts with them."""
    parts: Dict[str, Tuple[str, ...]] = {}
    users = ["Conv1D taps", "Dense layers"]
    for m in methods:
        parts.update(m.c_parts)
        users += list(getattr(m, "c_row_major_users", ()))
    if kernels == "cmsis-nn":
        parts[f"dense mat-vec (recurrent, {', '.join(users)})"] = RECURRENT_MATVEC[kernels]
    else:
        parts["dense mat-vec"] = RECURRENT_MATVEC[kernels]
        parts[f"row-major mat-vec ({', '.join(users)})"] = ROW_MAJOR_MATVEC
    # rnnskip_front is the model's own (renamed with --prefix); the others are kernels
    parts["front end (conv, rings, pooling)"] = tuple(c_name(c_prefix, f) if f == "rnnskip_front" else f
                                                      for f in FRONT_END)
    parts["layer normalisation"] = LAYER_NORM
    return parts


#: the cycle model's per-event costs (taken-branch refills, IT instructions that pass, data wait states) that the
#: function profile does not tie to one function (UnicornEmulator.function_cycles): a part of their own, since
#: they belong to every part (a delta step's loops add most of them), not to the head or the I/O
EVENTS = "(branches, wait states)"
EVENTS_PART = "taken branches, wait states (all parts)"


def parts_per_step(prof: Dict[str, float], parts: Dict[str, Tuple[str, ...]], steps: int,
                   c_prefix: str = "rnnskip") -> Dict[str, float]:
    """A function profile (cycles by symbol) as cycles per executed step by part: each function
    counted once, under the first part whose prefixes it matches; the step code (:data:`STEP_CODE`: the
    step functions and each layer's cell function <prefix>_step_l<i>_cells); the cycle model's events
    (:data:`EVENTS_PART`); the rest. Parts with no cycles are left out."""
    prof, row = dict(prof), {}
    steps = max(int(steps), 1)
    for label, prefixes in parts.items():
        v = sum(prof.pop(f) for f in [f for f in prof if f.startswith(prefixes)])
        if v:
            row[label] = v / steps
    step_code = tuple(c_name(c_prefix, f) for f in STEP_CODE)     # the model's own functions (--prefix)
    row["step code (with the cells)"] = sum(prof.pop(f) for f in list(prof) if f.startswith(step_code)) / steps
    if prof.get(EVENTS):
        row[EVENTS_PART] = prof.pop(EVENTS) / steps
    row["other (head, I/O)"] = sum(prof.values()) / steps
    return row


def cycle_profile(qm: QModel, key: str, emulator, firmware, ref_firmware, ds: Dataset, n: int,
                  kernels: str = "portable") -> dict:
    """Modeled cycles per executed step by part ({"dense": {...}, key: {...}}) on ``n`` sequences spread over
    ``ds`` (:func:`kernel_parts`, :func:`parts_per_step`)."""
    from ..datasets import spread_rows
    rows = spread_rows(len(ds), n)
    ds = ds.subset(rows)
    seqs = device_sequences(qm, ds)
    parts = kernel_parts(kernels, qm.methods, qm.c_prefix)
    out = {"sequences": len(seqs), "rows": [int(r) for r in rows]}
    for name, fw, q in (("dense", ref_firmware, model_without(qm, key)), (key, firmware, qm)):
        _, flags = GoldenModel(q).run(ds.x, ds.lengths)
        out[name] = parts_per_step(emulator.profile(fw, seqs), parts, int(flags.sum()), qm.c_prefix)
    return out


def dense_reference(qm_dense: QModel, work: Path, emulator, ds: Dataset, n: int, kernels: str, variant: str,
                    model_name: str = "model") -> Optional[Reference]:
    """``qm_dense`` (the model without its predictor or delta thresholds) generated into
    ``work/src``, built as the same kind of image into ``work/firmware`` and run on the same
    ``emulator`` on the first ``n`` sequences of ``ds``, so the skip and delta sections
    compare like with like. None when the emulator counts nothing per sequence."""
    if not emulator.counts_each_sequence:
        return None
    work = Path(work)
    max_t = int(ds.x.shape[1])
    generate(qm_dense, work / "src", max_t=max_t, kernels=kernels)
    fw = build_firmware(work / "src", work / "firmware", emulator, variant, qm_dense, ds, n, max_t, model_name)
    t0 = time.time()
    res = emulator.run(fw, device_sequences(qm_dense, ds, n))
    return Reference(qm=qm_dense, firmware=fw, result=res, seconds=time.time() - t0)
