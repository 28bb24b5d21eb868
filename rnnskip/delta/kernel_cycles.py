"""Cycle measurements of the delta kernels on the Cortex-M4 model (tests and benchmarks):
a small firmware with the gather and column-sparse mat-vec, and the dense paired
mat-vec the generated code uses otherwise, called directly in the emulator."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .codegen import list_words, pack_columns

KDIR = Path(__file__).resolve().parent.parent / "kernels"
MAXW, MAXN, MAXR = 96 * 1024, 640, 768

HARNESS = f"""
#include <stdint.h>
#include "rnnskip_kernels.h"
#include "rnnskip_delta_kernels.h"
int16_t dk_w[{MAXW // 2}] __attribute__((aligned(4)));
int8_t dk_v[{MAXN}] __attribute__((aligned(4)));
int8_t dk_last[{MAXN}] __attribute__((aligned(4)));
int32_t dk_list[{list_words(MAXN)}];
int32_t dk_acc[{MAXR}];
int32_t dk_bias[{MAXR}];
int main(void) {{ for (;;) {{ }} }}
"""
KEEP = ["rnnskip_delta_gather_s8", "rnnskip_delta_mat_vec_s8", "rnnskip_mat_vec_paired_s8",
        "dk_w", "dk_v", "dk_last", "dk_list", "dk_acc", "dk_bias"]


def build(out_dir, variant: str = "dsp", target_name: str = "cortex-m4"):
    """-> (emulator, target) for the kernel harness (DSP asm or plain C)."""
    from .. import targets
    from ..build import build_firmware
    from ..simulator import UnicornEmulator
    t = targets.load(target_name)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "dk.c").write_text(HARNESS)
    extra = ["-Wall", "-Wextra", "-Werror"] + (["-DRNNSKIP_NO_DSP"] if variant == "plain" else [])
    elf = build_firmware(t, [d / "dk.c", KDIR / "rnnskip_delta_s8.c", KDIR / "rnnskip_mat_vec_paired_s8.c"],
                         d / variant, name=f"dk_{variant}", extra_cflags=extra, include_dirs=[KDIR], keep=KEEP)
    return UnicornEmulator(elf, t), t


def delta_step(emu, w, v, last, theta, acc0):
    """gather + column-sparse mat-vec -> (acc, new last, count, gather stats, mat-vec stats)."""
    rows, n = w.shape
    emu.write("dk_w", pack_columns(w).tobytes())
    emu.write("dk_v", np.ascontiguousarray(v, np.int8).tobytes())
    emu.write("dk_last", np.ascontiguousarray(last, np.int8).tobytes())
    emu.write("dk_acc", np.asarray(acc0, "<i4").tobytes())
    sg = emu.call("rnnskip_delta_gather_s8", args=("dk_v", "dk_last", n, theta, rows, 0, "dk_list", 0), mode="blocks")
    cnt = sg.return_value
    sm = emu.call("rnnskip_delta_mat_vec_s8", args=("dk_w", "dk_list", cnt, "dk_acc", rows), mode="blocks")
    acc = np.frombuffer(emu.read("dk_acc", 4 * rows), "<i4").astype(np.int32)
    nl = np.frombuffer(emu.read("dk_last", n), np.int8)
    return acc, nl, cnt, sg, sm


def dense_matvec(emu, w, v):
    """The dense paired-row mat-vec (the portable provider's) on the same matrix -> (acc, stats)."""
    from ..quant.layout import pack_paired
    rows, cols = w.shape
    emu.write("dk_w", pack_paired(w).tobytes())
    emu.write("dk_v", np.ascontiguousarray(v, np.int8).tobytes())
    emu.write("dk_bias", np.zeros(rows, "<i4").tobytes())
    st = emu.call("rnnskip_mat_vec_paired_s8", args=("dk_w", "dk_v", "dk_bias", "dk_acc", rows, cols), mode="blocks")
    return np.frombuffer(emu.read("dk_acc", 4 * rows), "<i4").astype(np.int32), st


def density_sweep(emu, rows=384, cols=168, densities=(0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0), theta=2, seed=3):
    """Cycles of one gather + column-sparse mat-vec at given fractions of transmitting columns,
    and of the dense mat-vec on the same matrix. Returns a dict (checked against numpy)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (rows, cols), dtype=np.int8)
    rows_out = []
    for dens in densities:
        last = rng.integers(-100, 100, cols, dtype=np.int8)
        v = last.copy()
        k = int(round(dens * cols))
        idx = rng.choice(cols, k, replace=False)
        v[idx] = (last[idx].astype(np.int16) + rng.choice([-9, -5, 5, 9], k)).astype(np.int8)
        acc, _, cnt, sg, sm = delta_step(emu, w, v, last, theta, np.zeros(rows, np.int32))
        d = v.astype(np.int64) - last
        tx = np.abs(d) > theta
        assert np.array_equal(acc, (w[:, tx].astype(np.int64) @ d[tx]).astype(np.int32))
        rows_out.append({"density": float(cnt / cols), "columns": int(cnt), "gather_cycles": int(sg.cycles),
                         "matvec_cycles": int(sm.cycles), "macs": int(cnt * rows)})
    v = rng.integers(-128, 128, cols, dtype=np.int8)
    acc, st = dense_matvec(emu, w, v)
    assert np.array_equal(acc, (w.astype(np.int64) @ v).astype(np.int32))
    return {"rows": rows, "cols": cols, "points": rows_out, "dense_matvec_cycles": int(st.cycles)}
