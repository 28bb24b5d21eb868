"""Renode backend: generate the Renode platform/script/Robot suite for a board image and,
when Renode is installed, run the suite with ``renode-test``.

    paths = write_files(out_dir, board, elf="firmware.elf")   # .resc, .robot (+ .repl)
    run = run_firmware(elf, board, out_dir, timeout=120)       # RenodeRun, or one-line error

Files (templates in ``rnnskip/firmware_templates/renode/``):

* ``<board>.repl``: only for boards Renode has no platform for (the MPS2/MPS3
  FPGA images, the micro:bit, the STM32G0): CPU, NVIC, flash, RAM and the UART
  model (CMSDK_APB_UART, STM32F7_USART, NRF52840_UART - the nRF52 UART keeps the
  nRF51's register layout). STM32F4 and STM32L0 boards use Renode's own
  ``platforms/...`` descriptions.
* ``<board>.resc``: interactive: ``renode <board>.resc`` boots the image and
  opens the UART analyzer; the UART also goes to ``uart.log``.
* ``<board>.robot``: the CI check: waits for the firmware's start and summary
  lines and passes only on ``result=PASS``; logs Renode's executed-instruction
  count (``cpu ExecutedInstructions``) for the whole run.

Renode is not installable from the package registries these machines reach, so
the files are tested structurally here; see docs/ci.md for running them in CI.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .. import __version__
from ..errors import RnnskipError
from ..simulator.unicorn_backend import EmulationError
from .board import BoardEmulator

RENODE_TEST = "renode-test"
INSTALL_HINT = ("install it from https://github.com/renode/renode/releases (Linux: the renode_*_amd64.deb or the "
                "portable renode-*.linux-portable*.tar.gz; then pip install -r <renode>/tests/requirements.txt "
                "for renode-test)")

#: UART kind -> (Renode model, constructor parameters from the board's uart table)
_UART_MODELS = {
    "cmsdk-uart": ("UART.CMSDK_APB_UART", lambda u: [("frequency", int(u["clock_hz"]))]),
    "stm32-usart-v2": ("UART.STM32F7_USART", lambda u: [("frequency", int(u["clock_hz"]))]),
    "stm32-usart-v1": ("UART.STM32_UART", lambda u: []),
    "nrf51-uart": ("UART.NRF52840_UART", lambda u: []),
}


#: rnnskip target -> Renode CortexM cpuType
_CPU_TYPES = {"cortex-m0plus": "cortex-m0+"}


@dataclass
class RenodeRun:
    version: str
    lines: List[str]
    sequences: List[dict]
    summary: Dict[str, str]
    total_instructions: Optional[int]
    wall_s: float


def renode_test_binary() -> Optional[str]:
    return shutil.which(RENODE_TEST)


def require_renode() -> str:
    """renode-test's path, or one line saying it is missing, checked before any work is
    done (the run's own folder would be removed with the failed run)."""
    rt = renode_test_binary()
    if rt is None:
        raise RnnskipError(f"{RENODE_TEST} not found on PATH: Renode is not installed; {INSTALL_HINT}. "
                           f"Meanwhile run without --emulator renode; rnnskip-convert --board B --export DIR "
                           f"writes the board project with its Renode files (renode/*.resc, .repl, .robot)")
    return rt


def renode_version() -> str:
    r = shutil.which("renode")
    if not r:
        return "unknown"
    p = subprocess.run([r, "--version"], capture_output=True, text=True)
    m = re.search(r"v?(\d+\.\d+\.\d+\S*)", p.stdout + p.stderr)
    return m.group(1) if m else "unknown"


def _env():
    from ..boards.firmware import _env as board_env
    return board_env()


def write_files(out_dir, board, elf: str = "firmware.elf", model_name: str = "model",
                timeout: float = 120.0) -> Dict[str, Path]:
    """Write ``<board>.resc``, ``<board>.robot`` and (if needed) ``<board>.repl`` into ``out_dir``.

    ``elf`` is the firmware path relative to ``out_dir`` (or absolute)."""
    from ..boards import board_target
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = board_target(board)
    uart = board.require_uart("Renode")
    uart_dev = board.renode.get("uart", "sysbus.uart0")
    paths: Dict[str, Path] = {}
    platform = board.renode.get("platform")
    if platform:
        platform_resc, platform_robot = platform, platform
    else:
        model, params = _UART_MODELS[uart["kind"]]
        repl = out / f"{board.name}.repl"
        repl.write_text(_env().get_template("renode/board.repl.j2").render(
            version=__version__, board=board, uart=uart, cpu_type=_CPU_TYPES.get(t.name, t.name),
            uart_name=uart_dev.split(".", 1)[1], uart_model=model, uart_params=params(uart)))
        paths["repl"] = repl
        platform_resc, platform_robot = f"$ORIGIN/{repl.name}", "${CURDIR}/" + repl.name
    elf_abs = Path(elf).is_absolute()
    ctx = {"version": __version__, "board": board, "uart": uart_dev, "model_name": model_name,
           "resc_name": f"{board.name}.resc", "robot_name": f"{board.name}.robot",
           "platform": platform_resc, "platform_robot": platform_robot,
           "elf": elf if elf_abs else f"$ORIGIN/{elf}", "uart_log": "$ORIGIN/uart.log",
           "elf_robot": elf if elf_abs else "${CURDIR}/" + elf, "uart_log_robot": "${CURDIR}/uart.log",
           "timeout": int(timeout)}
    for kind in ("resc", "robot"):
        p = out / f"{board.name}.{kind}"
        p.write_text(_env().get_template(f"renode/board.{kind}.j2").render(**ctx))
        paths[kind] = p
    return paths


def run_firmware(elf, board, out_dir, timeout: float = 120.0, model_name: str = "model") -> RenodeRun:
    """Write the Renode files next to ``elf`` and run the Robot suite with renode-test."""
    from .qemu import _parse
    out = Path(out_dir) / "renode"
    paths = write_files(out, board, elf=str(Path(elf).resolve()), model_name=model_name, timeout=timeout)
    rt = renode_test_binary()
    if rt is None:
        raise RnnskipError(f"{RENODE_TEST} not found on PATH: Renode is not installed; {INSTALL_HINT}. "
                           f"The Renode files for this run are in {out}")
    log = out / "uart.log"
    if log.exists():
        log.unlink()
    t0 = time.time()
    try:
        p = subprocess.run([rt, str(paths["robot"])], cwd=out, capture_output=True, text=True,
                           timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        raise EmulationError(f"renode-test did not finish within {timeout + 120:.0f} s on board {board.name}") from None
    wall = time.time() - t0
    text = p.stdout + p.stderr
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    start, summary, seqs = _parse(lines)
    if p.returncode != 0:
        fault = next((ln for ln in lines if ln.startswith("rnnskip FAULT:")), None)
        why = fault or next((ln.strip() for ln in text.splitlines() if "FAIL" in ln or "Error" in ln), "")
        raise EmulationError(f"Renode suite failed on board {board.name} (renode-test exit {p.returncode})"
                             + (f": {why[:200]}" if why else "")
                             + (f"; last UART line: {lines[-1][:120]!r}" if lines else "; the UART printed nothing"))
    m = re.search(r"rnnskip-renode-instructions:\s*(\d+)", text)
    return RenodeRun(version=renode_version(), lines=lines, sequences=seqs, summary=summary,
                     total_instructions=int(m.group(1)) if m else None, wall_s=wall)


class Renode(BoardEmulator):
    """Board images under Renode's renode-test (rnnskip.emulators.base.Emulator). Renode counts
    instructions for the whole run only: per-sequence counts and cycles come from the Unicorn
    re-run, where Unicorn has the core."""
    name = "renode"

    @property
    def counts_each_sequence(self) -> bool:
        return bool(self.target.unicorn_cpu)

    def boot(self, elf, workdir):
        run = run_firmware(elf, self.board, workdir, timeout=self.timeout)
        info = {"renode_version": run.version, "wall_s": round(run.wall_s, 3), "device_summary": run.summary,
                "instruction_counts": (f"Renode ExecutedInstructions, whole run: {run.total_instructions}"
                                       if run.total_instructions is not None else "not available")}
        return run.sequences, None, info
