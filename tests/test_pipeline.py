"""The stage commands on a work folder, without Keras: what 'generate' and 'build' record
(max_t) is what 'emulate' checks the data against, and a work folder that lacks the
record gets one line saying which stage to run again."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import dataset, needs_arm
from random_models import mixed_ir, random_data

from rnnskip.cli import main
from rnnskip.datasets import save_npz


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An imported and quantised mixed_ir() in tmp_path/w, data of 6 and 9 steps next to it."""
    from rnnskip.pipeline import stages
    ir = mixed_ir()
    monkeypatch.setattr(stages, "import_model", lambda path: ir)      # no Keras needed here
    for name, T in (("d6", 6), ("d9", 9)):
        x, L = random_data(ir, n=4, T=T, seed=T)
        save_npz(str(tmp_path / f"{name}.npz"), dataset(x, L))
    w = tmp_path / "w"
    assert _invoke("import", "model.h5", "--out", w).exit_code == 0
    r = _invoke("quantize", w, "--calib", tmp_path / "d9.npz")
    assert r.exit_code == 0, r.output
    return w


@needs_arm
def test_build_records_max_t_and_emulate_checks_it(work, tmp_path):
    r = _invoke("generate", work, "--max-t", "7")
    assert r.exit_code == 0, r.output
    assert json.loads((work / "stages.json").read_text())["generate"]["max_t"] == 7
    r = _invoke("build", work, "--target", "cortex-m4")
    assert r.exit_code == 0, r.output
    assert json.loads((work / "build.json").read_text())["max_t"] == 7
    # the record is what counts, not the generated C: its RNNSKIP_MAX_T line is not read back
    io_c = work / "src" / "rnnskip_io.c"
    assert "#define RNNSKIP_MAX_T 7\n" in io_c.read_text()
    io_c.write_text(io_c.read_text().replace("#define RNNSKIP_MAX_T 7\n", "#define RNNSKIP_MAX_T 64\n"))
    r = _invoke("emulate", work, "--data", tmp_path / "d9.npz")
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == (
        f"error: --data has sequences of 9 steps but the firmware holds 7; regenerate with "
        f"'rnnskip generate {work} --max-t 9'")
    r = _invoke("emulate", work, "--data", tmp_path / "d6.npz", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "emulated 4 sequences; 0 mismatches" in r.output


def test_build_refuses_sources_without_a_recorded_max_t(work):
    r = _invoke("generate", work, "--max-t", "7")
    assert r.exit_code == 0, r.output
    stages = json.loads((work / "stages.json").read_text())
    del stages["generate"]["max_t"]        # as 'generate' of an earlier rnnskip wrote it
    (work / "stages.json").write_text(json.dumps(stages))
    r = _invoke("build", work, "--target", "cortex-m4")
    assert r.exit_code == 2 and not (work / "firmware").exists()
    assert r.output.strip().splitlines() == [
        f"error: {work / 'src'} is not recorded in {work / 'stages.json'} (with its --max-t); "
        f"run 'rnnskip generate {work}' again"]


def test_a_model_with_step_methods_loads_in_a_fresh_interpreter(tmp_path):
    """rnnskip-convert --predictor/--delta leaves model.q.json holding a QPredictor and a DeltaMethod;
    the stage commands, which never import the step methods' modules, still read it."""
    import subprocess
    import sys

    from helpers import quantized
    from test_skip_device import random_predictor

    from rnnskip.delta.golden import with_delta
    from rnnskip.delta.spec import DeltaSpec
    from rnnskip.pipeline import workdir
    from rnnskip.skip.qpredictor import quantize_predictor
    ir, qm, _, _ = quantized("feat-lstm-gru", n=6, T=5)
    qm = with_delta(qm, DeltaSpec([2, 3], [1, 4]))
    qm.methods.append(quantize_predictor(random_predictor("mlp", qm.in_dim, [l.units for l in qm.layers]), qm))
    workdir.save_ir(tmp_path, ir)   # a work folder starts with 'import'
    workdir.save_model(tmp_path, qm)
    code = ("import sys; from rnnskip.pipeline import workdir; "
            "assert not any(m.startswith(('rnnskip.skip', 'rnnskip.delta')) for m in sys.modules); "
            f"qm = workdir.load_model({str(tmp_path)!r}); print([type(m).__name__ for m in qm.methods])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "['DeltaMethod', 'QPredictor']"
