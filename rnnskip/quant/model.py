"""The quantized model: integer tensors and requantisation parameters.

Everything here is what the C code stores in flash. Shapes are padded so the
kernels' preconditions hold (rows and columns multiples of 4); padded weights,
biases and units are zero, which leaves the real units' arithmetic unchanged
(a zero-weight LSTM/GRU unit keeps h = 0 forever).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np


def pad4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


@dataclass
class QMat:
    """One int8 mat-vec with its own accumulator set.

    ``acc = bias + w @ v`` (int32), then ``requantize(acc, mult, ls)``.
    ``w`` int8 ``[rows, cols]`` row-major (rows, cols multiples of 4); ``v`` is
    the vector named by ``input``: ``"xh"`` = [x | h] (layer input then the
    layer's int8 hidden state, one buffer), ``"x"``, ``"h"``, or ``"in"``.
    """
    w: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    ls: int
    input: str = "xh"

    @property
    def rows(self) -> int:
        return int(self.w.shape[0])

    @property
    def cols(self) -> int:
        return int(self.w.shape[1])


@dataclass
class QDense:
    """int8 in (scale in_scale) -> int8 out (scale out_scale), or int16 logits if final.

    ``mat`` requantises the accumulator to the int8 output (linear/relu) or to
    Q3.12 (tanh/sigmoid, whose Q0.15 result is then requantised with
    ``out_mult``/``out_ls``).
    """
    mat: QMat
    activation: str
    out_dim: int
    in_scale: float
    out_scale: float
    out_mult: int = 0
    out_ls: int = 0
    name: str = "dense"

    @property
    def rows(self) -> int:
        return self.mat.rows

    @property
    def cols(self) -> int:
        return self.mat.cols


@dataclass
class QRNN:
    """One int8 LSTM/GRU layer; units padded to ``up`` (multiple of 4).

    Gate g of unit j is row ``g*up + j`` of its matrix. Input and recurrent
    weights of a gate share one accumulator (the matrix ``[W_x | W_h]`` applied
    to ``[x | h]``), quantised per row on that accumulator's scale; the
    exception is GRU(reset_after=True)'s candidate, whose recurrent part is
    multiplied by r after requantisation and so has its own accumulator.

    mats: LSTM ``gates`` [4up, in_p+up] on xh.
          GRU ``zr`` [2up, in_p+up] on xh, then reset_after=True: ``cx`` [up, in_p]
          on x and ``ch`` [up, up] on h; reset_after=False: ``c`` [up, in_p+up]
          on [x | r*h].
    LSTM cell state int16 at scale 2^-cell_shift; GRU h kept in Q0.15 (h16).
    ``h_mult``/``h_ls``: Q0.15 (LSTM o*tanh(c) >> 15, GRU h16) -> int8 h.
    """
    kind: str
    units: int
    up: int
    in_dim: int
    in_p: int
    mats: dict
    x_scale: float
    h_scale: float
    h_mult: int
    h_ls: int
    cell_shift: int = 15
    reset_after: bool = True
    name: str = "rnn"
    # gate activations (issue 7); other than tanh/sigmoid: rnnskip/quant/golden_act.py
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"

    @property
    def gates(self) -> int:
        return 4 if self.kind == "lstm" else 3

    @property
    def xh_len(self) -> int:
        return self.in_p + self.up


@dataclass
class QModel:
    """Int8 model: input stage, 1-2 recurrent layers, Dense head."""
    token_input: bool
    in_dim: int                    # real per-step width entering the first RNN layer
    in_p: int                      # padded width
    embedding: Optional[np.ndarray] = None   # int8 [vocab, in_p] (token models)
    mask_zero: bool = False
    feature_scale: float = 1.0     # float features -> int8 (feature models)
    features: int = 0
    features_p: int = 0
    input_dense: Optional[QDense] = None
    mask_value: Optional[float] = None
    layers: List[QRNN] = field(default_factory=list)
    head: List[QDense] = field(default_factory=list)
    output_dim: int = 1
    output_activation: str = "linear"
    output_scale: float = 1.0
    name: str = "model"
    per_step: bool = False  # one output per time step (return_sequences=True at the output, issue 7)
    predictor: Optional[object] = None  # rnnskip.skip.qpredictor.QPredictor: skip steps it rejects (issue 4)
    delta: Optional[object] = None      # rnnskip.delta.spec.DeltaSpec: delta-network thresholds (issue 5)
    #: where the calibration data came from: {"source": path or note, "sequences": n} (for report.json)
    calibration: dict = field(default_factory=dict)

    def all_mats(self):
        dense = ([self.input_dense] if self.input_dense else []) + list(self.head)
        return [d.mat for d in dense] + [m for l in self.layers for m in l.mats.values()]

    def flash_weight_bytes(self) -> int:
        """int8 weights + int32 biases and multipliers (+ the embedding table)."""
        n = 0 if self.embedding is None else self.embedding.size
        return int(n + sum(m.w.size + 4 * (m.bias.size + m.mult.size) for m in self.all_mats()))

    def recurrent_macs_per_step(self) -> int:
        """MACs the C code performs per executed step (padded shapes)."""
        n = self.input_dense.mat.w.size if self.input_dense is not None else 0
        return int(n + sum(m.w.size for l in self.layers for m in l.mats.values()))
