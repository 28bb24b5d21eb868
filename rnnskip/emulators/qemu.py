"""QEMU backend: boot a board image on its QEMU machine and read the results from the UART.

    run = run_firmware(elf, board, timeout=60)      # QemuRun
    run.sequences[i] -> {"i", "T", "steps", "out": [...], "flags": "0101", "cycles", "match"}
    run.summary      -> {"sequences", "match", "mismatch", "cycles", "result", ...}
    run.icounts      -> exact instructions per rnnskip_io_run call (TCG plugin) or None

The image is the board firmware of :mod:`rnnskip.boards.firmware` (test sequences
linked in; ``main`` prints one line per sequence and a summary line). QEMU runs
with ``-nographic -monitor none`` and the board's UART on stdio (``-serial null``
for the ports before it); rnnskip stops QEMU once the summary line arrives.

Instruction counts come from a small TCG plugin compiled here with the host C
compiler (``rnnskip_qemu_icount.c``; Debian's QEMU 7.2 supports plugins but ships
neither the plugin header nor the example plugins such as libinsn.so). QEMU
does not model cycles: DWT CYCCNT reads 0 (the firmware prints ``cycles=-``)
and SysTick follows the host clock, so cycle counts come from the Unicorn cycle
model on the same ELF (:class:`Qemu`, via rnnskip.emulators.board), where the core allows.
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import RnnskipError
from ..simulator.unicorn_backend import EmulationError
from .board import BoardEmulator

QEMU = "qemu-system-arm"
PLUGIN_SRC = Path(__file__).resolve().parent / "rnnskip_qemu_icount.c"
SUMMARY = "rnnskip summary:"
FAULT = "rnnskip FAULT:"

_SEQ = re.compile(r"^seq (\d+) T=(\d+) steps=(-?\d+) out=([-\d,]*) flags=([01]*) cycles=(\S+) match=([01])$")
_KV = re.compile(r"(\w+)=(\S+)")


@dataclass
class QemuRun:
    machine: str
    lines: List[str]
    start: Dict[str, str]
    sequences: List[dict]
    summary: Dict[str, str]
    icounts: Optional[List[int]]
    icount_note: str
    wall_s: float
    command: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.summary.get("result") == "PASS"


def qemu_binary() -> Optional[str]:
    return shutil.which(QEMU)


def require_qemu() -> str:
    q = qemu_binary()
    if q is None:
        raise RnnskipError(f"{QEMU} not found on PATH; run 'make setup' (installs Debian's qemu-system-arm) "
                           f"or 'sudo apt-get install qemu-system-arm'")
    return q


_MACHINES: Optional[set] = None


def machines() -> set:
    """Machine names this qemu-system-arm knows."""
    global _MACHINES
    if _MACHINES is None:
        p = subprocess.run([require_qemu(), "-M", "help"], capture_output=True, text=True)
        _MACHINES = {ln.split()[0] for ln in p.stdout.splitlines()[1:] if ln.strip()}
    return _MACHINES


def qemu_version() -> str:
    p = subprocess.run([require_qemu(), "--version"], capture_output=True, text=True)
    m = re.search(r"version (\S+)", p.stdout)
    return m.group(1) if m else "unknown"


def machine_for(board) -> Tuple[str, str]:
    """(QEMU machine, note) for ``board``; one-line error when QEMU cannot run it."""
    if not board.qemu:
        from .. import boards
        ok = [n for n in boards.available() if boards.load(n).qemu]
        raise RnnskipError(f"board {board.name} ({board.part}) has no QEMU machine; QEMU can run: {', '.join(ok)}")
    m = board.qemu["machine"]
    have = machines()
    if m in have:
        return m, ""
    fb = board.qemu.get("fallback_machine")
    if fb and fb in have:
        return fb, f"QEMU {qemu_version()} has no machine '{m}' (added in QEMU 8.1); using '{fb}' (same SoC model)"
    raise RnnskipError(f"this qemu-system-arm ({qemu_version()}) has no machine '{m}' for board {board.name}; "
                       f"install a newer QEMU")


# ---------------------------------------------------------------- icount plugin
def plugin_path(cache_dir=None, cc: str = "cc") -> Tuple[Optional[Path], str]:
    """Build (once) the instruction-count plugin; (path, "") or (None, why not)."""
    cache = Path(cache_dir or os.environ.get("RNNSKIP_CACHE") or Path.home() / ".cache" / "rnnskip")
    so = cache / f"librnnskip_qemu_icount-{int(PLUGIN_SRC.stat().st_mtime)}.so"
    if so.is_file():
        return so, ""
    compiler = shutil.which(cc) or shutil.which("gcc")
    if compiler is None:
        return None, "no host C compiler to build the QEMU instruction-count plugin"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:                      # read-only home (CI): build into the temp folder
        cache = Path(tempfile.gettempdir()) / "rnnskip-cache"
        cache.mkdir(parents=True, exist_ok=True)
        so = cache / so.name
        if so.is_file():
            return so, ""
    tmp = so.with_suffix(f".{os.getpid()}.tmp")
    p = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-o", str(tmp), str(PLUGIN_SRC)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"building the QEMU plugin failed: {(p.stderr.strip().splitlines() or ['?'])[0]}"
    tmp.replace(so)
    return so, ""


def _bl_target(code: bytes, k: int, addr: int) -> Optional[int]:
    """Target of a Thumb BL (encoding T1) at ``code[k:k+4]`` (address ``addr``), else None.

    Decoded by hand: capstone stops at literal pools and at Armv8.1-M encodings."""
    h1 = int.from_bytes(code[k:k + 2], "little")
    h2 = int.from_bytes(code[k + 2:k + 4], "little")
    if (h1 & 0xF800) != 0xF000 or (h2 & 0xD000) != 0xD000:
        return None
    s = (h1 >> 10) & 1
    i1 = 1 - (((h2 >> 13) & 1) ^ s)
    i2 = 1 - (((h2 >> 11) & 1) ^ s)
    imm = (s << 24) | (i1 << 23) | (i2 << 22) | ((h1 & 0x3FF) << 12) | ((h2 & 0x7FF) << 1)
    if s:
        imm -= 1 << 25
    return (addr + 4 + imm) & 0xFFFFFFFF


def call_sites(elf, caller: str = "main", callee: str = "rnnskip_io_run") -> Tuple[int, List[int]]:
    """(callee address, [return addresses of every BL callee in caller])."""
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        e = ELFFile(f)
        syms = {s.name: s for s in e.get_section_by_name(".symtab").iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC"}
        if caller not in syms or callee not in syms:
            raise EmulationError(f"{Path(elf).name}: no {caller if caller not in syms else callee} function "
                                 f"(not a board image?)")
        target = syms[callee]["st_value"] & ~1
        start, size = syms[caller]["st_value"] & ~1, syms[caller]["st_size"]
        code = None
        for seg in e.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_paddr"] <= start < seg["p_paddr"] + seg["p_filesz"]:
                off = start - seg["p_paddr"]
                code = seg.data()[off:off + size]
        if code is None:
            raise EmulationError(f"{Path(elf).name}: cannot read the code of {caller}")
    rets = [start + k + 4 for k in range(0, len(code) - 3, 2) if _bl_target(code, k, start + k) == target]
    if not rets:
        raise EmulationError(f"{Path(elf).name}: {caller} never calls {callee} directly")
    return target, rets


# ---------------------------------------------------------------- run
def _parse(lines: List[str]):
    start, summary, seqs = {}, {}, []
    for ln in lines:
        if ln.startswith("rnnskip start:"):
            start = dict(_KV.findall(ln))
        elif ln.startswith(SUMMARY):
            summary = dict(_KV.findall(ln))
        else:
            m = _SEQ.match(ln)
            if m:
                i, T, steps, out, flags, cyc, match = m.groups()
                seqs.append({"i": int(i), "T": int(T), "steps": int(steps),
                             "out": [int(v) for v in out.split(",") if v], "flags": flags,
                             "cycles": None if cyc == "-" else int(cyc), "match": match == "1"})
    return start, summary, seqs


def run_firmware(elf, board, timeout: float = 60.0, icount: bool = True, workdir=None) -> QemuRun:
    """Boot ``elf`` on ``board``'s QEMU machine; return the parsed UART output.

    Raises EmulationError (one line) if QEMU fails to start, the firmware faults,
    or no summary line arrives within ``timeout`` seconds.
    """
    q = require_qemu()
    machine, note = machine_for(board)
    idx = int(board.qemu.get("serial_index", 0))
    cmd = [q, "-M", machine, "-nographic", "-monitor", "none", "-no-reboot"]
    cmd += ["-serial", "null"] * idx + ["-serial", "stdio", "-kernel", str(elf)]
    tmpdir = Path(workdir or tempfile.mkdtemp(prefix="rnnskip-qemu-"))
    tmpdir.mkdir(parents=True, exist_ok=True)
    counts_file = tmpdir / "icount.txt"
    icount_note = ""
    if icount:
        so, why = plugin_path()
        if so is None:
            icount_note = why
        else:
            entry, rets = call_sites(elf)
            if counts_file.exists():
                counts_file.unlink()
            args = ",".join([f"entry={entry:#x}"] + [f"ret={r:#x}" for r in rets] + [f"out={counts_file}"])
            cmd += ["-plugin", f"{so},{args}"]
    else:
        icount_note = "instruction counting off"
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", bufsize=1)
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def reader():
        for ln in proc.stdout:
            lines.put(ln.rstrip("\r\n"))
        lines.put(None)
    threading.Thread(target=reader, daemon=True).start()
    got: List[str] = []
    why = None
    deadline = t0 + timeout
    try:
        while True:
            left = deadline - time.time()
            if left <= 0:
                why = "timeout"
                break
            try:
                ln = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if ln is None:
                why = "exit"
                break
            got.append(ln)
            if ln.startswith(SUMMARY) or ln.startswith(FAULT):
                break
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wall = time.time() - t0
    where = f"QEMU {machine} (board {board.name})"
    fault = next((ln for ln in got if ln.startswith(FAULT)), None)
    if fault:
        n = sum(1 for ln in got if ln.startswith("seq "))
        raise EmulationError(f"firmware faulted on {where} while running sequence {n}: {fault[len('rnnskip '):]}")
    if why == "exit":
        err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        raise EmulationError(f"{QEMU} exited (status {proc.returncode}) before the summary line on {where}: "
                             f"{err[0] if err else 'no error message'}")
    if why == "timeout":
        last = next((ln for ln in reversed(got) if ln.strip()), "")
        raise EmulationError(f"firmware on {where} printed no summary line within {timeout:g} s (hung?); "
                             + (f"last UART line: {last[:120]!r}" if last else "no UART output at all")
                             + f"; if it is only slow, raise --timeout (it was {timeout:g} s)")
    start, summary, seqs = _parse(got)
    icounts = None
    if icount and not icount_note:
        vals = counts_file.read_text().split() if counts_file.exists() else []
        icounts = [int(v) for v in vals[1::2]]
        if len(icounts) != len(seqs):
            icount_note = f"plugin counted {len(icounts)} calls for {len(seqs)} sequences"
            icounts = None
    if note:
        icount_note = (icount_note + "; " if icount_note else "") + note
    return QemuRun(machine=machine, lines=got, start=start, sequences=seqs, summary=summary,
                   icounts=icounts, icount_note=icount_note, wall_s=wall, command=cmd)


# ---------------------------------------------------------------- the emulator interface
class Qemu(BoardEmulator):
    """Board images on their QEMU machine (rnnskip.emulators.base.Emulator); instruction
    counts per sequence from the TCG plugin, cycles from the Unicorn re-run."""
    name = "qemu"
    counts_each_sequence = True   # the TCG plugin counts each rnnskip_io_run call

    def boot(self, elf, workdir):
        run = run_firmware(elf, self.board, timeout=self.timeout, workdir=workdir)
        info = {"qemu_machine": run.machine, "qemu_version": qemu_version(), "wall_s": round(run.wall_s, 3),
                "instruction_counts": "QEMU TCG plugin (exact, per rnnskip_io_run call)" if run.icounts
                else f"not available: {run.icount_note}",
                "device_summary": run.summary}
        if run.icount_note and run.icounts:
            info["note"] = run.icount_note
        return run.sequences, run.icounts, info
