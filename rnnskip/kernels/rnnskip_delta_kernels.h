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
 * DSP path (Thumb-2 asm, Cortex-M4/M7/M33...): per pair of columns and row
 * pair one SMLAD on the paired int16 weights (A = 256*row(2p+1) + row(2p)) and
 * one on their sign-extended low bytes (B = row(2p)), so row(2p+1) =
 * (A - B) >> 8, exact for <= 256 columns per pass (longer lists run in
 * chunks). 6 rows per pass over the list: 4 from a word of each column, 2 from
 * a halfword of each column taken from the last third of the rows, so every
 * load is aligned; the rows % 12 left over (0, 4 or 8) and matrices of fewer
 * than 12 rows go 4 per pass. Plain C elsewhere.
 *
 * Cortex-M4 model (rnnskip/simulator/cycles.py: LDR 2 cycles, 1 right after a
 * single LDR whose result it does not use as an address; STR 1; LDM/STM 1 + N;
 * other instructions 1; taken branch +1, BX +2, load to PC +3). One pair of
 * columns x 6 rows (12 MACs): 3 list + 4 weight loads back to back (8 cycles),
 * 3 PKHBT/PKHTB (the two columns' lanes into one register), 3 SXTB16, 6 SMLAD:
 * 20 cycles, 0.6 MAC/cycle. Per 6 rows per pass ~36 cycles: acc 6 loads, 6
 * fix-ups, 6 stores; loop end test 5, jump into the unrolled loop 5, pointers
 * and block test 6. 384 x 168 at 5/10/20/40/100 % of the columns: 0.41/0.47/
 * 0.54/0.55/0.58 MAC/cycle (4 rows per pass, as before: 0.36/0.42/0.49/0.52/0.54).
 *
 * Why not 0.7 at <= 20 %: the dense paired kernel (0.82) stores two columns per
 * lane; here the two columns of a pair are chosen at run time, so one pair x 4
 * rows takes >= 2 weight loads + 8 ALU instructions (2 PKH, 2 SXTB16, 4 SMLAD),
 * 10 cycles for 8 MACs, plus 3 list loads and a load-chain start (4 cycles) per
 * pair per pass. R rows per pass (R a multiple of 4): 8 / (10 + 16 / R) = 0.57 (R 4),
 * 0.67 (8), 0.71 (12); R = 6 loads a word and a halfword per column: 20 cycles, 0.6;
 * all before the acc traffic and loop control (~6 cycles per row).
 * At 20 % (34 columns) 0.7 allows 48.6 cycles per row; the pair steps alone take
 * 56.7 at R = 6 and would still take 48.2 at R = 12. R is capped by registers:
 * A and B need 2 per row pair, so R = 8 needs 8 accumulators + list pointer + 2
 * weight bases + 6 step temporaries (2 offsets, D, 2 words, 1 for the PKH) = 17
 * of the 14 (a pointer add per column instead of the second base: 2 cycles more
 * per pair and still 16; column pointers kept in the list and advanced in place
 * per block: 2 stores per pair and no PKH temporary, 29 cycles per 16 MACs). 3 list words per pair is the fewest loads: packing
 * two offsets into one word costs 2 ALU to save 1 load, an LDM costs 1 + N and
 * breaks the LDR chain (so does LDRD, 3 cycles).
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
