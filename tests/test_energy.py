"""The energy estimate: a board's [power] figures (datasheet run current and supply voltage)
times the modelled latency, in report.json and the table; none for an FPGA board or a bare
core; a bad [power] table is one line."""
from __future__ import annotations

import dataclasses

import pytest
from helpers import needs_arm

from rnnskip.errors import RnnskipError


def _report(small_lstm, board):
    from rnnskip import boards, pipeline
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.report import build_report
    ir, qm, ds, d = small_lstm
    _, t = boards.resolve(None, board)
    fw = pipeline.build_target(d / "src", d / f"fw-{board}", t, "dsp")
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=1, workers=1, progress=False))
    assert ev.device_mismatches == 0, ev.first_mismatch
    return build_report(ir, qm, ev, t, "portable", "dsp", fw)


@needs_arm
def test_energy_on_stm32f407_is_current_times_voltage_times_latency(small_lstm):
    """stm32f407: 40 mA x 3.3 V (DS8626, from the board file) x cycles / 168 MHz."""
    from rnnskip.report import table
    rep = _report(small_lstm, "stm32f407")
    e = rep["emulation"]
    cycles = e["cycles_per_inference"]
    assert e["latency_ms_per_inference"] == cycles / 168e6 * 1e3
    assert e["energy_uj_per_inference"] == pytest.approx(40.0 * 3.3 * cycles / 168e3, rel=1e-12)
    en = e["energy"]
    assert (en["run_current_ma"], en["supply_v"], en["clock_hz"]) == (40.0, 3.3, 168_000_000)
    assert en["source"].startswith("ST DS8626") and "ASSUMED" not in en["source"]
    assert en["note"].startswith("estimate from datasheet figures: ")
    assert (f"energy / inference    {e['energy_uj_per_inference']:,.3f} uJ  (estimate from datasheet figures: "
            f"40 mA x 3.3 V)") in table(rep)


@needs_arm
def test_no_energy_on_the_fpga_board_or_a_bare_core(small_lstm):
    from rnnskip import targets
    from rnnskip.power import energy_report
    from rnnskip.report import table
    rep = _report(small_lstm, "mps2-an386")
    e = rep["emulation"]
    assert e["energy_uj_per_inference"] is None
    assert e["energy"] == {"uj_per_inference": None, "note": (
        "no energy estimate: MPS2+ is an FPGA prototyping board (AN386 is a Cortex-M4 image on it): no "
        "microcontroller run-mode current to estimate energy from")}
    assert "energy / inference    -  (MPS2+ is an FPGA prototyping board" in table(rep)
    assert energy_report(targets.load("cortex-m4"), 1.0)["uj_per_inference"] is None


def test_assumed_figures_say_so():
    from rnnskip import boards
    from rnnskip.power import energy_report
    for name in ("stm32f746", "rp2040"):
        en = energy_report(boards.resolve(None, name)[1], 2.0)
        assert en["source"].startswith("ASSUMED") and en["note"].endswith("the current figure is ASSUMED (see source)")
    en = energy_report(boards.resolve(None, "nrf52840")[1], 2.0)
    assert en["uj_per_inference"] == pytest.approx(3.3 * 3.0 * 2.0)


@pytest.mark.parametrize("power, msg", [
    ({"run_current_ma": "forty", "supply_v": 3.3, "clock_hz": 168000000, "source": "DS"},
     "board stm32f407: [power]: run_current_ma must be a positive number (mA), got 'forty'"),
    ({"run_current_ma": 40, "supply_v": 0, "clock_hz": 168000000, "source": "DS"},
     "board stm32f407: [power]: supply_v must be a positive number (V), got 0"),
    ({"run_current_ma": 40, "supply_v": 3.3, "clock_hz": 168000000},
     "board stm32f407: [power]: source must name the datasheet and table the figures come from"),
    ({"run_current_ma": 40, "supply_v": 3.3, "clock_hz": 168000000, "source": "DS", "volts": 3},
     "board stm32f407: [power]: unknown key volts (expected run_current_ma, supply_v, clock_hz, source)"),
    ({"none": ""}, "board stm32f407: [power]: none must be the only key, a sentence saying why there is no figure"),
    (40, "board stm32f407: [power] must be a table (run_current_ma, supply_v, clock_hz, source; or none)"),
])
def test_bad_power_table_is_one_line(power, msg):
    from rnnskip import boards
    b = boards.load("stm32f407")
    bad = dataclasses.replace(b, raw=dict(b.raw, power=power))
    with pytest.raises(RnnskipError) as e:
        boards.board_target(bad)
    assert str(e.value) == msg


@needs_arm
def test_energy_on_a_board_with_assumed_memory_figures_says_so(small_lstm):
    """nrf52840: the flash wait states and the cache are ASSUMED in the board file, and the latency and energy are
    the cycles' too: the latency line says so; the core table's per-word wait states, which the memory system
    replaces, are null (a user read 0 next to the memory system's 2)."""
    from rnnskip.report import table
    rep = _report(small_lstm, "nrf52840")
    e = rep["emulation"]
    assert e["cycle_model"]["flash_wait_states"] is None and e["memory_system"]["parameters"]["flash"]["wait_states"]
    line = [ln.strip() for ln in table(rep).splitlines() if ln.strip().startswith("latency @ 64 MHz")]
    assert len(line) == 1 and line[0].endswith(
        " ms  (ASSUMED memory figures: flash, icache; see emulation.memory_system)"), line
