/* Element-wise recurrent-cell arithmetic (LSTM, GRU); see rnnskip_kernels.h. */
#include "rnnskip_kernels.h"

static inline int32_t pre16(int32_t acc, int32_t m, int32_t ls)
{
    return rnnskip_sat16(rnnskip_requantize(acc, m, ls));
}

void rnnskip_requantize_s32_s16(const int32_t *acc, const int32_t *m, int32_t ls,
                                int16_t *out, int32_t n)
{
    for (int32_t j = 0; j < n; j++) out[j] = (int16_t)pre16(acc[j], m[j], ls);
}

static inline int32_t to_q12(int32_t c, int32_t cell_shift)
{
    if (cell_shift > 12) return rnnskip_round_shift(c, cell_shift - 12);
    if (cell_shift < 12) return rnnskip_sat16(c * (1 << (12 - cell_shift)));
    return c;
}

void rnnskip_lstm_cell_s16(const int32_t *acc, const int32_t *mult, int32_t ls,
                           int16_t *c, int8_t *h, int32_t n,
                           int32_t cell_shift, int32_t h_mult, int32_t h_ls)
{
    const int32_t *af = acc + n, *ag = acc + 2 * n, *ao = acc + 3 * n;
    const int32_t *mf = mult + n, *mg = mult + 2 * n, *mo = mult + 3 * n;
    for (int32_t j = 0; j < n; j++) {
        const int32_t i = rnnskip_sigmoid_q15(pre16(acc[j], mult[j], ls));
        const int32_t f = rnnskip_sigmoid_q15(pre16(af[j], mf[j], ls));
        const int32_t g = rnnskip_tanh_q15(pre16(ag[j], mg[j], ls));
        const int32_t o = rnnskip_sigmoid_q15(pre16(ao[j], mo[j], ls));
        const int32_t cn = rnnskip_sat16(rnnskip_round_shift(f * c[j], 15) +
                                       rnnskip_round_shift(i * g, 30 - cell_shift));
        c[j] = (int16_t)cn;
        const int32_t t = rnnskip_tanh_q15(to_q12(cn, cell_shift));
        h[j] = (int8_t)rnnskip_sat8(rnnskip_requantize(rnnskip_round_shift(o * t, 15), h_mult, h_ls));
    }
}

void rnnskip_gru_reset_s8(const int32_t *acc_r, const int32_t *m_r, int32_t ls,
                          const int8_t *h, int8_t *rh, int32_t n)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_sigmoid_q15(pre16(acc_r[j], m_r[j], ls));
        rh[j] = (int8_t)rnnskip_sat8(rnnskip_round_shift(r * h[j], 15));
    }
}

void rnnskip_gru_candidate_s16(const int32_t *acc_r, const int32_t *m_r, int32_t ls_r,
                               const int32_t *acc_x, const int32_t *m_x, int32_t ls_x,
                               const int32_t *acc_h, const int32_t *m_h, int32_t ls_h,
                               int16_t *pre_n, int32_t n)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_sigmoid_q15(pre16(acc_r[j], m_r[j], ls_r));
        const int32_t qx = pre16(acc_x[j], m_x[j], ls_x);
        const int32_t qh = pre16(acc_h[j], m_h[j], ls_h);
        pre_n[j] = (int16_t)rnnskip_sat16(qx + rnnskip_round_shift(r * qh, 15));
    }
}

void rnnskip_gru_cell_s16(const int32_t *acc_z, const int32_t *m_z, int32_t ls_z,
                          const int16_t *pre_n, int16_t *h16, int8_t *h8, int32_t n,
                          int32_t h_mult, int32_t h_ls)
{
    for (int32_t j = 0; j < n; j++) {
        const int32_t z = rnnskip_sigmoid_q15(pre16(acc_z[j], m_z[j], ls_z));
        const int32_t cand = rnnskip_tanh_q15(pre_n[j]);
        const int32_t hn = rnnskip_sat16(cand + rnnskip_round_shift(z * (h16[j] - cand), 15));
        h16[j] = (int16_t)hn;
        h8[j] = (int8_t)rnnskip_sat8(rnnskip_requantize(hn, h_mult, h_ls));
    }
}
