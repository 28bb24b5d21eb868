"""Compile firmware and the host build.

* the bare-metal runtime every firmware image links: ``render_runtime(target, out_dir)``
  renders ``link.ld`` and ``startup.c`` from ``rnnskip/firmware_templates/runtime/*.j2``,
  and every image is compiled with the same flags (:func:`compile_and_link`)::

      arm-none-eabi-gcc  cflags(target)  -c <sources...>
      arm-none-eabi-gcc  cflags(target)  <objects...>  ldflags(target, "link.ld")  -o fw.elf

  (``cflags`` must also be given at link time: it selects the newlib multilib, -mcpu /
  -mfloat-abi). :func:`build_firmware` compiles any sources that way (kernel harnesses,
  hand-written assembly);
* generated sources: :func:`build_target` (the firmware ELF, arm-none-eabi-gcc) and
  :func:`build_host` (a host shared library, gcc) from the very same C files.

Compiler failures become a one-line :class:`RnnskipError`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import jinja2

from .errors import RnnskipError

CC = "arm-none-eabi-gcc"

#: Optimisation and layout flags added to every compile (after target.cflags).
OPT_CFLAGS = ["-O2", "-ffunction-sections", "-fdata-sections",
              "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-g"]

#: Link flags (the linker script is appended by :func:`ldflags`).
LINK_FLAGS = ["-nostartfiles", "-Wl,--gc-sections", "--specs=nano.specs",
              "--specs=nosys.specs", "-Wl,--no-warn-rwx-segments"]

_RUNTIME_TEMPLATES = Path(__file__).resolve().parent / "firmware_templates" / "runtime"


def cflags(target) -> List[str]:
    """Compiler flags for ``target``: target.cflags + :data:`OPT_CFLAGS` (+ the define that
    puts the weights in RAM sections for --weights sram|tcm)."""
    ram = target.weights != "flash"
    return list(target.cflags) + list(OPT_CFLAGS) + (["-DRNNSKIP_WEIGHTS_IN_RAM"] if ram else [])


def ldflags(target, linker_script) -> List[str]:
    """Linker flags (pass after the sources, together with :func:`cflags`)."""
    return list(LINK_FLAGS) + ["-T", str(linker_script)]


def keep_flags(symbols: Iterable[str]) -> List[str]:
    """Link flags that keep ``symbols`` (and their sections) alive under --gc-sections."""
    return [f"-Wl,--require-defined={s}" for s in symbols]


def _runtime_env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_RUNTIME_TEMPLATES)), trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_runtime(target, out_dir) -> List[Path]:
    """Write ``link.ld`` and ``startup.c`` for ``target`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = _runtime_env()
    paths = []
    for tpl, name in (("link.ld.j2", "link.ld"), ("startup.c.j2", "startup.c")):
        p = out / name
        p.write_text(env.get_template(tpl).render(target=target))
        paths.append(p)
    return paths


def toolchain_available() -> bool:
    return shutil.which(CC) is not None


def compile_and_link(cc: str, flags: Sequence[str], sources: Sequence, link_args: Sequence[str], elf: Path,
                     mapf: Path, root: Path) -> subprocess.CompletedProcess:
    """Compile ``sources`` to objects named after them, then link ``elf`` with its map ``mapf``.

    Builds in ``elf``'s folder's ``.obj/`` (removed afterwards), from there, with paths in the debug info
    relative to ``root`` (rnnskip-convert builds in a temporary folder): so the ELF and the map do not
    depend on the folder or the caller's working directory, and the map names each object after its
    source rather than gcc's /tmp/ccXXXXXX.o. Paths in ``flags`` and ``link_args`` must be absolute (gcc runs
    in ``.obj/``). Returns the failing step's process, else the link's; RnnskipError when two sources have one
    name.
    """
    obj = Path(elf).parent / ".obj"
    shutil.rmtree(obj, ignore_errors=True)
    obj.mkdir(parents=True)
    cc = shutil.which(cc) or cc   # the caller's PATH lookup, not one from .obj
    try:
        # resolved paths: gcc names the working directory by its physical path (comp_dir)
        sources = list(dict.fromkeys(Path(s).resolve() for s in sources))
        compiled = [s for s in sources if s.suffix in (".c", ".s", ".S")]   # objects go to the link as they are
        names = [s.stem + ".o" for s in compiled]
        if len(set(names)) != len(names):   # gcc -c writes <stem>.o into the working directory
            dup = next(n for n in names if names.count(n) > 1)
            raise RnnskipError(f"two sources would both compile to {dup}; rename one of them")
        root = Path(root).resolve()
        if root.parent != root:   # not the filesystem root, which would map the toolchain's own paths too
            flags = [*flags, f"-ffile-prefix-map={root}=."]
        p = subprocess.run([cc, *flags, "-c", *map(str, compiled)], cwd=obj, capture_output=True, text=True)
        if p.returncode == 0:
            objects = [names[compiled.index(s)] if s in compiled else str(s) for s in sources]
            p = subprocess.run([cc, *flags, *objects, *link_args, f"-Wl,-Map={Path(mapf).name}", "-o", Path(elf).name],
                               cwd=obj, capture_output=True, text=True)
        if p.returncode == 0:
            os.replace(obj / Path(elf).name, elf)
            os.replace(obj / Path(mapf).name, mapf)
        return p
    finally:
        shutil.rmtree(obj, ignore_errors=True)


def build_firmware(target, sources: Sequence, out_dir, name: str = "firmware",
                   extra_cflags: Iterable[str] = (), include_dirs: Iterable = (),
                   keep: Iterable[str] = ()) -> Path:
    """Compile ``sources`` (C or assembly) with the runtime into ``out_dir/name.elf``.

    Renders the runtime into ``out_dir`` (startup.c is added to the sources) and
    writes a link map ``name.map`` next to the ELF. ``keep`` names symbols
    (functions or data the emulator calls or reads directly) that
    ``--gc-sections`` must keep although nothing reachable from Reset_Handler
    references them. Returns the ELF path.
    """
    if not toolchain_available():
        raise RnnskipError(f"{CC} not found on PATH; run `make setup` (installs gcc-arm-none-eabi)")
    out = Path(out_dir).resolve()
    ld, startup = render_runtime(target, out)
    elf = out / f"{name}.elf"
    flags = [*cflags(target), *extra_cflags, *[f"-I{Path(d).resolve()}" for d in include_dirs]]
    proc = compile_and_link(CC, flags, [startup, *sources], [*ldflags(target, ld), *keep_flags(keep)], elf,
                            out / f"{name}.map", root=out.parent)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        # Prefer our own linker-script ASSERT messages, then the first error line.
        ours = next((ln for ln in lines if "rnnskip:" in ln), None)
        if ours is not None:    # a linker-script ASSERT: already a complete sentence
            raise RnnskipError(ours[ours.index("rnnskip:") + len("rnnskip:"):].strip())
        useful = [ln for ln in lines if "collect2" not in ln and "ld returned" not in ln]
        keys = ("error", "undefined reference", "multiple definition", "cannot find")
        msg = next((ln for ln in useful if any(k in ln.lower() for k in keys)), None) \
            or (useful[0] if useful else lines[0] if lines else f"exit status {proc.returncode}")
        raise RnnskipError(f"building {elf.name} failed: {msg.strip()}")
    return elf


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
        root = cmsis_nn_path().resolve()
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
    _raise_failed(p, what)


def _raise_failed(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        first = next((l for l in p.stderr.splitlines() if "error" in l.lower()), p.stderr.strip()[:300])
        raise RnnskipError(f"{what} failed: {first.strip()}")


def build_host(src_dir: Path, out_dir: Path, cc: str = "gcc", cflags: Sequence[str] = ()) -> Path:
    """Shared library of the model for fast whole-dataset runs on this machine (``cflags``: added, e.g. to
    check the sources under a user's -ffinite-math-only)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    so = out_dir / "librnnskip_model.so"
    extra, inc = _provider_flags(Path(src_dir))
    srcs = [str(f) for f in _sources(Path(src_dir), with_main=False) + extra]
    _run([cc, "-O2", "-shared", "-fPIC", "-std=c99", "-Wall", *cflags, "-I", str(src_dir), "-I",
          str(src_dir / "kernels")] + inc + ["-o", str(so)] + srcs, "host build")
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


#: the emulation harness's I/O buffers (rnnskip_io.c): whole sequences for the emulators, not part of
#: a firmware that calls rnnskip_step itself
HARNESS_BUFFERS = ("rnnskip_io_x", "rnnskip_io_valid", "rnnskip_io_flags", "rnnskip_io_out")


def symbol_sizes(elf: Path) -> dict:
    """Symbol name -> size in the linked image (read once: :func:`harness_ram_bytes` and :func:`image_kind` take it)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection
    with open(elf, "rb") as f:
        tab = next((s for s in ELFFile(f).iter_sections() if isinstance(s, SymbolTableSection)), None)
        return {} if tab is None else {sym.name: int(sym["st_size"]) for sym in tab.iter_symbols()}


def harness_ram_bytes(symbols: dict) -> int:
    """Bytes of the harness's I/O buffers in the linked image (their symbols' sizes, :func:`symbol_sizes`)."""
    return int(sum(v for n, v in symbols.items() if n in HARNESS_BUFFERS))


def image_kind(symbols: dict) -> str:
    """"board" for a board image (rnnskip/boards/firmware.py: its start-up, UART driver and the bundled test
    sequences, rnnskip_bundle_*), else "emulation" (the model, a minimal start-up and the harness's buffers)."""
    return "board" if "rnnskip_bundle_T" in symbols else "emulation"


_DECL = re.compile(r"^extern const (int8_t|int16_t|int32_t|uint32_t) (\w+)\[(\d+)\];$", re.M)
_CBYTES = {"int8_t": 1, "int16_t": 2, "int32_t": 4, "uint32_t": 4}


def weights_bytes(src_dir: Path) -> int:
    """Bytes of the arrays rnnskip_weights.c defines (each 4-aligned), from its header."""
    text = (Path(src_dir) / "rnnskip_weights.h").read_text()
    return sum((_CBYTES[t] * int(n) + 3) // 4 * 4 for t, _, n in _DECL.findall(text))


def weights_room(target, data_bss: int) -> int:
    """Bytes the weights may take in RAM (--weights sram|tcm): the data TCM, or the RAM
    (after the TCM, which the linker script then leaves aside) minus the stack and the
    model's .data + .bss (``data_bss``, measured from a flash-placement build)."""
    d = target.dtcm
    if target.weights == "tcm":
        return d[1]
    ram = target.ram_size - (d[0] + d[1] - target.ram_origin if d else 0)
    return max(0, ram - target.stack_size - data_bss)


def _check_weights_fit(src_dir: Path, out_dir: Path, target, variant: str, cc: str, extra_cflags) -> None:
    """--weights sram|tcm: refuse in one line, with both sizes, when the weights do not fit the RAM
    left after the model's state and stack. Measured on a flash-placement build of the same sources
    (the linker cannot print numbers in its ASSERT message)."""
    import dataclasses
    import tempfile
    need = weights_bytes(src_dir)
    with tempfile.TemporaryDirectory(prefix="weights-fit-", dir=out_dir) as tmp:
        fw = build_target(src_dir, tmp, dataclasses.replace(target, weights="flash"), variant, cc, extra_cflags)
        sizes = section_sizes(fw.elf)
    room = weights_room(target, sizes.get(".data", 0) + sizes.get(".bss", 0))
    if need > room:
        on = target.raw.get("board") or target.name
        # the data TCM holds the weights alone (the state and stack go in the RAM after it)
        has = (f"the data TCM on {on} has {room:,} bytes (the model's state and stack are in the RAM after it)"
               if target.weights == "tcm" else f"RAM on {on} has {room:,} bytes left after the model's state and stack")
        raise RnnskipError(f"--weights {target.weights}: the weights need {need:,} bytes but {has}; use --weights flash"
                           + (" or a board with more RAM" if target.weights == "sram" else " or --weights sram"))


def build_target(src_dir: Path, out_dir: Path, target, variant: str = "dsp",
                 cc: str = "arm-none-eabi-gcc", extra_cflags: Optional[List[str]] = None) -> Firmware:
    """Cross-compile the model + runtime for ``target`` into ``out_dir/firmware.elf`` (with
    --weights sram|tcm, after checking that the weights fit the RAM left for them)."""
    if variant not in VARIANTS:
        raise RnnskipError(f"unknown kernel variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    if shutil.which(cc) is None:
        raise RnnskipError(f"{cc} not found; run 'make setup' (installs gcc-arm-none-eabi) or put it on PATH")
    src_dir, out_dir = Path(src_dir).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if target.weights != "flash":
        _check_weights_fit(src_dir, out_dir, target, variant, cc, extra_cflags)
    rt = render_runtime(target, out_dir)
    ld = next(p for p in rt if p.suffix == ".ld")
    startup = [p for p in rt if p.suffix == ".c"]
    elf, mapf = out_dir / "firmware.elf", out_dir / "firmware.map"
    flags = cflags(target) + (["-DRNNSKIP_NO_DSP"] if variant == "plain" else []) + list(extra_cflags or [])
    extra, inc = _provider_flags(src_dir)
    flags += ["-I", str(src_dir), "-I", str(src_dir / "kernels")] + inc
    # debug paths relative to the folder holding the sources and the build
    root = Path(os.path.commonpath([src_dir, out_dir]))
    p = compile_and_link(cc, flags, _sources(src_dir, with_main=True) + startup + extra, ldflags(target, ld), elf,
                         mapf, root)
    _raise_failed(p, f"firmware build for {target.name}")
    return firmware_of(elf, mapf, variant)


def firmware_of(elf: Path, mapf: Path, variant: str) -> Firmware:
    """The Firmware record of a linked image: its flash and RAM from the ELF's sections."""
    sizes = section_sizes(elf)
    flash = sum(v for k, v in sizes.items() if k in (".isr_vector", ".text", ".rodata", ".data", ".weights",
                                                      ".ARM.exidx"))
    ram = sum(v for k, v in sizes.items() if k in (".data", ".weights", ".bss"))
    return Firmware(elf=elf, map=mapf, variant=variant, flash_bytes=int(flash), ram_bytes=int(ram))
