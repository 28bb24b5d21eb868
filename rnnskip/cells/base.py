"""What a recurrent cell kind provides, and the arithmetic its kinds share.

A cell kind is one class (a subclass of :class:`Cell`) in one module of this package,
registered in :data:`CELLS` by its ``kind``. Everything specific to the kind lives
there; the stages (import, float reference, calibration, quantisation, golden model,
delta networks, C generation, size estimates) call these methods and never test the
kind's name.

The shape every kind follows (Keras layout in the IR, ``U`` units, ``up`` = U padded
to a multiple of 4):

* **float**: ``acc = float_pre(ops, w, x, h)`` gives the cell's pre-activations as a few
  *planes* of ``U`` values each (an LSTM's i, f, g, o), then ``float_cell(acts, state, acc)``
  the new state (a tuple, ``h`` first). ``float_step`` is the two in a row; a cell
  whose pre-activations need part of the step first (GRU ``reset_after=False``)
  overrides it and cannot run as a delta network.
* **integer**: the same planes as int32 accumulators, ``up`` rows each, filled by
  int8 mat-vecs (:class:`~rnnskip.quant.model.QMat` *blocks*, each writing rows
  ``row0 .. row0 + rows`` from the layer input ``x``, its hidden state ``h`` or both)
  or, in a delta network, by running sums; ``golden_cell(l, s, acc)`` is the cell's
  integer arithmetic on them, bit for bit the C kernel ``c_header`` declares.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import List, Optional, Tuple

import numpy as np

from ..errors import RnnskipError
from ..quant import fixedpoint as fp
from ..quant.act import LUTS, int_activation
from ..quant.model import QRNN, QMat, pad4

# --------------------------------------------------------------------------
# float arithmetic on numpy or TensorFlow tensors

#: concatenation along the last axis (the only array op the float cells need besides
#: slicing, +, * and @, which numpy arrays and TensorFlow tensors both have)
NUMPY_OPS = SimpleNamespace(concat=lambda parts: np.concatenate(parts, axis=-1))


def tf_ops():
    import tensorflow as tf
    return SimpleNamespace(concat=lambda parts: tf.concat(parts, axis=-1))


# --------------------------------------------------------------------------
# integer helpers shared by every cell (bit-exact with rnnskip_kernels.h)

def matvec(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v [N, cols] @ w.T`` exactly (int64): the mat-vec kernels' sum.

    Integer matmul has no BLAS, so when ``max|w| * max|v| * cols`` is below 2^24 (2^53)
    the product runs in float32 (float64): every partial sum, in whatever order BLAS
    adds, is then an integer the float type holds exactly. Otherwise int64.
    """
    bound = _absmax(w) * _absmax(v) * w.shape[1]
    dt = np.float32 if bound < (1 << 24) else (np.float64 if bound < (1 << 53) else None)
    if dt is None:
        return v.astype(np.int64) @ w.astype(np.int64).T
    return (v.astype(dt) @ w.astype(dt).T).astype(np.int64)


def _absmax(a: np.ndarray) -> int:
    return max(-int(a.min()), int(a.max())) if a.size else 0


def pre16(acc, mult, ls: int):
    """sat16(requantize(acc)): an accumulator -> Q3.12 pre-activation (rnnskip_pre16)."""
    return fp.sat16(fp.requantize(acc, mult, ls))


def planes16(l, acc: np.ndarray) -> np.ndarray:
    """Every accumulator row of layer ``l`` through :func:`pre16` with its block's multipliers."""
    return fp.sat16(planes_rq(l, acc))


def planes_rq(l, acc: np.ndarray) -> np.ndarray:
    """Every accumulator row of layer ``l`` requantised with its block's multipliers, not yet saturated (each
    value below 2^30 in magnitude: two of them add up within int32)."""
    pre = np.empty_like(acc)
    for b in l.blocks:
        rows = slice(b.row0, b.row0 + b.rows)
        pre[:, rows] = fp.requantize(acc[:, rows], b.mult, b.ls)
    return pre


# --------------------------------------------------------------------------
# quantisation helpers

def scale_of(maxabs: float, qmax: int = 127) -> float:
    """The int scale of values up to ``maxabs``. A range of 0 (a relu layer silent on every calibration row) holds
    its zeros on any scale: it takes 1's, not a vanishing one on which the next layer's bias cannot be stored."""
    maxabs = float(maxabs)
    return (max(maxabs, 1e-8) if maxabs > 0 else 1.0) / qmax


def q8(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.clip(np.round(w / s), -127, 127).astype(np.int8)


def q32(b: np.ndarray, s: np.ndarray) -> np.ndarray:
    # float64: float32 rounds the clip bound INT32_MAX up to 2^31, one past int32
    v = np.asarray(b, np.float64) / np.asarray(s, np.float64)
    return np.clip(np.round(v), fp.INT32_MIN, fp.INT32_MAX).astype(np.int64)


def gate_rows(a: np.ndarray, gates, units: int, up: int) -> np.ndarray:
    """Keras gate-major rows ``[G*U, ...]`` -> padded rows of the listed gates ``[len(gates)*up, ...]``."""
    gates = list(gates)
    out = np.zeros((len(gates) * up,) + a.shape[1:], dtype=a.dtype)
    for i, g in enumerate(gates):
        out[i * up: i * up + units] = a[g * units: (g + 1) * units]
    return out


def put_gate_rows(dst: np.ndarray, rows: np.ndarray, gates, units: int, up: int) -> None:
    """The inverse of :func:`gate_rows`: adds the padded rows of ``gates`` into Keras gate-major
    ``dst`` ``[G*units, ...]``."""
    for i, g in enumerate(gates):
        dst[g * units: (g + 1) * units] += rows[i * up: i * up + units]


def real_weights(b, cols: slice, col_scale: float) -> np.ndarray:
    """Block ``b``'s int8 weights in ``cols`` as the real weights the int8 model computes with:
    one accumulator unit (``b.scale``) per int8 step of an operand on ``col_scale``."""
    return b.w[:, cols].astype(np.float64) * b.scale[:, None] / col_scale


def real_bias(b) -> np.ndarray:
    return b.bias.astype(np.float64) * b.scale


def gate_frac(frac: dict, n_cols: int, U: int) -> np.ndarray:
    """Per Keras column (``G*U``) the fractional bits its int16 pre-activation takes: ``frac[g]`` for gate
    ``g``, Q3.12 for the others."""
    return np.repeat([frac.get(g, fp.Q12) for g in range(n_cols // U)], U) if U else np.zeros(0, np.int64)


def fused_block(name: str, Wx, Wh, b, x_scale: float, h_scale: float, gates, U: int, up: int, in_p: int,
                row0: int, to_q12: bool = True, frac: Optional[dict] = None):
    """``[W_x | W_h]`` of ``gates`` on one accumulator per row, applied to ``xh = [x | h]``.

    Row r's accumulator scale is ``max(max|W_x[:,r]| s_x, max|W_h[:,r]| s_h) / 127``, so both
    halves are int8 on it. The multipliers map the accumulator to Q3.12 (``to_q12``; ``frac``:
    ``{gate: fractional bits}`` for gates on another int16 format) or, for a cell that
    requantises straight to its int8 output, to ``h_scale``.
    """
    sx = np.abs(Wx).max(axis=0) * x_scale
    sh = np.abs(Wh).max(axis=0) * h_scale
    s_acc = np.maximum(sx, sh) / 127.0
    s_acc = np.where(s_acc > 0, s_acc, 1.0)
    n = len(list(gates)) * up
    w = np.zeros((n, in_p + up), dtype=np.int8)
    w[:, : Wx.shape[0]] = gate_rows(q8(Wx * x_scale, s_acc).T, gates, U, up)
    w[:, in_p: in_p + U] = gate_rows(q8(Wh * h_scale, s_acc).T, gates, U, up)
    bias = gate_rows(q32(b, s_acc), gates, U, up)
    eff = s_acc * 2.0 ** gate_frac(frac or {}, s_acc.size, U) if to_q12 else s_acc / h_scale
    m, ls = fp.quantize_multipliers(gate_rows(eff, gates, U, up))
    return QMat(w=w, bias=bias, mult=m, ls=ls, input="xh", name=name, row0=row0, scale=gate_rows(s_acc, gates, U, up))


def row_scale(W, v_scale: float) -> np.ndarray:
    """Per output column of ``W`` (a row of the accumulator) the int8 scale of an operand on ``v_scale``:
    ``max|W| / 127 * v_scale``, ``1 * v_scale`` for a column of zeros."""
    m = np.abs(W).max(axis=0) if W.size else np.zeros(W.shape[1])
    return np.where(m > 0, m / 127.0, 1.0) * v_scale


def single_block(name: str, W, b, v_scale: float, gates, U: int, up: int, cols: int, input_name: str,
                 row0: int, out_scale: Optional[float] = None, frac: Optional[dict] = None):
    """``W`` of ``gates`` applied to one part of the layer's operand (``input_name`` "x" or "h"),
    per-row scales, multipliers to Q3.12 (``frac`` as :func:`fused_block`'s) or, given ``out_scale``,
    straight to an int8 output on it."""
    sw = row_scale(W, 1.0)
    n = len(list(gates)) * up
    w = np.zeros((n, cols), dtype=np.int8)
    w[:, : W.shape[0]] = gate_rows(q8(W, sw).T, gates, U, up)
    bias = gate_rows(q32(b, sw * v_scale), gates, U, up)
    eff = sw * v_scale * 2.0 ** gate_frac(frac or {}, sw.size, U) if out_scale is None else sw * v_scale / out_scale
    m, ls = fp.quantize_multipliers(gate_rows(eff, gates, U, up))
    return QMat(w=w, bias=bias, mult=m, ls=ls, input=input_name, name=name, row0=row0,
                scale=gate_rows(sw * v_scale, gates, U, up))


# --------------------------------------------------------------------------
# the cell interface

class Cell:
    """One recurrent cell kind. Stateless: every method takes the layer it works on
    (an IR :class:`~rnnskip.converter.ir.RNNLayer` or a quantised
    :class:`~rnnskip.quant.model.QRNN`)."""

    kind = ""                 #: name in the IR and in stage files ("lstm")
    label = ""                #: as users read it ("LSTM")
    keras_classes: Tuple[str, ...] = ()       #: Keras layer classes read as this cell
    keras_cell_classes: Tuple[str, ...] = ()  #: cell classes of keras.layers.RNN(cell=...)
    gates = 1                 #: Keras weight blocks per unit (kernel is [in, gates * units])
    float_state: Tuple[str, ...] = ("h",)     #: float state, h first (calibrated: every entry)
    golden_state: Tuple[str, ...] = ("h8",)   #: integer state arrays, int8 h first ([N, up] each)
    gated = True              #: has a recurrent_activation (gates in [0, 1])
    recurrent = True          #: reads its own last output (False: a per-step Dense, ``dense.py``)
    template = ""             #: Jinja2 macros (``accumulate``, ``cell``) next to this module
    c_header = ""             #: the cell's C kernel, next to this module

    # ---- Keras ---------------------------------------------------------------
    @classmethod
    def keras_options(cls, cfg: dict, bias: Optional[np.ndarray]) -> dict:
        """Cell options from the layer config (and the stored bias, for old files)."""
        return {}

    @classmethod
    def bias_shape(cls, units: int, options: dict) -> tuple:
        return (cls.gates * units,)

    @classmethod
    def recurrent_kernel_shape(cls, units: int) -> tuple:
        """The IR's ``recurrent_kernel`` shape (Keras layout)."""
        return (units, cls.gates * units)

    @classmethod
    def from_cudnn(cls, kernel, recurrent_kernel, bias):
        raise NotImplementedError(f"{cls.label} has no CuDNN layout")

    @classmethod
    def to_keras(cls, keras, layer, return_sequences: bool, name: Optional[str] = None):
        """A Keras layer with this layer's options (weights are set by the caller): what delta-train
        fine-tunes and exports. A cell without it cannot be delta-trained."""
        raise RnnskipError(f"delta-train cannot rebuild {cls.label} layers as Keras layers yet; "
                           f"use run-time thresholds (rnnskip delta-tune) for this model")

    @classmethod
    def fold_input_affine(cls, layer, a: np.ndarray, c: np.ndarray) -> None:
        """BatchNormalization ``a*x + c`` on the layer's input: into the input kernel and
        the bias the input part adds to."""
        cls.fold_input_linear(layer, np.diag(np.asarray(a, np.float64)), c)

    @classmethod
    def fold_input_linear(cls, layer, w: np.ndarray, c: np.ndarray) -> None:
        """A linear map ``x @ w + c`` on the layer's input (a per-step linear Dense before it):
        the input kernel becomes ``w @ kernel`` and ``c @ kernel`` goes to the bias the input
        part adds to (the recurrent part never sees x)."""
        k = np.asarray(layer.kernel, np.float64)
        b = np.asarray(layer.bias, np.float64).copy()
        b.reshape(-1, b.shape[-1])[0] += np.asarray(c, np.float64) @ k
        layer.bias = np.ascontiguousarray(b.astype(np.float32))
        layer.kernel = np.ascontiguousarray((np.asarray(w, np.float64) @ k).astype(np.float32))

    @classmethod
    def activation_refusal(cls, layer) -> Optional[str]:
        """One line if the layer uses an activation the int8 kernels do not implement."""
        from ..converter import support
        if layer.activation not in support.RNN_ACTIVATIONS:
            return (f"layer '{layer.name}' ({cls.label}) uses activation='{support.file_name(layer.activation)}': "
                    f"rnnskip supports {support.RNN_ACTIVATIONS_TEXT} in {cls.label} layers")
        if cls.gated and layer.recurrent_activation not in support.RNN_RECURRENT_ACTIVATIONS:
            return (f"layer '{layer.name}' ({cls.label}) uses recurrent_activation="
                    f"'{support.file_name(layer.recurrent_activation)}': rnnskip supports recurrent_activation "
                    f"{support.RNN_RECURRENT_ACTIVATIONS_TEXT} in {cls.label} layers")
        return None

    @classmethod
    def delta_refusal(cls, layer) -> Optional[str]:
        """One line if the layer cannot run as a delta network (None: it can)."""
        return None

    # ---- ONNX ----------------------------------------------------------------
    onnx_op = ""              #: the ONNX operator read as this cell ("": none)
    #: Keras gate block g is the ONNX operator's block ``onnx_gate_order[g]`` (of W, R and each bias half)
    onnx_gate_order: Tuple[int, ...] = (0,)
    onnx_activations: Tuple[str, ...] = ("Tanh",)   #: the operator's default ``activations`` (forward)

    @classmethod
    def from_onnx(cls, attrs: dict, acts: List[str], b_in: np.ndarray, b_rec: np.ndarray):
        """The IR fields an ONNX operator gives beyond its kernels: ``bias``, ``activation``,
        ``recurrent_activation`` and ``options``, from its attributes, its activations (canonical
        names, the operator's order) and its input and recurrent bias halves (Keras gate order).
        A string instead is the refusal (after "node 'x' (OP) ")."""
        if len(acts) != (2 if cls.gated else 1):
            return f"lists {len(acts)} activations: a forward {cls.onnx_op} has {2 if cls.gated else 1}"
        # gated operators list the gates' function first (ONNX f), then the candidate's (g)
        return {"bias": b_in + b_rec, "activation": acts[-1], "recurrent_activation": acts[0] if cls.gated else None,
                "options": {}}

    # ---- float ---------------------------------------------------------------
    @classmethod
    def float_pre(cls, ops, w: dict, x, h):
        """Pre-activation planes ``[..., planes * U]`` from the input ``x`` and hidden ``h``
        (a delta network passes its last transmitted values). ``w``: kernel,
        recurrent_kernel, bias (Keras layout, numpy or TensorFlow)."""
        raise NotImplementedError

    @classmethod
    def float_cell(cls, acts, state: tuple, acc) -> tuple:
        """The new state from the pre-activation planes; ``acts`` = (activation,
        recurrent_activation) functions."""
        raise NotImplementedError

    @classmethod
    def float_candidates(cls, w: dict, acts, state: tuple, x):
        """The float values a relu/linear candidate's int16 format must hold at this step (``[..., k]``: each part the
        integer model requantises on its own, and their sums; calibration keeps their max |value| as the layer's
        ``"cand"`` range, :func:`candidate_q_for`). None: the cell has no such candidate."""
        return None

    @classmethod
    def float_step(cls, ops, w: dict, acts, state: tuple, x) -> tuple:
        return cls.float_cell(acts, state, cls.float_pre(ops, w, x, state[0]))

    @classmethod
    def float_initial(cls, ops, w: dict, acts, zero: tuple, prev) -> tuple:
        """The state before a row's first step, from the zero state and the previous layer's output before its first
        step ``prev``: a recurrent layer starts from zeros."""
        return zero

    # ---- quantisation --------------------------------------------------------
    @classmethod
    def quantize(cls, layer, x_scale: float, in_p: int, ranges: dict):
        """The int8 layer (:class:`~rnnskip.quant.model.QRNN`) for an input on ``x_scale``
        padded to ``in_p``; ``ranges``: max |value| of each ``float_state`` entry."""
        raise NotImplementedError

    @classmethod
    def calibration_note(cls, q) -> Optional[str]:
        """What of the int8 layer ``q`` depends on the calibration ranges beyond its scales (``rnnskip
        inspect`` quantises with placeholder ranges and says so); None: nothing."""
        return None

    @classmethod
    def calibration_flash(cls, q) -> int:
        """Flash bytes calibration ranges may add to ``q``'s layout (``rnnskip inspect`` adds them, so its
        sizes are upper bounds)."""
        return 0

    @classmethod
    def calibration_acc_rows(cls, q) -> int:
        """The accumulator rows ``q`` may need after calibration (the layers share one accumulator buffer
        of the largest layer's rows)."""
        return q.acc_rows

    @classmethod
    def dequantize(cls, q) -> dict:
        """The weights the int8 layer ``q`` computes with, on their real scales, in the IR's (Keras)
        layout: ``{"kernel", "recurrent_kernel", "bias"}`` (``rnnskip.quant.dequantize``)."""
        raise NotImplementedError

    @classmethod
    def new_qrnn(cls, layer, x_scale: float, in_p: int, ranges: dict, blocks, h_q: int, options: dict):
        """A QRNN whose int8 hidden state is requantised from a Q value with ``h_q``
        fractional bits (``h_mult``/``h_ls``)."""
        up = pad4(layer.units)
        h_scale = scale_of(ranges["h"])
        h_mult, h_ls = fp.quantize_multiplier(2.0 ** -h_q / h_scale)
        return QRNN(kind=cls.kind, units=int(layer.units), up=up, in_dim=int(layer.input_dim), in_p=int(in_p),
                    blocks=list(blocks), x_scale=float(x_scale), h_scale=float(h_scale), h_mult=int(h_mult),
                    h_ls=int(h_ls), activation=int_activation(layer.activation)[0],
                    recurrent_activation=layer.recurrent_activation,
                    options=dict(options), name=layer.name)

    # ---- golden model (the C kernel's specification) ---------------------------
    @classmethod
    def golden_zero_state(cls, l, n: int) -> dict:
        return {k: np.zeros((n, l.up), np.int64) for k in cls.golden_state}

    @classmethod
    def golden_initial(cls, l, zero: dict, prev: np.ndarray) -> dict:
        """:meth:`float_initial` in the integer model (``prev``: int8 ``[N, in_p]``)."""
        return zero

    @classmethod
    def golden_accumulate(cls, l, s: dict, x: np.ndarray) -> np.ndarray:
        """Dense accumulators ``[N, planes * up]``: every block's ``bias + W @ v``."""
        acc = np.zeros((len(x), l.acc_rows), np.int64)
        xh = None
        for b in l.blocks:
            if b.input == "x":
                v = x
            elif b.input == "h":
                v = s["h8"]
            else:
                xh = np.concatenate([x, s["h8"]], axis=1) if xh is None else xh
                v = xh
            acc[:, b.row0: b.row0 + b.rows] = b.bias[None, :] + matvec(b.w, v)
        return acc

    @classmethod
    def plane_frac(cls, l) -> np.ndarray:
        """Fractional bits of each accumulator row's int16 pre-activation (``[acc_rows]``): Q3.12, unless the cell
        keeps a relu/linear candidate on a calibrated format (``candidate_q``)."""
        return np.full(l.acc_rows, fp.Q12, np.int64)

    @classmethod
    def candidate_q(cls, l) -> int:
        """Fractional bits of the layer's candidate in its int16 format (relu/linear: calibrated,
        :func:`candidate_q_for`; a layer quantised before that was: Q3.12; tables: their Q0.15 output)."""
        return int(l.options.get("cand_q", fp.Q12)) if l.activation not in LUTS else fp.Q15

    @classmethod
    def candidate_values(cls, l, s: dict, acc: np.ndarray, pre: np.ndarray) -> List[np.ndarray]:
        """The int16 values (``[N, up]`` each, in :meth:`candidate_q`'s format) on the path of a relu/linear
        candidate at this step, from the layer's state ``s``, its accumulators and their saturated planes ``pre``
        (:func:`planes16`); []: none."""
        return []

    @classmethod
    def clipped_units(cls, l, s: dict, acc: np.ndarray) -> Optional[np.ndarray]:
        """bool ``[N, up]``: the units whose relu/linear candidate leaves its int16 range at this step, where the
        int model clips what the float one does not (quant.diagnose); None: nothing to watch (a table activation
        saturates beyond +-8 anyway)."""
        if l.activation in LUTS:
            return None
        parts = cls.candidate_values(l, s, acc, planes16(l, acc))
        return np.any([np.abs(v) >= 32767 for v in parts], axis=0) if parts else None

    @classmethod
    def golden_cell(cls, l, s: dict, acc: np.ndarray) -> dict:
        """The new state from the accumulators (rows in plane order)."""
        raise NotImplementedError

    # ---- C ----------------------------------------------------------------------
    @classmethod
    def c_state(cls, l, i: int) -> List[tuple]:
        """Members of rnnskip_state_t beyond ``xh{i}``: (ctype, name, length, comment)."""
        return []

    @classmethod
    def activations(cls, l) -> List[str]:
        """Activations the layer's C code calls (their tables are linked)."""
        return [l.activation] + ([l.recurrent_activation] if cls.gated else [])


def interleaved_mults(l) -> np.ndarray:
    """The requantisation multipliers of a layer's accumulator rows, interleaved per unit
    (unit j's planes next to each other): what the C cell kernels read, one pointer."""
    m = np.zeros(l.acc_rows, np.int64)
    for b in l.blocks:
        m[b.row0: b.row0 + b.rows] = b.mult
    return np.ascontiguousarray(m.reshape(-1, l.up).T.reshape(-1))


def plane_shift(l, plane: int) -> int:
    """The requantisation left shift of accumulator plane ``plane`` (its block's)."""
    r = plane * l.up
    for b in l.blocks:
        if b.row0 <= r < b.row0 + b.rows:
            return int(b.ls)
    raise ValueError(f"plane {plane} of layer '{l.name}' has no block")


def cell_shift_for(c_max: float, least: int = 8) -> int:
    """Fractional bits of an int16 state holding values up to ``c_max``: 15 when it stays in
    (-1, 1), fewer as it grows (at least ``least``: 8 where a table activation reads it, which
    saturates past +-8 anyway)."""
    return 15 if c_max <= 1.0 else max(least, 15 - math.ceil(math.log2(c_max)))


def candidate_q_for(maxabs: float) -> int:
    """Fractional bits of a relu/linear candidate's int16 values (its pre-activations, an LSTM's g, a GRU's
    candidate and state), from their calibrated range ``maxabs``: Q3.12, every activation input's format, while
    it stays within +-8; fewer as it grows (at least 0), so values a raw-input model takes past 8 are not
    clipped there."""
    return fp.Q12 if maxabs <= 8.0 else max(0, 15 - math.ceil(math.log2(maxabs)))

