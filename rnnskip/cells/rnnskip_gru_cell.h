/*
 * GRU cell on its accumulators. Specification: rnnskip/cells/gru.py (GRU.golden_cell,
 * GRU.golden_accumulate).
 *
 *   acc   int32 planes [n | z | r | hn], n rows each (hn only when reset_after): the
 *         candidate's input part (reset_after) or its whole pre-activation, the gates,
 *         the candidate's recurrent part
 *   mi    their requantisation multipliers interleaved per unit (4 per unit with
 *         reset_after, else 3); ls_n, ls_zr, ls_hn their left shifts
 *   h16   int16 hidden state in the candidate's format (updated); h8 its int8 copy (written)
 *
 *   z, r = ract(pre), pre = sat16(rq(acc))                         (format qr)
 *   pn = reset_after ? sat16(pre(n) + rshift(r * pre(hn), qr)) : pre(n)
 *   cand = act(pn);  h16 = sat16(cand + rshift(z * (h16 - cand), qr));  h8 = sat8(rq(h16, h_mult, h_ls))
 */
#ifndef RNNSKIP_GRU_CELL_H
#define RNNSKIP_GRU_CELL_H

#include "rnnskip_kernels.h"

/* One unit: acc and mi point at unit j's first plane row and multipliers (planes n rows apart),
 * h16 and h8 at its state. The delta step's cell sparsity calls it for the units that moved. */
RNNSKIP_INLINE void rnnskip_gru_unit_s16(const int32_t *acc,
                                         const int32_t *mi,
                                         int32_t n,
                                         int32_t ls_n,
                                         int32_t ls_zr,
                                         int32_t ls_hn,
                                         int16_t *h16,
                                         int8_t *h8,
                                         int32_t h_mult,
                                         int32_t h_ls,
                                         int32_t act,
                                         int32_t ract,
                                         int32_t reset_after)
{
    const int32_t qr = rnnskip_act_out_q(ract);
    int32_t pn = rnnskip_pre16(acc[0], mi[0], ls_n);
    if (reset_after) {
        const int32_t r = rnnskip_act_q(ract, rnnskip_pre16(acc[2 * n], mi[2], ls_zr));
        pn = rnnskip_sat16(pn + rnnskip_round_shift(r * rnnskip_pre16(acc[3 * n], mi[3], ls_hn), qr));
    }
    const int32_t z = rnnskip_act_q(ract, rnnskip_pre16(acc[n], mi[1], ls_zr));
    const int32_t cand = rnnskip_act_q(act, pn);
    const int32_t hn = rnnskip_sat16(cand + rnnskip_round_shift(z * (*h16 - cand), qr));
    *h16 = (int16_t)hn;
    *h8 = (int8_t)rnnskip_sat8(rnnskip_requantize(hn, h_mult, h_ls));
}

RNNSKIP_INLINE void rnnskip_gru_cell_s16(const int32_t *acc,
                                         const int32_t *mi,
                                         int32_t n,
                                         int32_t ls_n,
                                         int32_t ls_zr,
                                         int32_t ls_hn,
                                         int16_t *h16,
                                         int8_t *h8,
                                         int32_t h_mult,
                                         int32_t h_ls,
                                         int32_t act,
                                         int32_t ract,
                                         int32_t reset_after)
{
    const int32_t planes = reset_after ? 4 : 3;
    for (int32_t j = 0; j < n; j++, acc++, mi += planes, h16++, h8++)
        rnnskip_gru_unit_s16(acc, mi, n, ls_n, ls_zr, ls_hn, h16, h8, h_mult, h_ls, act, ract, reset_after);
}

/* reset_after=False, between the gates' mat-vec and the candidate's: rh = sat8(rshift(r * h, qr))
 * with r = ract(pre(acc_r)); acc_r is plane r, mi the layer's interleaved multipliers (3 per
 * unit). rh may alias h (the generated code puts r*h where h was; the cell rebuilds h from h16). */
RNNSKIP_INLINE void rnnskip_gru_reset_s8(const int32_t *acc_r,
                                         const int32_t *mi,
                                         int32_t n,
                                         int32_t ls_zr,
                                         const int8_t *h,
                                         int8_t *rh,
                                         int32_t ract)
{
    const int32_t qr = rnnskip_act_out_q(ract);
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_act_q(ract, rnnskip_pre16(acc_r[j], mi[3 * j + 2], ls_zr));
        rh[j] = (int8_t)rnnskip_sat8(rnnskip_round_shift(r * h[j], qr));
    }
}

#endif
