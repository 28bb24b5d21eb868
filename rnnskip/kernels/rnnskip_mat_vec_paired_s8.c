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

#if RNNSKIP_USE_MVE
/* Helium: rnnskip_mat_vec_paired_s8 is in rnnskip_mat_vec_mve_s8.c. */
#elif RNNSKIP_MVP_ASM
/* clang-format off */ /* hand-scheduled Thumb-2 assembly, laid out by hand */
/* The asm core is one string literal, longer than the 4,095 characters ISO C requires a compiler to take (GCC
 * and Clang take any length): -pedantic's -Woverlength-strings is off for it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"

/*
 * DSP path (Thumb-2 cores with the DSP extension: Cortex-M4/M7/M33/M55...).
 * One naked asm core per column chunk (n <= RNNSKIP_PAIRED_XCHUNK columns):
 *
 * 1. x is sign-extended once into an int16 scratch at the bottom of the
 *    core's stack frame (16 columns per 32 cycles), so one word load gives
 *    X = (x[k], x[k+1]).
 * 2. The row pairs are walked 3 at a time (6 output rows per pass), the
 *    columns 2 at a time, downwards. One 2-column step of 3 pairs is 4 loads
 *    issued back to back (X and the three V words: 2+1+1+1 cycles on the M4)
 *    + 3 SXTB16 + 6 SMLAD = 14 cycles for 12 MACs (0.857 MAC/cycle).
 *    3 pairs x 2 accumulators + X + 3 V words + 4 pointers fill r0-r12 and
 *    lr, which is why it is 3 pairs and not 4. When rows/2 is not a multiple
 *    of 3 the last 2 or 4 pairs go through 2-pair passes (10 cycles per
 *    8 MACs) in the same call.
 * 3. Per pass the first step is peeled (A starts from B's initial value, no
 *    register moves); the rest run in a RNNSKIP_PAIRED_USTEPS-step unrolled
 *    loop entered part-way (Duff's device: "bx" to an entry computed once per
 *    call). Pass end: row(2p) = B, row(2p+1) = init + ((A - B) >> 8), 6
 *    stores, the next pass's initial values loaded: 26 + 6 cycles per 6 rows.
 *
 * Output initial values come from bias (first chunk), from out itself (later
 * chunks), or from zeros written into out first (bias == NULL).
 *
 * Cortex-M4 model, 0 wait states, GCC 12 -O2 (tests/test_kernels_paired.py):
 * 0.803 MAC/cycle at 96 -> 256, 0.816 at 128 -> 384, 0.78 at 64 -> 256,
 * bias included. Code: ~3.6 KB (the 48-step loop is 2.5 KB of it;
 * -DRNNSKIP_PAIRED_USTEPS=16 gives ~1.9 KB for ~1 % less speed).
 *
 * Stack: the scratch is 2 * RNNSKIP_PAIRED_XCHUNK bytes (512 B by default),
 * plus 40 bytes of locals and 9 saved registers in the core, plus the
 * wrapper's frame and argument block: 676 B measured in all (GCC 12 -O2,
 * RNNSKIP_PAIRED_XCHUNK 256), independent of the matrix size.
 */
#ifndef RNNSKIP_PAIRED_USTEPS
#define RNNSKIP_PAIRED_USTEPS 48 /* 2-column steps per unrolled 3-pair loop body (>= 2) */
#endif
#define RNNSKIP_PAIRED_USTEPS2 8 /* the same for the 2-pair passes (at most 2 per chunk) */
#if RNNSKIP_PAIRED_USTEPS < 2
#error "RNNSKIP_PAIRED_USTEPS must be >= 2"
#endif

/* Parameters of one call of the asm core (read once at entry). */
struct rnnskip_mvp_args {
    const int16_t *w;    /* 0:  pair 0, first column of this chunk              */
    const int8_t *x;     /* 4:  x + first column of this chunk                   */
    int32_t *dst;        /* 8:  out                                              */
    const int32_t *src;  /* 12: initial values, indexed like dst (may be == dst) */
    int32_t n3;          /* 16: pairs done 3 per pass (multiple of 3, may be 0)  */
    int32_t n2;          /* 20: pairs left for 2-pair passes (0, 2 or 4)         */
    int32_t n;           /* 24: columns in this chunk, multiple of 4, 4..XCHUNK  */
    int32_t ps;          /* 28: bytes per packed row (2 * cols)                  */
    int32_t skip3;       /* 32: bytes of the 3-pair loop body skipped on entry   */
    int32_t skip2;       /* 36: the same for the 2-pair loop                     */
};

#define RNNSKIP_STR_(x) #x
#define RNNSKIP_STR(x) RNNSKIP_STR_(x)

/*
 * Frame of the core (sp-relative, sp fixed after the prologue):
 *   [sp, sp + 2n)            the x chunk as int16 (xs[k] = x[k])
 *   [sp + 2 * XCHUNK, +40)   locals, offsets RNNSKIP_L + 0..32:
 *     0 args, 4 src - dst, 8 dst end of the current kind of pass,
 *     12 pointer advance from the end of one pass to the start of the next
 *     (P * ps + 2n), 16 loop entry (| 1, Thumb), 20 x top (sp + 2n),
 *     24/28 advance and entry of the 2-pair passes, 32 dst end of all passes
 *   then the 9 saved registers.
 * The columns are walked downwards, so the x pointer ends exactly at sp and
 * the loop exit is "cmp sp, r1": no register holds the end, which leaves r3
 * for the output pointer. The scratch is at and above sp, so interrupts
 * (which stack below sp) cannot touch it.
 *
 * Registers in the column loops:
 *   r0  -> V of pair 0 (post-decremented by 4 per step); pair 1 is [r0, r2],
 *          pair 2 is [r0, r2, lsl #1]
 *   r1  -> x scratch (pre-decremented by 4 per step, down to sp)
 *   r2  bytes per packed row (ps)               r3  dst of the current pass
 *   r4/r5 B/A of pair 0, r6/r7 pair 1, r8/r9 pair 2 (so stm order is row order)
 *   r10 X = (x[k], x[k+1]);  r11, r12, lr: V of pairs 0, 1, 2
 * Every step is all 32-bit encodings, exactly STEP_BYTES long (checked at
 * assembly time), so the entry is loop + skip, skip = k * STEP_BYTES.
 */
#define RNNSKIP_L "(2 * " RNNSKIP_STR(RNNSKIP_PAIRED_XCHUNK) ")"
#define RNNSKIP_LOC(off) "[sp, #" RNNSKIP_L " + " #off "]"
#define RNNSKIP_FRAME RNNSKIP_L " + 40"

#define RNNSKIP_P3_STEP_BYTES 52
#define RNNSKIP_P2_STEP_BYTES 36
#define RNNSKIP_PAIR(v, b, a)                                                      \
    "smlad  " a ", r10, " v ", " a "\n\t" /* A += 256*odd + even row terms  */     \
    "sxtb16 " v ", " v "\n\t"             /* (w_even[k], w_even[k+1])       */     \
    "smlad  " b ", r10, " v ", " b "\n\t" /* B += even row terms            */
#define RNNSKIP_P3_STEP                                                            \
    "ldr.w  r10, [r1, #-4]!\n\t"        /* X = (x[k], x[k+1])               */     \
    "ldr.w  r12, [r0, r2]\n\t"          /* pair 1: (v[k], v[k+1])           */     \
    "ldr.w  lr, [r0, r2, lsl #1]\n\t"   /* pair 2                           */     \
    "ldr.w  r11, [r0], #-4\n\t"         /* pair 0; 2 columns down           */     \
    RNNSKIP_PAIR("r11", "r4", "r5")                                                \
    RNNSKIP_PAIR("r12", "r6", "r7")                                                \
    RNNSKIP_PAIR("lr", "r8", "r9")
#define RNNSKIP_P2_STEP                                                            \
    "ldr.w  r10, [r1, #-4]!\n\t"                                                   \
    "ldr.w  r12, [r0, r2]\n\t"                                                     \
    "ldr.w  r11, [r0], #-4\n\t"                                                    \
    RNNSKIP_PAIR("r11", "r4", "r5")                                                \
    RNNSKIP_PAIR("r12", "r6", "r7")

/* An unrolled loop at label L: USTEPS copies of STEP, exit when r1 reaches sp
 * ("cmp sp, r1": with r13 as the second operand GAS warns it is deprecated).
 * L1/L2 are scratch labels for the size checks. */
#define RNNSKIP_MVP_LOOP(L, L1, L2, STEP, STEP_BYTES, USTEPS)                      \
    ".p2align 2\n\t"                                                               \
    L ":\n\t"                                                                      \
    STEP                                                                           \
    L1 ":\n\t"                                                                     \
    ".rept " RNNSKIP_STR(USTEPS) " - 1\n\t"                                        \
    STEP                                                                           \
    ".endr\n\t"                                                                    \
    L2 ":\n\t"                                                                     \
    RNNSKIP_ASM_LAYOUT_CHECK(                                                      \
    ".if (" L1 "b - " L "b) != " RNNSKIP_STR(STEP_BYTES) "\n\t"                    \
    ".error \"rnnskip: paired step is not STEP_BYTES long\"\n\t"                   \
    ".endif\n\t"                                                                   \
    ".if (" L2 "b - " L "b) != " RNNSKIP_STR(USTEPS) " * "                         \
        RNNSKIP_STR(STEP_BYTES) "\n\t"                                             \
    ".error \"rnnskip: paired loop is not USTEPS * STEP_BYTES long\"\n\t"          \
    ".endif\n\t")                                                                  \
    "cmp    sp, r1\n\t"                                                            \
    "bne    " L "b\n\t"

/* x widening: raw word (x0..x3) -> lo = (x0, x1), hi = (x2, x3) as int16. */
#define RNNSKIP_WIDEN(raw, lo, hi)                                                 \
    "sxtb16 r11, " raw "\n\t"               /* (x0, x2) */                         \
    "sxtb16 r12, " raw ", ror #8\n\t"       /* (x1, x3) */                         \
    "pkhbt  " lo ", r11, r12, lsl #16\n\t"  /* (x0, x1) */                         \
    "pkhtb  " hi ", r12, r11, asr #16\n\t"  /* (x2, x3) */

/*
 * void rnnskip_mvp_dsp_core(const struct rnnskip_mvp_args *a): one column
 * chunk. Widens x into the scratch (16 columns per iteration: ldm, 4 x (2
 * SXTB16, PKHBT, PKHTB), stm; then 4 at a time), runs the 3-pair passes, then
 * the 2-pair passes, in one frame.
 */
__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_mvp_dsp_core(const struct rnnskip_mvp_args *a __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "sub    sp, sp, #" RNNSKIP_FRAME "\n\t"
        "str    r0, " RNNSKIP_LOC(0) "\n\t"
        /* ---- scratch[k] = x[k], k < n */
        "ldr    r2, [r0, #24]\n\t"          /* n */
        "ldr    r1, [r0, #4]\n\t"           /* x */
        "mov    r0, sp\n\t"
        "add    r2, r1, r2\n\t"             /* x end */
        "sub    lr, r2, #16\n\t"            /* last start of a 16-column group */
        "cmp    r1, lr\n\t"
        "bhi    34f\n\t"
        "33:\n\t"
        "ldm    r1!, {r7-r10}\n\t"
        RNNSKIP_WIDEN("r7", "r3", "r4")
        RNNSKIP_WIDEN("r8", "r5", "r6")
        RNNSKIP_WIDEN("r9", "r7", "r8")
        RNNSKIP_WIDEN("r10", "r9", "r10")
        "stm    r0!, {r3-r10}\n\t"
        "cmp    r1, lr\n\t"
        "bls    33b\n\t"
        "34:\n\t"
        "cmp    r1, r2\n\t"
        "beq    36f\n\t"
        "35:\n\t"
        "ldr    r7, [r1], #4\n\t"
        RNNSKIP_WIDEN("r7", "r3", "r4")
        "stm    r0!, {r3, r4}\n\t"
        "cmp    r1, r2\n\t"
        "bne    35b\n\t"
        "36:\n\t"
        /* ---- registers and locals */
        "ldr    r0, " RNNSKIP_LOC(0) "\n\t"
        "ldr    r3, [r0, #8]\n\t"           /* dst */
        "ldr    r5, [r0, #12]\n\t"          /* src */
        "ldr    r6, [r0, #16]\n\t"          /* n3 */
        "ldr    r7, [r0, #24]\n\t"          /* n */
        "ldr    r2, [r0, #28]\n\t"          /* ps */
        "ldr    r12, [r0, #32]\n\t"         /* skip3 */
        "ldr    r11, [r0, #36]\n\t"         /* skip2 */
        "ldr    r8, [r0, #20]\n\t"          /* n2 */
        "ldr    r0, [r0, #0]\n\t"           /* w */
        "adr.w  r9, 2f\n\t"
        "add    r12, r12, r9\n\t"
        "orr    r12, r12, #1\n\t"           /* 3-pair loop entry (Thumb bit for bx) */
        "adr.w  r9, 4f\n\t"
        "add    r11, r11, r9\n\t"
        "orr    r11, r11, #1\n\t"           /* 2-pair loop entry */
        "add    r1, sp, r7, lsl #1\n\t"     /* x top */
        "add    r0, r0, r7, lsl #1\n\t"
        "sub    r0, r0, #4\n\t"             /* pair 0, last 2 columns */
        "add    r9, r2, r2, lsl #1\n\t"
        "add    r9, r9, r7, lsl #1\n\t"     /* advance = 3 * ps + 2n */
        "sub    r10, r9, r2\n\t"            /* 2-pair advance = 2 * ps + 2n */
        "str    r9, " RNNSKIP_LOC(12) "\n\t"
        "str    r12, " RNNSKIP_LOC(16) "\n\t"
        "str    r1, " RNNSKIP_LOC(20) "\n\t"
        "str    r10, " RNNSKIP_LOC(24) "\n\t"
        "str    r11, " RNNSKIP_LOC(28) "\n\t"
        "sub    r9, r5, r3\n\t"
        "str    r9, " RNNSKIP_LOC(4) "\n\t"  /* src - dst */
        "add    r9, r3, r6, lsl #3\n\t"
        "str    r9, " RNNSKIP_LOC(8) "\n\t"  /* dst end of the 3-pair passes */
        "add    r6, r6, r8\n\t"
        "add    r6, r3, r6, lsl #3\n\t"
        "str    r6, " RNNSKIP_LOC(32) "\n\t" /* dst end of all passes */
        "sub    r10, r5, #24\n\t"
        "cmp    r9, r3\n\t"
        "bne    1f\n\t"                     /* first 3-pair pass */
        "b      8f\n\t"                     /* no 3-pair passes */
        /* ---- 3 pairs per pass */
        RNNSKIP_MVP_LOOP("2", "21", "22", RNNSKIP_P3_STEP, RNNSKIP_P3_STEP_BYTES, RNNSKIP_PAIRED_USTEPS)
        /* end of a pass: finish and store 6 rows */
        "ldr    r10, " RNNSKIP_LOC(4) "\n\t"  /* src - dst */
        "ldr    lr, " RNNSKIP_LOC(8) "\n\t"   /* dst end */
        "ldr    r12, " RNNSKIP_LOC(12) "\n\t" /* advance */
        "sub    r5, r5, r4\n\t"             /* A - B = 256 * odd row (mod 2^32) */
        "sub    r7, r7, r6\n\t"
        "sub    r9, r9, r8\n\t"
        "add    r10, r10, r3\n\t"           /* src */
        "add    r0, r0, r12\n\t"            /* next 3 pairs */
        "str    r6, [r3, #8]\n\t"           /* even rows: B (started from init) */
        "str    r8, [r3, #16]\n\t"
        "ldr    r11, [r10, #4]\n\t"         /* odd rows' initial values */
        "ldr    r6, [r10, #12]\n\t"
        "ldr    r8, [r10, #20]\n\t"
        "ldr    r12, " RNNSKIP_LOC(16) "\n\t" /* loop entry */
        "ldr    r1, " RNNSKIP_LOC(20) "\n\t"  /* rewind x */
        "add    r5, r11, r5, asr #8\n\t"
        "add    r7, r6, r7, asr #8\n\t"
        "add    r9, r8, r9, asr #8\n\t"
        "str    r5, [r3, #4]\n\t"
        "str    r7, [r3, #12]\n\t"
        "str    r9, [r3, #20]\n\t"
        "str    r4, [r3], #24\n\t"
        "cmp    r3, lr\n\t"
        "beq    8f\n\t"
        /* start of a pass (r10 = src of the previous pass, r12 = entry): B =
         * init of the even rows; the first step peeled, A starting from B.
         * V of pairs 1 and 2 in r7/r9 (free here) so r12 survives. */
        "1:\n\t"
        "ldr    r4, [r10, #24]\n\t"
        "ldr    r6, [r10, #32]\n\t"
        "ldr    r8, [r10, #40]\n\t"
        "ldr.w  r10, [r1, #-4]!\n\t"
        "ldr.w  r7, [r0, r2]\n\t"
        "ldr.w  r9, [r0, r2, lsl #1]\n\t"
        "ldr.w  r11, [r0], #-4\n\t"
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
        /* ---- switch to 2 pairs per pass (r3 = dst, r10 + 24 = src of the
         * next pair, r0 -> its weights, r1 = x top) */
        "8:\n\t"
        "ldr    lr, " RNNSKIP_LOC(32) "\n\t"
        "ldr    r12, " RNNSKIP_LOC(28) "\n\t"
        "ldr    r9, " RNNSKIP_LOC(24) "\n\t"
        "cmp    r3, lr\n\t"
        "beq    9f\n\t"
        "str    lr, " RNNSKIP_LOC(8) "\n\t"
        "str    r12, " RNNSKIP_LOC(16) "\n\t"
        "str    r9, " RNNSKIP_LOC(12) "\n\t"
        "add    r10, r10, #8\n\t"
        "b      5f\n\t"
        RNNSKIP_MVP_LOOP("4", "41", "42", RNNSKIP_P2_STEP, RNNSKIP_P2_STEP_BYTES, RNNSKIP_PAIRED_USTEPS2)
        "ldr    r10, " RNNSKIP_LOC(4) "\n\t"  /* src - dst */
        "ldr    lr, " RNNSKIP_LOC(8) "\n\t"   /* dst end */
        "ldr    r12, " RNNSKIP_LOC(12) "\n\t" /* advance */
        "sub    r5, r5, r4\n\t"
        "sub    r7, r7, r6\n\t"
        "add    r10, r10, r3\n\t"           /* src */
        "add    r0, r0, r12\n\t"
        "ldr    r8, [r10, #4]\n\t"
        "ldr    r9, [r10, #12]\n\t"
        "ldr    r12, " RNNSKIP_LOC(16) "\n\t" /* loop entry */
        "ldr    r1, " RNNSKIP_LOC(20) "\n\t"  /* rewind x */
        "add    r5, r8, r5, asr #8\n\t"
        "add    r7, r9, r7, asr #8\n\t"
        "stmia  r3!, {r4-r7}\n\t"
        "cmp    r3, lr\n\t"
        "beq    9f\n\t"
        "5:\n\t"
        "ldr    r4, [r10, #16]\n\t"
        "ldr    r6, [r10, #24]\n\t"
        "ldr.w  r10, [r1, #-4]!\n\t"
        "ldr.w  r7, [r0, r2]\n\t"
        "ldr.w  r11, [r0], #-4\n\t"
        "smlad  r5, r10, r11, r4\n\t"
        "sxtb16 r11, r11\n\t"
        "smlad  r4, r10, r11, r4\n\t"
        "sxtb16 r11, r7\n\t"
        "smlad  r7, r10, r7, r6\n\t"
        "smlad  r6, r10, r11, r6\n\t"
        "bx     r12\n\t"
        "9:\n\t"
        "add    sp, sp, #" RNNSKIP_FRAME "\n\t"
        "pop    {r4-r11, pc}\n\t");
}

void rnnskip_mat_vec_paired_s8(const int16_t *wp, const int8_t *x, const int32_t *bias,
                               int32_t *out, int32_t rows, int32_t cols)
{
    struct rnnskip_mvp_args a;
    int32_t npairs;

    if (rows <= 0)
        return;
    a.src = bias;
    if (bias == 0 || cols <= 0) {
        for (int32_t r = 0; r < rows; r++)
            out[r] = bias ? bias[r] : 0;
        a.src = out;
        if (cols <= 0)
            return;
    }
    npairs = rows / 2;
    a.n2 = npairs % 3 == 0 ? 0 : (npairs % 3 == 2 ? 2 : 4);
    a.n3 = npairs - a.n2;
    a.dst = out;
    a.ps = 2 * cols;
    for (int32_t c0 = 0; c0 < cols; c0 += RNNSKIP_PAIRED_XCHUNK) {
        const int32_t n = cols - c0 < RNNSKIP_PAIRED_XCHUNK ? cols - c0 : RNNSKIP_PAIRED_XCHUNK;
        /* loop steps after the peeled one: m = n/2 - 1; enter so that the
         * first (partial) run through a loop body does m % USTEPS steps */
        const uint32_t m = (uint32_t)(n / 2 - 1);
        a.skip3 = (int32_t)((RNNSKIP_PAIRED_USTEPS - m % RNNSKIP_PAIRED_USTEPS) % RNNSKIP_PAIRED_USTEPS)
                  * RNNSKIP_P3_STEP_BYTES;
        a.skip2 = (int32_t)((RNNSKIP_PAIRED_USTEPS2 - m % RNNSKIP_PAIRED_USTEPS2) % RNNSKIP_PAIRED_USTEPS2)
                  * RNNSKIP_P2_STEP_BYTES;
        a.w = wp + c0;
        a.x = x + c0;
        a.n = n;
        rnnskip_mvp_dsp_core(&a);
        a.src = out;
    }
}

#pragma GCC diagnostic pop
/* clang-format on */
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

void rnnskip_mat_vec_paired_s8(const int16_t *wp,
                               const int8_t *x,
                               const int32_t *bias,
                               int32_t *out,
                               int32_t rows,
                               int32_t cols)
{
    if (rows <= 0) return;
    for (int32_t r = 0; r < rows; r++) out[r] = bias ? bias[r] : 0;
    for (int32_t c0 = 0; c0 < cols; c0 += RNNSKIP_PAIRED_XCHUNK) {
        const int32_t n = cols - c0 < RNNSKIP_PAIRED_XCHUNK ? cols - c0 : RNNSKIP_PAIRED_XCHUNK;
        const int8_t *xc = x + c0;
#if defined(__ARM_ARCH_6M__) || defined(RNNSKIP_PAIRED_ONE_PAIR)
        /* Armv6-M (Cortex-M0/M0+): eight low registers. Two pairs per pass (below) keep four accumulators, two x
         * values, four weights and three pointers live, and the compiler spills them in the inner loop (a user
         * measured that slower than the naive kernel there); one pair per pass fits. */
        for (int32_t p = 0; p < rows / 2; p++) {
            const int16_t *v = wp + p * cols + c0;
            const int16_t *end = v + n;
            const int8_t *xk = xc;
            uint32_t a = 0, b = 0;
            while (v < end) { /* n is even (columns come in pairs, as in the other paths) */
                const int32_t x0 = xk[0], x1 = xk[1], p0 = v[0], p1 = v[1];
                /* (int8_t) of a wider value keeps its low byte on every Arm compiler: one SXTB */
                a += (uint32_t)(x0 * p0) + (uint32_t)(x1 * p1);
                b += (uint32_t)(x0 * (int8_t)p0) + (uint32_t)(x1 * (int8_t)p1);
                xk += 2;
                v += 2;
            }
            /* row(2p) = B, row(2p+1) = (A - B) >> 8; sums added modulo 2^32 */
            out[2 * p] = rnnskip_u2s((uint32_t)out[2 * p] + b);
            out[2 * p + 1] = rnnskip_u2s((uint32_t)out[2 * p + 1] + (uint32_t)(rnnskip_u2s(a - b) >> 8));
        }
#else
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
#endif
    }
}

#endif
