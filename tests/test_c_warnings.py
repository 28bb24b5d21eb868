"""The C a user builds into their firmware - the generated model, weights and I/O files and the
kernels - compiles without a warning under -Wall -Wextra -Wconversion -Werror, on a DSP core
(the assembly and ACLE paths) and on an Armv6-M one (plain C), for every template path
test_c_style covers. An integration review found ACLE's __ssat failing -Wsign-conversion in
every file that includes the kernels' header."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from helpers import needs_arm
from test_c_style import _models

from rnnskip import targets
from rnnskip.build import CC, cflags
from rnnskip.generate import generate

pytestmark = needs_arm

WARNINGS = ["-Wall", "-Wextra", "-Wconversion", "-Wshadow", "-Wstrict-prototypes", "-Werror"]
#: the sources a user compiles (main.c is the emulation harness's; the CMSIS-NN wrapper needs a checkout)
SKIP = {"main.c", "rnnskip_mat_vec_cmsis_nn.c"}


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_generated_c_and_kernels_compile_without_warnings(target, tmp_path):
    t = targets.load(target)
    failures = []
    for name, qm, kernels in _models():
        out = tmp_path / name
        generate(qm, out, max_t=7, kernels=kernels)
        sources = sorted(f for f in list(out.glob("*.c")) + list((out / "kernels").glob("*.c")) if f.name not in SKIP)
        obj = tmp_path / f"{name}-obj"
        obj.mkdir()
        p = subprocess.run([CC, *cflags(t), *WARNINGS, f"-I{out}", f"-I{out / 'kernels'}", "-c",
                            *[str(s) for s in sources]], cwd=obj, capture_output=True, text=True)
        if p.returncode != 0:
            failures.append(f"{name}: {p.stderr.strip()[:600]}")
    assert not failures, "\n".join(failures)


def test_headers_compile_as_cpp(tmp_path):
    """A C++ firmware includes the model's header and the kernels' (extern "C", arm_acle.h outside it)
    without a warning."""
    import shutil
    if shutil.which("arm-none-eabi-g++") is None:
        pytest.skip("arm-none-eabi-g++ not installed")
    qm = next(qm for name, qm, kernels in _models() if name == "delta")
    generate(qm, tmp_path / "src", max_t=7)
    (tmp_path / "app.cpp").write_text('#include "rnnskip_model.h"\n#include "rnnskip_kernels.h"\n'
                                      "static rnnskip_state_t st;\n"
                                      "int app(void) { rnnskip_init(&st); return (int)rnnskip_sat16(70000); }\n")
    t = targets.load("cortex-m4")
    p = subprocess.run(["arm-none-eabi-g++", *t.cflags, "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti",
                        f"-I{tmp_path / 'src'}", f"-I{tmp_path / 'src' / 'kernels'}", "-c", str(tmp_path / "app.cpp"),
                        "-o", str(tmp_path / "app.o")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


CLANG = shutil.which("clang")
ARM_SYSROOT = "/usr/lib/arm-none-eabi"


@pytest.mark.skipif(CLANG is None, reason="clang is not installed (make setup installs it)")
@pytest.mark.parametrize("where", ["cortex-m4", "host"])
def test_generated_c_compiles_under_clang(where, tmp_path):
    """The same sources under clang (the front end of armclang / Arm Compiler 6 and the LLVM embedded
    toolchain) with -pedantic -Wall -Wextra -Werror, for the M4 and the host, and the header as C++: an audit found
    statements in naked functions (a clang error), an unused static function and an unused mat_vec; a user check,
    the DSP kernels' asm strings over ISO C's 4,095 characters under -pedantic."""
    arm = ["--target=arm-none-eabi", f"--sysroot={ARM_SYSROOT}", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
           "-mfpu=fpv4-sp-d16"] if where == "cortex-m4" else []
    failures = []
    for name, qm, kernels in _models():
        if kernels == "cmsis-nn":
            continue
        out = tmp_path / name
        generate(qm, out, max_t=7, kernels=kernels)
        sources = sorted(f for f in list(out.glob("*.c")) + list((out / "kernels").glob("*.c")) if f.name not in SKIP)
        obj = tmp_path / f"{name}-obj"
        obj.mkdir()
        p = subprocess.run([CLANG, *arm, "-O2", "-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", f"-I{out}",
                            f"-I{out / 'kernels'}", "-c", *[str(s) for s in sources]], cwd=obj, capture_output=True,
                           text=True)
        if p.returncode != 0:
            failures.append(f"{name}: {p.stderr.strip()[:600]}")
        cpp = obj / "use.cpp"
        cpp.write_text('#include "rnnskip_model.h"\nint use(void) { static rnnskip_state_t s; rnnskip_init(&s); '
                       'rnnskip_finish(&s); return 0; }\n')
        p = subprocess.run([CLANG, *arm, "-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{out}",
                            f"-I{out / 'kernels'}", "-c", str(cpp)], cwd=obj, capture_output=True, text=True)
        if p.returncode != 0:
            failures.append(f"{name} (C++): {p.stderr.strip()[:600]}")
    assert not failures, "\n".join(failures)
