/*
 * The streamed Conv1D front end: ring buffer, convolution accumulators and pooling.
 * See rnnskip_kernels.h for the contracts; the golden model is
 * rnnskip/quant/golden.py (FrontEnd).
 */
#include <string.h>
#include "rnnskip_kernels.h"

typedef uint32_t __attribute__((may_alias, aligned(4))) rnnskip_conv_u32a;

int32_t rnnskip_ring_push_s8(int8_t *ring,
                             int32_t *head,
                             int32_t *wait,
                             const int8_t *frame,
                             int32_t frame_len,
                             int32_t window,
                             int32_t stride)
{
    memcpy(ring + *head * frame_len, frame, (uint32_t)frame_len);
    *head = *head + 1 == window ? 0 : *head + 1;
    if (*wait > 0) {
        (*wait)--;
        return 0;
    }
    *wait = stride - 1;
    return 1;
}

#if RNNSKIP_USE_DSP
/* x rotated right by 8 bits (GCC turns it into SXTB16's ROR #8 operand) */
static inline uint32_t ror8(uint32_t x)
{
    return (x >> 8) | (x << 24);
}

/* acc[0..1] += the dot products of two weight rows with one frame, 4 columns per step: one
 * word of x and one of each row, SXTB16 splits each into its even and odd bytes and SMLAD
 * multiplies and adds both pairs (as CMSIS-NN's arm_nn_mat_mul_core_1x_s8 inner loop). */
static inline void dot2_dsp(const int8_t *w0, const int8_t *w1, const int8_t *x, int32_t n, int32_t *a0, int32_t *a1)
{
    int32_t s0 = *a0, s1 = *a1;
    for (int32_t c = 0; c < n; c += 4) {
        const uint32_t xv = *(const rnnskip_conv_u32a *)(const void *)(x + c);
        const uint32_t v0 = *(const rnnskip_conv_u32a *)(const void *)(w0 + c);
        const uint32_t v1 = *(const rnnskip_conv_u32a *)(const void *)(w1 + c);
        const int32_t xe = (int32_t)__sxtb16(xv), xo = (int32_t)__sxtb16(ror8(xv));
        s0 = __smlad(xe, (int32_t)__sxtb16(v0), s0);
        s0 = __smlad(xo, (int32_t)__sxtb16(ror8(v0)), s0);
        s1 = __smlad(xe, (int32_t)__sxtb16(v1), s1);
        s1 = __smlad(xo, (int32_t)__sxtb16(ror8(v1)), s1);
    }
    *a0 = s0;
    *a1 = s1;
}
#endif

void rnnskip_conv1d_acc_s8(const int8_t *ring,
                           int32_t head,
                           int32_t window,
                           int32_t taps,
                           int32_t dilation,
                           int32_t cin,
                           const int8_t *w,
                           const int32_t *bias,
                           int32_t cout,
                           int32_t *acc)
{
    const int32_t cols = taps * cin;
    for (int32_t o = 0; o < cout; o++) acc[o] = bias[o];
    int32_t slot = head; /* the oldest frame: tap 0 */
    for (int32_t k = 0; k < taps; k++) {
        const int8_t *x = ring + slot * cin;
        const int8_t *wk = w + k * cin;
#if RNNSKIP_USE_DSP
        for (int32_t o = 0; o < cout; o += 2)
            dot2_dsp(wk + o * cols, wk + (o + 1) * cols, x, cin, &acc[o], &acc[o + 1]);
#else
        for (int32_t o = 0; o < cout; o++) {
            const int8_t *wr = wk + o * cols;
            int32_t a = 0;
            for (int32_t c = 0; c < cin; c++) a += (int32_t)wr[c] * x[c];
            acc[o] += a;
        }
#endif
        slot += dilation;
        if (slot >= window) slot -= window;
    }
}

void rnnskip_max_pool1d_s8(const int8_t *ring, int32_t window, int32_t ch, int8_t *out)
{
    for (int32_t c = 0; c < ch; c++) {
        int32_t m = ring[c];
        for (int32_t k = 1; k < window; k++)
            if (ring[k * ch + c] > m) m = ring[k * ch + c];
        out[c] = (int8_t)m;
    }
}

void rnnskip_avg_pool1d_s8(const int8_t *ring, int32_t window, int32_t ch, int8_t *out)
{
    for (int32_t c = 0; c < ch; c++) {
        int32_t sum = 0;
        for (int32_t k = 0; k < window; k++) sum += ring[k * ch + c];
        out[c] = (int8_t)(sum > 0 ? (sum + window / 2) / window : (sum - window / 2) / window);
    }
}
