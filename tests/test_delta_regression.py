"""Delta networks on regression models: ``delta-tune --max-disagreement D --tolerance E`` certifies the share of
sequences (per step: of scored steps) whose outputs move more than E from the dense int8 model's, and
``rnnskip-convert --delta`` reports the outputs' error in their own units; one line for each misuse."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import needs_arm
from test_cli import cli, one_line_error

TOL = 0.02


@pytest.fixture(scope="module")
def forecast(tmp_path_factory):
    """A one-output LSTM on random walks (a forecaster's shape), labels its own float outputs plus noise; 80
    validation rows (40 select, 40 certify), calibration on 200 others."""
    k = pytest.importorskip("tf_keras")
    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    d = tmp_path_factory.mktemp("delta_regression")
    k.utils.set_random_seed(3)
    m = k.Sequential([k.layers.Input((16, 2)), k.layers.LSTM(12), k.layers.Dense(1)])
    m.save(d / "reg.h5")
    ir = import_model(d / "reg.h5")
    rng = np.random.default_rng(0)
    for name, n in (("val", 80), ("train", 200)):
        x = np.cumsum(rng.normal(0, 0.3, (n, 16, 2)), axis=1).astype(np.float32)
        y = (FloatModel(ir).predict(x)[:, 0] + rng.normal(0, 0.05, n)).astype(np.float32)
        save_npz(str(d / f"{name}.npz"), Dataset(x=x, y=y, lengths=np.full(n, 16, np.int32)))
    return d, ir


def _golden_outputs(d, ir, spec):
    """The dense and the delta int8 models' outputs on --val, dequantised (as delta-tune quantises: --calib)."""
    from rnnskip.datasets import load_npz
    from rnnskip.delta.golden import with_delta
    from rnnskip.outputs import dequantize
    from rnnskip.pipeline import quantize_model
    from rnnskip.quant.golden import GoldenModel
    val, cal = load_npz(str(d / "val.npz")), load_npz(str(d / "train.npz"))
    qm, _ = quantize_model(ir, cal, 1000, progress=False)
    dense = dequantize(qm, GoldenModel(qm).run(val.x, val.lengths)[0])
    delta = dequantize(qm, GoldenModel(with_delta(qm, spec)).run(val.x, val.lengths)[0])
    return dense, delta


def test_tolerance_budget_is_certified_on_the_outputs(forecast):
    """The certificate counts, on the 40 certification rows, the sequences whose output moved more than the
    tolerance: its point estimate is that count exactly, recomputed here from the golden models."""
    from rnnskip.certify import split_rows
    from rnnskip.delta.spec import DeltaSpec
    d, ir = forecast
    p = cli("rnnskip", "delta-tune", d / "reg.h5", "--val", d / "val.npz", "--calib", d / "train.npz",
            "--max-disagreement", "25", "--tolerance", str(TOL), "--grid", "0,1,2,4,8", "--cell-grid", "",
            "--out", d / "delta.json")
    assert p.returncode == 0, p.stderr
    js = json.loads((d / "delta.json").read_text())
    t, c = js["tuning"], js["tuning"]["certified"]
    assert c["certified"] and c["tolerance"] == TOL and t["tolerance"] == TOL and c["calibration_n"] == 40
    assert c["units"] == f"percent of sequences whose outputs move more than {TOL:g} from the dense int8 model's"
    assert t["measure"].startswith(f"share of sequences whose outputs all stay within {TOL:g}")
    spec = DeltaSpec.load(d / "delta.json")
    assert max(spec.theta_x + spec.theta_h) > 0   # a certified point beyond the dense model
    dense, delta = _golden_outputs(d, ir, spec)
    off = np.abs(delta - dense).max(axis=1) > TOL
    cal = split_rows(80, 0)[1]
    assert c["point_estimate"] == pytest.approx(100 * off[cal].mean(), abs=1e-9)
    assert 0 < off.sum() < 80   # the tolerance is met on some rows and missed on others: the count is a test
    # what the chosen thresholds cost against the labels, on all of --val (a user check asked for it)
    y = np.load(d / "val.npz")["y"].astype(np.float64)
    e = t["error_on_validation"]
    assert e["method_int8_vs_label_rmse"] == pytest.approx(np.sqrt(np.mean((delta[:, 0] - y) ** 2)), abs=1e-12)
    assert e["dense_int8_vs_label_rmse"] == pytest.approx(np.sqrt(np.mean((dense[:, 0] - y) ** 2)), abs=1e-12)
    assert f"RMSE against the labels {e['dense_int8_vs_label_rmse']:.4g} (dense int8) -> " in p.stdout
    assert f"outputs off the dense model's by more than {TOL:g} <= 25 % with 90% confidence" in p.stdout


def test_tolerance_refusals(forecast, tmp_path):
    d, _ = forecast
    base = ["rnnskip", "delta-tune", d / "reg.h5", "--val", d / "val.npz", "--out", tmp_path / "x.json"]
    one_line_error(cli(*base, "--max-disagreement", "10"),
                   "this one ends in 1 'linear' output(s); for a regression model give --max-disagreement D "
                   "--tolerance E")
    one_line_error(cli(*base, "--max-loss", "1", "--tolerance", "0.1"),
                   "--tolerance goes with --max-disagreement D")
    one_line_error(cli(*base, "--max-disagreement", "10", "--tolerance", "-1"),
                   "--tolerance -1 must be a finite value >= 0, in the model's output units")
    assert not (tmp_path / "x.json").exists()


@needs_arm
def test_convert_reports_the_outputs_error(forecast):
    """rnnskip-convert --delta on a regression model (it refused): bit-exact, and the section's error in the
    outputs' units, recomputed from the golden models."""
    d, ir = forecast
    if not (d / "delta.json").exists():
        test_tolerance_budget_is_certified_on_the_outputs(forecast)
    out = d / "conv"
    p = cli("rnnskip-convert", d / "reg.h5", "--data", d / "val.npz", "--calib", d / "train.npz", "--delta",
            d / "delta.json", "--out", out, "--emulate-max", "3", "--workers", "1")
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0
    sec = rep["delta"]
    assert sec["accuracy"] == {"float": None, "dense_int8": None, "delta_int8": None}
    from rnnskip.delta.spec import DeltaSpec
    dense, delta = _golden_outputs(d, ir, DeltaSpec.load(d / "delta.json"))
    y = np.load(d / "val.npz")["y"].astype(np.float64)
    e = sec["error"]
    assert e["method_vs_dense_max_abs"] == pytest.approx(np.abs(delta - dense).max(), abs=1e-12)
    assert e["method_int8_vs_label_rmse"] == pytest.approx(np.sqrt(np.mean((delta[:, 0] - y) ** 2)), abs=1e-12)
    assert e["dense_int8_vs_label_rmse"] == pytest.approx(rep["error"]["float_vs_label_rmse"], rel=0.5)
    w = sec["within_tolerance"]
    assert w["share"] == pytest.approx(np.mean(np.abs(delta - dense).max(axis=1) <= TOL), abs=1e-12)
    assert w["tolerance"] == TOL and sec["tuning"]["tolerance"] == TOL and sec["certified"]["certified"]
    assert "delta error int8" in p.stdout and f"with every output within {TOL:g} of the dense int8" in p.stdout
    assert "error int8 vs float (RMSE)" in p.stdout and "(with delta)" in p.stdout   # the top table's int8 model
    assert sec["emulated"]["dense_device_matches_golden"]
    # unlabelled data (it was refused: the delta section is an accuracy): the cost against the dense model and the
    # certified measure need no labels
    v = np.load(d / "val.npz")
    np.savez(d / "nolab.npz", x=v["x"])
    p = cli("rnnskip-convert", d / "reg.h5", "--data", d / "nolab.npz", "--calib", d / "train.npz", "--delta",
            d / "delta.json", "--out", d / "conv_nolab", "--emulate-max", "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    un = json.loads((d / "conv_nolab" / "report.json").read_text())["delta"]
    assert un["error"]["method_int8_vs_label_rmse"] is None and un["error"]["float_vs_label_rmse"] is None
    assert un["error"]["method_vs_dense_max_abs"] == e["method_vs_dense_max_abs"]   # the same rows
    assert un["within_tolerance"]["share"] == w["share"] and "no labels; vs dense int8" in p.stdout


def test_per_step_regression_tolerance_is_per_scored_step(tmp_path):
    """An output per step: a disagreement is a scored step whose outputs moved more than the tolerance, each
    sequence's share of such steps averaged (the certificate's point estimate recomputed; masked steps out)."""
    k = pytest.importorskip("tf_keras")
    from rnnskip.certify import split_rows
    from rnnskip.datasets import Dataset, load_npz, save_npz
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.outputs import dequantize, steps_run_mask
    from rnnskip.pipeline import import_model, quantize_model
    from rnnskip.quant.golden import GoldenModel
    from rnnskip.reference import FloatModel
    k.utils.set_random_seed(5)
    m = k.Sequential([k.layers.Input((12, 2)), k.layers.Masking(0.0), k.layers.GRU(10, return_sequences=True),
                      k.layers.Dense(2)])
    m.save(tmp_path / "ps.h5")
    ir = import_model(tmp_path / "ps.h5")
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, 0.3, (60, 12, 2)), axis=1).astype(np.float32) + 3
    L = rng.integers(5, 13, 60).astype(np.int32)
    x[np.arange(12)[None, :] >= L[:, None]] = 0.0
    y = FloatModel(ir).predict(x, L).astype(np.float32)
    save_npz(str(tmp_path / "v.npz"), Dataset(x=x, y=y, lengths=L))
    p = cli("rnnskip", "delta-tune", tmp_path / "ps.h5", "--val", tmp_path / "v.npz", "--max-disagreement", "30",
            "--tolerance", "0.01", "--grid", "0,2,8", "--cell-grid", "", "--out", tmp_path / "d.json")
    assert p.returncode == 0, p.stderr
    c = json.loads((tmp_path / "d.json").read_text())["tuning"]["certified"]
    assert c["per_step"] and c["tolerance"] == 0.01
    spec = DeltaSpec.load(tmp_path / "d.json")
    val = load_npz(str(tmp_path / "v.npz"), ir)
    qm, _ = quantize_model(ir, val, 1000, progress=False)
    dense = dequantize(qm, GoldenModel(qm).run(val.x, val.lengths)[0])
    delta = dequantize(qm, GoldenModel(with_delta(qm, spec)).run(val.x, val.lengths)[0])
    off = np.abs(delta - dense).max(axis=2) > 0.01
    scored = steps_run_mask(qm, val.x, val.lengths)
    cal = split_rows(60, 0)[1]
    share = [off[i][scored[i]].mean() for i in cal if scored[i].any()]
    assert c["point_estimate"] == pytest.approx(100 * np.mean(share), abs=1e-9)
    assert c["certified"] and max(spec.theta_x + spec.theta_h) > 0
    assert 0 < off[scored].sum() < scored.sum()   # moved past the tolerance at some steps, not all


def test_delta_train_fine_tunes_a_regression_model_on_its_rmse(forecast, tmp_path):
    """delta-train on float targets (it refused them): the mean squared error, early stopping and the log on the
    validation RMSE, from a metric of its own (the loss also holds the L1 penalty). The RMSE before fine-tuning is
    the delta model's, recomputed here; the written model and thresholds convert."""
    from rnnskip.datasets import load_npz
    from rnnskip.delta.train import build_delta_model, run_delta_train
    from rnnskip.pipeline import import_model, quantize_model
    d, ir = forecast
    lines = []
    info = run_delta_train(str(d / "reg.h5"), str(d / "train.npz"), str(d / "val.npz"), tmp_path / "dt.h5",
                           theta_x=4, theta_h=8, epochs=3, log=lines.append)
    assert {"val_rmse", "val_rmse_before"} <= set(info) and "val_accuracy" not in info
    assert info["val_rmse"] < info["val_rmse_before"]   # fine-tuned towards the targets under the thresholds
    assert (tmp_path / "dt.h5").is_file() and (tmp_path / "dt.delta.json").is_file()
    assert any(f"validation RMSE before fine-tuning {info['val_rmse_before']:.4f}" in line for line in lines)
    val, cal = load_npz(str(d / "val.npz"), ir), load_npz(str(d / "train.npz"), ir)
    qm, _ = quantize_model(ir, cal, 1000, progress=False)
    m, *_ = build_delta_model(ir, qm, [4], [8], l1=0.02, noise=0.25)
    pred = m.predict(val.x, verbose=0)[:, 0]
    assert info["val_rmse_before"] == pytest.approx(float(np.sqrt(np.mean((pred - val.y) ** 2))), rel=1e-5)
    assert import_model(tmp_path / "dt.h5").output_dim == 1


def test_delta_train_refuses_mixed_targets(tmp_path):
    """Two linear outputs are a regression on float targets [N, 2] and a classifier's logits on integer labels: --train
    and --val of the two kinds are refused in one line, before any training."""
    k = pytest.importorskip("tf_keras")
    m = k.Sequential([k.layers.Input((6, 3)), k.layers.LSTM(4), k.layers.Dense(2)])
    m.save(tmp_path / "two.h5")
    x = np.random.default_rng(0).normal(0, 1, (10, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=np.random.default_rng(1).normal(0, 1, (10, 2)).astype(np.float32))
    np.savez(tmp_path / "cls.npz", x=x, y=np.arange(10) % 2)
    one_line_error(cli("rnnskip", "delta-train", tmp_path / "two.h5", "--train", tmp_path / "reg.npz", "--val",
                       tmp_path / "cls.npz", "--out", tmp_path / "o.h5"),
                   "holds regression targets (float y) but --val", "class labels; give both the same kind")
    assert not (tmp_path / "o.h5").exists()


@needs_arm
def test_a_classifier_tuned_with_a_tolerance_reports_it(tmp_path):
    """--tolerance on a softmax classifier: the budget is on its probabilities, and the conversion reports the
    certified measure on --data (within_tolerance) next to the accuracies (a user check found only accuracies)."""
    k = pytest.importorskip("tf_keras")
    k.utils.set_random_seed(2)
    m = k.Sequential([k.layers.Input((10, 2)), k.layers.GRU(8), k.layers.Dense(3, activation="softmax")])
    m.save(tmp_path / "cls.h5")
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.normal(0, 0.3, (60, 10, 2)), axis=1).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(m.predict(x, verbose=0), 1))
    p = cli("rnnskip", "delta-tune", tmp_path / "cls.h5", "--val", tmp_path / "d.npz", "--max-disagreement", "30",
            "--tolerance", "0.05", "--grid", "0,2,4", "--cell-grid", "", "--out", tmp_path / "t.json")
    assert p.returncode == 0, p.stderr
    p = cli("rnnskip-convert", tmp_path / "cls.h5", "--data", tmp_path / "d.npz", "--delta", tmp_path / "t.json",
            "--out", tmp_path / "o", "--emulate-max", "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    sec = json.loads((tmp_path / "o" / "report.json").read_text())["delta"]
    assert sec["accuracy"]["delta_int8"] is not None and "error" not in sec
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.outputs import dequantize
    from rnnskip.pipeline import import_model, load_data, quantize_model
    from rnnskip.quant.golden import GoldenModel
    ir = import_model(tmp_path / "cls.h5")
    ds = load_data(str(tmp_path / "d.npz"), ir)
    qm, _ = quantize_model(ir, ds, 1000, progress=False)
    dense = dequantize(qm, GoldenModel(qm).run(ds.x, ds.lengths)[0])
    delta = dequantize(qm, GoldenModel(with_delta(qm, DeltaSpec.load(tmp_path / "t.json"))).run(ds.x, ds.lengths)[0])
    want = float(np.mean(np.abs(delta - dense).max(axis=1) <= 0.05))
    assert sec["within_tolerance"]["share"] == pytest.approx(want, abs=1e-12) and 0 < want
