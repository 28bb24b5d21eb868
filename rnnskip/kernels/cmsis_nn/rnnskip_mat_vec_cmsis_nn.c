/*
 * cmsis-nn kernel provider: the model's int8 mat-vec on Arm's CMSIS-NN
 * (arm_nn_mat_mult_nt_t_s8_s32, int8 x int8 -> int32, accumulating into dst).
 * Built only with --kernels cmsis-nn and CMSIS_NN_PATH pointing at a checkout (CMSIS-NN v5.0.0 or
 * later; add Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8_s32.c and Include/ to your build);
 * everything else (cells, activations, requantisation) stays rnnskip's portable
 * code, so the arithmetic, and the golden model, are the same.
 */
#include "rnnskip_kernels.h"
#include "arm_nnsupportfunctions.h"

void rnnskip_mat_vec_acc_s8(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols)
{
    /* lhs = x as one row of `cols`; rhs = w, `rows` rows of `cols`; dst += lhs * rhs^T */
    (void)arm_nn_mat_mult_nt_t_s8_s32(x, w, acc, 1, cols, rows, 0, 1);
}

void rnnskip_mat_vec_acc_s8_naive(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols)
{
    rnnskip_mat_vec_acc_s8(w, x, acc, rows, cols);
}
