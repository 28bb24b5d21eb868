"""Skip predictor on the device: int8 predictor golden vs host build vs
emulated firmware, bit for bit, skip decisions included, on random models."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantized

from rnnskip import pipeline
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.generate import generate
from rnnskip.quant.golden import GoldenModel
from rnnskip.skip.predictor import FloatPredictor
from rnnskip.skip.qpredictor import quantize_predictor


def random_predictor(ptype: str, in_dim: int, units, seed: int = 0) -> FloatPredictor:
    """A random float predictor of ``ptype`` (weights like a trained one's)."""
    rng = np.random.default_rng(seed)
    D = in_dim + sum(units)
    p = FloatPredictor(type=ptype, in_dim=in_dim, units=list(units))
    if ptype in ("mlp", "logistic"):
        sizes = [D] + ([6, 5] if ptype == "mlp" else []) + [1]
        for a, b in zip(sizes[:-1], sizes[1:]):
            p.layers.append((rng.normal(0, 0.6, (a, b)), rng.normal(0, 0.2, b)))
        p.act_max = [3.0, 3.0][: len(sizes) - 2]
    else:
        for _ in range(1 if ptype == "tree" else 3):
            n_inner = 7   # a full tree of depth 3: nodes 0..6 inner, 7..14 leaves
            left = np.full(15, -1, np.int32)
            right = np.full(15, -1, np.int32)
            for i in range(n_inner):
                left[i], right[i] = 2 * i + 1, 2 * i + 2
            p.trees.append({"feature": rng.integers(0, D, 15).astype(np.int32),
                            "threshold": rng.normal(0, 0.2, 15), "left": left, "right": right,
                            "value": rng.random(15)})
    return p


def quantized_with_predictor(cfg, ptype):
    """quantized(cfg) with a random int8 predictor of ``ptype`` attached."""
    ir, qm, x, L = quantized(cfg)
    p = random_predictor(ptype, qm.in_dim, [l.units for l in qm.layers], seed=2)
    qp = quantize_predictor(p, qm)
    # threshold at the median integer score over dense-run features: some steps skip, some run
    g = GoldenModel(qm)
    dev = g.device_inputs(x)
    st = g.initial_state(len(x))
    scores = []
    for t in range(x.shape[1]):
        scores.append(qp.score(qp.features(g.step_input(dev[:, t]), st)))
        st = g.step(st, dev[:, t], g.valid_steps(x)[:, t])
    s = np.concatenate(scores).astype(float)
    qp.score_thr = int(np.median(s))
    qm.methods = [qp]
    return ir, qm, x, L


CASES = [("tok-lstm-softmax", "mlp"), ("tok-gru-sigmoid", "logistic"), ("tok-gru-v1", "tree"),
         ("feat-dense-gru", "mlp"), ("feat-lstm-lstm", "forest"), ("feat-gru-gru-v1", "mlp"),
         ("feat-lstm-lstm", "logistic"), ("feat-mask-gru", "tree"), ("feat-rnn", "mlp"), ("tok-rnn-relu", "forest"),
         ("feat-mask-rnn-lstm", "logistic"), ("feat-gru-lstm-rnn", "mlp"), ("tok-lstm-gru-lstm-gru", "tree")]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def built(request, tmp_path_factory):
    cfg, ptype = request.param
    ir, qm, x, L = quantized_with_predictor(cfg, ptype)
    d = tmp_path_factory.mktemp(f"{cfg}-{ptype}")
    generate(qm, d / "src", max_t=x.shape[1])
    return ir, qm, x, L, d


def test_golden_skips_some_steps_and_keeps_state(built):
    ir, qm, x, L, d = built
    g = GoldenModel(qm)
    out, flags = g.run(x, L)
    valid = g.valid_steps(x) & (np.arange(x.shape[1])[None, :] < L[:, None])
    assert 0 < flags.sum() < valid.sum(), "the predictor should skip some valid steps, not all"
    assert not (flags.astype(bool) & ~valid).any()
    # the same model without its predictor runs every valid step
    _, dense_flags = GoldenModel(qm, methods=[]).run(x, L)
    assert np.array_equal(dense_flags.astype(bool), valid)


def test_host_build_bitexact_with_predictor(built):
    ir, qm, x, L, d = built
    so = pipeline.build_host(d / "src", d / "host")
    ds = dataset(x, L)
    ev = pipeline.evaluate(ir, qm, ds, host_so=so)
    assert ev.host_checked == len(x)
    assert ev.host_mismatches == 0, ev.first_mismatch   # outputs and per-step flags (skip decisions)


@needs_arm
def test_firmware_bitexact_with_predictor(built):
    from rnnskip import targets
    ir, qm, x, L, d = built
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(d / "src", d / "fw", t, "dsp")
    ds = dataset(x, L)
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.device_checked == len(x)
    assert ev.device_mismatches == 0, ev.first_mismatch


def test_float_and_int8_predictor_agree_mostly():
    """The int8 predictor's decisions follow the float predictor's on the same features."""
    ir, qm, x, L = quantized("tok-lstm-softmax", seed=3, n=40, T=10)
    for ptype in ("mlp", "logistic", "tree"):
        p = random_predictor(ptype, qm.in_dim, [qm.layers[0].units], seed=5)
        rng = np.random.default_rng(0)
        F = np.concatenate([ir.input.table[rng.integers(1, ir.input.vocab, 500)],
                            rng.uniform(-0.9, 0.9, (500, qm.layers[0].units))], axis=1)
        p.threshold = float(np.median(p.score(F)))
        qp = quantize_predictor(p, qm)
        f8 = np.zeros((500, qp.cols), np.int64)
        f8[:, qp.col_of_feature] = np.clip(np.round(F / qp.col_scale[qp.col_of_feature]), -127, 127)
        agree = np.mean((qp.score(f8) > qp.score_thr) == p.skip(F))
        assert agree > 0.9, (ptype, agree)
