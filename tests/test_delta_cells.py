"""Cell sparsity of delta networks (a cell threshold theta_m per layer): the rule on
hand-made running sums, theta_m = 0 is the delta model without it bit for bit, a
positive one freezes whole units (and only counts real ones), and the thresholds file
carries it. Device bit-exactness: tests/test_delta_device.py."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import quantized
from test_delta_golden import DELTA_CFGS

from rnnskip.cells import cell_of
from rnnskip.delta.cellrule import cell_limits, units_moved
from rnnskip.delta.golden import run_stats, with_delta
from rnnskip.delta.spec import DeltaSpec
from rnnskip.errors import RnnskipError
from rnnskip.quant.golden import GoldenModel


class _Layer:
    up, acc_rows = 2, 4     # 2 units, 2 planes: unit j's rows are j and 2 + j


def test_the_rule_on_hand_made_sums():
    lim = np.array([2 * 5 - 1, 2 * 5 - 1, 2 * 3 - 1, 0])     # T = 5, 5, 3 and "always"
    Ml = np.array([[100, -7, 0, 0]])
    # unit 0: rows 0 (moved 4 < 5) and 2 (moved -3, |-3| >= 3): evaluated
    # unit 1: row 3 has lim 0: always evaluated, whatever moved
    assert units_moved(_Layer, Ml + [[4, 0, -3, 0]], Ml, lim).tolist() == [[True, True]]
    # unit 0 quiet: |4| < 5 and |2| < 3
    assert units_moved(_Layer, Ml + [[4, 0, 2, 0]], Ml, lim)[0, 0] == np.False_
    assert units_moved(_Layer, Ml + [[-5, 0, 0, 0]], Ml, lim)[0, 0] == np.True_       # |-5| >= 5
    # the first step: Ml = M0 + 2^31 (wrapped) moves every row, whatever the threshold
    M0 = np.array([[3, -2**31, 2**31 - 1, 0]])
    Ml0 = ((M0 + 2**31 + 2**31) % 2**32) - 2**31
    big = np.full(4, 2 * 2**30 - 1)
    assert units_moved(_Layer, M0, Ml0, big).all()


def test_limits_follow_the_requantisation_scale():
    ir, qm, x, L = quantized("feat-lstm-lstm", n=4, T=5)
    l = qm.layers[0]
    assert (cell_limits(l, 0) == 0).all()
    lim = cell_limits(l, 40)
    T = (lim + 1) // 2
    for b in l.blocks:
        rows = slice(b.row0, b.row0 + b.rows)
        real = b.mult.astype(np.int64) * 2.0 ** b.ls / 2.0 ** 32      # pre-activation steps per accumulator step
        ok = b.mult > 0
        # T is the least whole number of accumulator steps worth >= 40 pre-activation steps
        assert (T[rows][ok] * real[ok] >= 40 - 1e-9).all() and ((T[rows][ok] - 1) * real[ok] < 40).all()


@pytest.mark.parametrize("cfg", DELTA_CFGS)
def test_theta_m0_is_the_delta_model_bit_for_bit(cfg):
    ir, qm, x, L = quantized(cfg, n=16, T=11)
    k = len(qm.layers)
    out, flags, st = run_stats(with_delta(qm, DeltaSpec([3] * k, [2] * k)), x, L)
    out0, flags0, st0 = run_stats(with_delta(qm, DeltaSpec([3] * k, [2] * k, theta_m=[0] * k)), x, L)
    np.testing.assert_array_equal(out0, out)
    np.testing.assert_array_equal(flags0, flags)
    for key in ("tx_x", "tx_h", "cells"):
        np.testing.assert_array_equal(st0[key], st[key])
    units = np.array([l.units for l in qm.layers])
    np.testing.assert_array_equal(st["cells"], st["steps"][:, None] * units[None, :])


@pytest.mark.parametrize("cfg", ["feat-lstm-lstm", "feat-dense-gru", "feat-rnn", "tok-gru-sigmoid"])
def test_quiet_units_keep_their_whole_state(cfg):
    """Step by step: a unit the rule leaves out keeps every state array of its cell; a unit
    it evaluates gets exactly the dense cell's new values from the same running sums."""
    ir, qm, x, L = quantized(cfg, n=16, T=11)
    k = len(qm.layers)
    qd = with_delta(qm, DeltaSpec([3] * k, [2] * k, theta_m=[3000] * k))
    g = GoldenModel(qd)
    dm = g.methods[0]
    dev = g.device_inputs(x)
    st = g.initial_state(len(x))
    quiet = 0
    for t in range(x.shape[1]):
        run = g.valid_steps(x)[:, t] & (t < L)
        new = g.step(st, dev[:, t], run)
        for i, l in enumerate(qm.layers):
            s, ns = st[i], new[i]
            moved = units_moved(l, ns["M"], s["Ml"], dm._lim[i]) & run[:, None]
            full = cell_of(l.kind).golden_cell(l, s, ns["M"])
            for key in cell_of(l.kind).golden_state:
                np.testing.assert_array_equal(ns[key][moved], full[key][moved])
                np.testing.assert_array_equal(ns[key][~moved], s[key][~moved])
            quiet += int((~moved[:, :l.units] & run[:, None]).sum())
            assert (ns["cells"] - s["cells"])[:, 0].tolist() == moved[:, :l.units].sum(1).tolist()
        st = new
    assert quiet > 0


@pytest.mark.parametrize("cfg", ["feat-lstm-lstm", "feat-dense-gru", "feat-rnn"])
def test_larger_cell_thresholds_evaluate_fewer_units(cfg):
    ir, qm, x, L = quantized(cfg, n=24, T=11)
    k = len(qm.layers)
    cells = [run_stats(with_delta(qm, DeltaSpec([2] * k, [2] * k, theta_m=[tm] * k)), x, L)[2]["cells"].sum()
             for tm in (0, 2000, 20000, 65536)]
    assert cells[0] > cells[1] >= cells[2] >= cells[3]
    # the largest threshold still evaluates every unit at the first step of each sequence
    steps1 = (run_stats(with_delta(qm, DeltaSpec([2] * k, [2] * k)), x, L)[2]["steps"] > 0).sum()
    assert cells[3] >= steps1 * sum(l.units for l in qm.layers)


def test_thresholds_file_carries_the_cell_threshold(tmp_path):
    spec = DeltaSpec([3, 1], [2, 4], theta_m=[None, 48])
    d = spec.to_json()
    assert "cell" not in d["thresholds"][0] and d["thresholds"][1]["cell"] == 48
    back = DeltaSpec.from_json(d)
    assert back.theta_m == [None, 48] and back.label() == "x3/h2 x1/h4/m48"
    old = DeltaSpec.from_json({"format": "rnnskip-delta-1", "thresholds": [{"input": 1, "hidden": 2}],
                               "dense_fallback": 0.6})      # files written before cell thresholds
    assert old.theta_m == [None]
    for bad in (-1, 2.5, "7", True):
        with pytest.raises(RnnskipError, match="cell threshold .* must be a whole number >= 0"):
            DeltaSpec.from_json({"format": "rnnskip-delta-1", "thresholds": [{"input": 1, "hidden": 2, "cell": bad}]})


@pytest.mark.parametrize("cfg", ["feat-lstm-lstm", "feat-dense-gru", "feat-rnn", "tok-gru-sigmoid"])
def test_float_delta_model_with_cell_threshold(cfg):
    """The float delta model (delta-train's forward pass follows it): theta_m 0 is the model
    without, a positive one evaluates fewer units."""
    from random_models import random_data, random_ir

    from rnnskip.delta.floatdelta import FloatDeltaModel
    ir = random_ir(cfg, seed=3)
    x, L = random_data(ir, n=16, T=9, seed=4)
    n = len(ir.rnn_layers)
    y, st = FloatDeltaModel(ir, [0.05] * n, [0.05] * n).run(x, L)
    y0, st0 = FloatDeltaModel(ir, [0.05] * n, [0.05] * n, [0.0] * n).run(x, L)
    np.testing.assert_array_equal(y0, y)
    np.testing.assert_array_equal(st0["cells"], st["cells"])
    _, st1 = FloatDeltaModel(ir, [0.05] * n, [0.05] * n, [0.5] * n).run(x, L)
    assert 0 < st1["cells"].sum() < st["cells"].sum()


@pytest.mark.parametrize("cfg", ["feat-lstm", "feat-dense-gru", "feat-rnn"])
def test_delta_train_forward_pass_with_cell_threshold(cfg):
    """delta-train's Keras model: cell threshold 0 predicts what the model without one does;
    a large one freezes units after the first step, so the outputs change."""
    pytest.importorskip("tf_keras")
    from helpers import quantize_on
    from random_models import random_data, random_ir

    from rnnskip.delta.train import build_delta_model
    ir = random_ir(cfg, seed=2)
    x, _ = random_data(ir, n=6, T=7, seed=3)     # no Masking in these models: every step runs
    qm = quantize_on(ir, x, np.full(len(x), x.shape[1]))
    k = len(ir.rnn_layers)
    outs = []
    for tm in (None, 0, 65536):
        m, cells, *_ = build_delta_model(ir, qm, [2] * k, [2] * k, l1=0.0, noise=0.0,
                                         theta_m=None if tm is None else [tm] * k)
        outs.append(np.asarray(m(x, training=False)))
    np.testing.assert_array_equal(outs[1], outs[0])
    assert not np.allclose(outs[2], outs[0])
