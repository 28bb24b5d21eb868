/*
 * LSTM cell on its accumulators. Specification: rnnskip/cells/lstm.py (LSTM.golden_cell).
 *
 *   acc   int32 [i | f | g | o], n rows each: bias + W @ [x | h] (dense step) or a delta
 *         network's running sums; split: [ix | fx | gx | ox | ih | fh | gh | oh], bias + W_x @ x
 *         then W_h @ h, the input and recurrent halves each on their own per-row scales
 *   mi    the planes' requantisation multipliers interleaved per unit (4 per unit, split 8)
 *   ls_x  their left shift (split: the input half's), ls_h the recurrent half's (split only)
 *   act: cell activation, ract: i, f, o gates (RNNSKIP_ACT_*)
 *   qa    g's fractional bits: 15 (tables); relu/linear: its calibrated int16 format (g's planes are
 *         requantised to it, 12 = Q3.12 while its range stays within +-8)
 *   c     int16 cell state at scale 2^-cell_shift (updated)
 *   h     int8 hidden state, requantised with (h_mult, h_ls) (written)
 *
 *   pre = sat16(rq(acc)); split: sat16(rq(acc_x) + rq(acc_h))     (Q3.12; relu/linear g: qa)
 *   i, f, o = ract(pre), g = act(pre)                      (formats qr, qa)
 *   c = sat16(rshift(f * c, qr) + rshift(i * g, qr + qa - cell_shift))
 *   t = act(c): tables of c as Q3.12 (Q0.15); relu/linear: c itself (2^-cell_shift)
 *   h = sat8(rq(rshift(o * t, qr), h_mult, h_ls))
 */
#ifndef RNNSKIP_LSTM_CELL_H
#define RNNSKIP_LSTM_CELL_H

#include "rnnskip_kernels.h"

/* Cell state (int16 at 2^-cell_shift) -> Q3.12. */
RNNSKIP_INLINE int32_t rnnskip_cell_to_q12(int32_t c, int32_t cell_shift)
{
    if (cell_shift > 12) return rnnskip_round_shift(c, cell_shift - 12);
    if (cell_shift < 12) return rnnskip_sat16(c * (1 << (12 - cell_shift)));
    return c;
}

/* Gate k's pre-activation of one unit; split: its input half (plane k) plus its recurrent half (plane 4 + k),
 * added before they saturate (each requantised value is below 2^30 in magnitude, so the sum fits int32). */
RNNSKIP_INLINE int32_t
rnnskip_lstm_pre(const int32_t *acc, const int32_t *mi, int32_t n, int32_t ls_x, int32_t ls_h, int32_t split, int32_t k)
{
    const int32_t pre = rnnskip_requantize(acc[k * n], mi[k], ls_x);
    return rnnskip_sat16(split ? pre + rnnskip_requantize(acc[(4 + k) * n], mi[4 + k], ls_h) : pre);
}

/* One unit: acc and mi point at unit j's first gate row and multipliers (planes n rows apart),
 * c and h at its state. The delta step's cell sparsity calls it for the units that moved. */
RNNSKIP_INLINE void rnnskip_lstm_unit_s16(const int32_t *acc,
                                          const int32_t *mi,
                                          int32_t n,
                                          int32_t ls_x,
                                          int32_t ls_h,
                                          int32_t split,
                                          int16_t *c,
                                          int8_t *h,
                                          int32_t cell_shift,
                                          int32_t h_mult,
                                          int32_t h_ls,
                                          int32_t act,
                                          int32_t ract,
                                          int32_t qa)
{
    const int32_t qr = rnnskip_act_out_q(ract);
    const int32_t ig_shift = qr + qa - cell_shift;
    const int32_t *la = rnnskip_act_lut(act);
    const int32_t i = rnnskip_act_q(ract, rnnskip_lstm_pre(acc, mi, n, ls_x, ls_h, split, 0));
    const int32_t f = rnnskip_act_q(ract, rnnskip_lstm_pre(acc, mi, n, ls_x, ls_h, split, 1));
    const int32_t g = rnnskip_act_q(act, rnnskip_lstm_pre(acc, mi, n, ls_x, ls_h, split, 2));
    const int32_t o = rnnskip_act_q(ract, rnnskip_lstm_pre(acc, mi, n, ls_x, ls_h, split, 3));
    const int32_t cn = rnnskip_sat16(rnnskip_round_shift(f * *c, qr) + rnnskip_round_shift(i * g, ig_shift));
    *c = (int16_t)cn;
    const int32_t t = la ? rnnskip_lut_q15(la, rnnskip_cell_to_q12(cn, cell_shift)) : rnnskip_act_q(act, cn);
    *h = (int8_t)rnnskip_sat8(rnnskip_requantize(rnnskip_round_shift(o * t, qr), h_mult, h_ls));
}

RNNSKIP_INLINE void rnnskip_lstm_cell_s16(const int32_t *acc,
                                          const int32_t *mi,
                                          int32_t n,
                                          int32_t ls_x,
                                          int32_t ls_h,
                                          int32_t split,
                                          int16_t *c,
                                          int8_t *h,
                                          int32_t cell_shift,
                                          int32_t h_mult,
                                          int32_t h_ls,
                                          int32_t act,
                                          int32_t ract,
                                          int32_t qa)
{
    const int32_t stride = split ? 8 : 4;
    for (int32_t j = 0; j < n; j++, acc++, mi += stride, c++, h++)
        rnnskip_lstm_unit_s16(acc, mi, n, ls_x, ls_h, split, c, h, cell_shift, h_mult, h_ls, act, ract, qa);
}

#endif
