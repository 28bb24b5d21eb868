/*
 * rnnskip QEMU TCG plugin: exact instruction counts of every call of one function.
 *
 *   qemu-system-arm ... -plugin librnnskip_qemu_icount.so,entry=0x800013d,ret=0x8000e21,out=counts.txt
 *
 * entry: address of the function (rnnskip_io_run); ret: return address(es) in the
 * caller (the instruction after each BL), "ret" may be given several times.
 * Every translated block gets an execution callback that adds its instruction
 * count to a running total; the total is sampled when the block at ``entry``
 * starts and when a block at a ``ret`` address starts, and the difference -
 * every instruction from the function's first to its return, callees included -
 * is appended to ``out`` as one line "icount <n>" (flushed at once, so the
 * counts survive QEMU being killed). A translation block never spans a BL
 * (it ends the block) and blocks are looked up by start address, so both
 * addresses always start blocks.
 *
 * Only the few declarations of QEMU's plugin API (include/qemu/qemu-plugin.h,
 * API version 1: QEMU 4.2 .. 8.x) this file needs are repeated here, so it builds
 * without QEMU's headers: Debian ships qemu-system-arm with plugin support but
 * without the header or the example plugins (no libinsn.so).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    _Bool system_emulation;
} qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

#define MAX_RET 64
static uint64_t entry_addr = UINT64_MAX;
static uint64_t ret_addr[MAX_RET];
static int n_ret;
static FILE *out;
static uint64_t total;      /* instructions executed so far */
static uint64_t at_entry;   /* total when the current call started */
static int inside;

/* userdata: n_insns in the low 32 bits, kind (0 plain, 1 entry, 2 ret) above */
static void on_tb(unsigned int vcpu, void *udata)
{
    const uintptr_t u = (uintptr_t)udata;
    const unsigned kind = (unsigned)(u >> 32);
    (void)vcpu;
    if (kind == 1) {
        at_entry = total;
        inside = 1;
    } else if (kind == 2 && inside) {
        fprintf(out, "icount %llu\n", (unsigned long long)(total - at_entry));
        fflush(out);
        inside = 0;
    }
    total += (uint32_t)u;
}

static void on_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    const uint64_t pc = qemu_plugin_tb_vaddr(tb);
    uintptr_t kind = 0;
    (void)id;
    if (pc == entry_addr)
        kind = 1;
    for (int i = 0; i < n_ret; i++)
        if (pc == ret_addr[i])
            kind = 2;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)((kind << 32) | (uintptr_t)qemu_plugin_tb_n_insns(tb)));
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "entry=", 6))
            entry_addr = strtoull(argv[i] + 6, NULL, 0);
        else if (!strncmp(argv[i], "ret=", 4) && n_ret < MAX_RET)
            ret_addr[n_ret++] = strtoull(argv[i] + 4, NULL, 0);
        else if (!strncmp(argv[i], "out=", 4))
            path = argv[i] + 4;
    }
    if (!path || entry_addr == UINT64_MAX || !n_ret) {
        fprintf(stderr, "rnnskip icount plugin: needs entry=, ret= and out= arguments\n");
        return -1;
    }
    out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "rnnskip icount plugin: cannot write %s\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_trans);
    return 0;
}
