"""Delta networks and the skip predictor on models with an output per time step (sequence labelling, per-frame
keyword spotting: the setting of Neil et al.'s speech experiments): rnnskip-convert --delta / --predictor bit-exact
on host and firmware, delta-tune's and train-predictor's budgets on each sequence's share of right steps, certified
with Chernoff-Hoeffding bounds (rnnskip/certify.py), delta-train weighted to the scored steps."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import needs_arm
from test_cli import cli, one_line_error

from rnnskip.certify import cp_upper, kl_lower, kl_upper, upper_bound
from rnnskip.stats import accuracy, paired_loss, per_sequence

NAN = np.nan


def test_per_sequence_shares():
    c = np.array([[1, 0, NAN, NAN], [NAN, NAN, NAN, NAN], [1, 1, 1, 0]])
    np.testing.assert_array_equal(per_sequence(c), [0.5, 0.75])   # the row with no scored step is left out
    assert accuracy(c) == 0.625
    assert accuracy(np.array([True, False, True, True])) == 0.75
    # one scored step per row: the same loss and standard error as per-sequence outcomes
    ref, cur = np.array([1, 1, 0, 1, 0], bool), np.array([0, 1, 1, 0, 0], bool)
    steps = np.full((5, 3), NAN)
    steps[np.arange(5), [0, 2, 1, 1, 0]] = 0.0
    r2, c2 = steps.copy(), steps.copy()
    r2[~np.isnan(steps)], c2[~np.isnan(steps)] = ref, cur
    assert paired_loss(r2, c2) == pytest.approx(paired_loss(ref, cur), abs=1e-12)
    assert paired_loss(ref, cur)[0] == pytest.approx(20.0)


def test_chernoff_hoeffding_bounds():
    """The relative-entropy bound: Clopper-Pearson's at no events (1 - delta^(1/n)), looser above (it holds for
    any values in [0, 1], not only 0/1), and n KL(mean || bound) = log(1 / delta) at the bound."""
    for n, delta in ((20, 0.1), (300, 0.05)):
        assert kl_upper(0.0, n, delta) == pytest.approx(1 - delta ** (1 / n), rel=1e-9)
        assert kl_upper(0.0, n, delta) == pytest.approx(cp_upper(0, n, delta), rel=1e-9)
        for k in (1, 3, 10):
            m, ub = k / n, kl_upper(k / n, n, delta)
            assert ub > cp_upper(k, n, delta)
            kl = m * math.log(m / ub) + (1 - m) * math.log((1 - m) / (1 - ub))
            assert n * kl == pytest.approx(math.log(1 / delta), rel=1e-6)
            assert kl_lower(m, n, delta) == pytest.approx(1 - kl_upper(1 - m, n, delta))
            assert kl_lower(m, n, delta) < m
    assert kl_upper(0.3, 0, 0.1) == 1.0 and kl_lower(0.3, 0, 0.1) == 0.0


def test_upper_bound_per_step_by_hand():
    """Per step: the paired bound is the upper bound on the mean share of steps turned wrong minus the lower bound
    on the mean share turned right, over the sequences with a scored step, each at delta / 2."""
    loss = np.array([[1, 0, NAN, NAN],      # wrong 1/2, right 0
                     [0, -1, 0, 0],         # wrong 0, right 1/4
                     [NAN, NAN, NAN, NAN],  # no scored step: left out
                     [0, 0, 0, 0]])         # nothing changed
    want = kl_upper(1 / 6, 3, 0.05) - kl_lower(1 / 12, 3, 0.05)
    assert upper_bound(loss, 0.1, "paired") == pytest.approx(want, rel=1e-12)
    dis = np.array([[1, 0, NAN], [0, 0, 0], [1, 1, 0]])
    assert upper_bound(dis, 0.1, "disagreement") == pytest.approx(kl_upper((1 / 2 + 2 / 3) / 3, 3, 0.1), rel=1e-12)
    with pytest.raises(ValueError, match="per step is one of"):
        upper_bound(np.array([[0.5, 0.0]]), 0.1, "paired")


def _tagger(d, recurrent):
    """Masking -> ``recurrent`` (returning sequences) -> Dense(3, softmax) on every step, random weights; 240
    sequences of 6-16 steps padded to 16 with the mask value, labelled by the float model with 15% of the steps
    relabelled."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.pipeline import import_model
    from rnnskip.reference import FloatModel
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.layers.Input((16, 5)), keras.layers.Masking(0.0), recurrent(keras.layers),
                          keras.layers.Dense(3, activation="softmax")])
    m.save(d / "tag.h5")
    ir = import_model(d / "tag.h5")
    rng = np.random.default_rng(0)
    N, T = 240, 16
    x = np.cumsum(rng.normal(0, 0.5, (N, T, 5)), axis=1).astype(np.float32)
    L = rng.integers(6, T + 1, N).astype(np.int32)
    x[np.arange(T)[None, :] >= L[:, None]] = 0.0
    y = np.argmax(FloatModel(ir).predict(x, L), -1)
    flip = rng.random(y.shape) < 0.15
    y[flip] = (y[flip] + 1) % 3
    save_npz(str(d / "val.npz"), Dataset(x=x, y=y, lengths=L))
    return d, ir, x, y, L


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A GRU(12) tagger (:func:`_tagger`)."""
    return _tagger(tmp_path_factory.mktemp("delta_per_step"), lambda k: k.GRU(12, return_sequences=True))


@pytest.fixture(scope="module")
def bidi_tagger(tmp_path_factory):
    """A Bidirectional LSTM(8) tagger, outputs concatenated (:func:`_tagger`): the per-step outputs exist only
    after rnnskip_finish."""
    return _tagger(tmp_path_factory.mktemp("delta_per_step_bidi"),
                   lambda k: k.Bidirectional(k.LSTM(8, return_sequences=True)))


def _golden_delta(ir, x, L, theta):
    """The delta golden model's and the dense golden model's per-step outputs, quantised on ``x`` (``theta``
    for every recurrent layer and direction)."""
    from rnnskip.datasets import Dataset
    from rnnskip.delta.golden import run_stats, with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import quantize_model
    from rnnskip.quant.golden import GoldenModel
    qm, _ = quantize_model(ir, Dataset(x=x, y=None, lengths=L), progress=False)
    dense, _ = GoldenModel(qm).run(x, L)
    k = len(qm.layers)
    out, _, _ = run_stats(with_delta(qm, DeltaSpec([theta[0]] * k, [theta[1]] * k)), x, L)
    return out, dense


def _shares_by_hand(out, x, y, L):
    """Each sequence's share of right steps among its scored ones (before its length, not masked), averaged."""
    keep = (np.arange(x.shape[1])[None, :] < L[:, None]) & np.any(x != 0.0, axis=-1)
    hit = np.argmax(out, -1) == y
    return float(np.mean([hit[i][keep[i]].mean() for i in range(len(x)) if keep[i].any()]))


@needs_arm
@pytest.mark.parametrize("model", ["tagger", "bidi_tagger"])
def test_convert_delta_per_step_bitexact(model, request, tmp_path):
    """--delta on a per-step model: golden = host = firmware on every step of every sequence, the thresholds
    change outputs and skip columns, and the section's accuracies are each sequence's share of right steps."""
    from rnnskip.delta.spec import DeltaSpec
    d, ir, x, y, L = request.getfixturevalue(model)
    n = len([r for r in ir.rnn_layers for _ in r.directions()])
    DeltaSpec([6] * n, [8] * n).save(tmp_path / "d.json", ir)
    p = cli("rnnskip-convert", d / "tag.h5", "--data", d / "val.npz", "--delta", tmp_path / "d.json",
            "--emulate-max", "60", "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["bitexact"]["host_mismatches"] == 0 and rep["bitexact"]["host_checked"] == 240
    assert rep["bitexact"]["device_mismatches"] == 0 and rep["bitexact"]["device_checked"] == 60
    sec = rep["delta"]
    assert sec["emulated"]["dense_device_matches_golden"] is True
    out, dense = _golden_delta(ir, x, L, (6, 8))
    assert not np.array_equal(out, dense)
    a = sec["accuracy"]
    assert a["delta_int8"] == pytest.approx(_shares_by_hand(out, x, y, L), abs=1e-12)
    assert a["dense_int8"] == pytest.approx(_shares_by_hand(dense, x, y, L), abs=1e-12)
    assert "each sequence's share of right steps" in a["measure"]
    assert 0 < sec["density"]["input"] < 1 and 0 < sec["density"]["hidden"] < 1
    if model == "tagger":   # dense MACs: the recurrent layer and the head after every executed step
        steps = ((np.arange(16)[None, :] < L[:, None]) & np.any(x != 0.0, axis=-1)).sum(1)
        assert sec["macs_per_inference"]["dense"] == pytest.approx(
            float(np.mean(steps * (ir.macs_per_step() + ir.head_macs()))), rel=1e-12)
    assert "; per step, averaged per sequence)" in p.stdout


@pytest.mark.parametrize("budget", [("--max-loss", "5"), ("--max-disagreement", "10")])
def test_delta_tune_per_step(tagger, tmp_path, budget):
    """delta-tune on a per-step model: the search and the certificate measure each sequence's share of steps
    (right ones, or ones whose class differs from the dense model's); the file says so, and the certified
    point's estimate is that measure recomputed by hand on the calibration half."""
    from rnnskip.certify import split_rows
    d, ir, x, y, L = tagger
    p = cli("rnnskip", "delta-tune", d / "tag.h5", "--val", d / "val.npz", *budget, "--grid", "0,2,4,8,16",
            "--out", tmp_path / "t.json")
    assert p.returncode == 0, p.stderr
    t = json.loads((tmp_path / "t.json").read_text())["tuning"]
    assert t["measure"].endswith(" at every scored step, per sequence (its share of steps, averaged over the "
                                 "sequences)")
    assert "Chernoff-Hoeffding bounds on each sequence's share of steps" in t["method"]
    c = t["certified"]
    assert c["certified"] is True and c["calibration_n"] == 120, c
    chosen = json.loads((tmp_path / "t.json").read_text())["thresholds"][0]
    assert (chosen["input"], chosen["hidden"]) != (0, 0)
    _, cal = split_rows(240, 0)
    out, dense = _golden_delta(ir, x, L, (chosen["input"], chosen["hidden"]))
    if budget[0] == "--max-loss":
        loss = _shares_by_hand(dense[cal], x[cal], y[cal], L[cal]) - _shares_by_hand(out[cal], x[cal], y[cal], L[cal])
    else:
        loss = 1 - _shares_by_hand(out[cal], x[cal], np.argmax(dense[cal], -1), L[cal])
    assert c["point_estimate"] == pytest.approx(100 * loss, abs=1e-9)
    assert json.loads((tmp_path / "t.json").read_text())["model"]["readout"] == "every step"
    assert c["point_estimate"] <= c["upper_bound"] <= float(budget[1])
    assert c["per_step"] is True and c["units"] == (
        "points (each sequence's share of right steps, averaged over the sequences)" if budget[0] == "--max-loss" else
        "percent of scored steps (each sequence's share, averaged over the sequences)")
    from rnnskip.certify import budget_text
    assert " per step (each sequence's share, averaged) with 90% confidence" in budget_text(c, "thresholds 0")


def test_delta_tune_per_step_nothing_tested(tagger, tmp_path):
    """A budget of 0 tests no candidate: the certificate still says it is per step, and counts the sequences."""
    d, ir, x, y, L = tagger
    p = cli("rnnskip", "delta-tune", d / "tag.h5", "--val", d / "val.npz", "--max-loss", "0", "--grid", "0,8",
            "--cell-grid", "", "--out", tmp_path / "t.json")
    assert p.returncode == 0, p.stderr
    c = json.loads((tmp_path / "t.json").read_text())["tuning"]["certified"]
    assert c["certified"] is False and c["per_step"] is True and c["calibration_n"] == 120
    assert c["units"].startswith("points (each sequence's share of right steps")


def test_delta_train_per_step_one_sigmoid_output(tmp_path):
    """A per-step head of one sigmoid unit (labels [N, T], or [N, T, 1] read as [N, T]) trains: Keras' loss stays one
    per step against the per-step weights (it failed inside fit: labels [N, T] against outputs [N, T, 1])."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.pipeline import import_model
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.layers.Input((10, 4)), keras.layers.Masking(0.0),
                          keras.layers.GRU(6, return_sequences=True), keras.layers.Dense(1, activation="sigmoid")])
    m.save(tmp_path / "bin.h5")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 10, 4)).astype(np.float32)
    L = rng.integers(4, 11, 48)
    x[np.arange(10)[None, :] >= L[:, None]] = 0.0
    np.savez(tmp_path / "d.npz", x=x, y=(x[..., 0] > 0).astype(np.int64)[..., None], lengths=L)
    p = cli("rnnskip", "delta-train", tmp_path / "bin.h5", "--train", tmp_path / "d.npz", "--val", tmp_path / "d.npz",
            "--out", tmp_path / "o.h5", "--epochs", "1")
    assert p.returncode == 0, p.stderr
    assert import_model(tmp_path / "o.h5").per_step


def test_per_step_labels_with_a_trailing_axis(tagger, tmp_path):
    """Per-step labels saved as [N, T, 1] (Keras' sparse targets) read as [N, T] (they crashed after the build)."""
    from rnnskip.pipeline import load_data
    d, ir, x, y, L = tagger
    np.savez(tmp_path / "y3.npz", x=x, y=y[..., None], lengths=L)
    got = load_data(tmp_path / "y3.npz", ir)
    assert got.y.shape == (240, 16) and np.array_equal(got.y, y)


@needs_arm
def test_skip_predictor_per_step(tagger, tmp_path):
    """The skip predictor on a per-step model (a skipped step's output is the one before it): train-predictor
    certifies each sequence's share of right steps, rnnskip-convert --predictor runs bit-exact on every step, and the
    section's accuracies are that share, recomputed here by hand from the golden model with the predictor."""
    from rnnskip.datasets import Dataset, load_npz, save_npz
    from rnnskip.pipeline import quantize_model
    from rnnskip.skip.evaluate import golden_run
    from rnnskip.skip.folder import load
    from rnnskip.skip.qpredictor import quantize_predictor
    d, ir, x, y, L = tagger
    save_npz(str(tmp_path / "tr.npz"), Dataset(x=x[:120], y=y[:120], lengths=L[:120]))
    save_npz(str(tmp_path / "va.npz"), Dataset(x=x[120:], y=y[120:], lengths=L[120:]))
    p = cli("rnnskip", "train-predictor", d / "tag.h5", "--train", tmp_path / "tr.npz", "--val", tmp_path / "va.npz",
            "--max-loss", "5", "--type", "logistic", "--out", tmp_path / "pred")
    assert p.returncode == 0, p.stderr
    fp, meta = load(tmp_path / "pred", ir)
    c = meta["certified"]
    assert c["certified"] is True and c["per_step"] is True and c["calibration_n"] == 60
    assert c["units"] == "points (each sequence's share of right steps, averaged over the sequences)"
    p = cli("rnnskip-convert", d / "tag.h5", "--data", tmp_path / "va.npz", "--calib", tmp_path / "tr.npz",
            "--predictor", tmp_path / "pred", "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 120
    sec = rep["skip"]
    assert sec["skip_rate"] > 0 and sec["emulated"]["dense_device_matches_golden"] is True
    va = load_npz(str(tmp_path / "va.npz"), ir)
    qm, _ = quantize_model(ir, load_npz(str(tmp_path / "tr.npz"), ir), progress=False)
    g = golden_run(qm, va.x, va.lengths, qp=quantize_predictor(fp, qm))
    keep = (np.arange(16)[None, :] < va.lengths[:, None]) & np.any(va.x != 0.0, axis=-1)
    want = float(np.mean([(g["pred"][i] == va.y[i])[keep[i]].mean() for i in range(len(va))]))
    assert sec["accuracy"]["skip_int8"] == pytest.approx(want, abs=1e-12)
    assert sec["skip_rate"] == pytest.approx(g["skip_rate"], abs=1e-12)
    assert "each sequence's share of right steps" in sec["accuracy"]["measure"]
    assert "; per step, averaged per sequence)" in p.stdout
    # MACs: the head runs after every step that ran (a skipped one repeats the output before it)
    run = g["flags"].sum(1)
    step, head = ir.macs_per_step(), ir.head_macs()
    assert sec["macs_per_inference"]["skip"] == pytest.approx(
        float(np.mean(run * (step + head))) + sec["macs_per_inference"]["predictor"], rel=1e-12)
    # the same weights with one output per sequence: the folder's budget is not that model's
    keras = pytest.importorskip("tf_keras")
    per_seq = keras.models.load_model(d / "tag.h5")
    last = keras.Sequential([keras.layers.Input((16, 5)), keras.layers.Masking(0.0),
                             keras.layers.GRU(12, name=per_seq.layers[1].name),
                             keras.layers.Dense(3, activation="softmax", name=per_seq.layers[2].name)])
    last.set_weights(per_seq.get_weights())
    last.save(tmp_path / "last.h5")
    np.savez(tmp_path / "va1.npz", x=va.x, y=va.y[:, 0], lengths=va.lengths)
    one_line_error(cli("rnnskip-convert", tmp_path / "last.h5", "--data", tmp_path / "va1.npz", "--predictor",
                       tmp_path / "pred", "--out", tmp_path / "o2"),
                   f"predictor folder {tmp_path / 'pred'} was made for a model whose head reads every step, but this "
                   f"model's reads last step")


@needs_arm
def test_delta_train_per_step(tagger, tmp_path):
    """delta-train on a per-step model: the loss and accuracy weigh the scored steps only (relabelling the steps
    after each row's length, which Keras runs, changes neither; relabelling scored ones does); it writes a
    per-step Keras model that converts bit-exact with the thresholds it was trained for, and delta-tune measures
    it against the original with --baseline."""
    import tf_keras as keras

    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.pipeline import import_model
    d, ir, x, y, L = tagger
    # steps after a row's length that its mask does not skip: Keras runs them, the device does not
    x = x.copy()
    after = np.arange(16)[None, :] >= L[:, None]
    x[after] = np.random.default_rng(1).normal(0, 1, (int(after.sum()), 5))
    keep = ~after
    assert 0 < keep.mean() < 1
    before = {}
    for name, where in (("same", None), ("unscored", ~keep), ("scored", keep)):
        yy = y.copy()
        if where is not None:
            yy[where] = (yy[where] + 1) % 3
        save_npz(str(tmp_path / f"{name}.npz"), Dataset(x=x, y=yy, lengths=L))
        p = cli("rnnskip", "delta-train", d / "tag.h5", "--train", tmp_path / f"{name}.npz", "--val",
                tmp_path / f"{name}.npz", "--out", tmp_path / f"{name}.h5", "--epochs", "1", "--lr", "1e-30")
        assert p.returncode == 0, p.stderr
        before[name] = p.stdout.split("delta validation accuracy before fine-tuning ")[1].split()[0]
    assert before["unscored"] == before["same"] != before["scored"], before
    # delta-train chooses its epoch on one half; delta-tune certifies on the other (rows that never chose it)
    from rnnskip.datasets import load_npz
    v = load_npz(str(d / "val.npz"), ir)
    half = len(v) // 2
    save_npz(str(tmp_path / "es.npz"), v.subset(np.arange(half)))
    save_npz(str(tmp_path / "held.npz"), v.subset(np.arange(half, len(v))))
    p = cli("rnnskip", "delta-train", d / "tag.h5", "--train", tmp_path / "es.npz", "--val", tmp_path / "es.npz",
            "--out", tmp_path / "t.h5", "--epochs", "2", "--theta-x", "4", "--theta-h", "8")
    assert p.returncode == 0, p.stderr
    out = import_model(tmp_path / "t.h5")
    assert out.per_step and keras.models.load_model(tmp_path / "t.h5").predict(x[:2], verbose=0).shape == (2, 16, 3)
    p = cli("rnnskip-convert", tmp_path / "t.h5", "--data", d / "val.npz", "--delta", tmp_path / "t.delta.json",
            "--emulate-max", "20", "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 20
    assert [(t["input"], t["hidden"]) for t in rep["delta"]["thresholds"]] == [(4, 8)]
    p = cli("rnnskip", "delta-tune", tmp_path / "t.h5", "--baseline", d / "tag.h5", "--val", tmp_path / "held.npz",
            "--calib", d / "val.npz", "--max-disagreement", "20", "--grid", "0,4,8", "--out", tmp_path / "b.json")
    assert p.returncode == 0, p.stderr
    t = json.loads((tmp_path / "b.json").read_text())["tuning"]
    assert t["baseline"] == str(d / "tag.h5") and t["measure"].endswith("averaged over the sequences)")


@needs_arm
def test_convert_delta_per_step_onnx(tmp_path):
    """A PyTorch tagger (GRU, then a Linear and softmax on every step) exported to ONNX: --delta bit-exact on every
    step, and the thresholds change the outputs."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import import_model

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = torch.nn.GRU(5, 10, batch_first=True), torch.nn.Linear(10, 3)

        def forward(self, x):
            return torch.softmax(self.fc(self.rnn(x)[0]), -1)

    torch.manual_seed(0)
    m = Tagger().eval()
    torch.onnx.export(m, (torch.zeros(1, 16, 5),), str(tmp_path / "tag.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}}, dynamo=False)
    x = np.cumsum(np.random.default_rng(0).normal(0, 0.5, (40, 16, 5)), 1).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).argmax(-1).numpy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ir = import_model(tmp_path / "tag.onnx")
    assert ir.per_step
    DeltaSpec([4], [6]).save(tmp_path / "d.json", ir)
    p = cli("rnnskip-convert", tmp_path / "tag.onnx", "--data", tmp_path / "d.npz", "--delta", tmp_path / "d.json",
            "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 40
    a = rep["delta"]["accuracy"]
    assert a["dense_int8"] != a["delta_int8"] and a["measure"]
    assert rep["delta"]["emulated"]["dense_device_matches_golden"] is True
