"""Shared by the kernel tests: kernel sources built into a host shared library, or for the Cortex-M4 by
clang (objects, and a whole model's firmware linked with the GCC-built runtime)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnskip.generate import kernel_dir


def host_kernel_lib(tmp_dir, name: str, *sources, defines=()) -> ctypes.CDLL:
    """Compile ``sources`` (plain-C paths, warnings as errors; ``defines``: more -D flags) into
    ``tmp_dir/lib<name>.so``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler (cc/gcc) on PATH")
    so = tmp_dir / f"lib{name}.so"
    proc = subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                           "-DRNNSKIP_NO_DSP", *(f"-D{d}" for d in defines), "-I", str(kernel_dir())]
                          + [str(s) for s in sources]
                          + ["-o", str(so)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(so))


CLANG = shutil.which("clang")
ARM_SYSROOT = "/usr/lib/arm-none-eabi"   # newlib from gcc-arm-none-eabi's packages: clang's headers for the M4


def m4_objects(out_dir, sources, compiler: str = "clang", include_dirs=(), extra_cflags=()) -> list:
    """``sources`` compiled for the Cortex-M4 by ``compiler`` ("clang": the integrated assembler, as armclang
    and the LLVM embedded toolchain assemble the kernels' inline assembly; "gcc": arm-none-eabi-gcc), one
    object each, with the firmware's flags; build_firmware links them with the GCC-built runtime. Skips
    without clang."""
    from rnnskip import targets
    from rnnskip.build import CC, cflags
    if compiler == "clang" and CLANG is None:
        pytest.skip("clang is not installed (make setup installs it)")
    # -fshort-enums: arm-none-eabi-gcc's enum size (the EABI attribute the linker checks)
    cmd = [CLANG, "--target=arm-none-eabi", f"--sysroot={ARM_SYSROOT}", "-fshort-enums"] if compiler == "clang" \
        else [CC]
    flags = [f for f in cflags(targets.load("cortex-m4")) if f != "-g"]
    out = []
    for s in sources:
        obj = out_dir / f"{s.stem}.{compiler}.o"
        proc = subprocess.run([*cmd, *flags, "-std=c11", "-Wall", "-Wextra", "-Werror", *extra_cflags,
                               *[f"-I{d}" for d in include_dirs], "-c", str(s), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        if compiler == "clang":   # clang marks the stack; GCC's objects do not, and ld then warns about theirs
            subprocess.run(["arm-none-eabi-objcopy", "--remove-section", ".note.GNU-stack", str(obj)], check=True)
        out.append(obj)
    return out


def instruction_sizes(obj, function: str) -> list:
    """The byte length of every instruction of ``function`` in object ``obj`` (objdump), trailing padding
    NOPs dropped: the layout the hand-scheduled cores' computed loop entries rely on."""
    proc = subprocess.run(["arm-none-eabi-objdump", "-d", "-j", f".text.{function}", str(obj)], capture_output=True,
                          text=True, check=True)
    sizes = []
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].strip().endswith(":"):
            sizes.append((len(parts[1].replace(" ", "")) // 2, parts[2].strip()))
    while sizes and sizes[-1][1] == "nop":
        sizes.pop()
    return [n for n, _ in sizes]


def clang_firmware(src_dir, out_dir, target):
    """The generated model in ``src_dir`` (kernels, emulation harness) compiled by clang with the firmware's
    flags and linked with the GCC-built runtime (startup, linker script), as rnnskip.build.build_target links
    its own GCC build: a Firmware the emulators run."""
    from rnnskip.build import CC, _sources, cflags, firmware_of, ldflags, render_runtime
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    ld, startup = render_runtime(target, out_dir)
    objs = m4_objects(out_dir, _sources(src_dir, with_main=True), "clang", include_dirs=[src_dir, src_dir / "kernels"])
    elf, mapf = out_dir / "firmware.elf", out_dir / "firmware.map"
    proc = subprocess.run([CC, *cflags(target), str(startup), *[str(o) for o in objs], *ldflags(target, ld),
                           f"-Wl,-Map={mapf}", "-o", str(elf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return firmware_of(elf, mapf, "dsp")
