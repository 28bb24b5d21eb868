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


def _ref(cycles, line_fills=10.0):
    """A method section's ``emulated.dense_reference`` (the keys the dense row reads)."""
    return {"cycles_per_inference": cycles, "latency_ms_per_inference": cycles / 168e3,
            "energy_uj_per_inference": 1.0, "energy": {"note": "estimate", "source": "ST DS8626"},
            "memory_per_inference": {"flash_line_fills": line_fills, "stall_cycles": 50.0,
                                     "cache_hits": {}, "cache_misses": {}},
            "weights": {"placement": "flash", "bytes": 200, "copy_cycles": 0}, "sequences": 4,
            "footprint": {"flash_bytes": 5000, "ram_bytes": 900}, "device_mismatches": 0, "emulate_s": 1.5}


def test_dense_row_is_the_first_method_conversions_dense_reference():
    row = boards_bench._dense_row("stm32f407", "flash", {"skip": _ref(1000.0), "delta": _ref(1010.0)})
    assert row == {"board": "stm32f407", "weights": "flash", "core": "cortex-m4", "clock_hz": 168_000_000,
                   "memory_system": boards.resolve(None, "stm32f407")[1].memory_system.name, "method": "dense",
                   "cycles": 1000.0, "latency_ms": 1000.0 / 168e3, "energy_uj": 1.0, "energy_note": "estimate",
                   "energy_source": "ST DS8626", "line_fills": 10.0, "stall_cycles": 50.0, "copy_cycles": 0,
                   "weights_bytes": 200, "flash_bytes": 5000, "ram_bytes": 900, "sequences": 4, "mismatches": 0,
                   "reference_of": "skip", "emulate_s": 1.5}
    assert boards_bench._refs_agree({"skip": _ref(1000.0), "delta": dict(_ref(1000.0), emulate_s=9.0)}) is True
    assert boards_bench._refs_agree({"skip": _ref(1000.0), "delta": _ref(1000.0, line_fills=11.0)}) is False
    assert boards_bench._refs_agree({"skip": _ref(1000.0)}) is None


def test_checks_say_where_dense_rows_come_from_and_whether_the_references_agree():
    rows = [dict(_row("dense", 1000.0), reference_of="skip"), _row("skip", 800.0, 0.2, 0.4, 1000.0),
            _row("delta", 900.0, 0.1, 0.5, 1000.0)]
    res = _res(rows)
    m = res["models"]["m"]
    m["dense_references_agree"] = True
    md = boards_bench.markdown(res)
    assert "Dense rows: 1 of 1 are the dense reference that board's first method conversion" in md
    assert "within 0.00% of the dense rows' cycles and agree with each other in every dense-row figure;" in md
    m["dense_references_agree"] = False
    assert "but DISAGREE with each other" in boards_bench.markdown(res)


def test_board_rows_measure_dense_only_when_every_method_conversion_is_refused():
    """--weights sram where nothing fits: the methods' refusals, and the dense row from measure()
    (its own one-line refusal); where one method ran, the dense row is its reference."""
    calls = []

    def measure():
        calls.append("dense")
        return {"board": "stm32f407", "weights": "sram", "method": "dense", "refused": "--weights sram: no room"}

    def refused(key, options):
        return {"board": "stm32f407", "weights": "sram", "method": key, "refused": "--weights sram: no room"}, None

    rows, agree = boards_bench._board_rows("stm32f407", "sram", {"skip": {}, "delta": "d.json"}, refused, measure)
    assert [r["method"] for r in rows] == ["dense", "skip", "delta"] and all("refused" in r for r in rows)
    assert calls == ["dense"] and agree is None

    def skip_only(key, options):
        return (_row(key, 800.0, 0.2, 0.4, 1000.0), _ref(1000.0)) if key == "skip" else refused(key, options)

    rows, agree = boards_bench._board_rows("stm32f407", "flash", {"skip": {}, "delta": "d.json"}, skip_only, measure)
    assert calls == ["dense"] and agree is None
    assert [r["method"] for r in rows] == ["dense", "skip", "delta"] and rows[0]["reference_of"] == "skip"
