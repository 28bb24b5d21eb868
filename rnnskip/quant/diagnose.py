"""Where the integer model departs from the float one by construction, measured on calibration data.

A recurrent layer with a relu or linear activation keeps its candidate (an LSTM's g, a GRU's candidate and its
state) in int16 Q3.12, as every activation's input: values past +-8 are clipped there, where the float model
goes on (a model fed raw, unnormalised values: a forecasting tutorial's LSTM(activation='relu') on readings
of 20-80 reaches 35). Nothing else flags it: the firmware equals the golden model bit for bit. So the golden model
runs the calibration data once more with an observer and counts the units each cell reports clipped
(``Cell.clipped_units``); a layer that clips gets one warning line.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ..cells import cell_of
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


def clip_warnings(qm, x: np.ndarray, lengths: np.ndarray) -> List[str]:
    """One ``warning:`` line per layer whose relu/linear candidate the int model clips on the calibration data."""
    out = []
    for l, frac in clipping(qm, x, lengths):
        who = f"{l.name} ({l.direction})" if getattr(l, "direction", "") else l.name
        out.append(f"warning: layer '{who}' ({cell_of(l.kind).label}, activation={l.activation}) takes values past "
                   f"+-8 in {100 * frac:.2g}% of its unit-steps on the calibration data, and the int8 model clips "
                   "them there (relu and linear recurrent activations run in int16 Q3.12): its outputs will differ "
                   "from the float model's; scale the inputs down (e.g. a Normalization layer, or the targets of a "
                   "regression) so they stay within +-8, or use activation='tanh'")
    return out
