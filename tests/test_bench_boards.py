"""The boards benchmark's text: energy figures from the board files, method rows, checks."""
from benchmarks import boards_bench
from rnnskip import boards


def _row(method, cycles, latency_cut=None, mac_cut=None, dense_cycles=None):
    r = {"board": "stm32f407", "weights": "flash", "method": method, "core": "cortex-m4", "clock_hz": 168e6,
         "cycles": cycles, "latency_ms": cycles / 168e3, "energy_uj": 1.0, "energy_note": "estimate",
         "energy_source": "ST DS8626", "line_fills": 10.0, "stall_cycles": 50.0, "copy_cycles": 0,
         "sequences": 4, "mismatches": 0}
    if method != "dense":
        r.update(latency_cut=latency_cut, mac_cut=mac_cut, latency_vs_mac_cut=latency_cut / mac_cut,
                 dense_cycles=dense_cycles, dense_matches_golden=True)
    return r


def _res(rows):
    return {"models": {"m": {"model": "M", "macs_per_step": 100, "weights_bytes": 200, "sequences": 4,
                             "max_t": 10, "steps_mean": 5.0, "rows": rows, "methods": {"skip": "a predictor"}}},
            "power": {b: boards_bench._power(b) for b in ("stm32f407", "mps2-an386")}}


def test_energy_sentence_comes_from_the_board_files():
    md = boards_bench.markdown(_res([_row("dense", 1000.0)]))
    pw = boards.resolve(None, "stm32f407")[1].power
    assert f"stm32f407: {pw.run_current_ma:g} mA at {pw.clock_hz / 1e6:g} MHz, {pw.supply_v:g} V ({pw.source})" in md
    why = boards.resolve(None, "mps2-an386")[1].power
    assert isinstance(why, str) and f"mps2-an386: no estimate ({why})" in md


def test_method_rows_show_mac_and_latency_cut_and_slower_methods_are_named():
    rows = [_row("dense", 1000.0), _row("skip", 800.0, 0.2, 0.4, 1000.0), _row("delta", 1100.0, -0.1, 0.5, 1000.0)]
    md = boards_bench.markdown(_res(rows))
    assert "| skip | 800 |" in md and "| 40.0% | 20.0% | 0.50 |" in md
    assert "Slower than dense (negative latency cut): delta on stm32f407 (flash, -10.0%)." in md
    assert "within 0.00% of the dense rows' cycles" in md
    s = boards_bench.summary(_res(rows))
    assert "  - skip: latency cut (MAC cut) per board: stm32f407 20.0% (40.0%)." in s


def test_a_dense_reference_that_differs_from_the_dense_row_is_reported():
    md = boards_bench.markdown(_res([_row("dense", 1000.0), _row("skip", 800.0, 0.2, 0.4, 1010.0)]))
    assert "within 1.00% of the dense rows' cycles" in md
