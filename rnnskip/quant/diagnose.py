"""Where the integer model departs from the float one by construction, measured on calibration data.

A recurrent layer with a relu or linear activation keeps its candidate (an LSTM's g, a GRU's candidate and its
state) in int16 on a format chosen from the candidate's calibrated range (``cells.base.candidate_q_for``): Q3.12
while that stays within +-8, fewer fractional bits as it grows, down to whole units (+-32768). Past that range the
int model clips where the float one goes on, and nothing else flags it: the firmware equals the golden model bit
for bit. So the golden model runs the calibration data once more with an observer and counts the units each cell
reports clipped (``Cell.clipped_units``); a layer that clips gets one warning line.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ..cells import cell_of
from ..outputs import golden_rows, steps_run_mask
from ..stepmethod import StepMethod
from .act import LUTS
from .golden import GoldenModel


class _ClipWatch(StepMethod):
    """Observes each layer's accumulators (changes nothing): unit-steps run and unit-steps clipped per layer."""

    def __init__(self, qm):
        self.run = np.zeros(len(qm.layers), np.int64)
        self.clipped = np.zeros(len(qm.layers), np.int64)

    def golden_cell(self, golden, i, s, acc, new):
        l = golden.qm.layers[i]
        m = cell_of(l.kind).clipped_units(l, s, acc)
        if m is not None:
            self.run[i] += m.shape[0] * l.units
            self.clipped[i] += int(m[:, : l.units].sum())
        return None


def clipping(qm, x: np.ndarray, lengths: np.ndarray) -> List[tuple]:
    """(layer, fraction of its unit-steps clipped) for every layer that clips on ``x``."""
    if not any(cell_of(l.kind).recurrent and l.activation not in LUTS for l in qm.layers):
        return []   # table activations only: nothing to watch
    watch = _ClipWatch(qm)
    GoldenModel(qm, methods=list(qm.methods) + [watch]).run(x, lengths)
    return [(l, c / r) for l, c, r in zip(qm.layers, watch.clipped, watch.run) if c]


#: fewer int8 levels than this for a feature's calibrated range under the inputs' one scale gets a warning
FEW_LEVELS = 8


def shared_scale_warnings(qm, maxabs) -> List[str]:
    """A ``warning:`` line when the float inputs share one int8 scale (a recurrent first layer: a delta threshold
    is one number for all its inputs) and a feature's calibrated range (``maxabs``, per feature, in the units the
    device quantises: after the model's normalisation, if any) spans fewer than :data:`FEW_LEVELS` of its levels:
    that feature keeps little of its resolution, which a per-feature normalisation would keep."""
    if qm.embedding is not None or getattr(qm, "per_feature_inputs", False):
        return []
    m = np.broadcast_to(np.asarray(maxabs, np.float64), (qm.features,))
    if len(m) < 2 or m.max() <= 0:
        return []
    levels = 127.0 * m / m.max()
    few = np.flatnonzero((m > 0) & (levels < FEW_LEVELS))
    if few.size == 0:
        return []
    i, top = int(few[np.argmin(levels[few])]), int(np.argmax(m))
    more = f" (and {few.size - 1} more feature{'s' if few.size > 2 else ''} below {FEW_LEVELS})" if few.size > 1 else ""
    return [f"warning: the input features share one int8 scale (the first layer is recurrent), which feature {top}'s "
            f"calibrated range (max |x| {m[top]:.3g}) sets, so feature {i} (max |x| {m[i]:.3g}) spans only "
            f"+-{levels[i]:.1f} of 127 levels{more}: normalise the features inside the model (a Normalization "
            f"layer, or (x - mean) / std with per-feature constants, which rnnskip folds and quantises in its units)"]


def clip_warnings(qm, x: np.ndarray, lengths: np.ndarray) -> List[str]:
    """One ``warning:`` line per layer whose relu/linear candidate the int model clips on the calibration data."""
    out = []
    for l, frac in clipping(qm, x, lengths):
        who = f"{l.name} ({l.direction})" if getattr(l, "direction", "") else l.name
        top = 2.0 ** (15 - cell_of(l.kind).candidate_q(l))
        out.append(f"warning: layer '{who}' ({cell_of(l.kind).label}, activation={l.activation}) takes values past "
                   f"+-{top:g} in {100 * frac:.2g}% of its unit-steps on the calibration data, and the int8 model "
                   "clips them there (its relu/linear candidate runs in int16): its outputs will differ from the "
                   "float model's; scale the inputs down (e.g. a Normalization layer, or the targets of a "
                   f"regression) so they stay within +-{top:g}, or use activation='tanh'")
    return out


def saturation(qm, x: np.ndarray, lengths: np.ndarray, float_out: np.ndarray) -> dict:
    """On data the model was not calibrated on, each as (count, total): ``outputs``, the float model's outputs past
    the int16 output range (a linear output only: the device's int16 values are those outputs; the range ends at
    the largest the calibration data gave, so the int8 model clips them there; per-step models: the steps within
    each row's length), and ``inputs``, the float features past their calibrated int8 range (clipped to +-127;
    the steps within each row's length that run). With several linear outputs also ``argmax``: (rows, or steps, whose
    largest output moves with that clip, rows or steps): what the clip does to a classifier's logits."""
    res = {"outputs": (0, 0), "inputs": (0, 0)}
    if qm.output_activation == "linear" and qm.output_dim:
        K = qm.output_dim
        vals = np.concatenate([np.asarray(golden_rows(qm, float_out, n, int(lengths[n])))[..., :K]
                               .reshape(-1, K) for n in range(len(x))]) if len(x) else np.zeros((0, K))
        top = 32767.5 * float(qm.output_scale)
        res["outputs"] = (int((np.abs(vals) > top).sum()), int(vals.size))
        if K > 1:
            moved = np.argmax(np.clip(vals, -top, top), axis=1) != np.argmax(vals, axis=1)
            res["argmax"] = (int(moved.sum()), int(len(vals)))
    if not qm.token_input:
        v = np.abs(GoldenModel(qm, methods=[]).scaled_features(x))[steps_run_mask(qm, x, lengths)]
        res["inputs"] = (int((v > 127.5).sum()), int(v.size))
    return res


def saturation_warnings(qm, sat: dict, calibrated_on: str) -> List[str]:
    """``warning:`` lines for :func:`saturation`: any clipped output; inputs when more than 1% of their values pass
    the calibrated range (a few outliers are what a range taken from data always leaves)."""
    out = []
    n, total = sat["outputs"]
    if n:
        top = 32767 * float(qm.output_scale)
        moved = ""
        if "argmax" in sat:   # several outputs: as logits, what the clip does to the class
            k, rows = sat["argmax"]
            moved = (f" (as a classifier's logits: it changes the class, the largest output, of "
                     f"{f'{k:,}' if k else 'none'} of the {rows:,} {'steps' if qm.per_step else 'rows'})")
        out.append(f"warning: {n:,} of the {total:,} float outputs on --data lie beyond the int16 output range "
                   f"(+-{top:.4g}, the largest output on {calibrated_on}): the int8 model clips them there{moved}; "
                   "calibrate (--calib) on data that covers the outputs' range")
    n, total = sat["inputs"]
    if total and n > 0.01 * total:
        out.append(f"warning: {100 * n / total:.3g}% of the input values on --data lie beyond the range the "
                   f"int8 input scales were calibrated on ({calibrated_on}) and were clipped to it; calibrate "
                   "(--calib) on data like --data (or check its units and preprocessing)")
    return out
