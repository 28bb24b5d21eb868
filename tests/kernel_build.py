"""Shared by the kernel tests: build kernel sources into a host shared library."""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from rnnskip.generate import kernel_dir


def host_kernel_lib(tmp_dir, name: str, *sources) -> ctypes.CDLL:
    """Compile ``sources`` (plain-C paths, warnings as errors) into ``tmp_dir/lib<name>.so``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler (cc/gcc) on PATH")
    so = tmp_dir / f"lib{name}.so"
    proc = subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                           "-DRNNSKIP_NO_DSP", "-I", str(kernel_dir())] + [str(s) for s in sources]
                          + ["-o", str(so)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(so))
