"""Small typed IR of a recurrent classifier/regressor, free of any framework.

Shapes follow Keras conventions so weights copy over unchanged:
``kernel`` is ``[in, gates*units]``, ``recurrent_kernel`` is ``[units, gates*units]``.
Gate order is Keras': LSTM ``i, f, c, o``; GRU ``z, r, h``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..stagefile import stage_data


@stage_data
@dataclass
class EmbeddingInput:
    """Token ids -> vectors. ``table`` is ``[vocab, dim]`` float32."""
    table: np.ndarray
    mask_zero: bool = False
    name: str = "embedding"

    @property
    def vocab(self) -> int:
        return int(self.table.shape[0])

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])


@stage_data
@dataclass
class DenseLayer:
    """y = act(x @ kernel + bias); ``kernel`` ``[in, out]``, ``bias`` ``[out]``. ``norm_epsilon``: the input is
    first layer-normalised over its features, ``(x - mean) / sqrt(var + norm_epsilon)`` (a Keras
    LayerNormalization before the layer, its gamma and beta folded into ``kernel`` and ``bias``)."""
    kernel: np.ndarray
    bias: np.ndarray
    activation: str = "linear"  # linear | relu | tanh | sigmoid | hard_sigmoid[_k3] | softsign | softmax | log_softmax
    name: str = "dense"
    norm_epsilon: Optional[float] = None

    @property
    def in_dim(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.kernel.shape[1])


@stage_data
@dataclass
class ConvLayer:
    """Keras ``Conv1D`` (channels last): ``y[j] = act(bias + sum_k x[j*stride - left + k*dilation] @ kernel[k])``.

    ``kernel`` ``[taps, in, out]`` (Keras' layout), ``bias`` ``[out]``; ``padding`` valid |
    causal | same, with zero frames, or with the frame ``pad`` ``[in]`` where a normalisation folded into
    the kernel (:func:`support.fold_before_conv`): the input it maps to the zeros Keras pads with. The front
    end streams it: see docs/frontends.md.
    """
    kernel: np.ndarray
    bias: np.ndarray
    strides: int = 1
    dilation: int = 1
    padding: str = "valid"
    activation: str = "linear"
    name: str = "conv1d"
    pad: Optional[np.ndarray] = None
    layer_class: str = ""   # the framework layer, where not the kind's own (a SeparableConv1D's two parts)

    @property
    def taps(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def in_dim(self) -> int:
        return int(self.kernel.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.kernel.shape[2])

    @property
    def window(self) -> int:
        """Input frames one output frame reads (its receptive field in this layer)."""
        return self.dilation * (self.taps - 1) + 1

    @property
    def left(self) -> int:
        """Zero frames Keras pads before the sequence (``same``: for stride 1, where it does not
        depend on the length)."""
        return {"valid": 0, "causal": self.window - 1, "same": (self.window - 1) // 2}[self.padding]

    @property
    def right(self) -> int:
        """Zero frames padded after the sequence (``same`` only: pushed by the flush at its end)."""
        return self.window - 1 - self.left if self.padding == "same" else 0

    @property
    def display(self) -> str:
        """The framework layer it came from, for messages."""
        return self.layer_class or "Conv1D"

    def tap_outputs(self, frames: np.ndarray, tap: int) -> np.ndarray:
        """Tap ``tap``'s contribution to the outputs ``[..., out]`` from its input frames ``[..., in]`` (float64)."""
        return frames @ np.asarray(self.kernel, np.float64)[tap]

    def input_shift(self, b: np.ndarray) -> np.ndarray:
        """What adding ``b`` ``[in]`` to every input frame adds to the outputs ``[out]`` (a fold's bias)."""
        return np.einsum("i,kio->o", b, np.asarray(self.kernel, np.float64))

    def per_output(self, a: np.ndarray) -> np.ndarray:
        """A factor per output channel ``[out]`` laid over the kernel's axes."""
        return np.asarray(a)[None, None, :]


@stage_data
@dataclass
class DepthwiseConvLayer(ConvLayer):
    """Keras ``DepthwiseConv1D``: each input channel ``c`` convolved on its own into ``multiplier`` output
    channels ``c * multiplier + j``, ``y[t, c m + j] = act(bias + sum_k x[t*stride - left + k*dilation, c]
    kernel[k, c, j])``. ``kernel`` ``[taps, in, multiplier]`` (Keras' layout); padding, strides and dilation as
    :class:`ConvLayer`'s. ``taps * in * multiplier`` weights and MACs per frame, against a Conv1D's
    ``taps * in * out``: streamed by its own kernel (``rnnskip_depthwise_conv1d_s8``)."""
    name: str = "depthwise_conv1d"

    @property
    def multiplier(self) -> int:
        return int(self.kernel.shape[2])

    @property
    def out_dim(self) -> int:
        return self.in_dim * self.multiplier

    @property
    def display(self) -> str:
        return self.layer_class or "DepthwiseConv1D"

    def tap_outputs(self, frames: np.ndarray, tap: int) -> np.ndarray:
        k = np.asarray(self.kernel, np.float64)[tap]                    # [in, multiplier]
        return (frames[..., :, None] * k).reshape(frames.shape[:-1] + (self.out_dim,))

    def input_shift(self, b: np.ndarray) -> np.ndarray:
        return (np.asarray(b, np.float64)[:, None] * np.asarray(self.kernel, np.float64).sum(axis=0)).reshape(-1)

    def per_output(self, a: np.ndarray) -> np.ndarray:
        """A factor per output channel ``[out]`` laid over the kernel's axes."""
        return np.asarray(a).reshape(1, self.in_dim, self.multiplier)


@stage_data
@dataclass
class PoolLayer:
    """Keras ``MaxPooling1D`` / ``AveragePooling1D`` with ``padding='valid'``: one frame per
    ``strides`` frames, over windows of ``pool_size`` frames."""
    kind: str            # max | avg
    pool_size: int
    strides: int
    channels: int
    name: str = "pool"

    @property
    def window(self) -> int:
        return int(self.pool_size)

    @property
    def dilation(self) -> int:
        return 1

    @property
    def left(self) -> int:
        return 0

    @property
    def right(self) -> int:
        return 0

    @property
    def in_dim(self) -> int:
        return int(self.channels)

    @property
    def out_dim(self) -> int:
        return int(self.channels)


#: how the reports and the import summary name a model's pooling over time (``ModelIR.pool``)
POOL_WORDS = {"avg": "mean over time", "max": "max over time", "avg,max": "mean and max over time",
              "max,avg": "max and mean over time", "flatten": "every step side by side"}
#: the Keras layer of each kind of pooling over time
POOL_CLASSES = {"avg": "GlobalAveragePooling1D", "max": "GlobalMaxPooling1D", "flatten": "Flatten"}


def front_frames(front: list, t: int) -> int:
    """Frames the front end emits for ``t`` input frames (Keras' output length)."""
    for f in front:
        padded = t + f.left + f.right
        t = 0 if padded < f.window else (padded - f.window) // f.strides + 1
    return t


def front_min_steps(front: list) -> int:
    """The fewest input frames for which the front end emits one frame (Keras' shortest input)."""
    need = 1
    for f in reversed(front):
        need = max(1, (need - 1) * f.strides + f.window - f.left - f.right)
    return need


@stage_data
@dataclass
class FeatureInput:
    """Float features ``[T, features]`` per sequence, optionally through a
    per-step Dense (``Dense`` on 3-D input or ``TimeDistributed(Dense)``), or through a
    front end of ``Conv1D`` / pooling layers (``front``, in order; it changes the time axis:
    the recurrent layers run once per frame it emits).

    ``mask_value``: a Keras ``Masking`` layer's value; a step whose features
    all equal it is skipped (state carried over), as Keras does.
    """
    features: int
    dense: Optional[DenseLayer] = None
    mask_value: Optional[float] = None
    front: List[object] = field(default_factory=list)   # ConvLayer | PoolLayer
    #: ``[features]``: the input a normalisation on the input (folded into the first layer) maps to 0, its mean;
    #: the device quantises ``x - center`` (quantize.shift_first_layer), so raw features far from 0 keep their
    #: resolution. None: the model takes inputs as they are (no normalisation on its input).
    center: Optional[np.ndarray] = None
    #: ``[features]``, with ``center`` where the first layer is recurrent: the normalisation's factor per feature
    #: (|a| of ``a x + b``). A recurrent layer keeps one int8 input scale (a delta threshold is one number), so the
    #: device takes ``|a| (x - center)``: one scale in the normalisation's units, not the raw features' spreads.
    norm_scale: Optional[np.ndarray] = None

    @property
    def raw_into_recurrent(self) -> bool:
        """The first recurrent layer reads the features themselves (no per-step Dense, no front end)."""
        return self.dense is None and not self.front

    @property
    def dim(self) -> int:
        if self.front:
            return self.front[-1].out_dim
        return self.dense.out_dim if self.dense is not None else self.features


@stage_data
@dataclass
class RNNLayer:
    """One recurrent layer, its cell kind's weights in Keras layout (see ``rnnskip/cells/``).

    ``kernel`` ``[in, gates*units]``, ``recurrent_kernel`` ``[units, gates*units]``,
    ``bias`` as the cell stores it (a GRU with ``reset_after=True``: ``[2, 3U]``, input then
    recurrent bias). ``options``: the cell's own settings (a GRU's ``reset_after``).
    ``recurrent_activation`` is None for cells without gates.
    """
    kind: str
    units: int
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray
    activation: str = "tanh"
    recurrent_activation: Optional[str] = "sigmoid"
    return_sequences: bool = False
    options: dict = field(default_factory=dict)
    name: str = "rnn"
    #: Keras ``Bidirectional``: the backward direction (same kind and options, its own weights; it
    #: runs the valid steps in reverse) and how the two outputs merge (concat | sum | ave | mul)
    backward: Optional["RNNLayer"] = None
    merge_mode: str = ""
    #: the layer's input is first layer-normalised over its features, ``(x - mean) / sqrt(var + input_norm)``
    #: (a Keras LayerNormalization between recurrent layers, its gamma and beta folded into ``kernel`` and
    #: ``bias``; a Bidirectional layer's two directions both hold it)
    input_norm: Optional[float] = None

    @property
    def input_dim(self) -> int:
        return int(self.kernel.shape[0])

    @property
    def out_dim(self) -> int:
        """Width of the layer's output (a Bidirectional concat: both directions side by side)."""
        return 2 * self.units if self.backward is not None and self.merge_mode == "concat" else int(self.units)

    def directions(self) -> list:
        """The layer's recurrent weights sets: itself, then its backward direction if any."""
        return [self] if self.backward is None else [self, self.backward]


@stage_data
@dataclass
class ModelIR:
    """input -> rnn_layers -> [pool over time] -> head (Dense stack, last may be softmax/log_softmax/sigmoid)."""
    input: object  # EmbeddingInput | FeatureInput
    rnn_layers: List[RNNLayer]
    head: List[DenseLayer]
    name: str = "model"
    keras_version: str = ""
    # the source's own compute precision when not float32 (a Keras mixed_float16 policy: "float16"); the
    # float reference computes in float32/64 whatever it is
    compute_dtype: str = ""
    source: str = ""
    notes: List[str] = field(default_factory=list)
    # return_sequences=True at the output: the head runs on every step's state and the
    # model has one output per time step (sequence labelling, per-step regression)
    per_step: bool = False
    # pooling over time (Keras GlobalAveragePooling1D / GlobalMaxPooling1D) of the last recurrent layer's outputs,
    # "avg" | "max", or both concatenated in their order ("avg,max" | "max,avg"); "" = none: the head runs once, on
    # the pooled vector (docs/pooling.md)
    pool: str = ""
    pool_name: str = ""
    # pool "flatten" (Keras Flatten over the time axis): the head reads the last recurrent layer's outputs at every
    # one of the model's fixed number of steps, side by side; this is that number (0 for the other kinds)
    pool_steps: int = 0
    # the fixed number of input steps the source declares (Keras Input(shape=(T, F)), an ONNX input's static time
    # axis; 0: any): what `rnnskip inspect` sizes its I/O buffer estimate for
    input_steps: int = 0
    # the model takes each row's length as an input (ONNX sequence_lens): the data's lengths are its own
    lengths_input: bool = False
    # how the source file's own runtime is fed and read (ONNX: input/output names and layouts), for the
    # check of the float reference against it on the user's data (rnnskip.converter.source_check)
    source_io: dict = field(default_factory=dict)

    @property
    def is_token_model(self) -> bool:
        return isinstance(self.input, EmbeddingInput)

    @property
    def bidirectional(self) -> Optional[int]:
        """The index of the Bidirectional recurrent layer (None without one)."""
        return next((i for i, r in enumerate(self.rnn_layers) if r.backward is not None), None)

    @property
    def pools_masked_zeros(self) -> bool:
        """GlobalMaxPooling1D right after a Bidirectional layer: Keras pools that layer's zeros at the masked steps,
        trailing padding included, so a row's padding is part of its result (its length is the padded one)."""
        return "max" in self.pool.split(",") and self.rnn_layers[-1].backward is not None

    @property
    def input_dim(self) -> int:
        """Width of the per-step vector entering the first RNN layer."""
        return self.input.dim

    @property
    def output_dim(self) -> int:
        if self.head:
            return self.head[-1].out_dim
        if self.pool == "flatten":
            return self.rnn_layers[-1].out_dim * self.pool_steps
        return self.rnn_layers[-1].out_dim * max(1, len(self.pool.split(",")) if self.pool else 1)

    @property
    def output_activation(self) -> str:
        return self.head[-1].activation if self.head else "linear"

    def params(self) -> int:
        n = 0
        if isinstance(self.input, EmbeddingInput):
            n += self.input.table.size
        elif self.input.dense is not None:
            n += self.input.dense.kernel.size + self.input.dense.bias.size
        if not self.is_token_model:
            n += sum(c.kernel.size + c.bias.size for c in self.input.front if isinstance(c, ConvLayer))
        for r in (d for l in self.rnn_layers for d in l.directions()):
            n += r.kernel.size + r.recurrent_kernel.size + r.bias.size
        for d in self.head:
            n += d.kernel.size + d.bias.size
        return int(n)

    def macs_per_step(self) -> int:
        """Multiply-accumulates of one time step of the recurrent part
        (input Dense + every RNN layer's two mat-vecs; the embedding is a lookup)."""
        n = 0
        if isinstance(self.input, FeatureInput) and self.input.dense is not None:
            n += self.input.dense.kernel.size
        for r in (d for l in self.rnn_layers for d in l.directions()):
            n += r.kernel.size + r.recurrent_kernel.size
        return int(n)

    def front_macs(self) -> int:
        """Multiply-accumulates of the front end per frame it emits (per recurrent step, in the steady state): each
        convolution's per frame it emits, times the frames it emits per front-end output frame (the product of the
        later layers' strides), so the figure adds to the recurrent layers' per step."""
        if self.is_token_model:
            return 0
        macs, per_output = 0, 1
        for f in reversed(self.input.front):
            if isinstance(f, ConvLayer):
                macs += f.kernel.size * per_output
            per_output *= f.strides
        return int(macs)

    def head_macs(self) -> int:
        return int(sum(d.kernel.size for d in self.head))


def runs_every_step(model) -> bool:
    """A model (ModelIR or QModel) that flattens the time axis: its head reads every step's output, so every row
    runs all the steps of its array, as Keras runs the arrays as given; the data's lengths are not used."""
    return getattr(model, "pool", "") == "flatten"


def steps_run(model, lengths: np.ndarray, T: int) -> np.ndarray:
    """How many steps each row runs: its length, or all ``T`` for a model that :func:`runs_every_step`."""
    return np.full(len(lengths), T, np.int32) if runs_every_step(model) else lengths


def _sha256_float32(arrays) -> str:
    import hashlib
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes())
    return h.hexdigest()


def _recurrent_weights(ir: "ModelIR") -> list:
    return [a for r in ir.rnn_layers for l in r.directions() for a in (l.kernel, l.recurrent_kernel, l.bias)]


def model_fingerprint(ir: "ModelIR") -> str:
    """sha256 over every float weight that shapes the outputs: the input stage (embedding table, per-step
    Dense, Conv1D front end), the recurrent layers and the head. :func:`weights_fingerprint` (the recurrent
    layers only) stays for the files written before this one existed."""
    inp = ir.input
    arrays = [inp.table] if isinstance(inp, EmbeddingInput) else []
    if isinstance(inp, FeatureInput):
        arrays += [a for d in ([inp.dense] if inp.dense is not None else []) for a in (d.kernel, d.bias)]
        arrays += [a for c in inp.front if isinstance(c, ConvLayer) for a in (c.kernel, c.bias)]
    # a head Dense or a recurrent layer that layer-normalises its input: its epsilon too (absent, the hash is what
    # it always was)
    norms = [np.array([d.norm_epsilon]) for d in ir.head if d.norm_epsilon is not None]
    norms += [np.array([r.input_norm]) for r in ir.rnn_layers if r.input_norm is not None]
    return _sha256_float32(arrays + _recurrent_weights(ir) + [a for d in ir.head for a in (d.kernel, d.bias)] + norms)


def weights_fingerprint(ir: "ModelIR") -> str:
    """sha256 over the recurrent layers' float weights: identifies the trained model
    (not the file), so files made for one model are not used with another of the same shape."""
    return _sha256_float32(_recurrent_weights(ir))
