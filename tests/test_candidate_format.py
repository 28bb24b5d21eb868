"""A relu or linear LSTM/GRU keeps its candidate on an int16 format chosen from its calibrated range
(cells.base.candidate_q_for): a model fed raw values (60 times unit-variance data here, readings of 20-80 in a
forecasting tutorial) is no longer clipped at +-8, so its int8 outputs follow the float model's; tables and ranges
within +-8 keep Q3.12 and every bit of today's arithmetic. Golden = host build = firmware with the calibrated
format, split LSTM scales, GRU reset_after both ways and a delta network's cell threshold included."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_host_and_device, dataset, needs_arm, quantize_on
from random_models import random_data, random_ir

from rnnskip.cells import cell_of
from rnnskip.cells.base import candidate_q_for
from rnnskip.delta.cellrule import cell_limits
from rnnskip.delta.golden import run_stats, with_delta
from rnnskip.delta.spec import DeltaSpec
from rnnskip.quant.diagnose import clip_warnings, clipping
from rnnskip.quant.golden import GoldenModel
from rnnskip.reference import FloatModel


def _model(cfg: str, act: str, scale: float, seed: int = 0, regression: bool = True):
    ir = random_ir(cfg, seed=seed)
    for r in ir.rnn_layers:
        r.activation = act
    if regression:
        ir.head[-1].activation = "linear"
    x, L = random_data(ir, n=16, T=12, seed=seed)
    x = (x * scale).astype(np.float32)
    return ir, quantize_on(ir, x, L), x, L


def _recurrent(qm):
    return [l for l in qm.layers if cell_of(l.kind).recurrent]


def test_the_format_follows_the_range():
    assert [candidate_q_for(m) for m in (0.0, 0.5, 8.0, 8.01, 16.0, 35.0, 64.0, 1000.0, 32768.0, 1e6)] == \
        [12, 12, 12, 11, 11, 9, 9, 5, 0, 0]


@pytest.mark.parametrize("cfg,act", [("feat-lstm", "relu"), ("feat-mask-gru", "relu"), ("feat-dense-gru", "relu"),
                                     ("feat-lstm-gru", "relu"), ("feat-gru-gru-v1", "relu"),
                                     ("feat-lstm-gru", "linear")])
def test_raw_inputs_are_not_clipped_at_8(cfg, act):
    """Relu layers on values 60 times the unit-variance data's: each takes a format coarser than Q3.12, nothing
    clips on the calibration data, and the regression outputs stay within 30% of the float model's largest
    (the int8 model in Q3.12 was off by 87-98% on these: clipped at 8, where the float candidates reach hundreds).
    The linear LSTM has split scales: its gates' halves, past +-8 each and cancelling, are added before they
    saturate (saturated first, they left it 79% off)."""
    ir, qm, x, L = _model(cfg, act, 60.0)
    assert all(l.options["cand_q"] < 12 for l in _recurrent(qm))
    assert act == "relu" or qm.layers[0].options["split"]
    assert clipping(qm, x, L) == [] and clip_warnings(qm, x, L) == []
    out, _ = GoldenModel(qm).run(x, L)
    f = FloatModel(ir).predict(x, L)
    assert np.abs(out * qm.output_scale - f).max() < 0.3 * np.abs(f).max()


@pytest.mark.parametrize("cfg", ["feat-lstm", "feat-lstm-gru", "feat-gru-gru-v1"])
def test_small_ranges_and_tables_keep_q3_12(cfg):
    """Within +-8 the candidate stays Q3.12 (cand_q 12: the arithmetic of a model quantised before the format was
    calibrated); a table activation has no cand_q and every plane is Q3.12."""
    _, qm, _, _ = _model(cfg, "relu", 0.05)
    assert all(l.options["cand_q"] == 12 for l in _recurrent(qm))
    _, qm, _, _ = _model(cfg, "tanh", 60.0)
    for l in _recurrent(qm):
        assert "cand_q" not in l.options and (cell_of(l.kind).plane_frac(l) == 12).all()


def test_an_lstm_candidate_and_cell_state_past_128():
    """A relu LSTM's cell state takes fewer than 8 fractional bits where its range needs them (a table activation's
    stops at 8: it saturates past +-8 anyway), and the candidate's planes (each half, with split scales) are the
    only ones off Q3.12."""
    _, qm, _, _ = _model("feat-lstm-gru", "linear", 60.0)
    l = qm.layers[0]
    assert l.kind == "lstm" and l.options["split"] and l.options["cell_shift"] < 8
    f = cell_of("lstm").plane_frac(l).reshape(-1, l.up)
    assert (f[[2, 6]] == l.options["cand_q"]).all() and (np.delete(f, [2, 6], axis=0) == 12).all()


def test_the_lstm_product_shift_stays_positive():
    """A candidate past 16384 (cand_q 0) with a cell state within +-1: c gives up fractional bits so that i*g's
    shift, qr + qa - cell_shift, stays >= 1 (a rounding shift of 0 is undefined in the C), and g keeps its
    range. The cell runs on accumulators at every extreme."""
    from rnnskip.cells.lstm import LSTM
    from rnnskip.quant.act import out_q
    from rnnskip.quant.model import pad4
    ir = random_ir("feat-lstm", seed=0)
    layer = ir.rnn_layers[0]
    layer.activation = "relu"
    for ract in ("sigmoid", "hard_sigmoid"):
        layer.recurrent_activation = ract
        l = LSTM.quantize(layer, 0.05, pad4(layer.input_dim), {"h": 20000.0, "c": 0.5, "cand": 30000.0})
        assert l.options["cand_q"] == 0 and out_q(ract) + 0 - l.options["cell_shift"] >= 1
        acc = np.random.default_rng(0).integers(-2**31, 2**31, (64, l.acc_rows))
        s = LSTM.golden_zero_state(l, 64)
        s["c"] = np.random.default_rng(1).integers(-32768, 32768, (64, l.up))
        LSTM.golden_cell(l, s, acc)


def test_past_the_int16_range_is_still_warned_about():
    """Values past 32768 leave no format to move to: the clipping warning names the range."""
    ir, qm, x, L = _model("feat-lstm", "relu", 3e4, regression=False)
    found = clipping(qm, x, L)
    assert found and qm.layers[0].options["cand_q"] == 0
    line = clip_warnings(qm, x, L)[0]
    assert line.startswith("warning: layer 'lstm_0' (LSTM, activation=relu) takes values past +-32768 in ") and \
        line.endswith("so they stay within +-32768, or use activation='tanh'")


def test_cell_threshold_counts_real_units_on_every_plane():
    """theta_m is in steps of 2^-12 of the real pre-activation on every row: on a candidate row of format q
    the limit is theta_m * 2^(q - 12) of its own steps."""
    _, qm, _, _ = _model("feat-lstm-gru", "relu", 60.0)
    for l in _recurrent(qm):
        lim = cell_limits(l, 4000)
        T = (lim + 1) // 2
        q = cell_of(l.kind).plane_frac(l)
        assert (q < 12).any()
        for b in l.blocks:
            rows = slice(b.row0, b.row0 + b.rows)
            real = b.mult.astype(np.int64) * 2.0 ** b.ls / 2.0 ** 32   # own steps per accumulator step
            ok = b.mult > 0
            want = 4000 * 2.0 ** (q[rows][ok] - 12)
            assert (T[rows][ok] * real[ok] >= want - 1e-9).all() and ((T[rows][ok] - 1) * real[ok] < want).all()


@needs_arm
@pytest.mark.parametrize("cfg,act", [("feat-lstm-gru", "linear"), ("feat-gru-gru-v1", "relu"),
                                     ("feat-lstm-lstm", "relu")])
def test_golden_host_firmware_bitexact(cfg, act, tmp_path):
    """Split and shared LSTM scales, GRU reset_after=True and False, each candidate on a calibrated format."""
    ir, qm, x, L = _model(cfg, act, 60.0, regression=False)
    assert all(l.options["cand_q"] < 12 for l in _recurrent(qm))
    check_host_and_device(ir, qm, dataset(x, L), tmp_path, max_t=x.shape[1])


@needs_arm
def test_delta_with_cell_threshold_bitexact(tmp_path):
    ir, qm, x, L = _model("feat-lstm-gru", "relu", 60.0, regression=False)
    k = len(qm.layers)
    qm = with_delta(qm, DeltaSpec([3] * k, [2] * k, theta_m=[3000] * k))
    _, _, st = run_stats(qm, x, L)
    units = np.array([l.units for l in qm.layers])
    assert 0 < st["cells"].sum() < (st["steps"][:, None] * units[None, :]).sum()   # units left out
    ev = check_host_and_device(ir, qm, dataset(x, L), tmp_path, max_t=x.shape[1])
    out, _, _ = run_stats(qm, x, L)
    np.testing.assert_array_equal(ev.emu.out[:, : qm.output_dim], out)
