"""QEMU backend: board images boot on their QEMU machines, print bit-exact results
over the UART, agree with Unicorn on outputs and instruction counts, and fail in
one clear line when they hang or fault."""
from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import dataset, needs_arm_and_qemu, quantized
from random_models import generated_mixed

from rnnskip import boards, pipeline
from rnnskip.boards.firmware import build_board_firmware, make_bundle
from rnnskip.datasets import save_npz
from rnnskip.emulators import qemu
from rnnskip.emulators.base import STAT_FIELDS
from rnnskip.emulators.unicorn import Unicorn
from rnnskip.errors import RnnskipError
from rnnskip.generate import generate
from rnnskip.simulator.unicorn_backend import EmulationError

pytestmark = needs_arm_and_qemu

# one board per core QEMU can boot
QEMU_BOARDS = ["stm32f407", "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547", "microbit"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("qemu")
    ir, qm, x, L = generated_mixed(d, n=5, seed=2)
    return {"ir": ir, "qm": qm, "x": x, "L": L, "dir": d, "bundle": make_bundle(qm, x, L, 5)}


def _build(model, name, **kw):
    b = boards.load(name)
    variant = "dsp" if boards.board_target(b).dsp else "plain"
    out = model["dir"] / (name + "".join(f"-{k}" for k in kw.get("extra_cflags", ())))
    return b, build_board_firmware(model["dir"] / "src", out, b, model["bundle"], variant, "mixed", **kw)


@pytest.mark.parametrize("name", QEMU_BOARDS)
def test_board_boots_bitexact_and_matches_unicorn(model, name, tmp_path):
    b, fw = _build(model, name)
    run = qemu.run_firmware(fw.elf, b, timeout=60, workdir=tmp_path)
    bundle = model["bundle"]
    assert run.start["board"] == name and run.start["sequences"] == str(bundle.n)
    assert run.summary["result"] == "PASS" and run.summary["mismatch"] == "0", run.lines[-1]
    assert len(run.sequences) == bundle.n
    for s in run.sequences:                         # checked here too, not only on the device
        i, T = s["i"], int(bundle.lengths[s["i"]])
        assert s["out"] == bundle.out[i].tolist()
        assert s["flags"] == "".join(str(int(f)) for f in bundle.flags[i, :T])
        assert s["match"]
    assert run.icounts and all(n > 1000 for n in run.icounts), run.icount_note
    # the same image's rnnskip_io_run under Unicorn, as the board emulators re-run it
    unicorn = Unicorn(boards.board_target(b), traffic_sample=0, workers=1, progress=False)
    qm = model["qm"]
    seqs = pipeline.device_sequences(qm, dataset(model["x"], model["L"]), bundle.n)
    if name == "mps3-an547":
        with pytest.raises(EmulationError, match="no Armv8.1-M core"):
            unicorn.run(fw, seqs)
        return
    uni = unicorn.run(fw, seqs)
    assert uni.out[:, :qm.output_dim].tolist() == [s["out"] for s in run.sequences]
    assert ["".join(map(str, f)) for f in uni.flags] == [s["flags"] for s in run.sequences]
    # the TCG plugin's counts equal Unicorn's, instruction for instruction
    assert uni.stats[:, STAT_FIELDS.index("instructions")].tolist() == run.icounts
    assert (uni.stats[:, STAT_FIELDS.index("cycles")] > 0).all() and uni.stack_bytes > 0


def test_olimex_falls_back_to_netduinoplus2(model, tmp_path):
    b, fw = _build(model, "olimex-stm32-h405")
    m, note = qemu.machine_for(b)
    if "olimex-stm32-h405" in qemu.machines():
        assert m == "olimex-stm32-h405"
    else:
        assert m == "netduinoplus2" and "8.1" in note
    assert qemu.run_firmware(fw.elf, b, timeout=60, workdir=tmp_path, icount=False).passed


def test_hang_is_a_one_line_timeout(model, tmp_path):
    b, fw = _build(model, "mps2-an386", extra_cflags=("-DRNNSKIP_BOARD_HANG_TEST",))
    with pytest.raises(EmulationError) as e:
        qemu.run_firmware(fw.elf, b, timeout=2, icount=False, workdir=tmp_path)
    msg = str(e.value)
    assert "printed no summary line within 2 s (hung?)" in msg and "rnnskip start:" in msg and "\n" not in msg


def test_fault_is_reported(model, tmp_path):
    b, fw = _build(model, "stm32f407", extra_cflags=("-DRNNSKIP_BOARD_FAULT_TEST=2",))
    with pytest.raises(EmulationError, match=r"firmware faulted on QEMU netduinoplus2 \(board stm32f407\) "
                                             r"while running sequence 2: FAULT: HardFault pc=0x"):
        qemu.run_firmware(fw.elf, b, timeout=30, icount=False, workdir=tmp_path)


def test_board_without_qemu_machine_and_missing_qemu(monkeypatch):
    with pytest.raises(RnnskipError, match="board stm32g0b1 .* has no QEMU machine; QEMU can run: .*mps2-an386"):
        qemu.machine_for(boards.load("stm32g0b1"))
    monkeypatch.setattr(qemu, "QEMU", "qemu-system-arm-not-installed")
    with pytest.raises(RnnskipError, match="qemu-system-arm-not-installed not found on PATH; run 'make setup'"):
        qemu.run_firmware("fw.elf", boards.load("mps2-an386"))


def test_cli_convert_and_emulate_with_qemu(model, tmp_path, monkeypatch):
    """rnnskip-convert --board netduinoplus2 --emulator qemu, then the emulate stage on its work folder."""
    import json

    from click.testing import CliRunner

    from rnnskip.cli import main
    from rnnskip.pipeline import stages
    ir, x, L = model["ir"], model["x"], model["L"]
    monkeypatch.setattr(stages, "import_model", lambda path: ir)      # no Keras needed here
    save_npz(str(tmp_path / "d.npz"), dataset(x, L))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["convert", "model.h5", "--board", "netduinoplus2", "--emulator", "qemu",
                                  "--data", str(tmp_path / "d.npz"), "--out", str(out), "--bundle", "3"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["target"] == "cortex-m4" and rep["mve"] is False and rep["bitexact"]["device_mismatches"] == 0
    assert rep["bitexact"]["device_checked"] == 3
    # the sizes are the board image's, and say so (the Unicorn emulation image's say theirs)
    assert rep["footprint"]["image"].startswith("the board image") and "bytes of the board image" in r.output
    e = rep["emulation"]
    assert e["emulator"] == "qemu" and e["board"]["qemu_machine"] == "netduinoplus2"
    assert e["board"]["device_summary"]["result"] == "PASS"
    cc = e["board"]["unicorn_cross_check"]
    assert cc["outputs_identical"] and cc["instructions_identical"]
    assert e["cycles_per_inference"] > 0 and e["cycles_from"].startswith("Unicorn")
    # the Unicorn re-run's cycles use the board's memory system, and report its counters
    assert e["memory_system"]["name"].startswith("STM32F405/407") and e["memory_per_inference"]["stall_cycles"] > 0
    assert "device 3" in r.output and "not measured on this run" in r.output   # what the table says it checked
    assert "not measured on qemu board runs" in e["traffic_note"]
    # the emulate stage on the convert folder (a complete work folder), another board of the same core
    r = CliRunner().invoke(main, ["emulate", str(out), "--data", str(tmp_path / "d.npz"), "--emulator", "qemu",
                                  "--board", "mps2-an386", "--bundle", "2"])
    assert r.exit_code == 0, r.output
    assert "qemu mps2-an386: 2 sequences, 0 mismatches; PASS" in r.output
    r = CliRunner().invoke(main, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["emulation"]["board"]["board"] == "mps2-an386"
    # the board image the emulate stage built is rnnskip's: the conversion replaces the folder again (it was
    # refused as holding files rnnskip did not write)
    assert (out / "board-mps2-an386").is_dir()
    # and so is one whose run failed (QEMU timed out, Ctrl-C): built, then the evaluation raised
    evaluate = stages.evaluate

    def timed_out(*a, **k):
        raise RnnskipError("qemu mps2-an386: no result within 120 s (stand-in)")
    monkeypatch.setattr(stages, "evaluate", timed_out)
    r = CliRunner().invoke(main, ["emulate", str(out), "--data", str(tmp_path / "d.npz"), "--emulator", "qemu",
                                  "--board", "mps2-an505", "--bundle", "2"])
    assert r.exit_code == 2 and "(stand-in)" in r.output and (out / "board-mps2-an505").is_dir()
    monkeypatch.setattr(stages, "evaluate", evaluate)
    r = CliRunner().invoke(main, ["convert", "model.h5", "--board", "netduinoplus2", "--emulator", "qemu",
                                  "--data", str(tmp_path / "d.npz"), "--out", str(out), "--bundle", "3"])
    assert r.exit_code == 0, r.output
    assert not (out / "board-mps2-an386").exists() and not (out / "board-mps2-an505").exists()
    # no board: one line
    r = CliRunner().invoke(main, ["convert", "model.h5", "--emulator", "qemu", "--data", str(tmp_path / "d.npz"),
                                  "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "--emulator qemu boots a whole board image: pass --board" in r.output


def test_cortex_m55_runs_on_qemu_by_default(model, tmp_path, monkeypatch):
    """A core Unicorn lacks: without --board and --emulator, rnnskip-convert and the emulate
    stage boot the board its target names under QEMU and say so in one line first;
    --emulator unicorn, or QEMU missing, is refused before calibration with nothing written."""
    import json

    from click.testing import CliRunner

    from rnnskip.cli import main
    from rnnskip.pipeline import stages
    ir, x, L = model["ir"], model["x"], model["L"]
    monkeypatch.setattr(stages, "import_model", lambda path: ir)      # no Keras needed here
    data = tmp_path / "d.npz"
    save_npz(str(data), dataset(x, L))
    note = ("note: Unicorn has no cortex-m55 core: emulating board mps3-an547 under QEMU "
            "(--board mps3-an547 --emulator qemu)")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["convert", "model.h5", "--target", "cortex-m55", "--data", str(data),
                                  "--calib", str(data), "--out", str(out), "--bundle", "3"])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith(note + "\n") and r.stderr.count("note:") == 1, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["target"] == "cortex-m55" and rep["bitexact"]["device_checked"] == 3
    assert rep["bitexact"]["mismatches"] == 0
    e = rep["emulation"]
    assert e["emulator"] == "qemu" and e["board"]["board"] == "mps3-an547"
    assert e["cycles_from"].startswith("not modelled: target cortex-m55 cannot run under Unicorn")
    # the table shows the exact instruction count QEMU gives, not rows of '-' for cycles it cannot model
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in r.stdout.splitlines()
                if line.startswith("  ") and re.search(r"\S\s{2,}\S", line))
    assert rows["instructions / inf"] == (f"{e['instructions_per_inference']:,.0f}  (exact, 3 sequences emulated; "
                                          "no cycle model for this core)"), rows
    assert rows["memory system"] == "-  (not modelled: qemu counts instructions only)"
    assert e["memory_system"]["name"] == "not modelled: qemu counts instructions only"   # as the table says
    assert (out / "instructions.png").stat().st_size > 1000 and not (out / "cycles.png").exists()
    assert rep["mve"] is True and rows["target"] == "cortex-m55 (portable, dsp + MVE)", rows
    assert "cycles / inference" not in rows and not any(k.startswith("latency @") for k in rows)
    assert json.loads((out / "build.json").read_text())["board"] == "mps3-an547"
    # the emulate stage on that folder: QEMU again, on the board 'convert' recorded
    r = CliRunner().invoke(main, ["emulate", str(out), "--data", str(data), "--bundle", "2"])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("note: Unicorn has no cortex-m55 core: emulating board mps3-an547 under QEMU "
                               "(--emulator qemu)\n")
    assert "qemu mps3-an547: 2 sequences, 0 mismatches; PASS" in r.stdout
    # Unicorn asked for by name: one line before any work
    r = CliRunner().invoke(main, ["convert", "model.h5", "--target", "cortex-m55", "--emulator", "unicorn",
                                  "--data", str(data), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and r.stdout == "" and "calibrate" not in r.stderr
    assert r.stderr.startswith("error: target cortex-m55 cannot run under Unicorn: Unicorn 2.1.4 has no Armv8.1-M core")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o2").exists()
    # no QEMU: the default is refused as early
    monkeypatch.setattr(qemu, "QEMU", "qemu-system-arm-not-installed")
    r = CliRunner().invoke(main, ["convert", "model.h5", "--target", "cortex-m55", "--data", str(data),
                                  "--out", str(tmp_path / "o3")])
    assert r.exit_code == 2 and "calibrate" not in r.stderr and not (tmp_path / "o3").exists()
    assert r.stderr.strip().splitlines() == ["error: qemu-system-arm-not-installed not found on PATH; run 'make setup' "
                                             "(installs Debian's qemu-system-arm) or 'sudo apt-get install "
                                             "qemu-system-arm'"]


def test_helium_kernels_bitexact_on_a_wide_model(tmp_path):
    """cortex-m55 Helium mat-vecs (row-major and paired) on a 608 x 560 and a 608 x 152 matrix (the LSTM's
    input and recurrent halves): the column chunking (> 512 columns) and the predicated tails, bit-exact
    with the golden model."""
    ir, qm, x, L = quantized("feat-lstm", seed=7, n=3, T=4, units=(150, 6), features=560)
    assert max(m.cols for m in qm.all_mats()) > 512
    generate(qm, tmp_path / "src", max_t=x.shape[1])
    b = boards.load("mps3-an547")
    fw = build_board_firmware(tmp_path / "src", tmp_path / "fw", b, make_bundle(qm, x, L, 3), "dsp", "wide")
    import subprocess
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "-m", "armv8.1-m.main", str(fw.elf)],
                         capture_output=True, text=True).stdout
    paired = dis[dis.index("<rnnskip_mat_vec_paired_s8>:"):]
    assert "vmlava.s16" in paired[:paired.index("\n\n")]          # the Helium paired kernel is linked in
    run = qemu.run_firmware(fw.elf, b, timeout=60, workdir=tmp_path, icount=False)
    assert run.passed and run.summary["match"] == "3", run.lines[-1]


@pytest.mark.parametrize("name", ["mps2-an386", "microbit"])
def test_delta_model_board_image_bitexact(name, tmp_path):
    """A delta model's board image is checked against the delta golden model (the bundle's
    expected outputs once came from the dense one, so every sequence 'differed')."""
    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.quant.golden import GoldenModel
    ir, qm, x, L = quantized("feat-dense-gru", n=4, T=14)
    qm = with_delta(qm, DeltaSpec([3], [2]))
    bundle = make_bundle(qm, x, L, 4)
    want, _ = GoldenModel(qm).run(x, L)
    dense, _ = GoldenModel(qm, methods=[]).run(x, L)
    assert np.array_equal(bundle.out, np.asarray(want)[:, :qm.output_dim])
    assert not np.array_equal(bundle.out, np.asarray(dense)[:, :qm.output_dim])   # the thresholds matter here
    generate(qm, tmp_path / "src", max_t=14)
    b = boards.load(name)
    variant = "dsp" if boards.board_target(b).dsp else "plain"
    fw = build_board_firmware(tmp_path / "src", tmp_path / name, b, bundle, variant, "delta")
    run = qemu.run_firmware(fw.elf, b, timeout=60, workdir=tmp_path)
    assert run.summary["result"] == "PASS" and run.summary["mismatch"] == "0", run.lines[-1]
    assert [s["out"] for s in run.sequences] == bundle.out.tolist()


@pytest.mark.parametrize("how", ["per-step", "bidi-per-step"])
@pytest.mark.parametrize("where", [("--board", "netduinoplus2", "--emulator", "qemu"), ("--target", "cortex-m55")])
def test_models_with_an_output_per_step_run_as_board_images(how, where, tmp_path, monkeypatch):
    """A model with an output per time step as a board image (it was refused, and so on cortex-m55, which only
    QEMU runs): the firmware checks every step's output against the golden model's and prints them, and the
    host compares the printed rows too."""
    import json

    from click.testing import CliRunner
    from random_models import bidi_ir, random_data, random_ir

    from rnnskip.cli import main
    from rnnskip.pipeline import stages
    if how == "bidi-per-step":
        ir = bidi_ir("feat-mask-gru", 0, "concat", seed=3, per_step=True)
    else:
        ir = random_ir("feat-mask-gru", seed=3)
        ir.rnn_layers[-1].return_sequences, ir.per_step = True, True
    x, _ = random_data(ir, n=4, T=8, seed=4)
    L = np.array([8, 3, 8, 5], np.int32)   # a short row after a long one (an audit found the cross-check reading
    x[1, 1:3] = ir.input.mask_value        # the last row's length for all); steps that do not run keep the output
    for i, n in enumerate(L):
        x[i, n:] = ir.input.mask_value                    # padding, as the model's Masking reads it
    monkeypatch.setattr(stages, "import_model", lambda path: ir)
    save_npz(str(tmp_path / "d.npz"), dataset(x, L, np.zeros(x.shape[:2], np.int64)))   # a class per step
    out = tmp_path / "out"
    n = 3 if where[0] == "--board" else 4   # --emulate-max overrides --bundle, and says so
    r = CliRunner().invoke(main, ["convert", "model.h5", *where, "--data", str(tmp_path / "d.npz"), "--out", str(out),
                                  "--bundle", "4", *(["--emulate-max", "3"] if n == 3 else [])])
    assert r.exit_code == 0, r.output
    assert ("note: --emulate-max 3 overrides --bundle 4: the board image holds up to 3 sequences" in r.output) == \
        (n == 3)
    rep = json.loads((out / "report.json").read_text())
    assert rep["bitexact"]["device_checked"] == n and rep["bitexact"]["device_mismatches"] == 0
    assert rep["emulation"]["board"]["device_summary"]["result"] == "PASS"
