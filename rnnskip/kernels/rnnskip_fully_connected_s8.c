/* Dense layers on int8 vectors; see rnnskip_kernels.h. */
#include "rnnskip_kernels.h"

void rnnskip_fully_connected_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                                const int32_t *mult, int32_t ls,
                                int32_t rows, int32_t cols, int32_t act,
                                int32_t out_mult, int32_t out_ls,
                                int32_t *acc, int8_t *out)
{
    for (int32_t r = 0; r < rows; r++) acc[r] = bias[r];
    rnnskip_mat_vec_acc_s8(w, x, acc, rows, cols);
    for (int32_t r = 0; r < rows; r++) {
        int32_t v = rnnskip_requantize(acc[r], mult[r], ls);
        if (act == RNNSKIP_ACT_TANH || act == RNNSKIP_ACT_SIGMOID) {
            v = rnnskip_sat16(v);
            v = act == RNNSKIP_ACT_TANH ? rnnskip_tanh_q15(v) : rnnskip_sigmoid_q15(v);
            v = rnnskip_requantize(v, out_mult, out_ls);
        }
        v = rnnskip_sat8(v);
        if (act == RNNSKIP_ACT_RELU && v < 0) v = 0;
        out[r] = (int8_t)v;
    }
}

void rnnskip_fully_connected_s8_s16(const int8_t *x, const int8_t *w, const int32_t *bias,
                                    const int32_t *mult, int32_t ls,
                                    int32_t rows, int32_t cols, int32_t *acc, int16_t *out)
{
    for (int32_t r = 0; r < rows; r++) acc[r] = bias[r];
    rnnskip_mat_vec_acc_s8(w, x, acc, rows, cols);
    for (int32_t r = 0; r < rows; r++)
        out[r] = (int16_t)rnnskip_sat16(rnnskip_requantize(acc[r], mult[r], ls));
}
