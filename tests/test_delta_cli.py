"""Delta networks from the command line: rnnskip delta-tune -> delta.json,
rnnskip-convert --delta (report section, plots, bit-exact), delta-train writes a
normal Keras model; one clear line for each bad input."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import needs_arm, needs_arm_and_qemu
from test_cli import cli, one_line_error

DELTA_KEYS = {"thresholds", "density", "macs_per_inference", "mac_reduction", "accuracy", "emulated"}
#: what every step method's section says of the two firmware images (rnnskip.report.compare_with_dense)
EMULATED_KEYS = {"sequences", "traffic_sampled", "instructions_per_inference", "cycles_per_inference",
                 "flash_read_bytes_per_inference", "firmware_flash_bytes", "reduction", "mac_reduction",
                 "cycles_vs_macs", "dense_device_matches_golden"}


@pytest.fixture(scope="module")
def gru(k2_zoo, tmp_path_factory):
    """The zoo's masked-feature GRU (reset_after=True) and 40 sequences labelled by the float model."""
    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    e = k2_zoo.models["feat_mask_gru"]
    d = tmp_path_factory.mktemp("delta_cli")
    model = Path(e.files["h5"])
    ir = import_model(model)
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 0.4, (40, 12, ir.input.features)), axis=1).astype(np.float32)
    L = rng.integers(6, 13, 40).astype(np.int32)
    x[np.arange(12)[None, :] >= L[:, None]] = ir.input.mask_value     # padding that Masking skips
    y = np.argmax(FloatModel(ir).predict(x, L), 1)
    save_npz(str(d / "val.npz"), Dataset(x=x, y=y, lengths=L))
    return model, d / "val.npz", d, ir


def test_delta_tune_writes_thresholds(gru):
    """40 validation sequences (20 select, 20 certify) certify no budget as small as 5 points:
    delta-tune says so, writes thresholds 0 (the dense model) and records why."""
    model, val, d, ir = gru
    p = cli("rnnskip", "delta-tune", model, "--val", val, "--max-loss", "5", "--out", d / "delta.json",
            "--grid", "0,2,8,32")
    assert p.returncode == 0, p.stderr
    js = json.loads((d / "delta.json").read_text())
    assert js["format"] == "rnnskip-delta-1" and len(js["thresholds"]) == 1
    assert js["thresholds"][0]["input"] == 0 and js["thresholds"][0]["hidden"] == 0
    t = js["tuning"]
    c = t["certified"]
    assert c["certified"] is False and c["max_loss_points"] == 5 and c["confidence"] == 0.9
    assert c["calibration_n"] == 20 and c["smallest_certifiable"] > 5 and c["data"] == str(val)
    assert t["selection_sequences"] == 20 and t["calibration_sequences"] == 20
    assert (d / "delta_pareto.png").stat().st_size > 1000
    # the whole sweep on the selection half is in the file: 4 x 4 grid points, then the default cell
    # thresholds at the pick; the log has a line per 10 points and a total
    from rnnskip.delta.tune import CELL_GRID
    plain = [(q["theta_x"][0], q["theta_h"][0]) for q in t["sweep"] if q["theta_m"] == [None]]
    assert sorted(plain) == sorted((a, b) for a in (0, 2, 8, 32) for b in (0, 2, 8, 32))
    cells = [q for q in t["sweep"] if q["theta_m"] != [None]]
    assert sorted(q["theta_m"][0] for q in cells) == sorted(CELL_GRID)
    assert len({(q["theta_x"][0], q["theta_h"][0]) for q in cells}) == 1
    assert sum(" points, " in l and " s; latest x=" in l for l in p.stdout.splitlines()) == 2
    assert f"{16 + len(CELL_GRID)} points evaluated in " in p.stdout
    assert t["evaluated"] == len(t["sweep"]) == 16 + len(CELL_GRID)
    # the reason once, in the warning (the chosen line repeated its 300 characters)
    assert "chosen: input [0], hidden [0] (int8 steps): nothing certified (the warning says why); " in p.stdout
    assert "upper bound" not in p.stdout
    warn = [l for l in p.stderr.splitlines() if l.startswith("warning:")]   # on stderr, as rnnskip-convert's
    assert len(warn) == 1 and "warning:" not in p.stdout
    assert warn[0].startswith("warning: nothing certified: the most conservative candidate's 90% upper bound is ")
    assert "; with no sequence changed, 20 calibration sequences certify no budget below " in warn[0]
    assert "wrote thresholds 0, which compute the dense model's outputs exactly (only values that change " \
        "transmit: " in warn[0] and "x fewer MACs on these rows); compare the cycles of conversions with and " \
        "without --delta before deploying it" in warn[0]
    g = js["int8_grid"][0]   # the grid the thresholds were chosen on (calibrated on --val here)
    assert g["layer"] == ir.rnn_layers[0].name and g["input_scale"] > 0 and g["hidden_scale"] > 0


@pytest.fixture(scope="module")
def unlabelled(gru):
    """2,000 sequences like the fixture's, without labels."""
    model, val, d, ir = gru
    rng = np.random.default_rng(1)
    n = 2000
    x = np.cumsum(rng.normal(0, 0.4, (n, 12, ir.input.features)), axis=1).astype(np.float32)
    L = rng.integers(6, 13, n).astype(np.int32)
    x[np.arange(12)[None, :] >= L[:, None]] = ir.input.mask_value
    np.savez(d / "unlabelled.npz", x=x, lengths=L)
    return d / "unlabelled.npz"


def test_delta_tune_certifies_disagreement_on_unlabelled_data(gru, unlabelled):
    """--max-disagreement needs no labels: half of 2,000 unlabelled sequences choose the
    thresholds, the other half certify them; the chosen point's bound is within the budget and
    its measured disagreement on the calibration rows is below its bound."""
    model, val, d, ir = gru
    p = cli("rnnskip", "delta-tune", model, "--val", unlabelled, "--calib", val, "--max-disagreement", "10",
            "--confidence", "0.8", "--out", d / "dis.json", "--grid", "0,2,8,32", "--cell-grid", "")
    assert p.returncode == 0, p.stderr
    js = json.loads((d / "dis.json").read_text())
    c = js["tuning"]["certified"]
    assert c["certified"] and c["loss"] == "disagreement" and c["max_disagreement_percent"] == 10
    assert c["confidence"] == 0.8 and c["calibration_n"] == 1000
    assert 0 <= c["point_estimate"] <= c["upper_bound"] <= 10
    th = js["thresholds"][0]
    assert (th["input"], th["hidden"]) != (0, 0)
    assert "disagreement with the dense model <= 10 % with 80% confidence on data like" in p.stdout
    # a disagreement budget is not called an accuracy loss, and --val's rows are all counted
    t = js["tuning"]
    assert t["max_disagreement_percent"] == 10 and "max_loss_points" not in t and "margin_se" not in t
    assert t["measure"] == "agreement with the dense int8 model" and t["validation_sequences"] == 2000
    # the path was fixed on the selection half: a lead-in of thresholds raised together, then Pareto thresholds
    # from the dense model down
    path = js["tuning"]["path"]
    assert path and all(q["theta_m"] == [None] for q in path)
    # the certified point, re-measured by hand on the calibration half
    from rnnskip.certify import split_rows
    from rnnskip.datasets import load_npz
    from rnnskip.delta.golden import run_stats, with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import quantize_model
    from rnnskip.quant.golden import GoldenModel, predict_classes
    un = load_npz(str(unlabelled), ir, labels=False)
    cal = un.subset(split_rows(len(un), 0)[1])
    qm, _ = quantize_model(ir, load_npz(str(val), ir), progress=False)
    dense = predict_classes(GoldenModel(qm).run(cal.x, cal.lengths)[0], qm.output_activation)
    out, _, _ = run_stats(with_delta(qm, DeltaSpec.from_json(js)), cal.x, cal.lengths)
    dis = 100 * np.mean(predict_classes(out, qm.output_activation) != dense)
    assert dis == pytest.approx(c["point_estimate"])
    # the conversion's report carries the certificate and says what it promises on which data
    p = cli("rnnskip-convert", model, "--delta", d / "dis.json", "--data", val, "--out", d / "m4-cert",
            "--emulate-max", "1", "--traffic-sample", "0", "--workers", "1")
    assert p.returncode == 0, p.stderr
    sec = json.loads((d / "m4-cert" / "report.json").read_text())["delta"]
    assert sec["tuning"]["max_disagreement_percent"] == 10 and sec["tuning"]["calibration"] == str(val)
    cert = sec["certified"]
    assert cert["data_check"]["like_calibration"] and {k: cert[k] for k in c} == c
    assert f"disagreement <= 10% with 80% confidence on data like {unlabelled} (n=1000)" in p.stdout
    assert "unlike the rows" not in p.stderr
    # data of another kind (much shorter sequences): the promise does not carry over, and it says so
    from rnnskip.datasets import Dataset, save_npz
    va = load_npz(str(val), ir)
    short = np.minimum(va.lengths, 3).astype(np.int32)
    save_npz(str(d / "short.npz"), Dataset(x=va.x, y=va.y, lengths=short))
    p = cli("rnnskip-convert", model, "--delta", d / "dis.json", "--data", d / "short.npz", "--out", d / "m4-short",
            "--emulate-max", "1", "--traffic-sample", "0", "--workers", "1")
    assert p.returncode == 0, p.stderr
    warn = [l for l in p.stderr.splitlines() if "unlike the rows" in l]
    assert len(warn) == 1 and "median 3 here" in warn[0] and f"for data like {unlabelled}" in warn[0], p.stderr
    chk = json.loads((d / "m4-short" / "report.json").read_text())["delta"]["certified"]["data_check"]
    assert not chk["like_calibration"] and chk["p_value"] < 0.01


def test_delta_tune_budget_refusals(gru, unlabelled):
    model, val, d, ir = gru
    base = ("rnnskip", "delta-tune", model, "--out", d / "never.json")
    one_line_error(cli(*base, "--val", val, "--confidence", "1.5"), "--confidence 1.5 must be in (0, 1)")
    one_line_error(cli(*base, "--val", val, "--confidence", "0"), "--confidence 0.0 must be in (0, 1)")
    one_line_error(cli(*base, "--val", val, "--max-disagreement", "-2"),
                   "'--max-disagreement': -2.0 is not in the range 0<=x<=100")
    one_line_error(cli(*base, "--val", unlabelled, "--calib", val, "--max-loss", "1"),
                   "'y' is missing from", "for unlabelled data give --max-disagreement D")
    one_line_error(cli(*base, "--val", val, "--max-loss", "1", "--max-disagreement", "1"), "give one budget")
    assert not (d / "never.json").exists()


def test_tune_picks_the_largest_cell_threshold_in_budget(gru):
    """Cell thresholds are tried at the chosen input/hidden thresholds; the largest within
    the budget that adds no MACs and leaves at most half the unit evaluations is kept (a user check found m128
    chosen at 99% of them, then warned about); with an empty cell grid none is."""
    model, val, d, ir = gru
    from rnnskip.datasets import load_npz
    from rnnskip.delta.tune import tune
    from rnnskip.pipeline import quantize_model
    va = load_npz(str(val), ir)
    qm, _ = quantize_model(ir, va, progress=False)
    none = tune(ir, qm, va, max_loss=5.0, grid=(0, 2, 8, 32), reference="int8", cell_grid=())
    assert none.chosen.theta_m == (None,) and none.spec(ir).theta_m == [None]
    res = tune(ir, qm, va, max_loss=5.0, grid=(0, 2, 8, 32), reference="int8", cell_grid=(64, 512, 4096, 65536))
    base = none.chosen
    tried = [p for p in res.points if p.theta_m != (None,)]
    assert sorted(p.theta_m[0] for p in tried) == [64, 512, 4096, 65536]
    assert all(p.theta_x == base.theta_x and p.theta_h == base.theta_h for p in tried)
    fit = [p for p in tried if p.loss <= 5.0 and p.macs <= base.macs and p.density_cells <= 0.5]
    c = res.chosen
    if fit:
        assert c.theta_m[0] == max(p.theta_m[0] for p in fit) and c.density_cells < 1.0
        assert res.spec(ir).theta_m == [c.theta_m[0]]
    else:
        assert c is not None and c.theta_m == (None,)
    # the budget-breaking extreme: 65536 freezes every unit after the first step
    extreme = next(p for p in tried if p.theta_m == (65536,))
    assert extreme.density_cells < base.density_cells
    p = cli("rnnskip", "delta-tune", model, "--val", val, "--max-loss", "5", "--out", d / "nocell.json",
            "--grid", "0,2,8", "--cell-grid", "")
    assert p.returncode == 0, p.stderr
    assert "cell" not in json.loads((d / "nocell.json").read_text())["thresholds"][0]
    p = cli("rnnskip", "delta-tune", model, "--val", val, "--out", d / "bad.json", "--cell-grid", "64,x")
    assert p.returncode != 0 and "--cell-grid '64,x' must be comma-separated whole numbers" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_tune_margin_is_conservative_and_paired(gru):
    model, val, d, ir = gru
    from rnnskip.datasets import load_npz
    from rnnskip.delta.tune import tune
    from rnnskip.pipeline import quantize_model
    from rnnskip.stats import paired_loss
    va = load_npz(str(val), ir)
    qm, _ = quantize_model(ir, va, progress=False)
    plain = tune(ir, qm, va, max_loss=5.0, grid=(0, 2, 8, 32), reference="int8")
    safe = tune(ir, qm, va, max_loss=5.0, grid=(0, 2, 8, 32), reference="int8", margin_se=2.0)
    c = safe.chosen
    assert c.loss + 2.0 * c.loss_se <= 5.0 + 1e-9 and c.macs >= plain.chosen.macs
    base = next(p for p in plain.points if max(p.theta_x + p.theta_h) == 0)   # theta 0 = the dense int8 model
    assert base.loss == 0.0 and base.loss_se == 0.0
    for p in plain.points:
        assert p.loss_se == pytest.approx(paired_loss(base.correct, p.correct)[1])


@needs_arm
def test_convert_with_delta_report(gru):
    model, val, d, ir = gru
    if not (d / "delta.json").exists():
        test_delta_tune_writes_thresholds(gru)
    js = json.loads((d / "delta.json").read_text())
    js["thresholds"][0].update(input=2, hidden=2)       # make sure some columns are skipped
    (d / "delta2.json").write_text(json.dumps(js))
    out = d / "m4"
    p = cli("rnnskip-convert", model, "--delta", d / "delta2.json", "--data", val, "--out", out,
            "--emulate-max", "6", "--traffic-sample", "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0
    sec = rep["delta"]
    assert DELTA_KEYS <= set(sec)
    assert sec["thresholds"][0]["input"] == 2 and sec["thresholds"][0]["hidden"] == 2
    assert 0 < sec["density"]["hidden"] < 1 and set(sec["accuracy"]) >= {"dense_int8", "delta_int8"}
    assert sec["macs_per_inference"]["delta"] < sec["macs_per_inference"]["dense"]
    e = sec["emulated"]
    assert EMULATED_KEYS <= set(e)
    assert e["cycles_per_inference"]["dense"] > 0 and e["cycles_per_inference"]["delta"] > 0
    assert e["flash_read_bytes_per_inference"]["delta"] < e["flash_read_bytes_per_inference"]["dense"]
    assert e["dense_device_matches_golden"]
    # one convention: x fewer and cut from the same two numbers
    c, r = e["cycles_per_inference"], e["reduction"]["cycles"]
    assert r["x_fewer"] == pytest.approx(c["dense"] / c["delta"])
    assert r["cut"] == pytest.approx(1 - c["delta"] / c["dense"])
    assert e["cycles_vs_macs"]["x_fewer"] == pytest.approx(r["x_fewer"] / e["mac_reduction"]["x_fewer"])
    for png in sec["plots"]:
        assert (out / png).stat().st_size > 1000
    assert "delta MAC / inference" in p.stdout
    assert sec["int8_grid"]["same"] and "warning" not in p.stderr   # calibrated on the same data as delta-tune
    assert "effective MACs" in rep["emulation"]["macs_note"]
    # no line fitted through sequence lengths: a delta step's cost depends on the data (a user found the fit's
    # 7,816 cycles/step against 15,048 per executed step from the same report)
    assert rep["emulation"]["cycles_per_step"] is None and rep["emulation"]["cycles_fixed"] is None
    assert rep["emulation"]["cycles_per_step_note"].startswith("not fitted: a delta step costs what its")
    assert re.search(r"cycles / step +- +\(not fitted: a delta step costs", p.stdout), p.stdout
    assert sec["certified"]["certified"] is False and "delta budget" in p.stdout and "not certified" in p.stdout
    prof = e["cycles_per_step_by_part"]            # the emulated function profile, a few sequences
    # spread over --data's 40 rows, not its first ones (a user's class-sorted data profiled one class)
    assert prof["sequences"] == 4 and prof["rows"] == [0, 10, 20, 30]
    assert re.search(r"cycles/step delta .*\(per executed step, 4 sequences spread over the data\)\n", p.stdout)
    assert {"column-sparse mat-vec", "gather", "step code (with the cells)"} <= set(prof["delta"])
    assert "dense mat-vec" in prof["dense"] and "gather" not in prof["dense"]
    assert all(v > 0 for row in (prof["dense"], prof["delta"]) for v in row.values())
    assert "cycles/step delta" in p.stdout and "column-sparse mat-vec" in p.stdout
    assert "MAC / cycle (step)" in p.stdout and f"({rep['emulation']['macs_note']})" in p.stdout


@needs_arm
def test_convert_with_thresholds_0_says_the_firmware_is_slower(gru):
    """delta-tune's fallback (thresholds 0, nothing certified) transmits every change: the delta
    firmware computes the dense model's outputs with more cycles. The table says "x more" and a
    note says the method costs more than it saves."""
    model, val, d, ir = gru
    if not (d / "delta.json").exists():
        test_delta_tune_writes_thresholds(gru)
    out = d / "m4-zero"
    p = cli("rnnskip-convert", model, "--delta", d / "delta.json", "--data", val, "--out", out,
            "--emulate-max", "4", "--traffic-sample", "0", "--workers", "1")
    assert p.returncode == 0, p.stderr
    c = json.loads((out / "report.json").read_text())["delta"]["emulated"]["cycles_per_inference"]
    assert c["delta"] > c["dense"]
    more = c["delta"] / c["dense"]
    assert f"{(more - 1):+.1%}, {more:.2f}x more)" in p.stdout
    notes = [l for l in p.stderr.splitlines() if "makes the firmware slower" in l]
    assert notes == [f"note: --delta makes the firmware slower here: {c['delta']:,.0f} cycles per inference against "
                     f"{c['dense']:,.0f} for the same model without it ({more:.2f}x); its per-step work costs more "
                     f"than the steps or weight columns it saves on these sequences"]


@needs_arm
def test_convert_on_another_grid_warns(gru):
    """Thresholds are int8 steps: converting with other calibration data than delta-tune's
    puts them on another grid; the conversion says so in one line and in the report."""
    model, val, d, ir = gru
    if not (d / "delta.json").exists():
        test_delta_tune_writes_thresholds(gru)
    from rnnskip.datasets import Dataset, load_npz, save_npz
    va = load_npz(str(val), ir)
    x = np.where(va.x == ir.input.mask_value, va.x, 2 * va.x)       # twice the range: other scales
    save_npz(str(d / "calib2.npz"), Dataset(x=x, y=va.y, lengths=va.lengths))
    out = d / "m4-grid"
    p = cli("rnnskip-convert", model, "--delta", d / "delta.json", "--data", val, "--calib", d / "calib2.npz",
            "--out", out, "--emulate-max", "2", "--traffic-sample", "0", "--workers", "1")
    assert p.returncode == 0, p.stderr
    warn = [l for l in p.stderr.splitlines() if l.startswith("warning:")]
    assert len(warn) == 1 and "int8 steps of another grid" in warn[0] and f"(--calib {val})" in warn[0], p.stderr
    g = json.loads((out / "report.json").read_text())["delta"]["int8_grid"]
    assert not g["same"] and g["deployed"][0]["input_scale"] > g["tuned"][0]["input_scale"]


def _bad_file(d, name, **thr):
    js = {"format": "rnnskip-delta-1", "thresholds": [dict({"input": 1, "hidden": 1}, **thr)]}
    (d / name).write_text(json.dumps(js))
    return d / name


@pytest.mark.parametrize("thr,needle", [({"input": -1}, "negative"), ({"hidden": "two"}, "not a number")])
def test_convert_bad_thresholds_one_line(gru, thr, needle):
    model, val, d, ir = gru
    p = cli("rnnskip-convert", model, "--delta", _bad_file(d, f"bad{needle[:3]}.json", **thr), "--data", val,
            "--out", d / "never")
    one_line_error(p, needle)
    assert not (d / "never").exists()


def test_thresholds_for_another_model(gru, k2_zoo):
    model, val, d, ir = gru
    other = Path(k2_zoo.models["stack_gru"].files["h5"])
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import import_model
    DeltaSpec([1, 1], [1, 1]).save(d / "other.json", import_model(other))
    p = cli("rnnskip-convert", model, "--delta", d / "other.json", "--data", val, "--out", d / "never")
    one_line_error(p, "recurrent layer")


def test_reset_before_gru_refused(k2_zoo, gru):
    model, val, d, ir = gru
    rb = Path(k2_zoo.models["emb_gru_rb_sigmoid"].files["h5"])
    p = cli("rnnskip", "delta-tune", rb, "--val", val, "--out", d / "x.json")
    one_line_error(p, "reset_after=False")


def test_tune_budget_errors(gru):
    model, val, d, ir = gru
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", val, "--out", d / "y.json", "--max-loss", "-1"),
                   "--max-loss")
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", val, "--out", d / "y.json", "--grid", "0,-3"),
                   "--grid")
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", val, "--out", d / "y.json", "--margin-se", "1"),
                   "No such option '--margin-se'")
    one_line_error(cli("rnnskip", "delta-train", model, "--train", val, "--val", val, "--out", model),
                   "is the model being fine-tuned")
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", val, "--out", d / "y.json", "--baseline",
                       d / "nope.h5"),
                   f"--baseline {d / 'nope.h5'} not found; give the model MODEL was fine-tuned from")
    for opt, value, needle in (("--lr", "nan", "--lr nan must be a number > 0"),
                               ("--patience", "-2", "--patience -2 must be >= 0"),
                               ("--l1", "inf", "--l1 inf must be a number >= 0"),
                               ("--theta-x", "-2", "delta-train --theta-x: threshold -2.0 is negative"),
                               ("--theta-h", "1.5", "delta-train --theta-h: threshold 1.5 is not a whole number"),
                               ("--theta-m", "-1", "delta-train --theta-m: cell threshold -1.0 must be a whole number"),
                               ("--seed", "-1", "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295")):
        one_line_error(cli("rnnskip", "delta-train", model, "--train", val, "--val", val, "--out", d / "bad.h5",
                           opt, value), needle)
        assert not (d / "bad.h5").exists()
    from rnnskip.datasets import load_npz
    from rnnskip.delta.tune import tune
    from rnnskip.errors import RnnskipError
    from rnnskip.pipeline import quantize_model
    va = load_npz(str(val), ir)
    qm, _ = quantize_model(ir, va, progress=False)
    with pytest.raises(RnnskipError, match="no thresholds keep accuracy within 0.5 points.*the best is"):
        tune(ir, qm, va, max_loss=0.5, grid=(0, 4), float_accuracy=1.5)


def test_delta_train_cli_keeps_stderr_clean(gru):
    """TensorFlow's C++ start-up lines do not reach stderr (one line per error is the contract); rnnskip's own
    warning may (one epoch need not improve the delta model)."""
    model, val, d, ir = gru
    p = cli("rnnskip", "delta-train", model, "--train", val, "--val", val, "--out", d / "quiet.h5", "--epochs", "1")
    assert p.returncode == 0, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) <= 1 and all(ln.startswith("warning: delta-train: fine-tuning did not improve") for ln in err), \
        p.stderr
    assert (d / "quiet.h5").is_file()
    assert "\nepoch 1/1: loss " in p.stdout                  # progress on stdout, one line per epoch


def _h5_weights(path):
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, o: out.__setitem__(name, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def test_delta_train_is_reproducible_from_its_seed(gru):
    """Two processes with the same seed write the same weights bit for bit; another seed trains others.
    (The threshold noise is drawn once per step inside the RNN's while loop: without the order
    rnnskip/delta/train.py imposes on those draws, about half the pairs of runs differed.)"""
    model, val, d, ir = gru
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        p = cli("rnnskip", "delta-train", model, "--train", val, "--val", val, "--out", d / f"seed_{name}.h5",
                "--epochs", "1", "--seed", seed)
        assert p.returncode == 0, p.stderr
        runs[name] = _h5_weights(d / f"seed_{name}.h5")
    assert runs["a"].keys() == runs["b"].keys()
    for k in runs["a"]:
        np.testing.assert_array_equal(runs["a"][k], runs["b"][k], err_msg=k)
    assert any(not np.array_equal(runs["a"][k], runs["c"][k]) for k in runs["a"])
    assert json.loads((d / "seed_a.delta.json").read_text())["tuning"]["seed"] == 3


def test_delta_train_runs_the_steps_the_device_runs(tmp_path):
    """A model without Masking on data whose lengths end rows early: the device stops at each row's length, and so
    does delta-train's model (the loss, the L1 penalty and the density once counted the padding Keras would run).
    What fills the padding changes nothing it writes, bit for bit."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.layers.Input((None, 4)), keras.layers.GRU(6), keras.layers.Dense(3, "softmax")])
    m.save(tmp_path / "nomask.h5")
    ir = import_model(tmp_path / "nomask.h5")
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(0, 0.4, (40, 12, 4)), axis=1).astype(np.float32)
    L = rng.integers(6, 13, 40).astype(np.int32)
    after = np.arange(12)[None, :] >= L[:, None]
    x[after] = 0.0
    y = np.argmax(FloatModel(ir).predict(x, L), 1)
    out = {}
    for name, pad in (("zeros", 0.0), ("noise", rng.normal(0, 2, (int(after.sum()), 4)))):
        xx = x.copy()
        xx[after] = pad
        save_npz(str(tmp_path / f"{name}.npz"), Dataset(x=xx, y=y, lengths=L))
        p = cli("rnnskip", "delta-train", tmp_path / "nomask.h5", "--train", tmp_path / f"{name}.npz", "--val",
                tmp_path / f"{name}.npz", "--out", tmp_path / f"{name}.h5", "--epochs", "2", "--seed", "3")
        assert p.returncode == 0, p.stderr
        out[name] = (_h5_weights(tmp_path / f"{name}.h5"), p.stdout.split("training density ")[1].split(",")[0])
    assert out["zeros"][1] == out["noise"][1]
    for k in out["zeros"][0]:
        np.testing.assert_array_equal(out["zeros"][0][k], out["noise"][0][k], err_msg=k)


def test_threshold_noise_is_the_same_sequence_every_time(gru):
    """The training forward pass (threshold noise on) gives the same outputs call by call for one
    seed. Each step's noise is a stateful random op in the RNN's while loop; without the control
    dependency on the previous step's states TensorFlow ran the steps' draws in thread-timing order
    (in a few of every 20 calls here), which made delta-train differ from process to process."""
    from rnnskip.datasets import load_npz
    from rnnskip.delta.train import _keras, build_delta_model
    from rnnskip.pipeline import quantize_model
    model, val, d, ir = gru
    va = load_npz(str(val), ir)
    qm, _ = quantize_model(ir, va, progress=False)
    tf, keras = _keras()

    def calls():
        keras.utils.set_random_seed(0)
        m, *_ = build_delta_model(ir, qm, [2], [2], 0.0, noise=1.0, theta_m=[64])
        f = tf.function(lambda v: m(v, training=True))
        return np.stack([f(va.x).numpy() for _ in range(40)])
    a, b = calls(), calls()
    assert not np.array_equal(a[0], a[1])            # the noise is on: each call draws anew
    np.testing.assert_array_equal(a, b)


def test_diverged_delta_train_writes_nothing(gru):
    from rnnskip.delta.train import run_delta_train
    from rnnskip.errors import RnnskipError
    model, val, d, ir = gru
    with pytest.raises(RnnskipError, match=r"^delta-train diverged: \d+ weight arrays hold NaN or infinite values "
                                           r"after training \(first: .*\); nothing written: lower --lr "
                                           r"\(it was 1e\+38\)$"):
        run_delta_train(model, val, val, d / "nan.h5", epochs=1, lr=1e38, log=lambda s: None)
    assert not (d / "nan.h5").exists() and not (d / "nan.delta.json").exists()


def test_delta_train_that_does_not_improve_says_so(gru, capsys):
    """A fine-tuning whose best epoch is no better than the model before it (here: a learning rate too small to
    move a weight) is written, with one warning that says so and what to change (a user's was converted 25
    points below the dense model, read as the fine-tuned result)."""
    model, val, d, ir = gru
    from rnnskip.delta.train import run_delta_train
    lines = []
    info = run_delta_train(model, val, val, d / "still.h5", theta_x=8, theta_h=8, epochs=2, batch_size=8, lr=1e-12,
                           patience=0, log=lines.append)
    assert info["val_accuracy"] == info["val_accuracy_before"]
    err = capsys.readouterr().err.strip().splitlines()
    # the labels are the float model's own classes: the dense model scores 1
    assert info["val_accuracy"] < 1
    assert err == [f"warning: delta-train: fine-tuning did not improve the delta validation accuracy "
                   f"({info['val_accuracy_before']:.4f} before, {info['val_accuracy']:.4f} at its best epoch 1 of "
                   f"{info['epochs_run']}, dense model 1.0000); try another --lr (it was 1e-12), more --epochs or "
                   f"smaller thresholds"]
    assert (d / "still.h5").is_file()


def test_delta_train_writes_normal_keras_model(gru):
    model, val, d, ir = gru
    from rnnskip.delta.train import run_delta_train
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    out = d / "delta_trained.h5"
    lines = []
    info = run_delta_train(model, val, val, out, theta_x=2, theta_h=2, epochs=2, batch_size=8, log=lines.append)
    assert info["epochs_run"] >= 1 and 0 <= info["val_accuracy"] <= 1
    epochs = [ln for ln in lines if ln.startswith("epoch ")]     # progress: one line per epoch run
    assert [ln.split(":")[0] for ln in epochs] == [f"epoch {i}/2" for i in range(1, info["epochs_run"] + 1)]
    assert all(", validation accuracy " in ln and ", training density " in ln for ln in epochs)
    ir2 = import_model(out)                              # a plain Masking -> GRU -> Dense model
    assert [l.kind for l in ir2.rnn_layers] == ["gru"] and ir2.rnn_layers[0].options["reset_after"]
    import tf_keras as keras

    from rnnskip.datasets import load_npz
    va = load_npz(str(val), ir2)
    k = keras.models.load_model(out, compile=False).predict(va.x, verbose=0)
    np.testing.assert_allclose(FloatModel(ir2).predict(va.x, va.lengths), k, atol=1e-5)
    assert not np.allclose(ir2.rnn_layers[0].kernel, ir.rnn_layers[0].kernel)   # it did train
    # its delta.json records the grid rnnskip-convert gives the new weights on the same calibration data
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import quantize_model
    from rnnskip.quant.grid import grid_mismatch
    spec = DeltaSpec.load(out.with_suffix(".delta.json"))
    assert spec.grid and spec.tuning["calibration"] == str(val)
    assert grid_mismatch(spec.grid, quantize_model(ir2, va, progress=False)[0]) is None
    assert grid_mismatch(spec.grid, quantize_model(ir, va, progress=False)[0]) is not None   # not the original's
    # the rows that chose its epoch are recorded; delta-tune will not certify the model on them
    from rnnskip.datasets import Dataset, file_sha256, save_npz
    assert spec.tuning["early_stopping"] == {"data": str(val), "sha256": file_sha256(val), "sequences": len(va)}
    copy = d / "val_copy.npz"
    copy.write_bytes(Path(val).read_bytes())
    one_line_error(cli("rnnskip", "delta-tune", out, "--baseline", model, "--val", copy, "--calib", val,
                       "--max-loss", "50", "--out", d / "reuse.json"),
                   f"--val {copy} holds the rows delta-train chose {out}'s epoch on (its --val, recorded in "
                   f"{out.with_suffix('.delta.json')}): rows that picked the model cannot certify it; give delta-tune "
                   f"held-out rows (and delta-train a --val of its own)")
    assert not (d / "reuse.json").exists()
    # some of them in another file: counted in a warning
    part = d / "val_part.npz"
    save_npz(str(part), Dataset(x=np.concatenate([va.x[:5], va.x[5:25] * 1.01]), y=va.y[:25], lengths=va.lengths[:25]))
    p = cli("rnnskip", "delta-tune", out, "--baseline", model, "--val", part, "--calib", val, "--max-loss", "50",
            "--grid", "0,8", "--cell-grid", "", "--out", d / "part.json")
    assert p.returncode == 0, p.stderr
    assert (f"warning: 5 of the 25 --val rows also chose {out}'s epoch in delta-train (its --val {val}): the "
            f"certificate is optimistic on those; remove them from --val") in p.stderr
    # the record goes on in what delta-tune writes, which may be the very file it was read from
    assert json.loads((d / "part.json").read_text())["tuning"]["early_stopping"] == spec.tuning["early_stopping"]


@needs_arm_and_qemu
def test_convert_with_delta_on_cortex_m55_qemu(gru):
    # Unicorn has no cortex-m55: the dense reference boots as a second board image and the
    # two are compared by QEMU's instruction counts (this once failed with 'cannot run under Unicorn')
    model, val, d, ir = gru
    if not (d / "delta2.json").exists():
        test_convert_with_delta_report(gru)
    out = d / "m55"
    p = cli("rnnskip-convert", model, "--delta", d / "delta2.json", "--data", val, "--out", out,
            "--board", "mps3-an547", "--emulator", "qemu", "--emulate-max", "6")
    assert p.returncode == 0, p.stderr
    sec = json.loads((out / "report.json").read_text())["delta"]
    e = sec["emulated"]
    assert e["cycles_per_inference"] == {"dense": None, "delta": None} and "no cycle model" in e["cycles_note"]
    ins = e["instructions_per_inference"]
    assert ins["dense"] > 0 and ins["delta"] > 0 and e["sequences"] == 6
    assert e["reduction"]["instructions"]["x_fewer"] == pytest.approx(ins["dense"] / ins["delta"])
    assert e["reduction"]["cycles"] is None and e["dense_device_matches_golden"]
    assert "delta instr. / inf" in p.stdout
    # more instructions with the method than without: said, as the cycles are where a cycle model exists (a user
    # check saw 317k -> 360k on the M55 and no note)
    notes = [l for l in p.stderr.splitlines() if "executes more instructions" in l]
    assert notes == ([f"note: --delta executes more instructions here: {ins['delta']:,.0f} per inference against "
                      f"{ins['dense']:,.0f} for the same model without it ({ins['delta'] / ins['dense']:.2f}x; no "
                      f"cycle model on this core); its per-step work costs more than the steps or weight columns it "
                      f"saves on these sequences"] if ins["delta"] > ins["dense"] else [])


def test_tune_refuses_a_regression_head(k2_zoo, tmp_path):
    """A budget on class predictions means nothing for a regression head, labelled or not."""
    e = k2_zoo.models["feat_lstm"]
    from rnnskip.pipeline import import_model
    ir = import_model(Path(e.files["h5"]))
    x = np.random.default_rng(0).normal(0, 1, (30, 6, ir.input.features)).astype(np.float32)
    np.savez(tmp_path / "u.npz", x=x)
    p = cli("rnnskip", "delta-tune", e.files["h5"], "--val", tmp_path / "u.npz", "--calib", tmp_path / "u.npz",
            "--max-disagreement", "5", "--out", tmp_path / "r.json")
    one_line_error(p, "must be a classifier", "these are missing")
    assert not (tmp_path / "r.json").exists()
    # with integer labels its two linear outputs are a classifier's logits (argmax), as rnnskip_class reads them
    from rnnskip.reference import FloatModel
    y = np.argmax(FloatModel(ir).predict(x), 1)
    np.savez(tmp_path / "l.npz", x=x, y=y)
    p = cli("rnnskip", "delta-tune", e.files["h5"], "--val", tmp_path / "l.npz", "--max-loss", "50", "--grid", "0,4",
            "--cell-grid", "", "--out", tmp_path / "r.json")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "r.json").read_text())["tuning"]["accuracy_dense_int8"] > 0.5


def test_logits_model_labels_and_regression_targets(k2_zoo, tmp_path):
    """A model with several linear outputs: integer-valued float labels [N] are class indices (its width rules
    out a one-value regression; the scoring crashed on them), other floats [N] are refused in one line, and
    regression targets [N, K] with --delta convert with the section's error in the outputs' units (the delta
    section crashed on them after both emulations; then they were refused before any work)."""
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    e = k2_zoo.models["feat_lstm"]
    ir = import_model(Path(e.files["h5"]))
    x = np.random.default_rng(0).normal(0, 1, (12, 6, ir.input.features)).astype(np.float32)
    probs = FloatModel(ir).predict(x)
    np.savez(tmp_path / "f.npz", x=x, y=np.argmax(probs, 1).astype(np.float32))
    p = cli("rnnskip-convert", e.files["h5"], "--data", tmp_path / "f.npz", "--out", tmp_path / "o1", "--emulate-max",
            "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "o1" / "report.json").read_text())["accuracy"]["float"] == 1.0
    np.savez(tmp_path / "g.npz", x=x, y=np.argmax(probs, 1) + 0.5)
    one_line_error(cli("rnnskip-convert", e.files["h5"], "--data", tmp_path / "g.npz", "--out", tmp_path / "o2"),
                   "holds one non-integer float per sequence, but the model has 2 outputs")
    np.savez(tmp_path / "r.npz", x=x, y=probs.astype(np.float32))
    DeltaSpec([2], [2]).save(tmp_path / "d.json", ir)
    p = cli("rnnskip-convert", e.files["h5"], "--data", tmp_path / "r.npz", "--delta", tmp_path / "d.json",
            "--out", tmp_path / "o3", "--emulate-max", "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    sec = json.loads((tmp_path / "o3" / "report.json").read_text())["delta"]
    assert sec["accuracy"]["delta_int8"] is None and sec["error"]["values"] == 12 * 2
    assert "within_tolerance" not in sec   # no tolerance in a hand-written thresholds file
    assert not (tmp_path / "o2").exists()


@needs_arm
def test_convert_with_delta_on_a_one_output_linear_model(tmp_path):
    """A one-output linear model with --delta (refused, as no classifier, until regression models had a delta
    section): its y, integer counts or floats, are regression targets, as the report's own scoring reads them, and
    the section measures the outputs' error; integer labels 0 and 1 make it a binary classifier on its logit
    (tests/test_binary_logit.py), said in a note, with accuracies."""
    k = pytest.importorskip("tf_keras")
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import import_model
    m = k.Sequential([k.layers.Input((6, 3)), k.layers.LSTM(4), k.layers.Dense(1)])
    m.save(tmp_path / "reg.h5")
    x = np.random.default_rng(0).normal(0, 1, (8, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "i.npz", x=x, y=np.arange(8) % 3)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(8) / 8.0)
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(8) % 2)
    DeltaSpec([2], [2]).save(tmp_path / "d.json", import_model(tmp_path / "reg.h5"))
    for data in ("i.npz", "f.npz"):
        p = cli("rnnskip-convert", tmp_path / "reg.h5", "--data", tmp_path / data, "--delta", tmp_path / "d.json",
                "--out", tmp_path / data[0], "--emulate-max", "2", "--workers", "1")
        assert p.returncode == 0, p.stderr
        rep = json.loads((tmp_path / data[0] / "report.json").read_text())
        sec = rep["delta"]
        assert rep["accuracy"] is None and rep["error"]["values"] == 8
        assert sec["accuracy"]["delta_int8"] is None and sec["error"]["values"] == 8
        assert "delta error int8" in p.stdout and "delta accuracy" not in p.stdout
    p = cli("rnnskip-convert", tmp_path / "reg.h5", "--data", tmp_path / "b.npz", "--delta", tmp_path / "d.json",
            "--out", tmp_path / "b", "--emulate-max", "2", "--workers", "1")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert rep["accuracy"]["n"] == 8 and rep["delta"]["accuracy"]["delta_int8"] is not None
    assert "scored as a binary classifier on its logit (class 1 where it is above 0)" in p.stdout + p.stderr


def test_thresholds_are_tied_to_the_whole_model(gru):
    """A delta.json certified on one model is refused for a model with the same recurrent weights and another
    head (the budget was measured through that head); files written before the key existed still load."""
    import copy

    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.errors import RnnskipError
    model, val, d, ir = gru
    spec = DeltaSpec([2], [4])
    js = spec.to_json(ir)
    other = copy.deepcopy(ir)
    other.head[-1].kernel = other.head[-1].kernel * 1.3
    with pytest.raises(RnnskipError, match="same recurrent weights but another head or input stage"):
        DeltaSpec.from_json(js).check_model(other)
    del js["model"]["model_sha256"]
    DeltaSpec.from_json(js).check_model(other)


def test_thresholds_are_tied_to_the_output_activation(gru):
    """The same weights whose outputs go through another activation (log_softmax for softmax: a --tolerance in
    other units) refuse the file in one line; a file written before the key existed is not checked for it."""
    import copy

    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.errors import RnnskipError
    model, val, d, ir = gru
    js = DeltaSpec([2], [4]).to_json(ir)
    assert js["model"]["output_activation"] == "softmax"
    other = copy.deepcopy(ir)
    other.head[-1].activation = "log_softmax"
    with pytest.raises(RnnskipError) as e:
        DeltaSpec.from_json(js).check_model(other, "t.json")
    assert str(e.value) == ("t.json was made for a model whose outputs go through softmax, but this "
                            "model's go through log_softmax (same weights, other output units: its budget is not "
                            "this model's); run 'rnnskip delta-tune' on this model")
    del js["model"]["output_activation"]
    DeltaSpec.from_json(js).check_model(other)


def test_thresholds_are_matched_to_layers_by_name(gru, tmp_path):
    """Each threshold applies to the layer of its position; a file whose names disagree (entries reordered,
    or written for another model's layers) is refused in one line rather than applied to the wrong layers. The
    same weights under other names altogether (another ONNX exporter's) are the same model: accepted."""
    model, val, d, ir = gru
    from rnnskip.delta.spec import DeltaSpec
    DeltaSpec([2], [4]).save(tmp_path / "ok.json", ir)
    DeltaSpec.load(tmp_path / "ok.json").check_model(ir)
    js = json.loads((tmp_path / "ok.json").read_text())
    js["thresholds"][0]["layer"] = "node_gru__2"        # the fingerprints say it is this model
    DeltaSpec.from_json(js).check_model(ir)
    js["thresholds"][0]["layer"] = "gru_from_another_model"
    del js["model"]["model_sha256"]                       # nothing says which model it was written for
    (tmp_path / "bad.json").write_text(json.dumps(js))
    p = cli("rnnskip-convert", model, "--delta", tmp_path / "bad.json", "--data", val, "--out", tmp_path / "o")
    one_line_error(p, "names its thresholds' layers ['gru_from_another_model'], but model",
                   f"has ['{ir.rnn_layers[0].name}']")
    assert not (tmp_path / "o").exists()


def test_reordered_threshold_entries_are_refused_even_for_the_same_model():
    """Names of this model's layers in another order are entries moved by hand: refused, although the fingerprints
    are this model's (only other names altogether are an exporter's renaming)."""
    from random_models import random_ir

    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.errors import RnnskipError
    ir = random_ir("feat-lstm-lstm", seed=1)
    js = DeltaSpec([2, 3], [4, 5]).to_json(ir)
    names = [t["layer"] for t in js["thresholds"]]
    js["thresholds"] = js["thresholds"][::-1]
    with pytest.raises(RnnskipError, match=re.escape(f"names its thresholds' layers {names[::-1]}, but model")):
        DeltaSpec.from_json(js).check_model(ir)


def test_certification_rows_do_not_steer_the_candidates(gru, unlabelled):
    """Data hygiene: the candidate sequence depends on the selection half only - changing every
    certification row leaves it as it was (only the certificate changes)."""
    model, val, d, ir = gru
    from rnnskip.certify import split_rows
    from rnnskip.datasets import Dataset, load_npz
    from rnnskip.delta.tune import certified_tune
    from rnnskip.pipeline import quantize_model
    un = load_npz(str(unlabelled), ir, labels=False)
    qm, _ = quantize_model(ir, load_npz(str(val), ir), progress=False)
    _, cal_rows = split_rows(len(un), 0)
    x2 = un.x.copy()
    rng = np.random.default_rng(7)
    x2[cal_rows] = np.where(x2[cal_rows] == ir.input.mask_value, x2[cal_rows],
                            rng.normal(0, 2.0, x2[cal_rows].shape)).astype(np.float32)
    other = Dataset(x=x2, y=None, lengths=un.lengths)
    kw = dict(max_disagreement=10.0, confidence=0.8, grid=(0, 2, 8, 32), cell_grid=())
    a, b = certified_tune(ir, qm, un, **kw), certified_tune(ir, qm, other, **kw)
    assert a.extra["path"] == b.extra["path"] and a.extra["path"]
    assert a.certificate.as_dict() != b.certificate.as_dict()


@pytest.fixture(scope="module")
def nudged(gru):
    """The fixture's GRU with its head's weights nudged: a stand-in for a delta-trained model
    whose dense outputs moved away from the model it was fine-tuned from."""
    import tf_keras as keras
    model, val, d, ir = gru
    m = keras.models.load_model(model, compile=False)
    w = m.layers[-1].get_weights()
    rng = np.random.default_rng(3)
    m.layers[-1].set_weights([w[0] + rng.normal(0, 0.6, w[0].shape).astype(np.float32), *w[1:]])
    m.save(d / "nudged.h5")
    return d / "nudged.h5"


def test_delta_tune_baseline_is_the_reference(gru, unlabelled, nudged):
    """--baseline ORIGINAL: the budget is measured against ORIGINAL's dense int8 model. The model as
    its own baseline certifies exactly what it does without one; the nudged model, which disagrees
    with the original on more rows than the budget, is certified against itself but refused against
    the original, in one line, with nothing written."""
    model, val, d, ir = gru
    from rnnskip.delta.cli import run_delta_tune
    args = dict(max_loss=None, calib=val, grid=[0, 2, 8, 32], cell_grid=[], max_disagreement=10, confidence=0.8,
                progress=False, log=lambda s: None, warn=lambda s: None)
    own = run_delta_tune(model, unlabelled, out=d / "own.json", **args)
    same = run_delta_tune(model, unlabelled, out=d / "same.json", baseline=model, **args)
    assert same["thresholds"] == own["thresholds"]
    assert same["tuning"]["certified"] == own["tuning"]["certified"] and own["tuning"]["certified"]["certified"]
    assert same["tuning"]["baseline"] == str(model) and own["tuning"]["baseline"] is None
    assert same["tuning"]["reference"] == "baseline int8" and own["tuning"]["reference"] == "int8"
    # paired (labelled rows): the same, and the model's own dense accuracy is reported next to the baseline's
    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.reference import FloatModel
    z = np.load(unlabelled)
    save_npz(str(d / "labelled.npz"), Dataset(x=z["x"], y=np.argmax(FloatModel(ir).predict(z["x"], z["lengths"]), 1),
                                              lengths=z["lengths"]))
    paired = dict(args, max_disagreement=None, max_loss=5)
    own = run_delta_tune(model, d / "labelled.npz", out=d / "own_p.json", **paired)["tuning"]
    same = run_delta_tune(model, d / "labelled.npz", out=d / "same_p.json", baseline=model, **paired)["tuning"]
    assert same["certified"] == own["certified"] and own["certified"]["certified"]
    assert same["accuracy_dense_int8"] == own["accuracy_dense_int8"] == same["accuracy_model_dense_int8"]
    # the nudged model against the original: its disagreement with it, measured by hand, is above 10%
    from rnnskip.certify import split_rows
    from rnnskip.datasets import load_npz
    from rnnskip.pipeline import import_model, quantize_model
    from rnnskip.quant.golden import GoldenModel, predict_classes
    un = load_npz(str(unlabelled), ir, labels=False)
    sel = un.subset(split_rows(len(un), 0)[0])
    va = load_npz(str(val), ir)

    def classes(path):
        qm, _ = quantize_model(import_model(path), va, progress=False)
        return predict_classes(GoldenModel(qm).run(sel.x, sel.lengths)[0], qm.output_activation)
    assert np.mean(classes(nudged) != classes(model)) > 0.10
    assert run_delta_tune(nudged, unlabelled, out=d / "nudged.json", **args)["tuning"]["certified"]["certified"]
    p = cli("rnnskip", "delta-tune", nudged, "--val", unlabelled, "--calib", val, "--max-disagreement", "10",
            "--confidence", "0.8", "--grid", "0,2,8,32", "--cell-grid", "", "--baseline", model,
            "--out", d / "never.json")
    one_line_error(p, "no thresholds keep disagreement with the baseline's dense int8 model within 10% of the 1000 "
                   f"selection sequences; the model's own dense int8 model disagrees with it on "
                   f"{100 * np.mean(classes(nudged) != classes(model)):.1f}%")
    assert not (d / "never.json").exists()


def test_delta_tune_baseline_must_match(gru, k2_zoo):
    model, val, d, ir = gru
    base = ("rnnskip", "delta-tune", model, "--val", val, "--out", d / "never.json", "--baseline")
    one_line_error(cli(*base, k2_zoo.models["emb_gru_ra_sigmoid"].files["h5"]),
                   "reads token ids", "but the model reads features", "give the model it was fine-tuned from")
    one_line_error(cli(*base, d / "missing.h5"), "missing.h5")
    # the same layers behind another Masking value: the two would run different steps
    import tf_keras as keras
    m = keras.models.load_model(model, compile=False)
    cfg = m.get_config()
    masking = next(c for c in cfg["layers"] if c["class_name"] == "Masking")
    masking["config"]["mask_value"] = float(masking["config"]["mask_value"]) + 1.0
    other = keras.Sequential.from_config(cfg)
    other.set_weights(m.get_weights())
    other.save(d / "other_mask.h5")
    one_line_error(cli(*base, d / "other_mask.h5"), f"has Masking value {ir.input.mask_value + 1.0} but the model "
                   f"{ir.input.mask_value}: the two would run different steps")
    assert not (d / "never.json").exists()


def test_delta_tune_select_must_be_rows_the_certificate_never_saw(gru, tmp_path):
    """--select equal to --val (or a byte copy) would choose the thresholds on the rows that certify them,
    which the Learn-then-Test guarantee excludes: refused before any work; rows shared by two files: a warning."""
    model, val, d, ir = gru
    import shutil
    shutil.copy(val, tmp_path / "copy.npz")
    for sel in (val, tmp_path / "copy.npz"):
        one_line_error(cli("rnnskip", "delta-tune", model, "--val", val, "--select", sel, "--out",
                           tmp_path / "s.json"), f"--select {sel} holds the same rows as --val {val}")
    from rnnskip.datasets import load_npz, save_npz
    va = load_npz(str(val), ir)
    part = va.subset(np.arange(10))
    save_npz(str(tmp_path / "part.npz"), part)
    p = cli("rnnskip", "delta-tune", model, "--val", val, "--select", tmp_path / "part.npz", "--max-loss", "50",
            "--grid", "0,4", "--cell-grid", "", "--out", tmp_path / "s.json")
    assert p.returncode == 0, p.stderr
    assert ("warning: 10 of the 40 --val rows also appear in --select: the certificate holds for rows the "
            "selection never saw") in p.stderr
    assert not (tmp_path / "s.json").with_name(".s.json.partial").exists()


def test_delta_budgets_and_thresholds_beyond_their_range(gru, tmp_path):
    """A budget no certificate can mean (infinite, NaN, above 100) and thresholds beyond what an int8 change
    or an int16 pre-activation can reach are refused before any output (they were printed as a promise, or
    silently clamped to 255 while the run printed the value given)."""
    model, val, d, ir = gru
    base = ("rnnskip", "delta-tune", model, "--val", val, "--out", tmp_path / "b.json")
    for value in ("inf", "nan", "1e9"):
        p = cli(*base, "--max-loss", value)
        one_line_error(p, "--max-loss", "must be between 0 and 100 (accuracy points)")
        assert p.stdout == ""
    one_line_error(cli(*base, "--grid", "0,300"), "--grid '0,300': 300 is above 255, which already never transmits")
    one_line_error(cli(*base, "--cell-grid", "70000"), "--cell-grid '70000': 70000 is above 65536")
    one_line_error(cli("rnnskip", "delta-train", model, "--train", val, "--val", val, "--out", tmp_path / "t.h5",
                       "--theta-x", "1000"), "delta-train --theta-x: threshold 1000.0 is above 255")
    (tmp_path / "b_pareto.png").mkdir()
    one_line_error(cli(*base), f"{tmp_path / 'b_pareto.png'} is a folder, where the Pareto plot of --out")


def test_delta_train_refusals_before_training(gru, tmp_path):
    """Its thresholds file next to --out is checked first (a user's JSON was overwritten; a folder there
    failed after the whole training); a model with multi-label sigmoid outputs is refused in one line
    (TensorFlow failed inside fit; a per-step model trains: tests/test_delta_per_step.py)."""
    model, val, d, ir = gru
    base = ("rnnskip", "delta-train", model, "--train", val, "--val", val, "--epochs", "1")
    (tmp_path / "mine.delta.json").write_text('{"my": "notes"}')
    one_line_error(cli(*base, "--out", tmp_path / "mine.h5"),
                   f"--out {tmp_path / 'mine.h5'} (or mine.delta.json next to it) exists and is not an earlier "
                   f"delta-train output")
    assert (tmp_path / "mine.delta.json").read_text() == '{"my": "notes"}'
    (tmp_path / "dir.delta.json").mkdir()
    one_line_error(cli(*base, "--out", tmp_path / "dir.h5"), "is a folder, where the thresholds of --out")
    import tf_keras as keras
    m = keras.Sequential([keras.layers.Input((7, 3)), keras.layers.LSTM(4),
                          keras.layers.Dense(3, activation="sigmoid")])
    m.save(tmp_path / "multi.h5")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(20, 7, 3)).astype(np.float32), y=rng.integers(0, 3, 20))
    for name, needle in (("multi.h5", "3 independent sigmoid outputs (multi-label)"),):
        one_line_error(cli("rnnskip", "delta-train", tmp_path / name, "--train", tmp_path / "d.npz", "--val",
                           tmp_path / "d.npz", "--out", tmp_path / "o.h5"), needle)
    assert not (tmp_path / "o.h5").exists()


def test_delta_train_loss_is_the_heads_own(gru):
    """A linear head holds logits: its loss is the cross-entropy from logits (it was trained on the
    probabilities' loss with negative logits clipped); softmax and sigmoid heads: from probabilities."""
    import tf_keras as keras

    from rnnskip.delta.train import classifier_loss
    from rnnskip.pipeline import import_model
    model, val, d, ir = gru
    logits = import_model(model)
    logits.head[-1].activation = "linear"
    for m, cls, from_logits in ((logits, keras.losses.SparseCategoricalCrossentropy, True),
                                (ir, keras.losses.SparseCategoricalCrossentropy, False)):
        loss = classifier_loss(keras, m)
        assert isinstance(loss, cls) and loss.get_config()["from_logits"] is from_logits


@pytest.mark.parametrize("edit,needle", [
    (lambda j: j.update(tuning=[1, 2]), "'tuning' is a list, not an object"),
    (lambda j: j["tuning"].update(certified="yes"), "'tuning.certified' is not a certificate"),
    (lambda j: j["tuning"].update(calibration_lengths=["x"]), "'tuning.calibration_lengths' is not a list"),
    (lambda j: j.update(model="x"), "'model' is a str, not an object"),
    (lambda j: j["model"].update(layers="gru"), "'model.layers' is not a list of {kind, units, input_dim}"),
    (lambda j: j.update(int8_grid=j["int8_grid"] * 2), "int8_grid lists 2 layers but the thresholds 1"),
])
def test_damaged_thresholds_file_one_line_before_any_work(gru, tmp_path, edit, needle):
    model, val, d, ir = gru
    out = tmp_path / "t.json"
    assert cli("rnnskip", "delta-tune", model, "--val", val, "--max-loss", "50", "--grid", "0,4", "--cell-grid", "",
               "--out", out).returncode == 0
    j = json.loads(out.read_text())
    edit(j)
    out.write_text(json.dumps(j))
    one_line_error(cli("rnnskip-convert", model, "--delta", out, "--data", val, "--out", tmp_path / "never"), needle)
    assert not (tmp_path / "never").exists()


def test_delta_train_warns_when_its_thresholds_are_steps_of_another_grid(gru, unlabelled, tmp_path):
    """--delta FILE with another --calib: the file's int8 steps are other real thresholds here, as
    rnnskip-convert warns (delta-train trained at them silently)."""
    model, val, d, ir = gru
    assert cli("rnnskip", "delta-tune", model, "--val", val, "--max-loss", "50", "--grid", "0,4", "--cell-grid", "",
               "--out", tmp_path / "t.json").returncode == 0
    p = cli("rnnskip", "delta-train", model, "--train", val, "--val", val, "--delta", tmp_path / "t.json",
            "--calib", unlabelled, "--epochs", "1", "--out", tmp_path / "m.h5")
    assert p.returncode == 0, p.stderr
    warn = [l for l in p.stderr.splitlines() if l.startswith("warning: --delta")]
    assert len(warn) == 1 and "its thresholds are int8 steps of another grid" in warn[0], p.stderr
    assert f"(--calib {val})" in warn[0]


def test_delta_train_refuses_a_layer_normalisation_between_recurrent_layers(tmp_path):
    """delta-train rebuilds a plain recurrent Keras model, without a LayerNormalization between the layers (the
    conversion folds it into the later layer): refused before any data is read, naming the layer and delta-tune."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.delta.train import run_delta_train
    from rnnskip.errors import RnnskipError
    m = keras.Sequential([keras.layers.Input((None, 4)), keras.layers.LSTM(5, return_sequences=True),
                          keras.layers.LayerNormalization(), keras.layers.GRU(3, name="gru_after"),
                          keras.layers.Dense(2, activation="softmax")])
    m.save(tmp_path / "ln.h5")
    with pytest.raises(RnnskipError) as e:
        run_delta_train(str(tmp_path / "ln.h5"), tmp_path / "absent_train.npz", tmp_path / "absent_val.npz",
                        tmp_path / "out.h5")
    assert str(e.value) == ("layer 'gru_after' layer-normalises its input (a LayerNormalization between recurrent "
                            "layers), which the model delta-train rebuilds does not have; use delta-tune (no "
                            "retraining) on this model")
    assert not (tmp_path / "out.h5").exists()


def test_delta_tune_replaces_only_its_own_plot(gru, tmp_path):
    """<stem>_pareto.png next to --out is replaced when an earlier delta-tune wrote it (its PNG text says so), not
    when it is the user's file (a user check: an existing fresh_pareto.png was overwritten without a word)."""
    from PIL import Image
    model, val, d, ir = gru
    args = ("rnnskip", "delta-tune", model, "--val", val, "--max-loss", "5", "--grid", "0,8", "--cell-grid", "")
    for _ in range(2):   # the second run replaces the first one's plot
        p = cli(*args, "--out", tmp_path / "a.json")
        assert p.returncode == 0, p.stderr
    with Image.open(tmp_path / "a_pareto.png") as im:
        assert im.info.get("Software") == "rnnskip delta-tune"
    (tmp_path / "mine_pareto.png").write_bytes(b"my own figure")
    one_line_error(cli(*args, "--out", tmp_path / "mine.json"),
                   f"{tmp_path / 'mine_pareto.png'} exists and delta-tune did not write it; the Pareto plot of --out "
                   f"{tmp_path / 'mine.json'} would overwrite it: choose another --out or move the file")
    assert (tmp_path / "mine_pareto.png").read_bytes() == b"my own figure" and not (tmp_path / "mine.json").exists()


@pytest.mark.keras
def test_linear_logits_take_their_classes_from_the_calibration_labels(tmp_path):
    """A PyTorch-style classifier ends in linear logits; with unlabelled --val, --calib's integer labels say it
    classifies (a user check found --max-disagreement refused there, told to give --max-disagreement); with no
    labels anywhere it stays refused in one line."""
    keras = pytest.importorskip("tf_keras")
    rng = np.random.default_rng(4)
    m = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(6), keras.layers.Dense(3)])
    m.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in m.weights])
    m.save(tmp_path / "logits.h5")
    x = np.cumsum(rng.normal(0, 0.5, (240, 10, 3)), axis=1).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=x[:40], y=np.argmax(m(x[:40]), 1))
    np.savez(tmp_path / "train_unlabelled.npz", x=x[:40])
    np.savez(tmp_path / "val.npz", x=x[40:])
    base = ("rnnskip", "delta-tune", tmp_path / "logits.h5", "--val", tmp_path / "val.npz", "--max-disagreement",
            "50", "--grid", "0,8", "--cell-grid", "", "--out", tmp_path / "d.json")
    p = cli(*base, "--calib", tmp_path / "train.npz")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "d.json").read_text())["format"] == "rnnskip-delta-1"
    one_line_error(cli(*base[:-1], tmp_path / "e.json", "--calib", tmp_path / "train_unlabelled.npz"),
                   "a model with 3 linear outputs must be a classifier trained on logits", "missing")
    one_line_error(cli(*base[:-1], tmp_path / "e.json"), "--calib is required with unlabelled --val")
    assert not (tmp_path / "e.json").exists()
