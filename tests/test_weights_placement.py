"""--weights sram|tcm: the weights copied from flash to RAM by the start-up code, the copy's
cost reported once, the flash data reads of the weights gone from every inference, and a
one-line refusal (both sizes) where they do not fit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import needs_arm, quantized

from rnnskip.errors import RnnskipError


def _data_reads(emu, qm, ds):
    """Run sequence 0 recording the memory system's input; its flash data reads [(addr, n)] and stats."""
    from rnnskip.emulators.unicorn import _run_one
    from rnnskip.pipeline.stages import device_sequences
    s = device_sequences(qm, ds, 1)
    emu.stream = []
    st = _run_one(emu, 0, s.x[0], int(s.lengths[0]), None if s.valid is None else s.valid[0], s.macs_per_step,
                  "exact")
    reads = [(a, n) for kind, a, n in emu.stream if kind == "d"]
    emu.stream = None
    return reads, st


def _weight_ranges(emu, src):
    from rnnskip.build import _DECL
    names = [n for _, n, _ in _DECL.findall((src / "rnnskip_weights.h").read_text())]
    return [(emu.symbol(n)[0], emu.symbol(n)[0] + emu.symbol(n)[1]) for n in names]


def _data_side(target, reads):
    """(line fills, stall cycles) of the data side alone (the stm32f407's sides are independent)."""
    from rnnskip.simulator.memory import MemorySystem
    m = MemorySystem(target.memory_system, (target.flash_origin, target.flash_origin + target.flash_size))
    for a, n in reads:
        m.read(a, n)
    return m.flash_line_fills, m.stall_cycles


@needs_arm
def test_sram_weights_leave_flash_on_stm32f407(small_lstm):
    """Exact counts on one sequence: with --weights flash the inference reads the weight arrays in
    flash W times; with sram it reads none of their flash load image, every other flash data read
    stays (count W fewer), the same instructions run, and the data side's line fills, the stall
    cycles and the cycles drop. The copy ran for real: the RAM copy equals the flash image."""
    from rnnskip import boards, pipeline
    from rnnskip.simulator import UnicornEmulator
    ir, qm, ds, d = small_lstm
    _, tf = boards.resolve(None, "stm32f407", None, "flash")
    _, ts = boards.resolve(None, "stm32f407", None, "sram")
    assert tf.memory_system is not None and ts.weights == "sram"
    fw_f = pipeline.build_target(d / "src", d / "fw-flash", tf, "dsp")
    fw_s = pipeline.build_target(d / "src", d / "fw-sram", ts, "dsp")
    ef, es = UnicornEmulator(fw_f.elf, tf), UnicornEmulator(fw_s.elf, ts)
    assert ef.weights_copy is None
    lo, hi = es.symbol("_sweights")[0], es.symbol("_eweights")[0]
    li = es.symbol("_siweights")[0]
    assert tf.ram_origin <= lo < hi <= tf.ram_origin + tf.ram_size and hi - lo == es.weights_bytes
    assert es.read(lo, hi - lo) == es.read(li, hi - lo)          # what rnnskip_copy_weights copied
    words = (hi - lo) // 4
    assert es.weights_copy.instructions >= 3 * words and es.weights_copy.memory["flash_line_fills"] > 0

    rf, sf = _data_reads(ef, qm, ds)
    rs, ss = _data_reads(es, qm, ds)
    wr = _weight_ranges(ef, d / "src")
    n_w = sum(1 for a, _ in rf if any(lo_ <= a < hi_ for lo_, hi_ in wr))
    assert n_w > 0
    assert not [a for a, _ in rs if li <= a < li + (hi - lo)]      # no read of the weights' flash image
    assert len(rs) == len(rf) - n_w
    assert ss.instructions == sf.instructions
    fills_f, stall_f = _data_side(tf, rf)
    fills_s, stall_s = _data_side(ts, rs)
    assert fills_s < fills_f and stall_s < stall_f
    assert ss.stall_cycles < sf.stall_cycles and ss.cycles < sf.cycles


@needs_arm
def test_sram_weights_bitexact_and_report(small_lstm):
    """Golden = emulated firmware with the weights in SRAM; report.json says where they are and what
    the copy cost, once; cycles per inference fall against flash on the same board."""
    from rnnskip import boards, pipeline
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.report import build_report, table
    ir, qm, ds, d = small_lstm
    reps = {}
    for w in ("flash", "sram"):
        _, t = boards.resolve(None, "stm32f407", None, w)
        fw = pipeline.build_target(d / "src", d / f"fw-rep-{w}", t, "dsp")
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=3, workers=1,
                                                                          progress=False))
        assert ev.device_checked == 3 and ev.device_mismatches == 0, ev.first_mismatch
        reps[w] = build_report(ir, qm, ev, t, "portable", "dsp", fw)
    ef, es = reps["flash"]["emulation"], reps["sram"]["emulation"]
    assert ef["weights"] == {"placement": "flash", "bytes": qm.flash_weight_bytes(), "copy_cycles": 0,
                             "note": "const in flash, read in place by every inference"}
    w = es["weights"]
    assert w["placement"] == "sram" and w["bytes"] == qm.flash_weight_bytes() and w["copy_cycles"] > 0
    assert w["copy_ms"] == pytest.approx(w["copy_cycles"] / 168e3)
    assert "not in cycles_per_inference" in w["note"]
    assert es["cycles_per_inference"] < ef["cycles_per_inference"]
    assert es["memory_per_inference"]["flash_line_fills"] < ef["memory_per_inference"]["flash_line_fills"]
    assert es["flash_read_bytes_per_inference"] < ef["flash_read_bytes_per_inference"]
    assert reps["sram"]["bitexact"]["mismatches"] == 0
    assert f"sram: {w['bytes']:,} B copied once at start-up in {w['copy_cycles']:,} cycles" in table(reps["sram"])


@needs_arm
def test_tcm_weights_on_stm32f746(small_lstm):
    """The stm32f746 (DTCM 64 KiB at 0x20000000): tcm puts the weights there and the model's
    state after it; sram keeps them out of the DTCM. Both bit-exact."""
    from rnnskip import boards, pipeline
    from rnnskip.emulators.unicorn import Unicorn
    ir, qm, ds, d = small_lstm
    addr = {}
    for w in ("tcm", "sram"):
        _, t = boards.resolve(None, "stm32f746", None, w)
        assert t.dtcm == (0x20000000, 65536)
        fw = pipeline.build_target(d / "src", d / f"fw-746-{w}", t, "dsp")
        emu = Unicorn(t, traffic_sample=1, workers=1, progress=False)
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=emu)
        assert ev.device_mismatches == 0, ev.first_mismatch
        addr[w] = ev.emu.weights_copy["address"]
    assert addr["tcm"] == 0x20000000 and addr["sram"] >= 0x20010000


def test_tcm_refused_without_a_data_tcm():
    from rnnskip import boards
    with pytest.raises(RnnskipError) as e:
        boards.resolve(None, "stm32f407", None, "tcm")
    assert str(e.value) == ("--weights tcm: board stm32f407 has no data TCM rnnskip knows of (the stm32f746 "
                            "board has one); use --weights sram")
    with pytest.raises(RnnskipError, match="^--weights tcm: target cortex-m4 has no data TCM"):
        boards.resolve("cortex-m4", None, None, "tcm")


def _embedding_work(tmp_path, vocab: int):
    """A work folder with the C of a token LSTM whose 16-wide embedding of ``vocab`` rows is most of its weights,
    and the bytes of those weights."""
    from rnnskip.build import weights_bytes
    from rnnskip.pipeline import workdir
    from rnnskip.pipeline.commands import generate_command
    ir, qm, x, L = quantized("tok-lstm-softmax", seed=0, n=4, T=6, vocab=vocab, dim=16, units=(8,))
    work = tmp_path / "work"
    work.mkdir()
    workdir.save_ir(work, ir)
    workdir.save_model(work, qm)
    generate_command(work, 6)
    return work, weights_bytes(work / "src")


def _build(work, board: str, weights: str):
    """'rnnskip build WORK --board BOARD --weights WEIGHTS' in its own process."""
    exe = Path(sys.executable).parent / "rnnskip"
    return subprocess.run([str(exe), "build", str(work), "--board", board, "--weights", weights],
                          capture_output=True, text=True)


@needs_arm
def test_weights_too_big_for_ram_refused_in_one_line(tmp_path):
    """A 32 KiB embedding fits the stm32l073's 192 KiB flash but not its 20 KiB RAM: 'rnnskip build
    --weights sram' refuses in one line naming both sizes, and writes no WORK/firmware."""
    from rnnskip import boards
    from rnnskip.build import build_target, section_sizes
    work, need = _embedding_work(tmp_path, 2000)
    _, t = boards.resolve(None, "stm32l073", None, "flash")
    s = section_sizes(build_target(work / "src", tmp_path / "fw-flash", t, "plain").elf)
    room = t.ram_size - t.stack_size - s[".data"] - s.get(".bss", 0)
    assert 20480 > room > 0 and need > 32000
    p = _build(work, "stm32l073", "sram")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: --weights sram: the weights need {need:,} bytes but RAM on stm32l073 has {room:,} bytes left "
        f"after the model's state and stack; use --weights flash or a board with more RAM"]
    assert not (work / "firmware").exists() and not list(work.glob(".firmware.partial-*"))
    assert not json.loads((work / "stages.json").read_text()).get("build")


@needs_arm
def test_weights_too_big_for_the_data_tcm_refused_in_one_line(tmp_path):
    """An 80 KB embedding and the STM32F746's 64 KiB DTCM: the refusal gives the TCM's whole size, which holds the
    weights alone (it said 'left after the model's state and stack', which live in the RAM after it)."""
    work, need = _embedding_work(tmp_path, 5000)
    assert need > 65536
    p = _build(work, "stm32f746", "tcm")
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: --weights tcm: the weights need {need:,} bytes but the data TCM on stm32f746 has 65,536 bytes (the "
        f"model's state and stack are in the RAM after it); use --weights flash or --weights sram"]
    assert not (work / "firmware").exists()
