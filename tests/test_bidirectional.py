"""Bidirectional recurrent layers (docs/bidirectional.md): the forward direction streams step by step, the
backward one runs over the buffered window in rnnskip_finish. The Keras corpus (tests/zoo_models.py,
BIDI_CASES) checks float = Keras and golden = host = firmware on every configuration and the refusals;
here: delta thresholds on both directions golden = host = firmware, the valid steps in reverse, the skip
predictor's refusal, the window buffer in the fit estimate."""
from __future__ import annotations

from dataclasses import replace as dataclass_replace

import numpy as np
import pytest
from helpers import check_host_and_device, dataset, needs_arm, quantize_on
from random_models import bidi_ir, random_data

from rnnskip import pipeline
from rnnskip.errors import RnnskipError
from rnnskip.generate import generate
from rnnskip.quant.golden import GoldenModel
from rnnskip.reference import FloatModel, merge

# (random_models config, index of the Bidirectional layer (or layers), merge_mode, one output per step)
MODELS = [("feat-lstm-gru", 0, "concat", False),          # into a GRU (return_sequences), input Dense
          ("tok-lstm-gru-lstm-gru", 1, "mul", False),     # in the middle of a 4-layer stack, Embedding(mask_zero)
          ("feat-mask-rnn-lstm", 1, "sum", False),        # the last recurrent layer, then the head; Masking
          ("feat-gru-gru-v1", 0, "ave", False),           # GRU reset_after=False (no delta: dense only)
          ("feat-mask-gru", 0, "sum", True),              # per-step head on it (zeros at masked steps)
          ("tok-lstm-gru-lstm-gru", 2, "concat", True),   # per-step head after a later layer
          # stacked Bidirectional layers: the first one's forward direction streams, the rest runs in rnnskip_finish
          ("tok-lstm-gru-lstm-gru", (1, 2), "concat", False),  # two in a row, then a later layer
          ("feat-mask-rnn-lstm", (0, 1), "sum", True),         # two in a row, the last one's merged output per step
          ("tok-lstm-gru-lstm-gru", (0, 2), "ave", True),      # a unidirectional layer between them, a later one
          ("feat-lstm-gru", (0, 1), "mul", False)]             # the last one's merged final output


def _delta(qm, theta: int):
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    return with_delta(qm, DeltaSpec([theta] * len(qm.layers), [theta] * len(qm.layers)))


@needs_arm
@pytest.mark.parametrize("cfg,index,merge_mode,per_step", MODELS)
def test_bidirectional_bitexact_dense_and_delta(cfg, index, merge_mode, per_step, tmp_path):
    """Golden = host build = emulated Cortex-M4 firmware, outputs (per step too) and step flags, dense and with
    delta thresholds on every layer, both directions of the Bidirectional one included."""
    ir = bidi_ir(cfg, index, merge_mode, per_step=per_step)
    _check_dense_and_delta(ir, per_step, tmp_path, delta=cfg != "feat-gru-gru-v1")   # reset_after=False: no delta


@needs_arm
@pytest.mark.parametrize("index,merge_mode", [(0, "concat"), ((0, 1), "sum")])
def test_bidirectional_after_a_front_end_bitexact_dense_and_delta(index, merge_mode, tmp_path):
    """A Conv1D front end (causal, max pooling, 'same' flushed at the end) before Bidirectional layers (CNN-BiLSTM):
    the forward direction runs on the frames as the front end emits them, the backward one over the buffered frames
    in rnnskip_finish, after the flush. Golden = host = firmware, dense and delta; the window buffer holds the
    frames of max_t input steps, not max_t."""
    from test_frontend import front_ir

    from rnnskip.converter.ir import front_frames
    from rnnskip.targets.fit import bidi_bytes
    ir = bidi_ir("feat-lstm-gru", index, merge_mode, features=6, dim=6)
    ir.input = front_ir("feat-lstm-gru").input
    _check_dense_and_delta(ir, False, tmp_path, delta=True)
    x, L = random_data(ir, n=8, T=11, seed=3)
    qm = quantize_on(ir, x, L)
    frames = front_frames(qm.front, 40)
    assert 0 < frames < 40 and bidi_bytes(qm, 40) == bidi_bytes(dataclass_replace(qm, front=[]), frames)
    header = (tmp_path / "dense" / "src" / "rnnskip_model.h").read_text()
    assert f"#define RNNSKIP_BIDI_MAX_T {front_frames(qm.front, x.shape[1])} " in header


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooled_bidirectional_after_a_front_end_calibrates_on_its_frames(pool):
    """A front end, a Bidirectional layer and pooling over time on rows shorter than the window: calibration pools
    the frames each row's front end emitted (it took every step within the row's input length as a frame, so a max
    pooling saw zeros the model never pools, and the head's range came out too small: its int16 output
    saturated). The head's calibrated range is the float model's largest output on the same rows."""
    from test_frontend import front_ir

    from rnnskip.quant.calibrate import calibrate
    ir = bidi_ir("feat-lstm-gru", 1, "concat", features=6, dim=6, seed=4)   # the last layer, pooled
    ir.input = front_ir("feat-lstm-gru", seed=4).input
    ir.rnn_layers[-1].return_sequences, ir.pool = True, pool
    ir.head[-1].activation = "linear"
    x, _ = random_data(ir, n=16, T=24, seed=5)
    L = np.random.default_rng(2).integers(3, 25, len(x)).astype(np.int32)
    fm = FloatModel(ir)
    r = calibrate(ir, fm, x, L, progress=False)
    assert r.head[-1] == pytest.approx(float(np.abs(fm.predict(x, L)).max()), rel=1e-9)


def test_delta_file_holds_both_directions(tmp_path):
    """delta.json has one entry per direction (delta-tune wrote only the forward one, which rnnskip-convert
    then refused: 1 layer's thresholds for a model with 2)."""
    from rnnskip.delta.spec import DeltaSpec
    ir = bidi_ir("tok-lstm-gru-lstm-gru", 1, "mul")
    spec = DeltaSpec([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    spec.save(tmp_path / "d.json", ir)
    back = DeltaSpec.load(tmp_path / "d.json")
    back.check_model(ir)
    assert (back.theta_x, back.theta_h) == ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    names = [l.name for l in ir.rnn_layers]
    assert [t["layer"] for t in spec.to_json(ir)["thresholds"]] == [names[0], names[1], f"{names[1]}_backward",
                                                                      names[2], names[3]]


@needs_arm
def test_bidirectional_lstm_with_one_direction_on_split_scales_bitexact(tmp_path):
    """A forward direction whose input weights dominate keeps its input and recurrent weights on their own
    scales (8 accumulator planes) next to a backward direction on one shared scale (4): both bit-exact."""
    ir = bidi_ir("feat-lstm-gru", 0, "concat")
    ir.rnn_layers[0].kernel = ir.rnn_layers[0].kernel * 8
    x, L = random_data(ir, n=8, T=11, seed=3)
    qm = quantize_on(ir, x, L)
    assert [(l.direction, l.options.get("split"), l.planes) for l in qm.layers[:2]] == [("forward", True, 8),
                                                                                        ("backward", False, 4)]
    _check_dense_and_delta(ir, False, tmp_path, delta=True)


def _check_dense_and_delta(ir, per_step: bool, tmp_path, delta: bool):
    x, L = random_data(ir, n=8, T=11, seed=3)
    y = np.zeros(x.shape[:2] if per_step else len(x), np.int64)
    dense = quantize_on(ir, x, L)
    variants = [("dense", dense)]
    if delta:
        variants.append(("delta", _delta(dense, 2)))
        # theta 0: the running sums equal the dense accumulators, bit for bit
        np.testing.assert_array_equal(GoldenModel(_delta(dense, 0)).run(x, L)[0], GoldenModel(dense).run(x, L)[0])
    for name, qm in variants:
        check_host_and_device(ir, qm, dataset(x, L, y), tmp_path / name, x.shape[1])


def test_last_bidirectional_layer_without_head_outputs_both_directions(tmp_path):
    """Bidirectional(concat) as the last layer with no head: the device's output row is the merged width (it was the
    units' width: the host build returned only the forward direction's half)."""
    ir = bidi_ir("feat-mask-gru", 0, "concat")
    ir.head = []
    x, L = random_data(ir, n=6, T=7, seed=1)
    qm = quantize_on(ir, x, L)
    assert qm.out_width == qm.layers[0].merge_p > qm.layers[0].up
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    ev = pipeline.evaluate(ir, qm, dataset(x, L, np.zeros((len(x), 2 * ir.rnn_layers[0].units), np.float32)),
                           host_so=so)
    assert ev.host_checked == len(x) and ev.host_mismatches == 0, ev.first_mismatch


def test_backward_direction_runs_the_valid_steps_in_reverse():
    """The float model's backward direction: the valid steps of each row (masked ones and those past its length
    left out, wherever they are), last to first, from a zero state; merged with the forward state."""
    ir = bidi_ir("feat-mask-gru", 0, "concat")
    fm = FloatModel(ir)
    x, L = random_data(ir, n=6, T=9, seed=4)
    V, ok = fm.frames(x, L)
    want = []
    for n in range(len(x)):
        steps = np.flatnonzero(ok[n])
        f, b = fm.layers[0].zero_state(None), fm.backward[0].zero_state(None)
        for t in steps:
            f = fm.layers[0].step(f, V[n, t])
        for t in steps[::-1]:
            b = fm.backward[0].step(b, V[n, t])
        want.append(fm.head_out(merge("concat", f[0], b[0])))
    np.testing.assert_allclose(fm.predict(x, L), np.stack(want), atol=1e-12)


def test_golden_buffers_only_the_steps_that_ran():
    """The backward direction and the later layers run once per step that ran forward (the C's buffer)."""
    ir = bidi_ir("tok-lstm-gru-lstm-gru", 1, "concat")
    x, L = random_data(ir, n=6, T=9, seed=5)
    g = GoldenModel(quantize_on(ir, x, L))
    runs = {}
    layer_step = g.layer_step

    def counting(i, s, xin):
        runs[i] = runs.get(i, 0) + len(xin)
        return layer_step(i, s, xin)

    g.layer_step = counting
    _, flags = g.run(x, L)
    steps = int(flags.sum())
    assert runs == {i: steps for i in range(5)}   # 4 layers, the Bidirectional one with two directions


def test_skip_predictor_is_refused_in_one_line():
    from test_skip_device import random_predictor

    from rnnskip.skip.qpredictor import quantize_predictor
    ir = bidi_ir("feat-lstm-gru", 0, "sum")
    x, L = random_data(ir, n=4, T=6)
    qm = quantize_on(ir, x, L)
    with pytest.raises(RnnskipError) as e:
        quantize_predictor(random_predictor("mlp", qm.in_dim, [l.units for l in qm.layers], seed=2), qm)
    msg = str(e.value)
    assert "\n" not in msg and "'lstm_0' is Bidirectional" in msg and "--delta" in msg
    with pytest.raises(RnnskipError, match="'lstm_0' is Bidirectional"):
        FloatModel(ir).step(FloatModel(ir).initial_state(), np.zeros(ir.input_dim))
    from rnnskip.skip.convert import SkipSetup  # --predictor / --skip auto: before any file is read
    for options in ({"predictor": "no_such_dir"}, {"skip": "auto"}):
        with pytest.raises(RnnskipError) as e:
            SkipSetup.from_options(ir, log=lambda *_: None, **options)
        assert str(e.value) == msg


def test_fit_estimate_counts_the_window_buffer(tmp_path):
    """The fit estimate's window buffers grow with the window as the compiled rnnskip_state_t does (its sizeof, from
    the generated header, at two window lengths)."""
    import subprocess

    from rnnskip.targets.fit import state_bytes
    main = tmp_path / "size.c"
    main.write_text('#include <stdio.h>\n#include "rnnskip_model.h"\n'
                    'int main(void) { printf("%zu", sizeof(rnnskip_state_t)); return 0; }\n')
    for k, (cfg, index, merge_mode, per_step) in enumerate(MODELS):
        ir = bidi_ir(cfg, index, merge_mode, per_step=per_step)
        x, L = random_data(ir, n=4, T=6)
        qm = quantize_on(ir, x, L)
        size = {}
        for max_t in (50, 100):
            src = tmp_path / f"{k}-{max_t}"
            generate(qm, src, max_t=max_t)
            subprocess.run(["gcc", "-std=c99", "-I", str(src), str(main), "-o", str(src / "size")], check=True)
            size[max_t] = int(subprocess.run([str(src / "size")], capture_output=True, text=True, check=True).stdout)
        assert size[100] - size[50] > 0
        assert state_bytes(qm, 100) - state_bytes(qm, 50) == size[100] - size[50], cfg
        assert state_bytes(qm, 100) >= size[100], cfg   # an upper bound (every member 4-aligned)


def test_stacked_bidirectional_buffers():
    """Two Bidirectional layers in a row: the second reads the first one's merged outputs, so it keeps no input
    buffer of its own; with a layer between them it does."""
    from rnnskip.generate import bidi_context
    for index, own in (((1, 2), False), ((0, 2), True)):
        ir = bidi_ir("tok-lstm-gru-lstm-gru", index, "concat")
        x, L = random_data(ir, n=4, T=6)
        st = bidi_context(quantize_on(ir, x, L))["bidi_stages"]
        assert [s["f"] for s in st] == [index[0], index[1] + 1]   # each Bidirectional layer is two entries
        assert st[1]["own_x"] is own and st[1]["x"] == ("bidi2_x" if own else "bidi_y")
        assert st[0]["seq"] and st[1]["seq"]   # the next one and the later layer read them per step


def test_the_terminal_table_names_the_bidirectional_layer():
    from rnnskip.report import _model_line
    m = {"type": "gru+lstm", "params": 1234, "macs_per_step": 567,
         "layers": [{"name": "bidi", "kind": "gru", "units": 8, "bidirectional": "concat"},
                    {"name": "lstm", "kind": "lstm", "units": 4}]}
    assert _model_line(m) == "gru+lstm 8/4 units (Bidirectional 'bidi', merge concat), 1,234 params, 567 MAC/step"
    del m["layers"][0]["bidirectional"]
    assert _model_line(m) == "gru+lstm 8/4 units, 1,234 params, 567 MAC/step"


@pytest.mark.keras
def test_keras3_h5_with_an_explicit_backward_layer():
    """Bidirectional(LSTM, backward_layer=LSTM(go_backwards=True)) in a Keras 3 .h5 keeps the backward layer's weights
    under its own name, not backward_*: read as the .keras file is (an audit found it refused as 'no weights')."""
    keras = pytest.importorskip("keras")
    import tempfile

    from rnnskip.converter.formats import load_model_file
    L = keras.layers
    m = keras.Sequential([keras.Input(shape=(None, 3)),
                          L.Bidirectional(L.LSTM(8), backward_layer=L.LSTM(8, go_backwards=True)), L.Dense(2)])
    m.set_weights([np.random.default_rng(0).normal(0, 0.5, w.shape).astype(np.float32) for w in m.get_weights()])
    x = np.random.default_rng(1).normal(size=(4, 6, 3)).astype(np.float32)
    want = m.predict(x, verbose=0)
    with tempfile.TemporaryDirectory() as d:
        for ext in ("h5", "keras"):
            m.save(f"{d}/m.{ext}")
            ir = load_model_file(f"{d}/m.{ext}")
            assert np.abs(FloatModel(ir).predict(x) - want).max() <= 1e-5, ext


@needs_arm
@pytest.mark.keras
def test_the_window_buffer_taken_from_the_data_is_said(tmp_path):
    """rnnskip-convert without --max-t sizes a Bidirectional layer's window buffer from --data's sequences: a note says
    how many steps it holds and what a longer stream gets (a user fed 320-frame streams to a 20-frame buffer, told
    nothing at conversion); with --max-t, no note."""
    keras = pytest.importorskip("tf_keras")
    from test_cli import cli

    from rnnskip.datasets import Dataset, save_npz
    m = keras.Sequential([keras.Input((None, 3)), keras.layers.Bidirectional(keras.layers.GRU(4)),
                          keras.layers.Dense(2, activation="softmax")])
    m.save(tmp_path / "b.h5")
    rng = np.random.default_rng(0)
    save_npz(str(tmp_path / "d.npz"), Dataset(x=rng.normal(size=(6, 9, 3)).astype(np.float32), y=np.zeros(6, np.int64),
                                              lengths=np.full(6, 9, np.int32)))
    base = ("rnnskip-convert", tmp_path / "b.h5", "--data", tmp_path / "d.npz", "--emulate-max", "2")
    p = cli(*base, "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    assert ("note: the Bidirectional window buffer holds 9 steps, for --data's 9-step sequences: a longer stream's "
            "later steps are dropped (rnnskip_step returns RNNSKIP_STEP_WINDOW_FULL); give --max-t for longer "
            "windows") in p.stdout + p.stderr
    p = cli(*base, "--max-t", "40", "--out", tmp_path / "o40")
    assert p.returncode == 0 and "window buffer holds" not in p.stdout + p.stderr, p.stderr
    assert "#define RNNSKIP_BIDI_MAX_T 40" in (tmp_path / "o40" / "src" / "rnnskip_model.h").read_text()
