/* The final Dense layer (int16 logits); see rnnskip_kernels.h. The other Dense layers are the
 * inlined rnnskip_fully_connected_s8. */
#include "rnnskip_kernels.h"

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
