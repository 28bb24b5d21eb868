"""The streamed Conv1D front end (docs/frontends.md): the C fed one frame at a time equals whole-window
Keras for causal front ends; the step methods (delta, skip predictor) stay bit-exact golden = host build
= emulated firmware with a front end; refusals in one line. The Keras corpus (tests/zoo_models.py,
FRONTEND_CASES) checks float = Keras and golden = host = firmware on every configuration and the
refusals (a Conv1D after the recurrent layer, Masking into a Conv1D, unsupported activations and
paddings, other convolutions), one line naming the layer."""
from __future__ import annotations

import ctypes
import os
from dataclasses import replace

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantize_on
from random_models import random_data, random_ir

from rnnskip import pipeline
from rnnskip.converter.ir import ConvLayer, DepthwiseConvLayer, FeatureInput, PoolLayer, front_frames
from rnnskip.generate import generate
from rnnskip.quant.golden import GoldenModel
from rnnskip.reference import FloatModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def front_ir(cfg: str, seed: int = 0, features: int = 5, depthwise: bool = False):
    """random_ir(cfg) behind a front end: Conv1D(causal, dilation 2, relu) -> MaxPooling1D(2) ->
    Conv1D(same, tanh) (flushed at the end of each sequence). ``depthwise``: DepthwiseConv1D(causal, dilation 2,
    depth_multiplier 2, relu) -> Conv1D(kernel 1) -> MaxPooling1D(2) -> DepthwiseConv1D(same, tanh) instead."""
    rng = np.random.default_rng(seed + 10)
    ir = random_ir(cfg, seed=seed, features=6, dim=6)   # the first recurrent layer reads 6 channels
    if depthwise:
        front = [DepthwiseConvLayer(rng.normal(0, 0.5, (3, features, 2)), rng.normal(0, 0.1, 2 * features),
                                    dilation=2, padding="causal", activation="relu", name="dw_a"),
                 ConvLayer(rng.normal(0, 0.5, (1, 2 * features, 6)), rng.normal(0, 0.1, 6), name="pw"),
                 PoolLayer("max", 2, 2, 6, name="pool"),
                 DepthwiseConvLayer(rng.normal(0, 0.6, (3, 6, 1)), rng.normal(0, 0.1, 6), padding="same",
                                    activation="tanh", name="dw_b")]
        ir.input = FeatureInput(features=features, front=front)
        return ir
    front = [ConvLayer(rng.normal(0, 0.5, (3, features, 7)), rng.normal(0, 0.1, 7), dilation=2, padding="causal",
                       activation="relu", name="conv_a"),
             PoolLayer("max", 2, 2, 7, name="pool"),
             ConvLayer(rng.normal(0, 0.4, (3, 7, 6)), rng.normal(0, 0.1, 6), padding="same", activation="tanh",
                       name="conv_b")]
    ir.input = FeatureInput(features=features, front=front)
    return ir


def _with_predictor(qm, x, L, ptype="mlp"):
    """A random int8 skip predictor, its threshold at the median score of the frames it sees."""
    from test_skip_device import random_predictor

    from rnnskip.skip.qpredictor import quantize_predictor
    qp = quantize_predictor(random_predictor(ptype, qm.in_dim, [l.units for l in qm.layers], seed=2), qm)
    scores = []
    qp.score_thr = 2 ** 40
    skip = qp.skip
    qp.skip = lambda xin, state: (scores.append(qp.score(qp.features(xin, state))), skip(xin, state))[1]
    qm.methods = [qp]
    GoldenModel(qm).run(x, L)
    del qp.skip
    qp.score_thr = int(np.median(np.concatenate(scores)))
    return qm


def _method(qm, x, L, which):
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    if "skip" in which:
        qm = _with_predictor(qm, x, L)
    if "delta" in which:
        qm = with_delta(qm, DeltaSpec([2] * len(qm.layers), [2] * len(qm.layers)))
    return qm


@needs_arm
@pytest.mark.parametrize("cfg,which,depthwise", [("feat-lstm-lstm", "dense", False), ("feat-lstm-gru", "delta", False),
                                                 ("feat-gru-gru-v1", "skip", False),
                                                 ("feat-lstm-lstm", "delta+skip", False),
                                                 ("feat-gru-lstm-rnn", "delta+skip", True),
                                                 ("feat-lstm-gru", "delta", True)])
def test_front_end_with_step_methods_bitexact(cfg, which, depthwise, tmp_path):
    """Golden = host build (plain C) = emulated Cortex-M4 firmware (DSP path), outputs and per-frame
    step flags, with delta thresholds and/or a skip predictor on the front end's frames (a skipped
    frame still went through the rings), the flush of padding='same' included; depthwise convolutions too."""
    from rnnskip import targets
    from rnnskip.emulators.unicorn import Unicorn
    ir = front_ir(cfg, depthwise=depthwise)
    x, L = random_data(ir, n=8, T=22, seed=3, spread=True)   # one input scale per feature, folded into the conv
    qm = _method(quantize_on(ir, x, L), x, L, which)
    out, flags = GoldenModel(qm).run(x, L)
    frames = np.array([front_frames(ir.input.front, int(n)) for n in L])
    if "skip" in which:
        assert 0 < flags.sum() < frames.sum(), "the predictor should skip some frames, not all"
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    t = targets.load("cortex-m4")
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, dataset(x, L), host_so=so, firmware=fw,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.host_mismatches == 0 and ev.device_mismatches == 0, ev.first_mismatch
    assert ev.device_checked == len(x)
    if which == "delta":
        _check_profile_parts(qm, dataset(x, L), fw, t)


#: what the profile may leave to "other": the once-per-sequence code and the cycle model's events
# (rnnskip_finish is step code: it runs the flush's frames, and a Bidirectional layer's backward pass, inlined)
PER_SEQUENCE = ("rnnskip_io_run", "rnnskip_run_sequence", "rnnskip_init", "rnnskip_output",
                "rnnskip_class", "rnnskip_fully_connected", "memcpy", "memset")


def _check_profile_parts(qm, ds, fw, t):
    """The per-part cycle profile of a front-end model: the convolution's per-tap mat-vecs are
    under the row-major mat-vec with the Dense head, never under the recurrent layers' mat-vec;
    the front end's driver and the recurrent layers' step code (the cells) have parts of their
    own, 'other' holds only the once-per-sequence code; every profiled cycle is in one part."""
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.pipeline.stages import device_sequences, kernel_parts, parts_per_step
    seqs = device_sequences(qm, ds, 2)
    prof = Unicorn(t, traffic_sample=0, workers=1, progress=False).profile(fw, seqs)
    assert any(f.startswith("rnnskip_conv1d") for f in prof) and any(f.startswith("rnnskip_mv4") for f in prof)
    row = parts_per_step(prof, kernel_parts("portable", qm.methods), 1)
    assert sum(row.values()) == pytest.approx(sum(prof.values()), rel=1e-12)
    assert row["row-major mat-vec (Conv1D taps, Dense layers)"] == sum(
        v for f, v in prof.items() if f.startswith(("rnnskip_mat_vec_acc", "rnnskip_mv4")))
    assert row["front end (conv, rings, pooling)"] > 0 and row["step code (with the cells)"] > 0
    assert row["other (head, I/O)"] == sum(v for f, v in prof.items() if f.startswith(PER_SEQUENCE))
    assert row["taken branches, wait states (all parts)"] == prof["(branches, wait states)"]
    assert row["column-sparse mat-vec"] > 0 and "dense mat-vec" not in row   # delta on every recurrent layer


def test_profile_parts_claim_each_function_once():
    """parts_per_step: a function counts under the first part whose prefixes it matches (the naive
    provider's recurrent mat-vec is not the row-major one, though its name starts the same), the
    step functions (and the cell functions named after them) are the step code, the rest is 'other';
    per executed step."""
    from rnnskip.pipeline.stages import kernel_parts, parts_per_step
    prof = {"rnnskip_mat_vec_acc_s8_naive": 800, "rnnskip_mat_vec_acc_s8": 60, "rnnskip_mv4_dsp_core": 40,
            "rnnskip_conv1d_acc_s8": 30, "rnnskip_depthwise_conv1d_acc_s8": 16, "rnnskip_ring_push_s8": 10,
            "rnnskip_front": 20,
            "rnnskip_step": 120, "rnnskip_recurrent": 80, "rnnskip_step_l0_cells": 40, "rnnskip_io_run": 6,
            "(branches, wait states)": 34}
    row = parts_per_step(prof, kernel_parts("naive"), 4)
    assert row == {"dense mat-vec": 200, "row-major mat-vec (Conv1D taps, Dense layers)": 25,
                   "front end (conv, rings, pooling)": 19, "step code (with the cells)": 60,
                   "taken branches, wait states (all parts)": 8.5, "other (head, I/O)": 1.5}
    from rnnskip.skip.qpredictor import QPredictor
    assert "row-major mat-vec (Conv1D taps, Dense layers, skip predictor)" in kernel_parts("portable", (QPredictor,))
    one = parts_per_step({"rnnskip_mat_vec_acc_s8": 100, "arm_nn_mat_mult_nt_t_s8_s32": 700, "rnnskip_step": 200},
                         kernel_parts("cmsis-nn"), 4)      # one row-major function for every layer
    assert one["dense mat-vec (recurrent, Conv1D taps, Dense layers)"] == 200
    assert "row-major mat-vec (Conv1D taps, Dense layers)" not in one
    # a LayerNormalization's integer normalisation: a part of its own
    ln = parts_per_step({"rnnskip_layer_norm_s8": 40, "rnnskip_isqrt64": 8, "rnnskip_step": 12},
                        kernel_parts("portable"), 4)
    assert ln == {"layer normalisation": 12, "step code (with the cells)": 3, "other (head, I/O)": 0}


def test_conv_weights_are_written_tap_major():
    """The C's Conv1D weights are the golden model's [cout_p, taps * cin_p] reordered to
    [taps][cout_p][cin_p] (one row-major mat-vec per tap): the same bytes, the same sums."""
    from rnnskip.generate import _arrays, tap_major
    ir = front_ir("feat-lstm-lstm")
    qm = quantize_on(ir, *random_data(ir, n=6, T=12, seed=1))
    rng = np.random.default_rng(4)
    arrays = {a["name"]: a for a in _arrays(qm, "paired")}
    for j, f in enumerate(qm.front):
        if not hasattr(f, "dense"):
            continue
        w = np.asarray(f.dense.mat.w, np.int64)
        t = tap_major(w, f.taps)
        assert t.shape == (f.taps, f.cout_p, f.cin_p) and arrays[f"rnnskip_f{j}_w"]["size"] == w.size
        win = rng.integers(-128, 128, (f.taps, f.cin_p))
        np.testing.assert_array_equal(sum(t[k] @ win[k] for k in range(f.taps)), w @ win.reshape(-1))


def test_golden_runs_the_recurrent_layers_once_per_keras_frame():
    """The recurrent layers run once per frame Keras' front end computes on each sequence's length,
    the flush of padding='same' included; the flags mark the input steps that emitted a frame."""
    ir = front_ir("feat-lstm-lstm")
    x, L = random_data(ir, n=8, T=22, seed=3)
    g = GoldenModel(quantize_on(ir, x, L))
    runs = np.zeros(len(x), np.int64)
    step_rows = g._step_rows

    def counting(state, xin, run):
        runs[:] += run
        return step_rows(state, xin, run)

    g._step_rows = counting
    _, flags = g.run(x, L)
    frames = np.array([front_frames(ir.input.front, int(n)) for n in L])
    np.testing.assert_array_equal(runs, frames)
    # the last Conv1D pads one frame after the end: its last frame comes from the flush
    assert (flags.sum(axis=1) == frames - (frames > 0)).all()


# --------------------------------------------------------------------------
# streaming against whole-window Keras (causal front end)

def _keras_streaming_model(padding: str):
    """``normalized-causal``: causal, with a Normalization before the first Conv1D (folded: the ring starts with
    the mean, the frame it maps to the zeros Keras pads with)."""
    import tf_keras as keras
    L = keras.layers
    norm = [L.Normalization(mean=[0.8, -0.6, 1.5], variance=[0.5, 2.0, 1.0])] if padding.startswith("norm") else []
    separable = padding.startswith("separable")
    padding = padding.split("-")[-1]
    if separable:   # (tf_keras' DepthwiseConv1D has no causal padding: it is the valid one at the end)
        front = [L.SeparableConv1D(6, 3, strides=2, padding=padding, activation="relu"), L.MaxPooling1D(2),
                 L.DepthwiseConv1D(2, dilation_rate=2, depth_multiplier=2, activation="tanh")]
    else:
        front = [L.Conv1D(6, 3, strides=2, padding=padding, activation="relu"), L.MaxPooling1D(2),
                 L.Conv1D(5, 2, padding=padding, dilation_rate=2, activation="tanh")]
    m = keras.Sequential([keras.Input((None, 3))] + norm + front + [L.GRU(6), L.Dense(3)])
    rng = np.random.default_rng(5)
    m.set_weights([w.numpy() if "normalization" in w.name else rng.normal(0, 0.5, w.shape).astype(np.float32)
                   for w in m.weights])   # the Normalization keeps its mean and variance
    return m


class _Stream:
    """The generated step API of a host build, driven one frame at a time through ctypes."""

    def __init__(self, so):
        self.lib = ctypes.CDLL(str(so))
        self.state = ctypes.create_string_buffer(1 << 16)   # >= sizeof(rnnskip_state_t), statically sized
        for fn in ("rnnskip_init", "rnnskip_step", "rnnskip_output", "rnnskip_finish"):
            getattr(self.lib, fn).restype = ctypes.c_int32 if fn == "rnnskip_step" else None

    def run(self, q_frames, out_len):
        """Feeds the int8 frames one by one; after each, the head's int16 outputs (None if no frame
        emerged from the front end)."""
        self.lib.rnnskip_init(self.state)
        outs = []
        buf = (ctypes.c_int16 * out_len)()
        for f in q_frames:
            frame = np.ascontiguousarray(f, np.int8)
            ran = self.lib.rnnskip_step(self.state, frame.ctypes.data_as(ctypes.c_void_p), 1)
            if ran:
                self.lib.rnnskip_output(self.state, buf)
                outs.append(np.array(buf, np.int64))
            else:
                outs.append(None)
        return outs


@pytest.mark.keras
@pytest.mark.parametrize("padding", ["causal", "valid", "normalized-causal", "separable-causal"])
def test_streaming_c_equals_whole_window_keras(padding, tmp_path):
    """A causal (or valid) front end (strides, pooling, dilation; causal behind a Normalization, whose fold pads
    with the mean; a SeparableConv1D and a DepthwiseConv1D) streamed by the host build one input frame at a time:
    after every frame t it has run exactly
    the frames Keras computes on the whole window x[:t+1], its head output then is the golden model's on that
    window bit for bit, the float reference equals Keras there to 1e-5, and the output is within int8 error of
    Keras'."""
    pytest.importorskip("tf_keras")
    from rnnskip.converter.keras_import import load_model_file
    m = _keras_streaming_model(padding)
    path = tmp_path / f"{padding}.h5"
    m.save(path)
    ir = load_model_file(str(path))
    rng = np.random.default_rng(6)
    x = rng.normal(0, 1, (4, 26, 3)).astype(np.float32)
    # calibrated on every prefix: the head's output is read after every frame, not only at the end
    T = x.shape[1]
    qm = quantize_on(ir, np.repeat(x, T, axis=0), np.tile(np.arange(1, T + 1, dtype=np.int32), len(x)))
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    stream = _Stream(pipeline.build_host(tmp_path / "src", tmp_path / "host"))
    g = GoldenModel(qm)
    q = g.device_inputs(x)
    out_len = qm.head[-1].rows
    worst, top = 0.0, 0.0
    for n in range(len(x)):
        outs = stream.run(q[n], out_len)
        emitted = 0
        for t, o in enumerate(outs):
            window = x[n:n + 1, : t + 1]
            keras_frames = front_frames(ir.input.front, t + 1)
            emitted += o is not None
            assert emitted == keras_frames, (n, t)
            if o is None:
                continue
            gold, _ = GoldenModel(qm).run(window, np.array([t + 1]))
            np.testing.assert_array_equal(o[: qm.output_dim], gold[0])
            y = np.asarray(m(window, training=False))[0]
            assert np.abs(FloatModel(ir).predict(window)[0] - y).max() <= 1e-5, (n, t)   # the padding as Keras's
            worst = max(worst, float(np.abs(o[: qm.output_dim] * qm.output_scale - y).max()))
            top = max(top, float(np.abs(y).max()))
    assert emitted > 0
    if not padding.startswith("norm"):   # (a normalisation by std < 1 amplifies the input rounding: not this check)
        assert worst < 0.05 * top, (worst, top)   # int8 error: a few per cent of the outputs' range


def test_float_tools_run_on_the_frames():
    """The float side of skip and delta tuning (skip features, the float delta model) runs on the frames
    each row's length gives: with nothing skipped and thresholds 0 it is the float reference."""
    from rnnskip.delta.floatdelta import FloatDeltaModel
    from rnnskip.skip import features
    ir = front_ir("feat-lstm-gru")
    x, L = random_data(ir, n=8, T=22, seed=4)
    fm = FloatModel(ir)
    V, ok = fm.frames(x, L)
    np.testing.assert_array_equal(ok.sum(1), [front_frames(ir.input.front, int(n)) for n in L])
    want = fm.predict(x, L)
    np.testing.assert_allclose(features.run(fm, x, L).out, want, atol=1e-12)
    zeros = [0.0] * len(ir.rnn_layers)
    out, stats = FloatDeltaModel(ir, zeros, zeros).run(x, L)
    np.testing.assert_allclose(out, want, atol=1e-9)
    np.testing.assert_array_equal(stats["steps"], ok.sum(1))


def test_delta_train_refuses_a_front_end_in_one_line(tmp_path):
    """delta-train rebuilds a plain recurrent Keras model: a Conv1D front end is refused before any
    data is read, naming the layer and the alternative."""
    pytest.importorskip("tf_keras")
    from rnnskip.delta.train import run_delta_train
    from rnnskip.errors import RnnskipError
    m = _keras_streaming_model("causal")
    m.save(tmp_path / "crnn.h5")
    with pytest.raises(RnnskipError) as e:
        run_delta_train(str(tmp_path / "crnn.h5"), tmp_path / "absent_train.npz", tmp_path / "absent_val.npz",
                        tmp_path / "out.h5")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("layer 'conv1d") and "starts a Conv1D front end" in msg
    assert msg.endswith("use delta-tune (no retraining) on this model") and not (tmp_path / "out.h5").exists()


def test_a_padding_frame_beyond_a_table_activation_is_refused():
    """A normalisation between a tanh Conv1D and a padded one pads with what it maps to 0; beyond +-1 the int8
    scale of the tanh output (fixed: 1/127) cannot hold it (an audit found it clipped to +-1 silently)."""
    from rnnskip.converter.support import front_pad_problem
    rng = np.random.default_rng(0)
    first = ConvLayer(rng.normal(size=(3, 4, 5)), np.zeros(5), padding="causal", activation="tanh", name="c1")
    second = ConvLayer(rng.normal(size=(3, 5, 6)), np.zeros(6), padding="same", name="c2",
                       pad=np.array([0.5, -2.0, 0.0, 0.1, 0.9]))
    pool = PoolLayer("max", 2, 2, 5, name="p")
    assert front_pad_problem([first, pool, second]) == (
        "c2", "pads with 2, the input the normalisation before it maps to 0, but reads the tanh output of 'c1', "
              "whose int8 scale holds +-1: put the normalisation before that activation, or after this convolution")
    assert front_pad_problem([replace(first, activation="relu"), second]) is None   # relu: calibrated, widened
    assert front_pad_problem([first, replace(second, pad=np.clip(second.pad, -1, 1))]) is None


@pytest.mark.keras
def test_a_separable_layers_refusal_names_it(tmp_path):
    """A SeparableConv1D is two layers of the front end, both named and classed as the user wrote it: its refusal
    names 'sep' (SeparableConv1D) and inspect marks that row refused (a review found 'sep/depthwise' (Conv1D))."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.converter.formats import load_model_file
    from rnnskip.errors import RnnskipError
    from rnnskip.inspect import inspect_file
    L = keras.layers
    m = keras.Sequential([keras.Input((None, 5)), L.Conv1D(4, 3, activation="tanh"), L.BatchNormalization(),
                          L.SeparableConv1D(6, 3, padding="same", name="sep"), L.GRU(4),
                          L.Dense(3, activation="softmax")])
    g, b, mu, v = m.layers[1].get_weights()
    m.layers[1].set_weights([g * 0.5, b + 1.5, mu, v])   # maps -3 to 0: beyond the tanh output's +-1
    m.save(tmp_path / "m.h5")
    with pytest.raises(RnnskipError) as e:
        load_model_file(str(tmp_path / "m.h5"))
    assert str(e.value).startswith("layer 'sep' (SeparableConv1D) pads with ")
    rows = {l.name: l.status for l in inspect_file(str(tmp_path / "m.h5")).layers}
    assert rows["sep"].startswith("refused: layer 'sep' (SeparableConv1D) pads with ")


@pytest.mark.parametrize("bidi", [False, True])
def test_delta_statistics_count_the_flush_steps(bidi):
    """A 'same' front end's flush runs the recurrent layers after the last input step: the delta statistics count
    those steps (the C's steps_run: every frame the front end emits), so without a cell threshold every unit is
    evaluated at every step (cells density exactly 1; it read 1.1 with the flush left out, a review found)."""
    from random_models import bidi_ir

    from rnnskip.delta.golden import densities, run_stats, with_delta
    from rnnskip.delta.spec import DeltaSpec
    ir = front_ir("feat-lstm-gru")
    if bidi:
        inp, ir = ir.input, bidi_ir("feat-lstm-gru", 0, "concat", features=6, dim=6)
        ir.input = inp
    x, L = random_data(ir, n=8, T=14, seed=3)
    L = np.maximum(L, 6)
    qm = quantize_on(ir, x, L)
    assert any(f.right for f in qm.front)   # a flush
    g = GoldenModel(qm)
    _, flags = g.run(x, L)
    want = [front_frames(qm.front, int(n)) for n in L]
    assert list(g.executed_steps(flags)) == want and (flags.sum(axis=1) < want).all()
    _, _, st = run_stats(with_delta(qm, DeltaSpec.uniform(len(qm.layers), 2, 2)), x, L)
    assert list(st["steps"]) == want and densities(qm, st)["cells"] == 1.0


def test_delta_tune_counts_the_dense_model_on_the_frames():
    """delta-tune's dense baseline runs the recurrent layers once per frame the front end emits (a dilated conv and a
    pooling of 2: about half the input steps), as the conversion's report counts them; it counted every input step
    (a review saw 5.39x fewer MACs claimed where the report measured 1.29x)."""
    from helpers import dataset

    from rnnskip.delta.golden import delta_layout, effective_macs
    from rnnskip.delta.tune import _dense_cost
    ir = front_ir("feat-lstm-gru")
    x, L = random_data(ir, n=8, T=20, seed=4)
    L = np.maximum(L, 8)
    qm = quantize_on(ir, x, L)
    layouts = [delta_layout(l) for l in qm.layers]
    frames = np.array([front_frames(qm.front, int(n)) for n in L])
    assert (frames < L).all()

    def dense(steps):
        z = np.zeros((len(x), len(qm.layers)))
        return float(effective_macs(qm, {"steps": steps, "tx_x": z, "tx_h": z}, layouts)["dense"].mean())
    macs, _ = _dense_cost(qm, dataset(x, L), layouts)
    assert macs == dense(frames) and macs < dense(L)


@pytest.mark.parametrize("bidi", [False, True])
def test_a_second_rnnskip_finish_does_nothing(bidi, tmp_path):
    """rnnskip_finish has work at the end of a window ('same' padding frames; a Bidirectional layer's backward
    direction): a second call leaves the output as the golden model's (a review saw a Bidirectional model's class
    change on a second call), and sizeof(rnnskip_state_t) stays within the estimate with the flag it keeps."""
    from random_models import bidi_ir

    from rnnskip.targets.fit import state_bytes
    ir = front_ir("feat-lstm-gru")
    if bidi:
        inp, ir = ir.input, bidi_ir("feat-lstm-gru", 0, "concat", features=6, dim=6)
        ir.input = inp
    x, L = random_data(ir, n=4, T=12, seed=5)
    L = np.full(len(x), 12)
    qm = quantize_on(ir, x, L)
    generate(qm, tmp_path / "src", max_t=12)
    assert "int32_t finished;" in (tmp_path / "src" / "rnnskip_model.h").read_text()
    stream = _Stream(pipeline.build_host(tmp_path / "src", tmp_path / "host"))
    g = GoldenModel(qm)
    ref, _ = g.run(x, L)
    q = g.device_inputs(x)
    buf = (ctypes.c_int16 * qm.out_len)()
    for n in range(len(x)):
        stream.run(q[n], qm.out_len)
        outs = []
        for _ in range(2):
            stream.lib.rnnskip_finish(stream.state)
            stream.lib.rnnskip_output(stream.state, buf)
            outs.append(np.array(buf, np.int64)[: qm.output_dim])
        assert np.array_equal(outs[0], ref[n, : qm.output_dim]) and np.array_equal(outs[1], outs[0]), n
    import subprocess
    main = tmp_path / "size.c"
    main.write_text('#include <stdio.h>\n#include "rnnskip_model.h"\n'
                    'int main(void) { printf("%zu", sizeof(rnnskip_state_t)); return 0; }\n')
    subprocess.run(["gcc", "-std=c99", "-I", str(tmp_path / "src"), str(main), "-o", str(tmp_path / "size")],
                   check=True)
    size = int(subprocess.run([str(tmp_path / "size")], capture_output=True, text=True, check=True).stdout)
    assert state_bytes(qm, 12) >= size   # an upper bound (every member 4-aligned)
