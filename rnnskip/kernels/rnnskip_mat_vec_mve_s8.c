/*
 * Helium (MVE) int8 matrix-vector kernel for Armv8.1-M cores (Cortex-M55/M85).
 * See rnnskip_kernels.h for the contract; this file defines
 * rnnskip_mat_vec_acc_s8 when RNNSKIP_USE_MVE is set (the compiler targets
 * MVE-I and neither RNNSKIP_NO_MVE nor RNNSKIP_NO_DSP is defined); otherwise it
 * is empty and rnnskip_mat_vec_s8.c provides the DSP or plain-C version.
 *
 * Four rows per pass share each 16-column load of x:
 *     xv = VLDRB.S8 x[k..k+15]           (zeroing tail predicate from VCTP.8)
 *     a_r = VMLADAVA.S8 a_r, w_r[k..k+15], xv      for r = 0..3
 * VMLADAVA sums the 16 int8 x int8 products into a 32-bit scalar, i.e. the
 * same exact integer sum as the plain-C loop. Lanes past the end of a row are
 * switched off by the predicate (predicated-off lanes do not access memory), so
 * cols only needs to be a multiple of 4, as for the other paths.
 *
 * Bit-exactness with the golden model is tested on QEMU's mps3-an547
 * (Cortex-M55 with MVE): Unicorn 2.1.4 cannot execute Armv8.1-M code.
 */
#include "rnnskip_kernels.h"

#if RNNSKIP_USE_MVE
#include <arm_mve.h>

void rnnskip_mat_vec_acc_s8(const int8_t *w, const int8_t *x, int32_t *acc,
                            int32_t rows, int32_t cols)
{
    for (int32_t r = 0; r < rows; r += 4) {
        const int8_t *w0 = w + r * cols;
        const int8_t *w1 = w0 + cols;
        const int8_t *w2 = w1 + cols;
        const int8_t *w3 = w2 + cols;
        int32_t a0 = acc[r], a1 = acc[r + 1], a2 = acc[r + 2], a3 = acc[r + 3];
        for (int32_t k = 0; k < cols; k += 16) {
            const mve_pred16_t p = vctp8q((uint32_t)(cols - k));
            const int8x16_t xv = vldrbq_z_s8(x + k, p);
            a0 = vmladavaq_s8(a0, vldrbq_z_s8(w0 + k, p), xv);
            a1 = vmladavaq_s8(a1, vldrbq_z_s8(w1 + k, p), xv);
            a2 = vmladavaq_s8(a2, vldrbq_z_s8(w2 + k, p), xv);
            a3 = vmladavaq_s8(a3, vldrbq_z_s8(w3 + k, p), xv);
        }
        acc[r] = a0; acc[r + 1] = a1; acc[r + 2] = a2; acc[r + 3] = a3;
    }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int rnnskip_mat_vec_mve_unused;
#endif
