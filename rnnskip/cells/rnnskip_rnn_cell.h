/*
 * SimpleRNN cell on its accumulators. Specification: rnnskip/cells/simple_rnn.py
 * (SimpleRNN.golden_cell).
 *
 *   acc   int32 [a], n rows: bias + W @ [x | h] (dense step) or a delta network's running sums
 *   m     the rows' requantisation multipliers, ls their left shift
 *   h     int8 hidden state (written)
 *
 *   table activations: h = sat8(rq(act(sat16(rq(acc))), h_mult, h_ls))      (Q3.12 -> Q0.15 -> int8)
 *   relu, linear:      h = sat8(rq(acc)) (the multipliers map straight to h's scale), relu: max(h, 0)
 */
#ifndef RNNSKIP_RNN_CELL_H
#define RNNSKIP_RNN_CELL_H

#include "rnnskip_kernels.h"

/* One unit: acc and m point at unit j's row and multiplier, h at its state. The delta step's
 * cell sparsity calls it for the units that moved. */
RNNSKIP_INLINE void rnnskip_rnn_unit_s16(const int32_t *acc,
                                         const int32_t *m,
                                         int32_t ls,
                                         int8_t *h,
                                         int32_t h_mult,
                                         int32_t h_ls,
                                         int32_t act)
{
    const int32_t *lut = rnnskip_act_lut(act);
    int32_t v = rnnskip_pre16(*acc, *m, ls);
    if (lut) v = rnnskip_requantize(rnnskip_lut_q15(lut, v), h_mult, h_ls);
    v = rnnskip_sat8(v);
    if (act == RNNSKIP_ACT_RELU && v < 0) v = 0;
    *h = (int8_t)v;
}

RNNSKIP_INLINE void rnnskip_rnn_cell_s16(const int32_t *acc,
                                         const int32_t *m,
                                         int32_t n,
                                         int32_t ls,
                                         int8_t *h,
                                         int32_t h_mult,
                                         int32_t h_ls,
                                         int32_t act)
{
    for (int32_t j = 0; j < n; j++, acc++, m++, h++) rnnskip_rnn_unit_s16(acc, m, ls, h, h_mult, h_ls, act);
}

#endif
