"""Time-step skipping from the command line: train-predictor, rnnskip-convert --predictor
and --skip auto, the report's skip section, and one-line errors with nothing written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import needs_arm, needs_arm_and_qemu

from rnnskip.cli import convert_cmd, main
from rnnskip.datasets import Dataset, save_npz

pytestmark = pytest.mark.keras

SKIP_KEYS = {"method", "predictor", "skip_rate", "oracle_skip_rate", "macs_per_inference", "mac_reduction",
             "accuracy", "emulated", "oracle"}


def _one_error(output: str) -> str:
    """The single 'error:' line (progress lines may precede it); '' if not exactly one."""
    errs = [l for l in output.splitlines() if l.startswith("error:")]
    return errs[0] if len(errs) == 1 and output.rstrip().splitlines()[-1] == errs[0] else ""


def _skip_auto(model, paths, out, *, val=None, max_loss="60", emulate_max="2", traffic_sample="0"):
    """convert --skip auto with a tree predictor on the fixture's data: the invocation four tests share."""
    return CliRunner().invoke(convert_cmd, [model, "--skip", "auto", "--train", paths["train"], "--val",
                                            str(val or paths["val"]), "--max-loss", max_loss, "--predictor-type",
                                            "tree", "--data", paths["test"], "--out", str(out), "--emulate-max",
                                            emulate_max, "--traffic-sample", traffic_sample, "--workers", "1"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pytest.importorskip("tf_keras")
    import keras_models

    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    from rnnskip.skip.features import classes
    d = tmp_path_factory.mktemp("skipcli")
    zoo = keras_models.build_zoo("k2", d / "zoo", names=["emb_lstm_softmax", "emb_gru_ra_sigmoid"], refused=False)
    model = zoo.models["emb_lstm_softmax"].files["h5"]
    other = zoo.models["emb_gru_ra_sigmoid"].files["h5"]
    ir = import_model(model)
    rng = np.random.default_rng(0)
    n, T = 1160, 10
    L = rng.integers(3, T + 1, n).astype(np.int32)
    x = rng.integers(1, ir.input.vocab, (n, T)).astype(np.int32)
    x[np.arange(T)[None, :] >= L[:, None]] = 0
    y = classes(FloatModel(ir).predict(x, L))       # labels = the model's own answers
    paths = {}
    # 1,000 validation sequences: 500 choose the threshold, 500 certify it
    for name, sl in (("train", slice(0, 160)), ("val", slice(160, 1160)), ("test", slice(160, 200))):
        paths[name] = str(d / f"{name}.npz")
        save_npz(paths[name], Dataset(x=x[sl], y=y[sl], lengths=L[sl]))
    paths["test01"] = str(d / "test01.npz")   # labels valid for the 1-unit sigmoid model too
    save_npz(paths["test01"], Dataset(x=x[:40], y=y[:40] % 2, lengths=L[:40]))
    res = CliRunner().invoke(main, ["train-predictor", model, "--train", paths["train"], "--val", paths["val"],
                                    "--max-loss", "60", "--out", str(d / "pred"), "--type", "tree", "--rounds", "1",
                                    "--calib", paths["train"]])
    assert res.exit_code == 0, res.output
    return d, model, other, paths


def test_train_predictor_writes_folder(setup):
    d, model, other, paths = setup
    meta = json.loads((d / "pred" / "predictor.json").read_text())
    assert meta["type"] == "tree" and meta["model"]["units"] == [8]
    assert meta["params_ratio"] <= 0.03 + 1e-9
    assert "11,663,814" in meta["notice"]
    assert (d / "pred" / "predictor.npz").is_file() and (d / "pred" / "pareto_val.png").is_file()
    # the decision threshold is certified on the 500 validation rows the training never saw
    c = meta["certified"]
    assert c["certified"] and c["loss"] == "paired" and c["max_loss_points"] == 60 and c["confidence"] == 0.9
    assert c["calibration_n"] == 500 and c["point_estimate"] <= c["upper_bound"] <= 60
    assert meta["threshold"] in [p["threshold"] for p in meta["calibration"]["points"]]
    assert len(meta["calibration_lengths"]) == 500


def test_train_predictor_certification_refusals_and_unlabelled(setup, tmp_path):
    d, model, other, paths = setup
    r = CliRunner()
    out = tmp_path / "p"
    base = ["train-predictor", model, "--train", paths["train"], "--out", str(out), "--type", "tree", "--rounds", "0"]
    res = r.invoke(main, base + ["--val", paths["val"], "--max-loss", "60", "--confidence", "1.5"])
    assert res.exit_code == 2 and "--confidence 1.5 must be in (0, 1)" in _one_error(res.output) and not out.exists()
    res = r.invoke(main, base + ["--val", paths["val"], "--max-loss", "60", "--max-disagreement", "5"])
    assert res.exit_code == 2 and "give one budget" in _one_error(res.output)
    # 80 validation sequences (40 certify): too few to certify this predictor, one line, nothing written
    with np.load(paths["val"]) as v:
        np.savez(tmp_path / "val80.npz", x=v["x"][:80], y=v["y"][:80], lengths=v["lengths"][:80])
    res = r.invoke(main, base + ["--val", str(tmp_path / "val80.npz"), "--max-loss", "50"])
    assert res.exit_code == 2 and "nothing certified" in _one_error(res.output) and not out.exists()
    # above what 40 rows can certify: a smaller budget, down to that, trains another predictor that may certify
    assert re.search(r"or another budget: each budget trains its own predictor, so a larger or a smaller one \(down to "
                     r"\d+\.\d\d points\) can certify where this one did not$", _one_error(res.output))
    # a disagreement budget 40 rows cannot certify whatever the predictor: said before any training
    res = r.invoke(main, base + ["--val", str(tmp_path / "val80.npz"), "--max-disagreement", "2"])
    line = _one_error(res.output)
    assert res.exit_code == 2 and line.startswith("error: nothing certified: 40 certification sequences (half of "
                                                  "--val) certify no budget below ") and not out.exists()
    assert "whatever the predictor (checked before training it)" in line and "[skip] oracle" not in res.output
    # a loss budget below that bound: a predictor that turns more rows right than wrong certifies it, so the
    # training runs, with a note saying what it takes
    res = r.invoke(main, base + ["--val", str(tmp_path / "val80.npz"), "--max-loss", "2"])
    assert "note: 40 certification sequences (half of --val) certify a loss below " in res.output
    assert "only for a predictor that turns more of them right than wrong" in res.output
    assert "[skip] oracle" in res.output and (res.exit_code == 0) == out.exists()
    if "nothing certified" in _one_error(res.output):   # below what the rows certify unchanged: a larger budget
        line = _one_error(res.output)
        assert line.endswith("or a larger budget") and line.count("certify no budget below") == 1, line
    # unlabelled --val with --max-disagreement: the dense model's classes are the reference
    with np.load(paths["val"]) as v:
        np.savez(tmp_path / "unlabelled.npz", x=v["x"], lengths=v["lengths"])
    res = r.invoke(main, base + ["--val", str(tmp_path / "unlabelled.npz"), "--max-disagreement", "60"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "predictor.json").read_text())
    c = meta["certified"]
    assert c["loss"] == "disagreement" and c["certified"] and c["upper_bound"] <= 60
    # what its "accuracy" measures there, and the summary's unit
    assert meta["measure"] == "agreement with the dense model" and meta["max_disagreement_percent"] == 60
    assert "% disagreement with the dense model (1 standard error" in res.output
    assert "note: --calib is the --val file" not in res.output
    res = r.invoke(main, base + ["--val", str(tmp_path / "unlabelled.npz"), "--max-loss", "60"])
    assert res.exit_code == 2 and "'y' is missing from" in _one_error(res.output)
    # --calib on the certifying rows: a note (outside the guarantee), as delta-tune gives
    res = r.invoke(main, base + ["--val", str(tmp_path / "unlabelled.npz"), "--max-disagreement", "60", "--calib",
                                 str(tmp_path / "unlabelled.npz")])
    assert res.exit_code == 0 and "note: --calib is the --val file, whose rows also certify the threshold" in res.output


def test_a_predictor_that_skips_too_little_to_pay_gets_a_note():
    """The threshold a folder ships skips fewer validation steps than its MACs per step cost: a note (a user
    shipped a certified predictor that skipped 0.0% and made the firmware 8% slower); the certified threshold's
    own skip rate counts when it differs from the selection's."""
    from rnnskip.skip.convert import unpaid_note
    meta = {"macs_per_step": 100, "val": {"skip_rate": 0.30}}
    assert unpaid_note(meta, 1000) is None
    meta["val"].update(certified_threshold_differs=True, certified_skip_rate=0.05)
    assert unpaid_note(meta, 1000) == (
        "note: the predictor skips 5.0% of the validation steps at its threshold, below the 10.0% at which its 100 "
        "MACs per step pay for themselves: it will cost more than it saves (rnnskip-convert --predictor compares "
        "the cycles); try another budget or --type")
    meta["val"]["certified_skip_rate"] = 0.1
    assert unpaid_note(meta, 1000) is None
    # skipping nothing never pays, not even for a tree, which has no MACs but runs before every step (a user's
    # --skip auto kept one that skipped 0.0%)
    for macs in (100, 0):
        meta.update(macs_per_step=macs)
        meta["val"]["certified_skip_rate"] = 0.0
        assert unpaid_note(meta, 1000) == (
            "note: the predictor skips none of the validation steps at its threshold, and it runs before every step: "
            "it will cost more than it saves (rnnskip-convert --predictor compares the cycles); try another budget or "
            "--type")


@needs_arm
def test_convert_with_predictor_report(setup):
    d, model, other, paths = setup
    out = d / "conv"
    res = CliRunner().invoke(convert_cmd, [model, "--predictor", str(d / "pred"), "--data", paths["test"],
                                           "--calib", paths["train"], "--out", str(out), "--emulate-max", "8",
                                           "--traffic-sample", "2", "--workers", "1"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0           # skip decisions included (flags compared)
    sk = rep["skip"]
    assert SKIP_KEYS <= set(sk)
    assert set(sk["predictor"]) >= {"type", "params", "params_ratio"}
    # calibrated and converted on the same --calib: the same int8 model, no warning
    assert sk["int8_grid"]["same"] and sk["int8_grid"]["calibrated"] == sk["int8_grid"]["deployed"]
    assert "warning: --predictor" not in res.output
    # the certificate travels with the folder; --data (the first 40 validation rows) is like the rows
    c = sk["certified"]
    assert c["certified"] and c["max_loss_points"] == 60 and c["data_check"]["p_value"] > 0.01
    assert f"loss <= 60 pt with 90% confidence on data like {paths['val']} (n=500)" in res.output
    assert set(sk["macs_per_inference"]) == {"dense", "skip", "predictor"}
    assert set(sk["accuracy"]) == {"dense_int8", "skip_int8"}
    e = sk["emulated"]
    assert e["cycles_per_inference"]["dense"] > 0 and e["cycles_per_inference"]["skip"] > 0
    assert e["flash_read_bytes_per_inference"]["dense"] > 0
    assert set(sk["oracle"]["accuracy"]) == {"dense_float", "skip_float"}
    assert e["dense_device_matches_golden"]
    assert sk["macs_per_inference"]["skip"] <= sk["macs_per_inference"]["dense"] + sk["macs_per_inference"]["predictor"]
    m = sk["macs_per_inference"]
    assert sk["mac_reduction"]["cut"] == pytest.approx(1 - m["skip"] / m["dense"])
    for p in sk["plots"]:
        assert (out / p).is_file()
    assert "steps skipped" in res.output
    # no line fitted through the steps run: a skipped step still costs the predictor (a user read the fit's 11,048
    # cycles/step against the dense model's 16,860 while the cycles per inference fell 0.2%)
    assert rep["emulation"]["cycles_per_step"] is None and rep["emulation"]["cycles_fixed"] is None
    assert rep["emulation"]["cycles_per_step_note"].startswith("not fitted: a skipped step still costs the predictor")


def test_predictor_on_another_int8_model_warns(setup, tmp_path):
    """A folder's threshold is calibrated and certified on the int8 model of train-predictor's --calib;
    another --calib at conversion gives another int8 model: one warning line naming the scale that differs."""
    from rnnskip.pipeline import import_model, load_data, quantize_model
    from rnnskip.quant.grid import grid_of
    from rnnskip.skip.convert import SkipSetup
    d, model, other, paths = setup
    ir = import_model(model)
    meta = json.loads((d / "pred" / "predictor.json").read_text())
    same, _ = quantize_model(ir, load_data(paths["train"], ir), progress=False)
    assert meta["int8_grid"] == grid_of(same)
    with np.load(paths["test"]) as z:   # a few short rows: other ranges, another grid
        save_npz(tmp_path / "few.npz", Dataset(x=z["x"][:3], y=None, lengths=np.minimum(z["lengths"][:3], 3)))
    for qm, warned in ((same, False), (quantize_model(ir, load_data(str(tmp_path / "few.npz"), ir, labels=False),
                                                      progress=False)[0], True)):
        lines = []
        s = SkipSetup.from_options(ir, predictor=str(d / "pred"))
        s.attach(ir, qm, tmp_path, note=lines.append)
        warns = [l for l in lines if l.startswith("warning: --predictor")]
        assert len(warns) == int(warned) and (s.grid_mismatch is not None) == warned
    assert re.search(r"its threshold was calibrated and certified on another int8 model \(layer '[^']+' "
                     r"(input|hidden) scale [0-9.e+-]+ there, [0-9.e+-]+ here\)", warns[0]), warns[0]
    assert warns[0].endswith("pass the --calib it was trained with, or train it again with this --calib")


@needs_arm
def test_convert_with_predictor_and_delta_names_baselines(setup):
    """--predictor with --delta: each section measures its method against the model with the other
    still on, and says so; a change that costs cycles prints as +x%, not --x%."""
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import import_model
    d, model, other, paths = setup
    DeltaSpec.uniform(1, 2, 2, ir=import_model(model)).save(d / "d22.json", import_model(model))
    out = d / "conv-both"
    res = CliRunner().invoke(convert_cmd, [model, "--predictor", str(d / "pred"), "--delta", str(d / "d22.json"),
                                           "--data", paths["test"], "--calib", paths["train"], "--out", str(out),
                                           "--emulate-max", "4", "--traffic-sample", "0", "--workers", "1"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0
    assert "delta thresholds on" in rep["skip"]["baseline"] and "skip predictor on" in rep["delta"]["baseline"]
    assert "skip baseline" in res.output and "delta baseline" in res.output and "(--" not in res.output
    # thresholds set by hand promise nothing, and the table says so
    assert re.search(r"delta budget +none: these thresholds were not certified \(set by hand or by delta-train\); "
                     r"'rnnskip delta-tune MODEL --val VAL' with a budget chooses certified ones\n", res.output)
    # the skip section's MACs are a dense model's steps, not the delta baseline's (a review saw them read as such)
    assert rep["skip"]["macs_per_inference"]["counted"].startswith("as dense steps") and \
        "counted" not in rep["delta"]["macs_per_inference"]
    mac_line = [line for line in res.output.splitlines() if "skip MAC / inference" in line][0]
    assert mac_line.endswith(f" (dense steps, {rep['skip']['n']:,} sequences)"), mac_line
    cyc_line = [line for line in res.output.splitlines() if "skip cycles / inf" in line][0]
    # the emulated figures are over the first 4 only, and so are the MACs it names
    assert re.search(r" \(4 emulated; MACs [-+]\d+\.\d%, \d+\.\d\dx (fewer|more) on them\)$", cyc_line), cyc_line
    # each was certified without the other: said once, and in both sections
    assert res.output.count("were each chosen and certified on the model without the other") == 1
    assert rep["skip"]["budget_note"].startswith("the skip predictor was chosen and certified on this model without "
                                                 "delta thresholds; the budgets are separate")
    assert "budget_note" in rep["delta"]


@needs_arm
def test_convert_skip_auto(setup):
    d, model, other, paths = setup
    out = d / "auto"
    res = _skip_auto(model, paths, out, emulate_max="4", traffic_sample="1")
    assert res.exit_code == 0, res.output
    assert (out / "predictor" / "predictor.json").is_file()
    rep = json.loads((out / "report.json").read_text())
    assert rep["skip"]["predictor"]["type"] == "tree" and rep["bitexact"]["mismatches"] == 0
    # the folder the report names is the one written, not the temporary folder it was trained in
    assert Path(rep["skip"]["predictor"]["folder"]).resolve() == (out / "predictor").resolve()
    assert ".partial-" not in json.dumps(rep) and ".partial-" not in res.output   # nor do its messages
    # what the trained predictor is and skips, as train-predictor says it
    assert re.search(r"^\[skip\] .*: \d+ params \(.*; validation \(selection half\): \d+\.\d% of steps skipped",
                     res.output, re.M), res.output


@needs_arm
def test_convert_skip_auto_that_would_not_pay_converts_dense(setup, tmp_path, monkeypatch):
    """--skip auto whose certified threshold skips too few steps to pay for the predictor (a user's skipped 0.0% and
    made the firmware 8% slower): one warning line, the dense model converted, the report says why."""
    from rnnskip.skip import convert as skip_convert
    d, model, other, paths = setup
    seen = []

    def unpaid(meta, step_macs):   # the rule itself is tested above; here: what --skip auto does with its answer
        seen.append((meta["macs_per_step"], step_macs))
        return "the predictor skips 0.0% of the validation steps at its threshold, below the 9.9% at which " \
               "its 7 MACs per step pay for themselves: it will cost more than it saves (...)"
    monkeypatch.setattr(skip_convert, "unpaid_reason", unpaid)
    out = tmp_path / "auto"
    res = _skip_auto(model, paths, out)
    assert res.exit_code == 0, res.output
    assert len(seen) == 1 and seen[0][1] > 0
    warn = [l for l in res.output.splitlines() if l.startswith("warning: --skip auto")]
    assert warn == ["warning: --skip auto: the predictor skips 0.0% of the validation steps at its threshold, below "
                    "the 9.9% at which its 7 MACs per step pay for themselves: it will cost more than it saves "
                    "(...); converting without skipping (the dense model)"]
    sk = json.loads((out / "report.json").read_text())["skip"]
    assert sk["attached"] is False and sk["why"].startswith("does not pay, converted without skipping: the predictor")
    assert not (out / "predictor").exists()
    assert "rnnskip_predict_skip" not in (out / "src" / "rnnskip_model.c").read_text()


@needs_arm
def test_convert_skip_auto_not_certified_converts_dense(setup, tmp_path):
    """--skip auto with too little validation data to certify the budget: one warning line,
    the dense model converted, the report's skip section says why - never an uncertified skip."""
    d, model, other, paths = setup
    with np.load(paths["val"]) as v:
        np.savez(tmp_path / "val80.npz", x=v["x"][:80], y=v["y"][:80], lengths=v["lengths"][:80])
    out = tmp_path / "auto"
    res = _skip_auto(model, paths, out, val=tmp_path / "val80.npz", max_loss="50")
    assert res.exit_code == 0, res.output
    warn = [l for l in res.output.splitlines() if l.startswith("warning: --skip auto")]
    assert len(warn) == 1 and "nothing certified" in warn[0] and "converting without skipping" in warn[0]
    rep = json.loads((out / "report.json").read_text())
    sk = rep["skip"]
    assert sk["attached"] is False and sk["certified"]["certified"] is False and sk["certified"]["calibration_n"] == 40
    assert "not certified, converted without skipping" in sk["why"] and "emulated" not in sk
    assert not (out / "predictor").exists() and rep["bitexact"]["mismatches"] == 0
    assert "rnnskip_predict_skip" not in (out / "src" / "rnnskip_model.c").read_text()   # no predictor in the C


@needs_arm
def test_convert_skip_auto_budget_not_met_converts_dense(setup, tmp_path):
    """--skip auto with a budget no skipping can meet (one-step sentences whose answer the zero
    state gets wrong, each of at most 12 words more than 5% of the rows, --max-loss 5, which their
    certifying half is large enough to certify): like 'not certified', one warning line that says
    why and how to get there, and the dense model converted."""
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    from rnnskip.skip.features import classes
    d, model, other, paths = setup
    fm = FloatModel(import_model(model))
    ids = np.arange(1, fm.ir.input.vocab, dtype=np.int32)[:, None]
    L = np.ones(len(ids), np.int32)
    pred = classes(fm.predict(ids, L))
    keep = pred != classes(fm.readout(fm.initial_state(1)))[0]
    assert keep.sum() >= 2   # the tiny vocabulary has few; each repeated 100 times
    rows = np.repeat(np.flatnonzero(keep), 100)
    save_npz(tmp_path / "one.npz", Dataset(x=ids[rows], y=pred[rows], lengths=L[rows]))
    out = tmp_path / "auto"
    res = _skip_auto(model, paths, out, val=tmp_path / "one.npz", max_loss="5")
    assert res.exit_code == 0, res.output
    warn = [l for l in res.output.splitlines() if l.startswith("warning: --skip auto")]
    assert len(warn) == 1 and "budget cannot be met" in warn[0] and "raise --max-loss" in warn[0]
    assert warn[0].endswith("; converting without skipping (the dense model)")
    sk = json.loads((out / "report.json").read_text())["skip"]
    assert sk["attached"] is False and "certified" not in sk and "emulated" not in sk
    assert sk["why"].startswith("budget not met, converted without skipping: the accuracy budget cannot be met: "
                                "even ideal (oracle) skipping loses more than 5 points")
    assert not (out / "predictor").exists()
    assert "rnnskip_predict_skip" not in (out / "src" / "rnnskip_model.c").read_text()


@pytest.mark.parametrize("args,msg", [
    (["--predictor", "{pred}", "--skip", "auto"], "either --predictor"),
    (["--predictor", "{pred}", "--skip", "off"], "--skip off turns skipping off but --predictor"),
    (["--skip", "auto", "--train", "{train}"], "needs --val, --max-loss (or --max-disagreement)"),
    (["--max-loss", "0.3"], "add --skip auto"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-loss", "-1"],
     "--max-loss -1 must be between 0 and 100"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-loss", "inf"],
     "--max-loss inf must be between 0 and 100"),
    (["--skip", "auto", "--train", "{val}", "--val", "{val}", "--max-loss", "1"], "holds the same rows as --val"),
    (["--predictor", "{pred}", "--max-loss", "0.5"], "--max-loss configure what --skip auto trains; the predictor"),
    (["--predictor", "{pred}", "--confidence", "0.8", "--val", "{val}"], "--val/--confidence configure what"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-loss", "1", "--margin-se", "-2"],
     "--margin-se -2 must be a finite number >= 0"),
    (["--margin-se", "1"], "add --skip auto"),
    (["--predictor-type", "tree"], "--predictor-type configure skipping: add --skip auto"),
    (["--predictor", "{pred}", "--predictor-type", "tree"], "is already trained (its type is in its predictor.json)"),
    (["--predictor", "{nope}"], "does not exist"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-loss", "1", "--confidence", "1.5"],
     "--confidence 1.5 must be in (0, 1)"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-disagreement", "-2"],
     "'--max-disagreement': -2.0 is not in the range 0<=x<=100"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-loss", "1", "--max-disagreement", "1"],
     "give one budget"),
    (["--skip", "auto", "--train", "{train}", "--val", "{unlabelled}", "--max-loss", "1"], "'y' is missing from"),
    (["--confidence", "0.8"], "add --skip auto"),
])
def test_convert_bad_skip_options_write_nothing(setup, args, msg):
    d, model, other, paths = setup
    out = d / "never"
    unlabelled = d / "unlabelled.npz"
    with np.load(paths["val"]) as v:
        np.savez(unlabelled, x=v["x"], lengths=v["lengths"])
    fill = {"pred": str(d / "pred"), "train": paths["train"], "val": paths["val"], "nope": str(d / "nope"),
            "unlabelled": str(unlabelled)}
    res = CliRunner().invoke(convert_cmd, [model, "--data", paths["test"], "--out", str(out)]
                             + [a.format(**fill) for a in args])
    assert res.exit_code == 2, res.output
    assert msg in res.output and res.output.count("\n") == 1
    assert not out.exists() and not list(d.glob(".never.partial-*"))


@pytest.mark.parametrize("args,msg", [
    (["--predictor", "{pred}", "--skip", "off"], "--skip off turns skipping off but --predictor"),
    (["--skip", "auto", "--train", "{train}", "--val", "{val}", "--max-loss", "1", "--confidence", "1.5"],
     "--confidence 1.5 must be in (0, 1)"),
    (["--delta", "{nope}"], "{nope}"),
])
def test_convert_option_conflicts_come_before_the_model_is_read(setup, tmp_path, args, msg):
    """Refused in seconds: a broken model file would be reported instead if the model were read first."""
    d, _model, _other, paths = setup
    broken = tmp_path / "broken.h5"
    broken.write_text("not a model")
    fill = {"pred": str(d / "pred"), "train": paths["train"], "val": paths["val"], "nope": str(tmp_path / "nope.json")}
    res = CliRunner().invoke(convert_cmd, [str(broken), "--data", paths["test"], "--out", str(tmp_path / "o")]
                             + [a.format(**fill) for a in args])
    assert res.exit_code == 2 and msg.format(**fill) in res.output and res.output.count("\n") == 1, res.output
    assert "broken.h5" not in res.output


def test_mismatched_predictor_folder_one_line(setup):
    d, model, other, paths = setup
    out = d / "mismatch"
    # the GRU model has 7 units and a 5-wide embedding; the predictor was trained for LSTM(8) on 6 inputs
    res = CliRunner().invoke(convert_cmd, [other, "--predictor", str(d / "pred"), "--data", paths["test01"],
                                           "--out", str(out)])
    want = "trained for a model with first recurrent layer's input size 6"
    assert res.exit_code == 2 and want in res.output, res.output
    assert res.output.count("\n") == 1 and not out.exists()


def test_train_predictor_impossible_budget_and_bad_data(setup, tmp_path):
    d, model, other, paths = setup
    r = CliRunner()
    out = tmp_path / "p"
    res = r.invoke(main, ["train-predictor", model, "--train", paths["train"], "--val", paths["val"],
                          "--max-loss", "-0.5", "--out", str(out)])
    assert res.exit_code == 2 and "--max-loss -0.5 must be between 0 and 100" in res.output and not out.exists()
    for args, msg in ((["--train", paths["val"], "--val", paths["val"], "--max-loss", "1"],
                       f"--train {paths['val']} holds the same rows as --val {paths['val']}"),
                      (["--train", paths["train"], "--val", paths["val"], "--max-loss", "1", "--calibrate-on", "float",
                        "--calib", paths["train"]], "with --calibrate-on float there is none: drop --calib")):
        res = r.invoke(main, ["train-predictor", model, *args, "--out", str(out)])
        assert res.exit_code == 2 and msg in _one_error(res.output), res.output
        assert not out.exists()
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 10), np.int32), y=np.zeros(0, np.int64))
    res = r.invoke(main, ["train-predictor", model, "--train", str(empty), "--val", paths["val"],
                          "--max-loss", "1", "--out", str(out)])
    assert res.exit_code == 2 and "empty" in res.output and _one_error(res.output) and not out.exists()
    const = tmp_path / "const.npz"
    np.savez(const, x=np.full((20, 10), 3, np.int32), y=np.zeros(20, np.int64), lengths=np.ones(20, np.int32))
    res = r.invoke(main, ["train-predictor", model, "--train", str(const), "--val", paths["val"],
                          "--max-loss", "1", "--out", str(out), "--type", "tree"])
    assert res.exit_code == 2 and "constant" in _one_error(res.output) and not out.exists()
    res = r.invoke(main, ["train-predictor", model, "--train", paths["train"], "--val", paths["val"],
                          "--max-loss", "100", "--out", str(out), "--type", "tree", "--rounds", "0"])
    assert res.exit_code == 2 and not out.exists()
    assert "every training step 'skip'" in _one_error(res.output) and "give a smaller --max-loss" in res.output


@needs_arm_and_qemu
def test_convert_with_predictor_on_cortex_m55_qemu(setup):
    # Unicorn has no cortex-m55: the dense reference boots as a second board image and the
    # two are compared by QEMU's instruction counts (this once failed with 'cannot run under Unicorn')
    d, model, other, paths = setup
    out = d / "conv55"
    res = CliRunner().invoke(convert_cmd, [model, "--predictor", str(d / "pred"), "--data", paths["test"],
                                           "--calib", paths["train"], "--out", str(out), "--board", "mps3-an547",
                                           "--emulator", "qemu", "--emulate-max", "6"])
    assert res.exit_code == 0, res.output
    sk = json.loads((out / "report.json").read_text())["skip"]
    e = sk["emulated"]
    assert e["cycles_per_inference"] == {"dense": None, "skip": None} and "no cycle model" in e["cycles_note"]
    ins = e["instructions_per_inference"]
    assert ins["dense"] > ins["skip"] > 0 and e["sequences"] == 6
    assert e["dense_device_matches_golden"]
    assert "skip instr. / inf" in res.output and "no cycle model" in res.output


def test_mlp_predictor_is_reproducible_from_its_seed(setup):
    """Two processes with --seed 5 write the same predictor arrays (determinism; that another seed trains
    another predictor is not asserted: here it also changes the validation split, and the oracle)."""
    from test_cli import cli
    d, model, other, paths = setup
    arrays = []
    for name, seed in (("mlp_a", "5"), ("mlp_b", "5")):
        p = cli("rnnskip", "train-predictor", model, "--train", paths["train"], "--val", paths["val"], "--max-loss",
                "60", "--out", d / name, "--type", "mlp", "--size-ratio", "1", "--rounds", "0",
                "--calib", paths["train"], "--seed", seed)
        assert p.returncode == 0, p.stderr
        with np.load(d / name / "predictor.npz") as z:
            arrays.append({k: z[k] for k in z.files})
    assert arrays[0].keys() == arrays[1].keys()
    for k in arrays[0]:
        np.testing.assert_array_equal(arrays[0][k], arrays[1][k], err_msg=k)


def test_convert_skip_auto_warns_about_its_data_files_once(setup, tmp_path):
    """--skip auto's --train and --val files get the same data warnings as every other command's
    files, once per file (before: read without them); the --out refusal stops it before any work."""
    d, model, other, paths = setup
    for name in ("train", "val"):   # two files (one file as both --train and --val is refused)
        with np.load(paths[name]) as t:
            np.savez(tmp_path / f"{name}_w.npz", x=t["x"], y=t["y"], lengths=t["lengths"], sample_weight=t["y"] * 0)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("not an rnnskip folder")
    args = [model, "--skip", "auto", "--train", str(tmp_path / "train_w.npz"), "--val", str(tmp_path / "val_w.npz"),
            "--predictor-type", "tree", "--data", paths["test"]]
    res = CliRunner().invoke(convert_cmd, args + ["--max-loss", "1", "--out", str(taken)])
    assert res.exit_code != 0 and "already exists" in _one_error(res.output), res.output
    assert not [l for l in res.output.splitlines() if l.startswith("warning:")]   # refused before reading anything
    res = CliRunner().invoke(convert_cmd, args + ["--max-loss", "60", "--out", str(tmp_path / "o"), "--emulate-max",
                                                  "2", "--traffic-sample", "0", "--workers", "1"])
    assert res.exit_code == 0, res.output
    for name in ("train", "val"):
        warn = [l for l in res.output.splitlines() if l.startswith("warning:") and f"{name}_w.npz" in l]
        assert len(warn) == 1 and warn[0].startswith(f"warning: {name}_w.npz has a key rnnskip does not read "
                                                      "(sample_weight); it reads x, y, lengths"), res.output


@pytest.mark.parametrize("edit,needle", [
    (lambda m: m.update(model=[1]), "'model' is a list, not an object"),
    (lambda m: m.update(oracle=5), "'oracle' is a int, not an object"),
    (lambda m: m.update(certified="yes"), "'certified' is not a certificate"),
    (lambda m: m.update(certified=dict(m.get("certified") or {"certified": True}, confidence=None)),
     "'certified' is not a certificate"),
    (lambda m: m.update(calibration_lengths=["a"]), "'calibration_lengths' is not a list of sequence lengths"),
    (lambda m: m.update(int8_grid=[{"layer": "g"}]), "'int8_grid' is not a list of {input_scale, hidden_scale}"),
])
def test_damaged_predictor_folder_one_line_before_any_work(setup, tmp_path, edit, needle):
    """An edited predictor.json failed with an internal error after the whole build and emulation (one
    edit left the output folder written)."""
    import shutil
    d, model, other, paths = setup
    bad = tmp_path / "bad"
    shutil.copytree(d / "pred", bad)
    meta = json.loads((bad / "predictor.json").read_text())
    edit(meta)
    (bad / "predictor.json").write_text(json.dumps(meta))
    out = tmp_path / "o"
    res = CliRunner().invoke(convert_cmd, [model, "--predictor", str(bad), "--data", paths["test"], "--out", str(out)])
    assert res.exit_code == 2 and needle in _one_error(res.output), res.output
    assert not out.exists()


def test_word_plots_read_a_plain_vocabulary_or_say_why_not(tmp_path):
    """<model>.vocab.json as most Keras users have it (Tokenizer.word_index, TextVectorization's list) names the
    words in the plots; a file that cannot be used gets one note (a user's was dropped without a word)."""
    from tf_keras.preprocessing.text import Tokenizer

    from rnnskip.datasets import Vocab
    from rnnskip.skip.convert import find_vocab
    model = tmp_path / "m.keras"
    vfile = tmp_path / "m.vocab.json"
    notes = []
    # word_index: ids from 1 (the most frequent word; no OOV id) and every word, beyond num_words too
    tok = Tokenizer(num_words=4)
    tok.fit_on_texts(["the movie was good", "the movie was bad", "the end"])
    assert len(tok.word_index) > 4
    vfile.write_text(json.dumps(tok.word_index))
    v = find_vocab(str(model), 4, notes.append)
    assert v.words == ["<pad>", "the", "movie", "was"] and notes == []
    vfile.write_text(json.dumps(["", "[UNK]", "the", "movie"]))
    assert find_vocab(str(model), 4, notes.append).words == ["<pad>", "[UNK]", "the", "movie"] and notes == []
    vfile.write_text(json.dumps({"the": 9}))      # no id the Embedding has
    assert find_vocab(str(model), 8, notes.append) is None
    assert notes == [f"note: {vfile} is not used for the word plots: none of its ids is below the model's "
                     f"Embedding's 8 rows (it can be rnnskip's vocabulary, a JSON word -> id object or a list of "
                     f"words by id)"]
    notes.clear()
    Vocab(["a", "b"]).save(str(vfile))
    assert find_vocab(str(model), 4, notes.append).words == ["<pad>", "<oov>", "a", "b"]
    assert find_vocab(str(model), 5, notes.append) is None
    assert notes == [f"note: {vfile} is not used for the word plots: an rnnskip vocabulary of 4 ids, and the model's "
                     f"Embedding has 5 rows (it can be rnnskip's vocabulary, a JSON word -> id object or a list of "
                     f"words by id)"]
    notes.clear()
    d = json.loads(vfile.read_text())      # an rnnskip vocabulary that does not load says why, not 'not a list'
    vfile.write_text(json.dumps(dict(d, tokenizer="spacy")))
    assert find_vocab(str(model), 4, notes.append) is None
    assert len(notes) == 1 and "names unknown tokenizer 'spacy'" in notes[0], notes
