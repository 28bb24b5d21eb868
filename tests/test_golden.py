"""Golden model vs generated C (host build and emulated firmware), bit for bit,
on random models of every supported configuration; plus the fixed-point primitives."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantized
from random_models import CONFIGS

from rnnskip import pipeline
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.generate import generate
from rnnskip.quant import fixedpoint as fp
from rnnskip.quant.golden import GoldenModel


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def built(request, tmp_path_factory):
    cfg = request.param
    ir, qm, x, L = quantized(cfg, n=10, T=9, spread=True)   # features of different ranges: per-feature scales
    d = tmp_path_factory.mktemp(cfg)
    generate(qm, d / "src", max_t=x.shape[1])
    return cfg, ir, qm, x, L, d


def test_host_build_bitexact(built):
    cfg, ir, qm, x, L, d = built
    so = pipeline.build_host(d / "src", d / "host")
    g_out, g_flags = GoldenModel(qm).run(x, L)
    ds = dataset(x, L)
    ev = pipeline.evaluate(ir, qm, ds, host_so=so)
    assert ev.host_checked == len(x)
    assert ev.host_mismatches == 0, ev.first_mismatch
    # the golden model is not trivially constant: outputs differ across sequences
    assert len({tuple(r) for r in g_out.tolist()}) > 1


@needs_arm
@pytest.mark.parametrize("variant", ["dsp", "plain"])
def test_firmware_bitexact(built, variant):
    from rnnskip import targets
    cfg, ir, qm, x, L, d = built
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(d / "src", d / f"fw-{variant}", t, variant)
    ds = dataset(x, L)
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=2, workers=1, progress=False))
    assert ev.device_checked == len(x)
    assert ev.device_mismatches == 0, ev.first_mismatch
    assert (ev.emu.stats[:, 1] > 0).all()  # cycles counted for every sequence
    # the function profile accounts for every emulated cycle, and the step runs its kernels
    from rnnskip import outputs
    from rnnskip.emulators.unicorn import profile_functions
    g = GoldenModel(qm)
    prof = profile_functions(fw.elf, t, g.device_inputs(x), L, None if qm.token_input else g.valid_steps(x),
                             outputs.macs_budget(qm))
    assert sum(prof.values()) == ev.emu.stats[:, 1].sum()
    assert any(("mat_vec" in k or "dsp_core" in k) and prof[k] > 0 for k in prof), prof


def test_zero_length_masked_sequences_keep_initial_state():
    ir, qm, x, L = quantized("tok-lstm-softmax", n=10, T=9)
    x = np.zeros_like(x)  # every step is padding
    out, flags = GoldenModel(qm).run(x, L)
    assert flags.sum() == 0
    assert len({tuple(r) for r in out.tolist()}) == 1  # all equal the head on the zero state


@pytest.mark.parametrize("fn,ref,tol", [(fp.sigmoid_q15, lambda v: 1 / (1 + np.exp(-v)), 3e-4),
                                        (fp.tanh_q15, np.tanh, 1.2e-3)])
def test_activation_error_bounded(fn, ref, tol):
    x = np.arange(-32768, 32768, dtype=np.int64)
    err = np.abs(fn(x) / 32768.0 - ref(x / 4096.0))
    assert err.max() < tol


def test_requantize_matches_float_rounding():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = float(rng.uniform(1e-5, 3.0))
        m, ls = fp.quantize_multiplier(s)
        v = rng.integers(-2**20, 2**20, 100)
        got = fp.requantize(v, m, ls)
        assert np.abs(got - v * s).max() <= 0.5 + 1e-3  # m carries >= 30 significant bits


def test_requantize_is_smmulr():
    # SMMULR: (a*b + 0x80000000) >> 32, exact on the extremes
    assert fp.requantize(np.array([2**31 - 1, -2**31, 12345]), 2**31 - 1, 0).tolist() == \
        [(((2**31 - 1) * (2**31 - 1)) + 2**31) >> 32, ((-2**31 * (2**31 - 1)) + 2**31) >> 32,
         (12345 * (2**31 - 1) + 2**31) >> 32]
    m, ls = fp.quantize_multipliers([0.25, 1.5, 0.0])
    assert ls == 2 and m[2] == 0 and m.max() < 2**31


def test_regenerating_with_another_provider_drops_the_old_mat_vec(tmp_path):
    """generate() into a folder an earlier provider wrote: the other provider's mat-vec is removed
    (both define rnnskip_mat_vec_acc_s8, so the two together do not link)."""
    qm = quantized("tok-gru-v1", n=4, T=5)[1]
    kdir = tmp_path / "src" / "kernels"
    for kernels, gone, there in (("portable", "rnnskip_mat_vec_cmsis_nn.c", "rnnskip_mat_vec_s8.c"),
                                 ("cmsis-nn", "rnnskip_mat_vec_s8.c", "rnnskip_mat_vec_cmsis_nn.c"),
                                 ("portable", "rnnskip_mat_vec_cmsis_nn.c", "rnnskip_mat_vec_s8.c")):
        generate(qm, tmp_path / "src", max_t=5, kernels=kernels)
        assert (kdir / there).is_file() and not (kdir / gone).exists(), kernels


@needs_arm
@pytest.mark.parametrize("kernels", ["naive", "cmsis-nn"])
def test_other_kernel_providers_bitexact(kernels, tmp_path):
    """naive (baseline loops) and cmsis-nn (Arm's arm_nn_mat_mult_nt_t_s8_s32) give the golden bits."""
    import os

    from rnnskip import targets
    if kernels == "cmsis-nn" and not os.environ.get("CMSIS_NN_PATH"):
        pytest.skip("CMSIS_NN_PATH not set: no CMSIS-NN checkout to compare against (no registry ships it)")
    ir, qm, x, L = quantized("tok-gru-v1", n=10, T=9)
    generate(qm, tmp_path / "src", max_t=x.shape[1], kernels=kernels)
    t = targets.load("cortex-m4")
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ds = dataset(x, L)
    ev = pipeline.evaluate(ir, qm, ds, host_so=so, firmware=fw,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.host_mismatches == 0 and ev.device_mismatches == 0, ev.first_mismatch
    assert ev.device_checked == len(x)


def test_matvec_exact_on_every_path():
    """golden.matvec takes float32 / float64 / int64 by its exactness bound; each path
    must equal the int64 product, including at the edges of the bounds."""
    from rnnskip.quant.golden import matvec
    rng = np.random.default_rng(0)
    cases = [
        (rng.integers(-127, 128, (64, 96)), rng.integers(-128, 128, (50, 96))),        # float32
        (np.full((8, 1032), -127), np.full((3, 1032), -128)),                          # 127*128*1032 < 2^24: float32
        (np.full((8, 1040), 127), np.full((3, 1040), -128)),                           # above 2^24: float64
        (rng.integers(-32768, 32768, (16, 700)), rng.integers(-32768, 32768, (4, 700))),
        (np.full((2, 3), 1 << 30), np.full((2, 3), 1 << 30)),                           # above 2^53: int64
    ]
    for w, x in cases:
        ref = x.astype(object) @ w.astype(object).T
        got = matvec(w, x)
        assert got.dtype == np.int64
        assert np.array_equal(got.astype(object), ref)
    assert matvec(np.zeros((4, 0), np.int8), np.zeros((2, 0), np.int8)).shape == (2, 4)
