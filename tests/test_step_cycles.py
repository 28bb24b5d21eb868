"""The dense LSTM step's modeled cost on cortex-m4: the pipeline benchmark's targets, measured.

An SST-2-shaped model (Embedding 32 -> LSTM 64 -> Dense) with random weights;
cycles per step = least-squares slope of emulated cycles against executed steps.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantized

from rnnskip import pipeline, targets
from rnnskip.emulators.base import STAT_FIELDS
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.generate import generate
from rnnskip.report import cycles_per_step

pytestmark = needs_arm


@pytest.fixture(scope="module")
def step_cycles(tmp_path_factory):
    ir, qm, x, L = quantized("tok-lstm-softmax", n=10, T=24, data_seed=3, units=(64,), dim=32, vocab=100)
    ds = dataset(x, L)
    t = targets.load("cortex-m4")
    res = {}
    for kernels, variant in (("portable", "dsp"), ("naive", "plain")):
        d = tmp_path_factory.mktemp(kernels)
        generate(qm, d / "src", max_t=x.shape[1], kernels=kernels)
        fw = pipeline.build_target(d / "src", d / "fw", t, variant)
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw,
                               emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
        assert ev.device_mismatches == 0, ev.first_mismatch
        res[kernels] = cycles_per_step(ev.emu)[1]
        if kernels == "portable":
            fw_portable = fw
    # every row at full length (a model without masking, rows without lengths): one extra run
    # of the first row's first half gives the fit its second step count
    full = np.where(x == 0, 1, x)   # no id 0 left to mask
    ev = pipeline.evaluate(ir, qm, dataset(full, np.full_like(L, x.shape[1])), firmware=fw_portable,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    res["equal_lengths"] = ev.emu
    return ir.macs_per_step(), res


def test_dense_lstm_step_reaches_0_6_mac_per_cycle(step_cycles):
    macs, cyc = step_cycles
    assert macs == 4 * 64 * (32 + 64)
    assert macs / cyc["portable"] >= 0.6, f"{macs / cyc['portable']:.3f} MAC/cycle"


def test_dsp_step_at_least_2_5x_fewer_cycles_than_naive(step_cycles):
    _, cyc = step_cycles
    assert cyc["naive"] / cyc["portable"] >= 2.5, cyc


def test_cycles_per_step_when_every_row_runs_every_step(step_cycles):
    _, res = step_cycles
    emu = res["equal_lengths"]
    T = int(emu.steps_run[0])
    assert (emu.steps_run == T).all() and [s for s, _ in emu.step_fit] == [T // 2]
    a, b = cycles_per_step(emu)
    cycles = emu.stats[:, STAT_FIELDS.index("cycles")]
    assert a + b * T == pytest.approx(cycles.mean(), rel=1e-9)          # the line meets both step counts
    assert a + b * (T // 2) == pytest.approx(emu.step_fit[0][1], rel=1e-9)
    assert b == pytest.approx(res["portable"], rel=0.03)               # the ragged rows' slope
