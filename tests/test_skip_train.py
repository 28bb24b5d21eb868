"""Skipping on the float side: oracle, baselines, predictor training and
calibration, the predictor folder, and the one-line errors for bad input."""
from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import dataset, quantize_on
from random_models import random_data, random_ir

from rnnskip.datasets import Dataset
from rnnskip.errors import RnnskipError
from rnnskip.reference import FloatModel
from rnnskip.skip import baselines, features, folder, oracle
from rnnskip.skip.evaluate import golden_run, macs
from rnnskip.skip.predictor import default_size, rnn_params
from rnnskip.skip.qpredictor import quantize_predictor
from rnnskip.skip.train import BudgetNotMet, TrainConfig, train


def _labelled(cfg="tok-lstm-softmax", n=200, T=12, seed=0, units=(9, 6)):
    """Random model + data labelled with the dense float model's own predictions."""
    ir = random_ir(cfg, seed=seed, units=units)
    x, L = random_data(ir, n=n, T=T, seed=seed + 1)
    y = features.classes(FloatModel(ir).predict(x, L))
    return ir, Dataset(x=x, y=y, lengths=L)


@pytest.mark.parametrize("cfg", ["tok-lstm-softmax", "feat-lstm-lstm", "tok-gru-v1", "feat-mask-gru"])
@pytest.mark.parametrize("measure", ["l2", "cosine"])
def test_oracle_threshold_zero_equals_dense(cfg, measure):
    ir, ds = _labelled(cfg, n=40)
    fm = FloatModel(ir)
    r = features.run(fm, ds.x, ds.lengths, decide=features.oracle_rule(0.0), measure=measure, include_cell=True)
    assert np.array_equal(r.ran, r.valid) and r.skip_rate == 0.0
    assert np.array_equal(r.out, fm.predict(ds.x, ds.lengths))    # exactly the dense model


def test_oracle_skips_on_reached_state_and_sweep_respects_budget():
    ir, ds = _labelled(n=150)
    fm = FloatModel(ir)
    dense = features.run(fm, ds.x, ds.lengths, collect=True)
    th = float(np.quantile(dense.change, 0.5))
    r = features.run(fm, ds.x, ds.lengths, decide=features.oracle_rule(th), collect=True)
    assert 0.2 < r.skip_rate < 0.8
    # the decision uses the change measured from the state actually reached
    assert np.array_equal(r.skipped, r.change < th)
    sw = oracle.sweep(fm, ds.x, ds.lengths, ds.y, max_loss=2.0, dense=dense)
    assert sw.chosen.loss <= 2.0 + 1e-9
    assert sw.chosen.skip_rate == max(p.skip_rate for p in sw.points if p.loss <= 2.0 + 1e-9)


def test_paired_loss_and_standard_error_by_hand():
    # 10 sequences: the reference gets 8 right; skipping loses two of them and gains one
    ref = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    new = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    loss, se = oracle.paired_loss(ref, new)
    # differences: 1, 1, 0 x6, -1, 0 -> mean 0.1; sample variance (3 - 10 * 0.01) / 9
    assert loss == pytest.approx(10.0)
    assert se == pytest.approx(100 * np.sqrt((3 - 0.1) / 9 / 10))
    assert oracle.paired_loss(ref, ref) == (0.0, 0.0)
    p = oracle.point(0.5, 0.25, ref, new)
    assert (p.accuracy, p.loss, p.skip_rate) == (pytest.approx(0.7), pytest.approx(10.0), 0.25)
    assert p.as_dict()["loss_se_points"] == pytest.approx(se)


def test_margin_picks_the_point_whose_bound_fits():
    pts = [oracle.Point(0.0, 0.0, 0.9, 0.0, 0.0), oracle.Point(1.0, 0.3, 0.9, 0.2, 0.1),
           oracle.Point(2.0, 0.5, 0.9, 0.4, 0.3), oracle.Point(3.0, 0.7, 0.9, 0.9, 0.3)]
    assert oracle.best_within(pts, 0.5).threshold == 2.0                  # 0.4 <= 0.5
    assert oracle.best_within(pts, 0.5, margin_se=1.0).threshold == 1.0   # 0.4 + 0.3 > 0.5, 0.2 + 0.1 fits
    assert oracle.best_within(pts, 0.5, margin_se=4.0).threshold == 0.0
    nan = [oracle.Point(0.0, 0.0, 0.9, 0.0), oracle.Point(1.0, 0.4, 0.9, 0.3)]  # no standard error known: loss alone
    assert oracle.best_within(nan, 0.5, margin_se=2.0).threshold == 1.0


def test_sweep_with_margin_is_more_conservative():
    ir, ds = _labelled(n=150)
    fm = FloatModel(ir)
    dense = features.run(fm, ds.x, ds.lengths, collect=True)
    plain = oracle.sweep(fm, ds.x, ds.lengths, ds.y, max_loss=3.0, dense=dense)
    safe = oracle.sweep(fm, ds.x, ds.lengths, ds.y, max_loss=3.0, dense=dense, margin_se=2.0)
    c = safe.chosen
    assert c.loss + 2.0 * c.loss_se <= 3.0 + 1e-9
    assert c.skip_rate <= plain.chosen.skip_rate
    # every point's standard error is the paired one against the dense predictions
    for p in plain.points:
        r = features.run(fm, ds.x, ds.lengths, decide=features.oracle_rule(p.threshold))
        assert p.loss_se == pytest.approx(oracle.paired_loss(dense.pred == ds.y, r.pred == ds.y)[1])


def test_baselines_masks():
    from rnnskip.datasets import Vocab
    v = Vocab(["the", "movie", "a", "great"])
    x = np.array([[2, 3, 4, 5, 0], [5, 4, 0, 0, 0]], np.int32)   # the movie a great / great a
    m = baselines.stopword_mask(x, v)
    assert m.tolist() == [[True, False, True, False, False], [False, True, False, False, False]]
    c = baselines.concat_mask(np.array([5, 2]), 5, 1)
    assert c.tolist() == [[False, True, True, True, False], [False, False, False, False, False]]


def test_predictor_sizes_within_budget():
    ir = random_ir("tok-lstm-softmax", units=(64,), dim=32)
    b = int(0.03 * rnn_params(ir))
    for t in ("mlp", "logistic", "tree", "forest"):
        s = default_size(t, 96, b)
        if t == "mlp":
            h = s["hidden"][0]
            assert 96 * h + h + h * h + h + h + 1 <= b
        if t in ("tree", "forest"):
            assert s["trees"] * (3 * s["leaves"] - 2) <= b
    # small budgets: the largest tree or forest that fits, or a refusal (a floor of 4 leaves went past them)
    for t, budget, leaves in (("tree", 10, 4), ("tree", 4, 2), ("forest", 40, 2), ("forest", 100, 4)):
        s = default_size(t, 96, budget)
        assert s["leaves"] == leaves and s["trees"] * (3 * s["leaves"] - 2) <= budget
    for t, budget, msg in (("tree", 3, "a decision tree needs at least 4 parameters"),
                           ("forest", 31, "a forest of 8 trees needs at least 32 parameters (2 leaves each)")):
        with pytest.raises(RnnskipError, match=re.escape(msg)):
            default_size(t, 96, budget)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ir, ds = _labelled(n=360, T=12)
    tr, va = ds.subset(slice(0, 240)), ds.subset(slice(240, None))
    cfg = TrainConfig(type="tree", max_loss=3.0, rounds=1, measure="l2", include_cell=False)
    res = train(ir, tr, va, cfg, log=None)
    out = tmp_path_factory.mktemp("pred")
    meta = folder.save(out, res, ir, "model.h5", "train.npz", "val.npz")
    return ir, tr, va, res, out, meta


def test_train_calibrates_within_budget(trained):
    ir, tr, va, res, out, meta = trained
    p = res.predictor
    assert np.isfinite(p.threshold)
    ch = res.calibration.chosen
    assert ch.skip_rate > 0 and ch.loss <= 3.0 + 1e-9
    assert meta["val"]["loss_se_points"] == pytest.approx(ch.loss_se) and ch.loss_se > 0
    assert [r["round"] for r in res.rounds] == [0, 1] and sum(r["chosen"] for r in res.rounds) == 1
    assert p.params() <= res.budget_params
    # the chosen point is reproduced by the int8 golden model with the quantised predictor
    qm = quantize_on(ir, tr.x, tr.lengths)
    g = golden_run(qm, va.x, va.lengths, qp=quantize_predictor(p, qm))
    assert g["skip_rate"] == pytest.approx(ch.skip_rate)


def test_predictor_folder_roundtrip(trained):
    ir, tr, va, res, out, meta = trained
    p2, meta2 = folder.load(out, ir)
    F_ = res.dense_train.feats[:500]
    assert np.array_equal(p2.score(F_), res.predictor.score(F_))
    assert p2.threshold == res.predictor.threshold
    for key in ("model", "type", "sizes", "threshold", "params", "params_ratio"):
        assert key in meta2
    assert meta2["model"]["units"] == [9] and meta2["model"]["vocab"] == 50
    assert {"change_distributions.png", "pareto_val.png"} <= {p.name for p in out.iterdir()}


def test_mismatched_predictor_folder(trained):
    ir, tr, va, res, out, meta = trained
    other = random_ir("tok-lstm-softmax", units=(12,))
    with pytest.raises(RnnskipError, match="hidden sizes \\[9\\].*this model has \\[12\\]"):
        folder.load(out, other)
    other = random_ir("tok-lstm-softmax", dim=5)
    with pytest.raises(RnnskipError, match="input size 7.*this model has 5"):
        folder.load(out, other)
    with pytest.raises(RnnskipError, match="not a predictor folder"):
        folder.load(out.parent, ir)
    import json
    import shutil
    bad = out.parent / "damaged"
    shutil.copytree(out, bad)
    np.savez(bad / "predictor.npz", nothing=np.zeros(1))
    with pytest.raises(RnnskipError, match="is damaged \\(KeyError.*train the predictor again"):
        folder.load(bad, ir)
    shutil.copytree(out, bad, dirs_exist_ok=True)
    m = json.loads((bad / "predictor.json").read_text())
    m["threshold"] = "high"
    (bad / "predictor.json").write_text(json.dumps(m))
    with pytest.raises(RnnskipError, match="is damaged \\(ValueError"):
        folder.load(bad, ir)
    import copy
    same_shape = copy.deepcopy(ir)
    same_shape.rnn_layers[0].kernel = same_shape.rnn_layers[0].kernel * 1.01
    with pytest.raises(RnnskipError, match="trained for a model with other weights \\(same layer sizes\\)"):
        folder.load(out, same_shape)
    assert meta["model"]["weights_sha256"] == folder.fingerprint(ir)["weights_sha256"]
    other_head = copy.deepcopy(ir)   # the same recurrent weights: the accuracy budget is still another model's
    other_head.head[-1].kernel = other_head.head[-1].kernel * 1.3
    with pytest.raises(RnnskipError, match="same recurrent weights but another head or input stage"):
        folder.load(out, other_head)
    old = out.parent / "before_model_sha"   # a folder written before the key existed still loads
    shutil.copytree(out, old)
    m = json.loads((old / "predictor.json").read_text())
    del m["model"]["model_sha256"]
    (old / "predictor.json").write_text(json.dumps(m))
    folder.load(old, ir)
    other_act = copy.deepcopy(ir)   # the same weights, outputs in other units: refused; older folders not checked
    other_act.head[-1].activation = "log_softmax"
    with pytest.raises(RnnskipError) as e:
        folder.load(out, other_act)
    assert str(e.value) == (f"predictor folder {out} was made for a model whose outputs go through "
                            f"{ir.head[-1].activation}, but this model's go through log_softmax (same weights, other "
                            f"output units: its budget is not this model's); train a predictor for this model with "
                            f"'rnnskip train-predictor'")
    assert ir.head[-1].activation != "log_softmax"
    del m["model"]["output_activation"]
    (old / "predictor.json").write_text(json.dumps(m))
    folder.load(old, other_act)


def test_impossible_budget_says_best_achievable():
    # one-step sequences whose dense prediction differs from the zero state's: any skip costs accuracy
    ir = random_ir("tok-lstm-softmax", seed=5)
    fm = FloatModel(ir)
    ids = np.arange(1, 50, dtype=np.int32)[:, None]
    L = np.ones(len(ids), np.int32)
    pred = features.classes(fm.predict(ids, L))
    zero = features.classes(fm.readout(fm.initial_state(1)))[0]
    keep = pred != zero
    assert keep.sum() >= 5
    ds = Dataset(x=ids[keep], y=pred[keep], lengths=L[keep])
    with pytest.raises(BudgetNotMet, match="budget cannot be met.*best achievable is [0-9.]+ points at"):
        train(ir, ds, ds, TrainConfig(type="tree", max_loss=0.0, rounds=0, measure="l2", include_cell=False), log=None)
    with pytest.raises(RnnskipError, match="--margin-se 2: the loss plus 2 standard errors must fit"):
        train(ir, ds, ds, TrainConfig(type="tree", max_loss=0.0, rounds=0, measure="l2", include_cell=False,
                                      margin_se=2.0), log=None)
    # a disagreement budget is named as such, in its own unit and option
    with pytest.raises(RnnskipError, match="the disagreement budget cannot be met: even ideal .* loses more than "
                                           "0 % of sequences .*; raise --max-disagreement$"):
        train(ir, ds, ds, TrainConfig(type="tree", max_loss=0.0, max_disagreement=0.0, rounds=0, measure="l2",
                                      include_cell=False), log=None)


def test_negative_budget_and_empty_or_constant_data():
    ir, ds = _labelled(n=40)
    # budgets no certificate can mean (NaN, infinite, above 100 points) and values no training can use
    for bad, msg in ((dict(max_loss=-1.0), "--max-loss -1 must be between 0 and 100 (accuracy points)"),
                     (dict(max_loss=float("nan")), "--max-loss nan must be between 0 and 100"),
                     (dict(max_loss=float("inf")), "--max-loss inf must be between 0 and 100"),
                     (dict(max_loss=1e9), "--max-loss 1e+09 must be between 0 and 100"),
                     (dict(max_disagreement=150.0), "--max-disagreement 150 must be between 0 and 100"),
                     (dict(margin_se=-1.0), "--margin-se -1 must be a finite number >= 0 (standard errors)"),
                     (dict(margin_se=float("inf")), "--margin-se inf must be a finite number >= 0"),
                     (dict(rounds=-1), "--rounds must be >= 0"),
                     (dict(size_ratio=-0.5), "--size-ratio -0.5 must be in (0, 1]"),
                     (dict(size_ratio=float("inf")), "--size-ratio inf must be in (0, 1]")):
        with pytest.raises(RnnskipError, match=re.escape(msg)):
            train(ir, ds, ds, TrainConfig(type="tree", **bad), log=None)
    pad = Dataset(x=np.zeros_like(ds.x), y=ds.y, lengths=ds.lengths)
    with pytest.raises(RnnskipError, match="--train data has no valid steps"):
        train(ir, pad, ds, TrainConfig(type="tree"), log=None)
    empty = ds.subset(slice(0, 0))
    with pytest.raises(RnnskipError, match="--val data is empty"):
        train(ir, ds, empty, TrainConfig(type="tree"), log=None)
    const = dataset(np.full((30, 4), 7, np.int32), np.ones(30, np.int32))
    with pytest.raises(RnnskipError, match="constant"):
        train(ir, const, ds, TrainConfig(type="tree"), log=None)


def test_regression_model_refused():
    ir = random_ir("tok-lstm-nohead")
    x, L = random_data(ir, n=10)
    ds = dataset(x, L)
    with pytest.raises(RnnskipError, match="must be a classifier"):
        train(ir, ds, ds, TrainConfig(type="tree"), log=None)


def test_macs_accounting():
    ir = random_ir("tok-lstm-softmax", units=(8,), dim=8)
    m = macs(ir, [10, 20], [5, 10], pred_macs=100)
    step = ir.macs_per_step()
    assert m["dense"] == pytest.approx(15 * step + ir.head_macs())
    assert m["effective"] == pytest.approx(7.5 * step + ir.head_macs() + 1500)
    assert m["predictor"] == 1500


def test_report_section_feature_model(tmp_path):
    """The skip section and its plots for a feature model (no vocabulary: skipped-steps raster)."""
    from rnnskip import pipeline
    from rnnskip.skip.convert import SkipSetup, table_rows
    ir, ds = _labelled("feat-dense-gru", n=160, T=10)
    tr, va = ds.subset(slice(0, 100)), ds.subset(slice(100, None))
    res = train(ir, tr, va, TrainConfig(type="tree", max_loss=30.0, rounds=0, measure="l2",
                                        calibrate_on="float", size_ratio=0.5), log=None)
    meta = folder.save(tmp_path, res, ir, "m.h5", "t.npz", "v.npz")
    qm = quantize_on(ir, tr.x, tr.lengths)
    from test_skip_device import random_predictor  # a logistic predictor (MACs on the device) without Keras
    fp = random_predictor("logistic", qm.in_dim, [l.units for l in qm.layers], seed=3)
    fp.threshold = float(np.median(fp.score(res.dense_train.feats)))
    s = SkipSetup(fp=fp, meta=meta, predictor_dir=str(tmp_path))
    qp = s.attach(ir, qm, tmp_path, progress=False)
    assert qp.macs > 0 and qm.methods == [qp]
    ev = pipeline.evaluate(ir, qm, va)
    sec = s.section(ir, qm, va, ev, tmp_path)
    assert sec["plots"] == ["skip_pareto.png", "skipped_steps.png"]
    assert 0 <= sec["skip_rate"] <= 1 and sec["predictor"]["type"] == "logistic"
    assert sec["macs_per_inference"]["predictor"] > 0 and "emulated" not in sec   # nothing emulated: no comparison
    assert any(k == "steps skipped" for k, _ in table_rows(sec))


def test_oracle_sweep_follows_a_generous_budget_past_ninety_percent():
    # with a budget nothing exceeds, the sweep must reach the most aggressive grid point
    # (the old grid stopped at the 0.9 quantile of the change)
    ir, ds = _labelled(n=150)
    fm = FloatModel(ir)
    dense = features.run(fm, ds.x, ds.lengths, collect=True)
    sw = oracle.sweep(fm, ds.x, ds.lengths, ds.y, max_loss=100.0, dense=dense)
    assert sw.chosen.threshold == pytest.approx(float(np.quantile(dense.change, 0.99)))
    assert sw.chosen.skip_rate > 0.9


def test_predictor_calibration_reaches_high_skip_rates(trained):
    # the calibration grid runs to 99% of the scored steps: with a budget nothing
    # exceeds, the chosen point skips far more than the old 70% cap allowed
    from rnnskip.skip.train import _predictor_points
    ir, tr, va, res, out, meta = trained
    fm = FloatModel(ir)
    qm = quantize_on(ir, tr.x, tr.lengths)
    dense = golden_run(qm, va.x, va.lengths)
    p = res.predictor
    scores = p.score(features.run(fm, va.x, va.lengths, collect=True).feats)
    sw = _predictor_points(p, va, qm, dense["pred"] == va.y, "int8", fm, scores, 100.0, None)
    assert min(pt.threshold for pt in sw.points) <= float(np.quantile(scores, 0.01)) + 1e-12  # tried 99%
    assert sw.chosen.skip_rate == max(pt.skip_rate for pt in sw.points) > 0.85


def test_candidate_thresholds_skip_tied_top_scores():
    """Scores tied at the top (a small MLP with a dead unit): quantiles at the top score skip
    nothing, like the first candidate, and are not evaluated again (they printed as repeated
    '0.0%' lines)."""
    from rnnskip.skip.train import candidate_thresholds
    scores = np.concatenate([np.full(600, 0.84375), np.linspace(-7, 0.5, 400)])
    c = candidate_thresholds(scores)
    assert c[0] > 0.84375 and all(t < 0.84375 for t in c[1:])
    assert c == sorted(set(c), reverse=True)                     # distinct, least skipping first
    skipped = [float(np.mean(scores > t)) for t in c]
    assert skipped[0] == 0.0 and skipped[1] >= 0.6 and len(set(skipped)) == len(skipped)


def test_a_predictor_that_skips_nothing_is_not_told_to_raise_the_budget(monkeypatch):
    """A predictor whose scores are all alike (here a tree fitted on all-"run" labels: one leaf) skips no
    validation step at any threshold: no budget would help, and the line says so (it said to raise it)."""
    import rnnskip.skip.train as train_mod
    real_fit = train_mod.fit
    monkeypatch.setattr(train_mod, "fit", lambda ptype, F, y, *a, **k: real_fit(ptype, F, np.zeros_like(y), *a, **k))
    ir, ds = _labelled(n=120)
    with pytest.raises(BudgetNotMet) as e:
        train(ir, ds.subset(slice(0, 80)), ds.subset(slice(80, None)),
              TrainConfig(type="tree", max_loss=5.0, rounds=0, measure="l2", include_cell=False), log=None)
    msg = str(e.value)
    assert "the best achievable is no skipping at all: no threshold of the" in msg
    assert "so a larger budget would not help" in msg and msg.endswith("raise --size-ratio or try another --type")
    assert "raise --max-loss" not in msg
