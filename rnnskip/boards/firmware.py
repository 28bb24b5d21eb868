"""Board firmware: the model + the bare-metal runtime + a UART driver + a ``main`` that
runs bundled test sequences and prints the results (templates in
``rnnskip/firmware_templates/board/``).

    bundle = make_bundle(qm, ds_x, lengths, max_n=16)     # golden outputs computed here
    fw = build_board_firmware(src_dir, out_dir, board, variant="dsp", bundle=bundle, qm=qm)
    fw.elf  # boots on the board (and on its QEMU machine); prints "rnnskip summary: ..."

The same ELF also works with :class:`rnnskip.simulator.UnicornEmulator` (board
memory map: :func:`rnnskip.boards.board_target`): the emulators call
``rnnskip_io_run`` exactly as ``main`` does.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import jinja2
import numpy as np

from .. import __version__
from ..errors import RnnskipError
from . import Board, board_target

_TEMPLATES = Path(__file__).resolve().parent.parent / "firmware_templates"

#: files written into <out>/board/ (template -> file)
BOARD_FILES = {"board/rnnskip_board.h.j2": "rnnskip_board.h",
               "board/rnnskip_uart.c.j2": "rnnskip_uart.c",
               "board/rnnskip_board_main.c.j2": "rnnskip_board_main.c",
               "board/rnnskip_board_data.c.j2": "rnnskip_board_data.c",
               "runtime/startup.c.j2": "startup.c",
               "runtime/link.ld.j2": "link.ld"}


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


@dataclass
class Bundle:
    """Test sequences linked into the firmware, with the golden model's results."""
    x: np.ndarray            # device inputs [n, T, step] (int32 ids or int8 features)
    lengths: np.ndarray      # [n]
    valid: Optional[np.ndarray]   # uint8 [n, T] or None (token models)
    out: np.ndarray          # golden outputs int16 [n, output_dim] ([n, T, output_dim]: an output per step)
    flags: np.ndarray        # golden step flags uint8 [n, T]
    token_input: bool

    @property
    def n(self) -> int:
        return int(len(self.lengths))

    @property
    def per_step(self) -> bool:
        return self.out.ndim == 3

    def out_flat(self) -> np.ndarray:
        """The golden outputs as the firmware holds them: per sequence, or per step of each sequence."""
        from ..outputs import flat_for_c
        return flat_for_c(self.out, self.lengths)

    def flash_bytes(self) -> int:
        steps = int(np.sum(self.lengths))
        per = self.x.shape[2] * (4 if self.token_input else 1) if self.x.ndim == 3 else (4 if self.token_input else 1)
        return steps * per + 2 * steps + 2 * self.out_flat().size + 8 * self.n + 16


def make_bundle(qm, x, lengths, max_n: Optional[int] = 16) -> Bundle:
    """The first ``max_n`` sequences of (x, lengths) as device inputs plus golden results
    (the delta golden model for a delta model, the predictor's skips included)."""
    from ..quant.golden import GoldenModel
    n = len(x) if max_n is None else min(int(max_n), len(x))
    x, lengths = x[:n], np.asarray(lengths[:n])
    g = GoldenModel(qm)
    out, flags = g.run(x, lengths)
    dev = np.asarray(g.device_inputs(x))
    if dev.ndim == 2:
        dev = dev[:, :, None]
    valid = None if qm.token_input else np.asarray(g.valid_steps(x), np.uint8)
    return Bundle(x=dev, lengths=lengths.astype(np.int64), valid=valid,
                  out=np.asarray(out, np.int64)[..., :qm.output_dim], flags=np.asarray(flags, np.uint8),
                  token_input=bool(qm.token_input))


def _body(values, per_line=24) -> str:
    v = [str(int(a)) for a in np.asarray(values).reshape(-1)]
    if not v:
        return "    0"
    return ",\n".join("    " + ", ".join(v[i:i + per_line]) for i in range(0, len(v), per_line))


def _bundle_context(b: Bundle) -> dict:
    T = [int(t) for t in b.lengths]
    off = list(np.concatenate([[0], np.cumsum(T)[:-1]]).astype(int)) if T else [0]
    xs = [b.x[i, :T[i]].reshape(-1) for i in range(b.n)]
    x = np.concatenate(xs) if xs else np.zeros(0, np.int64)
    valid = np.concatenate([b.valid[i, :T[i]] for i in range(b.n)]) if (b.valid is not None and b.n) \
        else np.zeros(0, np.int64)
    flags = np.concatenate([b.flags[i, :T[i]] for i in range(b.n)]) if b.n else np.zeros(0, np.int64)
    out = b.out_flat()
    return {"n": b.n, "per_step": b.per_step, "T": T or [0], "off": [int(o) for o in off], "x": x, "x_body": _body(x),
            "use_valid": b.valid is not None, "valid": valid, "valid_body": _body(valid, 48),
            "out": out, "out_body": _body(out, 16), "flags": flags, "flags_body": _body(flags, 48)}


def render_board_sources(out_dir, board: Board, bundle: Bundle, model_name: str = "model",
                         target=None) -> List[Path]:
    """Write the board's runtime, UART driver, main and bundled data into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = target or board_target(board)
    env = _env()
    ctx = {"version": __version__, "board": board, "target": t, "uart": board.require_uart("board sources"),
           "model_name": model_name, "dwt": bool(t.raw.get("dwt_cycle_counter", True)),
           "dwt_unlock": t.name == "cortex-m7"}
    ctx.update(_bundle_context(bundle))
    written = []
    for tpl, name in BOARD_FILES.items():
        p = out / name
        p.write_text(env.get_template(tpl).render(**ctx))
        written.append(p)
    return written


def model_sources(src_dir) -> List[Path]:
    """The generated model's C files for a board image (its emulation main.c excluded)."""
    src = Path(src_dir)
    files = sorted(src.glob("*.c")) + sorted((src / "kernels").glob("*.c"))
    return [f for f in files if f.name not in ("main.c", "startup.c")]


def build_board_firmware(src_dir, out_dir, board: Board, bundle: Bundle, variant: str = "dsp",
                         model_name: str = "model", wait_states: Optional[int] = None,
                         cc: str = "arm-none-eabi-gcc", extra_cflags=()):
    """Compile the model in ``src_dir`` with the board runtime into ``out_dir/firmware.elf``."""
    from ..build import Firmware, _provider_flags, cflags, compile_and_link, ldflags, section_sizes
    if shutil.which(cc) is None:
        raise RnnskipError(f"{cc} not found; run 'make setup' (installs gcc-arm-none-eabi) or put it on PATH")
    if variant not in ("dsp", "plain"):
        raise RnnskipError(f"unknown kernel variant '{variant}'; choose dsp or plain")
    src_dir, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    t = board_target(board, wait_states)
    bdir = out / "board"
    files = render_board_sources(bdir, board, bundle, model_name, t)
    ld = bdir / "link.ld"
    csrc = [f for f in files if f.suffix == ".c"]
    extra, inc = _provider_flags(src_dir)
    elf, mapf = out / "firmware.elf", out / "firmware.map"
    flags = [*cflags(t), *(["-DRNNSKIP_NO_DSP"] if variant == "plain" else []), *extra_cflags,
             "-I", str(src_dir), "-I", str(src_dir / "kernels"), "-I", str(bdir), *inc]
    root = Path(os.path.commonpath([src_dir, out]))
    p = compile_and_link(cc, flags, model_sources(src_dir) + csrc + list(extra), ldflags(t, ld), elf, mapf, root)
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        ours = next((ln for ln in lines if "rnnskip:" in ln), None)
        if ours is not None:
            raise RnnskipError(f"board {board.name}: " + ours[ours.index("rnnskip:") + 8:].strip())
        first = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else f"exit {p.returncode}")
        raise RnnskipError(f"firmware build for board {board.name} failed: {first.strip()}")
    sizes = section_sizes(elf)
    flash = sum(v for k, v in sizes.items() if k in (".isr_vector", ".text", ".rodata", ".data", ".ARM.exidx",
                                                      ".init_array", ".fini_array"))
    ram = sum(v for k, v in sizes.items() if k in (".data", ".bss"))
    return Firmware(elf=elf, map=mapf, variant=variant, flash_bytes=int(flash), ram_bytes=int(ram))
