"""Renode backend: the generated .repl/.resc/.robot files (structure, for every board),
the one-line message when Renode is not installed, and the result parsing
(with a stand-in renode-test: Renode itself is not installable on these machines)."""
from __future__ import annotations

import re
import stat
import sys

import pytest
from helpers import HAVE_QEMU, dataset, needs_arm

from rnnskip import boards
from rnnskip.emulators import renode
from rnnskip.errors import RnnskipError

ROBOT_SECTIONS = ("*** Settings ***", "*** Variables ***", "*** Keywords ***", "*** Test Cases ***")


def _robot_sections(text):
    out, cur = {}, None
    for ln in text.splitlines():
        if ln.startswith("***"):
            cur = ln.strip()
            out[cur] = []
        elif cur and ln.strip():
            out[cur].append(ln)
    return out


def _repl_blocks(text):
    """name -> (type, address, {param: value}) of a Renode platform description."""
    blocks, cur = {}, None
    for ln in text.splitlines():
        if not ln.strip() or ln.lstrip().startswith("//"):
            continue
        m = re.match(r"^(\w+): ([\w.]+) @ (\w+)(?: (0x[0-9A-Fa-f]+))?$", ln)
        if m:
            cur = m.group(1)
            blocks[cur] = (m.group(2), m.group(4), {})
            continue
        assert ln.startswith("    ") and cur, ln
        k, _, v = ln.strip().partition(":")
        if "->" not in ln:
            blocks[cur][2][k.strip()] = v.strip()
    return blocks


@pytest.mark.parametrize("name", [n for n in boards.available() if boards.load(n).uart])
def test_files_for_every_board(name, tmp_path):
    b = boards.load(name)
    paths = renode.write_files(tmp_path, b, model_name="demo")
    robot = paths["robot"].read_text()
    sec = _robot_sections(robot)
    assert set(ROBOT_SECTIONS) <= set(sec)
    assert "Resource          ${RENODEKEYWORDS}" in sec["*** Settings ***"]
    var = dict(re.split(r"\s{2,}", ln.strip(), maxsplit=1) for ln in sec["*** Variables ***"])
    assert var["${UART}"] == b.renode["uart"] and var["${ELF}"] == "${CURDIR}/firmware.elf"
    for ln in sec["*** Keywords ***"][1:] + sec["*** Test Cases ***"][1:]:
        assert ln.startswith("    ") and not ln.startswith("     "), ln    # 4-space indented keyword calls
    body = "\n".join(sec["*** Test Cases ***"])
    assert "Wait For Line On Uart     rnnskip start: board=" + name in body
    assert "result=PASS" in body and "cpu ExecutedInstructions" in body
    resc = paths["resc"].read_text()
    assert resc.startswith(":name: rnnskip on " + name)
    for needle in ("mach create $name", "machine LoadPlatformDescription @", "sysbus LoadELF $elf",
                   f"cpu VectorTableOffset {b.flash_origin:#010X}".replace("0X", "0x"),
                   f"showAnalyzer {b.renode['uart']}"):
        assert needle in resc, needle
    if b.renode.get("platform"):                         # Renode's own platform, no .repl written
        assert "repl" not in paths and f"@{b.renode['platform']}" in resc
        assert var["${PLATFORM}"] == b.renode["platform"]
        return
    assert var["${PLATFORM}"] == "${CURDIR}/" + paths["repl"].name and "@$ORIGIN/" + paths["repl"].name in resc
    blocks = _repl_blocks(paths["repl"].read_text())
    cpu_type = {"cortex-m0plus": "cortex-m0+"}.get(b.target, b.target)
    assert blocks["cpu"][0] == "CPU.CortexM" and blocks["cpu"][2] == {"cpuType": f'"{cpu_type}"', "nvic": "nvic"}
    assert blocks["nvic"][1] == "0xE000E000"
    assert int(blocks["flash"][1], 16) == b.flash_origin and int(blocks["flash"][2]["size"], 16) == b.flash_size
    assert int(blocks["ram"][1], 16) == b.ram_origin and int(blocks["ram"][2]["size"], 16) == b.ram_size
    uart = blocks[b.renode["uart"].split(".")[1]]
    assert int(uart[1], 16) == b.uart["base"]
    assert uart[0] == {"cmsdk-uart": "UART.CMSDK_APB_UART", "stm32-usart-v2": "UART.STM32F7_USART",
                       "nrf51-uart": "UART.NRF52840_UART"}[b.uart["kind"]]


def test_not_installed_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(renode, "RENODE_TEST", "renode-test-not-installed")
    with pytest.raises(RnnskipError) as e:
        renode.run_firmware(tmp_path / "firmware.elf", boards.load("mps2-an386"), tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("renode-test-not-installed not found on PATH: Renode is not installed")
    assert "github.com/renode/renode/releases" in msg and str(tmp_path / "renode") in msg
    assert (tmp_path / "renode" / "mps2-an386.robot").is_file()     # the files are there for the user


FAKE = """#!{python}
# stand-in for Renode's renode-test: replays a UART transcript, reports an instruction count
import pathlib, sys
robot = pathlib.Path(sys.argv[1])
assert robot.suffix == ".robot" and "*** Test Cases ***" in robot.read_text()
pathlib.Path("uart.log").write_text(pathlib.Path({transcript!r}).read_text())
print("rnnskip-renode-instructions: 123456")
print("Tests finished successfully :)")
"""


@needs_arm
def test_cli_renode_with_a_stand_in_runner(tmp_path, monkeypatch):
    """--emulator renode end to end; the UART transcript comes from the real image under QEMU."""
    import json

    from click.testing import CliRunner
    from random_models import mixed_ir, random_data

    from rnnskip.cli import main
    from rnnskip.datasets import save_npz
    from rnnskip.pipeline import stages
    ir = mixed_ir()
    x, L = random_data(ir, n=3, T=9, seed=4)
    monkeypatch.setattr(stages, "import_model", lambda path: ir)
    save_npz(str(tmp_path / "d.npz"), dataset(x, L))
    args = ["convert", "model.h5", "--board", "mps2-an386", "--data", str(tmp_path / "d.npz"), "--bundle", "3"]
    monkeypatch.setattr(renode, "RENODE_TEST", "renode-test-not-installed")
    r = CliRunner().invoke(main, args + ["--emulator", "renode", "--out", str(tmp_path / "o1")])
    # refused before any work, pointing at --export rather than at a folder the failed run removes
    assert r.exit_code == 2 and "Renode is not installed" in r.output and "--export DIR" in r.output
    assert "run without --emulator renode" in r.output
    assert "calibrate" not in r.output and not (tmp_path / "o1").exists()
    assert not list(tmp_path.glob(".o1.partial-*"))
    if not HAVE_QEMU:
        pytest.skip("qemu-system-arm needed for the transcript")
    r = CliRunner().invoke(main, args + ["--emulator", "qemu", "--out", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    from rnnskip.emulators import qemu
    run = qemu.run_firmware(tmp_path / "q" / "firmware" / "firmware.elf", boards.load("mps2-an386"), icount=False)
    (tmp_path / "uart.txt").write_text("\n".join(run.lines) + "\n")
    fake = tmp_path / "bin" / "renode-test"
    fake.parent.mkdir()
    fake.write_text(FAKE.format(python=sys.executable, transcript=str(tmp_path / "uart.txt")))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(renode, "RENODE_TEST", str(fake))
    r = CliRunner().invoke(main, args + ["--emulator", "renode", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "o2" / "report.json").read_text())
    e = rep["emulation"]
    assert e["emulator"] == "renode" and rep["bitexact"]["device_mismatches"] == 0
    assert e["board"]["instruction_counts"] == "Renode ExecutedInstructions, whole run: 123456"
    assert e["board"]["unicorn_cross_check"]["outputs_identical"]
    assert (tmp_path / "o2" / "firmware" / "renode" / "mps2-an386.robot").is_file()


def test_export_carries_the_renode_suite(tmp_path):
    from random_models import generated_mixed

    from rnnskip.boards.export import export_project
    from rnnskip.boards.firmware import make_bundle
    _, qm, x, L = generated_mixed(tmp_path, n=2, seed=5, T=5)
    fw = export_project(tmp_path / "src", tmp_path / "fw", boards.load("stm32f407"), make_bundle(qm, x, L, 2))
    robot = (fw / "renode" / "stm32f407.robot").read_text()
    assert "${ELF}            ${CURDIR}/../build/firmware.elf" in robot
    assert "@$ORIGIN/../build/firmware.elf" in (fw / "renode" / "stm32f407.resc").read_text()
    assert "renode-test renode/stm32f407.robot" in (fw / "README.md").read_text()
