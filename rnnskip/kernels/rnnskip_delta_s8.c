/*
 * Delta-network kernels: gather of transmitting columns and the column-sparse
 * mat-vec. See rnnskip_delta_kernels.h for the contract and the weight layout
 * (rnnskip/delta/codegen.py writes it), rnnskip/delta/golden.py for the
 * specification.
 */
#include "rnnskip_kernels.h"
#include "rnnskip_delta_kernels.h"

#if RNNSKIP_USE_DSP && defined(__thumb2__)
#define RNNSKIP_DV_ASM 1
#else
#define RNNSKIP_DV_ASM 0
#endif

/* The list is int32_t words; each pair's third word holds two int16 deltas, written and read through this
 * type (may_alias: an int16 access to an int32 object is otherwise undefined under strict aliasing). */
typedef int16_t __attribute__((may_alias)) rnnskip_i16a;

/* ---- gather ---------------------------------------------------------------- */

static inline void put_entry(int32_t *list, int32_t j, int32_t off, int32_t d)
{
    int32_t *e = list + 3 * (j >> 1);
    e[j & 1] = off;
    ((rnnskip_i16a *)(void *)(e + 2))[j & 1] = (int16_t)d;
}

int32_t rnnskip_delta_pad_pair_s8(int32_t *list, int32_t count)
{
    if (count & 1) {
        put_entry(list, count, list[3 * (count >> 1)], 0);
        count++;
    }
    return count;
}

/* Elements k in [k0, k1) one by one: |d| > theta  <=>  (uint32_t)(d + theta) > 2 * theta. */
static inline int32_t gather_scalar(const int8_t *v,
                                    int8_t *last,
                                    int32_t k0,
                                    int32_t k1,
                                    int32_t theta,
                                    int32_t col_bytes,
                                    int32_t off0,
                                    int32_t *list,
                                    int32_t count)
{
    const uint32_t span = 2u * (uint32_t)theta;
    for (int32_t k = k0; k < k1; k++) {
        const int32_t x = v[k];
        const int32_t d = x - last[k];
        if ((uint32_t)(d + theta) > span) {
            last[k] = (int8_t)x;
            put_entry(list, count, off0 + k * col_bytes, d);
            count++;
        }
    }
    return count;
}

#if RNNSKIP_DV_ASM
/* clang-format off */ /* hand-scheduled Thumb-2 assembly, laid out by hand */
/*
 * DSP path (Thumb-2 asm), 4 elements per test: a = QSUB8(v, last) is the per-byte
 * difference saturated to [-128, 127], which keeps |a| > theta exact for
 * theta <= 126; u = UADD8(a, theta) wraps a negative a + theta to 128..255, so
 * "transmit" <=> u >= 2 theta + 1 unsigned: one USUB8 sets the GE flags, read with
 * MRS. A word of 4 quiet elements costs 12 cycles (3 per element). In a word with transmitting
 * elements each of them takes ~15 cycles: exact delta from the two bytes, last
 * updated, list slot written (the slots of the pair format are walked with two
 * pointers advanced by the parity of the entry count).
 */
struct rnnskip_dg_args {
    const int8_t *v;     /* 0  */
    int8_t *last;        /* 4  */
    const int8_t *end;   /* 8:  v + n4 */
    uint32_t th4;        /* 12 */
    uint32_t lim4;       /* 16 */
    int32_t *po;         /* 20: offset slot of entry j */
    rnnskip_i16a *pd;    /* 24: delta slot of entry j */
    int32_t j;           /* 28 */
    const int8_t *vbase; /* 32 */
    int32_t off0;        /* 36 */
    int32_t cb;          /* 40: col_bytes */
};

#define RNNSKIP_DG_BYTE(i)                                                             \
    "tst    r7, #(1 << (16 + " #i "))\n\t"                                             \
    "beq    3" #i "f\n\t"                                                             \
    "sbfx   r6, r4, #(8 * " #i "), #8\n\t"   /* v[k+i]    */                           \
    "sbfx   r2, r5, #(8 * " #i "), #8\n\t"   /* last[k+i] */                           \
    "strb   r6, [r1, #(" #i " - 4)]\n\t"     /* last[k+i] = v[k+i] */                  \
    "sub    r6, r6, r2\n\t"                  /* exact delta */                         \
    "str    r3, [r10]\n\t"                   /* offset of column k+i */                \
    "strh   r6, [r11]\n\t"                                                             \
    "and    r2, r12, #1\n\t"                 /* parity of entry j */                   \
    "add    r10, r10, #4\n\t"                                                          \
    "add    r10, r10, r2, lsl #2\n\t"        /* po += 4 (j even) or 8 (j odd) */       \
    "add    r11, r11, #2\n\t"                                                          \
    "add    r11, r11, r2, lsl #3\n\t"        /* pd += 2 or 10 */                       \
    "add    r12, r12, #1\n\t"                                                          \
    "3" #i ":\n\t"                                                                     \
    "add    r3, r3, lr\n\t"                  /* offset of the next column */

__attribute__((naked, noinline)) RNNSKIP_NOIPA static int32_t
rnnskip_dg_core(struct rnnskip_dg_args *a __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "sub    sp, sp, #8\n\t"
        "str    r0, [sp, #0]\n\t"
        "ldr    r1, [r0, #4]\n\t"            /* last */
        "ldr    r8, [r0, #12]\n\t"           /* th4 */
        "ldr    r9, [r0, #16]\n\t"           /* lim4 */
        "ldr    r10, [r0, #20]\n\t"          /* po */
        "ldr    r11, [r0, #24]\n\t"          /* pd */
        "ldr    r12, [r0, #28]\n\t"          /* j */
        "ldr    r2, [r0, #8]\n\t"            /* end */
        "ldr    r0, [r0, #0]\n\t"            /* v */
        "b      2f\n\t"
        "1:\n\t"                             /* quiet loop: 4 elements per pass */
        "ldr    r4, [r0], #4\n\t"
        "ldr    r5, [r1], #4\n\t"
        "qsub8  r6, r4, r5\n\t"
        "uadd8  r6, r6, r8\n\t"
        "usub8  r6, r6, r9\n\t"              /* GE[i] = element i transmits */
        "mrs    r7, apsr\n\t"
        "tst    r7, #0xF0000\n\t"
        "bne    4f\n\t"
        "2:\n\t"
        "cmp    r0, r2\n\t"
        "bne    1b\n\t"
        "mov    r0, r12\n\t"                 /* return j */
        "add    sp, sp, #8\n\t"
        "pop    {r4-r11, pc}\n\t"
        "4:\n\t"                             /* some of the 4 transmit */
        "ldr    r2, [sp, #0]\n\t"
        "ldr    r3, [r2, #32]\n\t"           /* vbase */
        "ldr    lr, [r2, #40]\n\t"           /* cb */
        "ldr    r2, [r2, #36]\n\t"           /* off0 */
        "sub    r3, r0, r3\n\t"
        "sub    r3, r3, #4\n\t"              /* k */
        "mla    r3, r3, lr, r2\n\t"          /* offset of column k */
        RNNSKIP_DG_BYTE(0) RNNSKIP_DG_BYTE(1) RNNSKIP_DG_BYTE(2) RNNSKIP_DG_BYTE(3)
        "ldr    r2, [sp, #0]\n\t"
        "ldr    r2, [r2, #8]\n\t"            /* end again (r2 was a temporary) */
        "b      2b\n\t");
}

int32_t rnnskip_delta_gather_s8(const int8_t *v, int8_t *last, int32_t n, int32_t theta,
                                int32_t col_bytes, int32_t off0, int32_t *list, int32_t count)
{
    const int32_t n4 = n & ~3;
    if (theta > 126 || n4 == 0)
        return gather_scalar(v, last, 0, n, theta, col_bytes, off0, list, count);
    struct rnnskip_dg_args a;
    a.v = v;
    a.last = last;
    a.end = v + n4;
    a.th4 = 0x01010101u * (uint32_t)theta;
    a.lim4 = 0x01010101u * (uint32_t)(2 * theta + 1);
    a.po = list + 3 * (count >> 1) + (count & 1);
    a.pd = (rnnskip_i16a *)(void *)(list + 3 * (count >> 1) + 2) + (count & 1);
    a.j = count;
    a.vbase = v;
    a.off0 = off0;
    a.cb = col_bytes;
    count = rnnskip_dg_core(&a);
    return gather_scalar(v, last, n4, n, theta, col_bytes, off0, list, count);
}
/* clang-format on */
#else
int32_t rnnskip_delta_gather_s8(const int8_t *v,
                                int8_t *last,
                                int32_t n,
                                int32_t theta,
                                int32_t col_bytes,
                                int32_t off0,
                                int32_t *list,
                                int32_t count)
{
    return gather_scalar(v, last, 0, n, theta, col_bytes, off0, list, count);
}
#endif

/* ---- column-sparse mat-vec ----------------------------------------------- */

#if RNNSKIP_DV_ASM
/* clang-format off */ /* hand-scheduled Thumb-2 assembly, laid out by hand */

#define RNNSKIP_DV_CHUNK 128 /* column pairs per pass: <= 256 columns keeps (A - B) >> 8 exact */

struct rnnskip_dv_args {
    const int16_t *w;      /* 0:  column-major paired weights        */
    const int32_t *list;   /* 4:  first pair of this chunk            */
    int32_t npairs;        /* 8:  1..RNNSKIP_DV_CHUNK                 */
    int32_t *acc;          /* 12: acc[0..rows)                        */
    int32_t n;             /* 16: rows (4-row core, multiple of 4) or 6-row blocks */
};

#define RNNSKIP_STR_(x) #x
#define RNNSKIP_STR(x) RNNSKIP_STR_(x)
#define RNNSKIP_DV_USTEPS 8
#define RNNSKIP_DV_STEP_BYTES 52

/*
 * Two cores (cycle accounting in rnnskip_delta_kernels.h): the 6-row one for the rows
 * up to the last multiple of 12, this 4-row one for the 0, 4 or 8 rows after them.
 *
 * 4-row core. Registers in the column loop (one step = one pair of columns, 4 rows):
 *   r0  -> list entry (post-incremented by 12)    r11 list end
 *   r1  -> weights of this block of 4 rows (w + 2 * (row / 2) bytes... = w + row)
 *   r2, r3  byte offsets of the two columns        r12 D = (d_j, d_j+1)
 *   r4 B0 = row 0, r5 A0 = 256*row1 + row0 (+ initial values), r6 B1 = row 2, r7 A1
 *   r8, r9  V = (v[k][p], v[k][p+1]) of the two columns; r10 temp
 *   lr  -> acc of this block
 * Stack locals: 0 list start, 4 loop entry (| 1), 8 acc end.
 */
#define RNNSKIP_DV_STEP                                                              \
    "ldr.w  r3, [r0, #4]\n\t"           /* offset of column j+1               */     \
    "ldr.w  r12, [r0, #8]\n\t"          /* D = (d_j, d_j+1)                   */     \
    "ldr.w  r2, [r0], #12\n\t"          /* offset of column j; next pair      */     \
    "ldr.w  r9, [r1, r3]\n\t"           /* V2 = (v2[p], v2[p+1])              */     \
    "ldr.w  r8, [r1, r2]\n\t"           /* V1 = (v1[p], v1[p+1])              */     \
    "pkhbt  r10, r8, r9, lsl #16\n\t"   /* (v1[p], v2[p]): rows 0, 1          */     \
    "pkhtb  r9, r9, r8, asr #16\n\t"    /* (v1[p+1], v2[p+1]): rows 2, 3      */     \
    "smlad  r5, r10, r12, r5\n\t"       /* A0 += 256*row1 + row0 terms        */     \
    "sxtb16 r10, r10\n\t"               /* (w1[0], w2[0])                     */     \
    "smlad  r4, r10, r12, r4\n\t"       /* B0 += row0 terms                   */     \
    "smlad  r7, r9, r12, r7\n\t"                                                     \
    "sxtb16 r9, r9\n\t"                                                              \
    "smlad  r6, r9, r12, r6\n\t"

__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_dv_dsp_core(const struct rnnskip_dv_args *a __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "sub    sp, sp, #16\n\t"
        "ldr    r1, [r0, #0]\n\t"           /* w */
        "ldr    r2, [r0, #4]\n\t"           /* list */
        "ldr    r3, [r0, #8]\n\t"           /* npairs */
        "ldr    lr, [r0, #12]\n\t"          /* acc */
        "ldr    r4, [r0, #16]\n\t"          /* rows */
        "add    r5, lr, r4, lsl #2\n\t"     /* acc end */
        "str    r5, [sp, #8]\n\t"
        "str    r2, [sp, #0]\n\t"
        "add    r11, r3, r3, lsl #1\n\t"
        "add    r11, r2, r11, lsl #2\n\t"   /* list end = list + 12 * npairs */
        "rsb    r5, r3, #0\n\t"             /* entry = loop + ((-npairs) & 7) * STEP */
        "and    r5, r5, #" RNNSKIP_STR(RNNSKIP_DV_USTEPS - 1) "\n\t"
        "mov    r6, #" RNNSKIP_STR(RNNSKIP_DV_STEP_BYTES) "\n\t"
        "adr.w  r7, 2f\n\t"
        "mla    r5, r5, r6, r7\n\t"
        "orr    r5, r5, #1\n\t"
        "str    r5, [sp, #4]\n\t"
        "1:\n\t"                            /* a block of 4 rows */
        "ldr    r0, [sp, #0]\n\t"           /* rewind the list */
        "ldr    r4, [lr, #0]\n\t"           /* B0 = A0 = acc[0] */
        "ldr    r6, [lr, #8]\n\t"           /* B1 = A1 = acc[2] */
        "mov    r5, r4\n\t"
        "mov    r7, r6\n\t"
        "ldr    pc, [sp, #4]\n\t"
        ".p2align 2\n\t"
        "2:\n\t"
        RNNSKIP_DV_STEP
        "21:\n\t"
        RNNSKIP_DV_STEP RNNSKIP_DV_STEP RNNSKIP_DV_STEP
        RNNSKIP_DV_STEP RNNSKIP_DV_STEP RNNSKIP_DV_STEP RNNSKIP_DV_STEP
        "22:\n\t"
        RNNSKIP_ASM_LAYOUT_CHECK(
            ".if (21b - 2b) != " RNNSKIP_STR(RNNSKIP_DV_STEP_BYTES) "\n\t"
            ".error \"rnnskip: delta step is not RNNSKIP_DV_STEP_BYTES long\"\n\t"
            ".endif\n\t"
            ".if (22b - 2b) != " RNNSKIP_STR(RNNSKIP_DV_USTEPS) " * " RNNSKIP_STR(RNNSKIP_DV_STEP_BYTES) "\n\t"
            ".error \"rnnskip: delta loop is not USTEPS * STEP_BYTES long\"\n\t"
            ".endif\n\t")
        "cmp    r0, r11\n\t"
        "bne    2b\n\t"
        "sub    r5, r5, r4\n\t"             /* A0 - B0 = 256 * (row 1 terms) */
        "sub    r7, r7, r6\n\t"
        "ldr    r8, [lr, #4]\n\t"
        "ldr    r9, [lr, #12]\n\t"
        "add    r5, r8, r5, asr #8\n\t"
        "add    r7, r9, r7, asr #8\n\t"
        "stmia  lr!, {r4-r7}\n\t"
        "add    r1, r1, #4\n\t"             /* next 4 rows of every column */
        "ldr    r8, [sp, #8]\n\t"
        "cmp    lr, r8\n\t"
        "bne    1b\n\t"
        "add    sp, sp, #16\n\t"
        "pop    {r4-r11, pc}\n\t");
}

/*
 * 6-row core. Rows [0, 4 nb) go 4 per block (one word per column), rows [4 nb, 6 nb)
 * 2 per block (one halfword per column), the latter walked downwards: block b is rows
 * 4b..4b+3 and 6nb-2-2b, 6nb-1-2b, so every load is aligned and the blocks are done when
 * the word pointer passes the halfword pointer. Registers in the column loop:
 *   r0  -> list entry (post-incremented by 12)
 *   r1  w + 4b (word rows), r2  w + 6nb - 2 - 2b (halfword rows)
 *   r3, r12  byte offsets of the two columns, then their halfwords; lr D = (d_j, d_j+1)
 *   r10, r11 the two columns' words
 *   r4/r5 B/A of rows 4b, 4b+1; r6/r7 of 4b+2, 4b+3; r8/r9 of the halfword rows
 * The first pair of every block is peeled (A starts from B's initial value, the acc of
 * the even row, without register moves); the others run in a USTEPS-step unrolled loop
 * entered part-way. Stack locals: 0 list start, 4 list end, 8 acc - 4 w (the acc of a
 * row is that + 4 * its weight pointer), 16 loop entry (| 1).
 */
#define RNNSKIP_DV6_USTEPS 16
#define RNNSKIP_DV6_STEP_BYTES 76
#define RNNSKIP_DV6_STEP_(a0, a1, a2)                                                \
    "ldr.w  r12, [r0, #4]\n\t"          /* offset of column j+1               */     \
    "ldr.w  lr, [r0, #8]\n\t"           /* D = (d_j, d_j+1)                   */     \
    "ldr.w  r3, [r0], #12\n\t"          /* offset of column j; next pair      */     \
    "ldr.w  r11, [r1, r12]\n\t"         /* word rows of column j+1            */     \
    "ldr.w  r10, [r1, r3]\n\t"          /* ... of column j                    */     \
    "ldrh.w r3, [r2, r3]\n\t"           /* halfword rows of column j          */     \
    "ldrh.w r12, [r2, r12]\n\t"         /* ... of column j+1                  */     \
    "pkhbt  r3, r3, r12, lsl #16\n\t"                                                \
    "smlad  r9, r3, lr, " a2 "\n\t"                                                  \
    "sxtb16 r3, r3\n\t"                                                              \
    "smlad  r8, r3, lr, r8\n\t"                                                      \
    "pkhbt  r12, r10, r11, lsl #16\n\t" /* (v1[p], v2[p])                     */     \
    "pkhtb  r11, r11, r10, asr #16\n\t" /* (v1[p+1], v2[p+1])                 */     \
    "smlad  r5, r12, lr, " a0 "\n\t"                                                 \
    "sxtb16 r12, r12\n\t"                                                            \
    "smlad  r4, r12, lr, r4\n\t"                                                     \
    "smlad  r7, r11, lr, " a1 "\n\t"                                                 \
    "sxtb16 r11, r11\n\t"                                                            \
    "smlad  r6, r11, lr, r6\n\t"
#define RNNSKIP_DV6_STEP RNNSKIP_DV6_STEP_("r5", "r7", "r9")
#define RNNSKIP_DV6_PEEL RNNSKIP_DV6_STEP_("r4", "r6", "r8")

/* rnnskip_dv_args.n = nb, the number of 6-row blocks (> 0, even). */
__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_dv6_dsp_core(const struct rnnskip_dv_args *a __attribute__((unused)))
{
    __asm__ volatile(
        "push   {r4-r11, lr}\n\t"
        "sub    sp, sp, #24\n\t"
        "ldr    r1, [r0, #0]\n\t"           /* w */
        "ldr    r2, [r0, #4]\n\t"           /* list */
        "ldr    r3, [r0, #8]\n\t"           /* npairs */
        "ldr    r12, [r0, #12]\n\t"         /* acc */
        "ldr    r4, [r0, #16]\n\t"          /* nb */
        "str    r2, [sp, #0]\n\t"
        "add    r5, r3, r3, lsl #1\n\t"
        "add    r5, r2, r5, lsl #2\n\t"
        "str    r5, [sp, #4]\n\t"           /* list end */
        "sub    r12, r12, r1, lsl #2\n\t"
        "str    r12, [sp, #8]\n\t"          /* acc - 4 w */
        "add    r2, r4, r4, lsl #1\n\t"
        "add    r2, r1, r2, lsl #1\n\t"
        "sub    r2, r2, #2\n\t"             /* w + 6 nb - 2: last halfword rows */
        "rsb    r5, r3, #1\n\t"             /* entry = loop + ((1 - npairs) & (USTEPS - 1)) * STEP, */
        "and    r5, r5, #" RNNSKIP_STR(RNNSKIP_DV6_USTEPS - 1) "\n\t"
        "cmp    r3, #1\n\t"                 /* or the loop end when the peeled pair is the only one */
        "it     eq\n\t"
        "moveq  r5, #" RNNSKIP_STR(RNNSKIP_DV6_USTEPS) "\n\t"
        "mov    r6, #" RNNSKIP_STR(RNNSKIP_DV6_STEP_BYTES) "\n\t"
        "adr.w  r7, 2f\n\t"
        "mla    r5, r5, r6, r7\n\t"
        "orr    r5, r5, #1\n\t"
        "str    r5, [sp, #16]\n\t"
        "add    r10, r12, r1, lsl #2\n\t"
        "add    r11, r12, r2, lsl #2\n\t"
        "sub    r10, r10, #16\n\t"          /* as the loop leaves them for the next block */
        "add    r11, r11, #8\n\t"
        "b      3f\n\t"
        ".p2align 2\n\t"
        "2:\n\t"
        RNNSKIP_DV6_STEP
        "21:\n\t"
        ".rept " RNNSKIP_STR(RNNSKIP_DV6_USTEPS) " - 1\n\t"
        RNNSKIP_DV6_STEP
        ".endr\n\t"
        "22:\n\t"
        RNNSKIP_ASM_LAYOUT_CHECK(
            ".if (21b - 2b) != " RNNSKIP_STR(RNNSKIP_DV6_STEP_BYTES) "\n\t"
            ".error \"rnnskip: delta 6-row step is not RNNSKIP_DV6_STEP_BYTES long\"\n\t"
            ".endif\n\t"
            ".if (22b - 2b) != " RNNSKIP_STR(RNNSKIP_DV6_USTEPS) " * " RNNSKIP_STR(RNNSKIP_DV6_STEP_BYTES) "\n\t"
            ".error \"rnnskip: delta 6-row loop is not USTEPS * STEP_BYTES long\"\n\t"
            ".endif\n\t")
        "ldr    r3, [sp, #4]\n\t"
        "ldr    r10, [sp, #8]\n\t"
        "cmp    r0, r3\n\t"
        "bne    2b\n\t"
        "add    r11, r10, r2, lsl #2\n\t"   /* acc of the halfword rows */
        "add    r10, r10, r1, lsl #2\n\t"   /* acc of the word rows */
        "ldr    r3, [r10, #4]\n\t"
        "ldr    r12, [r10, #12]\n\t"
        "ldr    lr, [r11, #4]\n\t"
        "sub    r5, r5, r4\n\t"             /* A - B = 256 * (odd row terms) */
        "sub    r7, r7, r6\n\t"
        "sub    r9, r9, r8\n\t"
        "add    r5, r3, r5, asr #8\n\t"
        "add    r7, r12, r7, asr #8\n\t"
        "add    r9, lr, r9, asr #8\n\t"
        "str    r4, [r10, #0]\n\t"          /* single stores: 1 cycle each, an stm 1 + N */
        "str    r5, [r10, #4]\n\t"
        "str    r6, [r10, #8]\n\t"
        "str    r7, [r10, #12]\n\t"
        "str    r8, [r11, #0]\n\t"
        "str    r9, [r11, #4]\n\t"
        "adds   r1, r1, #4\n\t"
        "subs   r2, r2, #2\n\t"
        "cmp    r1, r2\n\t"
        "bhi    9f\n\t"
        "3:\n\t"                            /* next block: B = acc of its even rows, first pair */
        "ldr    r0, [sp, #0]\n\t"
        "ldr    r4, [r10, #16]\n\t"
        "ldr    r6, [r10, #24]\n\t"
        "ldr    r8, [r11, #-8]\n\t"
        RNNSKIP_DV6_PEEL
        "ldr    pc, [sp, #16]\n\t"
        "9:\n\t"
        "add    sp, sp, #24\n\t"
        "pop    {r4-r11, pc}\n\t");
}

void rnnskip_delta_mat_vec_s8(const int16_t *w, int32_t *list, int32_t count, int32_t *acc, int32_t rows)
{
    struct rnnskip_dv_args a;
    if (count <= 0 || rows <= 0)
        return;
    rnnskip_delta_pad_pair_s8(list, count);
    const int32_t npairs = (count + 1) >> 1;
    const int32_t nb = 2 * (rows / 12);   /* 6-row blocks; the other rows (0, 4 or 8) 4 at a time */
    const int32_t done = 6 * nb;
    for (int32_t p0 = 0; p0 < npairs; p0 += RNNSKIP_DV_CHUNK) {
        a.list = list + 3 * p0;
        a.npairs = npairs - p0 < RNNSKIP_DV_CHUNK ? npairs - p0 : RNNSKIP_DV_CHUNK;
        if (nb > 0) {
            a.w = w;
            a.acc = acc;
            a.n = nb;
            rnnskip_dv6_dsp_core(&a);
        }
        if (rows > done) {
            a.w = (const int16_t *)(const void *)((const int8_t *)(const void *)w + done);
            a.acc = acc + done;
            a.n = rows - done;
            rnnskip_dv_dsp_core(&a);
        }
    }
}

/* clang-format on */
#else /* plain C */

void rnnskip_delta_mat_vec_s8(const int16_t *w, int32_t *list, int32_t count, int32_t *acc, int32_t rows)
{
    const int8_t *base = (const int8_t *)(const void *)w;
    if (count <= 0 || rows <= 0) return;
    rnnskip_delta_pad_pair_s8(list, count);
    const int32_t npairs = (count + 1) >> 1;
    for (int32_t r = 0; r < rows; r += 4) {
        int32_t a0 = acc[r], a1 = acc[r + 1], a2 = acc[r + 2], a3 = acc[r + 3];
        const int32_t *e = list;
        for (int32_t i = 0; i < npairs; i++, e += 3) {
            const rnnskip_i16a *d = (const rnnskip_i16a *)(const void *)(e + 2);
            for (int32_t h = 0; h < 2; h++) {
                const int16_t *c = (const int16_t *)(const void *)(base + e[h] + r);
                const int32_t dj = d[h];
                const int32_t v0 = c[0], v1 = c[1];
                const int32_t w0 = (int8_t)(v0 & 0xFF), w2 = (int8_t)(v1 & 0xFF);
                a0 += w0 * dj;
                a1 += ((v0 - w0) >> 8) * dj;
                a2 += w2 * dj;
                a3 += ((v1 - w2) >> 8) * dj;
            }
        }
        acc[r] = a0;
        acc[r + 1] = a1;
        acc[r + 2] = a2;
        acc[r + 3] = a3;
    }
}

#endif
