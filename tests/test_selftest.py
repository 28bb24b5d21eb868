"""rnnskip-convert --selftest: src/rnnskip_selftest.c holds sequences of the user's data as given (float
features or token ids) and the golden model's outputs; rnnskip_selftest() runs them through the public API
(quantize_features, step_valid, step, finish, output) and counts the sequences that differ. On the host
build and the emulated firmware it returns 0; a changed expected value makes it fail that sequence."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import needs_arm, quantize_on, quantized
from random_models import bidi_ir, random_data, random_ir

from rnnskip import pipeline
from rnnskip.delta.golden import with_delta
from rnnskip.delta.spec import DeltaSpec
from rnnskip.generate import generate
from rnnskip.selftest import make_selftest, run_on_host


def _models():
    ir, qm, x, L = quantized("feat-mask-gru", seed=2, n=6, T=9)
    x[1, 3:5] = qm.mask_value                                 # masked steps inside a sequence
    yield "feat-mask-gru", qm, x, L
    ir, qm, x, L = quantized("tok-lstm-softmax", seed=3, n=6, T=9)
    yield "tok-lstm-softmax", qm, x, L
    ir, qm, x, L = quantized("feat-lstm-gru", seed=4, n=6, T=9)   # two layers, input Dense, delta
    yield "feat-lstm-gru-delta", with_delta(qm, DeltaSpec([3, 3], [2, 2])), x, L
    # an output per step (return_sequences=True at the output): masked steps keep the output before them
    ir = random_ir("feat-mask-gru", seed=5)
    ir.rnn_layers[-1].return_sequences, ir.per_step = True, True
    x, L = random_data(ir, n=6, T=9, seed=6)
    x[2, 0:2] = ir.input.mask_value                           # before any step ran, and inside the sequence
    x[3, 4:6] = ir.input.mask_value
    yield "feat-mask-gru-per-step", quantize_on(ir, x, L), x, L
    for cfg, idx, name in (("feat-mask-gru", 0, "bidi-per-step"), ("feat-mask-rnn-lstm", 0, "bidi-later-per-step")):
        ir = bidi_ir(cfg, idx, "concat", seed=7, per_step=True)   # outputs only after rnnskip_finish
        x, L = random_data(ir, n=6, T=9, seed=8)
        x[2, 0:2] = ir.input.mask_value
        x[3, 4:6] = ir.input.mask_value
        yield name, quantize_on(ir, x, L), x, L


@pytest.mark.parametrize("name,qm,x,L", list(_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_selftest_passes_on_the_host_and_fails_on_a_changed_output(name, qm, x, L, tmp_path):
    st = make_selftest(qm, x, L, 4)
    steps = (x.shape[1],) if qm.per_step else ()
    assert st.n == 4 and st.expected.shape == (4, *steps, qm.output_dim)
    generate(qm, tmp_path / "src", max_t=x.shape[1], selftest=st)
    assert run_on_host(pipeline.build_host(tmp_path / "src", tmp_path / "host")) == 0
    c = tmp_path / "src" / "rnnskip_selftest.c"
    body = c.read_text()
    head, outs = body.split("static const int16_t selftest_out", 1)
    vals = re.findall(r"-?\d+", outs.split("{", 1)[1].split("}", 1)[0])
    if qm.per_step:   # every step of each sequence, in order: sequence 2's last step's output changed by 1
        assert [int(v) for v in vals] == [int(v) for i in range(4) for v in st.expected[i, : L[i]].reshape(-1)]
        k = int(L[:3].sum() - 1) * qm.output_dim
    else:             # sequence 2's first expected output changed by 1
        assert [int(v) for v in vals] == [int(v) for v in st.expected.reshape(-1)]
        k = 2 * qm.output_dim
    vals[k] = str(int(vals[k]) + 1)
    lines = outs.split("{", 1)
    new_outs = lines[0] + "{\n    " + ", ".join(vals) + "\n}" + lines[1].split("}", 1)[1]
    c.write_text(head + "static const int16_t selftest_out" + new_outs)
    assert run_on_host(pipeline.build_host(tmp_path / "src", tmp_path / "host2")) == 1


def test_selftest_inputs_are_the_data_as_given():
    """Float features are exact hex-float literals of the float32 data, so the device quantises exactly what the
    golden model quantised (NaN and infinities, which --data refuses, still have a literal for a hand-built
    SelfTest)."""
    from rnnskip.selftest import _float_literal
    vals = np.float32([0.1, -0.0, 1e-40, 3.4e38, -2.5, np.nan, np.inf, -np.inf])
    lits = [_float_literal(float(v)) for v in vals]
    assert lits[:5] == ["0x1.99999ap-4f", "-0x0p+0f", "0x1.16c2p-133f", "0x1.ff933cp+127f", "-0x1.4p+1f"]
    assert lits[5:] == ['__builtin_nanf("")', "__builtin_inff()", "-__builtin_inff()"]
    assert all(np.float32(float.fromhex(t[:-1])) == v for t, v in zip(lits[:5], vals[:5]))


@needs_arm
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0"])
def test_selftest_passes_on_the_emulated_firmware(target, tmp_path):
    from rnnskip import targets
    from rnnskip.build import keep_flags
    from rnnskip.simulator import UnicornEmulator
    t = targets.load(target)
    for name, qm, x, L in _models():
        generate(qm, tmp_path / name / "src", max_t=x.shape[1], selftest=make_selftest(qm, x, L, 6))
        fw = pipeline.build_target(tmp_path / name / "src", tmp_path / name / "fw", t,
                                   "dsp" if target == "cortex-m4" else "plain",
                                   extra_cflags=keep_flags(["rnnskip_io_selftest"]))
        assert UnicornEmulator(fw.elf, t).call("rnnskip_io_selftest").return_value == 0, name


def test_generate_without_selftest_removes_a_stale_file(tmp_path):
    """'rnnskip generate' over a folder an earlier --selftest conversion wrote: the old vectors would not
    compile against the new header, so they go."""
    ir, qm, x, L = quantized("feat-mask-gru", seed=2, n=6, T=9)
    generate(qm, tmp_path, max_t=9, selftest=make_selftest(qm, x, L, 2))
    assert (tmp_path / "rnnskip_selftest.c").is_file()
    assert "int32_t rnnskip_selftest(rnnskip_state_t *s);" in (tmp_path / "rnnskip_model.h").read_text()
    generate(qm, tmp_path, max_t=9)
    assert not (tmp_path / "rnnskip_selftest.c").exists()
    assert "rnnskip_selftest" not in (tmp_path / "rnnskip_model.h").read_text()


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    pytest.importorskip("tf_keras")
    import tf_keras as keras
    d = tmp_path_factory.mktemp("selftest_cli")
    L = keras.layers
    rng = np.random.default_rng(0)
    inp = keras.Input((8, 5))
    m = keras.Model(inp, L.Dense(3, activation="softmax")(L.GRU(12)(L.Masking(0.0)(inp))))
    m.save(d / "m.h5")
    inp = keras.Input((8, 5))
    seq = keras.Model(inp, L.Dense(2)(L.GRU(6, return_sequences=True)(inp)))
    seq.save(d / "seq.h5")
    x = rng.normal(size=(10, 8, 5)).astype(np.float32)
    x[2, 5:] = 0
    np.savez(d / "d.npz", x=x, y=rng.integers(0, 3, 10))
    np.savez(d / "x.npz", x=x)   # unlabelled: seq.h5's labels would be one per step
    return d


@needs_arm
def test_convert_selftest_cli(keras_files, tmp_path):
    from rnnskip.cli import convert_cmd
    d = keras_files
    out = tmp_path / "o"
    res = CliRunner().invoke(convert_cmd, [str(d / "m.h5"), "--data", str(d / "d.npz"), "--target", "cortex-m4",
                                           "--out", str(out), "--selftest", "4", "--prefix", "kws"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["selftest"] == {"file": "src/rnnskip_selftest.c", "function": "rnnskip_selftest", "sequences": 4,
                               "steps": 32, "flash_bytes": 32 * 5 * 4 + 8 * 4 + 2 * 4 * 3, "host_failures": 0}
    assert "selftest              src/rnnskip_selftest.c: 4 sequences" in res.output
    assert "#define rnnskip_selftest kws_selftest" in (out / "src" / "rnnskip_prefix.h").read_text()
    assert "note: --selftest" not in res.output
    res = CliRunner().invoke(convert_cmd, [str(d / "m.h5"), "--data", str(d / "d.npz"), "--target", "cortex-m4",
                                           "--out", str(tmp_path / "all"), "--selftest", "500", "--emulate-max", "1"])
    assert res.exit_code == 0, res.output   # as many as --data has, and it says so
    assert "note: --selftest 500: --data has 10 sequence(s), so the self-test holds 10" in res.output
    rc = rep["reference_check"]       # the float reference against tf_keras on the data, at conversion
    assert rc["runtime"] == "tf_keras" and rc["rows"] == 10 and rc["max_abs_diff"] <= 1e-5
    res = CliRunner().invoke(convert_cmd, [str(d / "seq.h5"), "--data", str(d / "x.npz"), "--target", "cortex-m4",
                                           "--out", str(tmp_path / "s"), "--selftest", "2"])
    assert res.exit_code == 0, res.output   # an output per step: the self-test checks every step's
    sec = json.loads((tmp_path / "s" / "report.json").read_text())["selftest"]
    assert sec["sequences"] == 2 and sec["host_failures"] == 0


@needs_arm
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_selftest_compiles_without_warnings(target, tmp_path):
    """rnnskip_selftest.c (and the harness hook) under test_c_warnings' flags, plus -Wdouble-promotion and
    -Wfloat-conversion: the hex-float literals are float."""
    import subprocess

    from test_c_warnings import WARNINGS

    from rnnskip import targets
    from rnnskip.build import CC, cflags
    t = targets.load(target)
    for name, qm, x, L in _models():
        x = np.array(x)
        if not qm.token_input:
            x[0, 0, 0] = np.nan
        out = tmp_path / name
        generate(qm, out, max_t=x.shape[1], selftest=make_selftest(qm, x, L, 3))
        p = subprocess.run([CC, *cflags(t), *WARNINGS, "-Wdouble-promotion", "-Wfloat-conversion", f"-I{out}",
                            f"-I{out / 'kernels'}", "-c", str(out / "rnnskip_selftest.c"), str(out / "rnnskip_io.c")],
                           cwd=tmp_path, capture_output=True, text=True)
        assert p.returncode == 0, f"{name}: {p.stderr[:800]}"


def test_selftest_follows_the_c_style(tmp_path):
    from test_c_style import CLANG_FORMAT, _check
    if CLANG_FORMAT is None:
        pytest.skip("clang-format not installed")
    files = []
    for name, qm, x, L in _models():
        generate(qm, tmp_path / name, max_t=x.shape[1], selftest=make_selftest(qm, x, L, 3))
        files += [tmp_path / name / "rnnskip_selftest.c", tmp_path / name / "rnnskip_io.c"]
    _check(files)
