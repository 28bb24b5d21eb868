/*
 * rnnskip delta-network kernels (rnnskip_delta_s8.c): the column-sparse half
 * of a delta step. Specification: rnnskip/delta/golden.py.
 *
 * A delta step of one layer is
 *     n = rnnskip_delta_gather_s8(x, last, ..., list, 0);          (input part, theta_x)
 *     n = rnnskip_delta_gather_s8(h, last + in, ..., list, n);     (hidden part, theta_h)
 *     rnnskip_delta_mat_vec_s8(w, list, n, M, rows);               (only transmitting columns)
 * then the cell on M. (When input and hidden columns update different rows, as a GRU's
 * do, the input part is padded to a whole pair with rnnskip_delta_pad_pair_s8 and three
 * calls run: the rows both update over both parts, then each part's own rows.)
 *
 * Weight layout ("column-major paired"): a matrix W [rows][cols] (int8, values in
 * [-127, 127]) is stored column by column, each column as rows/2 int16
 *     v[k][p] = 256 * W[2p+1][k] + W[2p][k]
 * i.e. `rows` bytes per column, column k at byte offset k * rows. A skipped
 * column is never read.
 *
 * Transmit list: int32 words, one triple per *pair* of transmitting columns j, j+1:
 *     list[3i] = byte offset of column j, list[3i+1] = byte offset of column j+1,
 *     list[3i+2] = (int16 delta_j) | (int16 delta_{j+1}) << 16 (little-endian halves).
 * Capacity: 3 * ((max columns + 1) / 2) words.
 */
#ifndef RNNSKIP_DELTA_KERNELS_H
#define RNNSKIP_DELTA_KERNELS_H

#include <stdint.h>
#include "rnnskip_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * For k in [0, n): d = v[k] - last[k]; if |d| > theta, column k transmits:
 * last[k] = v[k] and entry `count` of the list becomes (off0 + k * col_bytes, d);
 * count grows by one. Returns the new count (entries are appended after the
 * `count` already there, so an input part and a hidden part can share a list).
 * theta >= 0 (0: every changed element transmits). v and last: int8 [n].
 */
int32_t rnnskip_delta_gather_s8(const int8_t *v,
                                int8_t *last,
                                int32_t n,
                                int32_t theta,
                                int32_t col_bytes,
                                int32_t off0,
                                int32_t *list,
                                int32_t count);

/*
 * Rounds count up to a whole pair: when it is odd, entry `count` becomes a copy of
 * the column before it with delta 0 (contributes nothing). Returns the new count.
 * Lets a second part start its entries at a pair boundary of the same list.
 */
int32_t rnnskip_delta_pad_pair_s8(int32_t *list, int32_t count);

/*
 * acc[r] += sum_{j < count} W[k_j][r] * delta_j for r in [0, rows): the running
 * sums of the transmitting columns only. w: column-major paired layout (above),
 * 4-byte aligned; rows % 4 == 0; acc int32 [rows]. Exact integer arithmetic
 * (the result never depends on the order of the columns). When count is odd
 * the kernel writes one padding entry (delta 0) after the last one, so the
 * list must have room for it. w, list and acc must not overlap.
 *
 * DSP path (Thumb-2 asm, Cortex-M4/M7/M33...): 4 output rows per pass over the
 * list; per pair of columns one SMLAD pair on the paired int16 weights
 * (A = 256*row(2p+1) + row(2p)) and one on their sign-extended low bytes
 * (B = row(2p)), so row(2p+1) = (A - B) >> 8, exact for <= 256 columns per
 * pass (longer lists run in chunks). One pair of columns x 4 rows (8 MACs) is
 * 5 loads + 8 single-cycle instructions, ~14 cycles; ~30 cycles per 4 rows
 * per pass. Plain C elsewhere.
 */
void rnnskip_delta_mat_vec_s8(const int16_t *w, int32_t *list, int32_t count, int32_t *acc, int32_t rows);

/*
 * Cell sparsity: 1 when a unit must be evaluated, i.e. one of its rows r = p * stride
 * (p < planes) has uint32(M[r] - Ml[r] + (lim[r] >> 1)) >= lim[r], which is
 * |M[r] - Ml[r]| >= T for lim = 2T - 1 (lim 0: always). Specification:
 * rnnskip/delta/golden.py (units_moved). The C keeps Mb = Ml - (lim >> 1) instead of
 * Ml (the same test in wrapping uint32 arithmetic, one add fewer per row); an evaluated
 * unit sets Mb = M - (lim >> 1) for its rows. M, Mb and lim point at the unit's first
 * row. No early exit and unrolled: straight-line loads (pipelined back to back on the M4)
 * and compares are cheaper than a branch per plane.
 */
RNNSKIP_INLINE int32_t
rnnskip_delta_unit_moved(const int32_t *M, int32_t *Mb, const uint32_t *lim, int32_t stride, int32_t planes)
{
    uint32_t moved = 0;
#pragma GCC unroll 4
    for (int32_t p = 0; p < planes; p++) moved |= (uint32_t)M[p * stride] - (uint32_t)Mb[p * stride] >= lim[p * stride];
    if (moved) {
#pragma GCC unroll 4
        for (int32_t p = 0; p < planes; p++)
            Mb[p * stride] = (int32_t)((uint32_t)M[p * stride] - (lim[p * stride] >> 1));
    }
    return (int32_t)moved;
}

#ifdef __cplusplus
}
#endif
#endif
