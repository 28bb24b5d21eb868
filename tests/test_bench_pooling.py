"""The pooling benchmark section's bookkeeping: registered in run_all, and its markdown and README summary render
from a results dict of the shape run() returns (no training, no emulation)."""
from benchmarks import pooling_bench, run_all


def _row(acc, cycles, pool, **extra):
    return {"accuracy_float": 0.95, "accuracy_int8": acc, "n": 300, "n_emulated": 24, "cycles_per_inference": cycles,
            "macs_per_inference": 1000.0, "flash_bytes": 20000, "ram_bytes": 3000, "wall_s": 5.0,
            "pool_over_time": pool, "bitexact": {"checked": 300, "mismatches": 0, "host_checked": 300,
                                                 "device_checked": 24}, **extra}


def _model(name, pool, skip=True):
    r = {"name": name, "title": f"model {name}", "layers": "Masking -> GRU(64) -> Dense(10)", "seconds": 60.0,
         "meta": {"params": 1234, "epochs_run": 30, "epoch_kept": 25, "keras_test_accuracy": 0.95},
         "golden": {"n": 300, "float": 0.95, "int8": 0.9467, "disagree": 2},
         "model": {"macs_per_step": 12288, "head_macs": 640, "params": 1234},
         "dense": _row(0.9467, 2_000_000.0, pool),
         "delta": _row(0.94, 900_000.0, pool, setting="x2/h8", macs_effective=300.0, mac_reduction_x=4.0,
                       cycle_reduction_x=2.22)}
    if skip:
        r["skip"] = _row(0.943, 1_500_000.0, pool, setting="40.0% skipped", macs_effective=700.0, mac_reduction_x=1.5,
                         cycle_reduction_x=1.33)
    return r


RES = {"quick": False, "target": "cortex-m4", "max_loss": 1.0, "plot": "/x/pooling_cycles.png",
       "models": {"gru_last": _model("gru_last", None),
                  "gru_avg": _model("gru_avg", {"kind": "avg", "layer": "global_average_pooling1d"}),
                  "bigru_max": _model("bigru_max", {"kind": "max", "layer": "global_max_pooling1d"}, skip=False)}}


def test_registered():
    assert ("pooling", pooling_bench) in run_all.SECTIONS


def test_markdown_and_summary_render():
    md = pooling_bench.markdown(RES)
    assert md.startswith("## Pooling over time: FSDD on cortex-m4")
    assert "| model gru_avg | delta | 95.00 | 94.00 | -1.00 | x2/h8 | 300 | 900,000 | 2.22x fewer |" in md
    assert "| model bigru_max | skip |" not in md and "| model bigru_max | dense |" in md
    assert "`bench_out/pooling/pooling_cycles.png`" in md
    lines = pooling_bench.summary(RES)
    assert len(lines) == 2 and lines[0].startswith("- FSDD model gru_avg (pooling over time) on cortex-m4: float "
                                                   "95.00%, int8 94.67% (-0.33 pt)")
    assert lines[0].endswith("run-time delta 2.22x fewer at -1.00 pt on test (its thresholds chosen within 1 pt on "
                             "validation).")
