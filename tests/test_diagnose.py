"""The clipping diagnostic (rnnskip/quant/diagnose.py): a relu or linear LSTM/GRU whose candidate passes the int16
range of its calibrated format (at most +-32768, whole units) on the calibration data gets one warning line naming
the layer; a table activation, a SimpleRNN (its own calibrated scale) or inputs the format holds (raw values in the
hundreds included: tests/test_candidate_format.py) get none. The observer changes nothing the golden model
computes."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import dataset, quantize_on
from random_models import random_data, random_ir

from rnnskip.quant.diagnose import clip_warnings, clipping
from rnnskip.quant.golden import GoldenModel


def _relu(cfg: str, act: str, scale: float, seed: int = 0):
    ir = random_ir(cfg, seed=seed)
    for r in ir.rnn_layers:
        r.activation = act
    x, L = random_data(ir, n=16, T=12, seed=seed)
    x = (x * scale).astype(np.float32)
    return quantize_on(ir, x, L), x, L


@pytest.mark.parametrize("cfg", ["feat-lstm", "feat-gru-gru-v1", "feat-dense-gru", "feat-lstm-gru"])
def test_a_relu_recurrent_layer_past_the_int16_range_is_warned_about(cfg):
    qm, x, L = _relu(cfg, "relu", 3e4)
    ref, _ = GoldenModel(qm).run(x, L)
    found = clipping(qm, x, L)
    again, _ = GoldenModel(qm).run(x, L)
    assert np.array_equal(ref, again)
    assert found and all(0 < frac <= 1 for _, frac in found)
    lines = clip_warnings(qm, x, L)
    assert len(lines) == len(found) and all("\n" not in s and s.startswith("warning: layer '") for s in lines)
    assert f"'{found[0][0].name}' ({'LSTM' if found[0][0].kind == 'lstm' else 'GRU'}, activation=relu) takes " \
           "values past +-32768 in" in lines[0] and lines[0].endswith("or use activation='tanh'")


@pytest.mark.parametrize("cfg,act,scale", [("feat-lstm", "tanh", 60.0), ("feat-gru-gru-v1", "tanh", 60.0),
                                           ("feat-rnn", "relu", 60.0), ("feat-lstm", "relu", 0.05),
                                           ("feat-gru-gru-v1", "linear", 0.05), ("feat-lstm", "relu", 60.0),
                                           ("feat-gru-gru-v1", "linear", 60.0)])
def test_no_warning_where_nothing_clips(cfg, act, scale):
    qm, x, L = _relu(cfg, act, scale)
    assert clipping(qm, x, L) == [] and clip_warnings(qm, x, L) == []


def test_the_quantize_stage_prints_the_warning(tmp_path):
    """`rnnskip quantize` (as `rnnskip-convert`) prints the line on stderr for a Keras LSTM(activation='relu') fed
    values 1e5 times its unit-variance data's (past the int16 range of any format), and none for that data nor for
    60 times it (a coarser format holds those)."""
    import subprocess
    import sys
    from pathlib import Path

    k = pytest.importorskip("tf_keras")
    from rnnskip.datasets import Dataset, save_npz
    m = k.Sequential([k.layers.Input((None, 3)), k.layers.LSTM(6, activation="relu", name="lstm"), k.layers.Dense(1)])
    rng = np.random.default_rng(0)
    m.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in m.get_weights()])
    m.save(tmp_path / "m.h5")
    exe = Path(sys.executable).parent / "rnnskip"
    work = tmp_path / "w"
    p = subprocess.run([str(exe), "import", str(tmp_path / "m.h5"), "--out", str(work)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = {}
    for scale in (1.0, 60.0, 1e5):
        data = tmp_path / f"x{scale}.npz"
        x = (rng.normal(0, 1, (20, 8, 3)) * scale).astype(np.float32)
        save_npz(str(data), Dataset(x=x, y=None, lengths=np.full(len(x), 8, np.int32)))
        p = subprocess.run([str(exe), "quantize", str(work), "--calib", str(data)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        lines[scale] = [s for s in p.stderr.splitlines() if "takes values past" in s]
    assert lines[1.0] == lines[60.0] == [] and len(lines[1e5]) == 1
    assert lines[1e5][0].startswith("warning: layer 'lstm' (LSTM, activation=relu) takes values past +-32768 in ")


def test_outputs_and_inputs_past_the_calibrated_range_are_counted():
    """A linear (regression) output is counted where the float model's output lies beyond the int16 range that
    calibration on other (smaller) data set; the calibration data itself counts nothing, its largest output
    included. Input values past their int8 range are counted on the steps that run."""
    from rnnskip.quant.diagnose import saturation, saturation_warnings
    from rnnskip.reference import FloatModel
    ir = random_ir("feat-lstm", seed=1)
    ir.head[-1].activation = "linear"   # a regression head: Dense(4), linear
    x, L = random_data(ir, n=24, T=10, seed=2)
    small = (0.2 * x[:12]).astype(np.float32)
    qm = quantize_on(ir, small, L[:12])
    fm = FloatModel(ir)
    cal = saturation(qm, small, L[:12], fm.predict(small, L[:12]))
    assert cal["outputs"] == (0, 48) and cal["inputs"][0] == 0 and cal["inputs"][1] > 0
    f = fm.predict(x[12:], L[12:])
    sat = saturation(qm, x[12:], L[12:], f)
    beyond = np.abs(f) > 32767.5 * qm.output_scale
    assert sat["outputs"] == (int(beyond.sum()), f.size) and beyond.any()
    assert sat["inputs"][0] > 0.01 * sat["inputs"][1]
    lines = saturation_warnings(qm, sat, "the calibration data")
    assert len(lines) == 2 and lines[0].startswith(f"warning: {int(beyond.sum())} of the {f.size} float outputs on "
                                                   "--data lie beyond the int16 output range")
    assert "of the input values on --data lie beyond the range" in lines[1]
    assert saturation_warnings(qm, cal, "the calibration data") == []
    # as logits: the rows whose largest output the clip moves (a user asked whether a warning on a classifier's
    # logits changed any class)
    top = 32767.5 * qm.output_scale
    moved = int((np.argmax(np.clip(f, -top, top), 1) != np.argmax(f, 1)).sum())
    assert sat["argmax"] == (moved, len(f))
    assert lines[0].endswith(f"the int8 model clips them there (as a classifier's logits: it changes the class, the "
                             f"largest output, of {f'{moved:,}' if moved else 'none'} of the {len(f)} rows); "
                             "calibrate (--calib) on data that covers the outputs' range")


@pytest.mark.parametrize("cfg,warned", [("feat-gru-gru-v1", True), ("feat-dense-gru", False),
                                        ("tok-lstm-softmax", False)])
def test_one_shared_input_scale_that_crushes_a_feature_is_warned_about(cfg, warned):
    """A recurrent first layer quantises every input feature on one scale: a feature 60 times smaller than the
    largest keeps about 2 of 127 levels, said in one line (a user's 0.5-amplitude class signal next to a 0-40
    channel lost 2 points silently). A Dense first layer has one scale per feature; token ids have none."""
    from rnnskip.pipeline import stages
    from rnnskip.quant.diagnose import shared_scale_warnings
    ir = random_ir(cfg, seed=0)
    x, L = random_data(ir, n=16, T=12, seed=0)
    if not ir.is_token_model:
        x = x.copy()
        x[..., 0] *= 1 / 60
        x[..., 1] = np.sign(x[..., 1]) * np.maximum(np.abs(x[..., 1]), 0.5) * 4
    qm, ranges = stages.quantize_model(ir, dataset(x, L), progress=False)
    lines = shared_scale_warnings(qm, ranges.features)
    if not warned:
        assert lines == []
        return
    m = np.abs(x[np.arange(x.shape[1])[None, :] < L[:, None]]).max(0)   # the steps that run
    assert len(lines) == 1 and lines[0].startswith(
        f"warning: the input features share one int8 scale (the first layer is recurrent), which feature 1's "
        f"calibrated range (max |x| {m[1]:.3g}) sets, so feature 0 (max |x| {m[0]:.3g}) spans only "
        f"+-{127 * m[0] / m[1]:.1f} of 127 levels"), lines
    # the same data on a common scale: no warning
    qm, ranges = stages.quantize_model(ir, dataset(np.clip(x * 0 + 1, -1, 1).astype(np.float32), L), progress=False)
    assert shared_scale_warnings(qm, ranges.features) == []
