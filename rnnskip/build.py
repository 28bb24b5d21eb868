"""Compile generated sources: the firmware ELF (arm-none-eabi-gcc) and a host
shared library (gcc) built from the very same C files."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .errors import RnnskipError

VARIANTS = ("dsp", "plain")   # portable kernels: ACLE DSP path, or plain C everywhere


#: CMSIS-NN files the cmsis-nn provider compiles, relative to CMSIS_NN_PATH
CMSIS_NN_SOURCES = ("Source/NNSupportFunctions/arm_nn_mat_mult_nt_t_s8_s32.c",)


def cmsis_nn_path() -> Path:
    """The user's CMSIS-NN checkout from $CMSIS_NN_PATH (one-line error if unusable)."""
    p = os.environ.get("CMSIS_NN_PATH")
    if not p:
        raise RnnskipError("--kernels cmsis-nn needs CMSIS_NN_PATH set to a CMSIS-NN checkout "
                           "(git clone of ARM-software/CMSIS-NN); or use --kernels portable")
    root = Path(p)
    missing = [s for s in ("Include/arm_nnsupportfunctions.h",) + CMSIS_NN_SOURCES if not (root / s).is_file()]
    if missing:
        raise RnnskipError(f"CMSIS_NN_PATH={p} is not a CMSIS-NN checkout: {missing[0]} is missing")
    return root


def _provider_flags(src_dir: Path) -> tuple:
    """(extra sources, include flags) for the kernel provider the sources were generated for."""
    if (src_dir / "kernels" / "rnnskip_mat_vec_cmsis_nn.c").is_file():
        root = cmsis_nn_path()
        return [root / s for s in CMSIS_NN_SOURCES], ["-I", str(root / "Include")]
    return [], []


def _sources(src_dir: Path, with_main: bool) -> List[Path]:
    files = sorted(src_dir.glob("*.c")) + sorted((src_dir / "kernels").glob("*.c"))
    return [f for f in files if with_main or f.name not in ("main.c", "startup.c")]


def _run(cmd: List[str], what: str) -> None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise RnnskipError(f"{cmd[0]} not found; run 'make setup' (installs it) or put it on PATH")
    if p.returncode != 0:
        first = next((l for l in p.stderr.splitlines() if "error" in l.lower()), p.stderr.strip()[:300])
        raise RnnskipError(f"{what} failed: {first.strip()}")


def build_host(src_dir: Path, out_dir: Path, cc: str = "gcc") -> Path:
    """Shared library of the model for fast whole-dataset runs on this machine."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    so = out_dir / "librnnskip_model.so"
    extra, inc = _provider_flags(Path(src_dir))
    _run([cc, "-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-I", str(src_dir), "-I", str(src_dir / "kernels")]
         + inc + ["-o", str(so)] + [str(f) for f in _sources(Path(src_dir), with_main=False) + extra], "host build")
    return so


@dataclass
class Firmware:
    elf: Path
    map: Path
    variant: str
    flash_bytes: int
    ram_bytes: int


def section_sizes(elf: Path) -> dict:
    """Bytes per output section, read back from the ELF."""
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        return {s.name: s["sh_size"] for s in ELFFile(f).iter_sections() if s["sh_flags"] & 2}  # SHF_ALLOC


def build_target(src_dir: Path, out_dir: Path, target, variant: str = "dsp",
                 cc: str = "arm-none-eabi-gcc", extra_cflags: Optional[List[str]] = None) -> Firmware:
    """Cross-compile the model + runtime for ``target`` into ``out_dir/firmware.elf``."""
    from .simulator import runtime
    if variant not in VARIANTS:
        raise RnnskipError(f"unknown kernel variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    if shutil.which(cc) is None:
        raise RnnskipError(f"{cc} not found; run 'make setup' (installs gcc-arm-none-eabi) or put it on PATH")
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rt = runtime.render_runtime(target, out_dir)
    ld = next(p for p in rt if p.suffix == ".ld")
    startup = [p for p in rt if p.suffix == ".c"]
    elf, mapf = out_dir / "firmware.elf", out_dir / "firmware.map"
    flags = runtime.cflags(target) + (["-DRNNSKIP_NO_DSP"] if variant == "plain" else []) + list(extra_cflags or [])
    extra, inc = _provider_flags(src_dir)
    cmd = [cc] + flags + ["-I", str(src_dir), "-I", str(src_dir / "kernels")] + inc + \
        [f"-Wl,-Map={mapf}", "-o", str(elf)] + \
        [str(f) for f in _sources(src_dir, with_main=True) + startup + extra] + runtime.ldflags(target, ld)
    _run(cmd, f"firmware build for {target.name}")
    sizes = section_sizes(elf)
    flash = sum(v for k, v in sizes.items() if k in (".isr_vector", ".text", ".rodata", ".data", ".ARM.exidx"))
    ram = sum(v for k, v in sizes.items() if k in (".data", ".bss"))
    return Firmware(elf=elf, map=mapf, variant=variant, flash_bytes=int(flash), ram_bytes=int(ram))
