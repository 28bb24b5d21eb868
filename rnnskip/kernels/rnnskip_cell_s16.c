/* Element-wise recurrent-cell arithmetic (LSTM, GRU); see rnnskip_kernels.h. */
#include "rnnskip_kernels.h"

void rnnskip_gate_preact_s16(const int32_t *ax, const int32_t *ah,
                             const int32_t *mx, const int32_t *sx,
                             const int32_t *mh, const int32_t *sh,
                             int16_t *pre, int32_t n)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t v = rnnskip_requantize(ax[j], mx[j], sx[j]) + rnnskip_requantize(ah[j], mh[j], sh[j]);
        pre[j] = (int16_t)rnnskip_sat(v, -32768, 32767);
    }
}

void rnnskip_requantize_s32_s16(const int32_t *acc, const int32_t *m, const int32_t *s,
                                int16_t *out, int32_t n)
{
    for (int32_t j = 0; j < n; j++)
        out[j] = (int16_t)rnnskip_sat(rnnskip_requantize(acc[j], m[j], s[j]), -32768, 32767);
}

static inline int32_t to_q12(int32_t c, int32_t cell_shift)
{
    if (cell_shift > 12) return rnnskip_round_shift(c, cell_shift - 12);
    if (cell_shift < 12) return rnnskip_sat(c * (1 << (12 - cell_shift)), -32768, 32767);
    return c;
}

void rnnskip_lstm_cell_s16(const int16_t *pre, int16_t *c, int8_t *h, int32_t n,
                           int32_t cell_shift, int32_t h_mult, int32_t h_shift)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t i = rnnskip_sigmoid_q15(pre[j]);
        const int32_t f = rnnskip_sigmoid_q15(pre[n + j]);
        const int32_t g = rnnskip_tanh_q15(pre[2 * n + j]);
        const int32_t o = rnnskip_sigmoid_q15(pre[3 * n + j]);
        const int32_t cn = rnnskip_sat(rnnskip_round_shift(f * c[j], 15) +
                                       rnnskip_round_shift(i * g, 30 - cell_shift), -32768, 32767);
        c[j] = (int16_t)cn;
        const int32_t t = rnnskip_tanh_q15(to_q12(cn, cell_shift));
        h[j] = (int8_t)rnnskip_sat(rnnskip_requantize(o * t, h_mult, h_shift), -128, 127);
    }
}

void rnnskip_gru_candidate_s16(const int16_t *pre_r, const int16_t *qxh, const int16_t *qhh,
                               int16_t *pre_n, int32_t n)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_sigmoid_q15(pre_r[j]);
        pre_n[j] = (int16_t)rnnskip_sat(qxh[j] + rnnskip_round_shift(r * qhh[j], 15), -32768, 32767);
    }
}

void rnnskip_gru_reset_s8(const int16_t *pre_r, const int8_t *h, int8_t *rh, int32_t n)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_sigmoid_q15(pre_r[j]);
        rh[j] = (int8_t)rnnskip_sat(rnnskip_round_shift(r * h[j], 15), -128, 127);
    }
}

void rnnskip_gru_cell_s16(const int16_t *pre_z, const int16_t *pre_n, int16_t *h16, int8_t *h8,
                          int32_t n, int32_t h_mult, int32_t h_shift)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t z = rnnskip_sigmoid_q15(pre_z[j]);
        const int32_t cand = rnnskip_tanh_q15(pre_n[j]);
        const int32_t hn = rnnskip_sat(cand + rnnskip_round_shift(z * (h16[j] - cand), 15), -32768, 32767);
        h16[j] = (int16_t)hn;
        h8[j] = (int8_t)rnnskip_sat(rnnskip_requantize(hn, h_mult, h_shift), -128, 127);
    }
}
