"""GRU (Keras ``GRU``, ``GRUCell`` in ``RNN``, ``CuDNNGRU``), both ``reset_after`` forms.

Float (Keras, gates ``z, r`` and candidate ``n``)::

    reset_after=True:   n = act(x W_n + b_in_n + r * (h U_n + b_rec_n))
    reset_after=False:  n = act(x W_n + (r * h) U_n + b_n)
    h = z * h + (1 - z) * n

Planes ``[n | z | r | hn]``: ``n`` holds the candidate's input part (reset_after=True:
``x W_n + b_in_n``) or its whole pre-activation (reset_after=False, computed after r),
``hn`` the recurrent part ``h U_n + b_rec_n`` (reset_after=True only). An input column
feeds planes n, z, r and a hidden column z, r, hn: contiguous row ranges, so a delta
network keeps one running sum per plane. reset_after=False needs r before the
candidate's mat-vec and cannot run as a delta network.

Integer: z, r on one accumulator per row (``[W_x | W_h]`` on ``xh``); n and hn on
their own (x only, h only). Gate outputs in ``qr`` fractional bits, candidate in ``qa``
(15 for table activations; relu/linear: ``cand_q``, chosen from the calibrated range of the
candidate's parts and the state, Q3.12 while that stays within +-8, so that a model fed raw
values is not clipped at 8; the n and hn planes are requantised to it, the kernel is the same
for any format)::

    reset_after=True:   pn = sat16(pre(n) + rshift(r * pre(hn), qr))
    reset_after=False:  rh8 = sat8(rshift(r * h8, qr)); pn = pre(n) with n = [x | rh8] W_n
    c = act(pn);  h16 = sat16(c + rshift(z * (h16 - c), qr));  h8 = sat8(rq(h16, h_mult, h_ls))

C: ``rnnskip_gru_cell_s16`` (and ``rnnskip_gru_reset_s8``) in rnnskip_gru_cell.h.
"""
from __future__ import annotations

import numpy as np

from ..quant import fixedpoint as fp
from ..quant.act import LUTS, act_q, out_q
from .base import (
    Cell,
    candidate_q_for,
    fused_block,
    matvec,
    pad4,
    planes16,
    pre16,
    put_gate_rows,
    real_bias,
    real_weights,
    scale_of,
    single_block,
)


class GRU(Cell):
    kind = "gru"
    label = "GRU"
    keras_classes = ("GRU", "GRUV1", "CuDNNGRU")
    keras_cell_classes = ("GRUCell",)
    gates = 3
    float_state = ("h",)
    golden_state = ("h8", "h16")
    template = "gru.c.j2"
    c_header = "rnnskip_gru_cell.h"

    # ---- Keras -------------------------------------------------------------------
    @classmethod
    def keras_options(cls, cfg, bias):
        if "reset_after" in cfg:
            return {"reset_after": bool(cfg["reset_after"])}
        # Keras 2.0/2.1 files have no reset_after key: the bias shape says it (2-D: reset_after)
        return {"reset_after": bias is None or np.ndim(bias) == 2}

    @classmethod
    def bias_shape(cls, units, options):
        return (2, 3 * units) if options["reset_after"] else (3 * units,)

    @classmethod
    def from_cudnn(cls, kernel, recurrent_kernel, bias):
        """CuDNN layout -> GRU(reset_after=True), as Keras converts it when loading."""
        def per_gate(m, fn):
            return np.hstack([fn(b) for b in np.hsplit(np.asarray(m), 3)])
        k = per_gate(kernel, lambda b: b.T.reshape(b.shape, order="F"))
        r = per_gate(recurrent_kernel, lambda b: b.T)
        return k, r, np.asarray(bias).reshape(2, -1)

    @classmethod
    def to_keras(cls, keras, layer, return_sequences, name=None):
        from ..converter.support import file_name
        return keras.layers.GRU(layer.units, activation=file_name(layer.activation),
                                recurrent_activation=file_name(layer.recurrent_activation),
                                reset_after=layer.options["reset_after"], return_sequences=return_sequences,
                                name=name)

    @classmethod
    def delta_refusal(cls, layer):
        if not layer.options["reset_after"]:
            return (f"layer '{layer.name}' is a GRU with reset_after=False: delta mode needs reset_after=True "
                    f"(r multiplies the recurrent term after its mat-vec, so that sum can be kept running); "
                    f"retrain the GRU with reset_after=True (the Keras 2.x/3.x default)")
        return None

    # ---- ONNX --------------------------------------------------------------------
    onnx_op = "GRU"
    onnx_gate_order = (0, 1, 2)      # z, r, h in both
    onnx_activations = ("Sigmoid", "Tanh")

    @classmethod
    def from_onnx(cls, attrs, acts, b_in, b_rec):
        out = super().from_onnx(attrs, acts, b_in, b_rec)
        if isinstance(out, str):
            return out
        # linear_before_reset=1 (PyTorch's) applies r to (h R_h + Rb_h): Keras' reset_after=True, which keeps
        # both bias halves; 0 applies r before the mat-vec, where the halves add up
        reset_after = bool(attrs.get("linear_before_reset", 0))
        out["options"] = {"reset_after": reset_after}
        if reset_after:
            out["bias"] = np.stack([b_in, b_rec])
        return out

    # ---- float -------------------------------------------------------------------
    @classmethod
    def float_pre(cls, ops, w, x, h):
        """Planes [n | z | r | hn] (reset_after=True)."""
        b = w["bias"]
        xw = x @ w["kernel"] + b[0]
        hw = h @ w["recurrent_kernel"] + b[1]
        U = xw.shape[-1] // 3
        return ops.concat([xw[..., 2 * U:], xw[..., :2 * U] + hw[..., :2 * U], hw[..., 2 * U:]])

    @classmethod
    def float_cell(cls, acts, state, acc):
        act, ract = acts
        U = acc.shape[-1] // 4
        z = ract(acc[..., U:2 * U])
        n = act(acc[..., :U] + ract(acc[..., 2 * U:3 * U]) * acc[..., 3 * U:])
        return (z * state[0] + (1.0 - z) * n,)

    @classmethod
    def float_step(cls, ops, w, acts, state, x):
        if np.ndim(w["bias"]) == 2:     # reset_after=True
            return super().float_step(ops, w, acts, state, x)
        act, ract = acts
        (h,) = state
        U = w["recurrent_kernel"].shape[0]
        xw = x @ w["kernel"] + w["bias"]
        hw = h @ w["recurrent_kernel"][:, :2 * U]
        z = ract(xw[..., :U] + hw[..., :U])
        r = ract(xw[..., U:2 * U] + hw[..., U:2 * U])
        n = act(xw[..., 2 * U:] + (r * h) @ w["recurrent_kernel"][:, 2 * U:])
        return (z * h + (1.0 - z) * n,)

    @classmethod
    def float_candidates(cls, w, acts, state, x):
        ract, (h,), b = acts[1], state, w["bias"]
        U = w["recurrent_kernel"].shape[0]
        if np.ndim(b) == 2:   # the input and recurrent parts (planes n and hn), and the sum the reset gate makes
            xw, hw = x @ w["kernel"] + b[0], h @ w["recurrent_kernel"] + b[1]
            r = ract(xw[..., U:2 * U] + hw[..., U:2 * U])
            return np.concatenate([xw[..., 2 * U:], hw[..., 2 * U:], xw[..., 2 * U:] + r * hw[..., 2 * U:]], axis=-1)
        xw = x @ w["kernel"] + b
        r = ract(xw[..., U:2 * U] + h @ w["recurrent_kernel"][:, U:2 * U])
        return xw[..., 2 * U:] + (r * h) @ w["recurrent_kernel"][:, 2 * U:]

    # ---- quantisation ------------------------------------------------------------
    @classmethod
    def quantize(cls, layer, x_scale, in_p, ranges):
        U, up = layer.units, pad4(layer.units)
        h_scale = scale_of(ranges["h"])
        Wx, Wh = np.asarray(layer.kernel, np.float64), np.asarray(layer.recurrent_kernel, np.float64)
        bias = np.asarray(layer.bias, np.float64)
        own = layer.activation not in LUTS   # relu/linear: the candidate and the state on a format from their range
        cand_q = candidate_q_for(max(ranges.get("cand", 0.0), ranges["h"])) if own else out_q(layer.activation)
        frac = {2: cand_q} if own else None   # tables: pre-activations Q3.12, outputs Q0.15
        if layer.options["reset_after"]:
            b_in, b_rec = bias[0], bias[1]
            blocks = [fused_block("zr", Wx, Wh, b_in + b_rec, x_scale, h_scale, (0, 1), U, up, in_p, row0=up),
                      single_block("cx", Wx, b_in, x_scale, (2,), U, up, in_p, "x", row0=0, frac=frac),
                      single_block("ch", Wh, b_rec, h_scale, (2,), U, up, up, "h", row0=3 * up, frac=frac)]
        else:
            blocks = [fused_block("zr", Wx, Wh, bias, x_scale, h_scale, (0, 1), U, up, in_p, row0=up),
                      fused_block("c", Wx, Wh, bias, x_scale, h_scale, (2,), U, up, in_p, row0=0, frac=frac)]
            blocks[1].input = "xrh"     # [x | r*h]: the reset gate applied before the mat-vec
        # h8 is requantised from h16, in the candidate's format
        options = {"reset_after": bool(layer.options["reset_after"])}
        return cls.new_qrnn(layer, x_scale, in_p, ranges, blocks, cand_q,
                            dict(options, cand_q=cand_q) if own else options)

    @classmethod
    def dequantize(cls, q):
        U, up, n = q.units, q.up, q.in_dim
        kT, rT = np.zeros((3 * U, n)), np.zeros((3 * U, U))
        x, h = slice(0, n), slice(q.in_p, q.in_p + U)
        zr = q.block("zr")
        put_gate_rows(kT, real_weights(zr, x, q.x_scale), (0, 1), U, up)
        put_gate_rows(rT, real_weights(zr, h, q.h_scale), (0, 1), U, up)
        if q.options["reset_after"]:
            # z and r add their input and recurrent biases into one: all of it on the input side
            b = np.zeros((2, 3 * U))
            cx, ch = q.block("cx"), q.block("ch")
            put_gate_rows(kT, real_weights(cx, x, q.x_scale), (2,), U, up)
            put_gate_rows(rT, real_weights(ch, slice(0, U), q.h_scale), (2,), U, up)
            for row, blk, gates in ((0, zr, (0, 1)), (0, cx, (2,)), (1, ch, (2,))):
                put_gate_rows(b[row], real_bias(blk), gates, U, up)
        else:
            b = np.zeros(3 * U)
            c = q.block("c")    # [x | r*h], r*h on h's scale
            put_gate_rows(kT, real_weights(c, x, q.x_scale), (2,), U, up)
            put_gate_rows(rT, real_weights(c, h, q.h_scale), (2,), U, up)
            put_gate_rows(b, real_bias(zr), (0, 1), U, up)
            put_gate_rows(b, real_bias(c), (2,), U, up)
        return {"kernel": kT.T, "recurrent_kernel": rT.T, "bias": b}

    # ---- golden model ------------------------------------------------------------
    @classmethod
    def golden_accumulate(cls, l, s, x):
        if l.options["reset_after"]:
            return super().golden_accumulate(l, s, x)
        U = l.up
        zr, c = l.block("zr"), l.block("c")
        acc = np.zeros((len(x), l.acc_rows), np.int64)
        acc[:, U:3 * U] = zr.bias[None, :] + matvec(zr.w, np.concatenate([x, s["h8"]], axis=1))
        ra = l.recurrent_activation
        r = act_q(ra, pre16(acc[:, 2 * U:3 * U], zr.mult[U:], zr.ls))
        rh8 = fp.sat8(fp.round_shift(r * s["h8"], out_q(ra)))
        acc[:, :U] = c.bias[None, :] + matvec(c.w, np.concatenate([x, rh8], axis=1))
        return acc

    @classmethod
    def golden_cell(cls, l, s, acc):
        U = l.up
        a, ra = l.activation, l.recurrent_activation
        qr = out_q(ra)
        pre = planes16(l, acc)
        z = act_q(ra, pre[:, U:2 * U])
        if l.options["reset_after"]:
            r = act_q(ra, pre[:, 2 * U:3 * U])
            pn = fp.sat16(pre[:, :U] + fp.round_shift(r * pre[:, 3 * U:4 * U], qr))
        else:
            pn = pre[:, :U]
        n = act_q(a, pn)
        h16 = fp.sat16(n + fp.round_shift(z * (s["h16"] - n), qr))
        return {"h8": fp.sat8(fp.requantize(h16, l.h_mult, l.h_ls)), "h16": h16}

    @classmethod
    def plane_frac(cls, l):
        f = super().plane_frac(l)
        if l.activation not in LUTS:   # the candidate's planes: n, and hn (reset_after=True)
            for p in (0, 3) if l.options["reset_after"] else (0,):
                f[p * l.up:(p + 1) * l.up] = cls.candidate_q(l)
        return f

    @classmethod
    def candidate_values(cls, l, s, acc, pre):
        U, ra = l.up, l.recurrent_activation
        parts = [pre[:, :U], cls.golden_cell(l, s, acc)["h16"]]   # the candidate's sum and the state
        if l.options["reset_after"]:   # its recurrent part, and the sum the reset gate makes
            r = act_q(ra, pre[:, 2 * U:3 * U])
            parts += [pre[:, 3 * U:4 * U], fp.sat16(pre[:, :U] + fp.round_shift(r * pre[:, 3 * U:4 * U], out_q(ra)))]
        return parts

    # ---- C -------------------------------------------------------------------------
    @classmethod
    def c_state(cls, l, i):
        return [("int16_t", f"h16_{i}", l.up, f"hidden state, {cls.candidate_q(l)} fractional bits")]
