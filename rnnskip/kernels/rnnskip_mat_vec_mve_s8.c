/*
 * Helium (MVE) int8 matrix-vector kernels for Armv8.1-M cores (Cortex-M55/M85).
 * See rnnskip_kernels.h for the contracts; this file defines
 * rnnskip_mat_vec_acc_s8 (row-major int8) and rnnskip_mat_vec_paired_s8
 * (paired-row int16 layout) when RNNSKIP_USE_MVE is set (the compiler targets
 * MVE-I and neither RNNSKIP_NO_MVE nor RNNSKIP_NO_DSP is defined); otherwise it
 * is empty and rnnskip_mat_vec_s8.c / rnnskip_mat_vec_paired_s8.c provide the
 * DSP or plain-C versions.
 *
 * Four rows per pass share each 16-column load of x:
 *     xv = VLDRB.S8 x[k..k+15]
 *     a_r = VMLADAVA.S8 a_r, w_r[k..k+15], xv      for r = 0..3
 * VMLADAVA sums the 16 int8 x int8 products into a 32-bit scalar, i.e. the
 * same exact integer sum as the plain-C loop. Whole 16-column vectors run
 * unpredicated; the 4/8/12-column tail uses a VCTP.8 zeroing predicate
 * (predicated-off lanes do not access memory), so cols only needs to be a
 * multiple of 4, as for the other paths.
 *
 * Bit-exactness with the golden model is tested on QEMU's mps3-an547
 * (Cortex-M55 with MVE): Unicorn 2.1.4 cannot execute Armv8.1-M code.
 */
#include "rnnskip_kernels.h"

#if RNNSKIP_USE_MVE
#include <arm_mve.h>

void rnnskip_mat_vec_acc_s8(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols)
{
    for (int32_t r = 0; r < rows; r += 4) {
        const int8_t *w0 = w + r * cols;
        const int8_t *w1 = w0 + cols;
        const int8_t *w2 = w1 + cols;
        const int8_t *w3 = w2 + cols;
        const int8_t *xp = x;
        int32_t a0 = acc[r], a1 = acc[r + 1], a2 = acc[r + 2], a3 = acc[r + 3];
        int32_t k = cols;
        for (; k >= 16; k -= 16) {              /* whole vectors: no predication */
            const int8x16_t xv = vld1q_s8(xp);
            a0 = vmladavaq_s8(a0, vld1q_s8(w0), xv);
            a1 = vmladavaq_s8(a1, vld1q_s8(w1), xv);
            a2 = vmladavaq_s8(a2, vld1q_s8(w2), xv);
            a3 = vmladavaq_s8(a3, vld1q_s8(w3), xv);
            xp += 16;
            w0 += 16;
            w1 += 16;
            w2 += 16;
            w3 += 16;
        }
        if (k > 0) {                            /* 4, 8 or 12 columns left */
            const mve_pred16_t p = vctp8q((uint32_t)k);
            const int8x16_t xv = vldrbq_z_s8(xp, p);
            a0 = vmladavaq_s8(a0, vldrbq_z_s8(w0, p), xv);
            a1 = vmladavaq_s8(a1, vldrbq_z_s8(w1, p), xv);
            a2 = vmladavaq_s8(a2, vldrbq_z_s8(w2, p), xv);
            a3 = vmladavaq_s8(a3, vldrbq_z_s8(w3, p), xv);
        }
        acc[r] = a0;
        acc[r + 1] = a1;
        acc[r + 2] = a2;
        acc[r + 3] = a3;
    }
}

/*
 * Paired-row int16 layout (see rnnskip_mat_vec_paired_s8.c for the contract and
 * the A/B trick): for a pair p and a chunk of <= 512 columns, with x widened to
 * int16 by the load (VLDRB.S16) and v[p] loaded as 8 int16 lanes:
 *     A += VMLADAVA.S16(v, x)             = 256 * row(2p+1) + row(2p)   (mod 2^32)
 *     B += VMLADAVA.S16(VMOVLB.S8(v), x)  = row(2p)   (VMOVLB: the low bytes, sign-extended)
 * row(2p) = B, row(2p+1) = (A - B) >> 8 (exact for chunks of <= 512 columns).
 * Two pairs (4 rows) per pass share each x load; whole 8-column vectors run
 * unpredicated, a 4-column tail under VCTP.16.
 */
#define RNNSKIP_PAIRED_MVE_CHUNK 512

static inline int32_t rnnskip_mve_u2s(uint32_t u)
{
    return u <= 0x7FFFFFFFu ? (int32_t)u : -(int32_t)(~u) - 1;
}

void rnnskip_mat_vec_paired_s8(const int16_t *wp,
                               const int8_t *x,
                               const int32_t *bias,
                               int32_t *out,
                               int32_t rows,
                               int32_t cols)
{
    for (int32_t p = 0; p < rows / 2; p += 2) {
        const int16_t *v0 = wp + p * cols;
        const int16_t *v1 = v0 + cols;
        uint32_t r[4];
        for (int32_t j = 0; j < 4; j++) r[j] = bias ? (uint32_t)bias[2 * p + j] : 0u;
        for (int32_t c0 = 0; c0 < cols; c0 += RNNSKIP_PAIRED_MVE_CHUNK) {
            int32_t k = cols - c0 < RNNSKIP_PAIRED_MVE_CHUNK ? cols - c0 : RNNSKIP_PAIRED_MVE_CHUNK;
            const int8_t *xp = x + c0;
            const int16_t *q0 = v0 + c0, *q1 = v1 + c0;
            int32_t a0 = 0, b0 = 0, a1 = 0, b1 = 0;
            for (; k >= 8; k -= 8) {            /* whole vectors: no predication */
                const int16x8_t xv = vldrbq_s16(xp);
                const int16x8_t w0 = vld1q_s16(q0);
                const int16x8_t w1 = vld1q_s16(q1);
                a0 = vmladavaq_s16(a0, w0, xv);
                b0 = vmladavaq_s16(b0, vmovlbq_s8(vreinterpretq_s8_s16(w0)), xv);
                a1 = vmladavaq_s16(a1, w1, xv);
                b1 = vmladavaq_s16(b1, vmovlbq_s8(vreinterpretq_s8_s16(w1)), xv);
                xp += 8;
                q0 += 8;
                q1 += 8;
            }
            if (k > 0) {                        /* 4 columns left */
                const mve_pred16_t pr = vctp16q((uint32_t)k);
                const int16x8_t xv = vldrbq_z_s16(xp, pr);
                const int16x8_t w0 = vldrhq_z_s16(q0, pr);
                const int16x8_t w1 = vldrhq_z_s16(q1, pr);
                a0 = vmladavaq_s16(a0, w0, xv);
                b0 = vmladavaq_s16(b0, vmovlbq_s8(vreinterpretq_s8_s16(w0)), xv);
                a1 = vmladavaq_s16(a1, w1, xv);
                b1 = vmladavaq_s16(b1, vmovlbq_s8(vreinterpretq_s8_s16(w1)), xv);
            }
            r[0] += (uint32_t)b0;
            r[1] += (uint32_t)(rnnskip_mve_u2s((uint32_t)a0 - (uint32_t)b0) >> 8);
            r[2] += (uint32_t)b1;
            r[3] += (uint32_t)(rnnskip_mve_u2s((uint32_t)a1 - (uint32_t)b1) >> 8);
        }
        for (int32_t j = 0; j < 4; j++) out[2 * p + j] = rnnskip_mve_u2s(r[j]);
    }
}

#else
/* ISO C forbids an empty translation unit. */
typedef int rnnskip_mat_vec_mve_unused;
#endif
