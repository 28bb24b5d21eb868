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
class QDense:
    """int8 in (scale in_scale) -> int8 out (scale out_scale).

    ``w`` int8 ``[rows_p, cols_p]`` row-major (the Keras kernel transposed),
    ``bias`` int32 ``[rows_p]`` on the accumulator scale, ``mult``/``shift`` per
    row: accumulator -> int8 output (linear/relu) or -> Q3.12 (tanh/sigmoid,
    whose Q0.15 result is then requantised with ``out_mult``/``out_shift``).
    """
    w: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    activation: str
    out_dim: int
    in_scale: float
    out_scale: float
    out_mult: int = 0
    out_shift: int = 0
    name: str = "dense"

    @property
    def rows(self) -> int:
        return int(self.w.shape[0])

    @property
    def cols(self) -> int:
        return int(self.w.shape[1])


@dataclass
class QRNN:
    """One int8 LSTM/GRU layer; units padded to ``up`` (multiple of 4).

    Gate g of unit j is row ``g*up + j`` of ``wx`` ``[G*up, in_p]`` and
    ``wh`` ``[G*up, up]``. Accumulators: ``ax = bx + wx@x``, ``ah = bh + wh@h``
    (int32), each requantised to Q3.12 with its own per-row (mult, shift).
    LSTM: cell state int16 at scale 2^-cell_shift. GRU: h kept in Q0.15 (h16)
    for the update and requantised to int8 for the recurrent mat-vec.
    ``h_mult``/``h_shift``: LSTM o*tanh(c) (Q0.30) -> int8 h; GRU h16 -> int8 h.
    """
    kind: str
    units: int
    up: int
    in_dim: int
    in_p: int
    wx: np.ndarray
    wh: np.ndarray
    bx: np.ndarray
    bh: np.ndarray
    mx: np.ndarray
    shx: np.ndarray
    mh: np.ndarray
    shh: np.ndarray
    x_scale: float
    h_scale: float
    h_mult: int
    h_shift: int
    cell_shift: int = 15
    reset_after: bool = True
    name: str = "rnn"

    @property
    def gates(self) -> int:
        return 4 if self.kind == "lstm" else 3


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

    def flash_weight_bytes(self) -> int:
        n = 0 if self.embedding is None else self.embedding.size
        dense = ([self.input_dense] if self.input_dense else []) + list(self.head)
        for d in dense:
            n += d.w.size + 4 * (d.bias.size + d.mult.size + d.shift.size)
        for l in self.layers:
            n += l.wx.size + l.wh.size + 4 * (l.bx.size + l.bh.size + 4 * l.mx.size)
        return int(n)

    def recurrent_macs_per_step(self) -> int:
        """MACs the C code performs per executed step (padded shapes)."""
        n = self.input_dense.w.size if self.input_dense is not None else 0
        return int(n + sum(l.wx.size + l.wh.size for l in self.layers))
