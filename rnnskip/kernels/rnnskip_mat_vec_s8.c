/*
 * int8 matrix-vector kernels. See rnnskip_kernels.h for the contract.
 */
#include "rnnskip_kernels.h"

/* The DSP path is Thumb-2 assembly (every Cortex-M with the DSP extension runs
 * Thumb-2); a DSP-capable core compiled in A32 state uses the plain-C path. */
#if RNNSKIP_USE_DSP && defined(__thumb2__)
#define RNNSKIP_MV_ASM 1
#include <arm_acle.h>
#else
#define RNNSKIP_MV_ASM 0
#endif

#if RNNSKIP_MV_ASM && !RNNSKIP_USE_MVE /* the DSP path's word reads */
typedef uint32_t __attribute__((may_alias, aligned(4))) rnnskip_u32a;

static inline uint32_t rd32(const int8_t *p)
{
    return *(const rnnskip_u32a *)(const void *)p;
}
#endif

#if RNNSKIP_USE_MVE
/* Helium: rnnskip_mat_vec_acc_s8 is in rnnskip_mat_vec_mve_s8.c. */
#elif RNNSKIP_MV_ASM
/* clang-format off */ /* hand-scheduled Thumb-2 assembly, laid out by hand */
/* The asm core is one string literal, longer than the 4,095 characters ISO C requires a compiler to take (GCC
 * and Clang take any length): -pedantic's -Woverlength-strings is off for it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"

/*
 * DSP path (Cortex-M4/M7/M33/M55..., Armv7E-M / Armv8-M with the DSP extension).
 *
 * 1. The wrapper sign-extends a chunk of x (at most RNNSKIP_XCHUNK columns) once
 *    into an int16 scratch on the stack, in the order SMLAD wants it: for every
 *    4 columns k..k+3 two words, xe = (x[k], x[k+2]) and xo = (x[k+1], x[k+3])
 *    (low halfword first).
 * 2. The core walks 4 weight rows at a time. For one weight word
 *    q = (w[k], w[k+1], w[k+2], w[k+3]):
 *        SXTB16 e, q          -> e = (w[k],   w[k+2])
 *        SXTB16 o, q, ROR #8  -> o = (w[k+1], w[k+3])
 *        SMLAD  a, xe, e, a   -> a += x[k]*w[k]   + x[k+2]*w[k+2]
 *        SMLAD  a, xo, o, a   -> a += x[k+1]*w[k+1] + x[k+3]*w[k+3]
 *    i.e. 4 MACs cost 1 load + 4 single-cycle instructions per row; the two x
 *    words are loaded once and reused by the 4 rows. One 4-column step of 4
 *    rows is 6 loads (issued as two back-to-back groups of 4 and 2, which the
 *    M4 pipelines) + 8 SXTB16 + 8 SMLAD: ~24 cycles for 16 MACs. The loop body
 *    is 8 steps (32 columns), entered part-way when n is not a multiple of 32.
 *
 * Weights stay 1 byte each in flash, row-major, exactly as given.
 *
 * Stack: the wrapper's scratch is 2 * RNNSKIP_XCHUNK bytes (512 B) plus a
 * 56 B frame; the core pushes 9 registers and keeps 24 bytes of locals
 * (60 B): 628 B measured at -O2 with GCC 12, independent of the matrix size.
 * Inputs with more than RNNSKIP_XCHUNK columns are processed in column chunks
 * (each chunk is one more pass over the rows, i.e. ~30 cycles per 4 rows).
 */
#ifndef RNNSKIP_XCHUNK
#define RNNSKIP_XCHUNK 256 /* override with -DRNNSKIP_XCHUNK=... to trade stack for speed */
#endif
#if RNNSKIP_XCHUNK < 4 || RNNSKIP_XCHUNK % 4 != 0
#error "RNNSKIP_XCHUNK must be a positive multiple of 4"
#endif

/* Parameters of one call of the asm core (read once at entry). */
struct rnnskip_mv4_args {
    const int8_t *w;    /* 0:  row 0, first column of this chunk          */
    const int16_t *xs;  /* 4:  pre-extended chunk of x (2 * n bytes)       */
    int32_t *acc;       /* 8:  acc[0..rows)                                */
    int32_t rows;       /* 12: multiple of 4, > 0                          */
    int32_t n;          /* 16: columns in this chunk, multiple of 4, > 0   */
    int32_t stride;     /* 20: bytes per weight row (= cols)               */
};

/*
 * void rnnskip_mv4_dsp_core(const struct rnnskip_mv4_args *a)
 *
 * Registers in the column loop:
 *   r4-r7   acc of rows 0-3 of the current group of 4 rows
 *   r0      -> row 0 (post-incremented); row 1 is [r0, r3]
 *   r2      -> row 2 (post-incremented); row 3 is [r2, r3]
 *   r3      row stride in bytes (= cols)
 *   r1      -> xs (post-incremented by 8 per 4 columns)
 *   r12     xs end (loop ends when r1 reaches it)
 *   r8, r9  xe, xo (the current x pair words)
 *   r10,r11 weight words; lr = extended weight halves
 * Locals at [sp]: 0 acc pointer of the current group, 4 row advance
 *   (4 * stride - n), 8 acc end, 12 xs, 16 loop entry address (| 1, Thumb).
 *
 * The column loop body is RNNSKIP_USTEPS steps (32 columns). Every step is
 * exactly RNNSKIP_STEP_BYTES of code (all 32-bit encodings, checked at
 * assembly time), so when n/4 is not a multiple of RNNSKIP_USTEPS the loop is
 * entered part-way (Duff's device): each group of rows starts with a
 * "ldr pc" to that entry, which costs the same as the backward branch it
 * replaces plus one load.
 */
#define RNNSKIP_STR_(x) #x
#define RNNSKIP_STR(x) RNNSKIP_STR_(x)
#define RNNSKIP_USTEPS 8
#define RNNSKIP_STEP_BYTES 88

#define RNNSKIP_ROW(q, a)                                                          \
    "sxtb16 lr, " q "\n\t"            /* lr = (w[k], w[k+2])              */     \
    "smlad  " a ", r8, lr, " a "\n\t" /* a += x[k]w[k] + x[k+2]w[k+2]     */     \
    "sxtb16 lr, " q ", ror #8\n\t"    /* lr = (w[k+1], w[k+3])            */     \
    "smlad  " a ", r9, lr, " a "\n\t" /* a += x[k+1]w[k+1] + x[k+3]w[k+3] */

/* 4 columns of 4 rows: 16 MACs. The loads are issued back to back in two
 * groups (4, then 2), none using a register loaded just before, so they
 * pipeline. */
#define RNNSKIP_STEP                                                               \
    "ldr.w  r9, [r1, #4]\n\t"         /* xo = (x[k+1], x[k+3])            */     \
    "ldr.w  r8, [r1], #8\n\t"         /* xe = (x[k], x[k+2]); x += 4 cols */     \
    "ldr.w  r10, [r0, r3]\n\t"        /* row 1: w[k..k+3]                 */     \
    "ldr.w  r11, [r0], #4\n\t"        /* row 0: w[k..k+3]; advance        */     \
    RNNSKIP_ROW("r11", "r4")                                                       \
    RNNSKIP_ROW("r10", "r5")                                                       \
    "ldr.w  r10, [r2, r3]\n\t"        /* row 3                            */     \
    "ldr.w  r11, [r2], #4\n\t"        /* row 2; advance                   */     \
    RNNSKIP_ROW("r11", "r6")                                                       \
    RNNSKIP_ROW("r10", "r7")

__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_mv4_dsp_core(const struct rnnskip_mv4_args *a __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "sub    sp, sp, #24\n\t"
        "ldr    r1, [r0, #4]\n\t"         /* xs */
        "ldr    r4, [r0, #16]\n\t"        /* n */
        "ldr    r3, [r0, #20]\n\t"        /* stride */
        "ldr    r5, [r0, #8]\n\t"         /* acc */
        "ldr    r6, [r0, #12]\n\t"        /* rows */
        "ldr    r0, [r0, #0]\n\t"         /* w */
        "add    r12, r1, r4, lsl #1\n\t"  /* xs end */
        "rsb    r9, r4, r3, lsl #2\n\t"   /* row advance = 4*stride - n */
        "add    r6, r5, r6, lsl #2\n\t"   /* acc end */
        /* entry = loop start + ((USTEPS - (n/4) % USTEPS) % USTEPS) * STEP_BYTES */
        "lsr    r7, r4, #2\n\t"
        "rsb    r7, r7, #0\n\t"
        "and    r7, r7, #" RNNSKIP_STR(RNNSKIP_USTEPS - 1) "\n\t"
        "mov    r8, #" RNNSKIP_STR(RNNSKIP_STEP_BYTES) "\n\t"
        "adr.w  r10, 2f\n\t"
        "mla    r7, r7, r8, r10\n\t"
        "orr    r7, r7, #1\n\t"           /* Thumb bit for ldr pc */
        "str    r5, [sp, #0]\n\t"
        "str    r9, [sp, #4]\n\t"
        "str    r6, [sp, #8]\n\t"
        "str    r1, [sp, #12]\n\t"
        "str    r7, [sp, #16]\n\t"
        "add    r2, r0, r3, lsl #1\n\t"   /* row 2 */
        "ldm    r5, {r4-r7}\n\t"
        "ldr    pc, [sp, #16]\n\t"        /* into the column loop */
        ".p2align 2\n\t"
        "2:\n\t"                          /* RNNSKIP_USTEPS steps of 4 columns */
        RNNSKIP_STEP
        "21:\n\t"
        RNNSKIP_STEP RNNSKIP_STEP RNNSKIP_STEP RNNSKIP_STEP
        RNNSKIP_STEP RNNSKIP_STEP RNNSKIP_STEP
        "22:\n\t"
        RNNSKIP_ASM_LAYOUT_CHECK(
            ".if (21b - 2b) != " RNNSKIP_STR(RNNSKIP_STEP_BYTES) "\n\t"
            ".error \"rnnskip: column step is not RNNSKIP_STEP_BYTES long\"\n\t"
            ".endif\n\t"
            ".if (22b - 2b) != " RNNSKIP_STR(RNNSKIP_USTEPS) " * " RNNSKIP_STR(RNNSKIP_STEP_BYTES) "\n\t"
            ".error \"rnnskip: column loop is not USTEPS * STEP_BYTES long\"\n\t"
            ".endif\n\t")
        "cmp    r1, r12\n\t"
        "bne    2b\n\t"
        /* end of a group of 4 rows */
        "ldr    r8, [sp, #0]\n\t"         /* acc pointer */
        "ldr    r9, [sp, #4]\n\t"         /* row advance */
        "ldr    r10, [sp, #8]\n\t"        /* acc end */
        "ldr    r1, [sp, #12]\n\t"        /* rewind x */
        "stmia  r8!, {r4-r7}\n\t"
        "add    r0, r0, r9\n\t"
        "add    r2, r2, r9\n\t"
        "cmp    r8, r10\n\t"
        "beq    3f\n\t"
        "str    r8, [sp, #0]\n\t"
        "ldm    r8, {r4-r7}\n\t"
        "ldr    pc, [sp, #16]\n\t"        /* next group of rows */
        "3:\n\t"
        "add    sp, sp, #24\n\t"
        "pop    {r4-r11, pc}\n\t");
}

static inline uint32_t rnnskip_sxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

void rnnskip_mat_vec_acc_s8(const int8_t *w, const int8_t *x, int32_t *acc,
                            int32_t rows, int32_t cols)
{
    uint32_t xs[RNNSKIP_XCHUNK / 2]; /* int16 pairs, see above */
    struct rnnskip_mv4_args a;
    if (rows <= 0 || cols <= 0)
        return;
    a.xs = (const int16_t *)(const void *)xs;
    a.acc = acc;
    a.rows = rows;
    a.stride = cols;
    for (int32_t c0 = 0; c0 < cols; c0 += RNNSKIP_XCHUNK) {
        const int32_t n = cols - c0 < RNNSKIP_XCHUNK ? cols - c0 : RNNSKIP_XCHUNK;
        for (int32_t k = 0; k < n; k += 4) {
            const uint32_t v = rd32(x + c0 + k);
            xs[k / 2] = (uint32_t)__sxtb16((int32_t)v); /* ACLE: int8x4_t in, int16x2_t out */
            xs[k / 2 + 1] = rnnskip_sxtb16_ror8(v);
        }
        a.w = w + c0;
        a.n = n;
        rnnskip_mv4_dsp_core(&a);
    }
}

#pragma GCC diagnostic pop
/* clang-format on */
#else /* plain C */

/*
 * Portable path (any C99 compiler; Cortex-M0/M3, or the host for testing).
 * Four rows per pass so every x element is loaded once per 4 rows, and two
 * columns per iteration (cols % 4 == 0) to halve the loop overhead. Uses no
 * stack beyond the compiler's register saves.
 */
void rnnskip_mat_vec_acc_s8(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols)
{
    for (int32_t r = 0; r < rows; r += 4) {
        const int8_t *w0 = w + r * cols;
        const int8_t *w1 = w0 + cols;
        const int8_t *w2 = w1 + cols;
        const int8_t *w3 = w2 + cols;
        int32_t a0 = acc[r], a1 = acc[r + 1], a2 = acc[r + 2], a3 = acc[r + 3];
        for (int32_t k = 0; k < cols; k += 2) {
            const int32_t x0 = x[k], x1 = x[k + 1];
            a0 += w0[k] * x0;
            a1 += w1[k] * x0;
            a2 += w2[k] * x0;
            a3 += w3[k] * x0;
            a0 += w0[k + 1] * x1;
            a1 += w1[k + 1] * x1;
            a2 += w2[k + 1] * x1;
            a3 += w3[k + 1] * x1;
        }
        acc[r] = a0;
        acc[r + 1] = a1;
        acc[r + 2] = a2;
        acc[r + 3] = a3;
    }
}

#endif

void rnnskip_mat_vec_acc_s8_naive(const int8_t *w, const int8_t *x, int32_t *acc, int32_t rows, int32_t cols)
{
    for (int32_t r = 0; r < rows; r++) {
        for (int32_t k = 0; k < cols; k++) {
            acc[r] += w[r * cols + k] * x[k];
        }
    }
}
