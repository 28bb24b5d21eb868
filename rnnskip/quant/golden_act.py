"""Golden LSTM/GRU step for any gate activations (issue 7): the specification of
rnnskip_lstm_cell_act_s16 / rnnskip_gru_*_act_* in rnnskip_act_s16.c.

Layers with activation='tanh' and recurrent_activation='sigmoid' never come here
(GoldenModel.layer_step keeps its own code for them); for those activations the
formulas below reduce to the same arithmetic (all shifts 15).

Notation: ``qa = out_q(activation)``, ``qr = out_q(recurrent_activation)`` (15 for
table activations, 12 for relu/linear), ``cs`` the LSTM cell shift.

LSTM:  i, f, o = ract(pre), g = act(pre)
       c  = sat16(rshift(f*c, qr) + rshift(i*g, qr + qa - cs))
       t  = act(c)  (tables: of c as Q3.12 -> Q0.15; relu/linear: c itself at 2^-cs)
       h8 = sat8(rq(rshift(o*t, qr), h_mult, h_ls))          (h_mult from t's format)
GRU:   z, r = ract(pre)
       reset_after:  pn = sat16(qx + rshift(r*qh, qr))
       otherwise:    rh8 = sat8(rshift(r*h8, qr)); pn = sat16(rq([x | rh8] @ Wc))
       n  = act(pn)  (format qa);  h16 = sat16(n + rshift(z*(h16 - n), qr))  (format qa)
       h8 = sat8(rq(h16, h_mult, h_ls))
"""
from __future__ import annotations

import numpy as np

from . import act as A
from . import fixedpoint as fp
from .golden import mat, rq16
from .model import QRNN


def layer_step_act(l: QRNN, s: dict, x: np.ndarray) -> dict:
    U = l.up
    a, ra = l.activation, l.recurrent_activation
    qa, qr = A.out_q(a), A.out_q(ra)
    xh = np.concatenate([x, s["h8"]], axis=1)
    if l.kind == "lstm":
        g = l.mats["gates"]
        pre = rq16(g, mat(g, xh))
        i = A.act_q(ra, pre[:, 0:U])
        f = A.act_q(ra, pre[:, U:2 * U])
        gg = A.act_q(a, pre[:, 2 * U:3 * U])
        o = A.act_q(ra, pre[:, 3 * U:4 * U])
        c = fp.sat16(fp.round_shift(f * s["c"], qr) + fp.round_shift(i * gg, qr + qa - l.cell_shift))
        t = A.cell_act(a, c, l.cell_shift)
        h8 = fp.sat8(fp.requantize(fp.round_shift(o * t, qr), l.h_mult, l.h_ls))
        return {"h8": h8, "c": c}
    zr = l.mats["zr"]
    pre = rq16(zr, mat(zr, xh))
    z, r = A.act_q(ra, pre[:, :U]), A.act_q(ra, pre[:, U:])
    if l.reset_after:
        cx, ch = l.mats["cx"], l.mats["ch"]
        qxh = rq16(cx, mat(cx, x))
        qhh = rq16(ch, mat(ch, s["h8"]))
        pn = fp.sat16(qxh + fp.round_shift(r * qhh, qr))
    else:
        c = l.mats["c"]
        rh8 = fp.sat8(fp.round_shift(r * s["h8"], qr))
        pn = rq16(c, mat(c, np.concatenate([x, rh8], axis=1)))
    n = A.act_q(a, pn)
    h16 = fp.sat16(n + fp.round_shift(z * (s["h16"] - n), qr))
    h8 = fp.sat8(fp.requantize(h16, l.h_mult, l.h_ls))
    return {"h8": h8, "h16": h16}
