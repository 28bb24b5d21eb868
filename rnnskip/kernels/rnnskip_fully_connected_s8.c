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
    for (int32_t j = 0; j < n; j++) {
        int32_t z = 0;
        if (root != 0) {
            const int64_t num = (int64_t)(n * x[j] - s) * mult;
            const int64_t m = ((num < 0 ? -num : num) + root / 2) / root; /* half away from zero */
            z = m > 127 ? 127 : (int32_t)m;
            if (num < 0) z = -z;
        }
        out[j] = (int8_t)z;
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
