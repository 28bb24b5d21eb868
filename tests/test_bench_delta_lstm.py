"""The delta-lstm benchmark section's bookkeeping: registered in run_all, the FSDD model's cell
option (the GRU's cache key unchanged), and its markdown from a saved-result-shaped fixture."""
import pytest

from benchmarks import delta_bench, delta_lstm_bench, fsdd, run_all
from benchmarks.common import config_hash


def test_registered_after_the_delta_section():
    names = [n for n, _ in run_all.SECTIONS]
    assert names.index("delta-lstm") == names.index("delta") + 1
    assert dict(run_all.SECTIONS)["delta-lstm"] is delta_lstm_bench


def test_fsdd_cell_option_keeps_the_gru_cache_key():
    """The GRU's config has no 'cell' key, so its cached model stays valid; the LSTM's differs."""
    gru = dict(fsdd.DEFAULT_CONFIG)
    assert "cell" not in gru
    assert config_hash({"cfg": gru}) != config_hash({"cfg": dict(gru, **delta_lstm_bench.CONFIG)})


def test_build_model_cell():
    keras = pytest.importorskip("tf_keras")
    m = fsdd.build_model(8, keras, "lstm")
    assert type(m.layers[1]).__name__ == "LSTM" and m.layers[1].units == 8
    assert type(fsdd.build_model(8, keras).layers[1]).__name__ == "GRU"


def _row(acc, macs, cyc, th=(12, 32), cell=None):
    t = [{"layer": "lstm", "input": th[0], "hidden": th[1], "cell": cell}]
    return {"accuracy": {"float": 0.98, "dense_int8": 0.97, "delta_int8": acc}, "n": 300, "thresholds": t,
            "density": {"input": 0.2, "hidden": 0.1, "cells": 1.0},
            "macs_per_inference": {"dense": 1000, "effective": macs},
            "mac_reduction_x": 1000 / macs, "cycles_per_inference": {"dense": 4000, "delta": cyc},
            "cycle_reduction_x": 4000 / cyc, "mac_reduction_x_emulated": 1000 / macs,
            "cycle_vs_mac_reduction": (4000 / cyc) / (1000 / macs),
            "flash_read_bytes_per_inference": {"dense": 900, "delta": 300}, "flash_read_reduction_x": 3.0,
            "sequences_emulated": 100, "bitexact_mismatches": 0, "bitexact_checked": 300,
            "firmware_flash_bytes": {"dense": 10, "delta": 10}, "cycles_per_step_by_part": None}


def _fsdd(**more):
    """A saved-result-shaped FSDD LSTM ladder (run-time and delta-trained rows)."""
    return {"meta": {"n_test": 300, "n_train": 2400, "n_val": 300, "features": "40 log-mel",
                     "config": {"units": 128, "cell": "lstm"}},
            "runtime": _row(0.97, 200, 1600), "trained": dict(_row(0.98, 125, 1000, (16, 40)), float_trained=0.975),
            "train_seeds": [], "train_selected_seed": 0, **more}


def test_markdown_and_summary():
    f = _fsdd(trained_cell=_row(0.96, 100, 800, (32, 32), 2048))
    md = delta_lstm_bench.markdown({"fsdd_lstm": f})
    assert "Masking -> LSTM(128) -> Dense(10)" in md and "### FSDD LSTM(128), official split" in md
    assert "| run-time delta | x12/h32 | 97.00 | +1.00 |" in md
    assert f"x{delta_bench.TRAIN_THETA[0]}/h{delta_bench.TRAIN_THETA[1]}" in md
    s = delta_lstm_bench.summary({"fsdd_lstm": f})[0]
    assert "run-time delta 5.00x fewer MACs, 2.50x fewer cycles, loss +1.00 pt against the dense float" in s
    assert "delta-trained + cell threshold 10.00x fewer MACs, 5.00x fewer cycles, loss +2.00 pt" in s


def test_cell_row_says_where_its_thresholds_come_from():
    """The cell row's thresholds are chosen against the original dense float model; when none is
    within the budget there the row deploys the training thresholds, and says so."""
    why = ("no thresholds keep accuracy within 1.0 points of the float model (0.9900): the best is 0.9667 "
           "(thresholds x=[8] h=[32]; the dense int8 model scores 0.9067)")
    tc = dict(_row(0.96, 100, 800, (16, 40), 2048), thresholds_from={"source": "training", "reason": why})
    md = delta_lstm_bench.markdown({"fsdd_lstm": _fsdd(trained_cell=tc)})
    assert (f"with the cell threshold m{delta_bench.TRAIN_CELL} in the loop; on validation no thresholds keep "
            "accuracy within 1.0 points of the original dense float model (0.9900): the best is 0.9667 (thresholds "
            "x=[8] h=[32]; the fine-tuned model's own dense int8 model scores 0.9067), so the row deploys the "
            "thresholds it was trained at.") in md
    tc["thresholds_from"] = {"source": "validation"}
    md = delta_lstm_bench.markdown({"fsdd_lstm": _fsdd(trained_cell=tc)})
    assert "chosen on validation within the budget of the original dense float model." in md
    none = "no thresholds keep accuracy within 1.0 points of the float model (0.9900): the best is 0.9800"
    md = delta_lstm_bench.markdown({"fsdd_lstm": _fsdd(trained_tuned_none=none)})
    assert ("Re-tuning the delta-trained model's thresholds on validation (budget 1.0 pt): no thresholds keep "
            "accuracy within 1.0 points of the original dense float model (0.9900): the best is 0.9800.") in md
    old = delta_lstm_bench.markdown({"fsdd_lstm": _fsdd(trained_cell=_row(0.96, 100, 800))})   # earlier results
    assert "Delta-trained + cell threshold:" not in old and "| delta-trained + cell threshold |" in old


def test_sst2_rows_render_with_their_own_split_and_units():
    f = _fsdd()
    s2 = {"meta": {"n_test": 872, "n_train": 63_957, "n_val": 1500, "features": "word ids",
                   "config": {"units": 64, "cell": "lstm"}, "arch": "Embedding(mask_zero) -> LSTM(64) -> Dense(1)",
                   "unit": "sentence", "tuned_note": "", "split_text": "dev set as test: 872 sentences"},
          "runtime": _row(0.81, 300, 2000), "trained": dict(_row(0.80, 200, 1500, (12, 12)), float_trained=0.8),
          "train_theta": [12, 12], "train_seeds": [], "train_selected_seed": 0,
          "trained_tuned": {"thresholds": [[16], [16]], "delta_int8": 0.79, "mac_reduction_x": 6.0}}
    md = delta_lstm_bench.markdown({"fsdd_lstm": f, "sst2": s2})
    sst = md[md.index("### SST-2 LSTM(64)"):]
    assert sst.startswith("### SST-2 LSTM(64) (dev set as test: 872 sentences)")
    assert "Embedding(mask_zero) -> LSTM(64) -> Dense(1)" in sst and "at thresholds x12/h12" in sst
    assert "test sentences per row" in sst and "300-recording" not in sst
    assert "(the table row uses the training thresholds, fixed before looking at test)" in sst
    assert len(delta_lstm_bench.summary({"fsdd_lstm": f, "sst2": s2})) == 4
    md = delta_lstm_bench.markdown({"fsdd_lstm": f, "sst2": {"error": "no SST-2 data folder"}})
    assert "SST-2: not measured (no SST-2 data folder)." in md


def test_a_result_without_sst2_says_so():
    f = _fsdd()
    md = delta_lstm_bench.markdown({"fsdd_lstm": f})
    assert md.rstrip().endswith("SST-2 LSTM: not in this run (its results predate the SST-2 rows of this section).")
