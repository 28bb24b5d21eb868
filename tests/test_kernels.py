"""int8 mat-vec kernels (rnnskip/kernels/rnnskip_mat_vec_s8.c): bit-exactness and speed.

* Host: the plain-C path and the naive kernel, built with the host C compiler
  into a shared library and called through ctypes, against numpy (int64).
* Cortex-M4 (arm-none-eabi-gcc + rnnskip.simulator's UnicornEmulator):
  firmware built twice, DSP path and plain path (-DRNNSKIP_NO_DSP), run on
  random and extreme inputs; every kernel bit-exact with numpy.
* Cycles (the simulator's Cortex-M4 model, 0 flash wait states): the DSP
  kernel reaches >= 0.6 MAC per modelled cycle at 96 -> 256 and 128 -> 384 and
  is >= 2.5x faster than the naive loop. Measured when written: 0.624 / 0.632
  MAC/cycle (plain C 0.258 / 0.260, naive 0.123 / 0.124).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from helpers import HAVE_ARM
from kernel_build import CLANG, host_kernel_lib, m4_objects

KDIR = Path(__file__).resolve().parent.parent / "rnnskip" / "kernels"
SRC = KDIR / "rnnskip_mat_vec_s8.c"

# Shapes: rows and cols multiples of 4. cols covers every residue mod 32 (the
# DSP loop is 32 columns, entered part-way), and > 256 (the x-chunk size).
SHAPES = [(4, 4), (4, 8), (8, 12), (4, 16), (12, 20), (4, 24), (8, 28), (4, 32), (16, 36),
          (8, 60), (20, 64), (4, 100), (256, 96), (32, 128), (8, 252), (12, 256), (8, 260),
          (4, 292), (8, 512), (4, 516)]
EXTREMES = [(-128, -128), (-128, 127), (127, 127), (127, -128)]


def _ref(w, x, acc):
    return (acc.astype(np.int64) + w.astype(np.int64) @ x.astype(np.int64)).astype(np.int32)


def _case(rng, rows, cols, wv=None, xv=None):
    w = (np.full((rows, cols), wv, np.int8) if wv is not None
         else rng.integers(-128, 128, size=(rows, cols), dtype=np.int8))
    x = np.full(cols, xv, np.int8) if xv is not None else rng.integers(-128, 128, size=cols, dtype=np.int8)
    acc = rng.integers(-(1 << 20), 1 << 20, size=rows, dtype=np.int32)
    return w, x, acc


def _cases():
    rng = np.random.default_rng(1234)
    out = [(f"rand{r}x{c}", *_case(rng, r, c)) for r, c in SHAPES]
    for wv, xv in EXTREMES:
        for r, c in [(4, 4), (8, 36), (4, 516)]:
            out.append((f"ext{wv},{xv}_{r}x{c}", *_case(rng, r, c, wv, xv)))
    return out


# --------------------------------------------------------------------------- host
@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    lib = host_kernel_lib(tmp_path_factory.mktemp("kernels_host"), "mv", SRC)
    for fn in (lib.rnnskip_mat_vec_acc_s8, lib.rnnskip_mat_vec_acc_s8_naive):
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]
    return lib


@pytest.mark.parametrize("kernel", ["rnnskip_mat_vec_acc_s8", "rnnskip_mat_vec_acc_s8_naive"])
def test_host_bit_exact(host_lib, kernel):
    fn = getattr(host_lib, kernel)
    for name, w, x, acc in _cases():
        w, x = np.ascontiguousarray(w), np.ascontiguousarray(x)
        a = acc.copy()
        fn(w.ctypes.data, x.ctypes.data, a.ctypes.data, w.shape[0], w.shape[1])
        np.testing.assert_array_equal(a, _ref(w, x, acc), err_msg=f"{kernel} {name}")


# --------------------------------------------------------------------------- Cortex-M4
MAXW, MAXX, MAXR = 384 * 128, 520, 384

HARNESS = f"""
#include <stdint.h>
#include "rnnskip_kernels.h"
int8_t tk_w[{MAXW}] __attribute__((aligned(4)));
int8_t tk_x[{MAXX}] __attribute__((aligned(4)));
int32_t tk_acc[{MAXR}];
int main(void) {{ for (;;) {{ }} }}
"""
KERNELS = ("rnnskip_mat_vec_acc_s8", "rnnskip_mat_vec_acc_s8_naive")
KEEP = [*KERNELS, "tk_w", "tk_x", "tk_acc"]


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    if not HAVE_ARM:
        pytest.skip("arm-none-eabi-gcc not found (run `make setup`)")
    pytest.importorskip("unicorn")
    sim = pytest.importorskip("rnnskip.simulator", reason="rnnskip.simulator (the cycle model) not available")
    from rnnskip import targets
    from rnnskip.build import build_firmware
    target = targets.load("cortex-m4")
    d = tmp_path_factory.mktemp("kernels_m4")
    (d / "tk_harness.c").write_text(HARNESS)
    elfs = {}
    for variant, extra in (("dsp", []), ("plain", ["-DRNNSKIP_NO_DSP"])):
        out = d / variant
        elfs[variant] = build_firmware(target, [d / "tk_harness.c", SRC], out, name=f"tk_{variant}",
                                   extra_cflags=["-Wall", "-Wextra", "-Werror", *extra],
                                   include_dirs=[KDIR], keep=KEEP)
    if CLANG is not None:   # the DSP asm as clang's integrated assembler lays it out
        (d / "clang").mkdir()
        objs = m4_objects(d / "clang", [SRC], "clang", include_dirs=[KDIR])
        elfs["clang"] = build_firmware(target, [d / "tk_harness.c", *objs], d / "clang", name="tk_clang",
                                       include_dirs=[KDIR], keep=KEEP)
    return sim.UnicornEmulator, target, elfs


def _run(emu, kernel, w, x, acc):
    rows, cols = w.shape
    emu.write("tk_w", np.ascontiguousarray(w).tobytes())
    emu.write("tk_x", np.ascontiguousarray(x).tobytes())
    emu.write("tk_acc", acc.astype("<i4").tobytes())
    st = emu.call(kernel, args=("tk_w", "tk_x", "tk_acc", rows, cols), mode="blocks")
    out = np.frombuffer(emu.read("tk_acc", 4 * rows), dtype="<i4").astype(np.int32)
    return out, st


@pytest.mark.parametrize("variant", ["dsp", "plain", "clang"])
def test_m4_bit_exact(m4, variant):
    Emu, target, elfs = m4
    if variant not in elfs:
        pytest.skip("clang is not installed (make setup installs it)")
    emu = Emu(elfs[variant], target)
    for name, w, x, acc in _cases():
        ref = _ref(w, x, acc)
        for kname in KERNELS:
            out, _ = _run(emu, kname, w, x, acc)
            np.testing.assert_array_equal(out, ref, err_msg=f"{variant} {kname} {name}")


def test_dsp_path_is_the_asm_core(m4):
    """The DSP firmware really contains the SXTB16/SMLAD core and the plain one does not."""
    elfs = m4[2]

    def syms(elf):
        from elftools.elf.elffile import ELFFile
        with open(elf, "rb") as f:
            return {s.name for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
    assert "rnnskip_mv4_dsp_core" in syms(elfs["dsp"])
    assert "rnnskip_mv4_dsp_core" not in syms(elfs["plain"])


def _cycles(emu, kernel, rows, cols, seed=7):
    rng = np.random.default_rng(seed)
    w, x, acc = _case(rng, rows, cols)
    out, st = _run(emu, kernel, w, x, acc)
    np.testing.assert_array_equal(out, _ref(w, x, acc))
    return int(st.cycles)


@pytest.mark.parametrize("rows,cols", [(256, 96), (384, 128)])
def test_m4_cycles(m4, rows, cols):
    Emu, target, elfs = m4
    dsp = Emu(elfs["dsp"], target)
    plain = Emu(elfs["plain"], target)
    c_dsp = _cycles(dsp, KERNELS[0], rows, cols)
    c_naive = _cycles(dsp, KERNELS[1], rows, cols)
    c_plain = _cycles(plain, KERNELS[0], rows, cols)
    macs = rows * cols
    msg = (f"{cols}->{rows}: dsp {c_dsp} cycles ({macs / c_dsp:.3f} MAC/cycle), plain {c_plain} "
           f"({macs / c_plain:.3f}), naive {c_naive} ({macs / c_naive:.3f})")
    print(msg)
    assert macs / c_dsp >= 0.6, msg
    assert c_naive / c_dsp >= 2.5, msg
    assert c_plain < c_naive, msg

