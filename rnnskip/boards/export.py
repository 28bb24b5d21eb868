"""Standalone firmware project: ``rnnskip-convert ... --board B --export DIR``.

DIR gets the model sources, the board runtime (startup, linker script, UART
driver, a ``main`` running the bundled test sequences), a CMake project with an
arm-none-eabi toolchain file and a plain Makefile - the same flags rnnskip
builds with, no dependency on rnnskip or Python - and ``renode/`` (.resc,
.robot, .repl where Renode has no platform) pointing at ``build/firmware.elf``
for CI (docs/ci.md).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from .. import __version__
from . import Board, board_target
from .firmware import Bundle, _env, model_sources, render_board_sources

#: written into every exported project, so re-exporting replaces only folders rnnskip made
EXPORT_MARKER = "rnnskip_project.json"
# what building and running the exported project writes into it (cmake/make, the Robot suite):
# replaced by the next export without asking
EXPORT_REGENERATED = ("build/", "renode/")


def _export_ldflags():
    from ..build import LINK_FLAGS
    # --no-warn-rwx-segments needs binutils >= 2.39: leave it out of projects users build
    return [f for f in LINK_FLAGS if "no-warn-rwx-segments" not in f]


def export_project(src_dir, dest, board: Board, bundle: Bundle, variant: str = "dsp",
                   kernels: str = "portable", model_name: str = "model",
                   wait_states: Optional[int] = None, footprint: Optional[dict] = None) -> Path:
    """Write the project for ``board`` into ``dest`` (replaced only once complete). ``footprint``: report.json's
    (the weights' flash, the model's RAM and the stack one inference was measured to need), for the README."""
    from ..build import CMSIS_NN_SOURCES
    from ..build import cflags as target_cflags
    src_dir, dest = Path(src_dir), Path(dest)
    board.require_uart("--export")
    t = board_target(board, wait_states)
    from ..outdir import atomic_dir
    # hashed: the README invites edits (a board's power settings, the UART), which a re-export must not discard
    with atomic_dir(dest, EXPORT_MARKER, what="--export", regenerated=EXPORT_REGENERATED, hashed=True) as tmp:
        (tmp / "src" / "kernels").mkdir(parents=True)
        for f in model_sources(src_dir):
            rel = f.relative_to(src_dir)
            shutil.copy(f, tmp / "src" / rel)
        for h in list(src_dir.glob("*.h")) + list((src_dir / "kernels").glob("*.h")):
            shutil.copy(h, tmp / "src" / h.relative_to(src_dir))
        render_board_sources(tmp / "board", board, bundle, model_name, t)
        # warnings on: the sources compile cleanly under -Wall -Wextra -Wconversion (tests/test_c_warnings.py)
        cflags = target_cflags(t) + (["-DRNNSKIP_NO_DSP"] if variant == "plain" else []) + ["-Wall", "-Wextra"]
        idx = int(board.qemu.get("serial_index", 0)) if board.qemu else 0
        ctx = {"version": __version__, "board": board, "target": t, "uart": board.uart, "kernels": kernels,
               "variant": variant, "model_name": model_name, "n": bundle.n, "cflags": cflags,
               "ldflags": _export_ldflags(), "cmsis_sources": list(CMSIS_NN_SOURCES),
               "qemu_machine": (board.qemu or {}).get("fallback_machine") or board.qemu_machine,
               # mon:stdio: QEMU's Ctrl-A escapes (Ctrl-A X quits) on the console; plain stdio has none
               "qemu_serial": " -serial null" * idx + " -serial mon:stdio",
               "dwt": bool(t.raw.get("dwt_cycle_counter", True)), "footprint": footprint or {}}
        from ..emulators.renode import write_files
        write_files(tmp / "renode", board, elf="../build/firmware.elf", model_name=model_name)
        env = _env()
        (tmp / "cmake").mkdir()
        for tpl, name in (("CMakeLists.txt.j2", "CMakeLists.txt"),
                          ("arm-none-eabi.cmake.j2", "cmake/arm-none-eabi.cmake"),
                          ("Makefile.j2", "Makefile"), ("README.md.j2", "README.md")):
            (tmp / name).write_text(env.get_template(f"board/export/{tpl}").render(**ctx))
        import json
        (tmp / EXPORT_MARKER).write_text(json.dumps(
            {"rnnskip": __version__, "board": board.name, "target": t.name, "model": model_name,
             "note": "written by rnnskip-convert --export; the whole folder is replaced by the next export"}, indent=1))
    return dest
