/* Sigmoid and tanh on int16 vectors: Q3.12 in, Q0.15 out (see rnnskip_kernels.h). */
#include "rnnskip_kernels.h"

void rnnskip_sigmoid_s16(const int16_t *in, int16_t *out, int32_t n)
{
    for (int32_t j = 0; j < n; j++) out[j] = (int16_t)rnnskip_sigmoid_q15(in[j]);
}

void rnnskip_tanh_s16(const int16_t *in, int16_t *out, int32_t n)
{
    for (int32_t j = 0; j < n; j++) out[j] = (int16_t)rnnskip_tanh_q15(in[j]);
}
