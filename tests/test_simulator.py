"""Emulator backend: exact instruction / cycle / traffic counts on hand-counted kernels.

Expected numbers come from the hand counts written line by line in
tests/fixtures/sim/kernels.s (cycle model: rnnskip/simulator/cycles.py).
"""
import random
from pathlib import Path

import pytest
from helpers import needs_arm

from rnnskip.build import build_firmware, cflags, ldflags, render_runtime
from rnnskip.errors import RnnskipError
from rnnskip.simulator import CallStats, EmulationError, UnicornEmulator
from rnnskip.targets import load

FIX = Path(__file__).parent / "fixtures" / "sim"

pytestmark = needs_arm

ASM_KEEP = ["loop_mix", "misc", "sw", "page_split", "ftable", "sbuf", "sout", "fconst"]
C_KEEP = ["dot_s8", "matvec_s8", "fsum_q", "stack_user", "recurse", "crash", "spin",
          "xa", "xb", "yout"]


@pytest.fixture(scope="module")
def m4():
    return load("cortex-m4")


@pytest.fixture(scope="module")
def asm_elf(m4, tmp_path_factory):
    return build_firmware(m4, [FIX / "kernels.s"], tmp_path_factory.mktemp("asm"), keep=ASM_KEEP)


@pytest.fixture(scope="module")
def c_elf(m4, tmp_path_factory):
    return build_firmware(m4, [FIX / "ckernels.c"], tmp_path_factory.mktemp("c"), keep=C_KEEP)


# ----------------------------------------------------------------------------- expected
def loop_mix_expect(n, ws):
    """Closed forms from the header comment of loop_mix in kernels.s."""
    flash_reads = 4 + n
    fetch = 7 + 9 * n
    return dict(instructions=13 + 11 * n,
                cycles=34 + 14 * n + ws * (fetch + flash_reads),
                flash_read_bytes=16 + 4 * n, flash_reads=flash_reads,
                sram_read_bytes=33 + 5 * n, sram_reads=9 + 2 * n,
                sram_write_bytes=32 + 4 * n, sram_writes=8 + n,
                fetch_words=fetch, return_value=11 * n * (n + 1) // 2)


def misc_expect(x, ws):
    base, fetch, ret, ins = {0: (82, 23, 2, 31), 1: (80, 22, 192, 30)}[x]
    return dict(instructions=ins, cycles=base + ws * (fetch + 9),
                flash_read_bytes=36, flash_reads=9, sram_read_bytes=20, sram_reads=5,
                sram_write_bytes=29, sram_writes=8, fetch_words=fetch, return_value=ret)


def sw_expect(i, ws):
    return dict(instructions=3, cycles=9 + ws * (3 + 1), flash_read_bytes=1, flash_reads=1,
                sram_read_bytes=0, sram_reads=0, sram_write_bytes=0, sram_writes=0,
                fetch_words=3, return_value=(10, 20)[i])


def check(stats: CallStats, expect: dict):
    got = {k: getattr(stats, k) for k in expect}
    assert got == expect


# ----------------------------------------------------------------------------- runtime
def test_render_runtime(m4, tmp_path):
    ld, st = render_runtime(m4, tmp_path)
    text = ld.read_text()
    assert "ORIGIN = 0x08000000, LENGTH = 1048576" in text
    assert "ORIGIN = 0x20000000, LENGTH = 131072" in text
    assert "_stack_size = 8192;" in text and "ASSERT(" in text
    src = st.read_text()
    assert "Reset_Handler" in src and "0xE000ED88" in src and "__ARM_FP" in src
    assert cflags(m4)[:len(m4.cflags)] == m4.cflags and "-O2" in cflags(m4)
    assert "-nostartfiles" in ldflags(m4, ld) and str(ld) in ldflags(m4, ld)


def test_link_overflow_messages(m4, tmp_path):
    (tmp_path / "ram.c").write_text("#include <stdint.h>\nint8_t big[130000];\n"
                                    "int main(void){ return big[5]; }\n")
    with pytest.raises(RnnskipError, match="does not fit in RAM on cortex-m4"):
        build_firmware(m4, [tmp_path / "ram.c"], tmp_path / "r")
    (tmp_path / "flash.c").write_text("#include <stdint.h>\nconst int8_t bigf[1100000] = {1};\n"
                                      "volatile int i;\nint main(void){ return bigf[i]; }\n")
    with pytest.raises(RnnskipError, match="does not fit in 1048576 bytes of FLASH"):
        build_firmware(m4, [tmp_path / "flash.c"], tmp_path / "f")


# ----------------------------------------------------------------------------- exact counts
@pytest.mark.parametrize("ws", [0, 3])
def test_loop_mix_counts_both_modes(m4, asm_elf, ws):
    emu = UnicornEmulator(asm_elf, m4.with_wait_states(ws))
    for n in (8, 1, 5):
        e = loop_mix_expect(n, ws)
        ex = emu.call("loop_mix", (n,), context=f"n={n}", mode="exact")
        check(ex, e)
        assert ex.traffic_exact and ex.unprofiled == 0 and ex.mode == "exact"
        bl = emu.call("loop_mix", (n,), context=f"n={n}", mode="blocks")
        check(bl, e)
        assert not bl.traffic_exact and bl.unprofiled == 0 and bl.mode == "blocks"


def test_function_cycles_split(m4, asm_elf):
    """loop_mix by function. Each extra iteration is 14 cycles (hand count in kernels.s):
    12 are static block cost, 2 are per-transition (the BNE's refill, and the second
    cycle of the LDRLE, which the model charges only when its IT condition passes).
    The parts sum to the call's cycles."""
    emu = UnicornEmulator(asm_elf, m4)
    parts = {}
    for n in (1, 5):
        st = emu.call("loop_mix", (n,), mode="blocks")
        parts[n] = emu.function_cycles(st)
        assert set(parts[n]) <= {"loop_mix", "(branches, wait states)"}
        assert sum(parts[n].values()) == st.cycles == 34 + 14 * n
    assert parts[5]["loop_mix"] - parts[1]["loop_mix"] == 4 * 12
    assert parts[5].get("(branches, wait states)", 0) - parts[1].get("(branches, wait states)", 0) == 4 * 2


def test_blocks_mode_without_profile(m4, asm_elf):
    """Before any exact call only static-region accesses (literal pool, stack) are counted."""
    emu = UnicornEmulator(asm_elf, m4)
    st = emu.call("loop_mix", (8,))
    assert (st.instructions, st.cycles, st.return_value) == (101, 146, 396)
    # literals (4 x 4 B flash); PUSH 16 B write, POP 16 B read (SP-relative)
    assert (st.flash_read_bytes, st.flash_reads) == (16, 4)
    assert (st.sram_read_bytes, st.sram_write_bytes) == (16, 16)
    # per iteration LDR [r1], LDRB [r2], STR [r3], LDRLE [r3]; then LDRB, LDM, STM, LDRD, STRD
    assert st.unprofiled == 4 * 8 + 5 and not st.traffic_exact


@pytest.mark.parametrize("ws", [0, 3])
def test_misc_branches_fpu_it_return(m4, asm_elf, ws):
    emu = UnicornEmulator(asm_elf, m4.with_wait_states(ws))
    for x, d in ((0, 1), (1, 2)):
        e = misc_expect(x, ws)
        check(emu.call("misc", (x, d), mode="exact"), e)
        check(emu.call("misc", (x, d), mode="blocks"), e)
    # VSTR wrote 2 * (leaf + 12) as float to sout[8]
    import struct
    assert struct.unpack("<f", emu.read("sout", 4, offset=32))[0] == 242.0


@pytest.mark.parametrize("ws", [0, 3])
def test_tbb(m4, asm_elf, ws):
    emu = UnicornEmulator(asm_elf, m4.with_wait_states(ws))
    for i in (0, 1):
        check(emu.call("sw", (i,), mode="exact"), sw_expect(i, ws))
        check(emu.call("sw", (i,), mode="blocks"), sw_expect(i, ws))


@pytest.mark.parametrize("mode", ["blocks", "exact"])
def test_pipelining_across_a_translation_block_split(m4, asm_elf, mode):
    """Hand count in kernels.s (page_split): the emulator's block boundary at 1 KiB is not
    the core's, so the load pair across it pipelines."""
    emu = UnicornEmulator(asm_elf, m4)
    addr, _ = emu.symbol("page_split")
    assert addr % 1024 == 0
    st = emu.call("page_split", ["ftable", "ftable"], mode=mode)
    check(st, dict(instructions=260, cycles=263, return_value=2))
    if mode == "exact":
        check(st, dict(flash_read_bytes=8, flash_reads=2))


def test_state_after_reset_image(m4, asm_elf):
    emu = UnicornEmulator(asm_elf, m4)
    assert emu.read("sbuf", 8) == bytes([10, 20, 30, 40, 50, 60, 70, 80])   # .data at VMA
    assert emu.read("sout", 64) == bytes(64)                                  # .bss zeroed
    addr, size = emu.symbol("ftable")
    assert size == 32 and m4.flash_origin <= addr < m4.flash_origin + m4.flash_size
    assert emu.read(addr, 8) == (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
    emu.write("sbuf", bytes([1] * 8))
    assert emu.call("loop_mix", (8,)).return_value == 36 + 8
    emu.reset()
    assert emu.call("loop_mix", (8,)).return_value == 396


# ----------------------------------------------------------------------------- C code
def test_c_dot_product_and_profile(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4)
    rng = random.Random(1)
    a = [rng.randrange(-128, 128) for _ in range(256)]
    b = [rng.randrange(-128, 128) for _ in range(256)]
    emu.write("xa", bytes(v & 0xFF for v in a))
    emu.write("xb", bytes(v & 0xFF for v in b))
    want = sum(x * y for x, y in zip(a, b))
    ex = emu.call("dot_s8", ("xa", "xb", 256), mode="exact")
    assert ex.return_signed == want
    assert ex.sram_read_bytes >= 512 and ex.flash_read_bytes == 0
    bl = emu.call("dot_s8", ("xa", "xb", 256))
    assert bl.return_signed == want
    for k in ("instructions", "cycles", "sram_read_bytes", "sram_reads", "sram_write_bytes",
              "flash_read_bytes"):
        assert getattr(bl, k) == getattr(ex, k), k
    # 256 iterations of a >= 4-instruction loop
    assert ex.instructions > 4 * 256 and ex.cycles >= ex.instructions


def test_c_float_code_runs_with_fpu(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4)
    vals = [(i * 37) % 256 - 128 for i in range(200)]
    emu.write("xa", bytes(v & 0xFF for v in vals))
    st = emu.call("fsum_q", ("xa", 200))
    assert st.return_signed == 2 * sum(vals)


def test_stack_high_water(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4)
    assert emu.stack_high_water() == 0
    emu.call("dot_s8", ("xa", "xb", 16))
    small = emu.stack_high_water()
    assert small < 64
    st = emu.call("stack_user", (3,))
    assert st.return_signed == sum(((i * 3) & 0xFF) - (256 if (i * 3) & 0x80 else 0) for i in range(512))
    hw = emu.stack_high_water()
    assert 512 <= hw <= 640


def test_stack_overflow_detected(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4)
    with pytest.raises(EmulationError, match="stack overflow in recurse"):
        emu.call("recurse", (64,))


# ----------------------------------------------------------------------------- errors
def test_fault_message(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4)
    with pytest.raises(EmulationError) as ei:
        emu.call("crash", context="sequence 17")
    msg = str(ei.value)
    assert isinstance(ei.value, RnnskipError)
    assert "\n" not in msg
    assert "pc=0x" in msg and "<crash+" in msg and "(sequence 17)" in msg
    assert "0xfffffff0" in msg
    # the emulator is still usable afterwards
    assert emu.call("dot_s8", ("xa", "xb", 4)).return_value == 0


def test_step_limit(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4, max_instructions=20_000)
    with pytest.raises(EmulationError) as ei:
        emu.call("spin", context="sequence 3")
    msg = str(ei.value)
    assert msg.startswith("firmware did not return from spin within 20000 instructions (sequence 3); pc=0x")
    assert "<spin" in msg
    with pytest.raises(EmulationError):
        emu.call("spin", mode="exact")


def test_symbol_errors(m4, c_elf):
    emu = UnicornEmulator(c_elf, m4)
    with pytest.raises(EmulationError, match="symbol 'nope' not found"):
        emu.symbol("nope")
    with pytest.raises(EmulationError, match="overruns 'xa'"):
        emu.write("xa", bytes(300))
    with pytest.raises(EmulationError, match="unknown emulation mode"):
        emu.call("dot_s8", ("xa", "xb", 1), mode="fast")
    with pytest.raises(EmulationError, match="not found"):
        UnicornEmulator(Path("/nonexistent.elf"), m4)


def test_profile_transfer(m4, asm_elf):
    a = UnicornEmulator(asm_elf, m4)
    a.call("loop_mix", (8,), mode="exact")
    b = UnicornEmulator(asm_elf, m4)
    b.merge_profile(a.profile)
    check(b.call("loop_mix", (8,)), loop_mix_expect(8, 0))


@pytest.mark.parametrize("mode", ["blocks", "exact"])
def test_signal_during_emulation_stops_it_cleanly(m4, c_elf, mode, capfd):
    """Ctrl-C / SIGTERM arriving while Unicorn runs: the run stops and the exception is raised
    after emu_start returns (raised inside a hook it would be printed and ignored by ctypes)."""
    import signal
    import time

    from rnnskip.simulator.unicorn_backend import interrupt_emulation
    emu = UnicornEmulator(c_elf, m4, max_instructions=10 ** 12)
    old = signal.signal(signal.SIGALRM, lambda *_: interrupt_emulation(KeyboardInterrupt()) or None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        t0 = time.time()
        with pytest.raises(KeyboardInterrupt):
            emu.call("spin", mode=mode)
        assert time.time() - t0 < 20
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert "Exception ignored" not in capfd.readouterr().err
    assert not interrupt_emulation(KeyboardInterrupt())          # nothing running any more
    assert emu.call("dot_s8", ("xa", "xb", 16)).cycles > 0      # the emulator still works


def test_traffic_counted_sequences_run_in_small_chunks(monkeypatch):
    """The slow, traffic-counted sequences go to the workers TRAFFIC_CHUNK at a time (the progress bar
    moves while they run); the others in chunks of ``chunk``; every sequence once, in its slot."""
    import numpy as np

    from rnnskip.emulators import unicorn as U
    from rnnskip.emulators.base import STAT_FIELDS, Sequences
    calls = []

    def fake_worker(elf, target, out_len, macs, jobs):
        calls.append([(n, exact) for n, _, _, _, exact in jobs])
        return [(n, np.full(out_len, n), None, T, np.zeros(len(STAT_FIELDS)), exact)
                for n, _, T, _, exact in jobs], 0, None
    monkeypatch.setattr(U, "_worker", fake_worker)
    seqs = Sequences(x=np.zeros((40, 5), np.int8), lengths=np.arange(40) % 5 + 1, valid=None, out_len=2,
                     macs_per_step=1)
    res = U.emulate_dataset(Path("fw.elf"), None, seqs, traffic_sample=5, workers=1, chunk=16, progress=False)
    assert [len(c) for c in calls] == [U.TRAFFIC_CHUNK] * 2 + [1] + [16, 16, 3]
    # the counted ones are spread over the data, not its first rows (a user's were sorted by class)
    assert sorted(n for c in calls for n, exact in c if exact) == [0, 8, 16, 24, 32]
    assert sorted(n for c in calls for n, _ in c) == list(range(40))
    np.testing.assert_array_equal(res.out[:, 0], np.arange(40))
    np.testing.assert_array_equal(np.flatnonzero(res.traffic_measured), [0, 8, 16, 24, 32])


def test_a_worker_that_dies_breaks_the_emulation_instead_of_hanging():
    """A worker process that dies (a native crash in Unicorn, the OOM killer) ends the emulation with an error at
    once; a multiprocessing.Pool, tried for faster Ctrl-C, replaced the worker and waited for its lost chunk
    forever (a review found it). In a fresh interpreter, so the workers fork and see the dying stand-in."""
    import subprocess
    import sys
    code = ("import os\nfrom pathlib import Path\nimport numpy as np\n"
            "from concurrent.futures.process import BrokenProcessPool\n"
            "from rnnskip.emulators import unicorn as U\n"
            "from rnnskip.emulators.base import Sequences\n"
            "def die(*a):\n    os._exit(1)\n"
            "U._worker = die\n"
            "seqs = Sequences(x=np.zeros((40, 5), np.int8), lengths=np.full(40, 5), valid=None, out_len=2, "
            "macs_per_step=1)\n"
            "try:\n"
            "    U.emulate_dataset(Path('fw.elf'), None, seqs, traffic_sample=0, workers=2, chunk=4, progress=False)\n"
            "except BrokenProcessPool:\n"
            "    print('broken')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "broken", (p.stdout, p.stderr)
