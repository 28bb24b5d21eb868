"""Memory-system model (rnnskip/simulator/memory.py): line fills, hits and stalls counted by hand.

Every test uses flash at [0x08000000, 0x08100000) (RP2040-like: 0x10000000) and
SRAM at 0x20000000; "line n" below is the n-th 16-byte line of flash
(address 0x08000000 + 16 n) unless a test says otherwise.
"""
import numpy as np
import pytest
from helpers import needs_arm

from rnnskip.errors import RnnskipError
from rnnskip.simulator.memory import MemorySystem, parse

FLASH = (0x08000000, 0x08100000)
F = 0x08000000
SRAM = 0x20000000
SRC = {"source": "test"}


def system(ws=5, line=16, prefetch=False, icache=None, dcache=None, flash=FLASH):
    raw = {"name": "t", "source": "test", "flash": {"line_bytes": line, "wait_states": ws, **SRC},
           "prefetch": {"enabled": prefetch, **SRC}}
    if icache:
        raw["icache"] = dict(icache, line_bytes=line, **SRC)
    if dcache:
        raw["dcache"] = dcache if dcache.get("unified") else dict(dcache, line_bytes=line, **SRC)
        raw["dcache"].update(SRC)
    return MemorySystem(parse(raw), flash)


def totals(m):
    c = m.counters()
    return c["flash_line_fills"], c["stall_cycles"], c["cache_hits"], c["cache_misses"]


def test_line_buffer_one_fill_serves_four_words():
    m = system()
    # line 0: words 0..3 -> 1 fill (5 cycles), the other three words hit the line buffer
    assert [m.fetch(F + 4 * i) for i in range(4)] == [5, 0, 0, 0]
    # line 1: fill (5); back to line 0: the buffer holds line 1 now -> fill again (5)
    assert m.fetch(F + 0x10) == 5 and m.fetch(F + 0x2) == 5
    # 3 fills, 15 stall cycles (the per-word model charges 6 words x 5 = 30)
    assert totals(m) == (3, 15, {}, {})


def test_data_line_buffer_and_instruction_side_are_separate():
    m = system()
    # LDR line 16 (fill 5), LDR again in line 16 (buffer hit 0)
    assert m.read(F + 0x100) == 5 and m.read(F + 0x104) == 0
    # LDRD at 0x10C spans lines 16 (buffered) and 17 (fill 5)
    assert m.read(F + 0x10C, 8) == 5
    # SRAM: zero wait, no fill
    assert m.read(SRAM, 4) == 0 and m.read(SRAM + 0x10C, 8) == 0
    # an instruction fetch of line 16: the instruction line buffer is empty -> fill 5
    assert m.fetch(F + 0x100) == 5
    assert totals(m) == (3, 15, {}, {})


def test_icache_lru_eviction_fully_associative():
    m = system(icache={"lines": 2, "ways": 2})
    a, b, c = F, F + 0x10, F + 0x20
    seq = [a, a + 4, b, a, c, a, b]
    got = [m.fetch(x) for x in seq]
    # a miss; a+4 line-buffer hit (no lookup); b miss; a hit (LRU: b, a); c miss, evicts b
    # (a, c); a hit (c, a); b miss, evicts c
    assert got == [5, 0, 5, 0, 5, 0, 5]
    assert totals(m) == (4, 20, {"icache": 2}, {"icache": 4})


def test_icache_set_associative_eviction():
    m = system(icache={"lines": 4, "ways": 2})     # 2 sets: even lines -> set 0, odd -> set 1
    l0, l1, l2, l4 = F, F + 0x10, F + 0x20, F + 0x40
    got = [m.fetch(x) for x in (l0, l2, l4, l0, l1, l4)]
    # l0, l2 miss (set 0 full); l4 miss, evicts l0; l0 miss, evicts l2; l1 miss (set 1); l4 hit
    assert got == [5, 5, 5, 5, 5, 0]
    assert totals(m) == (5, 25, {"icache": 1}, {"icache": 5})


def test_dcache_streamed_data_larger_than_the_cache():
    # the ART's data cache: 8 lines of 16 bytes
    fits = system(dcache={"lines": 8, "ways": 8})
    for _ in range(2):
        for i in range(8):
            fits.read(F + 0x1000 + 16 * i)
    # pass 1: 8 misses (8 fills, 40 cycles); pass 2: 8 hits (each read changes line, so each is looked up)
    assert totals(fits) == (8, 40, {"dcache": 8}, {"dcache": 8})
    big = system(dcache={"lines": 8, "ways": 8})
    for _ in range(2):
        for i in range(9):
            big.read(F + 0x1000 + 16 * i)
    # 9 lines through an 8-line LRU cache: every read evicts the line needed next -> 18 misses
    assert totals(big) == (18, 90, {"dcache": 0}, {"dcache": 18})


def test_sequential_prefetch_hides_the_next_line():
    m = system(prefetch=True)
    # straight-line code over lines 0..3: line 0 fills (5); lines 1-3 come from the prefetch (0 each)
    assert m.fetch_range(F, F + 0x40) == 5
    assert (m.flash_line_fills, m.prefetch_hits) == (4, 3)
    # branch back to line 0: the prefetch holds line 4 -> fill (5); line 1 prefetched again (0)
    assert m.fetch(F + 0x6) == 5 and m.fetch(F + 0x10) == 0
    assert totals(m) == (6, 10, {}, {}) and m.prefetch_hits == 4
    # data reads never use the instruction prefetch: line 3 then line 4 -> two fills
    assert m.read(F + 0x30) == 5 and m.read(F + 0x40) == 5


def test_loop_in_icache_with_prefetch():
    m = system(prefetch=True, icache={"lines": 64, "ways": 64})
    # a loop over 0x08..0x27 (lines 0, 1, 2) run 3 times. Pass 1: line 0 misses (fill, 5),
    # lines 1 and 2 miss the cache but come from the prefetch (fills, 0 each).
    # Passes 2 and 3: all three lines hit the cache (6 hits)
    for _ in range(3):
        m.fetch_range(F + 0x8, F + 0x28)
    assert totals(m) == (3, 5, {"icache": 6}, {"icache": 3})


def test_fetch_range_equals_word_fetches():
    spec = dict(prefetch=True, icache={"lines": 4, "ways": 2})
    a, b = system(**spec), system(**spec)
    blocks = [(F + 2, F + 0x36), (F + 0x100, F + 0x10A), (F + 0x36, F + 0x52), (F + 2, F + 0x20)]
    for s, e in blocks:
        a.fetch_range(s, e)
        for w in range(s & ~3, e, 4):
            b.fetch(max(w, s))
    assert a.counters() == b.counters()


def test_fetch_range_equals_word_fetches_across_the_flash_end_and_on_repeats():
    """fetch_range caches each block's flash lines: blocks that straddle the end of flash,
    lie wholly outside it, or repeat give the same counters as word-by-word fetches."""
    hi = FLASH[1]
    spec = dict(prefetch=True, icache={"lines": 4, "ways": 2}, flash=FLASH)
    a, b = system(**spec), system(**spec)
    blocks = [(hi - 0x1A, hi + 0x0E), (SRAM, SRAM + 0x20), (F + 0x40, F + 0x62), (hi - 0x1A, hi + 0x0E),
              (F + 0x40, F + 0x62), (F + 0x42, F + 0x62)] * 3
    for s, e in blocks:
        sa = a.fetch_range(s, e)
        sb = sum(b.fetch(max(w, s)) for w in range(s & ~3, e, 4))
        assert sa == sb
    assert a.counters() == b.counters() and a.counters()["flash_line_fills"] > 0


def test_zero_wait_sram_and_sram_only_boards():
    m = system(icache={"lines": 2, "ways": 2}, dcache={"lines": 2, "ways": 2})
    # SRAM is zero-wait: no fills, no cache lookups
    assert m.fetch(SRAM) == m.fetch(SRAM + 0x40) == m.read(SRAM + 8, 8) == 0
    assert totals(m) == (0, 0, {"icache": 0, "dcache": 0}, {"icache": 0, "dcache": 0})
    # an SRAM-only board (no [flash] table): the code region costs nothing either
    s = MemorySystem(parse({"name": "sram", "source": "AN386"}), FLASH)
    assert s.fetch_range(F, F + 0x100) == 0 and s.read(F, 4) == 0
    assert s.counters()["flash_line_fills"] == 0


def test_unified_cache_serves_both_sides():
    # RP2040-like XIP: 8-byte lines, 56-cycle miss, 2-way, shared by instructions and data
    x = 0x10000000
    m = system(ws=56, line=8, icache={"lines": 4, "ways": 2}, dcache={"unified": True},
               flash=(x, x + 0x200000))
    # fetch line 0 (miss 56); a data read of line 0 hits the shared cache (0);
    # a data read of line 1 misses (56); a fetch of line 1 then hits (0)
    assert [m.fetch(x), m.read(x + 4), m.read(x + 8), m.fetch(x + 8)] == [56, 0, 56, 0]
    assert totals(m) == (2, 112, {"cache": 2}, {"cache": 2})


def test_reset_and_warm_counters():
    m = system(icache={"lines": 2, "ways": 2})
    m.fetch(F)
    m.clear_counters()
    m.fetch(F + 0x10)
    assert m.fetch(F) == 0                      # warm: still cached
    assert totals(m) == (1, 5, {"icache": 1}, {"icache": 1})
    m.reset()
    assert m.fetch(F) == 5                      # cold again
    assert totals(m) == (1, 5, {"icache": 0}, {"icache": 1})


@pytest.mark.parametrize("raw, msg", [
    ({"name": "x"}, "memory_system: every parameter group needs a 'source'"),
    ({"name": "x", "source": "s", "flash": {"line_bytes": 16, "wait_states": 5}},
     "memory_system.flash: every parameter group needs a 'source'"),
    ({"name": "x", "source": "s", "flash": {"line_bytes": 12, "wait_states": 5, **SRC}},
     "line_bytes must be a power of two"),
    ({"name": "x", "source": "s", "flash": {"line_bytes": 16, "wait_states": -1, **SRC}},
     "'wait_states' must be a non-negative integer"),
    ({"name": "x", "source": "s", "flash": {"line_bytes": 16, "wait_states": 5, **SRC},
      "icache": {"lines": 64, "line_bytes": 32, "ways": 4, **SRC}}, "differs from the flash line"),
    ({"name": "x", "source": "s", "flash": {"line_bytes": 16, "wait_states": 5, **SRC},
      "icache": {"lines": 6, "line_bytes": 16, "ways": 4, **SRC}}, "6 lines do not divide into 4 ways"),
    ({"name": "x", "source": "s", "flash": {"line_bytes": 16, "wait_states": 5, **SRC},
      "dcache": {"lines": 8, "line_bytes": 16, "ways": 8, "replacement": "random", **SRC}},
     "replacement 'random' is not modelled"),
    ({"name": "x", "source": "s", "icache": {}}, "need a \\[flash\\] table"),
    ({"name": "x", "source": "s", "speed": 1}, "unknown key\\(s\\) speed"),
])
def test_bad_memory_system_tables(raw, msg):
    with pytest.raises(RnnskipError, match=msg):
        parse(raw)


# ----------------------------------------------------------------------------- emulated
@pytest.fixture(scope="module")
def memsys_elf(tmp_path_factory):
    from pathlib import Path

    from rnnskip.build import build_firmware
    from rnnskip.targets import load
    fix = Path(__file__).parent / "fixtures" / "sim" / "memsys.s"
    return build_firmware(load("cortex-m4"), [fix], tmp_path_factory.mktemp("memsys"), keep=["stream_sum"])


@needs_arm
@pytest.mark.parametrize("n", [1, 10, 20])
def test_emulated_stream_sum_on_stm32f407(memsys_elf, n):
    """stream_sum(n) (tests/fixtures/sim/memsys.s) on the stm32f407 board's memory system
    (5 WS, 16-byte lines, prefetch, 64-line I-cache, 8-line D-cache), cold at the call.

    Instruction side: block [0,14) line 0: I-cache miss, no prefetch -> fill, 5 cycles;
    the loop block [4,14) stays in line 0 (line buffer, 0); the exit block [14,18) reaches
    line 1: I-cache miss, but the prefetch issued after line 0 holds it -> fill, 0 cycles.
    Data side: the literal (code line 1) -> D-cache miss, fill, 5; wtable words 0..n-1
    span ceil(n/4) lines -> one fill (5) per line, the other words hit the line buffer.
    """
    from rnnskip import boards
    from rnnskip.simulator import UnicornEmulator
    from rnnskip.targets import load
    lines = -(-n // 4)
    target = boards.board_target(boards.load("stm32f407"))
    assert target.memory_system is not None and target.clock_hz == 168_000_000
    emu = UnicornEmulator(memsys_elf, target)
    emu.stream = []
    st = emu.call("stream_sum", (n,))
    assert st.return_value == n * (n + 1) // 2 and st.mode == "exact"
    assert st.memory == {"flash_line_fills": 2 + 1 + lines, "stall_cycles": 5 + 5 * (1 + lines),
                         "prefetch_hits": 1, "cache_hits": {"icache": 0, "dcache": 0},
                         "cache_misses": {"icache": 2, "dcache": 1 + lines}}
    # the same firmware on the core-only model: the stalls are the only difference
    bare = UnicornEmulator(memsys_elf, load("cortex-m4")).call("stream_sum", (n,))
    assert st.cycles - bare.cycles == st.memory["stall_cycles"]
    assert st.instructions == bare.instructions
    # the per-word model at 5 WS charges every fetch word and every flash read
    word = UnicornEmulator(memsys_elf, load("cortex-m4").with_wait_states(5)).call("stream_sum", (n,), mode="exact")
    assert word.cycles - bare.cycles == 5 * ((3 * n + 2) + (1 + n))
    # the totals are the model applied to the recorded stream, fed word by word
    replay = MemorySystem(target.memory_system, (target.flash_origin, target.flash_origin + target.flash_size))
    for kind, a, b in emu.stream:
        if kind == "i":
            for w in range(a & ~3, b, 4):
                replay.fetch(max(w, a))
        else:
            replay.read(a, b)
    assert replay.counters() == st.memory
    assert sum(1 for k, _, _ in emu.stream if k == "d") == 1 + n
    # a second call starts cold again: the same counts
    assert emu.call("stream_sum", (n,)).memory == st.memory


def test_board_memory_systems_and_the_bare_target():
    from rnnskip import boards, targets
    t = boards.board_target(boards.load("stm32f407"))
    ms = t.memory_system.describe()
    assert ms["clock_hz"] == 168_000_000 and "RM0090" in ms["source"]
    p = ms["parameters"]
    assert p["flash"]["wait_states"] == 5 and p["flash"]["line_bytes"] == 16 and p["prefetch"]["enabled"]
    assert (p["icache"]["lines"], p["dcache"]["lines"]) == (64, 8)
    assert all("RM0090" in g["source"] for g in (p["flash"], p["prefetch"], p["icache"], p["dcache"]))
    # --flash-wait-states keeps the per-word model; the bare target has no memory system
    assert boards.board_target(boards.load("stm32f407"), 5).memory_system is None
    assert t.with_wait_states(3).memory_system is None
    assert targets.load("cortex-m4").memory_system is None


#: per board: (flash line fills, stall cycles, cache hits, cache misses) of BOARD_SEQUENCE
BOARD_COUNTS = {
    # 16 B lines, 5 WS, prefetch, 64-line I-cache, 8-line D-cache. Pass 1 over 4 lines: line 0
    # misses (5), lines 1-3 arrive by prefetch (fills, 0). Data: 1 miss (5), then the line
    # buffer. Pass 2: 4 I-cache hits.
    "stm32f407": (5, 10, {"icache": 4, "dcache": 0}, {"icache": 4, "dcache": 1}),
    # 32 B lines, 7 WS, no prefetch: pass 1 two I-cache misses (14), data 1 miss (7), pass 2 two hits
    "stm32f746": (3, 21, {"icache": 2, "dcache": 0}, {"icache": 2, "dcache": 1}),
    # 8 B lines, 56-cycle miss, one unified cache: pass 1 eight misses (448), data 1 miss (56),
    # pass 2 eight hits
    "rp2040": (9, 504, {"cache": 8}, {"cache": 9}),
    # 16 B lines, 2 WS (assumed), I-cache only: pass 1 four misses (8), the data read has no
    # cache: a fill (2), then the line buffer; pass 2 four hits
    "nrf52840": (5, 10, {"icache": 4}, {"icache": 4}),
    # SRAM only: nothing
    "mps2-an386": (0, 0, {}, {}),
}


@pytest.mark.parametrize("name", sorted(BOARD_COUNTS))
def test_board_memory_system_hand_counts(name):
    """BOARD_SEQUENCE on each board's model: 64 bytes of straight-line code, two reads of
    one word of data 4 KiB further, the same 64 bytes of code again."""
    from rnnskip import boards
    t = boards.board_target(boards.load(name))
    spec = t.memory_system
    m = MemorySystem(spec, (t.flash_origin, t.flash_origin + t.flash_size))
    f = t.flash_origin
    m.fetch_range(f, f + 64)
    m.read(f + 0x1000, 4)
    m.read(f + 0x1000, 4)
    m.fetch_range(f, f + 64)
    assert totals(m) == BOARD_COUNTS[name]
    d = spec.describe()
    assert d["source"] and d["clock_hz"] == t.clock_hz
    for group in d["parameters"].values():
        assert group is None or group is True or group["source"]


def _emulate(small_lstm, target, tag):
    from rnnskip import pipeline
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.report import build_report
    ir, qm, ds, d = small_lstm
    fw = pipeline.build_target(d / "src", d / f"fw-{tag}", target, "dsp" if target.dsp else "plain")
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw,
                           emulator=Unicorn(target, traffic_sample=1, workers=1, progress=False))
    assert ev.device_mismatches == 0, ev.first_mismatch
    return ev, build_report(ir, qm, ev, target, "c", "dsp", fw)


@needs_arm
def test_report_memory_system_stm32f407_and_bare_target(small_lstm):
    """With --board the report names the board's memory system and its per-inference counters,
    and each sequence's cycles are the core-only cycles plus its stall cycles; the bare target's
    report names the core-only model and has no counters."""
    from rnnskip import boards, targets
    from rnnskip.emulators.base import STAT_FIELDS
    from rnnskip.report import table
    ev_b, rep_b = _emulate(small_lstm, targets.load("cortex-m4"), "bare")
    ev_m, rep_m = _emulate(small_lstm, boards.board_target(boards.load("stm32f407")), "f407")
    c = {f: i for i, f in enumerate(STAT_FIELDS)}
    sb, sm = ev_b.emu.stats, ev_m.emu.stats
    assert (sm[:, c["cycles"]] == sb[:, c["cycles"]] + sm[:, c["stall_cycles"]]).all()
    assert (sm[:, c["stall_cycles"]] > 0).all() and (sm[:, c["flash_line_fills"]] > 0).all()
    assert np.isnan(sb[:, c["stall_cycles"]]).all()
    e = rep_m["emulation"]
    assert e["memory_system"]["name"].startswith("STM32F405/407") and e["memory_system"]["parameters"]["icache"]
    mp = e["memory_per_inference"]
    assert set(mp["cache_hits"]) == set(mp["cache_misses"]) == {"icache", "dcache"}
    assert mp["stall_cycles"] == pytest.approx(sm[:, c["stall_cycles"]].mean())
    assert e["cycles_per_inference"] == pytest.approx(rep_b["emulation"]["cycles_per_inference"] + mp["stall_cycles"])
    assert e["latency_ms_per_inference"] == pytest.approx(e["cycles_per_inference"] / 168e3)
    b = rep_b["emulation"]
    assert b["memory_system"]["name"] == "core only: single-cycle memory, 0 flash wait states per word"
    assert b["memory_per_inference"] is None
    text = table(rep_m)
    assert "memory system" in text and "STM32F405/407" in text and "latency @ 168 MHz" in text
    assert "line fills / stalls" in text


@needs_arm
@pytest.mark.parametrize("name", ["stm32f746", "rp2040", "nrf52840", "mps2-an386"])
def test_every_board_memory_system_emulates(small_lstm, name):
    """The other boards' models run the same LSTM bit-exactly; SRAM-only MPS2 adds nothing."""
    from rnnskip import boards
    from rnnskip.emulators.base import STAT_FIELDS
    t = boards.board_target(boards.load(name))
    ev, rep = _emulate(small_lstm, t, name)
    mp = rep["emulation"]["memory_per_inference"]
    s = ev.emu.stats[:, STAT_FIELDS.index("stall_cycles")]
    if name == "mps2-an386":
        assert (s == 0).all() and mp["flash_line_fills"] == 0 and mp["cache_hits"] == {}
    else:
        assert (s > 0).all() and mp["flash_line_fills"] > 0
        assert sum(mp["cache_hits"].values()) > 0


@needs_arm
def test_method_comparison_reports_line_fills(tmp_path):
    """A delta model against its dense reference on the stm32f407 board: the comparison adds
    line fills and stall cycles per inference and their reductions. (On this tiny model the
    delta code's extra instruction lines outweigh the weight columns it skips: no direction
    is asserted.)"""
    from helpers import dataset, quantized

    from rnnskip import boards
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.generate import generate
    from rnnskip.pipeline import stages
    from rnnskip.report import comparison_rows
    ir, qm, x, L = quantized("feat-lstm-gru", seed=0, n=3, T=10)
    qm = with_delta(qm, DeltaSpec([3, 3], [2, 2], theta_m=[None, None]))
    ds = dataset(x, L)
    t = boards.board_target(boards.load("stm32f407"))
    emu = Unicorn(t, traffic_sample=1, workers=1, progress=False)
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    fw = stages.build_firmware(tmp_path / "src", tmp_path / "fw", emu, "dsp", qm, ds, 3, x.shape[1], ir.name)
    ev = stages.evaluate(ir, qm, ds, firmware=fw, emulator=emu)
    assert ev.device_mismatches == 0, ev.first_mismatch
    out = stages.compare_without(qm, "delta", ir, ds, ev, fw, emu, tmp_path, "portable", "dsp", t)
    assert out["memory_system"] == t.memory_system.name
    lf, st = out["flash_line_fills_per_inference"], out["stall_cycles_per_inference"]
    assert lf["delta"] > 0 and lf["dense"] > 0 and st["delta"] > 0 and st["dense"] > 0
    assert out["reduction"]["flash_line_fills"]["cut"] == pytest.approx(1 - lf["delta"] / lf["dense"])
    assert out["reduction"]["stall_cycles"]["cut"] == pytest.approx(1 - st["delta"] / st["dense"])
    rows = comparison_rows({"macs_per_inference": {"dense": 1, "delta": 1}, "emulated": out}, "delta")
    assert any(r[0] == "delta line fills" for r in rows)


@needs_arm
@pytest.mark.parametrize("weights", ["flash", "sram"])
def test_method_dense_reference_equals_a_dense_conversion(tmp_path, weights):
    """A step method's ``emulated.dense_reference`` (the dense firmware it emulated to measure its
    cut) is what a conversion of the dense model reports on the same board and sequences: the
    whole emulation summary (cycles, latency, energy, line fills, stalls, caches, the weights copy)
    and the footprint -- what the boards benchmark's dense rows are built from."""
    from helpers import dataset, quantized

    from benchmarks import boards_bench
    from rnnskip import boards
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.generate import generate
    from rnnskip.pipeline import stages
    from rnnskip.report import build_report
    ir, dense, x, L = quantized("feat-lstm-gru", seed=0, n=3, T=10)
    qm = with_delta(dense, DeltaSpec([3, 3], [2, 2], theta_m=[None, None]))
    ds = dataset(x, L)
    _, t = boards.resolve(None, "stm32f407", None, weights)
    emu = Unicorn(t, traffic_sample=1, workers=1, progress=False)
    reps = {}
    for name, q in (("dense", dense), ("delta", qm)):   # as rnnskip-convert builds, runs and reports each
        generate(q, tmp_path / name / "src", max_t=x.shape[1], kernels="portable")
        fw = stages.build_firmware(tmp_path / name / "src", tmp_path / name / "fw", emu, "dsp", q, ds, None,
                                   x.shape[1], ir.name)
        ev = stages.evaluate(ir, q, ds, firmware=fw, emulator=emu)
        assert ev.device_mismatches == 0, ev.first_mismatch
        reps[name] = build_report(ir, q, ev, t, "portable", "dsp", firmware=fw)
        if name == "delta":
            reps[name]["delta"] = stages.compare_without(q, "delta", ir, ds, ev, fw, emu, tmp_path / name,
                                                         "portable", "dsp", t)
    ref, e = dict(reps["delta"]["delta"]["dense_reference"]), reps["dense"]["emulation"]
    assert ref.pop("device_mismatches") == 0 and ref.pop("emulate_s") >= 0
    assert ref.pop("footprint") == reps["dense"]["footprint"]
    assert ref == e
    assert e["memory_per_inference"]["flash_line_fills"] > 0 and e["energy_uj_per_inference"] > 0
    assert (e["weights"]["copy_cycles"] > 0) == (weights == "sram")
    assert reps["delta"]["delta"]["cycles_per_inference"]["dense"] == e["cycles_per_inference"]
    row = boards_bench._dense_figures(reps["delta"]["delta"]["dense_reference"])   # the bench reads these keys
    assert row["cycles"] == e["cycles_per_inference"] and row["weights_bytes"] == e["weights"]["bytes"]
    assert row["line_fills"] == e["memory_per_inference"]["flash_line_fills"]
    assert row["flash_bytes"] == reps["dense"]["footprint"]["flash_bytes"]


class _Refuses(list):
    """A recording stream whose n-th record raises: an error inside a hook."""

    def __init__(self, kind, after):
        super().__init__()
        self.kind, self.after = kind, after

    def append(self, rec):
        if rec[0] == self.kind and sum(1 for r in self if r[0] == self.kind) >= self.after:
            raise ValueError(f"hook error on a {self.kind!r} record")
        super().append(rec)


@needs_arm
@pytest.mark.parametrize("kind", ["i", "d"])
def test_an_error_in_a_hook_stops_the_run_and_reaches_the_caller(memsys_elf, kind):
    """The hooks are raw ctypes callbacks: an exception in the block hook ("i") or the memory
    hook ("d") must not cross into C; the run stops there and call() raises it."""
    from rnnskip import boards
    from rnnskip.simulator import UnicornEmulator
    emu = UnicornEmulator(memsys_elf, boards.board_target(boards.load("stm32f407")))
    emu.stream = _Refuses(kind, after=2)
    with pytest.raises(ValueError, match=f"hook error on a '{kind}' record"):
        emu.call("stream_sum", (20,))
    assert sum(1 for r in emu.stream if r[0] == kind) == 2
    # the emulator is usable again afterwards
    emu.stream = None
    assert emu.call("stream_sum", (20,)).return_value == 210
