/*
 * int8 matrix-vector product on the paired-row int16 layout.
 * See rnnskip_kernels.h for the contract and rnnskip/quant/layout.py for the
 * converter side (pack_paired).
 *
 * Layout: for output rows 2p, 2p+1 and column k one int16
 *     v[p][k] = 256 * w[2p+1][k] + w[2p][k]          (w in [-127, 127])
 * stored row-major [rows/2][cols], little-endian: 2 bytes per 2 weights.
 *
 * The A/B trick (both paths): for a pair p and a column chunk
 *     A = sum_k x[k] * v[p][k]        = 256 * row(2p+1) + row(2p)   (mod 2^32)
 *     B = sum_k x[k] * int8(v[p][k])  = row(2p)
 * so row(2p) = B and row(2p+1) = (A - B) >> 8 (arithmetic). A - B equals
 * 256 * row(2p+1) modulo 2^32 and |row(2p+1)| <= 127 * 128 * n < 2^23 for a
 * chunk of n <= 512 columns, so the shift is exact. Columns are processed in
 * chunks of at most RNNSKIP_PAIRED_XCHUNK (<= 512) and the chunk results
 * summed. In the DSP path one 32-bit load V = (v[p][k], v[p][k+1]) feeds
 *     SMLAD A, X, V, A;  SXTB16 V, V;  SMLAD B, X, V, B
 * with X = (x[k], x[k+1]) as int16: 4 MACs for 1 load + 3 single-cycle ops.
 */
#include "rnnskip_kernels.h"

#ifndef RNNSKIP_PAIRED_XCHUNK
#define RNNSKIP_PAIRED_XCHUNK 256 /* columns per chunk; scratch = 2 * this bytes (DSP path) */
#endif
#if RNNSKIP_PAIRED_XCHUNK < 4 || RNNSKIP_PAIRED_XCHUNK > 512 || RNNSKIP_PAIRED_XCHUNK % 4 != 0
#error "RNNSKIP_PAIRED_XCHUNK must be a multiple of 4 in [4, 512] (exactness of the A/B trick)"
#endif

#if RNNSKIP_USE_DSP && defined(__thumb2__)
#define RNNSKIP_MVP_ASM 1
#include <arm_acle.h>
#else
#define RNNSKIP_MVP_ASM 0
#endif

#if RNNSKIP_MVP_ASM

/*
 * DSP path (Thumb-2 cores with the DSP extension: Cortex-M4/M7/M33/M55...).
 *
 * 1. Per chunk of n <= RNNSKIP_PAIRED_XCHUNK columns, x is sign-extended once
 *    into an int16 scratch on the stack (xs[k] = x[c0 + k]; asm, ~2 cycles per
 *    column), so one word load gives X = (x[k], x[k+1]).
 * 2. An assembly core walks the row pairs 3 at a time (6 output rows per pass)
 *    and the chunk's columns 2 at a time. One 2-column step of 3 pairs is
 *    4 loads issued back to back (X and the three V words: 2+1+1+1 cycles on
 *    the M4) + 3 SXTB16 + 6 SMLAD = 14 cycles for 12 MACs (0.857 MAC/cycle).
 *    3 pairs x 2 accumulators + X + 3 V words + 4 pointers use r0-r12 and lr,
 *    which is why it is 3 pairs and not 4. When rows/2 is not a multiple of 3
 *    the last 2 or 4 pairs go through a 2-pair core (10 cycles per 8 MACs).
 * 3. Per pass the first step is peeled (A starts from B's initial value, no
 *    register moves); the rest run in a RNNSKIP_PAIRED_USTEPS-step unrolled
 *    loop entered part-way (Duff's device: "bx" to an entry computed once per
 *    call). Pass end: row(2p) = B, row(2p+1) = init + ((A - B) >> 8), 6
 *    stores, the next pass's initial values loaded: ~36 cycles per 6 rows.
 *
 * Output initial values come from bias (first chunk), from out itself (later
 * chunks), or from zeros written into out first (bias == NULL).
 *
 * Stack: the x scratch is 2 * RNNSKIP_PAIRED_XCHUNK bytes (512 B by default);
 * with the wrapper's frame, the argument block and the cores' 9 saved
 * registers + 24 bytes of locals: 684 B measured at -O2 with GCC 12
 * (RNNSKIP_PAIRED_XCHUNK 256), independent of the matrix size.
 */
#ifndef RNNSKIP_PAIRED_USTEPS
#define RNNSKIP_PAIRED_USTEPS 16 /* 2-column steps per unrolled 3-pair loop body (>= 2) */
#endif
#define RNNSKIP_PAIRED_USTEPS2 8 /* the same for the 2-pair core (runs at most twice per chunk) */

/* Parameters of one call of an asm core (read once at entry). */
struct rnnskip_mvp_args {
    const int16_t *w;    /* 0:  pair 0, first column of this chunk              */
    const int16_t *xs;   /* 4:  sign-extended chunk of x (n int16, 4-aligned)    */
    int32_t *dst;        /* 8:  out[2 * first pair]                              */
    const int32_t *src;  /* 12: initial values, indexed like dst (may be == dst) */
    int32_t npairs;      /* 16: row pairs: multiple of 3 (core 3) or 2 (core 2)  */
    int32_t n;           /* 20: columns in this chunk, multiple of 4, 4..512     */
    int32_t ps;          /* 24: bytes per packed row (2 * cols)                  */
    int32_t skip;        /* 28: bytes of loop body skipped on entry              */
};

#define RNNSKIP_STR_(x) #x
#define RNNSKIP_STR(x) RNNSKIP_STR_(x)

#if defined(__clang__)
#define RNNSKIP_NOIPA
#else
#define RNNSKIP_NOIPA __attribute__((noipa)) /* the asm reads *a and the buffers it points to */
#endif

/*
 * Registers in the column loops:
 *   r0  -> V of pair 0 (post-incremented by 4 per step); pair 1 is [r0, r2],
 *          pair 2 is [r0, r2, lsl #1]
 *   r1  -> xs (post-incremented by 4 per step)    r3  xs end (loop exit)
 *   r2  bytes per packed row (ps)
 *   r4/r5 B/A of pair 0, r6/r7 pair 1, r8/r9 pair 2 (so stm order is row order)
 *   r10 X = (x[k], x[k+1]);  r11, r12, lr: V of pairs 0, 1, 2
 * Stack locals: 0 dst of the current pass, 4 src - dst, 8 pointer advance
 *   from the end of one pass to the start of the next (P * ps - 2n), 12 xs,
 *   16 loop entry (| 1, Thumb), 20 dst end.
 * Every step is all 32-bit encodings, exactly STEP_BYTES long (checked at
 * assembly time), so the entry is loop + skip, skip = k * STEP_BYTES.
 */
#define RNNSKIP_P3_STEP_BYTES 52
#define RNNSKIP_P2_STEP_BYTES 36
#define RNNSKIP_PAIR(v, b, a)                                                      \
    "smlad  " a ", r10, " v ", " a "\n\t" /* A += 256*odd + even row terms  */     \
    "sxtb16 " v ", " v "\n\t"             /* (w_even[k], w_even[k+1])       */     \
    "smlad  " b ", r10, " v ", " b "\n\t" /* B += even row terms            */
#define RNNSKIP_P3_STEP                                                            \
    "ldr.w  r10, [r1], #4\n\t"          /* X = (x[k], x[k+1])               */     \
    "ldr.w  r12, [r0, r2]\n\t"          /* pair 1: (v[k], v[k+1])           */     \
    "ldr.w  lr, [r0, r2, lsl #1]\n\t"   /* pair 2                           */     \
    "ldr.w  r11, [r0], #4\n\t"          /* pair 0; advance 2 columns        */     \
    RNNSKIP_PAIR("r11", "r4", "r5")                                                \
    RNNSKIP_PAIR("r12", "r6", "r7")                                                \
    RNNSKIP_PAIR("lr", "r8", "r9")
#define RNNSKIP_P2_STEP                                                            \
    "ldr.w  r10, [r1], #4\n\t"                                                     \
    "ldr.w  r12, [r0, r2]\n\t"                                                     \
    "ldr.w  r11, [r0], #4\n\t"                                                     \
    RNNSKIP_PAIR("r11", "r4", "r5")                                                \
    RNNSKIP_PAIR("r12", "r6", "r7")

/* Common prologue: r0 = args -> registers and stack locals, then to the first
 * pass start with r10 = src - 8 * P and r12 = loop entry. */
#define RNNSKIP_MVP_PROLOGUE(P)                                                    \
    "push   {r4-r11, lr}\n\t"                                                      \
    "sub    sp, sp, #24\n\t"                                                       \
    "ldr    r1, [r0, #4]\n\t"           /* xs */                                   \
    "ldr    r4, [r0, #8]\n\t"           /* dst */                                  \
    "ldr    r5, [r0, #12]\n\t"          /* src */                                  \
    "ldr    r6, [r0, #16]\n\t"          /* npairs */                               \
    "ldr    r7, [r0, #20]\n\t"          /* n */                                    \
    "ldr    r2, [r0, #24]\n\t"          /* ps */                                   \
    "ldr    r12, [r0, #28]\n\t"         /* skip */                                 \
    "ldr    r0, [r0, #0]\n\t"           /* w */                                    \
    "adr.w  r11, 2f\n\t"                                                           \
    "add    r12, r12, r11\n\t"                                                     \
    "orr    r12, r12, #1\n\t"           /* Thumb bit for bx */                     \
    "add    r3, r1, r7, lsl #1\n\t"     /* xs end */                               \
    "mov    r8, #" RNNSKIP_STR(P) "\n\t"                                           \
    "mul    r8, r8, r2\n\t"                                                        \
    "sub    r8, r8, r7, lsl #1\n\t"     /* advance = P * ps - 2n */                \
    "add    r6, r4, r6, lsl #3\n\t"     /* dst end = dst + 8 * npairs */           \
    "sub    r9, r5, r4\n\t"             /* src - dst */                            \
    "sub    r10, r5, #8 * " RNNSKIP_STR(P) "\n\t"                                  \
    "str    r4, [sp, #0]\n\t"                                                      \
    "str    r9, [sp, #4]\n\t"                                                      \
    "str    r8, [sp, #8]\n\t"                                                      \
    "str    r1, [sp, #12]\n\t"                                                     \
    "str    r12, [sp, #16]\n\t"                                                    \
    "str    r6, [sp, #20]\n\t"                                                     \
    "b      1f\n\t"

/* The unrolled loop: USTEPS copies of STEP, exit when r1 reaches r3. */
#define RNNSKIP_MVP_LOOP(STEP, STEP_BYTES, USTEPS)                                         \
    ".p2align 2\n\t"                                                               \
    "2:\n\t"                                                                       \
    STEP                                                                           \
    "21:\n\t"                                                                      \
    ".rept " RNNSKIP_STR(USTEPS) " - 1\n\t"                         \
    STEP                                                                           \
    ".endr\n\t"                                                                    \
    "22:\n\t"                                                                      \
    ".if (21b - 2b) != " RNNSKIP_STR(STEP_BYTES) "\n\t"                            \
    ".error \"rnnskip: paired step is not STEP_BYTES long\"\n\t"                   \
    ".endif\n\t"                                                                   \
    ".if (22b - 2b) != " RNNSKIP_STR(USTEPS) " * "                  \
        RNNSKIP_STR(STEP_BYTES) "\n\t"                                             \
    ".error \"rnnskip: paired loop is not USTEPS * STEP_BYTES long\"\n\t"          \
    ".endif\n\t"                                                                   \
    "cmp    r1, r3\n\t"                                                            \
    "bne    2b\n\t"

/*
 * void rnnskip_mvp3_dsp_core(const struct rnnskip_mvp_args *a)
 * npairs a multiple of 3, > 0; n >= 4.
 */
__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_mvp3_dsp_core(const struct rnnskip_mvp_args *a)
{
    (void)a;
    __asm__ volatile(
        RNNSKIP_MVP_PROLOGUE(3)
        RNNSKIP_MVP_LOOP(RNNSKIP_P3_STEP, RNNSKIP_P3_STEP_BYTES, RNNSKIP_PAIRED_USTEPS)
        /* end of a pass: finish and store 6 rows */
        "ldr    r11, [sp, #0]\n\t"          /* dst */
        "ldr    r10, [sp, #4]\n\t"          /* src - dst */
        "ldr    r12, [sp, #8]\n\t"          /* advance */
        "ldr    r1, [sp, #12]\n\t"          /* rewind x */
        "ldr    lr, [sp, #20]\n\t"          /* dst end */
        "sub    r5, r5, r4\n\t"             /* A - B = 256 * odd row (mod 2^32) */
        "sub    r7, r7, r6\n\t"
        "sub    r9, r9, r8\n\t"
        "add    r10, r10, r11\n\t"          /* src */
        "add    r0, r0, r12\n\t"            /* next 3 pairs */
        "str    r4, [r11, #0]\n\t"          /* even rows: B (started from init) */
        "str    r6, [r11, #8]\n\t"
        "str    r8, [r11, #16]\n\t"
        "ldr    r4, [r10, #4]\n\t"          /* odd rows' initial values */
        "ldr    r6, [r10, #12]\n\t"
        "ldr    r8, [r10, #20]\n\t"
        "ldr    r12, [sp, #16]\n\t"         /* loop entry */
        "add    r5, r4, r5, asr #8\n\t"
        "add    r7, r6, r7, asr #8\n\t"
        "add    r9, r8, r9, asr #8\n\t"
        "str    r5, [r11, #4]\n\t"
        "str    r7, [r11, #12]\n\t"
        "str    r9, [r11, #20]\n\t"
        "add    r11, r11, #24\n\t"
        "str    r11, [sp, #0]\n\t"
        "cmp    r11, lr\n\t"
        "beq    9f\n\t"
        /* start of a pass (r10 = src of the previous pass, r12 = entry): B =
         * init of the even rows; the first step peeled, A starting from B.
         * V of pairs 1 and 2 in r7/r9 (free here) so r12 survives. */
        "1:\n\t"
        "ldr    r4, [r10, #24]\n\t"
        "ldr    r6, [r10, #32]\n\t"
        "ldr    r8, [r10, #40]\n\t"
        "ldr.w  r10, [r1], #4\n\t"
        "ldr.w  r7, [r0, r2]\n\t"
        "ldr.w  r9, [r0, r2, lsl #1]\n\t"
        "ldr.w  r11, [r0], #4\n\t"
        "smlad  r5, r10, r11, r4\n\t"
        "sxtb16 r11, r11\n\t"
        "smlad  r4, r10, r11, r4\n\t"
        "sxtb16 r11, r7\n\t"
        "smlad  r7, r10, r7, r6\n\t"
        "smlad  r6, r10, r11, r6\n\t"
        "sxtb16 r11, r9\n\t"
        "smlad  r9, r10, r9, r8\n\t"
        "smlad  r8, r10, r11, r8\n\t"
        "bx     r12\n\t"                    /* into the column loop */
        "9:\n\t"
        "add    sp, sp, #24\n\t"
        "pop    {r4-r11, pc}\n\t");
}

/* 2 pairs per pass (the 2 or 4 pairs left over when rows/2 % 3 != 0). */
__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_mvp2_dsp_core(const struct rnnskip_mvp_args *a)
{
    (void)a;
    __asm__ volatile(
        RNNSKIP_MVP_PROLOGUE(2)
        RNNSKIP_MVP_LOOP(RNNSKIP_P2_STEP, RNNSKIP_P2_STEP_BYTES, RNNSKIP_PAIRED_USTEPS2)
        "ldr    r11, [sp, #0]\n\t"          /* dst */
        "ldr    r10, [sp, #4]\n\t"          /* src - dst */
        "ldr    r12, [sp, #8]\n\t"          /* advance */
        "ldr    r1, [sp, #12]\n\t"          /* rewind x */
        "ldr    lr, [sp, #20]\n\t"          /* dst end */
        "sub    r5, r5, r4\n\t"
        "sub    r7, r7, r6\n\t"
        "add    r10, r10, r11\n\t"          /* src */
        "add    r0, r0, r12\n\t"
        "ldr    r8, [r10, #4]\n\t"
        "ldr    r9, [r10, #12]\n\t"
        "ldr    r12, [sp, #16]\n\t"         /* loop entry */
        "add    r5, r8, r5, asr #8\n\t"
        "add    r7, r9, r7, asr #8\n\t"
        "stmia  r11!, {r4-r7}\n\t"
        "str    r11, [sp, #0]\n\t"
        "cmp    r11, lr\n\t"
        "beq    9f\n\t"
        "1:\n\t"
        "ldr    r4, [r10, #16]\n\t"
        "ldr    r6, [r10, #24]\n\t"
        "ldr.w  r10, [r1], #4\n\t"
        "ldr.w  r7, [r0, r2]\n\t"
        "ldr.w  r11, [r0], #4\n\t"
        "smlad  r5, r10, r11, r4\n\t"
        "sxtb16 r11, r11\n\t"
        "smlad  r4, r10, r11, r4\n\t"
        "sxtb16 r11, r7\n\t"
        "smlad  r7, r10, r7, r6\n\t"
        "smlad  r6, r10, r11, r6\n\t"
        "bx     r12\n\t"
        "9:\n\t"
        "add    sp, sp, #24\n\t"
        "pop    {r4-r11, pc}\n\t");
}

/*
 * void rnnskip_mvp_widen_x(uint32_t *xs, const int8_t *x, int32_t n)
 * xs[k] (as int16) = x[k] for k < n; n a positive multiple of 4, x and xs
 * 4-byte aligned. 16 columns per iteration (ldm 4 words; per word SXTB16 x2,
 * PKHBT, PKHTB; stm 8 words), then 4 at a time.
 */
#define RNNSKIP_WIDEN(raw, lo, hi)                                                 \
    "sxtb16 r11, " raw "\n\t"               /* (x0, x2) */                         \
    "sxtb16 r12, " raw ", ror #8\n\t"       /* (x1, x3) */                         \
    "pkhbt  " lo ", r11, r12, lsl #16\n\t"  /* (x0, x1) */                         \
    "pkhtb  " hi ", r12, r11, asr #16\n\t"  /* (x2, x3) */

__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_mvp_widen_x(uint32_t *xs, const int8_t *x, int32_t n)
{
    (void)xs; (void)x; (void)n;
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "add    r2, r1, r2\n\t"             /* x end */
        "sub    lr, r2, #16\n\t"            /* last start of a 16-column group */
        "cmp    r1, lr\n\t"
        "bhi    4f\n\t"
        "3:\n\t"
        "ldm    r1!, {r7-r10}\n\t"
        RNNSKIP_WIDEN("r7", "r3", "r4")
        RNNSKIP_WIDEN("r8", "r5", "r6")
        RNNSKIP_WIDEN("r9", "r7", "r8")
        RNNSKIP_WIDEN("r10", "r9", "r10")
        "stm    r0!, {r3-r10}\n\t"
        "cmp    r1, lr\n\t"
        "bls    3b\n\t"
        "4:\n\t"
        "cmp    r1, r2\n\t"
        "beq    6f\n\t"
        "5:\n\t"
        "ldr    r7, [r1], #4\n\t"
        RNNSKIP_WIDEN("r7", "r3", "r4")
        "stm    r0!, {r3, r4}\n\t"
        "cmp    r1, r2\n\t"
        "bne    5b\n\t"
        "6:\n\t"
        "pop    {r4-r11, pc}\n\t");
}

void rnnskip_mat_vec_paired_s8(const int16_t *wp, const int8_t *x, const int32_t *bias,
                               int32_t *out, int32_t rows, int32_t cols)
{
    uint32_t xs[RNNSKIP_PAIRED_XCHUNK / 2]; /* x chunk as int16, 2 per word */
    struct rnnskip_mvp_args a;
    int32_t npairs, n3, n2;
    const int32_t *src = bias;

    if (rows <= 0)
        return;
    if (bias == 0 || cols <= 0) {
        for (int32_t r = 0; r < rows; r++)
            out[r] = bias ? bias[r] : 0;
        src = out;
        if (cols <= 0)
            return;
    }
    npairs = rows / 2;
    n2 = npairs % 3 == 0 ? 0 : (npairs % 3 == 2 ? 2 : 4);
    n3 = npairs - n2;
    a.xs = (const int16_t *)(const void *)xs;
    a.ps = 2 * cols;
    for (int32_t c0 = 0; c0 < cols; c0 += RNNSKIP_PAIRED_XCHUNK) {
        const int32_t n = cols - c0 < RNNSKIP_PAIRED_XCHUNK ? cols - c0 : RNNSKIP_PAIRED_XCHUNK;
        /* loop steps after the peeled one: m = n/2 - 1; enter so that the
         * first (partial) pass through the body runs m % USTEPS steps */
        const uint32_t m = (uint32_t)(n / 2 - 1);
        const uint32_t skip3 = (RNNSKIP_PAIRED_USTEPS - m % RNNSKIP_PAIRED_USTEPS) % RNNSKIP_PAIRED_USTEPS;
        const uint32_t skip2 = (RNNSKIP_PAIRED_USTEPS2 - m % RNNSKIP_PAIRED_USTEPS2) % RNNSKIP_PAIRED_USTEPS2;
        rnnskip_mvp_widen_x(xs, x + c0, n);
        a.n = n;
        if (n3 > 0) {
            a.w = wp + c0;
            a.dst = out;
            a.src = src;
            a.npairs = n3;
            a.skip = (int32_t)skip3 * RNNSKIP_P3_STEP_BYTES;
            rnnskip_mvp3_dsp_core(&a);
        }
        if (n2 > 0) {
            a.w = wp + (int32_t)n3 * cols + c0;
            a.dst = out + 2 * n3;
            a.src = src + 2 * n3;
            a.npairs = n2;
            a.skip = (int32_t)skip2 * RNNSKIP_P2_STEP_BYTES;
            rnnskip_mvp2_dsp_core(&a);
        }
        src = out;
    }
}

#else /* plain C */

/*
 * Portable path (any C99 compiler with arithmetic >> on negative int32, as
 * GCC/Clang/Arm Compiler: Cortex-M0/M3, or the host for testing). Same A/B
 * trick in 32-bit unsigned arithmetic (wraps modulo 2^32, exact after the
 * subtraction), 2 pairs (4 rows) per pass, 2 columns per iteration. Columns in
 * chunks of RNNSKIP_PAIRED_XCHUNK. No scratch: uses no stack beyond the
 * compiler's register saves.
 */
static inline int32_t rnnskip_u2s(uint32_t u)
{
    return u <= 0x7FFFFFFFu ? (int32_t)u : -(int32_t)(~u) - 1; /* == (int32_t)u, portable */
}

/* Low byte of a packed value, sign-extended: the even row's weight. */
static inline int32_t rnnskip_lo8(int32_t v)
{
    return ((v & 0xFF) ^ 0x80) - 0x80;
}

void rnnskip_mat_vec_paired_s8(const int16_t *wp, const int8_t *x, const int32_t *bias,
                               int32_t *out, int32_t rows, int32_t cols)
{
    if (rows <= 0)
        return;
    for (int32_t r = 0; r < rows; r++)
        out[r] = bias ? bias[r] : 0;
    for (int32_t c0 = 0; c0 < cols; c0 += RNNSKIP_PAIRED_XCHUNK) {
        const int32_t n = cols - c0 < RNNSKIP_PAIRED_XCHUNK ? cols - c0 : RNNSKIP_PAIRED_XCHUNK;
        const int8_t *xc = x + c0;
        for (int32_t p = 0; p < rows / 2; p += 2) {
            const int16_t *v0 = wp + p * cols + c0;
            const int16_t *v1 = v0 + cols;
            uint32_t a0 = 0, b0 = 0, a1 = 0, b1 = 0;
            for (int32_t k = 0; k < n; k += 2) {
                const int32_t x0 = xc[k], x1 = xc[k + 1];
                const int32_t p00 = v0[k], p01 = v0[k + 1], p10 = v1[k], p11 = v1[k + 1];
                a0 += (uint32_t)(x0 * p00) + (uint32_t)(x1 * p01);
                b0 += (uint32_t)(x0 * rnnskip_lo8(p00)) + (uint32_t)(x1 * rnnskip_lo8(p01));
                a1 += (uint32_t)(x0 * p10) + (uint32_t)(x1 * p11);
                b1 += (uint32_t)(x0 * rnnskip_lo8(p10)) + (uint32_t)(x1 * rnnskip_lo8(p11));
            }
            /* row(2p) = B, row(2p+1) = (A - B) >> 8; sums added modulo 2^32 */
            out[2 * p] = rnnskip_u2s((uint32_t)out[2 * p] + b0);
            out[2 * p + 1] = rnnskip_u2s((uint32_t)out[2 * p + 1] + (uint32_t)(rnnskip_u2s(a0 - b0) >> 8));
            out[2 * p + 2] = rnnskip_u2s((uint32_t)out[2 * p + 2] + b1);
            out[2 * p + 3] = rnnskip_u2s((uint32_t)out[2 * p + 3] + (uint32_t)(rnnskip_u2s(a1 - b1) >> 8));
        }
    }
}

#endif
