"""The quantized model: integer tensors and requantisation parameters.

Everything here is what the C code stores in flash. Shapes are padded so the
kernels' preconditions hold (rows and columns multiples of 4); padded weights,
biases and units are zero, which leaves the real units' arithmetic unchanged
(a zero-weight recurrent unit keeps h = 0 forever).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..stagefile import stage_data


def c_name(prefix: str, name: str) -> str:
    """``rnnskip_<x>`` as the generated C names it with the prefix ``prefix`` (``--prefix``)."""
    return prefix + name[len("rnnskip"):] if name.startswith("rnnskip_") else name


def pad4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


@stage_data
@dataclass
class QMat:
    """One int8 mat-vec with its own accumulator set.

    ``acc = bias + w @ v`` (int32), then ``requantize(acc, mult, ls)``.
    ``w`` int8 ``[rows, cols]`` row-major (rows, cols multiples of 4); ``v`` is
    the vector named by ``input``: ``"xh"`` = [x | h] (layer input then the
    layer's int8 hidden state, one buffer), ``"x"``, ``"h"``, ``"xrh"`` (a cell's
    own variant of xh, see its module) or ``"in"`` (a Dense layer's input).
    In a recurrent layer the block fills accumulator rows ``row0 .. row0 + rows``.
    ``scale``: the real value of one accumulator unit of each row (the row's weight step times
    its operand's scale), so ``w * scale / operand scale`` are the weights the int8 model uses
    (``rnnskip.quant.dequantize``); the C never reads it.
    """
    w: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    ls: int
    input: str = "xh"
    name: str = ""
    row0: int = 0
    scale: Optional[np.ndarray] = None

    @property
    def rows(self) -> int:
        return int(self.w.shape[0])

    @property
    def cols(self) -> int:
        return int(self.w.shape[1])


@stage_data
@dataclass
class QNorm:
    """A layer normalisation of a layer's int8 input (a Dense's, a recurrent layer's; rnnskip_layer_norm_s8), integer
    throughout: over the ``n`` real features, ``S = sum x``, ``D = n * sum x^2 - S^2 + eps_term``
    (``eps_term = round(n^2 eps / s^2)``, ``s`` the input's scale), ``R = isqrt(D << 2 frac)``,
    ``g = round(mult 2^31 / R)`` once per row and ``z = sat8(round((n x - S) * g / 2^31))`` half away from zero
    (0 where R is 0): the normalised input on the scale ``2^frac / mult`` (golden.layer_norm)."""
    n: int
    eps_term: int
    mult: int
    frac: int

    @property
    def scale(self) -> float:
        return float(2.0 ** self.frac / self.mult)


@stage_data
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
    norm: Optional[QNorm] = None   # its input layer-normalised first (DenseLayer.norm_epsilon)

    @property
    def rows(self) -> int:
        return self.mat.rows

    @property
    def cols(self) -> int:
        return self.mat.cols


@stage_data
@dataclass
class QConv:
    """One int8 Conv1D of the streamed front end (``rnnskip_conv1d_s8``).

    ``dense`` maps the window ``[taps * cin_p]`` (tap k's frame, ``k * dilation`` frames after the
    oldest frame of the ring, at ``k * cin_p``) to the output frame: weights ``[cout_p, taps * cin_p]``,
    one scale per output channel (per-channel requantisation), activation as a Dense's.
    The ring holds the last ``window`` frames (padding frames before the first); a frame is emitted after
    every ``strides``-th push once ``window - 1 - left`` frames have passed; the flush at the end
    of a sequence pushes ``right`` padding frames (``padding='same'``). A padding frame is zeros, or
    ``pad`` (int8 ``[cin_p]``) where a normalisation folded into the kernel (``ConvLayer.pad``).
    """
    dense: QDense
    taps: int
    dilation: int
    strides: int
    left: int
    right: int
    cin: int
    cin_p: int
    name: str = "conv1d"
    pad: Optional[np.ndarray] = None

    @property
    def window(self) -> int:
        return self.dilation * (self.taps - 1) + 1

    @property
    def pad_frame(self) -> np.ndarray:
        """int64 ``[cin_p]``: the frame the ring starts with and the flush pushes."""
        return np.zeros(self.cin_p, np.int64) if self.pad is None else np.asarray(self.pad, np.int64)

    @property
    def cout_p(self) -> int:
        return self.dense.rows

    @property
    def out_scale(self) -> float:
        return self.dense.out_scale


@stage_data
@dataclass
class QDepthwise(QConv):
    """One int8 DepthwiseConv1D of the streamed front end (``rnnskip_depthwise_conv1d_s8``): output channel
    ``o < cout`` reads only input channel ``o // multiplier``. ``dense`` holds its weights ``[cout_p, taps]``
    (tap k of the window, oldest first), its bias, per-channel requantisation and activation; the ring, the
    frames it emits and the padding as :class:`QConv`'s."""
    multiplier: int = 1

    @property
    def cout(self) -> int:
        return self.cin * self.multiplier


@stage_data
@dataclass
class QPool:
    """Max or average pooling over ``window`` int8 frames of the front end (``rnnskip_max_pool1d_s8`` /
    ``rnnskip_avg_pool1d_s8``); the output keeps the input's scale. An average rounds half away
    from zero, as CMSIS-NN's ``arm_avgpool_s8``."""
    kind: str
    window: int
    strides: int
    cin: int
    cin_p: int
    scale: float
    name: str = "pool"
    left: int = 0
    right: int = 0
    dilation: int = 1

    @property
    def taps(self) -> int:
        return self.window

    @property
    def pad_frame(self) -> np.ndarray:
        """Zeros (valid pooling never reads one; the ring starts with them)."""
        return np.zeros(self.cin_p, np.int64)

    @property
    def cout_p(self) -> int:
        return self.cin_p

    @property
    def out_scale(self) -> float:
        return self.scale


@stage_data
@dataclass
class QRNN:
    """One int8 recurrent layer; units padded to ``up`` (multiple of 4).

    ``blocks``: the int8 mat-vecs that fill the layer's int32 accumulators, ``acc_rows``
    = planes x ``up`` rows in the order of its cell's planes (``rnnskip/cells/``); unit j
    of plane p is row ``p*up + j``. ``options``: the cell's own settings (an LSTM's
    ``cell_shift``, a GRU's ``reset_after``, a relu/linear candidate's format ``cand_q``).
    ``h_mult``/``h_ls`` requantise the cell's output to the int8 hidden state on ``h_scale``.
    """
    kind: str
    units: int
    up: int
    in_dim: int
    in_p: int
    blocks: List[QMat]
    x_scale: float
    h_scale: float
    h_mult: int
    h_ls: int
    activation: str = "tanh"
    recurrent_activation: Optional[str] = "sigmoid"
    options: dict = field(default_factory=dict)
    name: str = "rnn"
    #: a Keras Bidirectional layer's two directions, next to each other in ``QModel.layers``: "forward"
    #: (``merge_mode`` set: how the two int8 outputs merge) then "backward"; "" for any other layer
    direction: str = ""
    merge_mode: str = ""
    #: its int8 input layer-normalised first (``RNNLayer.input_norm``): the cell reads the result, on ``x_scale``
    norm: Optional[QNorm] = None

    @property
    def merge_p(self) -> int:
        """Padded width of a Bidirectional layer's merged output (concat: both directions' units)."""
        return pad4(2 * self.units) if self.merge_mode == "concat" else self.up

    @property
    def acc_rows(self) -> int:
        return int(max(b.row0 + b.rows for b in self.blocks))

    @property
    def planes(self) -> int:
        return self.acc_rows // self.up

    @property
    def xh_len(self) -> int:
        return self.in_p + self.up

    def block(self, name: str) -> QMat:
        return next(b for b in self.blocks if b.name == name)


@stage_data
@dataclass
class QModel:
    """Int8 model: input stage, recurrent layers, Dense head."""
    token_input: bool
    in_dim: int                    # real per-step width entering the first RNN layer
    in_p: int                      # padded width
    embedding: Optional[np.ndarray] = None   # int8 [vocab, in_p] (token models)
    mask_zero: bool = False
    #: float features -> int8 (feature models): the scale of each feature (quantize.feature_scales)
    feature_scales: Optional[np.ndarray] = None
    #: float32 ``[features]`` the device subtracts before scaling (FeatureInput.center, folded into the first
    #: layer: quantize.shift_first_layer); None: features are scaled as they are
    feature_offsets: Optional[np.ndarray] = None
    #: whether those scales are one per feature, folded into the first layer's weights
    per_feature_inputs: bool = False
    features: int = 0
    features_p: int = 0
    input_dense: Optional[QDense] = None
    mask_value: Optional[float] = None
    #: the streamed Conv1D / pooling front end (QConv | QPool), in order; [] = none
    front: list = field(default_factory=list)
    layers: List[QRNN] = field(default_factory=list)
    head: List[QDense] = field(default_factory=list)
    output_dim: int = 1
    output_activation: str = "linear"
    output_scale: float = 1.0
    name: str = "model"
    per_step: bool = False  # one output per time step (return_sequences=True at the output)
    #: pooling over time of the last layer's int8 outputs: "avg" | "max" | both concatenated ("avg,max" | "max,avg");
    #: "" = none (rnnskip/quant/golden.py Pools)
    pool: str = ""
    pool_name: str = ""
    #: pool "flatten": the model's fixed number of steps, whose outputs the head reads side by side
    pool_steps: int = 0
    #: step methods (rnnskip.stepmethod.StepMethod: a skip predictor, delta thresholds); [] = dense
    methods: list = field(default_factory=list)
    #: where the calibration data came from: {"source": path or note, "sequences": n} (for report.json)
    calibration: dict = field(default_factory=dict)
    #: the prefix of the generated C's external names (``rnnskip_init`` -> ``<prefix>_init``), so two
    #: models link into one image (rnnskip.generate, ``--prefix``)
    c_prefix: str = "rnnskip"

    def c_name(self, name: str) -> str:
        """A model symbol's name in the generated C (``rnnskip_step`` -> ``<c_prefix>_step``)."""
        return c_name(self.c_prefix, name)

    @property
    def out_width(self) -> int:
        """Padded width of the last recurrent layer's int8 output: a last Bidirectional layer's merged output (its
        forward direction knows the merge; the backward one is ``layers[-1]``), else the layer's units."""
        last = self.layers[-1]
        return self.layers[-2].merge_p if last.direction == "backward" else last.up

    @property
    def out_len(self) -> int:
        """int16 values per output row on the device (padded): the head's rows, or without a head the pooled vector
        or the last layer's output."""
        if self.head:
            return self.head[-1].rows
        return self.pool_width if self.pool else self.out_width

    @property
    def pool_kinds(self) -> List[str]:
        """The kinds of pooling over time, in the order their vectors are concatenated ([] = none)."""
        return self.pool.split(",") if self.pool else []

    @property
    def pool_real(self) -> int:
        """Real (unpadded) width of one kind's pooled vector: the last layer's units, both directions' for a last
        Bidirectional(concat) layer."""
        last = self.layers[-1]
        if last.direction == "backward" and self.layers[-2].merge_mode == "concat":
            return 2 * last.units
        return last.units

    @property
    def pool_width(self) -> int:
        """Padded width of the pooled vector the head reads: one kind's is the last layer's padded output; several
        kinds' real parts side by side (as Keras' Concatenate), then padded; a Flatten's, every step's real part side
        by side, then padded."""
        if self.pool == "flatten":
            return pad4(self.pool_steps * self.pool_real)
        k = len(self.pool_kinds)
        return self.out_width if k <= 1 else pad4(k * self.pool_real)

    @property
    def bidi(self) -> Optional[int]:
        """The index in ``layers`` of a Bidirectional layer's forward direction (its backward one is next)."""
        return next(iter(self.bidis), None)

    @property
    def bidis(self) -> List[int]:
        """The indices in ``layers`` of every Bidirectional layer's forward direction, in order."""
        return [i for i, l in enumerate(self.layers) if l.direction == "forward"]

    def all_mats(self):
        dense = ([self.input_dense] if self.input_dense else []) + [f.dense for f in self.front if isinstance(f, QConv)]
        dense += list(self.head)
        return [d.mat for d in dense] + [b for l in self.layers for b in l.blocks]

    def flash_weight_bytes(self) -> int:
        """int8 weights + int32 biases and multipliers (+ the embedding table)."""
        n = 0 if self.embedding is None else self.embedding.size
        return int(n + sum(m.w.size + 4 * (m.bias.size + m.mult.size) for m in self.all_mats()))

    def recurrent_macs_per_step(self) -> int:
        """MACs the C code performs per executed step (padded shapes)."""
        n = self.input_dense.mat.w.size if self.input_dense is not None else 0
        return int(n + sum(b.w.size for l in self.layers for b in l.blocks))
