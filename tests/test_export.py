"""Standalone export: the STM32F407 project builds from a clean copy with CMake (+ the
arm-none-eabi toolchain file) and with make, and its image boots on QEMU netduinoplus2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from helpers import HAVE_QEMU, dataset, needs_arm
from random_models import generated_mixed

from rnnskip import boards
from rnnskip.boards.export import export_project
from rnnskip.boards.firmware import make_bundle
from rnnskip.generate import generate

HAVE = {t: shutil.which(t) is not None for t in ("cmake", "make")}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    ir, qm, x, L = generated_mixed(d, n=4, seed=3)
    return ir, qm, x, L, d


@pytest.fixture(scope="module")
def project(model):
    ir, qm, x, L, d = model
    return export_project(d / "src", d / "fw", boards.load("stm32f407"), make_bundle(qm, x, L, 4),
                          "dsp", "portable", "mixed")


def _run(cmd, cwd, env=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p


def test_project_layout(project):
    names = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert {"CMakeLists.txt", "cmake/arm-none-eabi.cmake", "Makefile", "README.md", "board/link.ld",
            "board/startup.c", "board/rnnskip_uart.c", "board/rnnskip_board_main.c", "board/rnnskip_board_data.c",
            "src/rnnskip_model.c", "src/rnnskip_weights.c", "src/rnnskip_io.c",
            "src/kernels/rnnskip_kernels.h"} <= names
    assert "src/main.c" not in names                      # the emulation main is replaced by the board's
    mk = (project / "Makefile").read_text()
    assert "-mcpu=cortex-m4" in mk and "\t$(CC) $(CFLAGS) $(EXTRA_CFLAGS)" in mk
    assert "-Wall -Wextra" in mk
    assert "qemu-system-arm -M netduinoplus2" in mk
    assert "no virtual COM port: connect a 3.3 V USB-serial adapter's RX to PA2" in (project / "README.md").read_text()
    assert "(e.g. `st-flash write build/firmware.bin 0x08000000` with an ST-LINK," in \
        (project / "README.md").read_text()
    assert "-serial null -serial mon:stdio" in mk         # USART2 is QEMU's second serial port; Ctrl-A X quits
    assert "ORIGIN = 0x08000000" in (project / "board/link.ld").read_text()
    assert "rnnskip" not in (project / "cmake/arm-none-eabi.cmake").read_text().split("\n", 2)[2]


@needs_arm
@pytest.mark.skipif(not (HAVE["cmake"] and HAVE["make"]), reason="cmake and make needed")
def test_clean_copy_builds_with_cmake_and_make_and_boots(project, tmp_path):
    a, b = tmp_path / "cmake-copy", tmp_path / "make-copy"
    shutil.copytree(project, a)
    shutil.copytree(project, b)
    _run(["cmake", "-S", ".", "-B", "build", "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake"], a)
    _run(["cmake", "--build", "build"], a)
    _run(["make", "-j2", "EXTRA_CFLAGS=-Wall -Wextra -Wconversion -Werror"], b)   # the user's flags keep the target's
    for d in (a, b):
        assert (d / "build" / "firmware.elf").is_file() and (d / "build" / "firmware.bin").stat().st_size > 1000
    assert (a / "build/firmware.bin").read_bytes() == (b / "build/firmware.bin").read_bytes()
    if not HAVE_QEMU:
        pytest.skip("qemu-system-arm not installed")
    from rnnskip.emulators import qemu
    run = qemu.run_firmware(b / "build" / "firmware.elf", boards.load("stm32f407"), timeout=60, icount=False)
    assert run.machine == "netduinoplus2"
    assert run.lines[-1] == ("rnnskip summary: board=stm32f407 target=cortex-m4 sequences=4 match=4 "
                             "mismatch=0 cycles=- result=PASS")


@needs_arm
def test_cmsis_nn_project_asks_for_cmsis_nn_path(model, tmp_path):
    ir, qm, x, L, d = model
    generate(qm, tmp_path / "src", max_t=x.shape[1], kernels="cmsis-nn")
    fw = export_project(tmp_path / "src", tmp_path / "fw", boards.load("mps2-an386"), make_bundle(qm, x, L, 2),
                        "dsp", "cmsis-nn", "mixed")
    env = {k: v for k, v in os.environ.items() if k != "CMSIS_NN_PATH"}
    p = subprocess.run(["make"], cwd=fw, capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "the cmsis-nn kernels need CMSIS_NN_PATH" in p.stderr
    if HAVE["cmake"]:
        p = subprocess.run(["cmake", "-S", ".", "-B", "build", "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake"],
                           cwd=fw, capture_output=True, text=True, env=env)
        assert p.returncode != 0 and "the cmsis-nn kernels need CMSIS_NN_PATH" in p.stderr


@needs_arm
@pytest.mark.skipif(not os.environ.get("CMSIS_NN_PATH"), reason="CMSIS_NN_PATH not set: no CMSIS-NN checkout")
@pytest.mark.skipif(not (HAVE["cmake"] and HAVE["make"]), reason="cmake and make needed")
def test_cmsis_nn_project_builds_with_cmsis_nn_path_and_boots(model, tmp_path):
    """With a CMSIS-NN checkout the exported project builds with make and CMake to the same image, and it
    matches the golden results of its bundled sequences on QEMU."""
    ir, qm, x, L, d = model
    generate(qm, tmp_path / "src", max_t=x.shape[1], kernels="cmsis-nn")
    fw = export_project(tmp_path / "src", tmp_path / "fw", boards.load("stm32f407"), make_bundle(qm, x, L, 4),
                        "dsp", "cmsis-nn", "mixed")
    b = tmp_path / "cmake-copy"
    shutil.copytree(fw, b)
    _run(["make", "-j2"], fw)
    _run(["cmake", "-S", ".", "-B", "build", "-DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake"], b)
    _run(["cmake", "--build", "build"], b)
    assert (fw / "build/firmware.bin").read_bytes() == (b / "build/firmware.bin").read_bytes()
    if not HAVE_QEMU:
        pytest.skip("qemu-system-arm not installed")
    from rnnskip.emulators import qemu
    run = qemu.run_firmware(fw / "build" / "firmware.elf", boards.load("stm32f407"), timeout=60, icount=False)
    assert run.lines[-1] == ("rnnskip summary: board=stm32f407 target=cortex-m4 sequences=4 match=4 "
                             "mismatch=0 cycles=- result=PASS")


@needs_arm
def test_cli_export(model, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rnnskip.cli import main
    from rnnskip.datasets import save_npz
    from rnnskip.pipeline import stages
    ir, qm, x, L, d = model
    monkeypatch.setattr(stages, "import_model", lambda path: ir)
    save_npz(str(tmp_path / "d.npz"), dataset(x, L))
    r = CliRunner().invoke(main, ["convert", "model.h5", "--target", "cortex-m4", "--board", "stm32f407",
                                  "--export", str(tmp_path / "fw"), "--data", str(tmp_path / "d.npz"),
                                  "--out", str(tmp_path / "out"), "--bundle", "3"])
    assert r.exit_code == 0, r.output
    assert "wrote the stm32f407 firmware project" in r.output
    data = (tmp_path / "fw" / "board" / "rnnskip_board_data.c").read_text()
    assert "rnnskip_bundle_n = 3u" in data
    fp = json.loads((tmp_path / "out" / "report.json").read_text())["footprint"]
    readme = (tmp_path / "fw" / "README.md").read_text()
    stack = fp["stack_bytes"]
    assert stack > 0 and f"One inference needs {stack:,} bytes of stack, measured under emulation" in readme
    assert fp["weights_bytes"] > 0 and fp["model_ram_bytes"] > 0 and \
        f"the model takes {fp['weights_bytes']:,} bytes of flash for its\nweights, biases and scales and " \
        f"{fp['model_ram_bytes']:,} bytes of static RAM" in readme, readme
    r = CliRunner().invoke(main, ["convert", "model.h5", "--export", str(tmp_path / "fw2"), "--data",
                                  str(tmp_path / "d.npz"), "--out", str(tmp_path / "out2")])
    assert r.exit_code == 2 and "--export needs --board" in r.output
    assert not (tmp_path / "fw2").exists()
    assert json.loads((tmp_path / "fw" / "rnnskip_project.json").read_text())["board"] == "stm32f407"
    base = ["convert", "model.h5", "--target", "cortex-m4", "--board", "stm32f407", "--data", str(tmp_path / "d.npz"),
            "--bundle", "3"]
    # a user's project that holds copied rnnskip sources is not an export: refused, untouched
    user = tmp_path / "myproj"
    (user / "src").mkdir(parents=True)
    (user / "src" / "rnnskip_model.h").write_text("/* copied */")
    (user / "app_main.c").write_text("int main(void) { return 0; }")
    r = CliRunner().invoke(main, base + ["--export", str(user), "--out", str(tmp_path / "o3")])
    assert r.exit_code == 2 and "not written by rnnskip (no rnnskip_project.json in it)" in r.output, r.output
    assert (user / "app_main.c").is_file() and not (tmp_path / "o3").exists()
    # --export equal to --out, inside it or holding it: each replaces the other as a whole
    for e, o, how in (("same", "same", "the same folder as"), ("o4/fw", "o4", "inside"), ("o5", "o5/out", "holds")):
        r = CliRunner().invoke(main, base + ["--export", str(tmp_path / e), "--out", str(tmp_path / o)])
        assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == (
            f"error: --export {tmp_path / e} is {how} --out {tmp_path / o}, and each is replaced as a whole; give "
            f"the exported project a folder of its own"), r.output
        assert not (tmp_path / o).exists() and not (tmp_path / e).exists()
    # re-exporting over an earlier export replaces it, including what building and running it wrote
    (tmp_path / "fw" / "build").mkdir()
    (tmp_path / "fw" / "build" / "firmware.elf").write_bytes(b"elf")
    (tmp_path / "fw" / "renode" / "uart.log").write_text("rnnskip summary")
    r = CliRunner().invoke(main, base + ["--export", str(tmp_path / "fw"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "fw" / "build").exists()
    # ... but not a file the user added to the project
    (tmp_path / "fw" / "board" / "my_driver.c").write_text("int x;")
    r = CliRunner().invoke(main, base + ["--export", str(tmp_path / "fw"), "--out", str(tmp_path / "out4")])
    assert r.exit_code == 2 and "holds files rnnskip did not write (board/my_driver.c)" in r.output, r.output
    assert (tmp_path / "fw" / "board" / "my_driver.c").is_file()
    # ... nor an edit to a file it wrote (the nRF52840 README asks for one; a re-export discarded it)
    (tmp_path / "fw" / "board" / "my_driver.c").unlink()
    main_c = tmp_path / "fw" / "board" / "rnnskip_board_main.c"
    main_c.write_text(main_c.read_text().replace("counter_init", "counter_init /* mine */", 1))
    r = CliRunner().invoke(main, base + ["--export", str(tmp_path / "fw"), "--out", str(tmp_path / "out5")])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == (
        f"error: --export {tmp_path / 'fw'} holds files edited since rnnskip wrote them (board/rnnskip_board_main.c) "
        f"and would be replaced as a whole: keep your edits elsewhere (copy the folder) or choose a new folder"), \
        r.output
    assert "/* mine */" in main_c.read_text() and not (tmp_path / "out5").exists()
    # an empty --export, and a board without a UART driver: refused before any work (the board's refusal
    # came after the whole conversion, with --out written)
    r = CliRunner().invoke(main, base + ["--export", "", "--out", str(tmp_path / "out6")])
    assert r.exit_code == 2 and "--export is empty" in r.output and not (tmp_path / "out6").exists()
    r = CliRunner().invoke(main, ["convert", "model.h5", "--board", "rp2040", "--data", str(tmp_path / "d.npz"),
                                  "--export", str(tmp_path / "fw7"), "--out", str(tmp_path / "out7")])
    assert r.exit_code == 2 and "board rp2040 has no UART driver" in r.output, r.output
    assert not (tmp_path / "out7").exists() and not (tmp_path / "fw7").exists()


def test_nrf52840_project_says_how_to_flash_it_and_what_its_startup_needs(model, tmp_path):
    """Each board's README gives its own programming command (an nRF52840 DK has a J-Link, not an
    ST-LINK), and the DC/DC write a board without the inductor must drop is called out in the README
    and next to the write in the board's main."""
    ir, qm, x, L, d = model
    p = export_project(d / "src", tmp_path / "fw-nrf", boards.load("nrf52840"), make_bundle(qm, x, L, 2),
                       "dsp", "portable", "mixed")
    readme = (p / "README.md").read_text()
    assert "st-flash" not in readme and "`pyocd flash -t nrf52840 build/firmware.elf`" in readme
    note = ("POWER.DCDCEN = 1 turns the DC/DC regulator on, which needs the external inductor the nRF52840 DK "
            "fits: on a board without one, delete that write from rnnskip_board_memory_init")
    assert note in readme
    main = " ".join(line.strip(" *") for line in (p / "board/rnnskip_board_main.c").read_text().splitlines())
    assert note in main and main.index(note) < main.index("void rnnskip_board_memory_init(void)")
