/* Recurrent cells and Dense layers with any supported activation; see
 * rnnskip_act_kernels.h and rnnskip/quant/golden_act.py (the specification). */
#include "rnnskip_act_kernels.h"

static inline int32_t pre16(int32_t acc, int32_t m, int32_t ls)
{
    return rnnskip_sat16(rnnskip_requantize(acc, m, ls));
}

static inline int32_t cell_to_q12(int32_t c, int32_t cell_shift)
{
    if (cell_shift > 12) return rnnskip_round_shift(c, cell_shift - 12);
    if (cell_shift < 12) return rnnskip_sat16(c * (1 << (12 - cell_shift)));
    return c;
}

void rnnskip_lstm_cell_act_s16(const int32_t *acc, const int32_t *mult, int32_t ls,
                               int16_t *c, int8_t *h, int32_t n,
                               int32_t cell_shift, int32_t h_mult, int32_t h_ls,
                               int32_t act, int32_t ract)
{
    const int32_t *af = acc + n, *ag = acc + 2 * n, *ao = acc + 3 * n;
    const int32_t *mf = mult + n, *mg = mult + 2 * n, *mo = mult + 3 * n;
    const int16_t *la = rnnskip_act_lut(act), *lr = rnnskip_act_lut(ract);
    const int32_t qr = rnnskip_act_out_q(ract);
    const int32_t ig_shift = qr + rnnskip_act_out_q(act) - cell_shift;
    for (int32_t j = 0; j < n; j++) {
        const int32_t i = rnnskip_act_q(ract, lr, pre16(acc[j], mult[j], ls));
        const int32_t f = rnnskip_act_q(ract, lr, pre16(af[j], mf[j], ls));
        const int32_t g = rnnskip_act_q(act, la, pre16(ag[j], mg[j], ls));
        const int32_t o = rnnskip_act_q(ract, lr, pre16(ao[j], mo[j], ls));
        const int32_t cn = rnnskip_sat16(rnnskip_round_shift(f * c[j], qr) +
                                         rnnskip_round_shift(i * g, ig_shift));
        c[j] = (int16_t)cn;
        int32_t t;
        if (la) t = rnnskip_lut_q15(la, cell_to_q12(cn, cell_shift));
        else t = (act == RNNSKIP_ACT_RELU && cn < 0) ? 0 : cn;
        h[j] = (int8_t)rnnskip_sat8(rnnskip_requantize(rnnskip_round_shift(o * t, qr), h_mult, h_ls));
    }
}

void rnnskip_gru_reset_act_s8(const int32_t *acc_r, const int32_t *m_r, int32_t ls,
                              const int8_t *h, int8_t *rh, int32_t n, int32_t ract)
{
    const int16_t *lr = rnnskip_act_lut(ract);
    const int32_t qr = rnnskip_act_out_q(ract);
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_act_q(ract, lr, pre16(acc_r[j], m_r[j], ls));
        rh[j] = (int8_t)rnnskip_sat8(rnnskip_round_shift(r * h[j], qr));
    }
}

void rnnskip_gru_candidate_act_s16(const int32_t *acc_r, const int32_t *m_r, int32_t ls_r,
                                   const int32_t *acc_x, const int32_t *m_x, int32_t ls_x,
                                   const int32_t *acc_h, const int32_t *m_h, int32_t ls_h,
                                   int16_t *pre_n, int32_t n, int32_t ract)
{
    const int16_t *lr = rnnskip_act_lut(ract);
    const int32_t qr = rnnskip_act_out_q(ract);
    for (int32_t j = 0; j < n; j++) {
        const int32_t r = rnnskip_act_q(ract, lr, pre16(acc_r[j], m_r[j], ls_r));
        const int32_t qx = pre16(acc_x[j], m_x[j], ls_x);
        const int32_t qh = pre16(acc_h[j], m_h[j], ls_h);
        pre_n[j] = (int16_t)rnnskip_sat16(qx + rnnskip_round_shift(r * qh, qr));
    }
}

void rnnskip_gru_cell_act_s16(const int32_t *acc_z, const int32_t *m_z, int32_t ls_z,
                              const int16_t *pre_n, int16_t *h16, int8_t *h8, int32_t n,
                              int32_t h_mult, int32_t h_ls, int32_t act, int32_t ract)
{
    const int16_t *la = rnnskip_act_lut(act), *lr = rnnskip_act_lut(ract);
    const int32_t qr = rnnskip_act_out_q(ract);
    for (int32_t j = 0; j < n; j++) {
        const int32_t z = rnnskip_act_q(ract, lr, pre16(acc_z[j], m_z[j], ls_z));
        const int32_t cand = rnnskip_act_q(act, la, pre_n[j]);
        const int32_t hn = rnnskip_sat16(cand + rnnskip_round_shift(z * (h16[j] - cand), qr));
        h16[j] = (int16_t)hn;
        h8[j] = (int8_t)rnnskip_sat8(rnnskip_requantize(hn, h_mult, h_ls));
    }
}

void rnnskip_fully_connected_act_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                                    const int32_t *mult, int32_t ls,
                                    int32_t rows, int32_t cols, int32_t act,
                                    int32_t out_mult, int32_t out_ls,
                                    int32_t *acc, int8_t *out)
{
    const int16_t *lut = rnnskip_act_lut(act);
    for (int32_t r = 0; r < rows; r++) acc[r] = bias[r];
    rnnskip_mat_vec_acc_s8(w, x, acc, rows, cols);
    for (int32_t r = 0; r < rows; r++) {
        int32_t v = rnnskip_requantize(acc[r], mult[r], ls);
        if (lut) v = rnnskip_requantize(rnnskip_lut_q15(lut, rnnskip_sat16(v)), out_mult, out_ls);
        v = rnnskip_sat8(v);
        if (act == RNNSKIP_ACT_RELU && v < 0) v = 0;
        out[r] = (int8_t)v;
    }
}
