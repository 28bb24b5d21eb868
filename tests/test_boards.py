"""Board files, board firmware builds (every board) and the CLI's --board plumbing."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import needs_arm
from random_models import generated_mixed

from rnnskip import boards, targets
from rnnskip.boards.firmware import build_board_firmware, make_bundle
from rnnskip.errors import RnnskipError
from rnnskip.targets.fit import check_fits

REQUIRED = {"stm32f405", "stm32f407", "netduinoplus2", "olimex-stm32-h405", "mps2-an386", "mps2-an500",
            "mps2-an505", "mps3-an547", "stm32g0b1", "microbit"}


def test_board_files():
    assert REQUIRED <= set(boards.available())
    cores = set()
    for n in boards.available():
        b = boards.load(n)
        t = boards.board_target(b)
        cores.add(t.name)
        assert (t.flash_origin, t.flash_size, t.ram_origin, t.ram_size) == \
            (b.flash_origin, b.flash_size, b.ram_origin, b.ram_size)
        assert t.raw["board"] == b.name and t.cycle_table == targets.load(b.target).cycle_table
        if b.uart is not None:           # uart-less boards serve the Unicorn cycle model only
            assert b.uart["kind"] in boards.UART_KINDS and b.uart["baud"] == 115200
            assert b.renode.get("uart", "").startswith("sysbus.")
    assert {"cortex-m0plus", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"} <= cores
    # inheritance and aliases
    f407 = boards.load("stm32f4-discovery")
    assert f407.name == "stm32f407" and f407.uart["base"] == 0x40004400 and f407.flash_size == 1 << 20
    assert f407.qemu == {"machine": "netduinoplus2", "serial_index": 1}
    assert boards.load("olimex-stm32-h405").qemu["fallback_machine"] == "netduinoplus2"
    with pytest.raises(RnnskipError, match="unknown board 'nope'; available boards: microbit"):
        boards.load("nope")


def test_a_board_without_uart_has_no_image():
    b = boards.load("pico")
    assert b.name == "rp2040" and b.uart is None
    with pytest.raises(RnnskipError, match=r"board rp2040 has no UART driver in rnnskip, so no board image "
                                           r"\(--emulator qemu\): it serves the Unicorn cycle model only"):
        from rnnskip.emulators import choose
        choose("qemu", boards.board_target(b), b)


def test_resolve_target_and_board():
    b, t = boards.resolve(None, "mps2-an505")
    assert b.name == "mps2-an505" and t.name == "cortex-m33" and t.flash_origin == 0x10000000
    assert boards.resolve(None, None)[1].name == "cortex-m4"
    with pytest.raises(RnnskipError, match="board stm32f407 has a cortex-m4 core, not cortex-m7"):
        boards.resolve("cortex-m7", "stm32f407")
    assert boards.resolve("M4", "stm32f407")[1].name == "cortex-m4"   # how people write the core


def test_targets_by_the_names_people_write():
    """A core written as people write it loads that target (cortex-m0+, any case, m4 / cm4 without "cortex-"); a
    board named as a target says which board option and core to use (a user check: --target rp2040)."""
    from rnnskip import targets
    for given, want in (("cortex-m0+", "cortex-m0plus"), ("Cortex-M0+", "cortex-m0plus"), ("m4", "cortex-m4"),
                        ("CM7", "cortex-m7"), (" cortex-m33 ", "cortex-m33")):
        assert targets.load(given).name == want
    with pytest.raises(RnnskipError) as e:
        boards.resolve("rp2040", None)
    assert str(e.value).endswith("; 'rp2040' is a board: use --board rp2040 (its core is cortex-m0plus)")
    with pytest.raises(RnnskipError) as e:
        targets.load("cortex-m99")
    assert str(e.value) == ("unknown target 'cortex-m99'; available targets: " + ", ".join(targets.available()))


def test_cli_lists_boards():
    from click.testing import CliRunner

    from rnnskip.cli import main
    r = CliRunner().invoke(main, ["boards"])
    assert r.exit_code == 0, r.output
    for n in REQUIRED:
        assert n in r.output
    assert "netduinoplus2" in r.output and "USART2" in r.output
    assert "cycle model memory: STM32F405/407 embedded flash, 5 WS, ART accelerator on @ 168 MHz" in r.output
    assert "cycle model memory: core only" in r.output


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("boards")
    ir, qm, x, L = generated_mixed(d, n=6, seed=1)
    return ir, qm, x, L, d


@needs_arm
@pytest.mark.parametrize("name", ["stm32g0b1", "stm32l073", "stm32f405"])
def test_board_firmware_builds(model, name):
    """Boards QEMU cannot boot still get a complete image (QEMU-bootable ones: test_qemu.py)."""
    ir, qm, x, L, d = model
    b = boards.load(name)
    t = boards.board_target(b)
    bundle = make_bundle(qm, x, L, 4)
    check_fits(qm, x.shape[1], t, where=f"board {name}", bundled_bytes=bundle.flash_bytes())
    fw = build_board_firmware(d / "src", d / name, b, bundle, "dsp" if t.dsp else "plain", "mixed")
    assert 0 < fw.flash_bytes < b.flash_size and 0 < fw.ram_bytes < b.ram_size
    from elftools.elf.elffile import ELFFile

    from rnnskip.build import section_sizes
    with open(fw.elf, "rb") as f:
        e = ELFFile(f)
        vec = e.get_section_by_name(".isr_vector")
        assert vec["sh_addr"] == b.flash_origin           # vector table where the part boots from
        sp, reset = np.frombuffer(vec.data()[:8], "<u4")
        assert sp == b.ram_origin + b.ram_size and reset & 1
        syms = {s.name for s in e.get_section_by_name(".symtab").iter_symbols()}
    assert {"rnnskip_uart_init", "rnnskip_uart_putc", "HardFault_Handler", "rnnskip_bundle_x",
            "rnnskip_io_run", "main"} <= syms
    assert ".isr_vector" in section_sizes(fw.elf)
    src = (d / name / "board" / "rnnskip_uart.c").read_text()
    assert f"{b.uart['base']:#010X}"[2:] in src.upper()


def test_fit_check_names_the_board(model):
    ir, qm, x, L, d = model
    b = boards.load("stm32l073")           # 20 KiB of RAM
    with pytest.raises(RnnskipError, match=r"board stm32l073: needs about [\d,]+ bytes of RAM .* has 20,480 bytes"):
        check_fits(qm, 4000, boards.board_target(b), where=f"board {b.name}")


# ---- the board image sets the memory system its cycle model assumes ----------------------
PERIPH_PAGES = (0x40000000, 0x40023000, 0x4001E000, 0xE000E000)
RETURN = 0x1FFF0000                     # a "b ." page in the Code region the function returns to


def _memory_init_writes(elf: str, board, reset=None, ccsidr: int = 0):
    """Run the image's rnnskip_board_memory_init alone under Unicorn (its code and data loaded,
    the peripheral and system-control pages as plain memory holding ``reset`` values) and
    return the word writes it makes, in order: [(address, value)]."""
    import unicorn
    import unicorn.arm_const as UA
    from elftools.elf.elffile import ELFFile
    t = boards.board_target(board)
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(UA, t.unicorn_cpu))
    uc.mem_map(board.flash_origin, board.flash_size)
    uc.mem_map(board.ram_origin, board.ram_size)
    for page in PERIPH_PAGES + (RETURN,):
        uc.mem_map(page, 0x1000)
    uc.mem_write(RETURN, b"\xfe\xe7" * 8)
    with open(elf, "rb") as f:
        e = ELFFile(f)
        for seg in e.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                uc.mem_write(seg["p_paddr"], seg.data())
        sym = {s.name: s["st_value"] for s in e.get_section_by_name(".symtab").iter_symbols()}
    for addr, val in {**(reset or {}), 0xE000ED80: ccsidr}.items():
        uc.mem_write(addr, int(val).to_bytes(4, "little"))
    writes = []
    uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, lambda _u, _a, addr, size, value, _d: writes.append((addr, value)),
                begin=0x40000000, end=0xE00FFFFF)
    uc.reg_write(UA.UC_ARM_REG_SP, board.ram_origin + board.ram_size)
    uc.reg_write(UA.UC_ARM_REG_LR, RETURN | 1)
    uc.emu_start(sym["rnnskip_board_memory_init"] | 1, RETURN, count=100_000)
    return writes


@needs_arm
@pytest.mark.parametrize("name", ["stm32f407", "stm32f746", "nrf52840"])
def test_board_image_sets_the_modelled_memory_system(model, name):
    """The board image, before it runs the model, writes the registers its [startup] table names
    (read-modify-write of the reset values) and, on the Cortex-M7, invalidates and enables the L1
    caches (every set and way of the D-cache the CCSIDR describes): the flash wait states,
    prefetch and caches its cycle model assumes, checked against the board's [memory_system]."""
    ir, qm, x, L, d = model
    b = boards.load(name)
    t = boards.board_target(b)
    fw = build_board_firmware(d / "src", d / f"mem-{name}", b, make_bundle(qm, x, L, 2),
                              "dsp" if t.dsp else "plain", "mixed")
    ms = t.memory_system
    reset = {0x40023C00: 0x0000F000} if name.startswith("stm32") else {}   # a reserved bit kept set
    ways, sets = 4, 32                          # the STM32F746's 4 KiB 4-way D-cache of 32-byte lines
    w = _memory_init_writes(str(fw.elf), b, reset, ccsidr=((sets - 1) << 13) | ((ways - 1) << 3) | 1)
    regs = dict(w)
    if name == "stm32f407":
        acr = regs[0x40023C00]
        assert acr == 0x0000F705 and len(w) == 1
        assert (acr & 7) == ms.wait_states and bool(acr >> 8 & 1) == ms.prefetch
        assert bool(acr >> 9 & 1) == (ms.icache is not None) and bool(acr >> 10 & 1) == (ms.dcache is not None)
    elif name == "stm32f746":
        assert w[0] == (0x40023C00, 0x0000F007) and (w[0][1] & 0xF) == ms.wait_states
        assert not ms.prefetch and not (w[0][1] >> 8 & 3)      # no prefetch or ART on the AXI path
        assert ms.icache.ways == 2 and ms.dcache.ways == ways and ms.dcache.lines == ways * sets
        dcisw = [(s << 5) | (wy << 30) for s in range(sets - 1, -1, -1) for wy in range(ways - 1, -1, -1)]
        assert w[1:] == [(0xE000EF50, 0), (0xE000ED14, 1 << 17), (0xE000ED84, 0)] + \
            [(0xE000EF60, v) for v in dcisw] + [(0xE000ED14, (1 << 17) | (1 << 16))]
        # caches a boot loader already enabled are left alone (CMSIS-Core's early returns)
        on = _memory_init_writes(str(fw.elf), b, {**reset, 0xE000ED14: (1 << 17) | (1 << 16)}, ccsidr=1)
        assert on == [(0x40023C00, 0x0000F007)]
    else:
        assert w == [(0x4001E540, 1), (0x40000578, 1)] and ms.icache is not None
    assert _first_call(fw.elf, "main") == "rnnskip_board_memory_init"   # before the UART and the model


def _first_call(elf, func: str) -> str:
    """The function the first BL in ``func`` calls (arm-none-eabi-objdump's disassembly)."""
    import re
    import subprocess
    out = subprocess.run(["arm-none-eabi-objdump", "-d", f"--disassemble={func}", str(elf)], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"\sbl\s+[0-9a-f]+ <([^>+]+)>", out)
    assert m, out[-2000:]
    return m.group(1)


def test_startup_table_errors_are_one_line():
    """A malformed [startup] table is refused in one line naming the board file and the problem."""
    from rnnskip.boards import _startup
    raw = {"target": "cortex-m4"}
    with pytest.raises(RnnskipError, match=r"^board file x.toml \[startup\]: init entry \[1, 2, 3\] must be "):
        _startup("x", dict(raw, startup={"init": [[1, 2, 3]], "source": "RM"}))
    with pytest.raises(RnnskipError, match="'source' must name the manual sections"):
        _startup("x", dict(raw, startup={"init": []}))
    with pytest.raises(RnnskipError, match="l1_caches needs a cortex-m7 target, not cortex-m4"):
        _startup("x", dict(raw, startup={"l1_caches": True, "source": "RM"}))
    with pytest.raises(RnnskipError, match="unknown key 'clock'"):
        _startup("x", dict(raw, startup={"clock": 1, "source": "RM"}))
    with pytest.raises(RnnskipError, match="'note' must be a string"):
        _startup("x", dict(raw, startup={"note": 1, "source": "RM"}))
    assert _startup("x", raw) is None


def test_a_board_builds_for_its_parts_fpu():
    """The STM32F746's FPU is single precision: its images and exported projects are built for FPv5-SP-D16,
    not the cortex-m7 target's double-precision FPv5-D16 (double code would fault on the part)."""
    from rnnskip import boards, targets
    f746 = boards.board_target(boards.load("stm32f746"))
    assert f746.cflags[-1] == "-mfpu=fpv5-sp-d16"
    # what the exported project's README and the board header print about the core says the same
    assert "FPv5-SP-D16" in f746.description and "FPv5-D16" not in f746.description
    assert targets.load("cortex-m7").cflags[-1] == "-mfpu=fpv5-d16"
    assert boards.board_target(boards.load("stm32f407")).cflags == targets.load("cortex-m4").cflags
