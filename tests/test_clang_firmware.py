"""The hand-scheduled assembly cores as clang's integrated assembler lays them out, and the generated model
built by clang (the compiler of armclang and the LLVM embedded toolchain), its
hand-scheduled assembly cores included, linked with the GCC-built runtime and run in the emulator:
bit-exact with the golden model, as the GCC build is (dense, delta with the cell threshold, a Conv1D
front end, a skip predictor, Bidirectional). The modeled cycles of both builds are printed side by side."""
from __future__ import annotations

import pytest
from helpers import dataset, needs_arm, quantize_on, quantized
from kernel_build import CLANG, clang_firmware, instruction_sizes, m4_objects
from random_models import random_data

from rnnskip import pipeline, targets
from rnnskip.delta.golden import with_delta
from rnnskip.delta.spec import DeltaSpec
from rnnskip.emulators.base import STAT_FIELDS
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.generate import generate, kernel_dir

pytestmark = [needs_arm, pytest.mark.skipif(CLANG is None, reason="clang is not installed (make setup installs it)")]


def _case(name):
    if name == "frontend":
        from test_frontend import front_ir
        ir = front_ir("feat-lstm-gru")
        x, lengths = random_data(ir, n=6, T=16, seed=1)
        return ir, quantize_on(ir, x, lengths), dataset(x, lengths)
    if name == "bidi":
        from random_models import bidi_ir
        ir = bidi_ir("feat-mask-rnn-lstm", 1, "concat")
        x, lengths = random_data(ir, n=6, T=9, seed=1)
        return ir, quantize_on(ir, x, lengths), dataset(x, lengths)
    cfg = {"dense": "feat-lstm-gru", "delta": "feat-lstm-gru", "skip": "feat-lstm-lstm"}[name]
    ir, qm, x, lengths = quantized(cfg, seed=2, n=8, T=12)
    if name == "delta":
        qm = with_delta(qm, DeltaSpec([2, 3], [1, 2], theta_m=[64, 0]))
    if name == "skip":
        from test_skip_device import random_predictor

        from rnnskip.skip.qpredictor import quantize_predictor
        qm.methods = [quantize_predictor(random_predictor("mlp", qm.in_dim, [l.units for l in qm.layers], seed=3),
                                         qm)]
    return ir, qm, dataset(x, lengths)


@pytest.mark.parametrize("name", ["dense", "delta", "frontend", "skip", "bidi"])
def test_clang_firmware_is_bit_exact(name, tmp_path):
    ir, qm, ds = _case(name)
    generate(qm, tmp_path / "src", max_t=ds.x.shape[1])
    t = targets.load("cortex-m4")
    cycles = {}
    for cc, fw in (("clang", clang_firmware(tmp_path / "src", tmp_path / "clang", t)),
                   ("gcc", pipeline.build_target(tmp_path / "src", tmp_path / "gcc", t, "dsp"))):
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=0, workers=1,
                                                                         progress=False))
        assert ev.device_checked == len(ds) and ev.device_mismatches == 0, (cc, ev.first_mismatch)
        cycles[cc] = int(ev.emu.stats[:, STAT_FIELDS.index("cycles")].sum())
    print(f"\n{name}: modeled cycles clang {cycles['clang']:,}, gcc {cycles['gcc']:,} "
          f"({cycles['clang'] / cycles['gcc']:.3f}x)")


@pytest.mark.parametrize("source,cores", [
    ("rnnskip_mat_vec_s8.c", ("rnnskip_mv4_dsp_core",)),
    ("rnnskip_mat_vec_paired_s8.c", ("rnnskip_mvp_dsp_core",)),
    ("rnnskip_delta_s8.c", ("rnnskip_dg_core", "rnnskip_dv_dsp_core", "rnnskip_dv6_dsp_core"))])
def test_clang_lays_out_the_asm_cores_as_gnu_as(source, cores, tmp_path):
    """The cores' computed loop entries rely on each instruction's size, which GNU as checks with .if and
    clang's integrated assembler cannot: the same sizes, instruction by instruction, from both."""
    src = kernel_dir() / source
    (gcc,) = m4_objects(tmp_path, [src], "gcc", include_dirs=[kernel_dir()])
    (clang,) = m4_objects(tmp_path, [src], "clang", include_dirs=[kernel_dir()])
    for core in cores:
        sizes = instruction_sizes(gcc, core)
        assert len(sizes) > 90 and instruction_sizes(clang, core) == sizes, core
