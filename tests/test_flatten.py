"""Flatten over the time axis (docs/pooling.md): return_sequences=True -> Flatten -> Dense on a fixed number of
steps, the head reading every step's output side by side. The Keras corpus (tests/zoo_models.py, FLATTEN_CASES)
checks float = Keras and golden = host = firmware, masking included; here: the int8 layout by hand, golden = host =
firmware with delta thresholds, the RAM estimate against the compiled struct, the data's number of steps, and
delta-train writing a model that keeps its Flatten."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from helpers import check_host_and_device, dataset, needs_arm, quantize_on
from random_models import random_data, random_ir
from test_cli import cli

from rnnskip import pipeline
from rnnskip.errors import RnnskipError
from rnnskip.generate import generate
from rnnskip.quant.golden import Flatten, GoldenModel
from rnnskip.reference import FloatModel


def flatten_ir(config: str, steps: int, seed: int = 0):
    """random_ir(config) with its last recurrent layer returning sequences into a Flatten of ``steps`` steps (the
    first head Dense widened to read them all)."""
    ir = random_ir(config, seed=seed)
    ir.rnn_layers[-1].return_sequences = True
    ir.pool, ir.pool_name, ir.pool_steps = "flatten", "flatten", steps
    d = ir.head[0]
    d.kernel = np.random.default_rng(seed + 7).normal(0, 0.5 / np.sqrt(steps), (steps * d.kernel.shape[0],
                                                                                 d.kernel.shape[1]))
    return ir


def test_flatten_layout_by_hand():
    """Step t's real units go to t * real .. (t + 1) * real - 1, rows that get no step keep zeros, a step past the
    last slot is not kept."""
    f = Flatten(n=2, real=3, steps=2, width=8)
    y = np.arange(8).reshape(2, 4) + 1
    f.add(np.array([True, False]), y)
    f.add(np.array([True, True]), -y)
    f.add(np.array([True, True]), 100 * y)   # past the 2 slots of row 0; row 1's second step
    assert f.out().tolist() == [[1, 2, 3, -1, -2, -3, 0, 0], [-5, -6, -7, 500, 600, 700, 0, 0]]


@needs_arm
@pytest.mark.parametrize("config", ["feat-mask-gru", "tok-lstm-gru-lstm-gru", "feat-rnn"])
def test_flatten_bitexact_dense_and_delta(config, tmp_path):
    """Golden = host build = emulated Cortex-M4 firmware, dense and with delta thresholds on every layer; the float
    reference reads every step (its Flatten is [N, T * units])."""
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    T = 9
    ir = flatten_ir(config, T)
    x, L = random_data(ir, n=8, T=T, seed=3)
    # lengths as a caller may give them (shorter than T, one 0): every row runs all T steps all the same, in the
    # golden model, the host build and the firmware (a review found evaluate ran the host build to the lengths)
    L[0], L[1] = 0, 2
    assert FloatModel(ir).predict(x, L).shape == (8, ir.output_dim)
    dense = quantize_on(ir, x, L)
    assert dense.pool_width == -(-T * dense.layers[-1].units // 4) * 4
    k = len(dense.layers)
    for name, qm in (("dense", dense), ("delta", with_delta(dense, DeltaSpec([2] * k, [2] * k)))):
        check_host_and_device(ir, qm, dataset(x, L), tmp_path / name, T)
    # the delta golden model's outputs are not the dense ones (the thresholds changed something)
    assert not np.array_equal(GoldenModel(with_delta(dense, DeltaSpec([2] * k, [2] * k))).run(x, L)[0],
                              GoldenModel(dense).run(x, L)[0])


def test_fit_estimate_counts_the_flattened_steps(tmp_path):
    """The state grows with the number of steps flattened as the compiled rnnskip_state_t does (its sizeof)."""
    from rnnskip.targets.fit import state_bytes
    main = tmp_path / "size.c"
    main.write_text('#include <stdio.h>\n#include "rnnskip_model.h"\n'
                    'int main(void) { printf("%zu", sizeof(rnnskip_state_t)); return 0; }\n')
    size, est = {}, {}
    for T in (8, 13):
        ir = flatten_ir("feat-gru-lstm-rnn", T)
        x, _ = random_data(ir, n=4, T=T)
        qm = quantize_on(ir, x, np.full(4, T, np.int32))
        src = tmp_path / f"t{T}"
        generate(qm, src, max_t=T)
        subprocess.run(["gcc", "-std=c99", "-I", str(src), str(main), "-o", str(src / "size")], check=True)
        size[T] = int(subprocess.run([str(src / "size")], capture_output=True, text=True, check=True).stdout)
        est[T] = state_bytes(qm, T)
        assert est[T] >= size[T]
    assert est[13] - est[8] == size[13] - size[8] > 0


def test_data_with_another_number_of_steps_and_lengths(tmp_path):
    """Sequences of another length than the model flattens: one line; lengths shorter than the steps: every row runs
    them all (Keras runs the arrays as given), said in a note."""
    ir = flatten_ir("feat-rnn", 6)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "long.npz", x=rng.normal(size=(3, 7, 5)).astype(np.float32), y=np.zeros(3, np.int64))
    with pytest.raises(RnnskipError) as e:
        pipeline.load_data(str(tmp_path / "long.npz"), ir, "--data")
    assert str(e.value) == (f"model '{ir.name}' flattens the outputs of exactly 6 steps (its layer 'flatten'), but "
                            "long.npz has 7 steps per sequence; give sequences of 6 steps")
    with pytest.raises(RnnskipError, match="flattens the outputs of exactly 6 steps"):
        FloatModel(ir).predict(rng.normal(size=(2, 5, 5)))
    np.savez(tmp_path / "short.npz", x=rng.normal(size=(3, 6, 5)).astype(np.float32), y=np.zeros(3, np.int64),
             lengths=np.array([6, 4, 2], np.int32))
    notes = []
    ds = pipeline.load_data(str(tmp_path / "short.npz"), ir, "--data", note=notes.append)
    assert ds.lengths.tolist() == [6, 6, 6]
    assert any("2 rows of " in n and "run all 6 steps, not to their lengths" in n for n in notes + ds.notes)
    assert ds.padding == "Flatten over time: every step run (lengths not used)"
    # lengths of 0 (a row the user marks empty) are not refused: the lengths are not used
    np.savez(tmp_path / "zero.npz", x=rng.normal(size=(2, 6, 5)).astype(np.float32), y=np.zeros(2, np.int64),
             lengths=np.array([0, 6], np.int32))
    assert pipeline.load_data(str(tmp_path / "zero.npz"), ir, "--data").lengths.tolist() == [6, 6]
    np.savez(tmp_path / "neg.npz", x=rng.normal(size=(2, 6, 5)).astype(np.float32), y=np.zeros(2, np.int64),
             lengths=np.array([-1, 6], np.int32))
    with pytest.raises(RnnskipError) as e:
        pipeline.load_data(str(tmp_path / "neg.npz"), ir, "--data")
    assert str(e.value) == "lengths in neg.npz must be in 0..6 (the padded length T); row 0 has -1"


@pytest.mark.keras
def test_delta_train_keeps_the_flatten(tmp_path):
    """delta-train rebuilds the model with its fixed number of steps and writes it back with the Flatten: it converts
    bit-exact with the thresholds it was trained for."""
    keras = pytest.importorskip("tf_keras")
    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.pipeline import import_model
    keras.utils.set_random_seed(2)
    L = keras.layers
    m = keras.Sequential([L.Input((10, 4)), L.GRU(6, return_sequences=True), L.Flatten(),
                          L.Dense(3, activation="softmax")])
    m.save(tmp_path / "fl.h5")
    x = np.cumsum(np.random.default_rng(0).normal(0, 0.4, (60, 10, 4)), axis=1).astype(np.float32)
    y = np.argmax(m.predict(x, verbose=0), 1)
    save_npz(str(tmp_path / "d.npz"), Dataset(x=x, y=y, lengths=np.full(60, 10, np.int32)))
    p = cli("rnnskip", "delta-train", tmp_path / "fl.h5", "--train", tmp_path / "d.npz", "--val", tmp_path / "d.npz",
            "--out", tmp_path / "t.h5", "--epochs", "1")
    assert p.returncode == 0, p.stderr
    out = import_model(tmp_path / "t.h5")
    assert (out.pool, out.pool_steps) == ("flatten", 10)
    assert keras.models.load_model(tmp_path / "t.h5").input_shape == (None, 10, 4)
    p = cli("rnnskip-convert", tmp_path / "t.h5", "--data", tmp_path / "d.npz", "--delta", tmp_path / "t.delta.json",
            "--emulate-max", "10", "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 10
