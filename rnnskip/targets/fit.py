"""Will a model fit a target's (or board's) flash and RAM? Checked before compiling.

The estimate is built from the QModel's array sizes (exactly what the generated
C stores) plus the target's ``[fit] code_bytes`` allowance for code and the
runtime; the linker script's ASSERTs stay the backstop for anything missed.

    est = estimate(qm, max_t, target, bundled_bytes=0)
    check_fits(qm, max_t, target, where="cortex-m0plus")   # RnnskipError if not
"""
from __future__ import annotations

from dataclasses import dataclass

from ..cells import cell_of
from ..errors import RnnskipError

#: default allowance for code, vector table, startup and libgcc helpers
DEFAULT_CODE_BYTES = 8192


def _a4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


@dataclass
class SizeEstimate:
    flash: int           # bytes of flash: weights + activation tables + code allowance + bundled data
    ram: int             # bytes of RAM: model state + I/O buffers + stack
    weights: int
    state: int
    io: int
    stack: int
    code: int
    bundled: int


_CBYTES = {"int8_t": 1, "int16_t": 2, "int32_t": 4}


def bidi_bytes(qm, max_t: int) -> int:
    """Bidirectional layers' window buffers for ``max_t`` steps and their step count; 0 without one. Per layer its
    input (``bidi_x``; not after another one, whose merged outputs it reads) and merged output (``bidi_y``, when read
    later: by the next Bidirectional layer, later layers, the per-step head or the pooling); ``bidi_h`` when layers
    follow the last one and the model outputs per step; ``bidi_out`` when it is the last and nothing pools."""
    from ..generate import bidi_context, bidi_steps
    ctx = bidi_context(qm)
    if ctx["bidi"] is None:
        return 0
    max_t = bidi_steps(qm, max_t)   # a front end's frames
    n = 0
    for st in ctx["bidi_stages"]:
        n += _a4(max_t * st["fl"].in_p) if st["own_x"] else 0
        n += _a4(max_t * st["fl"].merge_p) if st["seq"] else 0
    later = ctx["bidi_later"]
    n += _a4(max_t * qm.layers[-1].up) if later and qm.per_step else 0    # bidi_h
    return n + (0 if later or qm.pool else _a4(ctx["bidi_stages"][-1]["fl"].merge_p)) + 4


def state_bytes(qm, max_t: int = 0) -> int:
    """sizeof(rnnskip_state_t) as the template lays it out (upper bound: every member 4-aligned), with a
    Bidirectional layer's buffer for windows of ``max_t`` steps."""
    n = bidi_bytes(qm, max_t)
    if qm.input_dense is not None:
        n += 4 * qm.input_dense.rows
    for f in qm.front:   # a front-end layer: its ring, its output frame, two counters
        n += _a4(f.window * f.cin_p) + _a4(f.cout_p) + 8
    convs = [f.cout_p for f in qm.front if hasattr(f, "dense")]
    n += 4 * max(convs, default=0)                                 # f_acc
    for i, l in enumerate(qm.layers):
        n += _a4(l.xh_len) + sum(_a4(_CBYTES[ctype] * k) for ctype, _, k, _ in cell_of(l.kind).c_state(l, i))
    n += 4 * max(l.acc_rows for l in qm.layers)                   # acc
    if qm.head:
        hs = max(d.rows for d in qm.head)
        n += 2 * _a4(hs) + 4 * hs
        n += _a4(max((d.cols for d in qm.head if d.norm is not None), default=0))   # ln
    n += sum(m.state_bytes(qm) for m in qm.methods)
    from ..generate import finish_pending
    return n + pool_bytes(qm) + 4 + 4 * finish_pending(qm)         # steps_run, finished


def pool_bytes(qm) -> int:
    """Pooling over time: per kind its int32 sums or maxima and a count, the pooled int8 vector (and with a
    Bidirectional layer and a max, one or two counters); 0 without."""
    if not qm.pool:
        return 0
    w = qm.out_width
    counters = 0
    if qm.bidi is not None and "max" in qm.pool_kinds:   # pool_t, and pool_lead when layers follow
        counters = 8 if qm.bidis[-1] + 2 < len(qm.layers) else 4
    if qm.pool == "flatten":   # every step's int8 output side by side (the head reads it) and a count
        return _a4(qm.pool_width) + 4
    return len(qm.pool_kinds) * (4 * w + 4) + _a4(qm.pool_width) + counters


def io_bytes(qm, max_t: int) -> int:
    """The rnnskip_io.c buffers for sequences of up to ``max_t`` steps."""
    step = 1 if qm.token_input else qm.features_p
    per = 4 if qm.token_input else 1
    out_len = qm.out_len * \
        (max_t if qm.per_step else 1)
    return _a4(max_t * step * per) + 2 * _a4(max_t) + _a4(2 * out_len) + 8 + state_bytes(qm, max_t)


def estimate(qm, max_t: int, target, bundled_bytes: int = 0) -> SizeEstimate:
    code = int(target.raw.get("fit", {}).get("code_bytes", DEFAULT_CODE_BYTES))
    from ..generate import tables_used, weights_bytes
    from ..quant.act import LUT_BYTES
    w = weights_bytes(qm)
    luts = LUT_BYTES * len(tables_used(qm))
    st = state_bytes(qm, max_t)
    io = io_bytes(qm, max_t)          # includes the static state rnnskip_io.c keeps
    return SizeEstimate(flash=w + luts + code + int(bundled_bytes), ram=io + target.stack_size,
                        weights=w, state=st, io=io, stack=target.stack_size, code=code,
                        bundled=int(bundled_bytes))


def _whose(n: int) -> str:
    return "layer's" if n == 1 else "layers'"


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def check_fits(qm, max_t: int, target, where: str = "", bundled_bytes: int = 0) -> SizeEstimate:
    """Raise a one-line RnnskipError (both sizes) when the model cannot fit ``target``'s memory."""
    est = estimate(qm, max_t, target, bundled_bytes)
    board = target.raw.get("board")   # a board's memory map: its part's sizes, not the bare core's
    on = where or (f"board {board} ({target.name})" if board else target.name)
    if est.flash > target.flash_size:
        tables = est.flash - est.weights - est.code - est.bundled
        raise RnnskipError(
            f"model does not fit {on}: needs about {est.flash:,} bytes of flash ({_kib(est.flash)}: "
            f"{est.weights:,} B weights + {tables:,} B activation tables + {est.code:,} B code allowance"
            + (f" + {est.bundled:,} B bundled test data" if est.bundled else "")
            + f") but {on} has {target.flash_size:,} bytes ({_kib(target.flash_size)}); "
            + ("bundle fewer test sequences (--bundle, or a smaller --emulate-max), shrink the model or pick a "
               "board with more flash" if est.bundled > target.flash_size - (est.flash - est.bundled) > 0 else
               "shrink the model or pick a target/board with more flash"))
    if est.ram > target.ram_size:
        harness = est.io - est.state
        window = bidi_bytes(qm, max_t)   # a Bidirectional layer's buffer: the model's own, sized by the window
        alone = est.state + est.stack <= target.ram_size
        raise RnnskipError(
            f"model does not fit {on}: needs about {est.ram:,} bytes of RAM ({_kib(est.ram)}: "
            f"{est.state - window:,} B model state"
            + (f" + {window:,} B the Bidirectional {_whose(len(qm.bidis))} window buffers for {max_t} steps"
               + (" (the front end's frames for them)" if qm.front else "") if window else "")
            + f" + {harness:,} B the emulation harness's I/O buffers for {max_t}-step sequences + {est.stack:,} B "
            f"stack) but {on} has {target.ram_size:,} bytes ({_kib(target.ram_size)}); "
            + ("the model alone fits (a firmware calling rnnskip_step keeps no sequence buffers"
               + (" besides the model's window buffers counted above" if window else "") + "): emulate shorter "
               "sequences (the buffers hold --max-t steps, else the longest sequence in --data), take src/ from "
               "'rnnskip generate WORK --max-t N' without emulating, or pick a board with more RAM" if alone else
               "use shorter windows (the Bidirectional buffers grow with them: --max-t, else the longest sequence "
               "in --data), a smaller model or a target/board with more RAM" if window else
               "use a smaller model or a target/board with more RAM"))
    return est
