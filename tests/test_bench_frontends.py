"""The frontends benchmark section's bookkeeping: registered in run_all, and its markdown and
README summary render from a results dict of the shape run() returns (no training, no emulation)."""
from benchmarks import frontend_bench, run_all


def _lat(step):
    return {"sequences": 2, "frames": 8, "step_mean": float(step), "step_max": 2.0 * step, "step_min": 10.0,
            "step_mean_ran": 1.5 * step, "step_mean_not_ran": 0.5 * step, "ran_fraction": 0.5,
            "flags_match_golden": True, "init": 30.0, "finish": 40.0, "output": 50.0,
            "per_window": 8.0 * step + 120, "mismatches": 0, "trace": [step] * 4}


def _row(acc, cycles, **extra):
    return {"accuracy_float": 0.9, "accuracy_int8": acc, "n": 40, "n_emulated": 4, "cycles_per_inference": cycles,
            "macs_per_inference": 1000.0, "flash_bytes": 20000, "ram_bytes": 3000, "stack_bytes": 200,
            "weights_bytes": 9000, "wall_s": 5.0, "flash_wait_states": 0,
            "bitexact": {"checked": 40, "mismatches": 0, "host_checked": 40, "device_checked": 4}, **extra}


def _model(title):
    return {"name": "m", "title": title, "quick": True, "seconds": 60.0,
            "meta": {"params": 1234, "features": "6 channels", "n_train": 28, "n_val": 12, "epochs_run": 30,
                     "epoch_kept": 5, "train_seconds": 12.0},
            "golden": {"n": 40, "float": 0.9, "int8": 0.9, "disagree": 0, "int8_shared_input_scale": 0.875,
                       "noise": {"draws": 20, "rows_flipping": 1, "accuracy_mean": 0.89, "accuracy_min": 0.875,
                                 "accuracy_max": 0.9}},
            "model": {"front_end": [{"kind": "conv1d", "filters": 16, "kernel_size": 5, "strides": 1, "dilation": 1,
                                     "padding": "causal", "activation": "relu"},
                                    {"kind": "max_pool1d", "pool_size": 2, "strides": 2}],
                      "front_macs_per_frame": 480, "macs_per_step": 6144, "head_macs": 128, "params": 1234,
                      "type": "lstm", "layers": [{"kind": "lstm", "units": 32}]},
            "dense": _row(0.9, 5000.0),
            "delta": _row(0.875, 4000.0, thresholds=[{"input": 4, "hidden": 8}], mac_reduction_x=2.0,
                          cycle_reduction_x=1.25),
            "skip": _row(0.9, 4500.0, skip_rate=0.2, predictor_params=300, predictor_macs_per_step=256,
                         mac_reduction_x=1.2, cycle_reduction_x=1.1),
            "latency": {"dense": _lat(100), "delta": _lat(80), "skip": _lat(90)}}


RES = {"quick": True, "target": "cortex-m4", "max_loss": 1.0, "target_gap": 1.0, "plot": "/x/frontends_latency.png",
       "models": {"a": _model("CRNN on FSDD"), "b": _model("CNN-LSTM on BasicMotions")}}


def test_weights_only_accuracy_in_the_text():
    """The float model with the int8 weights: said where measured, nothing where the saved results predate it."""
    res = {**RES, "models": {"a": _model("CRNN on FSDD")}}
    assert "int8 model's weights" not in frontend_bench.markdown(res)
    res["models"]["a"]["golden"]["float_int8_weights"] = 0.875
    assert ("the issue's target is within 1 point: met; the float model with the int8 model's weights and float "
            "activations: 87.50%); int8 and float") in frontend_bench.markdown(res)


def test_registered_in_run_all():
    assert ("frontends", frontend_bench) in run_all.SECTIONS


def test_markdown_has_a_row_per_model_and_firmware():
    md = frontend_bench.markdown(RES)
    rows = [l for l in md.splitlines() if l.startswith("| CRNN") or l.startswith("| CNN-LSTM")]
    assert len(rows) == 6
    assert all(len(r.split("|")) == len(frontend_bench.HEAD[0].split("|")) for r in rows)
    assert "| CNN-LSTM on BasicMotions | run-time delta |" in md and "x4/h8" in md and "-2.50" in md
    assert "Conv1D(16, 5, strides 1, dilation 1, causal, relu) -> MaxPooling1D(2, strides 2) -> LSTM(32) -> Dense" in md
    assert "frontends_latency.png" in md
    assert ("1 test row changes class in at least one draw, accuracy 87.50-90.00% (mean 89.00%). With one shared "
            "input scale instead of one per feature, int8 87.50%.") in md


def test_disagreeing_rows_are_described():
    g = {"disagree_rows": [{"row": 3, "label": 1, "float_class": 1, "int8_class": 0, "float_prob": 0.75,
                            "input_peak_levels": 9, "float_flips_under_noise": 7}], "input_peak_levels_median": 20.0,
         "noise": {"draws": 20}}
    t = frontend_bench._disagree_text(g)
    assert "test row 3" in t and "0.750" in t and "9 of 127 levels" in t and "median input peak" in t
    assert "changes its class in 7 of 20 noise draws" in t and "rounded" not in t   # saved before they were measured
    g["disagree_rows"][0].update(float_class_input_rounded=1, float_class_front_rounded=0)
    assert ("7 of 20 noise draws and predicts class 1 with only its input rounded to int8, class 0 with only the "
            "front end's output rounded;") in frontend_bench._disagree_text(g)
    g["disagree_rows"][0].update(float_class_weights_rounded=0)
    assert ("class 0 with only the front end's output rounded, class 0 with only the weights rounded (the int8 "
            "model's weights, activations float);") in frontend_bench._disagree_text(g)
    g["disagree_rows"][0].update(float_class_one_layer_rounded={"conv": 0, "lstm kernel": 1, "head": 1})
    assert ("activations float); with one layer's weights rounded: conv 0, lstm kernel 1, head 1;"
            in frontend_bench._disagree_text(g))
    assert frontend_bench._disagree_text({"disagree_rows": []}) == ""


def test_summary_one_line_per_model():
    lines = frontend_bench.summary(RES)
    assert len(lines) == 2 and all(l.startswith("- ") for l in lines)
    assert "+0.00 pt" in lines[0]


def test_a_separable_front_end_reads_as_its_two_layers():
    m = _model("Depthwise-separable CRNN on FSDD")
    m["model"]["front_end"] = [{"kind": "depthwise_conv1d", "filters": 40, "kernel_size": 3, "depth_multiplier": 1,
                                "strides": 2, "dilation": 1, "padding": "causal", "activation": "linear"},
                               {"kind": "conv1d", "filters": 32, "kernel_size": 1, "strides": 1, "dilation": 1,
                                "padding": "valid", "activation": "relu"}]
    md = frontend_bench.markdown({**RES, "models": {"a": m}})
    assert ("DepthwiseConv1D(3, depth_multiplier 1, strides 2, dilation 1, causal, linear) -> Conv1D(32, 1, strides 1, "
            "dilation 1, valid, relu) -> LSTM(32) -> Dense") in md
