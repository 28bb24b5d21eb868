"""The command line end to end: rnnskip-convert on a Keras file, the stage
commands, and one clear line (no traceback, no half-written folder) per bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
REPORT_KEYS = {
    "target": None, "kernels": None,
    "model": {"type", "layers", "params", "macs_per_step", "timesteps_mean"},
    "accuracy": {"float", "int8_golden", "int8_device", "n"},
    "bitexact": {"checked", "mismatches"},
    "emulation": {"emulator", "sequences", "instructions_per_inference", "cycles_per_inference",
                  "macs_per_cycle", "flash_read_bytes_per_inference", "sram_read_bytes_per_inference",
                  "sram_write_bytes_per_inference", "traffic_sampled_sequences"},
    "footprint": {"flash_bytes", "ram_bytes", "stack_bytes"},
}


def cli(*args, cwd=None):
    """Run a console script in a fresh interpreter, like a user would."""
    exe = Path(sys.executable).parent
    prog, rest = args[0], args[1:]
    return subprocess.run([str(exe / prog)] + [str(a) for a in rest], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def model_and_data(k2_zoo, tmp_path_factory):
    from rnnskip.datasets import Dataset, save_npz
    e = k2_zoo.models["emb_lstm_softmax"]
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = np.asarray(e.X, np.int32)
    lengths = np.maximum((x != 0).cumsum(1).argmax(1) + 1, 1).astype(np.int32)
    y = np.argmax(e.y, 1)
    save_npz(str(d / "test.npz"), Dataset(x=x, y=y, lengths=lengths))
    return Path(e.files["h5"]), d / "test.npz", d


def one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed (run 'make setup')")
def test_convert_end_to_end(model_and_data):
    model, data, d = model_and_data
    out = d / "m4"
    p = cli("rnnskip-convert", model, "--target", "cortex-m4", "--data", data, "--out", out)
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    for k, sub in REPORT_KEYS.items():
        assert k in rep
        if sub:
            assert sub <= set(rep[k]), sub - set(rep[k])
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["checked"] == rep["accuracy"]["n"]
    assert rep["emulation"]["cycles_per_inference"] > 0
    assert rep["emulation"]["flash_read_bytes_per_inference"] > 0
    assert rep["footprint"]["flash_bytes"] > rep["model"]["params"]  # int8 weights + code
    assert (out / "src" / "rnnskip_model.c").is_file() and (out / "firmware" / "firmware.elf").is_file()
    assert "cycles / inference" in p.stdout
    assert not list(d.glob(".m4.partial-*"))


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed (run 'make setup')")
def test_stage_commands(model_and_data):
    model, data, d = model_and_data
    w = d / "work"
    for args in (("import", model, "--out", w), ("quantize", w, "--calib", data), ("generate", w),
                 ("build", w, "--target", "cortex-m4"), ("emulate", w, "--data", data), ("report", w)):
        p = cli("rnnskip", *args)
        assert p.returncode == 0, (args, p.stderr)
    assert json.loads((w / "report.json").read_text())["bitexact"]["mismatches"] == 0
    p = cli("rnnskip", "targets")
    assert "cortex-m4" in p.stdout


def test_missing_model_file(model_and_data, tmp_path):
    _, data, _ = model_and_data
    p = cli("rnnskip-convert", tmp_path / "nope.h5", "--data", data, "--out", tmp_path / "o")
    one_line_error(p, "nope.h5")
    assert not (tmp_path / "o").exists()


def test_not_a_keras_file(model_and_data, tmp_path):
    _, data, _ = model_and_data
    bad = tmp_path / "model.h5"
    bad.write_text("this is not hdf5\n")
    one_line_error(cli("rnnskip-convert", bad, "--data", data, "--out", tmp_path / "o"), "model.h5")
    assert not (tmp_path / "o").exists()


def test_wrong_data_shape(model_and_data, tmp_path):
    from rnnskip.datasets import Dataset, save_npz
    model, _, _ = model_and_data
    save_npz(str(tmp_path / "f.npz"), Dataset(x=np.zeros((3, 5, 2), np.float32), y=np.zeros(3, np.int64),
                                              lengths=np.full(3, 5, np.int32)))
    one_line_error(cli("rnnskip-convert", model, "--data", tmp_path / "f.npz", "--out", tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_unknown_target_and_kernels(model_and_data, tmp_path):
    model, data, _ = model_and_data
    one_line_error(cli("rnnskip-convert", model, "--target", "cortex-z9", "--data", data, "--out", tmp_path / "o"),
                   "cortex-z9", "cortex-m4")
    one_line_error(cli("rnnskip-convert", model, "--kernels", "fancy", "--data", data, "--out", tmp_path / "o"),
                   "fancy", "portable")


def test_stage_out_of_order(tmp_path):
    one_line_error(cli("rnnskip", "quantize", tmp_path, "--calib", tmp_path / "x.npz"), "model.ir.pkl", "import")


def test_per_step_model_refused_where_unsupported(tmp_path):
    """Board images read one output row per sequence: a per-step model gets one line, not wrong numbers."""
    k = pytest.importorskip("tf_keras")
    m = k.Sequential([k.layers.Embedding(10, 4, mask_zero=True, input_shape=(None,)),
                      k.layers.LSTM(4, return_sequences=True), k.layers.Dense(2)])
    m.save(tmp_path / "seq.h5")
    p = cli("rnnskip-convert", tmp_path / "seq.h5", "--board", "stm32f407", "--data", tmp_path / "d.npz",
            "--out", tmp_path / "o")
    one_line_error(p, "--board", "output per time step")
    assert not (tmp_path / "o").exists()
