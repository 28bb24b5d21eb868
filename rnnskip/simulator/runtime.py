"""Bare-metal runtime for emulated firmware: linker script, startup code, flags.

``render_runtime(target, out_dir)`` renders ``link.ld`` and ``startup.c`` from
``rnnskip/firmware_templates/runtime/*.j2``. Every firmware image rnnskip
builds uses the same flags::

    arm-none-eabi-gcc  cflags(target)  <sources...>  ldflags(target, "link.ld")  -o fw.elf

``cflags`` must also be given at link time (it selects the newlib multilib:
-mcpu / -mfloat-abi). ``build_firmware`` does exactly that and turns compiler
failures into a one-line :class:`RnnskipError`.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterable, List, Sequence

import jinja2

from ..errors import RnnskipError

CC = "arm-none-eabi-gcc"

#: Optimisation and layout flags added to every compile (after target.cflags).
OPT_CFLAGS = ["-O2", "-ffunction-sections", "-fdata-sections",
              "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-g"]

#: Link flags (the linker script is appended by :func:`ldflags`).
LINK_FLAGS = ["-nostartfiles", "-Wl,--gc-sections", "--specs=nano.specs",
              "--specs=nosys.specs", "-Wl,--no-warn-rwx-segments"]

_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "firmware_templates" / "runtime"


def cflags(target) -> List[str]:
    """Compiler flags for ``target``: target.cflags + :data:`OPT_CFLAGS`."""
    return list(target.cflags) + list(OPT_CFLAGS)


def ldflags(target, linker_script) -> List[str]:
    """Linker flags (pass after the sources, together with :func:`cflags`)."""
    return list(LINK_FLAGS) + ["-T", str(linker_script)]


def keep_flags(symbols: Iterable[str]) -> List[str]:
    """Link flags that keep ``symbols`` (and their sections) alive under --gc-sections."""
    return [f"-Wl,--require-defined={s}" for s in symbols]


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATE_DIR)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_runtime(target, out_dir) -> List[Path]:
    """Write ``link.ld`` and ``startup.c`` for ``target`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = _env()
    paths = []
    for tpl, name in (("link.ld.j2", "link.ld"), ("startup.c.j2", "startup.c")):
        p = out / name
        p.write_text(env.get_template(tpl).render(target=target))
        paths.append(p)
    return paths


def toolchain_available() -> bool:
    return shutil.which(CC) is not None


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
    out = Path(out_dir)
    ld, startup = render_runtime(target, out)
    elf = out / f"{name}.elf"
    cmd = [CC, *cflags(target), *extra_cflags]
    cmd += [f"-I{d}" for d in include_dirs]
    cmd += [str(startup), *[str(s) for s in sources]]
    cmd += [*ldflags(target, ld), *keep_flags(keep), f"-Wl,-Map={out / (name + '.map')}", "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
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
