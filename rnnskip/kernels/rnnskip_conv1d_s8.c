/*
 * The streamed Conv1D front end: ring buffer, convolution accumulators and pooling.
 * See rnnskip_kernels.h for the contracts; the golden model is
 * rnnskip/quant/golden.py (FrontEnd).
 */
#include <string.h>
#include "rnnskip_kernels.h"

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

/* Tap k's weights are the row-major [cout][cin] matrix at w + k * cout * cin, so each tap is one
 * call of rnnskip_mat_vec_acc_s8 (DSP assembly, Helium or plain C; the cmsis-nn provider's with
 * --kernels cmsis-nn) on that tap's frame. */
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
    for (int32_t o = 0; o < cout; o++) acc[o] = bias[o];
    int32_t slot = head; /* the oldest frame: tap 0 */
    for (int32_t k = 0; k < taps; k++) {
        rnnskip_mat_vec_acc_s8(w + k * cout * cin, ring + slot * cin, acc, cout, cin);
        slot += dilation;
        if (slot >= window) slot -= window;
    }
}

/* Tap by tap, as rnnskip_conv1d_acc_s8: each tap's weights are contiguous over the output channels. */
void rnnskip_depthwise_conv1d_acc_s8(const int8_t *ring,
                                     int32_t head,
                                     int32_t window,
                                     int32_t taps,
                                     int32_t dilation,
                                     int32_t frame_len,
                                     int32_t multiplier,
                                     const int8_t *w,
                                     const int32_t *bias,
                                     int32_t cout,
                                     int32_t cout_p,
                                     int32_t *acc)
{
    for (int32_t o = 0; o < cout_p; o++) acc[o] = bias[o];
    int32_t slot = head; /* the oldest frame: tap 0 */
    for (int32_t k = 0; k < taps; k++) {
        const int8_t *frame = ring + slot * frame_len;
        const int8_t *wk = w + k * cout_p;
        for (int32_t c = 0, o = 0; o < cout; c++)
            for (int32_t j = 0; j < multiplier; j++, o++) acc[o] += wk[o] * frame[c];
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
