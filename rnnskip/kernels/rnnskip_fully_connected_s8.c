/* The final Dense layer (int16 logits) and the layer normalisation of a Dense layer's input; see
 * rnnskip_kernels.h. The other Dense layers are the inlined rnnskip_fully_connected_s8. */
#include "rnnskip_kernels.h"

/* floor(sqrt(v)), one result bit per iteration (no division, no float) */
static uint32_t rnnskip_isqrt64(uint64_t v)
{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)r;
}

void rnnskip_layer_norm_s8(const int8_t *x,
                           int32_t n,
                           int32_t cols,
                           int64_t eps_term,
                           int32_t mult,
                           int32_t frac,
                           int8_t *out)
{
    int32_t s = 0, q = 0;
    for (int32_t j = 0; j < n; j++) {
        s += x[j];
        q += x[j] * x[j];
    }
    const int64_t d = (int64_t)n * q - (int64_t)s * s + eps_term;
    const int64_t root = (int64_t)rnnskip_isqrt64((uint64_t)d << (2 * frac));
    /* mult / R on 2^31 once per call; |n x - S| * g < 2^47 (golden.NORM_SHIFT says why) */
    const uint64_t g = root == 0 ? 0 : (uint64_t)((((int64_t)mult << 31) + root / 2) / root);
    for (int32_t j = 0; j < n; j++) {
        const int32_t a = n * x[j] - s;
        const uint64_t m = ((uint64_t)(a < 0 ? -a : a) * g + ((uint64_t)1 << 30)) >> 31; /* half away from 0 */
        const int32_t z = m > 127 ? 127 : (int32_t)m;
        out[j] = (int8_t)(a < 0 ? -z : z);
    }
    for (int32_t j = n; j < cols; j++) out[j] = 0;
}

void rnnskip_fully_connected_s8_s16(const int8_t *x,
                                    const int8_t *w,
                                    const int32_t *bias,
                                    const int32_t *mult,
                                    int32_t ls,
                                    int32_t rows,
                                    int32_t cols,
                                    int32_t *acc,
                                    int16_t *out)
{
    for (int32_t r = 0; r < rows; r++) acc[r] = bias[r];
    rnnskip_mat_vec_acc_s8(w, x, acc, rows, cols);
    for (int32_t r = 0; r < rows; r++) out[r] = (int16_t)rnnskip_sat16(rnnskip_requantize(acc[r], mult[r], ls));
}
