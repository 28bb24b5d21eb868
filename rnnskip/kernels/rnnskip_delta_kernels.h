/*
 * rnnskip delta-network kernels (rnnskip_delta_s8.c): the column-sparse half
 * of a delta step. Specification: rnnskip/quant/delta_golden.py.
 *
 * A delta step of one layer is
 *     n = rnnskip_delta_gather_s8(x, last, ..., list, 0);          (input part, theta_x)
 *     n = rnnskip_delta_gather_s8(h, last + in, ..., list, n);     (hidden part, theta_h)
 *     rnnskip_delta_mat_vec_s8(w, list, n, M, rows);               (only transmitting columns)
 * then the cell on M. (A GRU pads the input part to a whole pair with
 * rnnskip_delta_pad_pair_s8 and runs three calls: z and r over both parts, the
 * candidate's input and hidden rows over one part each.)
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
int32_t rnnskip_delta_gather_s8(const int8_t *v, int8_t *last, int32_t n, int32_t theta,
                                int32_t col_bytes, int32_t off0, int32_t *list, int32_t count);

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
 * Cells on the running sums, for the generated code to call with literal shapes and
 * shifts: always inlined, so n and the shifts become immediates (about 15% fewer cycles
 * than the generic cell kernels, which take them in registers). Same arithmetic as
 * rnnskip_gru_candidate_s16 + rnnskip_gru_cell_s16 and rnnskip_lstm_cell_s16, bit for
 * bit. mi: the requantisation multipliers interleaved per unit, 4 per unit.
 */
#define RNNSKIP_DI static inline __attribute__((always_inline))

RNNSKIP_DI int32_t rnnskip_dpre16(int32_t acc, int32_t m, int32_t ls)
{
    return rnnskip_sat16(rnnskip_requantize(acc, m, ls));
}

/* GRU (reset_after=True): M = [cx | z | r | ch] (n rows each), mi = (m_cx, m_z, m_r, m_ch) per unit. */
RNNSKIP_DI void rnnskip_delta_gru_cell_inl(const int32_t *M, const int32_t *mi, int32_t n, int32_t ls_zr,
                                           int32_t ls_x, int32_t ls_h, int16_t *h16, int8_t *h8,
                                           int32_t h_mult, int32_t h_ls)
{
    for (int32_t j = 0; j < n; j++, M++, mi += 4) {
        const int32_t r = rnnskip_sigmoid_q15(rnnskip_dpre16(M[2 * n], mi[2], ls_zr));
        const int32_t qx = rnnskip_dpre16(M[0], mi[0], ls_x);
        const int32_t qh = rnnskip_dpre16(M[3 * n], mi[3], ls_h);
        const int32_t pn = rnnskip_sat16(qx + rnnskip_round_shift(r * qh, 15));
        const int32_t z = rnnskip_sigmoid_q15(rnnskip_dpre16(M[n], mi[1], ls_zr));
        const int32_t c = rnnskip_tanh_q15(pn);
        const int32_t hn = rnnskip_sat16(c + rnnskip_round_shift(z * (h16[j] - c), 15));
        h16[j] = (int16_t)hn;
        h8[j] = (int8_t)rnnskip_sat8(rnnskip_requantize(hn, h_mult, h_ls));
    }
}

/* LSTM: M = [i | f | g | o] (n rows each), mi = (m_i, m_f, m_g, m_o) per unit; c at scale 2^-cell_shift. */
RNNSKIP_DI void rnnskip_delta_lstm_cell_inl(const int32_t *M, const int32_t *mi, int32_t n, int32_t ls,
                                            int16_t *c, int8_t *h, int32_t cell_shift, int32_t h_mult,
                                            int32_t h_ls)
{
    for (int32_t j = 0; j < n; j++, M++, mi += 4) {
        const int32_t i = rnnskip_sigmoid_q15(rnnskip_dpre16(M[0], mi[0], ls));
        const int32_t f = rnnskip_sigmoid_q15(rnnskip_dpre16(M[n], mi[1], ls));
        const int32_t g = rnnskip_tanh_q15(rnnskip_dpre16(M[2 * n], mi[2], ls));
        const int32_t o = rnnskip_sigmoid_q15(rnnskip_dpre16(M[3 * n], mi[3], ls));
        const int32_t cn = rnnskip_sat16(rnnskip_round_shift(f * c[j], 15) +
                                         rnnskip_round_shift(i * g, 30 - cell_shift));
        c[j] = (int16_t)cn;
        int32_t q = cn;   /* cell state -> Q3.12 */
        if (cell_shift > 12) q = rnnskip_round_shift(cn, cell_shift - 12);
        else if (cell_shift < 12) q = rnnskip_sat16(cn * (1 << (12 - cell_shift)));
        const int32_t t = rnnskip_tanh_q15(q);
        h[j] = (int8_t)rnnskip_sat8(rnnskip_requantize(rnnskip_round_shift(o * t, 15), h_mult, h_ls));
    }
}

#ifdef __cplusplus
}
#endif
#endif
