"""Integer activations beyond sigmoid/tanh -- error bounds against float,
the C kernels equal to the golden model (exhaustively for the activations, on random
models for the cells), and the generated tables up to date."""
from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantize_on, quantized
from random_models import random_data, random_ir

from rnnskip import pipeline
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.generate import generate, kernel_dir
from rnnskip.quant import act
from rnnskip.quant.golden import GoldenModel
from rnnskip.reference import FloatModel, activation

ALL = sorted(act.CELL_ACTIVATIONS)
X = np.arange(-32768, 32768, dtype=np.int64)      # every int16 Q3.12 input

# measured max |int - float| over every Q3.12 input in [-8, 8) (output units), with margin
BOUNDS = {"sigmoid": 1e-4, "tanh": 5e-4, "hard_sigmoid": 5e-5, "hard_sigmoid_k3": 5e-5,
          "softsign": 1e-3, "relu": 0.0, "linear": 0.0}


def test_committed_tables_match_generator():
    assert act.LUTS_C.read_text() == act.render_luts(), "run: python -m rnnskip.quant.act"


@pytest.mark.parametrize("name", ALL)
def test_activation_error_bounded(name):
    got = act.act_q(name, X) / 2.0 ** act.out_q(name)
    err = np.abs(got - activation(name)(X / 4096.0)).max()
    assert err <= BOUNDS[name], (name, err)


def test_hard_sigmoid_generations_differ_where_keras_does():
    x = np.array([-3 * 4096, -2 * 4096, 0, 2 * 4096, 3 * 4096])
    k2 = act.act_q("hard_sigmoid", x) / 32768.0
    k3 = act.act_q("hard_sigmoid_k3", x) / 32768.0
    np.testing.assert_allclose(k2, [0.0, 0.1, 0.5, 0.9, 1.0], atol=5e-5)
    np.testing.assert_allclose(k3, [0.0, 1 / 6, 0.5, 5 / 6, 1.0], atol=5e-5)


@pytest.fixture(scope="module")
def act_lib(tmp_path_factory):
    """rnnskip_act_q for every input, compiled for this machine from the kernel sources."""
    d = tmp_path_factory.mktemp("actlib")
    (d / "harness.c").write_text(
        '#include "rnnskip_kernels.h"\n'
        "void act_all(int32_t act, int32_t *out) {\n"
        "    for (int32_t x = -32768; x < 32768; x++) out[x + 32768] = rnnskip_act_q(act, x);\n"
        "}\n")
    k = kernel_dir()
    so = d / "libact.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-I", str(k), "-o", str(so),
                    str(d / "harness.c"), str(k / "rnnskip_luts.c")],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(so))


@pytest.mark.parametrize("name", ALL)
def test_c_activation_equals_golden_everywhere(act_lib, name):
    out = np.zeros(65536, np.int32)
    act_lib.act_all(ctypes.c_int32(act.ACT_IDS[name]), out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)))
    np.testing.assert_array_equal(out, act.act_q(name, X))


COMBOS = [("relu", "sigmoid"), ("linear", "hard_sigmoid"), ("softsign", "hard_sigmoid_k3"),
          ("tanh", "hard_sigmoid"), ("hard_sigmoid", "sigmoid"), ("sigmoid", "hard_sigmoid_k3")]


def _model(cfg, a, ra, dense_act="softsign"):
    ir = random_ir(cfg)
    for r in ir.rnn_layers:
        r.activation, r.recurrent_activation = a, ra
    if getattr(ir.input, "dense", None) is not None:
        ir.input.dense.activation = dense_act
    for d in ir.head[:-1]:
        d.activation = "hard_sigmoid"
    x, L = random_data(ir, n=8, T=9)
    return ir, quantize_on(ir, x, L), x, L


@pytest.mark.parametrize("cfg,combos", [("feat-lstm-lstm", (0, 1, 2)), ("tok-gru-sigmoid", (3, 4, 5)),
                                        ("feat-gru-gru-v1", (0, 2, 4)), ("feat-dense-gru", (1, 3, 5))])
def test_cells_host_bitexact_every_activation(cfg, combos, tmp_path):
    """Golden = host build; every activation pair on LSTM and on both GRU variants."""
    for j in combos:
        a, ra = COMBOS[j]
        ir, qm, x, L = _model(cfg, a, ra)
        assert qm.layers[0].activation == a
        generate(qm, tmp_path / f"src{j}", max_t=x.shape[1])
        so = pipeline.build_host(tmp_path / f"src{j}", tmp_path / f"host{j}")
        ds = dataset(x, L)
        ev = pipeline.evaluate(ir, qm, ds, host_so=so)
        assert ev.host_mismatches == 0, (a, ra, ev.first_mismatch)
        g, _ = GoldenModel(qm).run(x, L)
        assert len({tuple(r) for r in g.tolist()}) > 1


@needs_arm
@pytest.mark.parametrize("variant", ["dsp", "plain"])
def test_cells_firmware_bitexact(variant, tmp_path):
    from rnnskip import targets
    t = targets.load("cortex-m4")
    for cfg, (a, ra) in (("feat-lstm", ("relu", "hard_sigmoid")), ("tok-gru-v1", ("linear", "hard_sigmoid_k3"))):
        ir, qm, x, L = _model(cfg, a, ra)
        generate(qm, tmp_path / cfg / "src", max_t=x.shape[1])
        fw = pipeline.build_target(tmp_path / cfg / "src", tmp_path / cfg / "fw", t, variant)
        ds = dataset(x, L)
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw,
                               emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
        assert ev.device_checked == len(x) and ev.device_mismatches == 0, ev.first_mismatch


@needs_arm
def test_firmware_links_only_the_tables_it_reads(tmp_path):
    """Every table is compiled; the linker keeps the ones the model's kernels read, and the
    flash estimate counts exactly those."""
    from elftools.elf.elffile import ELFFile

    from rnnskip import targets
    from rnnskip.generate import tables_used
    from rnnskip.quant.act import LUT_NAMES
    t = targets.load("cortex-m4")
    for cfg, acts in (("feat-lstm", None), ("feat-lstm", ("relu", "hard_sigmoid")),
                      ("tok-gru-v1", ("softsign", "sigmoid"))):
        if acts is None:
            ir, qm, x, L = quantized(cfg, n=4, T=5)
        else:
            ir, qm, x, L = _model(cfg, *acts)
        d = tmp_path / f"{cfg}-{acts}".replace(" ", "").replace("'", "").replace(",", "_")
        generate(qm, d / "src", max_t=5)
        fw = pipeline.build_target(d / "src", d / "fw", t, "dsp")
        with open(fw.elf, "rb") as f:
            names = {s.name for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
        linked = [a for a, n in LUT_NAMES.items() if n in names]
        assert linked == tables_used(qm), (cfg, acts, linked)
        with open(fw.elf, "rb") as f:    # what inspect's flash estimate counts per table
            sizes = {s.name: s["st_size"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
        assert all(sizes[LUT_NAMES[a]] == act.LUT_BYTES for a in linked), sizes
        assert ("tanh" in linked) == (acts is None or "tanh" in acts or "tanh" in [d.activation for d in qm.head])


@pytest.mark.parametrize("cfg", ["feat-lstm", "feat-dense-gru"])
def test_delta_runs_the_layer_activations(cfg, tmp_path):
    """A delta network runs the same cell kernel as the dense layer, with the layer's own
    activations: theta 0 equals the dense golden model for every pair (the delta step once
    computed sigmoid/tanh whatever the layer said), and the host build agrees with thresholds."""
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    for j, (a, ra) in enumerate(COMBOS):
        ir, qm, x, L = _model(cfg, a, ra)
        dense, _ = GoldenModel(qm).run(x, L)
        zero, _ = GoldenModel(with_delta(qm, DeltaSpec.uniform(len(qm.layers)))).run(x, L)
        np.testing.assert_array_equal(zero, dense, err_msg=f"{a}/{ra}")
        qd = with_delta(qm, DeltaSpec([2] * len(qm.layers), [1] * len(qm.layers)))
        generate(qd, tmp_path / f"src{j}", max_t=x.shape[1])
        so = pipeline.build_host(tmp_path / f"src{j}", tmp_path / f"host{j}")
        ev = pipeline.evaluate(ir, qd, dataset(x, L), host_so=so)
        assert ev.host_mismatches == 0, (a, ra, ev.first_mismatch)


def test_int8_model_error_bounded_for_every_activation():
    """int8 golden vs float reference on random LSTM/GRU models: output error small."""
    for cfg in ("feat-lstm", "feat-gru-gru-v1"):
        for a, ra in COMBOS:
            ir, qm, x, L = _model(cfg, a, ra)
            f = FloatModel(ir).predict(x, L)
            g, _ = GoldenModel(qm).run(x, L)
            from rnnskip.outputs import dequantize
            err = np.abs(dequantize(qm, g) - f).max()
            assert err < 0.08, (cfg, a, ra, err)


@pytest.mark.parametrize("ract", ["relu", "linear", "tanh", "softsign"])
def test_unbounded_gates_refused_in_one_line(ract):
    from rnnskip.errors import RnnskipError
    ir = random_ir("feat-lstm")
    ir.rnn_layers[0].recurrent_activation = ract
    x, L = random_data(ir, n=4, T=5)
    with pytest.raises(RnnskipError) as ei:
        quantize_on(ir, x, L)
    msg = str(ei.value)
    assert "\n" not in msg and f"recurrent_activation='{ract}'" in msg and "lstm_0" in msg


def test_c_table_entries_hold_each_point_and_its_step():
    """The C tables' words: v[i] in the low halfword, v[i+1] - v[i] in the high one."""
    for name, table in act.LUTS.items():
        w = act.c_entries(table).astype(np.int64) & 0xFFFFFFFF
        low = ((w & 0xFFFF) ^ 0x8000) - 0x8000
        high = ((w >> 16) ^ 0x8000) - 0x8000
        np.testing.assert_array_equal(low, table[:-1], err_msg=name)
        np.testing.assert_array_equal(high, np.diff(table), err_msg=name)


@pytest.fixture(scope="module", params=["dsp", "plain"])
def m4_lookups(request, tmp_path_factory):
    """(variant, emulator) of an M4 image with rnnskip_act_q and rnnskip_lut_q15 (on a table written into
    lut_in) over a quarter of the int16 inputs per call: the M4 target's RAM is 128 KiB."""
    from rnnskip import targets
    from rnnskip.build import build_firmware
    from rnnskip.simulator import UnicornEmulator
    variant, d = request.param, tmp_path_factory.mktemp("lookups")
    t = targets.load("cortex-m4")
    (d / "h.c").write_text(
        '#include "rnnskip_kernels.h"\n'
        "int32_t lut_in[256];\n"
        "int32_t out[16384];\n"
        "void act_range(int32_t act, int32_t x0) {\n"
        "    for (int32_t i = 0; i < 16384; i++) out[i] = rnnskip_act_q(act, x0 + i);\n"
        "}\n"
        "void lut_range(int32_t x0) {\n"
        "    for (int32_t i = 0; i < 16384; i++) out[i] = rnnskip_lut_q15(lut_in, x0 + i);\n"
        "}\n"
        "int main(void) { for (;;) { } }\n")
    k = kernel_dir()
    extra = ["-Wall", "-Wextra", "-Werror"] + (["-DRNNSKIP_NO_DSP"] if variant == "plain" else [])
    elf = build_firmware(t, [d / "h.c", k / "rnnskip_luts.c"], d / variant, name=f"lookups_{variant}",
                         extra_cflags=extra, include_dirs=[k], keep=["act_range", "lut_range", "lut_in", "out"])
    return variant, UnicornEmulator(elf, t)


def _every_input(emu, fn, *args):
    """``fn(*args, x0)`` over the four quarters of the int16 inputs -> its 65,536 outputs."""
    out = []
    for x0 in range(-32768, 32768, 16384):
        emu.call(fn, args=(*args, x0))
        out.append(np.frombuffer(emu.read("out", 4 * 16384), "<i4"))
    return np.concatenate(out)


@needs_arm
def test_firmware_activation_equals_golden_everywhere(m4_lookups):
    """The M4 build of rnnskip_act_q (the DSP path's SMLATB lookup, or plain C) on every int16
    input of every activation, emulated, equals the golden model."""
    variant, emu = m4_lookups
    for name in ALL:
        np.testing.assert_array_equal(_every_input(emu, "act_range", act.ACT_IDS[name]), act.act_q(name, X),
                                      err_msg=f"{variant} {name}")


@needs_arm
def test_lookup_of_a_decreasing_table(m4_lookups):
    """rnnskip_lut_q15 reads the step as a signed halfword: every shipped table rises, so a falling one
    (-tanh) checks the sign of the step on the M4's SMLATB path and in plain C, on every input."""
    from rnnskip.quant import fixedpoint as fp
    variant, emu = m4_lookups
    table = -fp.TANH_LUT
    assert (np.diff(table) < 0).any()
    emu.write("lut_in", act.c_entries(table).astype("<i4").tobytes())
    np.testing.assert_array_equal(_every_input(emu, "lut_range"), fp._lut_eval(X, table), err_msg=variant)


@pytest.mark.parametrize("calibrated", [6.0, 9.0, 4.5])
def test_relu6_is_relu_on_an_int8_scale_that_ends_at_6(calibrated):
    """relu6 has no kernel: the integer layer is relu whose int8 output scale ends at 6 or below, so int8 saturation is
    the clip. A calibrated range past 6 (not from a float relu6) is capped; one below 6 keeps its finer scale. The
    int8 output is within half a step of float relu6 of the integer weights' accumulator, the range's end past it."""
    from rnnskip.converter.ir import DenseLayer
    from rnnskip.quant import fixedpoint as fp
    from rnnskip.quant.golden import dense
    from rnnskip.quant.quantize import quantize_dense
    rng = np.random.default_rng(3)
    d = DenseLayer(kernel=rng.normal(0, 1.0, (8, 5)), bias=rng.normal(0, 0.5, 5), activation="relu6", name="d")
    x = rng.normal(0, 3.0, (400, 8))
    in_scale = np.abs(x).max() / 127
    xq = np.clip(np.round(x / in_scale), -127, 127).astype(np.int64)
    q = quantize_dense(d, in_scale, 8, calibrated, final=False)
    assert q.activation == "relu" and q.out_scale == min(calibrated, 6.0) / 127
    yq = dense(q, xq, final=False)[:, :5]
    m = q.mat
    want = activation("relu6")((xq @ m.w[:5].T.astype(np.int64) + m.bias[:5]) * m.scale[:5])
    assert (want == 6.0).mean() > 0.1 and (yq == 127).mean() > 0.1   # the clip is exercised
    err = np.abs(yq * q.out_scale - np.minimum(want, 127 * q.out_scale))
    assert err.max() <= q.out_scale / 2 * (1 + 1e-6) + 1e-12, err.max() / q.out_scale
    assert act.int_activation("relu6") == ("relu", 6.0) and act.out_q("relu") == fp.Q12


@pytest.mark.parametrize("alpha", [0.3, 0.01, 0.2])
def test_leaky_relu_slope_on_the_int8_output_scale(alpha):
    """leaky_relu(a) in a layer with an int8 output: the accumulator requantised to the output's scale, a value below
    0 then times the slope (out_mult, out_ls; rnnskip_requantize_act_s8). Within a step of float leaky_relu of the
    integer weights' accumulator (two roundings: 1/2 + a/2 step), and exact where it is >= 0."""
    from rnnskip.converter import support
    from rnnskip.converter.ir import DenseLayer
    from rnnskip.quant.golden import dense
    from rnnskip.quant.quantize import quantize_dense
    rng = np.random.default_rng(4)
    name = support.leaky_relu(alpha)
    d = DenseLayer(kernel=rng.normal(0, 1.0, (8, 5)), bias=rng.normal(0, 0.5, 5), activation=name, name="d")
    x = rng.normal(0, 3.0, (400, 8))
    in_scale = np.abs(x).max() / 127
    xq = np.clip(np.round(x / in_scale), -127, 127).astype(np.int64)
    m0 = quantize_dense(d, in_scale, 8, 1.0, final=False).mat
    pre = (xq @ m0.w[:5].T.astype(np.int64) + m0.bias[:5]) * m0.scale[:5]
    want = activation(name)(pre)
    q = quantize_dense(d, in_scale, 8, float(np.abs(want).max()), final=False)
    assert q.activation == "leaky_relu" and q.out_mult > 0
    yq = dense(q, xq, final=False)[:, :5]
    assert (want < 0).mean() > 0.2 and yq.min() < 0
    err = np.abs(yq * q.out_scale - want) / q.out_scale
    assert err[want >= 0].max() <= 0.5 + 1e-6
    assert err.max() <= 0.5 + alpha / 2 + 1e-6, err.max()
    from rnnskip.generate import act_enum
    assert act_enum(q.activation) == "RNNSKIP_ACT_LEAKY_RELU" and act.ACT_IDS["leaky_relu"] == 7
