/*
 * Delta-network kernels: gather of transmitting columns and the column-sparse
 * mat-vec. See rnnskip_delta_kernels.h for the contract and the weight layout
 * (rnnskip/delta/codegen.py writes it), rnnskip/quant/delta_golden.py for the
 * specification.
 */
#include "rnnskip_kernels.h"
#include "rnnskip_delta_kernels.h"

#if RNNSKIP_USE_DSP && defined(__thumb2__)
#define RNNSKIP_DV_ASM 1
#else
#define RNNSKIP_DV_ASM 0
#endif

/* ---- gather ---------------------------------------------------------------- */

static inline void put_entry(int32_t *list, int32_t j, int32_t off, int32_t d)
{
    int32_t *e = list + 3 * (j >> 1);
    e[j & 1] = off;
    ((int16_t *)(void *)(e + 2))[j & 1] = (int16_t)d;
}

/* Elements k in [k0, k1) one by one: |d| > theta  <=>  (uint32_t)(d + theta) > 2 * theta. */
static inline int32_t gather_scalar(const int8_t *v, int8_t *last, int32_t k0, int32_t k1, int32_t theta,
                                    int32_t col_bytes, int32_t off0, int32_t *list, int32_t count)
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

#if RNNSKIP_USE_DSP
typedef uint32_t __attribute__((may_alias, aligned(1))) rnnskip_u32u;

/*
 * DSP path, 4 elements per test: a = QSUB8(v, last) is the per-byte difference
 * saturated to [-128, 127], which keeps |a| > theta exact for theta <= 126.
 * u = UADD8(a, theta) wraps negative a + theta to 128..255, so
 * transmit <=> u >= 2 theta + 1 (unsigned): one USUB8 sets the GE flags and
 * one SEL turns them into a byte mask. A word of 4 quiet elements costs about
 * 10 cycles; each transmitting element then writes its list slot (the slots of
 * the pair format are walked with two pointers, no division by the count).
 */
int32_t rnnskip_delta_gather_s8(const int8_t *v, int8_t *last, int32_t n, int32_t theta,
                                int32_t col_bytes, int32_t off0, int32_t *list, int32_t count)
{
    if (theta > 126)
        return gather_scalar(v, last, 0, n, theta, col_bytes, off0, list, count);
    const int32_t n4 = n & ~3;
    const uint32_t th4 = 0x01010101u * (uint32_t)theta;
    const uint32_t lim4 = 0x01010101u * (uint32_t)(2 * theta + 1);
    int32_t j = count;
    int32_t *po = list + 3 * (j >> 1) + (j & 1);                              /* offset slot of entry j */
    int16_t *pd = (int16_t *)(void *)(list + 3 * (j >> 1) + 2) + (j & 1);    /* delta slot of entry j  */
    for (int32_t k = 0; k < n4; k += 4) {
        const uint32_t a = __qsub8(*(const rnnskip_u32u *)(const void *)(v + k),
                                   *(const rnnskip_u32u *)(const void *)(last + k));
        uint32_t m;
        __asm__("uadd8 %0, %1, %2\n\t"
                "usub8 %0, %0, %3\n\t"
                "sel   %0, %1, %4"           /* bytes of a where transmitting, else 0x00... */
                : "=&r"(m) : "r"(a), "r"(th4), "r"(lim4), "r"(0u) : "cc");
        /* a byte of a can be 0 only where it does not transmit (theta >= 0), but a transmitting
         * byte is never 0, so m != 0 <=> some element transmits */
        if (__builtin_expect(m == 0, 1))
            continue;
        for (int32_t i = 0; i < 4; i++, m >>= 8) {
            if (m & 0xFF) {
                const int32_t x = v[k + i];
                const int32_t d = x - last[k + i];
                last[k + i] = (int8_t)x;
                *po = off0 + (k + i) * col_bytes;
                *pd = (int16_t)d;
                const int32_t odd = j & 1;
                po += 1 + odd;
                pd += 1 + 4 * odd;
                j++;
            }
        }
    }
    return gather_scalar(v, last, n4, n, theta, col_bytes, off0, list, j);
}
#else
int32_t rnnskip_delta_gather_s8(const int8_t *v, int8_t *last, int32_t n, int32_t theta,
                                int32_t col_bytes, int32_t off0, int32_t *list, int32_t count)
{
    return gather_scalar(v, last, 0, n, theta, col_bytes, off0, list, count);
}
#endif

/* ---- column-sparse mat-vec ----------------------------------------------- */

#if RNNSKIP_DV_ASM

#define RNNSKIP_DV_CHUNK 128 /* column pairs per pass: <= 256 columns keeps (A - B) >> 8 exact */

struct rnnskip_dv_args {
    const int16_t *w;      /* 0:  column-major paired weights        */
    const int32_t *list;   /* 4:  first pair of this chunk            */
    int32_t npairs;        /* 8:  1..RNNSKIP_DV_CHUNK                 */
    int32_t *acc;          /* 12: acc[0..rows)                        */
    int32_t rows;          /* 16: multiple of 4, > 0                  */
};

#define RNNSKIP_STR_(x) #x
#define RNNSKIP_STR(x) RNNSKIP_STR_(x)
#define RNNSKIP_DV_USTEPS 8
#define RNNSKIP_DV_STEP_BYTES 52

#if defined(__clang__)
#define RNNSKIP_NOIPA
#else
#define RNNSKIP_NOIPA __attribute__((noipa))
#endif

/*
 * Registers in the column loop (one step = one pair of columns, 4 rows):
 *   r0  -> list entry (post-incremented by 12)    r11 list end
 *   r1  -> weights of this block of 4 rows (w + 2 * (row / 2) bytes... = w + row)
 *   r2, r3  byte offsets of the two columns        r12 D = (d_j, d_j+1)
 *   r4 B0 = row 0, r5 A0 = 256*row1 + row0 (+ initial values), r6 B1 = row 2, r7 A1
 *   r8, r9  V = (v[k][p], v[k][p+1]) of the two columns; r10 temp
 *   lr  -> acc of this block
 * Stack locals: 0 list start, 4 loop entry (| 1), 8 acc end.
 */
#define RNNSKIP_DV_STEP                                                              \
    "ldr.w  r2, [r0], #12\n\t"          /* offset of column j; next pair      */     \
    "ldr.w  r3, [r0, #-8]\n\t"          /* offset of column j+1               */     \
    "ldr.w  r12, [r0, #-4]\n\t"         /* D = (d_j, d_j+1)                   */     \
    "ldr.w  r8, [r1, r2]\n\t"           /* V1 = (v1[p], v1[p+1])              */     \
    "ldr.w  r9, [r1, r3]\n\t"           /* V2 = (v2[p], v2[p+1])              */     \
    "pkhbt  r10, r8, r9, lsl #16\n\t"   /* (v1[p], v2[p]): rows 0, 1          */     \
    "pkhtb  r9, r9, r8, asr #16\n\t"    /* (v1[p+1], v2[p+1]): rows 2, 3      */     \
    "smlad  r5, r10, r12, r5\n\t"       /* A0 += 256*row1 + row0 terms        */     \
    "sxtb16 r10, r10\n\t"               /* (w1[0], w2[0])                     */     \
    "smlad  r4, r10, r12, r4\n\t"       /* B0 += row0 terms                   */     \
    "smlad  r7, r9, r12, r7\n\t"                                                     \
    "sxtb16 r9, r9\n\t"                                                              \
    "smlad  r6, r9, r12, r6\n\t"

__attribute__((naked, noinline)) RNNSKIP_NOIPA static void
rnnskip_dv_dsp_core(const struct rnnskip_dv_args *a)
{
    (void)a;
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
        ".if (21b - 2b) != " RNNSKIP_STR(RNNSKIP_DV_STEP_BYTES) "\n\t"
        ".error \"rnnskip: delta step is not RNNSKIP_DV_STEP_BYTES long\"\n\t"
        ".endif\n\t"
        ".if (22b - 2b) != " RNNSKIP_STR(RNNSKIP_DV_USTEPS) " * " RNNSKIP_STR(RNNSKIP_DV_STEP_BYTES) "\n\t"
        ".error \"rnnskip: delta loop is not USTEPS * STEP_BYTES long\"\n\t"
        ".endif\n\t"
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

void rnnskip_delta_mat_vec_s8(const int16_t *w, int32_t *list, int32_t count, int32_t *acc, int32_t rows)
{
    struct rnnskip_dv_args a;
    if (count <= 0 || rows <= 0)
        return;
    if (count & 1)
        put_entry(list, count, list[3 * (count >> 1)], 0);
    const int32_t npairs = (count + 1) >> 1;
    a.w = w;
    a.acc = acc;
    a.rows = rows;
    for (int32_t p0 = 0; p0 < npairs; p0 += RNNSKIP_DV_CHUNK) {
        a.list = list + 3 * p0;
        a.npairs = npairs - p0 < RNNSKIP_DV_CHUNK ? npairs - p0 : RNNSKIP_DV_CHUNK;
        rnnskip_dv_dsp_core(&a);
    }
}

#else /* plain C */

void rnnskip_delta_mat_vec_s8(const int16_t *w, int32_t *list, int32_t count, int32_t *acc, int32_t rows)
{
    const int8_t *base = (const int8_t *)(const void *)w;
    if (count <= 0 || rows <= 0)
        return;
    if (count & 1)
        put_entry(list, count, list[3 * (count >> 1)], 0);
    const int32_t npairs = (count + 1) >> 1;
    for (int32_t r = 0; r < rows; r += 4) {
        int32_t a0 = acc[r], a1 = acc[r + 1], a2 = acc[r + 2], a3 = acc[r + 3];
        const int32_t *e = list;
        for (int32_t i = 0; i < npairs; i++, e += 3) {
            const int16_t *d = (const int16_t *)(const void *)(e + 2);
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
        acc[r] = a0; acc[r + 1] = a1; acc[r + 2] = a2; acc[r + 3] = a3;
    }
}

#endif
