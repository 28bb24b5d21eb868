"""Paired-row int16 mat-vec (rnnskip/kernels/rnnskip_mat_vec_paired_s8.c + rnnskip/quant/layout.py).

* Layout: pack_paired / unpack_paired round trip, the packed formula, and the
  refusals (shape, dtype, -128).
* Host: the plain-C path (and its one-pair Armv6-M form) built with the host C compiler, called through
  ctypes, bit-exact against numpy (int64, wrapped to int32) on random and
  extreme inputs (weights +-127, inputs -128/127, bias at the int32 limits),
  cols 4..1100 (every residue mod 32, > 512), rows 4..260, bias NULL and not.
* Cortex-M4 (arm-none-eabi-gcc + rnnskip.simulator): DSP and plain firmware
  bit-exact on the same kinds of cases; the DSP image really holds the asm
  cores; stack use bounded.
  Build variants (column chunk 4 / 512, unrolled loop 2 / 16 steps) are
  bit-exact too.
* Cycles (Cortex-M4 model, 0 wait states): DSP path >= 0.8 MAC/cycle at
  96 -> 256 (the SST-2 LSTM step), bias initialisation included; the table
  for the other shapes is printed (pytest -s). Measured when written
  (MAC/cycle, DSP / plain): 32->256 0.726 / 0.215, 64->256 0.783 / 0.231,
  96->256 0.803 / 0.237, 128->384 0.816 / 0.240, 44->192 0.753 / 0.223.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from helpers import HAVE_ARM
from kernel_build import CLANG, host_kernel_lib, m4_objects

from rnnskip.quant.layout import pack_paired, unpack_paired

KDIR = Path(__file__).resolve().parent.parent / "rnnskip" / "kernels"
SRC = KDIR / "rnnskip_mat_vec_paired_s8.c"
KERNEL = "rnnskip_mat_vec_paired_s8"


# --------------------------------------------------------------------------- layout
def test_pack_formula_and_round_trip():
    rng = np.random.default_rng(0)
    for rows, cols in [(4, 4), (8, 12), (12, 100), (260, 36)]:
        w = rng.integers(-127, 128, size=(rows, cols), dtype=np.int8)
        w[0, 0], w[1, 0], w[2, 1], w[3, 1] = 127, -127, -127, 127
        v = pack_paired(w)
        assert v.dtype == np.dtype("<i2") and v.shape == (rows // 2, cols) and v.flags.c_contiguous
        ref = 256 * w[1::2].astype(np.int32) + w[0::2].astype(np.int32)
        np.testing.assert_array_equal(v.astype(np.int32), ref)
        back = unpack_paired(v)
        assert back.dtype == np.int8
        np.testing.assert_array_equal(back, w)
    assert pack_paired(np.full((4, 4), 127, np.int8)).max() == 32639
    assert pack_paired(np.full((4, 4), -127, np.int8)).min() == -32639


@pytest.mark.parametrize("bad, match", [
    (np.zeros((6, 4), np.int8), "multiples of 4"),
    (np.zeros((4, 6), np.int8), "multiples of 4"),
    (np.zeros((4, 4), np.int16), "int8"),
    (np.zeros(16, np.int8), "2-D"),
    (np.zeros((0, 4), np.int8), "empty"),
])
def test_pack_refusals(bad, match):
    with pytest.raises(ValueError, match=match):
        pack_paired(bad)


def test_pack_refuses_minus_128():
    w = np.zeros((8, 8), np.int8)
    w[5, 3] = -128
    with pytest.raises(ValueError, match=r"-128 at \[5, 3\]"):
        pack_paired(w)


def test_unpack_refusals():
    with pytest.raises(ValueError, match="2-D"):
        unpack_paired(np.zeros(4, np.int16))
    with pytest.raises(ValueError, match="valid paired"):
        unpack_paired(np.array([[0x80, 0]], np.int16))      # low byte -128
    with pytest.raises(ValueError, match="valid paired"):
        unpack_paired(np.array([[-32768, 0]], np.int32))    # high weight -128


# --------------------------------------------------------------------------- cases
def _ref(w, x, bias):
    acc = w.astype(np.int64) @ x.astype(np.int64)
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    return ((acc + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _case(rng, rows, cols, wv=None, xv=None, bias="rand"):
    if wv is None:
        w = rng.integers(-127, 128, size=(rows, cols), dtype=np.int8)
    elif wv == "pm":        # +-127 checkerboard: every decode sign combination
        w = np.where((np.arange(rows)[:, None] + np.arange(cols)[None, :] // 3) % 2, 127, -127).astype(np.int8)
    else:
        w = np.full((rows, cols), wv, np.int8)
    x = np.full(cols, xv, np.int8) if xv is not None else rng.integers(-128, 128, size=cols, dtype=np.int8)
    if bias == "rand":
        b = rng.integers(-(1 << 28), 1 << 28, size=rows, dtype=np.int32)
    elif bias == "limits":  # wraps modulo 2^32 exactly like int32 accumulation
        b = np.where(np.arange(rows) % 2, np.int32(2**31 - 1), np.int32(-2**31)).astype(np.int32)
    else:
        b = None
    return w, x, b


# cols: every residue mod 32 (the DSP loop is 16 steps of 2 columns, entered
# part-way), > 256 (the x chunk) and > 512. rows: rows/2 % 3 == 0, 1 and 2
# (the 3-pair core plus 0, 4 or 2 pairs in the 2-pair core).
HOST_ROWS = [4, 8, 12, 16, 20, 24, 36, 260]
HOST_COLS = [4, 8, 12, 16, 20, 24, 28, 32, 36, 44, 60, 64, 68, 96, 100, 124, 252, 256, 260, 288, 512, 516, 1100]


def _cases(rows_list, cols_list, big_limit):
    rng = np.random.default_rng(1234)
    out = []
    for i, rows in enumerate(rows_list):
        for j, cols in enumerate(cols_list):
            if rows * cols > big_limit:
                continue
            out.append((f"rand{rows}x{cols}", *_case(rng, rows, cols, bias=("rand", None, "limits")[(i + j) % 3])))
    for wv, xv in [(127, -128), (-127, -128), (127, 127), (-127, 127), ("pm", -128), ("pm", 127)]:
        for rows, cols in [(4, 4), (12, 36), (8, 516), (20, 1100)]:
            if rows * cols > big_limit:
                continue
            for bias in ("rand", None):
                out.append((f"ext{wv},{xv}_{rows}x{cols}_{bias}", *_case(rng, rows, cols, wv, xv, bias)))
    return out


# --------------------------------------------------------------------------- host
@pytest.fixture(scope="module", params=["two pairs", "one pair"])
def host_fn(request, tmp_path_factory):
    """The plain-C path, and its Armv6-M form (one row pair per pass; RNNSKIP_PAIRED_ONE_PAIR builds it here)."""
    defines = ("RNNSKIP_PAIRED_ONE_PAIR",) if request.param == "one pair" else ()
    fn = getattr(host_kernel_lib(tmp_path_factory.mktemp("kernels_paired_host"), "mvp", SRC, defines=defines),
                 KERNEL)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int32] * 2
    return fn


def test_host_bit_exact(host_fn):
    n = 0
    for name, w, x, b in _cases(HOST_ROWS, HOST_COLS, big_limit=300 * 1100):
        v = pack_paired(w)
        out = np.full(w.shape[0], 0x5A5A5A5A, np.int32)     # overwritten, not accumulated
        host_fn(v.ctypes.data, x.ctypes.data, None if b is None else b.ctypes.data, out.ctypes.data,
                w.shape[0], w.shape[1])
        np.testing.assert_array_equal(out, _ref(w, x, b), err_msg=name)
        n += 1
    assert n > 150


# --------------------------------------------------------------------------- Cortex-M4
MAXV, MAXX, MAXR = 192 * 128, 1104, 384   # int16 words of wp (384 x 128), x bytes, rows

HARNESS = f"""
#include <stdint.h>
#include "rnnskip_kernels.h"
int16_t tk_wp[{MAXV}] __attribute__((aligned(4)));
int8_t tk_x[{MAXX}] __attribute__((aligned(4)));
int32_t tk_bias[{MAXR}];
int32_t tk_out[{MAXR}];
int main(void) {{ for (;;) {{ }} }}
"""
KEEP = [KERNEL, "tk_wp", "tk_x", "tk_bias", "tk_out"]
M4_ROWS = [4, 8, 12, 16, 20, 36, 260]
M4_COLS = [4, 8, 12, 16, 20, 24, 28, 32, 36, 44, 96, 100, 260, 516, 1100]


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    if not HAVE_ARM:
        pytest.skip("arm-none-eabi-gcc not found (run `make setup`)")
    pytest.importorskip("unicorn")
    sim = pytest.importorskip("rnnskip.simulator", reason="rnnskip.simulator (the cycle model) not available")
    from rnnskip import targets
    from rnnskip.build import build_firmware
    target = targets.load("cortex-m4")
    d = tmp_path_factory.mktemp("kernels_paired_m4")
    (d / "tk_harness.c").write_text(HARNESS)
    elfs = {}
    for variant, extra in (("dsp", []), ("plain", ["-DRNNSKIP_NO_DSP"])):
        elfs[variant] = build_firmware(target, [d / "tk_harness.c", SRC], d / variant, name=f"tkp_{variant}",
                                       extra_cflags=["-Wall", "-Wextra", "-Werror", *extra],
                                       include_dirs=[KDIR], keep=KEEP)
    if CLANG is not None:   # the DSP asm as clang's integrated assembler lays it out
        (d / "clang").mkdir()
        objs = m4_objects(d / "clang", [SRC], "clang", include_dirs=[KDIR])
        elfs["clang"] = build_firmware(target, [d / "tk_harness.c", *objs], d / "clang", name="tkp_clang",
                                       include_dirs=[KDIR], keep=KEEP)
    return sim.UnicornEmulator, target, elfs


def _run(emu, w, x, b):
    rows, cols = w.shape
    emu.write("tk_wp", pack_paired(w).tobytes())
    emu.write("tk_x", np.ascontiguousarray(x).tobytes())
    if b is not None:
        emu.write("tk_bias", b.astype("<i4").tobytes())
    emu.write("tk_out", np.full(rows, 0x5A5A5A5A, "<i4").tobytes())
    st = emu.call(KERNEL, args=("tk_wp", "tk_x", 0 if b is None else "tk_bias", "tk_out", rows, cols),
                  mode="blocks")
    return np.frombuffer(emu.read("tk_out", 4 * rows), dtype="<i4").astype(np.int32), st


@pytest.mark.parametrize("variant", ["dsp", "plain", "clang"])
def test_m4_bit_exact(m4, variant):
    Emu, target, elfs = m4
    if variant not in elfs:
        pytest.skip("clang is not installed (make setup installs it)")
    emu = Emu(elfs[variant], target)
    for name, w, x, b in _cases(M4_ROWS, M4_COLS, big_limit=260 * 100):
        out, _ = _run(emu, w, x, b)
        np.testing.assert_array_equal(out, _ref(w, x, b), err_msg=f"{variant} {name}")


@pytest.mark.parametrize("defines", [["-DRNNSKIP_PAIRED_XCHUNK=4", "-DRNNSKIP_PAIRED_USTEPS=2"],
                                     ["-DRNNSKIP_PAIRED_XCHUNK=512", "-DRNNSKIP_PAIRED_USTEPS=16"]])
def test_m4_build_variants_bit_exact(m4, tmp_path, defines):
    Emu, target, _ = m4
    from rnnskip.build import build_firmware
    (tmp_path / "tk_harness.c").write_text(HARNESS)
    elf = build_firmware(target, [tmp_path / "tk_harness.c", SRC], tmp_path, name="tkp_var",
                         extra_cflags=["-Wall", "-Wextra", "-Werror", *defines],
                         include_dirs=[KDIR], keep=KEEP)
    emu = Emu(elf, target)
    for name, w, x, b in _cases([4, 8, 12, 16, 36], [4, 8, 28, 36, 96, 516, 1100], big_limit=36 * 100):
        out, _ = _run(emu, w, x, b)
        np.testing.assert_array_equal(out, _ref(w, x, b), err_msg=f"{defines} {name}")


def _syms(elf):
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        return {s.name: s["st_size"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}


def test_dsp_path_is_the_asm_core(m4):
    """The DSP firmware holds the SXTB16/SMLAD core and the plain one does not."""
    elfs = m4[2]
    dsp, plain = _syms(elfs["dsp"]), _syms(elfs["plain"])
    assert "rnnskip_mvp_dsp_core" in dsp and "rnnskip_mvp_dsp_core" not in plain
    print(f"\ncode size: DSP {dsp[KERNEL] + dsp['rnnskip_mvp_dsp_core']} B (wrapper {dsp[KERNEL]}, "
          f"asm core {dsp['rnnskip_mvp_dsp_core']}); plain {plain[KERNEL]} B")


@pytest.mark.parametrize("variant, limit", [("dsp", 700), ("plain", 128)])
def test_m4_stack_bounded(m4, variant, limit):
    Emu, target, elfs = m4
    emu = Emu(elfs[variant], target)
    rng = np.random.default_rng(5)
    for rows, cols in [(8, 1100), (260, 36)]:
        emu.reset()
        out, _ = _run(emu, *_case(rng, rows, cols))
        used = emu.stack_high_water()
        print(f"\n{variant} {rows}x{cols}: stack {used} B")
        assert used <= limit, f"{variant}: {used} B of stack"


CYCLE_SHAPES = [(256, 32), (256, 64), (256, 96), (384, 128), (192, 44)]


def test_m4_cycles(m4):
    Emu, target, elfs = m4
    emus = {v: Emu(elfs[v], target) for v in ("dsp", "plain")}
    rng = np.random.default_rng(7)
    lines, mpc = [], {}
    for rows, cols in CYCLE_SHAPES:
        w, x, b = _case(rng, rows, cols)
        row = []
        for v, emu in emus.items():
            out, st = _run(emu, w, x, b)
            np.testing.assert_array_equal(out, _ref(w, x, b))
            mpc[v, rows, cols] = rows * cols / st.cycles
            row.append(f"{v} {st.cycles:6d} cycles {mpc[v, rows, cols]:.3f} MAC/cycle")
        lines.append(f"{cols:4d} -> {rows:3d}: " + ", ".join(row))
    msg = "\n".join(lines)
    print("\n" + msg)
    assert mpc["dsp", 256, 96] >= 0.8, msg
    for rows, cols in CYCLE_SHAPES:
        assert mpc["dsp", rows, cols] > 2 * mpc["plain", rows, cols], msg

