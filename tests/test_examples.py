"""The README's first commands, end to end as a user runs them: `make demo` (examples/demo.py), every
command it prints as the next step (delta networks and a skip predictor on the files it wrote, at
budgets its validation rows can certify), and the PyTorch twin (examples/pytorch_gru.py)."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import needs_arm

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(argv, what):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    assert p.returncode == 0, f"{what} exited {p.returncode}:\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}"
    return p.stdout


def bit_exact(report: dict, n: int) -> None:
    b = report["bitexact"]
    assert (b["host_checked"], b["device_checked"]) == (n, n)
    assert (b["host_mismatches"], b["device_mismatches"]) == (0, 0)


@needs_arm
def test_demo_and_every_next_step_it_prints(tmp_path):
    out = tmp_path / "demo"
    text = run([sys.executable, ROOT / "examples" / "demo.py", "--out", out], "examples/demo.py")
    bit_exact(json.loads((out / "cortex-m4" / "report.json").read_text()), 370)

    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("next, with the same files"))
    steps = [shlex.split(line) for line in lines[head + 1:] if line.startswith("  ")]
    assert [s[:2] for s in steps] == [["rnnskip", "delta-tune"], ["rnnskip-convert", str(out / "model" / "model.h5")],
                                      ["rnnskip", "train-predictor"],
                                      ["rnnskip-convert", str(out / "model" / "model.h5")]]
    for s in steps:
        run([BIN / s[0]] + s[1:], " ".join(s[:2]))

    # each budget is one the 54 validation rows can certify: none falls back to the dense model
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import demo
    finally:
        sys.path.pop(0)
    (_, ask_all), (_, ask_half) = demo.certifiable_budget(54), demo.certifiable_budget(27)
    delta = json.loads((out / "m4-delta" / "report.json").read_text())
    bit_exact(delta, 370)
    cert = delta["delta"]["certified"]
    assert cert["certified"] and cert["max_loss_points"] == ask_all and cert["calibration_n"] == 54
    assert cert["upper_bound"] <= ask_all and delta["delta"]["mac_reduction"]["x_fewer"] > 1.0
    meta = json.loads((out / "predictor" / "predictor.json").read_text())
    pred, v = meta["certified"], meta["val"]
    assert pred["certified"] and pred["max_loss_points"] == ask_half and pred["calibration_n"] == 27
    if v["certified_threshold_differs"]:   # what the threshold that ships skips, on the selection rows
        assert 0.0 <= v["certified_skip_rate"] <= v["skip_rate"]
    skip = json.loads((out / "m4-skip" / "report.json").read_text())
    bit_exact(skip, 370)
    assert 0.0 < skip["skip"]["skip_rate"] < 1.0


def test_budgets_the_demo_asks_for_are_the_smallest_half_points_its_rows_certify():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import demo
    finally:
        sys.path.pop(0)
    # rnnskip delta-tune's and train-predictor's own refusals name these bounds (certify.py)
    b, ask = demo.certifiable_budget(27)
    assert round(b, 2) == 10.50 and ask == 11.0
    b, ask = demo.certifiable_budget(54)
    assert round(b, 2) == 5.40 and ask == 5.5
    for n in (10, 54, 100, 300):
        b, ask = demo.certifiable_budget(n)
        assert b < ask <= b + 0.5


@needs_arm
def test_pytorch_example(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    out = tmp_path / "pt"
    run([sys.executable, ROOT / "examples" / "pytorch_gru.py", "--out", out], "examples/pytorch_gru.py")
    assert (out / "model" / "model.onnx").is_file()
    bit_exact(json.loads((out / "cortex-m4" / "report.json").read_text()), 370)
