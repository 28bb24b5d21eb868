/*
 * rnnskip portable kernels: the integer arithmetic the Python golden model
 * (rnnskip/quant/golden.py) specifies. One function per operation, all buffers
 * passed in, no allocation. Each kernel has a plain-C path and, on cores with
 * the DSP extension (__ARM_FEATURE_DSP), an ACLE path; define RNNSKIP_NO_DSP to
 * force plain C. Both paths give identical results.
 */
#ifndef RNNSKIP_KERNELS_H
#define RNNSKIP_KERNELS_H

#include <stdint.h>
#if defined(__ARM_FEATURE_SAT) || defined(__ARM_FEATURE_DSP)
#include <arm_acle.h> /* outside extern "C": a system header declares its own linkage */
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__ARM_FEATURE_DSP) && !defined(RNNSKIP_NO_DSP)
#define RNNSKIP_USE_DSP 1
#else
#define RNNSKIP_USE_DSP 0
#endif

/* The hand-scheduled assembly cores (mat-vec, paired mat-vec, delta) enter their unrolled loops part-way, at
 * an offset computed from one step's byte length, and check that length with .if on label differences. GNU as
 * evaluates those; clang's integrated assembler (clang, armclang, the LLVM embedded toolchain) cannot, so under
 * clang the check is left out of the source and made by the tests instead (they build the cores with clang and
 * run them bit-exact under the emulator, every loop entry included). noipa (GCC): the naked cores read their
 * argument block, which GCC's inter-procedural passes cannot see; clang has no such attribute or pass. */
#if defined(__clang__)
#define RNNSKIP_ASM_LAYOUT_CHECK(s) ""
#define RNNSKIP_NOIPA
#else
#define RNNSKIP_ASM_LAYOUT_CHECK(s) s
#define RNNSKIP_NOIPA __attribute__((noipa))
#endif

/* Helium (MVE-I, Armv8.1-M: Cortex-M55/M85) mat-vec kernels in
 * rnnskip_mat_vec_mve_s8.c; RNNSKIP_NO_MVE (or RNNSKIP_NO_DSP) turns them off. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !defined(RNNSKIP_NO_MVE) && !defined(RNNSKIP_NO_DSP)
#define RNNSKIP_USE_MVE 1
#else
#define RNNSKIP_USE_MVE 0
#endif

/*
 * acc[r] += sum_k w[r * cols + k] * x[k], for r in [0, rows).
 *   w    int8, row-major [rows, cols], 4-byte aligned
 *   x    int8 [cols], 4-byte aligned
 *   acc  int32 [rows]
 * Preconditions (the generator pads with zeros to meet them): rows % 4 == 0,
 * cols % 4 == 0. Exact integer arithmetic: no rounding, no saturation.
 * w, x and acc must not overlap.
 * Implementation (rnnskip_mat_vec_s8.c): on Thumb-2 cores with the DSP
 * extension an assembly core (SXTB16 + SMLAD, 4 rows x 32 columns per loop
 * iteration, ~0.62 MAC/cycle on the Cortex-M4) that first sign-extends x into
 * a 512-byte stack scratch (256 columns at a time): about 640 bytes of stack
 * in all. Elsewhere plain C, 4 rows per pass, no scratch.
 */
void rnnskip_mat_vec_acc_s8(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols);

/*
 * Straight nested loops, no unrolling, no DSP: the naive-C baseline the
 * benchmarks compare against. Same contract as rnnskip_mat_vec_acc_s8.
 */
void rnnskip_mat_vec_acc_s8_naive(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols);

/* ---- paired-row int16 layout mat-vec (rnnskip_mat_vec_paired_s8.c) -----------
 * out[r] = (bias ? bias[r] : 0) + sum_k w[r][k] * x[k], for r in [0, rows).
 * Overwrites out (does not accumulate); bias may be NULL.
 *   wp   int16 [rows/2][cols], row-major, little-endian, 4-byte aligned:
 *        wp[p][k] = 256 * w[2p+1][k] + w[2p][k], w in [-127, 127]
 *        (rnnskip.quant.layout.pack_paired); same size as the int8 matrix
 *   x    int8 [cols], 4-byte aligned
 *   bias int32 [rows] or NULL;  out int32 [rows]
 * Preconditions: rows % 4 == 0, cols % 4 == 0 (any size: columns are
 * processed in chunks of <= RNNSKIP_PAIRED_XCHUNK <= 512, which keeps the
 * pair decode exact). wp, x, bias and out must not overlap. Exact integer
 * arithmetic (results modulo 2^32, as int32 accumulation).
 * DSP path (Thumb-2 + DSP): per 2 rows x 2 columns one 32-bit load, one
 * SXTB16 and two SMLAD, 3 row pairs per pass; 0.80 MAC/cycle on the
 * Cortex-M4 model at 96 -> 256 (bias included), ~3.6 KB of code. Stack: a
 * 512-byte int16 x scratch, ~680 bytes in all. Plain-C path elsewhere, same
 * layout, no scratch (~100 bytes of stack). */
void rnnskip_mat_vec_paired_s8(const int16_t *wp,
                               const int8_t *x,
                               const int32_t *bias,
                               int32_t *out,
                               int32_t rows,
                               int32_t cols);

/* Requantisation: round(val * 2^ls * mult / 2^32), i.e. Arm's SMMULR (rounding
 * most-significant-word multiply) on (val << ls) and mult. ls is one left shift
 * per accumulator set (0..31), mult one multiplier per row. One instruction on
 * Armv7E-M; the plain path computes the same 64-bit product. */
static inline int32_t rnnskip_requantize(int32_t val, int32_t mult, int32_t ls)
{
    const int32_t v = (int32_t)((uint32_t)val << ls);
#if RNNSKIP_USE_DSP
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(v), "r"(mult));
    return r;
#else
    return (int32_t)(((int64_t)v * mult + 0x80000000LL) >> 32);
#endif
}

static inline int32_t rnnskip_sat(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Saturate to int16 / int8: one SSAT where the core has it (Armv7-M and later). */
static inline int32_t rnnskip_sat16(int32_t v)
{
#if defined(__ARM_FEATURE_SAT)
    return (int32_t)__builtin_arm_ssat(v, 16); /* ACLE's __ssat in GCC's arm_acle.h trips -Wsign-conversion */
#else
    return rnnskip_sat(v, -32768, 32767);
#endif
}

static inline int32_t rnnskip_sat8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT)
    return (int32_t)__builtin_arm_ssat(v, 8);
#else
    return rnnskip_sat(v, -128, 127);
#endif
}

/* (v + 2^(n-1)) >> n, n >= 1: round half up, arithmetic shift. */
static inline int32_t rnnskip_round_shift(int32_t v, int32_t n)
{
    return (v + (1 << (n - 1))) >> n;
}

/* Always inlined: the generated code calls these with literal shapes, shifts and activation
 * ids, so switches on them fold away and loop bounds become immediates. */
#define RNNSKIP_INLINE static inline __attribute__((always_inline))

/* ---- activations ------------------------------------------------------------
 * An activation maps an int16 Q3.12 pre-activation (range [-8, 8)) to int16:
 *   table activations (sigmoid, tanh, hard_sigmoid Keras 2 / Keras 3, softsign):
 *     Q0.15 through a 257-point table v over [-8, 8] (step 1/16), linear interpolation:
 *       u = x + 32768; i = u >> 8; f = u & 255;
 *       y = v[i] + (((v[i+1] - v[i]) * f + 128) >> 8)
 *     stored as 256 words, entry i = v[i] (low halfword) | (v[i+1] - v[i]) << 16, so one load
 *     gives both ends of the interval (i = 128 + (x >> 8) and f = x & 255: u and x share the low byte)
 *   relu, linear: Q3.12 (the pre-activation itself, relu clipped at 0).
 * rnnskip_act_out_q() gives that format; a product with an activation's output is shifted
 * by its format, so one cell kernel serves every activation. Specification:
 * rnnskip/quant/act.py; the tables (rnnskip_luts.c) are generated from it by
 * `python -m rnnskip.quant.act`, one section each, so an image links only those it reads. */
enum {
    RNNSKIP_ACT_LINEAR = 0,
    RNNSKIP_ACT_RELU = 1,
    RNNSKIP_ACT_TANH = 2,
    RNNSKIP_ACT_SIGMOID = 3,
    RNNSKIP_ACT_HARD_SIGMOID = 4,
    RNNSKIP_ACT_HARD_SIGMOID_K3 = 5,
    RNNSKIP_ACT_SOFTSIGN = 6,
    RNNSKIP_ACT_LEAKY_RELU = 7 /* int8-output layers only (rnnskip_requantize_act_s8): no Q3.12 form */
};
#define RNNSKIP_LUT_ENTRIES 256
extern const int32_t rnnskip_sigmoid_lut[RNNSKIP_LUT_ENTRIES];
extern const int32_t rnnskip_tanh_lut[RNNSKIP_LUT_ENTRIES];
extern const int32_t rnnskip_hard_sigmoid_lut[RNNSKIP_LUT_ENTRIES];
extern const int32_t rnnskip_hard_sigmoid_k3_lut[RNNSKIP_LUT_ENTRIES];
extern const int32_t rnnskip_softsign_lut[RNNSKIP_LUT_ENTRIES];

/* x: int16 range. DSP: one SMLATB (ACLE __smlatb) does step * f + 128: 7 cycles a lookup on the M4
 * against 10 with two halfword loads. */
static inline int32_t rnnskip_lut_q15(const int32_t *lut, int32_t x)
{
    const int32_t *mid = lut + 128; /* the entry of x = 0: x >> 8 indexes from it */
    const int32_t e = mid[x >> 8];
    const int32_t f = x & 0xFF;
#if RNNSKIP_USE_DSP
    return (int16_t)e + (__smlatb(e, f, 128) >> 8);
#else
    return (int16_t)e + (((e >> 16) * f + 128) >> 8);
#endif
}

/* Fractional bits of an activation's output: 12 for linear/relu, 15 for tables. */
RNNSKIP_INLINE int32_t rnnskip_act_out_q(int32_t act)
{
    return act <= RNNSKIP_ACT_RELU ? 12 : 15;
}

/* The activation's table, or 0 for linear/relu. */
RNNSKIP_INLINE const int32_t *rnnskip_act_lut(int32_t act)
{
    switch (act) {
    case RNNSKIP_ACT_TANH: return rnnskip_tanh_lut;
    case RNNSKIP_ACT_SIGMOID: return rnnskip_sigmoid_lut;
    case RNNSKIP_ACT_HARD_SIGMOID: return rnnskip_hard_sigmoid_lut;
    case RNNSKIP_ACT_HARD_SIGMOID_K3: return rnnskip_hard_sigmoid_k3_lut;
    case RNNSKIP_ACT_SOFTSIGN: return rnnskip_softsign_lut;
    default: return 0;
    }
}

/* x (Q3.12, int16 range) -> the activation in rnnskip_act_out_q(act) format. */
RNNSKIP_INLINE int32_t rnnskip_act_q(int32_t act, int32_t x)
{
    const int32_t *lut = rnnskip_act_lut(act);
    if (lut) return rnnskip_lut_q15(lut, x);
    return (act == RNNSKIP_ACT_RELU && x < 0) ? 0 : x;
}

/* An accumulator -> its Q3.12 pre-activation: sat16(rq(acc, m, ls)). */
RNNSKIP_INLINE int32_t rnnskip_pre16(int32_t acc, int32_t m, int32_t ls)
{
    return rnnskip_sat16(rnnskip_requantize(acc, m, ls));
}

/* out[r] = act(rq(acc[r])) as int8, r < rows, for any activation: for tables the requantised
 * value is Q3.12, the table gives Q0.15 and (out_mult, out_ls) map it to int8; linear/relu
 * requantise straight to int8; leaky_relu too, then a value below 0 times its slope
 * (out_mult, out_ls). Shared by the Dense and Conv1D layers. */
RNNSKIP_INLINE void rnnskip_requantize_act_s8(const int32_t *acc,
                                              const int32_t *mult,
                                              int32_t ls,
                                              int32_t rows,
                                              int32_t act,
                                              int32_t out_mult,
                                              int32_t out_ls,
                                              int8_t *out)
{
    const int32_t *lut = rnnskip_act_lut(act);
    for (int32_t r = 0; r < rows; r++) {
        int32_t v = rnnskip_requantize(acc[r], mult[r], ls);
        if (lut) v = rnnskip_requantize(rnnskip_lut_q15(lut, rnnskip_sat16(v)), out_mult, out_ls);
        if (act == RNNSKIP_ACT_LEAKY_RELU && v < 0) v = rnnskip_requantize(v, out_mult, out_ls);
        v = rnnskip_sat8(v);
        if (act == RNNSKIP_ACT_RELU && v < 0) v = 0;
        out[r] = (int8_t)v;
    }
}

/* ---- fully connected --------------------------------------------------------
 * out = act(rq(bias + w @ x)) as int8 (rnnskip_requantize_act_s8). w int8 row-major; acc:
 * int32 scratch [rows]; rows, cols multiples of 4. Inlined so only the tables a model uses
 * are linked. */
RNNSKIP_INLINE void rnnskip_fully_connected_s8(const int8_t *x,
                                               const int8_t *w,
                                               const int32_t *bias,
                                               const int32_t *mult,
                                               int32_t ls,
                                               int32_t rows,
                                               int32_t cols,
                                               int32_t act,
                                               int32_t out_mult,
                                               int32_t out_ls,
                                               int32_t *acc,
                                               int8_t *out)
{
    for (int32_t r = 0; r < rows; r++) acc[r] = bias[r];
    rnnskip_mat_vec_acc_s8(w, x, acc, rows, cols);
    rnnskip_requantize_act_s8(acc, mult, ls, rows, act, out_mult, out_ls, out);
}

/* ---- the streamed Conv1D front end (rnnskip_conv1d_s8.c) ------------------
 * Each front-end layer keeps a ring of its last `window` input frames (frame_len int8 each,
 * zeros before the first frame, 4-byte aligned, frame_len % 4 == 0).
 *
 * rnnskip_ring_push_s8: writes frame at slot *head, advances *head (mod window), so *head is
 * then the slot of the oldest frame; returns 1 when an output frame is due: *wait counts the
 * pushes still to come before it (window - 1 - left padding at the start, then stride - 1). */
int32_t rnnskip_ring_push_s8(int8_t *ring,
                             int32_t *head,
                             int32_t *wait,
                             const int8_t *frame,
                             int32_t frame_len,
                             int32_t window,
                             int32_t stride);

/* acc[o] = bias[o] + sum_k sum_c w[k][o][c] * frame_k[c], o < cout, where frame_k is the
 * ring's frame k * dilation slots after the oldest (slot head); window = dilation * (taps - 1)
 * + 1. w int8 tap-major [taps][cout][cin] (the generator transposes the golden model's
 * [cout][taps * cin]), 4-byte aligned; cin % 4 == 0, cout % 4 == 0. Exact integer arithmetic:
 * one rnnskip_mat_vec_acc_s8 per tap (its DSP, Helium or plain-C path; its stack), tap k's
 * [cout][cin] matrix times frame_k. */
void rnnskip_conv1d_acc_s8(const int8_t *ring,
                           int32_t head,
                           int32_t window,
                           int32_t taps,
                           int32_t dilation,
                           int32_t cin,
                           const int8_t *w,
                           const int32_t *bias,
                           int32_t cout,
                           int32_t *acc);

/* One Conv1D output frame: the accumulators above, then per-channel requantisation and the
 * activation exactly as rnnskip_fully_connected_s8 (tables: Q3.12 -> Q0.15 -> int8 by out_mult,
 * out_ls). acc: int32 scratch [cout]. Inlined so only the tables a model uses are linked. */
RNNSKIP_INLINE void rnnskip_conv1d_s8(const int8_t *ring,
                                      int32_t head,
                                      int32_t window,
                                      int32_t taps,
                                      int32_t dilation,
                                      int32_t cin,
                                      const int8_t *w,
                                      const int32_t *bias,
                                      const int32_t *mult,
                                      int32_t ls,
                                      int32_t cout,
                                      int32_t act,
                                      int32_t out_mult,
                                      int32_t out_ls,
                                      int32_t *acc,
                                      int8_t *out)
{
    rnnskip_conv1d_acc_s8(ring, head, window, taps, dilation, cin, w, bias, cout, acc);
    rnnskip_requantize_act_s8(acc, mult, ls, cout, act, out_mult, out_ls, out);
}

/* DepthwiseConv1D: acc[o] = bias[o] + sum_k w[k][o] * frame_k[o / multiplier] for the real output channels
 * o < cout = cin * multiplier (o in [cout, cout_p) keep their bias), frame_k as in rnnskip_conv1d_acc_s8 (frames of
 * frame_len int8, the input channels first). w int8 tap-major [taps][cout_p]. Exact integer arithmetic, plain C:
 * taps * cout MACs, one per weight. */
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
                                     int32_t *acc);

/* One DepthwiseConv1D output frame: the accumulators above, then requantised as rnnskip_conv1d_s8's (cout_p
 * channels). */
RNNSKIP_INLINE void rnnskip_depthwise_conv1d_s8(const int8_t *ring,
                                                int32_t head,
                                                int32_t window,
                                                int32_t taps,
                                                int32_t dilation,
                                                int32_t frame_len,
                                                int32_t multiplier,
                                                const int8_t *w,
                                                const int32_t *bias,
                                                const int32_t *mult,
                                                int32_t ls,
                                                int32_t cout,
                                                int32_t cout_p,
                                                int32_t act,
                                                int32_t out_mult,
                                                int32_t out_ls,
                                                int32_t *acc,
                                                int8_t *out)
{
    rnnskip_depthwise_conv1d_acc_s8(ring,
                                    head,
                                    window,
                                    taps,
                                    dilation,
                                    frame_len,
                                    multiplier,
                                    w,
                                    bias,
                                    cout,
                                    cout_p,
                                    acc);
    rnnskip_requantize_act_s8(acc, mult, ls, cout_p, act, out_mult, out_ls, out);
}

/* Pooling over the whole ring (window frames of ch int8 each; the order of the frames does not
 * matter): the maximum, or the mean rounded half away from zero ((sum +- window/2) / window, C
 * division, as CMSIS-NN's arm_avgpool_s8). The output keeps the input's scale. */
void rnnskip_max_pool1d_s8(const int8_t *ring, int32_t window, int32_t ch, int8_t *out);
void rnnskip_avg_pool1d_s8(const int8_t *ring, int32_t window, int32_t ch, int8_t *out);

/* Layer normalisation of a Dense layer's int8 input (Keras LayerNormalization, its gamma and beta folded into
 * the Dense): over the n real features (n <= 65536), S = sum x, D = n * sum x^2 - S^2 + eps_term (int64),
 * R = isqrt(D << 2 frac), g = round(mult * 2^31 / R) (one 64-bit division per call) and
 * out[j] = sat8(round((n x[j] - S) * g / 2^31)), half away from zero (0 where R is 0); out[n .. cols) = 0.
 * D << 2 frac < 2^62 (the generator's choice of frac). */
void rnnskip_layer_norm_s8(const int8_t *x,
                           int32_t n,
                           int32_t cols,
                           int64_t eps_term,
                           int32_t mult,
                           int32_t frac,
                           int8_t *out);

/* Final layer: out = sat16(rq(bias + w @ x)) (int16 logits). */
void rnnskip_fully_connected_s8_s16(const int8_t *x,
                                    const int8_t *w,
                                    const int32_t *bias,
                                    const int32_t *mult,
                                    int32_t ls,
                                    int32_t rows,
                                    int32_t cols,
                                    int32_t *acc,
                                    int16_t *out);

#ifdef __cplusplus
}
#endif
#endif
