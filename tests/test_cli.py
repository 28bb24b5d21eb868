"""The command line end to end: rnnskip-convert on a Keras file, the stage
commands, and one clear line (no traceback, no half-written folder) per bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import dataset, needs_arm

REPORT_KEYS = {
    "rnnskip": None, "target": None, "kernels": None, "data": {"labels"},
    "model": {"type", "layers", "params", "macs_per_step", "timesteps_mean", "source", "weights_sha256"},
    "accuracy": {"float", "int8_golden", "int8_device", "n"},
    "bitexact": {"checked", "mismatches"},
    "emulation": {"emulator", "sequences", "instructions_per_inference", "cycles_per_inference",
                  "macs_per_cycle", "flash_read_bytes_per_inference", "sram_read_bytes_per_inference",
                  "sram_write_bytes_per_inference", "traffic_sampled_sequences"},
    "footprint": {"flash_bytes", "ram_bytes", "stack_bytes"},
}


def cli(*args, cwd=None):
    """Run a console script in a fresh interpreter, like a user would."""
    exe = Path(sys.executable).parent
    prog, rest = args[0], args[1:]
    return subprocess.run([str(exe / prog)] + [str(a) for a in rest], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def model_and_data(k2_zoo, tmp_path_factory):
    from rnnskip.datasets import Dataset, save_npz
    e = k2_zoo.models["emb_lstm_softmax"]
    d = tmp_path_factory.mktemp("cli")
    x = np.asarray(e.X, np.int32)
    lengths = np.maximum((x != 0).cumsum(1).argmax(1) + 1, 1).astype(np.int32)
    y = np.argmax(e.y, 1)
    save_npz(str(d / "test.npz"), Dataset(x=x, y=y, lengths=lengths))
    return Path(e.files["h5"]), d / "test.npz", d


def one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@needs_arm
def test_convert_end_to_end(model_and_data):
    model, data, d = model_and_data
    out = d / "m4"
    p = cli("rnnskip-convert", model, "--target", "cortex-m4", "--data", data, "--out", out, "--timeout", "30")
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    # the last line says what was written, report.json first
    assert p.stdout.splitlines()[-1] == f"wrote {out}: report.json, firmware/, host/, src/, build.json, cycles.png, " \
                                        f"model.ir.json, model.ir.npz, model.q.json, model.q.npz, stages.json"
    assert rep["quantization"]["calibration"].startswith(f"{data} (the evaluation data")   # no --calib given
    assert [l for l in p.stderr.splitlines() if l.startswith("note:")] == [
        "note: --timeout applies to a board image under qemu or renode (--emulator); Unicorn ran the model "
        "without it",
        f"note: calibrated on --data {data}, the evaluation data; pass --calib train.npz so the int8 accuracy "
        f"is not measured on the calibration data"]
    for k, sub in REPORT_KEYS.items():
        assert k in rep
        if sub:
            assert sub <= set(rep[k]), sub - set(rep[k])
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["checked"] == rep["accuracy"]["n"]
    # provenance a CI diff can key on: the version, and the trained model whatever its file is called
    from rnnskip import __version__
    from rnnskip.converter.ir import model_fingerprint
    from rnnskip.pipeline import import_model
    assert rep["rnnskip"] == __version__ and rep["data"]["labels"] is True and rep["model"]["source"] == str(model)
    assert rep["model"]["weights_sha256"] == model_fingerprint(import_model(model))
    # docs/ci.md's gate runs on it as written: a report against itself passes, one with more cycles fails
    doc = (Path(__file__).parent.parent / "docs" / "ci.md").read_text()
    gate = d / "gate.py"
    gate.write_text(doc.split("```python\n", 1)[1].split("```", 1)[0])
    assert subprocess.run([sys.executable, str(gate), out / "report.json", out / "report.json"]).returncode == 0
    cyc = rep["emulation"]["cycles_per_inference"]
    worse = dict(rep, emulation=dict(rep["emulation"], cycles_per_inference=2 * cyc))
    (d / "worse.json").write_text(json.dumps(worse))
    g = subprocess.run([sys.executable, str(gate), d / "worse.json", out / "report.json"], capture_output=True,
                       text=True)
    assert g.returncode == 1 and "AssertionError: cycles regressed" in g.stderr
    # a regression model's report: accuracy null, its error instead
    reg = dict(rep, accuracy=None, error={"int8_vs_float_rmse": 0.1})
    (d / "reg.json").write_text(json.dumps(reg))
    (d / "reg_worse.json").write_text(json.dumps(dict(reg, error={"int8_vs_float_rmse": 0.2})))
    assert subprocess.run([sys.executable, str(gate), d / "reg.json", d / "reg.json"]).returncode == 0
    g = subprocess.run([sys.executable, str(gate), d / "reg_worse.json", d / "reg.json"], capture_output=True,
                       text=True)
    assert g.returncode == 1 and "AssertionError: int8 error grew" in g.stderr
    assert rep["emulation"]["cycles_per_inference"] > 0
    assert rep["emulation"]["flash_read_bytes_per_inference"] > 0
    assert rep["footprint"]["flash_bytes"] > rep["model"]["params"]  # int8 weights + code
    # RAM split: the harness's I/O buffers (whole sequences for the emulator) against the model's, by symbol
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    from rnnskip.build import HARNESS_BUFFERS
    with open(out / "firmware" / "firmware.elf", "rb") as fh:
        tab = next(t for t in ELFFile(fh).iter_sections() if isinstance(t, SymbolTableSection))
        syms = {y.name: y["st_size"] for y in tab.iter_symbols()}
    f = rep["footprint"]
    assert f["harness_ram_bytes"] == sum(syms[n] for n in HARNESS_BUFFERS if n in syms) > 0
    assert f["model_ram_bytes"] == f["ram_bytes"] - f["harness_ram_bytes"] > 0
    assert (f"(RAM: {f['model_ram_bytes']:,} B the model, {f['harness_ram_bytes']:,} B the emulation harness's "
            f"sequence buffers)" in p.stdout)
    assert f["image"].startswith("the emulation image") and "bytes of the emulation image" in p.stdout
    assert (out / "src" / "rnnskip_model.c").is_file() and (out / "firmware" / "firmware.elf").is_file()
    assert "cycles / inference" in p.stdout
    assert not list(d.glob(".m4.partial-*"))


@needs_arm
def test_unlabelled_data_converts_without_accuracy(model_and_data, tmp_path):
    """--data without y: bit-exactness, cycles and footprint as usual, accuracy null and said so;
    the methods (accuracy with and without them) refuse it in one line; a y that is there but
    does not fit the model is still refused."""
    model, data, d = model_and_data
    with np.load(data) as z:
        x, lengths, y = z["x"], z["lengths"], z["y"]
    np.savez(tmp_path / "nolabels.npz", x=x, lengths=lengths)
    out = tmp_path / "m4"
    p = cli("rnnskip-convert", model, "--data", tmp_path / "nolabels.npz", "--calib", data, "--out", out)
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"] is None and rep["data"]["labels"] is False
    assert rep["bitexact"]["device_checked"] == rep["bitexact"]["host_checked"] == len(x)
    assert rep["bitexact"]["mismatches"] == 0 and rep["emulation"]["cycles_per_inference"] > 0
    assert "accuracy             -  (no labels (y) in the data: bit-exactness, cycles and memory only)" in p.stdout
    # the emulate stage takes it too
    w = tmp_path / "work"
    for args in (("import", model, "--out", w), ("quantize", w, "--calib", data), ("generate", w),
                 ("build", w, "--target", "cortex-m4"), ("emulate", w, "--data", tmp_path / "nolabels.npz"),
                 ("report", w)):
        p = cli("rnnskip", *args)
        assert p.returncode == 0, (args, p.stderr)
    assert json.loads((w / "report.json").read_text())["accuracy"] is None
    # a method compares accuracy: refused before anything is written
    from rnnskip.delta.spec import DeltaSpec  # a valid thresholds file: it is read before the model
    from rnnskip.pipeline import import_model
    ir = import_model(model)
    DeltaSpec.uniform(len(ir.rnn_layers), 2, 2).save(tmp_path / "delta.json", ir)
    one_line_error(cli("rnnskip-convert", model, "--data", tmp_path / "nolabels.npz", "--delta",
                       tmp_path / "delta.json", "--out", tmp_path / "d"),
                   f"--data {tmp_path / 'nolabels.npz'} has no labels (y): --delta is reported as accuracy with "
                   "and without it; add y to --data, or convert without --delta")
    assert not (tmp_path / "d").exists()
    # labels present but wrong: refused as before
    np.savez(tmp_path / "badlabels.npz", x=x, lengths=lengths, y=y[:-1])
    one_line_error(cli("rnnskip-convert", model, "--data", tmp_path / "badlabels.npz", "--out", tmp_path / "b"),
                   f"y in badlabels.npz has {len(x) - 1} labels but x has {len(x)} sequences")


@needs_arm
def test_convert_with_calibration_data_only(model_and_data, tmp_path):
    """No --data: checked and measured on --calib, flagged in the report and a note; no data at all:
    one line saying what to give."""
    model, data, d = model_and_data
    out = tmp_path / "m4"
    p = cli("rnnskip-convert", model, "--calib", data, "--out", out, "--emulate-max", "3")
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["quantization"]["calibration"] == f"{data} (also the evaluation data; pass --data to separate)"
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 3
    assert rep["accuracy"]["n"] == rep["bitexact"]["host_checked"] > 3
    # the device's accuracy is on a subset: the table says which, next to the golden model's on all of them
    assert (f"accuracy int8 device  {rep['accuracy']['int8_device']:.3f}  (the first 3 of the "
            f"{rep['accuracy']['n']} sequences; bit-exact with the golden model on them)") in p.stdout
    assert [l for l in p.stderr.splitlines() if l.startswith("note:")] == [
        f"note: no --data: checked and measured on the calibration data --calib {data}; pass --data test.npz so "
        "the int8 accuracy is not measured on the data it was calibrated on"]
    one_line_error(cli("rnnskip-convert", model, "--out", tmp_path / "none"),
                   "rnnskip-convert needs data: --calib (sequences to calibrate the int8 grid on) and --data "
                   "(sequences to check and measure the firmware on; default: --calib)")
    assert not (tmp_path / "none").exists()


def test_cmsis_nn_without_a_checkout_is_refused_before_any_work(model_and_data, tmp_path):
    model, data, _ = model_and_data
    env = {k: v for k, v in os.environ.items() if k != "CMSIS_NN_PATH"}
    p = subprocess.run([str(Path(sys.executable).parent / "rnnskip-convert"), str(model), "--kernels", "cmsis-nn",
                        "--data", str(data), "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    line = one_line_error(p, "--kernels cmsis-nn needs CMSIS_NN_PATH set to a CMSIS-NN checkout")
    assert "calibrate" not in p.stdout + p.stderr and not (tmp_path / "o").exists(), line


@needs_arm
def test_stage_commands(model_and_data):
    model, data, d = model_and_data
    w = d / "work"
    for args in (("import", model, "--out", w), ("quantize", w, "--calib", data), ("generate", w),
                 ("build", w, "--target", "cortex-m4"), ("emulate", w, "--data", data), ("report", w)):
        p = cli("rnnskip", *args)
        assert p.returncode == 0, (args, p.stderr)
    rep = json.loads((w / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0
    # 'emulate' checks the float reference against Keras on --data, as rnnskip-convert does
    rc = rep["reference_check"]
    assert rc["runtime"] == "tf_keras" and rc["rows"] > 0 and rc["max_abs_diff"] <= 1e-5
    # the staged report names the calibration data 'quantize' used, like rnnskip-convert's
    assert rep["quantization"]["calibration"] == str(data) and rep["quantization"]["calibration_sequences"] > 0
    p = cli("rnnskip", "targets")
    assert "cortex-m4" in p.stdout
    # the work folder lists what the stages wrote: a conversion may replace it, not when a file was added to it
    # (a review: the stage-built folder had no list and a conversion into it was refused as a copy)
    import shutil
    shutil.copytree(w, d / "work2")
    assert cli("rnnskip-convert", model, "--data", data, "--out", d / "work2", "--emulate-max", "1").returncode == 0
    (w / "notes.txt").write_text("mine")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", w, "--emulate-max", "1"),
                   "holds files rnnskip did not write (notes.txt)")
    (w / "notes.txt").unlink()
    # a file the user added to WORK/src stops 'generate' from replacing the folder
    (w / "src" / "my_main.c").write_text("int main(void) { return 0; }\n")
    one_line_error(cli("rnnskip", "generate", w), "WORK/src", "holds files rnnskip did not write (my_main.c)")
    assert (w / "src" / "my_main.c").read_text().startswith("int main")
    (w / "src" / "my_main.c").unlink()
    # a stage run again with another result makes the later stages' outputs stale: refused, not silently mixed;
    # calibration data need no labels
    with np.load(data) as z:
        np.savez(d / "unlabelled.npz", x=z["x"], lengths=z["lengths"])
    p = cli("rnnskip", "quantize", w, "--calib", d / "unlabelled.npz", "--calib-max", "2")
    assert p.returncode == 0, p.stderr
    # the hints name the earliest stale stage with the options the folder records, and following them mends it
    one_line_error(cli("rnnskip", "emulate", w, "--data", data),
                   f"{w / 'src/'} was made from an earlier 'quantize' run; run 'rnnskip generate {w}' (and the "
                   f"stages after it) again")
    one_line_error(cli("rnnskip", "report", w), f"{w / 'src/'} was made from an earlier 'quantize' run")
    assert cli("rnnskip", "generate", w).returncode == 0
    one_line_error(cli("rnnskip", "emulate", w, "--data", data),
                   f"{w / 'firmware/'} was made from an earlier 'quantize' run; run 'rnnskip build {w} --target "
                   f"cortex-m4' (and the stages after it) again")
    for args in (("build", w, "--target", "cortex-m4"), ("emulate", w, "--data", data), ("report", w)):
        p = cli("rnnskip", *args)
        assert p.returncode == 0, (args, p.stderr)
    # the same output again changes nothing (content hashes, not run ids): the later stages stay valid
    assert cli("rnnskip", "import", model, "--out", w).returncode == 0
    assert cli("rnnskip", "report", w).returncode == 0
    # stage outputs are plain data (JSON + .npz), never pickles; a foreign file where a stage's output belongs
    assert cli("rnnskip", "quantize", w, "--calib", data).returncode == 0
    assert not list(w.rglob("*.pkl")) and (w / "model.q.npz").is_file()
    q = json.loads((w / "model.q.json").read_text())
    assert q["format"] == "rnnskip-stage-2" and q["data"]["__type__"] == "rnnskip.quant.model.QModel"
    # a stage output edited by hand no longer matches the hash 'quantize' recorded
    q["data"]["output_scale"] *= 2
    (w / "model.q.json").write_text(json.dumps(q))
    one_line_error(cli("rnnskip", "generate", w), "model.q.json changed since 'rnnskip quantize' wrote it")
    (w / "model.q.json").write_text(json.dumps({"not": "a model"}))
    one_line_error(cli("rnnskip", "generate", w), "model.q.json is not a file written by rnnskip's 'quantize' stage")


def test_missing_model_file(model_and_data, tmp_path):
    _, data, _ = model_and_data
    p = cli("rnnskip-convert", tmp_path / "nope.h5", "--data", data, "--out", tmp_path / "o")
    one_line_error(p, "nope.h5")
    assert not (tmp_path / "o").exists()


def test_model_path_is_a_folder(model_and_data, tmp_path):
    _, data, _ = model_and_data
    (tmp_path / "saved").mkdir()
    for cmd in (("rnnskip-convert",), ("rnnskip", "delta-tune")):
        extra = ["--data", data] if len(cmd) == 1 else ["--val", data]
        one_line_error(cli(*cmd, tmp_path / "saved", *extra, "--out", tmp_path / "o.json"),
                       "is a directory, not a model file", "model.save('model.keras')")


def test_not_a_keras_file(model_and_data, tmp_path):
    _, data, _ = model_and_data
    bad = tmp_path / "model.h5"
    bad.write_text("this is not hdf5\n")
    one_line_error(cli("rnnskip-convert", bad, "--data", data, "--out", tmp_path / "o"), "model.h5")
    assert not (tmp_path / "o").exists()


def test_data_file_given_as_the_model(model_and_data, tmp_path):
    _, data, _ = model_and_data
    one_line_error(cli("rnnskip-convert", data, "--data", data, "--out", tmp_path / "o"),
                   "is a NumPy .npz data file, not a model: give the model file (.h5, .keras or .onnx) first and the "
                   "data with --data")
    assert not (tmp_path / "o").exists()


def test_wrong_data_shape(model_and_data, tmp_path):
    from rnnskip.datasets import save_npz
    model, _, _ = model_and_data
    save_npz(str(tmp_path / "f.npz"), dataset(np.zeros((3, 5, 2), np.float32), np.full(3, 5, np.int32)))
    one_line_error(cli("rnnskip-convert", model, "--data", tmp_path / "f.npz", "--out", tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_unknown_target_and_kernels(model_and_data, tmp_path):
    model, data, _ = model_and_data
    one_line_error(cli("rnnskip-convert", model, "--target", "cortex-z9", "--data", data, "--out", tmp_path / "o"),
                   "cortex-z9", "cortex-m4")
    one_line_error(cli("rnnskip-convert", model, "--kernels", "fancy", "--data", data, "--out", tmp_path / "o"),
                   "fancy", "portable")


def test_stage_out_of_order(model_and_data, tmp_path):
    """A stage run before the one it needs names the command to run first; a folder no 'import' made
    points at 'import'."""
    model, _, _ = model_and_data
    for args in (("quantize", tmp_path, "--calib", tmp_path / "x.npz"), ("build", tmp_path),
                 ("emulate", tmp_path, "--data", tmp_path / "x.npz"), ("report", tmp_path)):
        one_line_error(cli("rnnskip", *args), f"{tmp_path} is not an rnnskip work folder (no stages.json in it); "
                                              f"create one with 'rnnskip import MODEL --out FOLDER'")
    one_line_error(cli("rnnskip", "build", tmp_path / "nowhere"),
                   f"work folder {tmp_path / 'nowhere'} not found; create it with 'rnnskip import MODEL --out")
    w = tmp_path / "w"
    assert cli("rnnskip", "import", model, "--out", w).returncode == 0
    one_line_error(cli("rnnskip", "generate", w),
                   f"{w / 'model.q.json'} not found; run 'rnnskip quantize {w} --calib CALIB.npz' first")
    one_line_error(cli("rnnskip", "build", w), f"{w / 'src'} not found; run 'rnnskip generate {w}' first")


@needs_arm
def test_damaged_work_folder(model_and_data, tmp_path):
    """A work folder whose records or outputs were removed, damaged or half-replaced gets one line that
    says which and what to run, never a crash or a stale mix; staged outputs in a conversion's folder
    stay rnnskip's (the next conversion replaces them)."""
    import shutil
    model, data, _ = model_and_data
    w = tmp_path / "w"
    assert cli("rnnskip-convert", model, "--data", data, "--out", w, "--emulate-max", "2").returncode == 0
    p = cli("rnnskip", "emulate", w, "--data", data, "--emulate-max", "2")
    assert p.returncode == 0, p.stderr
    assert cli("rnnskip", "report", w).returncode == 0
    # the staged outputs are listed as rnnskip's: converting into the folder again replaces it
    p = cli("rnnskip-convert", model, "--data", data, "--out", w, "--emulate-max", "2")
    assert p.returncode == 0, p.stderr
    # another command's output folder is named as such, not as the user's
    one_line_error(cli("rnnskip", "train-predictor", model, "--train", data, "--val", data, "--max-loss", "1",
                       "--out", w),
                   f"--out {w} already exists and holds another rnnskip command's output (no predictor.json in it)")

    def damaged(name, change, *args):
        c = tmp_path / name
        shutil.copytree(w, c)
        change(c)
        return c, cli("rnnskip", *[a(c) if callable(a) else a for a in args])

    emulate = ("emulate", lambda c: c, "--data", data, "--emulate-max", "2")
    c, p = damaged("nostages", lambda c: (c / "stages.json").unlink(), "quantize", lambda c: c, "--calib", data)
    one_line_error(p, f"{c / 'stages.json'} is missing, so nothing says what the stage outputs in {c} were made from; "
                      f"start a new work folder with 'rnnskip import MODEL --out NEW_FOLDER'")
    for name, text in (("badstages", "{bad"), ("liststages", "[1]"), ("badrecord", '{"import": 3}')):
        c, p = damaged(name, lambda c, t=text: (c / "stages.json").write_text(t), *emulate)
        one_line_error(p, f"{c / 'stages.json'} is damaged (not the stage records rnnskip writes)")
    c, p = damaged("norecord", lambda c: (c / "stages.json").write_text(
        json.dumps({k: v for k, v in json.loads((c / "stages.json").read_text()).items() if k != "quantize"})),
        "generate", lambda c: c)
    one_line_error(p, f"{c / 'model.q.json'} is not recorded in {c / 'stages.json'}, so nothing says what it was "
                      f"made from; run 'rnnskip quantize {c} --calib CALIB.npz' again")
    again = "(and the stages after it) again"
    c, p = damaged("nofirmware", lambda c: shutil.rmtree(c / "firmware"), *emulate)
    one_line_error(p, f"{c / 'firmware'} is missing; run 'rnnskip build {c} --target cortex-m4' {again}")
    c, p = damaged("nohost", lambda c: (c / "host" / "librnnskip_model.so").unlink(), *emulate)
    one_line_error(p, f"{c / 'firmware'} or {c / 'host'} changed since 'rnnskip build' wrote them; run 'rnnskip "
                      f"build {c} --target cortex-m4' {again}")
    # a build that fails replaces nothing: the folder still emulates as before
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "gcc").write_text("#!/bin/sh\necho 'fake gcc: failing' >&2\nexit 1\n")
    (fake / "gcc").chmod(0o755)
    before = (w / "firmware" / "firmware.elf").read_bytes()
    p = subprocess.run([str(Path(sys.executable).parent / "rnnskip"), "build", str(w), "--target", "cortex-m0"],
                       capture_output=True, text=True, env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}"))
    assert p.returncode == 2 and "host build" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert (w / "firmware" / "firmware.elf").read_bytes() == before
    assert json.loads((w / "build.json").read_text())["target"] == "cortex-m4"
    assert not [q.name for q in tmp_path.iterdir() if ".partial-" in q.name or ".old-" in q.name] and \
        not [q.name for q in w.iterdir() if ".partial-" in q.name or ".old-" in q.name]
    assert cli("rnnskip", *emulate[:1], w, *emulate[2:]).returncode == 0
    # build compiles the kernels 'generate' wrote: another --kernels is refused, not recorded
    one_line_error(cli("rnnskip", "build", w, "--kernels", "naive"),
                   f"{w / 'src'} holds the portable kernels ('rnnskip generate' chose them); run 'rnnskip generate "
                   f"{w} --kernels naive' first, or drop --kernels")
    # Unicorn runs the built firmware: a --board for the board emulators is refused, an unknown one named
    one_line_error(cli("rnnskip", "emulate", w, "--data", data, "--board", "nosuch"), "nosuch")
    one_line_error(cli("rnnskip", "emulate", w, "--data", data, "--board", "stm32f405"),
                   "--board stm32f405 picks the board image QEMU or Renode boots; Unicorn runs WORK/firmware as "
                   "'build' made it: add --emulator qemu (or renode), or drop --board")


# ---- output folders are replaced only when rnnskip wrote them ------------------------------

def test_out_folder_guard(tmp_path, monkeypatch):
    from rnnskip.errors import RnnskipError
    from rnnskip.outdir import atomic_dir, check_replaceable
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "a.txt").write_text("keep me")
    monkeypatch.chdir(mine / "notes")
    with pytest.raises(RnnskipError, match="is the current folder or one of its parents"):
        check_replaceable(".", "report.json")
    with pytest.raises(RnnskipError, match="is the current folder or one of its parents"):
        check_replaceable("..", "report.json")
    with pytest.raises(RnnskipError, match="^--out is empty: give the folder to write into$"):
        check_replaceable("", "report.json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RnnskipError, match="not written by rnnskip \\(no report.json in it\\)"):
        check_replaceable(tmp_path / "mine", "report.json")
    with pytest.raises(RnnskipError, match="holds the input .*a.txt"):
        check_replaceable(tmp_path / "mine", "report.json", inputs=[str(mine / "notes" / "a.txt")])
    (tmp_path / "f").write_text("x")
    with pytest.raises(RnnskipError, match="is a file; give a folder name"):
        check_replaceable(tmp_path / "f", "report.json")
    assert (mine / "notes" / "a.txt").read_text() == "keep me" and (tmp_path / "f").read_text() == "x"
    # an empty folder, or one holding the writer's marker and the list of what it wrote, is replaced as a whole
    (tmp_path / "empty").mkdir()
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.json").write_text("{}")
    (old / "stale.c").write_text("")
    (old / ".rnnskip-files").write_text("report.json\nstale.c\n")
    for d in (tmp_path / "empty", old, tmp_path / "new" / "sub"):
        with atomic_dir(d, "report.json") as tmp:
            (tmp / "report.json").write_text("new")
        assert sorted(p.name for p in d.iterdir()) == [".rnnskip-files", "report.json"]
        umask = os.umask(0)
        os.umask(umask)
        assert d.stat().st_mode & 0o777 == 0o777 & ~umask
    assert not list(tmp_path.glob(".*.partial-*"))
    # what rnnskip wrote is listed; a file added afterwards (also in a subfolder) stops the replacement
    (old / "sub").mkdir()
    (old / "sub" / "mine.c").write_text("int x;")
    (old / "notes.txt").write_text("keep")
    with pytest.raises(RnnskipError, match=r"holds files rnnskip did not write \(notes.txt, sub/mine.c\)"):
        with atomic_dir(old, "report.json") as tmp:
            (tmp / "report.json").write_text("newer")
    assert (old / "report.json").read_text() == "new" and (old / "sub" / "mine.c").is_file()
    assert not list(tmp_path.glob(".*.partial-*"))


def test_failed_replacement_keeps_the_old_output(tmp_path, monkeypatch):
    """A folder that cannot be renamed (a mount point: EBUSY; an immutable folder: EPERM) keeps its
    old output and no partial folder is left; a mount point is refused before the work."""
    import errno
    from pathlib import Path

    from rnnskip.errors import RnnskipError
    from rnnskip.outdir import atomic_dir
    old = tmp_path / "res"
    old.mkdir()
    (old / "report.json").write_text("old")
    (old / ".rnnskip-files").write_text("report.json\n")
    real_rename = Path.rename

    def busy(self, target):
        if self == old:
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", busy)
    with pytest.raises(RnnskipError, match=r"^--out .*res could not be replaced \(device or resource busy\); the "
                                           r"previous output is unchanged: choose another folder$"):
        with atomic_dir(old, "report.json") as tmp:
            (tmp / "report.json").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"] and (old / "report.json").read_text() == "old"
    # the second rename (the new folder into place) fails: the old one comes back from aside; a symlinked
    # --out comes back as the link it was
    link = tmp_path / "link"
    link.symlink_to(old)

    def second_fails(self, target):
        if self.name.startswith((".res.partial-", ".link.partial-")):
            raise OSError(errno.EPERM, "Operation not permitted")
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", second_fails)
    for out in (old, link):
        with pytest.raises(RnnskipError, match=r"could not be replaced \(operation not permitted\); the previous "):
            with atomic_dir(out, "report.json") as tmp:
                (tmp / "report.json").write_text("new")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "res"]
        assert link.is_symlink() and (old / "report.json").read_text() == "old"
    # a crash between the renames left an aside folder: the next replacement removes it
    monkeypatch.setattr(Path, "rename", real_rename)
    (tmp_path / ".res.old-crash").mkdir()
    with atomic_dir(old, "report.json") as tmp:
        (tmp / "report.json").write_text("newest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "res"] and (old / "report.json").read_text() == \
        "newest"
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == old)
    with pytest.raises(RnnskipError, match=r"is a mount point, .*write into a folder inside it \(e\.g\. .*res/out\)"):
        with atomic_dir(old, "report.json") as tmp:
            raise AssertionError("not reached: refused before the work")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "res"]


def test_convert_refuses_to_replace_foreign_folders(model_and_data, tmp_path):
    model, data, _ = model_and_data
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("keep me")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", ".", cwd=work),
                   "--out . is the current folder")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", work), "not written by rnnskip")
    assert [p.name for p in work.iterdir()] == ["a.txt"]
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "m.h5").write_bytes(Path(model).read_bytes())
    one_line_error(cli("rnnskip-convert", inside / "m.h5", "--data", data, "--out", inside), "holds the input")
    assert (inside / "m.h5").is_file()


def test_usage_errors_are_one_line(model_and_data, tmp_path):
    model, data, _ = model_and_data
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", data, "--out", tmp_path / "d.json",
                       "--max-loss", "abc"), "error: Invalid value for '--max-loss'", "--help")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "o", "--emulate-max", "0"),
                   "'--emulate-max'", ">=1")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "o", "--workers", "0"),
                   "'--workers'")
    one_line_error(cli("rnnskip-convert", model, "--data", data), "Missing option '--out'")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "o", "--bundle", "0"),
                   "'--bundle'")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "o", "--timeout", "-1"),
                   "'--timeout'")
    for opt in ("--calib-max", "--traffic-sample"):
        one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "o", opt, "-1"), f"'{opt}'")
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", data, "--out", tmp_path / "d.json", "--calib-max",
                       "0"), "'--calib-max'")
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", data, "--out", tmp_path / "d.json",
                       "--max-disagreement", "200"), "'--max-disagreement'")
    assert not (tmp_path / "o").exists()
    p = cli("rnnskip-convert", "--help")
    assert p.returncode == 0 and "Usage:" in p.stdout


@needs_arm
def test_sigterm_removes_the_partial_folder(model_and_data, tmp_path):
    import signal
    import time
    model, data, _ = model_and_data
    exe = Path(sys.executable).parent / "rnnskip-convert"
    p = subprocess.Popen([str(exe), str(model), "--data", str(data), "--out", str(tmp_path / "o"), "--workers", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list(tmp_path.glob(".o.partial-*")) and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    assert p.poll() is None, "finished before the partial folder was seen"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip().splitlines()[-1] == "error: terminated", err
    assert not list(tmp_path.glob(".o.partial-*")) and not (tmp_path / "o").exists()


@needs_arm
def test_ctrl_c_while_the_emulator_workers_run(model_and_data, tmp_path):
    """Ctrl-C reaches the whole process group, the emulator's worker processes too: they ignore it, the parent stops
    them at once and says one line (a spawned worker printed a KeyboardInterrupt traceback, and the run took 7-20 s to
    end while the workers finished their chunks)."""
    import signal
    import time

    from rnnskip.datasets import Dataset, load_npz, save_npz
    model, data, _ = model_and_data
    d = load_npz(str(data))
    k = -(-256 // len(d))   # rows 150 times as long, 16 to a worker's chunk: each chunk runs for seconds
    x = np.tile(d.x, (k, 150))
    save_npz(str(tmp_path / "many.npz"), Dataset(x=x, y=np.tile(d.y, k), lengths=np.full(len(x), x.shape[1])))
    exe = Path(sys.executable).parent / "rnnskip-convert"
    with open(tmp_path / "err.txt", "w") as err:
        p = subprocess.Popen([str(exe), str(model), "--data", str(tmp_path / "many.npz"), "--out", str(tmp_path / "o"),
                              "--workers", "2", "--traffic-sample", "0", "--max-t", str(x.shape[1])],
                             stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True)
        t0 = time.time()
        while "emulate" not in (tmp_path / "err.txt").read_text() and p.poll() is None and time.time() - t0 < 300:
            time.sleep(0.1)
        assert p.poll() is None, "finished before the emulation was seen"
        time.sleep(1)
        os.killpg(p.pid, signal.SIGINT)
        t1 = time.time()
        p.wait(timeout=60)
        took = time.time() - t1
    text = (tmp_path / "err.txt").read_text()
    assert p.returncode == 130 and text.replace("\r", "\n").strip().splitlines()[-1] == "error: interrupted", text
    assert "Traceback" not in text and took < 5, (took, text)
    assert not list(tmp_path.glob(".o.partial-*")) and not (tmp_path / "o").exists()


def test_nan_weights_and_far_off_data_refused(tmp_path):
    from random_models import random_data, random_ir

    from rnnskip.converter.keras_import import check_supported
    from rnnskip.errors import RnnskipError
    from rnnskip.pipeline import quantize_model
    ir = random_ir("feat-lstm-lstm", seed=3)
    ir.rnn_layers[1].recurrent_kernel[0, 2] = np.nan
    with pytest.raises(RnnskipError, match="layer '.*' has 1 NaN or infinite weights"):
        check_supported(ir)
    ir = random_ir("feat-lstm-lstm", seed=3)
    x, L = random_data(ir, n=8, T=6, seed=1)
    with pytest.raises(RnnskipError, match="cannot quantise: requantisation scale .* too large.*preprocessed"):
        quantize_model(ir, dataset(x * 1e30, L), progress=False)


def test_json_outputs_are_strict(tmp_path):
    """report.json / predictor.json / delta.json: NaN and infinities become null, so strict
    parsers (JavaScript's JSON.parse, jq) read them."""
    from rnnskip.jsonio import dumps
    from rnnskip.report import write_report

    def strict(text):
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    rep = {"accuracy": {"float": float("nan"), "int8": np.float32(0.5), "n": np.int64(3)},
           "cycles": [1.0, float("inf"), -float("inf")], "ok": np.bool_(True), "arr": np.arange(3)}
    write_report(rep, tmp_path / "r.json")
    back = strict((tmp_path / "r.json").read_text())
    assert back == {"accuracy": {"float": None, "int8": 0.5, "n": 3}, "cycles": [1.0, None, None], "ok": True,
                    "arr": [0, 1, 2]}
    assert dumps({"x": float("nan")}).endswith("\n") and "NaN" not in dumps({"x": float("nan")})


def test_closed_stdout_pipe_is_quiet():
    """`rnnskip targets | head -1`: the reader leaves, rnnskip stops with 141 (SIGPIPE) and says nothing
    (it used to print 'error: internal error: BrokenPipeError')."""
    exe = Path(sys.executable).parent / "rnnskip"
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first line is written
    p = subprocess.run([str(exe), "targets"], stdout=w, stderr=subprocess.PIPE, text=True)
    os.close(w)
    assert p.returncode == 141 and p.stderr == ""


@needs_arm
def test_convert_with_board_uses_its_memory_system(model_and_data):
    """--board: the board's memory system is the cycle model's default (report.json says which);
    --flash-wait-states keeps the per-word model."""
    model, data, d = model_and_data
    out = d / "f407"
    p = cli("rnnskip-convert", model, "--board", "stm32f407", "--data", data, "--out", out)
    assert p.returncode == 0, p.stderr
    e = json.loads((out / "report.json").read_text())["emulation"]
    assert e["memory_system"]["name"] == "STM32F405/407 embedded flash, 5 WS, ART accelerator on"
    assert e["memory_system"]["parameters"]["flash"]["source"].startswith("RM0090")
    mp = e["memory_per_inference"]
    assert mp["stall_cycles"] > 0 and mp["flash_line_fills"] > 0 and set(mp["cache_hits"]) == {"icache", "dcache"}
    assert "memory system" in p.stdout and "latency @ 168 MHz" in p.stdout
    out5 = d / "f407ws5"
    p = cli("rnnskip-convert", model, "--board", "stm32f407", "--flash-wait-states", "5", "--data", data,
            "--out", out5)
    assert p.returncode == 0, p.stderr
    e5 = json.loads((out5 / "report.json").read_text())["emulation"]
    assert e5["memory_system"]["name"] == "core only: single-cycle SRAM, flash with 5 wait states per word"
    assert e5["memory_per_inference"] is None
    assert e5["cycles_per_inference"] > e["cycles_per_inference"]


@needs_arm
def test_convert_weights_sram_on_board(model_and_data):
    """--weights sram on the stm32f407 board: bit-exact (host build and emulated firmware), the
    start-up copy reported once in report.json and the table; refused with a board image."""
    model, data, d = model_and_data
    out = d / "f407-sram"
    p = cli("rnnskip-convert", model, "--board", "stm32f407", "--weights", "sram", "--data", data, "--out", out)
    assert p.returncode == 0, p.stderr
    rep = json.loads((out / "report.json").read_text())
    b, w = rep["bitexact"], rep["emulation"]["weights"]
    assert b["mismatches"] == 0 and b["host_checked"] > 0 and b["device_checked"] > 0
    assert w["placement"] == "sram" and w["bytes"] > 0 and w["copy_cycles"] > 0
    assert f"sram: {w['bytes']:,} B copied once at start-up" in p.stdout
    assert json.loads((out / "build.json").read_text())["weights"] == "sram"
    p = cli("rnnskip-convert", model, "--board", "stm32f407", "--weights", "sram", "--emulator", "qemu",
            "--data", data, "--out", d / "f407-sram-qemu")
    one_line_error(p, "--weights sram is measured with the Unicorn emulator only")
    assert not (d / "f407-sram-qemu").exists()


def test_unwritable_outputs_refused_before_the_work(model_and_data, tmp_path):
    """A location nothing can be written to (/proc, even for root) is refused in one line before any
    work, for every command that writes; so is one under a file."""
    model, data, _ = model_and_data
    line = one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", "/proc/rnnskip-out"),
                          "--out /proc/rnnskip-out cannot be written", "choose another location")
    assert "in /proc)" in line
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", data, "--out", "/proc/rnnskip/d.json"),
                   "--out /proc/rnnskip/d.json cannot be written")
    one_line_error(cli("rnnskip", "import", model, "--out", "/proc/rnnskip-work"),
                   "--out /proc/rnnskip-work/model.ir.json cannot be written")
    one_line_error(cli("rnnskip", "delta-train", model, "--train", data, "--val", data, "--out", "/proc/x/m.h5"),
                   "--out /proc/x/m.h5 cannot be written")
    (tmp_path / "f").write_text("a file")
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "f" / "o"),
                   "is a file, not a folder")


def test_import_refuses_a_users_folder(model_and_data, tmp_path):
    model, _, _ = model_and_data
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    one_line_error(cli("rnnskip", "import", model, "--out", mine), "is not an rnnskip work folder")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert cli("rnnskip", "import", model, "--out", tmp_path / "new").returncode == 0
    assert cli("rnnskip", "import", model, "--out", tmp_path / "new").returncode == 0     # its own folder again


def test_delta_tune_keeps_a_users_json(model_and_data, tmp_path):
    model, data, _ = model_and_data
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": 1}')
    one_line_error(cli("rnnskip", "delta-tune", model, "--val", data, "--out", mine),
                   "exists and is not an rnnskip delta file")
    assert mine.read_text() == '{"mine": 1}'


def test_os_errors_are_one_line(monkeypatch, capsys):
    """The backstop: a full disk half-way (with or without a file name: writing to /dev/full gives none) is one
    line and exit 2; any other OSError (a missing compiler, a missing template) is a bug: the internal-error line."""
    import errno

    from rnnskip.cli_support import guard

    def run(fn):
        with pytest.raises(SystemExit) as e:
            guard(fn)()
        return e.value.code, capsys.readouterr().err.strip()

    def full_named():
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/x/report.json")

    def full_unnamed():
        Path("/dev/full").write_text("x" * 10)

    def missing_tool():
        subprocess.run(["/nonexistent-compiler"])
    assert run(full_named) == (2, "error: /tmp/x/report.json: no space left on device; check the output location, "
                                  "its permissions and free space")
    assert run(full_unnamed) == (2, "error: no space left on device; check the output location, its permissions "
                                    "and free space")
    code, err = run(missing_tool)
    assert code == 1 and err.startswith("error: internal error: FileNotFoundError") and "RNNSKIP_DEBUG" in err


def test_variant_dsp_refused_on_a_core_without_it(model_and_data, tmp_path):
    model, data, _ = model_and_data
    one_line_error(cli("rnnskip-convert", model, "--data", data, "--out", tmp_path / "o", "--target", "cortex-m0",
                       "--variant", "dsp"), "--variant dsp needs a core with the DSP extension", "cortex-m0")
    assert not (tmp_path / "o").exists()


def test_an_error_after_a_progress_bar_starts_its_own_line_in_a_log(model_and_data, tmp_path):
    """With stderr not a terminal (a CI log), a progress bar's line ends before the next line: the error after the
    calibration bar starts a line (it followed the bar's carriage returns on one line, so grep '^error:' missed it)."""
    model, data, _ = model_and_data
    p = subprocess.run([str(Path(sys.executable).parent / "rnnskip-convert"), str(model), "--data", str(data),
                        "--target", "cortex-m0", "--max-t", "100000", "--out", str(tmp_path / "o")],
                       capture_output=True)   # bytes: text mode would turn the bar's carriage returns into newlines
    assert p.returncode == 2 and b"calibrate" in p.stderr, p.stderr
    assert [line for line in p.stderr.split(b"\n") if line.startswith(b"error: model does not fit cortex-m0")], \
        p.stderr
    assert not (tmp_path / "o").exists()


def test_a_conversion_with_an_edited_file_is_not_replaced(model_and_data, tmp_path):
    """A file edited in a conversion's --out since rnnskip wrote it (its MANIFEST keeps each file's sha256) stops
    the next conversion into that folder, and the edit is kept (a review saw it overwritten silently); unedited,
    the folder is replaced as before."""
    model, data, _ = model_and_data
    out = tmp_path / "o"
    args = ("rnnskip-convert", model, "--data", data, "--out", out, "--emulate-max", "1", "--traffic-sample", "0")
    assert cli(*args).returncode == 0
    assert cli(*args).returncode == 0   # unedited: replaced
    src = out / "src" / "rnnskip_model.c"
    src.write_text(src.read_text() + "/* my change */\n")
    one_line_error(cli(*args), "--out", "holds files edited since rnnskip wrote them (src/rnnskip_model.c)",
                   "keep your edits elsewhere")
    assert src.read_text().endswith("/* my change */\n")


def test_a_copied_output_without_its_file_list_is_not_replaced(model_and_data, tmp_path):
    """An output folder copied without its dot-files (cp -r out/* dst/) has rnnskip's marker but no list of what
    rnnskip wrote, so a file the user added there is not told apart: the next conversion into it is refused and the
    file kept (a user check saw it deleted silently), and so is a folder with only a marker file in it."""
    import shutil
    model, data, _ = model_and_data
    args = ("rnnskip-convert", model, "--data", data, "--emulate-max", "1", "--traffic-sample", "0")
    assert cli(*args, "--out", tmp_path / "o").returncode == 0
    dst = tmp_path / "copy"
    dst.mkdir()
    for p in (tmp_path / "o").iterdir():
        if not p.name.startswith("."):
            (shutil.copytree if p.is_dir() else shutil.copy)(p, dst / p.name)
    (dst / "src" / "my_main.c").write_text("int main(void) { return 0; }\n")
    one_line_error(cli(*args, "--out", dst), f"--out {dst} already exists without .rnnskip-files, the list of the "
                   "files rnnskip wrote (a copy without its dot-files, written by hand, or by an rnnskip older "
                   "than the list), so files of yours in it cannot be told apart and would be deleted with it: "
                   "choose a new folder or empty it yourself")
    assert (dst / "src" / "my_main.c").is_file()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "report.json").write_text("{}")
    (bare / "thesis.tex").write_text("x")
    one_line_error(cli(*args, "--out", bare), f"--out {bare} already exists without .rnnskip-files")
    assert (bare / "thesis.tex").is_file()


def test_a_killed_runs_partial_folder_is_removed_by_the_next_run(tmp_path):
    """A run killed before its partial folder became --out (SIGKILL, power loss) left it behind for good; the
    next run into the same --out removes the ones whose writer no longer runs, not a running writer's, nor one
    another machine wrote, nor one without a process id in its name (an older rnnskip's: nothing says whose)."""
    import subprocess

    from rnnskip.outdir import _host, atomic_dir
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "o"
    gone = tmp_path / f".o.partial-{dead.pid}.{_host()}-abc123"
    running = tmp_path / f".o.partial-{os.getpid()}.{_host()}-def456"
    old_style = tmp_path / ".o.partial-ghi789"
    elsewhere = tmp_path / f".o.partial-{dead.pid}.othermachine-jkl012"   # a shared file system: not ours to judge
    for d in (gone, running, old_style, elsewhere):
        d.mkdir()
        (d / "report.json").write_text("half")
    with atomic_dir(out, "report.json") as tmp:
        assert tmp.name.startswith(f".o.partial-{os.getpid()}.{_host()}-")
        (tmp / "report.json").write_text("new")
    assert not gone.exists() and running.is_dir() and old_style.is_dir() and elsewhere.is_dir()
    assert (out / "report.json").read_text() == "new"


def test_a_subfolder_is_judged_by_its_parents_file_list(tmp_path):
    """A stage command replaces one subfolder of a conversion's output (WORK/firmware, rebuilt by 'rnnskip build'):
    with no list of its own, the parent's entries under it say what rnnskip wrote there, so an added file still
    stops the replacement and an untouched folder is replaced."""
    from rnnskip.errors import RnnskipError
    from rnnskip.outdir import check_replaceable
    w = tmp_path / "w"
    (w / "firmware").mkdir(parents=True)
    (w / "firmware" / "firmware.elf").write_text("elf")
    (w / "report.json").write_text("{}")
    (w / ".rnnskip-files").write_text("firmware/firmware.elf\nreport.json\n")
    assert check_replaceable(w / "firmware", "firmware.elf") == (w / "firmware").absolute()
    (w / "firmware" / "mine.c").write_text("int x;")
    with pytest.raises(RnnskipError, match=r"holds files rnnskip did not write \(mine.c\)"):
        check_replaceable(w / "firmware", "firmware.elf")


def test_progress_bars_in_a_log():
    """In a log (stderr not a terminal) two bars at once write no cursor movement and no carriage returns, in plain
    ASCII lines (a CI owner found ESC[A in the log, two users a wall of redraws joined by \\r); TQDM_DISABLE=1 turns
    them off (the CI owner found the switch ignored)."""
    code = ("from rnnskip.progress import bar\n"
            "a, b = bar(total=3, desc='first'), bar(total=2, desc='second', position=1)\n"
            "a.update(3); b.update(2); a.close(); b.close()\n")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env)
    assert p.returncode == 0 and b"\x1b[" not in p.stderr and b"\r" not in p.stderr, repr(p.stderr)
    lines = p.stderr.decode("ascii").splitlines()
    assert [l.split("|")[0] for l in lines] == ["first:   0%", "second:   0%", "first: 100%", "second: 100%"], lines
    assert lines[2].split("|")[1] == "#" * len(lines[2].split("|")[1]), lines
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(env, TQDM_DISABLE="1"))
    assert p.returncode == 0 and p.stderr == ""
