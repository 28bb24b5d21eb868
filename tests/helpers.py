"""Helpers the tests share: markers for the tools a test needs, a quantised random model,
and a data set for evaluations whose labels do not matter."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from random_models import random_data, random_ir

from rnnskip.datasets import Dataset

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None

#: the test builds Cortex-M firmware
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed (run 'make setup')")
#: the test builds Cortex-M firmware and boots it under QEMU
needs_arm_and_qemu = pytest.mark.skipif(not (HAVE_ARM and HAVE_QEMU),
                                        reason="needs arm-none-eabi-gcc and qemu-system-arm (run 'make setup')")


def quantize_on(ir, x, lengths):
    """``ir`` calibrated on the sequences (x, lengths) and quantised: its QModel."""
    from rnnskip.quant.calibrate import calibrate
    from rnnskip.quant.quantize import quantize
    from rnnskip.reference import FloatModel
    return quantize(ir, calibrate(ir, FloatModel(ir), x, lengths, progress=False))


def quantized(cfg: str, seed: int = 0, n: int = 12, T: int = 10, data_seed: int | None = None,
              spread: bool = False, **shape):
    """The random model ``cfg`` of random_models.CONFIGS (weights from ``seed``; ``shape``:
    random_ir's units, dim, vocab, features) quantised on ``n`` random sequences of up to
    ``T`` steps drawn from ``data_seed`` (default ``seed + 1``; ``spread``: random_data's).
    Returns (ir, qm, x, lengths)."""
    ir = random_ir(cfg, seed=seed, **shape)
    x, lengths = random_data(ir, n=n, T=T, seed=seed + 1 if data_seed is None else data_seed, spread=spread)
    return ir, quantize_on(ir, x, lengths), x, lengths


def dataset(x, lengths, y=None) -> Dataset:
    """(x, lengths) as a Dataset; labels ``y``, or zeros where they do not matter
    (bit-exactness, cycles)."""
    return Dataset(x=x, y=np.zeros(len(x), np.int64) if y is None else y, lengths=lengths)


def check_host_and_device(ir, qm, ds: Dataset, out_dir, max_t: int):
    """``qm``'s C generated into ``out_dir``/src and built for the host and the Cortex-M4 (DSP path); ``ds`` run
    through both (the firmware on the Unicorn emulator): golden = host build = firmware on every row."""
    from rnnskip import pipeline, targets
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.generate import generate
    t = targets.load("cortex-m4")
    src = out_dir / "src"
    generate(qm, src, max_t=max_t)
    so = pipeline.build_host(src, out_dir / "host")
    fw = pipeline.build_target(src, out_dir / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, ds, host_so=so, firmware=fw,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.host_mismatches == 0 and ev.device_mismatches == 0, (str(out_dir), ev.first_mismatch)
    assert ev.device_checked == len(ds.x)
    return ev
