"""Cross-check of the cycle model and the 128-bit-line flash model against ANCHORS.md's
independent figures (Cortex-M4 TRM r0p1 timings, GCC 12.2, -O2, CMSIS-NN 99f736a).

Builds ``tests/fixtures/xcheck/harness.c`` with CMSIS-NN's sources taken from
``$CMSIS_NN_PATH`` (never copied into this repository; the test skips without it) for the
cortex-m4 target, weights as const arrays in flash, activations in SRAM, and calls each kernel
under Unicorn with two memory models:

* core only, 0 wait states (single-cycle memory), the anchor's main column;
* flash read in 16-byte lines, 5 wait states per line fill, no prefetch, no caches: the
  stm32f407 board's ``[memory_system]`` with the ART's prefetch and caches switched off,
  the anchor's "5 flash wait states, no cache" column.

MAC per modeled cycle = MACs / cycles of one call of the kernel itself. The anchor gives two
significant digits, so a figure agrees when ``|ours - anchor| <= 0.005 + 2% of the anchor``
(half a unit of its last digit, plus 2% for the estimators' differences in call set-up).

    CMSIS_NN_PATH=/path/to/CMSIS-NN pytest tests/test_memory_crosscheck.py -s
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import needs_arm

CMSIS = os.environ.get("CMSIS_NN_PATH")
pytestmark = [needs_arm, pytest.mark.skipif(
    not CMSIS, reason="CMSIS_NN_PATH not set: no CMSIS-NN checkout to build the cross-check kernels from")]

FIX = Path(__file__).parent / "fixtures" / "xcheck"

#: CMSIS-NN files the harness needs, relative to $CMSIS_NN_PATH
CMSIS_SOURCES = (
    "Source/FullyConnectedFunctions/arm_fully_connected_s8.c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c",
    "Source/LSTMFunctions/arm_lstm_unidirectional_s8.c",
    "Source/NNSupportFunctions/arm_nn_lstm_step_s8.c",
    "Source/NNSupportFunctions/arm_nn_lstm_calculate_gate_s8_s16.c",
    "Source/NNSupportFunctions/arm_nn_vec_mat_mul_result_acc_s8_s16.c",
    "Source/ActivationFunctions/arm_nn_activation_s16.c",
    "Source/BasicMathFunctions/arm_elementwise_mul_s16.c",
    "Source/BasicMathFunctions/arm_elementwise_mul_acc_s16.c",
    "Source/BasicMathFunctions/arm_elementwise_mul_s16_s8.c",
    "Source/NNSupportFunctions/arm_nntables.c",
)

#: ANCHORS.md: MAC per modeled cycle at 0 wait states, and at 5 WS with 128-bit lines, no cache
ANCHOR = {
    "fc 96->256": (0.33, 0.14),
    "fc 128->512": (0.35, 0.15),
    "lstm 32/64 step": (0.22, 0.10),
    "naive 96->256": (0.12, 0.04),
}

_CORE = ("Our core model pipelines neighbouring single loads (TRM 3.3.2: the second load of a pair costs 1 "
         "cycle); the anchor's figure is reproduced without that pipelining "
         "(test_anchor_like_rules_reproduce_every_figure). Charging P = 2 instead of 1 for direct branches "
         "reproduces the four 0-WS figures as well: the published numbers do not tell which rule differs")
#: (row, memory model) -> why ours differs from the anchor (investigated; the model is not tuned to fit)
EXPLAINED = {
    ("fc 96->256", "0 WS"): "the load pairs are the bias and stack reloads of the per-row-pair set-up "
                            "(17 cycles per pair; CMSIS-NN's inner loop has none). " + _CORE,
    ("fc 128->512", "0 WS"): "the load pairs are the bias and stack reloads of the per-row-pair set-up. " + _CORE,
    ("lstm 32/64 step", "0 WS"): _CORE,
    ("naive 96->256", "0 WS"): "the inner loop ldrsb; ldrsb; cmp; smlabb; bne costs 7 cycles here (second "
                               "ldrsb pipelined, taken branch 2), 8 in the anchor. " + _CORE,
    ("naive 96->256", "lines 5 WS"): "our data side keeps the last flash line read in a line buffer "
                                     "(memory.py), so the sequential weight reads cost one fill per "
                                     "16 bytes; the anchor's figure is reproduced when every flash data "
                                     "read pays the 5 wait states (CMSIS-NN's kernels interleave two "
                                     "weight rows, so nearly every read is a fill in both models)",
}

FC_MULTIPLIER, FC_SHIFT = 1518500250, -7          # 0.707 * 2^-7
FC_INPUT_OFFSET, FC_OUTPUT_OFFSET = 3, -5
LSTM_MULTIPLIER, LSTM_SHIFT = 1 << 30, -6

#: what the test calls or reads (nothing reachable from Reset_Handler uses them)
KEEP = ["arm_fully_connected_s8", "arm_lstm_unidirectional_s8", "xc_naive_matvec", "xc_in", "xc_out", "xc_acc",
        "xc_ctx", "xc_fc", "xc_fc_quant", "xc_in_dims", "xc_filter96", "xc_out256", "xc_filter128", "xc_out512",
        "xc_bias_dims", "xc_w96", "xc_w128", "xc_b256", "xc_b512", "xc_lstm", "xc_lstm_buf", "xc_hidden",
        "xc_cell"]

MEASURED: dict = {}


def within(ours: float, anchor: float) -> bool:
    return abs(ours - anchor) <= 0.005 + 0.02 * anchor


def _c_array(ctype: str, name: str, a) -> str:
    vals = ", ".join(str(int(v)) for v in np.asarray(a).ravel())
    return f"const {ctype} {name}[{np.asarray(a).size}] = {{{vals}}};\n"


def _weights(rng) -> tuple:
    w = {"fc96": rng.integers(-127, 128, (256, 96)), "fc128": rng.integers(-127, 128, (512, 128)),
         "b256": rng.integers(-2000, 2000, 256), "b512": rng.integers(-2000, 2000, 512)}
    text = ["/* generated by tests/test_memory_crosscheck.py */\n#include <stdint.h>\n",
            f"#define XC_FC_MULTIPLIER {FC_MULTIPLIER}\n#define XC_FC_SHIFT ({FC_SHIFT})\n",
            f"#define XC_FC_INPUT_OFFSET ({FC_INPUT_OFFSET})\n#define XC_FC_OUTPUT_OFFSET ({FC_OUTPUT_OFFSET})\n",
            f"#define XC_LSTM_MULTIPLIER {LSTM_MULTIPLIER}\n#define XC_LSTM_SHIFT ({LSTM_SHIFT})\n",
            _c_array("int8_t", "xc_w96", w["fc96"]), _c_array("int8_t", "xc_w128", w["fc128"]),
            _c_array("int32_t", "xc_b256", w["b256"]), _c_array("int32_t", "xc_b512", w["b512"])]
    for g in "fico":
        text.append(_c_array("int8_t", f"xc_lstm_wx_{g}", rng.integers(-127, 128, (64, 32))))
        text.append(_c_array("int8_t", f"xc_lstm_wh_{g}", rng.integers(-127, 128, (64, 64))))
        text.append(_c_array("int32_t", f"xc_lstm_bx_{g}", rng.integers(-5000, 5000, 64)))
        text.append(_c_array("int32_t", f"xc_lstm_bh_{g}", rng.integers(-5000, 5000, 64)))
    return w, "".join(text)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    from rnnskip.build import build_firmware
    from rnnskip.targets import load
    root = Path(CMSIS)
    missing = [s for s in ("Include/arm_nnfunctions.h",) + CMSIS_SOURCES if not (root / s).is_file()]
    if missing:
        pytest.skip(f"CMSIS_NN_PATH={CMSIS} is not a CMSIS-NN checkout with {missing[0]}")
    d = tmp_path_factory.mktemp("xcheck")
    w, header = _weights(np.random.default_rng(7))
    (d / "xcheck_weights.h").write_text(header)
    elf = build_firmware(load("cortex-m4"), [FIX / "harness.c"] + [root / s for s in CMSIS_SOURCES], d,
                         name="xcheck", include_dirs=[d, root / "Include"],
                         keep=KEEP)
    return elf, w


def lines_only_target():
    """cortex-m4 with the stm32f407 board's flash (16-byte lines, 5 WS), prefetch off, no caches."""
    from rnnskip import boards
    from rnnskip.targets import load
    ms = dict(boards.load("stm32f407").raw["memory_system"])
    ms.pop("icache")
    ms.pop("dcache")
    ms["prefetch"] = dict(ms["prefetch"], enabled=False)
    ms["name"] = "STM32F407 flash: 128-bit lines, 5 WS, no prefetch, no caches"
    core = load("cortex-m4")
    t = dataclasses.replace(core, raw=dict(core.raw, memory_system=ms))
    spec = t.memory_system
    assert (spec.line_bytes, spec.wait_states, spec.prefetch, spec.icache, spec.dcache) == (16, 5, False, None, None)
    return t


def models():
    from rnnskip.targets import load
    return {"0 WS": load("cortex-m4"), "lines 5 WS": lines_only_target()}


def requantize(acc, mult, shift):
    """arm_nn_requantize (CMSIS-NN's default: doubling high multiply, then rounding divide)."""
    acc = np.asarray(acc, dtype=np.int64)
    left, right = max(shift, 0), max(-shift, 0)
    x = ((acc << left) * mult + (1 << 30)) >> 31
    mask = (1 << right) - 1
    rem = x & mask
    res = x >> right
    thr = (mask >> 1) + (res < 0)
    return res + (rem > thr)


def _record(row: str, model: str, v: float, st, rules: str = "ours") -> None:
    MEASURED.setdefault((row, rules), {})[model] = v
    mem = "" if st.memory is None else (f", {st.memory['flash_line_fills']} line fills, "
                                        f"{st.memory['stall_cycles']} stall cycles")
    print(f"\n{rules:11s} {row:16s} {model:11s} {st.cycles:8d} cycles {v:.4f} MAC/cycle"
          f" (anchor {ANCHOR[row][model != '0 WS']:.2f}){mem}")


def _agree(row: str, model: str, v: float) -> None:
    """Pass when ``v`` agrees with the anchor; a disagreement fails, unless it is one of the
    explained differences (EXPLAINED), which is an xfail naming the measured value."""
    anchor = ANCHOR[row][model != "0 WS"]
    if within(v, anchor):
        return
    why = EXPLAINED.get((row, model))
    msg = f"{row}, {model}: measured {v:.4f} MAC/cycle, anchor {anchor:.2f}"
    if why is None:
        pytest.fail(msg + f" (allowed: {anchor:.2f} +- {0.005 + 0.02 * anchor:.4f})")
    pytest.xfail(f"{msg}: {why}")


@pytest.fixture(scope="module", autouse=True)
def table():
    """After the module: the measured table (shown with -s)."""
    yield
    if not MEASURED:
        return
    print("\n\nMAC per modeled cycle (anchor: ANCHORS.md)")
    print(f"{'rules':11s} {'kernel':16s} {'0 WS':>7s} {'anchor':>7s} {'5 WS lines':>11s} {'anchor':>7s}")
    for (row, rules), m in sorted(MEASURED.items(), key=lambda kv: (kv[0][1] != "ours", list(ANCHOR).index(kv[0][0]))):
        a0, a5 = ANCHOR[row]
        v0, v5 = m.get("0 WS", float("nan")), m.get("lines 5 WS", float("nan"))
        print(f"{rules:11s} {row:16s} {v0:7.4f} {a0:7.2f} {v5:11.4f} {a5:7.2f}")


def _run(emu, row: str, w: dict) -> "tuple":
    """Call the kernel of ``row`` once on fixed inputs; check its output; (MACs, CallStats)."""
    if row.startswith("fc"):
        cols, rows = (int(n) for n in row[3:].split("->"))
        x = np.random.default_rng(cols).integers(-128, 128, cols).astype(np.int8)
        emu.write("xc_in", x.tobytes())
        args = ["xc_ctx", "xc_fc", "xc_fc_quant", "xc_in_dims", "xc_in", f"xc_filter{cols}", f"xc_w{cols}",
                "xc_bias_dims", f"xc_b{rows}", f"xc_out{rows}", "xc_out"]
        st = emu.call("arm_fully_connected_s8", args)
        assert st.return_value == 0
        acc = w[f"fc{cols}"] @ (x.astype(np.int64) + FC_INPUT_OFFSET) + w[f"b{rows}"]
        want = np.clip(requantize(acc, FC_MULTIPLIER, FC_SHIFT) + FC_OUTPUT_OFFSET, -128, 127)
        np.testing.assert_array_equal(np.frombuffer(emu.read("xc_out", rows), dtype=np.int8), want)
        return rows * cols, st
    if row.startswith("naive"):
        x = np.random.default_rng(1).integers(-128, 128, 96).astype(np.int8)
        emu.write("xc_in", x.tobytes())
        st = emu.call("xc_naive_matvec", ["xc_w96", "xc_in", "xc_acc", 256, 96])
        got = np.frombuffer(emu.read("xc_acc", 4 * 256), dtype="<i4")
        np.testing.assert_array_equal(got, w["fc96"] @ x.astype(np.int64))
        return 256 * 96, st
    rng = np.random.default_rng(2)
    emu.write("xc_in", rng.integers(-128, 128, 32).astype(np.int8).tobytes())
    emu.write("xc_hidden", rng.integers(-128, 128, 64).astype(np.int8).tobytes())
    emu.write("xc_cell", rng.integers(-3000, 3000, 64).astype("<i2").tobytes())
    st = emu.call("arm_lstm_unidirectional_s8", ["xc_in", "xc_out", "xc_lstm", "xc_lstm_buf"])
    assert st.return_value == 0
    out = np.frombuffer(emu.read("xc_out", 64), dtype=np.int8)
    assert len(set(out.tolist())) > 16          # a real step ran: the outputs vary
    return 4 * 64 * (32 + 64), st


@pytest.mark.parametrize("model", ["0 WS", "lines 5 WS"])
@pytest.mark.parametrize("row", list(ANCHOR))
def test_against_anchor(firmware, row, model):
    """Our model (rnnskip/simulator as it is) against the anchor's figure."""
    from rnnskip.simulator import UnicornEmulator
    elf, w = firmware
    macs, st = _run(UnicornEmulator(elf, models()[model]), row, w)
    v = macs / st.cycles
    _record(row, model, v, st)
    _agree(row, model, v)


@pytest.fixture
def anchor_rules(monkeypatch):
    """The two rules in which the anchor's estimator evidently differs from ours (see EXPLAINED),
    switched for this test only: no LDR->LDR pipelining (TRM 3.3.2), and no data-side flash line
    buffer (every flash data read pays the wait states). The model itself is not changed."""
    from rnnskip.simulator import cycles, memory, unicorn_backend

    class NoDataLineBuffer(memory.MemorySystem):
        def read(self, addr: int, nbytes: int = 4) -> int:
            self._dbuf = -1
            return super().read(addr, nbytes)

    m4 = cycles.get_table("cortex-m4")
    monkeypatch.setitem(cycles.TABLES, "cortex-m4", dataclasses.replace(m4, load_pipelining=False))
    monkeypatch.setattr(unicorn_backend, "MemorySystem", NoDataLineBuffer)


@pytest.mark.parametrize("model", ["0 WS", "lines 5 WS"])
@pytest.mark.parametrize("row", list(ANCHOR))
def test_anchor_like_rules_reproduce_every_figure(firmware, anchor_rules, row, model):
    """The explanation of the differences, checked: with those two rules every figure agrees."""
    from rnnskip.simulator import UnicornEmulator
    elf, w = firmware
    macs, st = _run(UnicornEmulator(elf, models()[model]), row, w)
    v = macs / st.cycles
    _record(row, model, v, st, rules="anchor-like")
    anchor = ANCHOR[row][model != "0 WS"]
    assert within(v, anchor), f"{row}, {model}, anchor-like rules: {v:.4f} MAC/cycle, anchor {anchor:.2f}"
