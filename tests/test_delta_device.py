"""Delta networks on the device: golden delta model vs generated C (host build and
emulated firmware, DSP and plain paths) bit for bit with thresholds > 0, and the
delta C with theta = 0 equal to the dense golden model."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantized

from rnnskip import pipeline
from rnnskip.delta.golden import run_stats, with_delta
from rnnskip.delta.spec import DeltaSpec
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.generate import generate
from rnnskip.quant.golden import GoldenModel

CFGS = ["feat-dense-gru", "feat-lstm-lstm", "tok-gru-sigmoid", "tok-lstm-softmax", "feat-mask-gru", "feat-lstm-gru",
        "feat-rnn", "tok-rnn-relu", "feat-mask-rnn-lstm", "feat-gru-lstm-rnn",
        "tok-lstm-gru-lstm-gru", "feat-mask-lstm-dense-gru",
        "feat-mask-dense-dense-lstm", "feat-mask-lstm-ln-gru", "tok-gru-ln-rnn-ln-lstm"]


def _setup(cfg, thetas, seed=0, n=10, T=14, theta_m=None, **shape):
    """``shape``: random_ir's units / features."""
    ir, qm, x, L = quantized(cfg, seed=seed, n=n, T=T, **shape)
    k = len(qm.layers)
    qm = with_delta(qm, DeltaSpec([thetas[0]] * k, [thetas[1]] * k, theta_m=[theta_m] * k))
    return ir, qm, dataset(x, L)


@pytest.fixture(scope="module", params=CFGS)
def built(request, tmp_path_factory):
    ir, qm, ds = _setup(request.param, (3, 2))
    d = tmp_path_factory.mktemp(f"delta-{request.param}")
    generate(qm, d / "src", max_t=ds.x.shape[1])
    return request.param, ir, qm, ds, d


def test_host_bitexact(built):
    cfg, ir, qm, ds, d = built
    so = pipeline.build_host(d / "src", d / "host")
    ev = pipeline.evaluate(ir, qm, ds, host_so=so)
    assert ev.host_checked == len(ds) and ev.host_mismatches == 0, ev.first_mismatch
    # thresholds really changed the result and really skipped columns
    dense, _ = GoldenModel(qm, methods=[]).run(ds.x, ds.lengths)
    out, _, st = run_stats(qm, ds.x, ds.lengths)
    assert not np.array_equal(out, dense)
    tot = sum(l.in_dim + l.units for l in qm.layers) * st["steps"].sum()   # (a per-step Dense transmits no h)
    assert 0 < (st["tx_x"].sum() + st["tx_h"].sum()) < tot


@needs_arm
@pytest.mark.parametrize("variant", ["dsp", "plain"])
def test_firmware_bitexact(built, variant):
    from rnnskip import targets
    cfg, ir, qm, ds, d = built
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(d / "src", d / f"fw-{variant}", t, variant)
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=1, workers=1, progress=False))
    assert ev.device_checked == len(ds) and ev.device_mismatches == 0, ev.first_mismatch


@needs_arm
def test_theta0_device_equals_dense_golden(tmp_path):
    from rnnskip import targets
    ir, qm, ds = _setup("feat-lstm-lstm", (0, 0), seed=2)
    generate(qm, tmp_path / "src", max_t=ds.x.shape[1])
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.device_mismatches == 0, ev.first_mismatch
    dense, _ = GoldenModel(qm, methods=[]).run(ds.x, ds.lengths)
    np.testing.assert_array_equal(ev.emu.out[:, : qm.output_dim], dense)


@needs_arm
@pytest.mark.parametrize("cfg,ptype", [("feat-dense-gru", "mlp"), ("feat-lstm-lstm", "forest"),
                                      ("feat-mask-lstm-ln-gru", "mlp")])
def test_delta_with_skip_predictor(cfg, ptype, tmp_path):
    """--delta with --predictor: the predictor decides first (a skipped step changes no
    delta state), a run step is delta-sparse; golden, host and firmware agree."""
    from test_skip_device import quantized_with_predictor

    from rnnskip import targets
    ir, qm, x, L = quantized_with_predictor(cfg, ptype)
    qm = with_delta(qm, DeltaSpec([2] * len(qm.layers), [2] * len(qm.layers)))
    ds = dataset(x, L)
    out, flags, st = run_stats(qm, x, L)
    valid = GoldenModel(qm).valid_steps(x) & (np.arange(x.shape[1])[None, :] < L[:, None])
    assert 0 < flags.sum() < valid.sum()                     # the predictor skipped some valid steps
    assert (st["steps"] == flags.sum(1)).all()
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    t = targets.load("cortex-m4")
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, ds, host_so=so, firmware=fw,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.host_mismatches == 0 and ev.device_mismatches == 0, ev.first_mismatch


@needs_arm
def test_more_than_256_transmitting_columns(tmp_path):
    """A layer with 352 columns (150 inputs + 200 units, padded) at theta 0:
    the first steps transmit more than 256 columns, so the DSP mat-vec runs in several chunks
    (the bound that keeps (A - B) >> 8 exact); a stacked LSTM -> GRU, firmware bit-exact."""
    from rnnskip import targets
    ir, qm, ds = _setup("feat-lstm-gru", (0, 0), seed=3, n=4, T=6, dim=150, units=(200, 70))
    dg = GoldenModel(qm)
    dev, st, widest = dg.device_inputs(ds.x), dg.initial_state(len(ds)), 0
    for t in range(ds.x.shape[1]):
        before = st[0]["tx_x"][:, 0] + st[0]["tx_h"][:, 0]
        st = dg.step(st, dev[:, t])
        widest = max(widest, int((st[0]["tx_x"][:, 0] + st[0]["tx_h"][:, 0] - before).max()))
    assert widest > 256, widest
    generate(qm, tmp_path / "src", max_t=ds.x.shape[1])
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.device_checked == len(ds) and ev.device_mismatches == 0, ev.first_mismatch


def test_one_copy_of_the_weights(built, tmp_path):
    """A delta model's C holds its recurrent weights once (column-major): no row-major
    block arrays, and the weights file is no larger than the dense model's plus the
    running sums' start values."""
    cfg, ir, qm, ds, d = built
    delta_src = (d / "src" / "rnnskip_weights.c").read_text()
    generate(with_delta(qm, None), tmp_path / "dense", max_t=ds.x.shape[1])
    dense_src = (tmp_path / "dense" / "rnnskip_weights.c").read_text()
    for i, l in enumerate(qm.layers):
        for b in l.blocks:
            assert f"rnnskip_l{i}_{b.name}_w[" in dense_src
            assert f"rnnskip_l{i}_{b.name}_w[" not in delta_src and f"rnnskip_l{i}_{b.name}_b[" not in delta_src
        assert f"rnnskip_l{i}_d_w[" in delta_src


@needs_arm
def test_delta_flash_within_10_percent_of_dense(tmp_path):
    """GRU(96) on 40 features: the delta image's flash is within 10% of the dense image's."""
    from rnnskip import targets
    ir, qm, ds = _setup("feat-dense-gru", (3, 2), seed=4, n=2, T=4, units=(96,), dim=40, features=40)
    t = targets.load("cortex-m4")
    flash = {}
    for name, q in (("dense", with_delta(qm, None)), ("delta", qm)):
        generate(q, tmp_path / name / "src", max_t=ds.x.shape[1])
        flash[name] = pipeline.build_target(tmp_path / name / "src", tmp_path / name / "fw", t, "dsp").flash_bytes
    assert flash["delta"] <= 1.1 * flash["dense"], flash


@needs_arm
def test_delta_weights_counted_once(tmp_path):
    """The weights the report (flash placement) and the fit check count for a delta model are
    the one copy its C holds: the bytes --weights sram copies, and no more than the dense model's."""
    from rnnskip import boards
    from rnnskip.generate import weights_bytes
    from rnnskip.report import build_report
    from rnnskip.targets.fit import estimate
    ir, qm, ds = _setup("feat-lstm-gru", (3, 2), seed=1, n=2, T=5)
    generate(qm, tmp_path / "src", max_t=ds.x.shape[1])
    got = {}
    for w in ("flash", "sram"):
        _, t = boards.resolve(None, "stm32f407", None, w)
        fw = pipeline.build_target(tmp_path / "src", tmp_path / w, t, "dsp")
        emu = Unicorn(t, traffic_sample=2, workers=1, progress=False)
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=emu)
        assert ev.device_mismatches == 0, ev.first_mismatch
        got[w] = build_report(ir, qm, ev, t, "portable", "dsp", fw)["emulation"]["weights"]["bytes"]
    assert got["flash"] == got["sram"] == weights_bytes(qm) == estimate(qm, 5, t).weights
    assert weights_bytes(qm) <= 1.1 * weights_bytes(with_delta(qm, None))


def test_column_rows_odd_number_of_lines():
    """Columns of 8+ 32-byte lines are stored as an odd number of lines; shorter ones as they are."""
    from rnnskip.delta.codegen import column_rows
    assert [column_rows(r) for r in (36, 224, 256, 260, 288, 384, 800)] == [36, 224, 288, 288, 288, 416, 800]


@needs_arm
def test_padded_columns_bitexact_and_fewer_d_cache_misses(tmp_path, monkeypatch):
    """LSTM(64) on 32 features: 256-byte columns are stored as 288 bytes. Bit-exact on the STM32F746
    (its 4-way 4 KiB D-cache), and the padded layout fills fewer flash lines than 256-byte columns."""
    from rnnskip import boards
    from rnnskip.delta import codegen
    from rnnskip.report import stat_columns
    ir, qm, ds = _setup("feat-lstm", (2, 2), seed=5, n=2, T=12, units=(64,), features=32)
    _, t = boards.resolve(None, "stm32f746", None, "flash")
    fills = {}
    for name in ("padded", "power-of-two"):
        if name == "power-of-two":
            monkeypatch.setattr(codegen, "column_rows", lambda rows: rows)
        generate(qm, tmp_path / name / "src", max_t=ds.x.shape[1])
        src = (tmp_path / name / "src" / "rnnskip_weights.c").read_text()
        assert f"rnnskip_l0_d_w[{(288 if name == 'padded' else 256) // 2 * 96}]" in src
        fw = pipeline.build_target(tmp_path / name / "src", tmp_path / name / "fw", t, "dsp")
        ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=1, workers=1,
                                                                          progress=False))
        assert ev.device_checked == 2 and ev.device_mismatches == 0, ev.first_mismatch
        fills[name] = stat_columns(ev.emu)["flash_line_fills"].sum()
    assert fills["padded"] < fills["power-of-two"], fills


@pytest.fixture(scope="module", params=CFGS)
def built_cells(request, tmp_path_factory):
    """Cell threshold 3000 (pre-activation steps): these random models' sums move a lot
    every step, so it takes that much to leave units out."""
    ir, qm, ds = _setup(request.param, (3, 2), theta_m=3000)
    d = tmp_path_factory.mktemp(f"delta-cells-{request.param}")
    generate(qm, d / "src", max_t=ds.x.shape[1])
    return request.param, ir, qm, ds, d


@needs_arm
@pytest.mark.parametrize("variant", ["dsp", "plain"])
def test_cell_threshold_bitexact(built_cells, variant):
    """Golden = host = firmware with a cell threshold that leaves units out (LSTM, GRU,
    SimpleRNN, stacks), and the outputs differ from the delta model without it."""
    from rnnskip import targets
    cfg, ir, qm, ds, d = built_cells
    out, _, st = run_stats(qm, ds.x, ds.lengths)
    _, _, st_all = run_stats(with_delta(qm, DeltaSpec(qm.methods[0].spec.theta_x, qm.methods[0].spec.theta_h)),
                             ds.x, ds.lengths)
    assert 0 < st["cells"].sum() < st_all["cells"].sum()
    t = targets.load("cortex-m4")
    so = pipeline.build_host(d / "src", d / f"host-{variant}") if variant == "dsp" else None
    fw = pipeline.build_target(d / "src", d / f"fw-{variant}", t, variant)
    ev = pipeline.evaluate(ir, qm, ds, host_so=so, firmware=fw,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.device_checked == len(ds) and ev.device_mismatches == 0, ev.first_mismatch
    if so is not None:
        assert ev.host_checked == len(ds) and ev.host_mismatches == 0, ev.first_mismatch
    np.testing.assert_array_equal(ev.emu.out[:, : qm.output_dim], out)


@needs_arm
@pytest.mark.parametrize("cfg", ["feat-dense-gru", "feat-lstm-lstm", "feat-rnn"])
def test_cell_threshold_0_firmware_is_the_delta_model(cfg, tmp_path):
    """theta_m = 0 runs the cell check on the device and evaluates every unit: the firmware's
    outputs equal the golden delta model without a cell threshold."""
    from rnnskip import targets
    ir, qm, ds = _setup(cfg, (3, 2), theta_m=0)
    generate(qm, tmp_path / "src", max_t=ds.x.shape[1])
    assert "rnnskip_delta_unit_moved" in (tmp_path / "src" / "rnnskip_model.c").read_text()
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, ds, firmware=fw, emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    plain = with_delta(qm, DeltaSpec(qm.methods[0].spec.theta_x, qm.methods[0].spec.theta_h))
    want, _, _ = run_stats(plain, ds.x, ds.lengths)
    np.testing.assert_array_equal(ev.emu.out[:, : qm.output_dim], want)


@needs_arm
def test_profile_parts_claim_every_delta_kernel(tmp_path):
    """The report's per-part profile names the delta kernels by symbol prefix: every delta
    kernel function the emulated firmware spends cycles in belongs to one of its parts."""
    from rnnskip import targets
    from rnnskip.delta.golden import DeltaMethod
    from rnnskip.pipeline.stages import device_sequences
    ir, qm, ds = _setup("feat-lstm-gru", (1, 1), n=3, T=8, units=(40, 24), dim=30)
    generate(qm, tmp_path / "src", max_t=ds.x.shape[1])
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    prof = Unicorn(t, traffic_sample=0, workers=1, progress=False).profile(fw, device_sequences(qm, ds))
    prefixes = tuple(p for ps in DeltaMethod.c_parts.values() for p in ps)
    delta_fns = [f for f in prof if f.startswith(("rnnskip_delta", "rnnskip_dv", "rnnskip_dg"))]
    assert delta_fns and all(f.startswith(prefixes) for f in delta_fns), delta_fns
    assert any(f.startswith("rnnskip_dv6") for f in delta_fns)      # 6-row passes on 72+ rows
