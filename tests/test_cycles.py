"""Cycle model unit tests (capstone only; no toolchain needed).

Instruction bytes were assembled once with arm-none-eabi-as (-mcpu=cortex-m4,
fpv4-sp-d16); the expected numbers are the Cortex-M4 TRM r0p1 values as
implemented in rnnskip/simulator/cycles.py, including the TRM's own 3.3.2
pipelining examples.
"""
import pytest

from rnnskip.errors import RnnskipError
from rnnskip.simulator import cycles
from rnnskip.simulator.decode import FLASH, OTHER, SRAM, Decoder

T = cycles.CORTEX_M4


def region(addr):
    if 0x08000000 <= addr < 0x08100000:
        return FLASH
    if 0x20000000 <= addr < 0x20020000:
        return SRAM
    return OTHER


def dec(hexbytes, address=0x08000000):
    return Decoder(region).decode(bytes.fromhex(hexbytes), address)


def cost(hexbytes, next_taken=False, **kw):
    return cycles.block_cost(dec(hexbytes), T, next_taken, **kw)


# ---- table ------------------------------------------------------------------
def test_table_lookup():
    assert cycles.get_table("cortex-m4") is cycles.CORTEX_M4
    with pytest.raises(RnnskipError, match="no cycle table 'cortex-m99'"):
        cycles.get_table("cortex-m99")
    assert T.refill == {"direct": 1, "register": 2, "load": 3}
    assert T.costs["div"] == (12, 0) and T.costs["fp_div"] == (14, 0)
    assert "Table 3-1" in T.source


# ---- 3.3.2 load/store pipelining, the TRM's own examples -------------------
@pytest.mark.parametrize("hexbytes,text,want", [
    ("485911685a68", "LDR R0,[R1,R5]; LDR R1,[R2]; LDR R2,[R3,#4]", 4),   # TRM: "four cycles total"
    ("08681168", "LDR R0,[R1]; LDR R1,[R2]", 3),                         # TRM: "three cycles total"
    ("88585861", "LDR R0,[R1,R2]; STR R0,[R3,#20]", 3),                  # TRM: "three cycles total"
    ("88589950", "LDR R0,[R1,R2]; STR R1,[R3,R2]", 3),                   # TRM: "three cycles total"
    ("08680268", "LDR R0,[R1]; LDR R2,[R0]  (dependent address)", 4),
    ("88502368", "STR R0,[R1,R2]; LDR R3,[R4]  (nothing after a store)", 4),
])
def test_trm_pipelining_examples(hexbytes, text, want):
    assert cost(hexbytes) == want, text


def test_single_costs():
    ins = dec("f0b5f0bd")                           # push {r4-r7,lr}; pop {r4-r7,pc}
    assert [cycles.insn_cost(i, T) for i in ins] == [(6, 0), (6, 3)]
    assert cost("f0b5f0bd", next_taken=True) == 6 + 9
    seq = dec("d2e9000190ed000b2ded048a80ee810a00ee810ab1fbf2f021fb0230")
    names = [i.name for i in seq]
    assert names == ["LDRD", "VLDR", "VPUSH", "VDIV", "VMLA", "UDIV", "SMLAD"]
    assert [cycles.insn_cost(i, T)[0] for i in seq] == [3, 3, 5, 14, 3, 12, 1]
    # memory descriptors
    assert (seq[0].mem.nbytes, seq[0].mem.accesses, seq[0].mem.is_load) == (8, 2, True)
    assert (seq[1].mem.nbytes, seq[1].mem.accesses) == (8, 2)
    assert (seq[2].mem.nbytes, seq[2].mem.accesses, seq[2].mem.is_load, seq[2].mem.disp,
            seq[2].mem.region) == (16, 4, False, -16, SRAM)
    assert seq[2].writes_sp and not seq[0].writes_sp


def test_branches_and_it():
    # cmp r0,#0; it eq; bxeq lr   -> IT-predicated return
    ins = dec("002808bf7047")
    assert [i.predicated for i in ins] == [False, False, True]
    assert ins[2].branch == "register"
    assert cost("002808bf7047", next_taken=False) == 3            # condition failed: 1+1+1
    assert cost("002808bf7047", next_taken=True) == 1 + 1 + 3     # BX taken: 1+P(2)
    tbb = dec("dfe800f0")[0]
    assert tbb.branch == "load" and tbb.mem.nbytes == 1 and tbb.mem.region == FLASH
    assert cost("dfe800f0", next_taken=True) == 5                 # 2+P(3)
    b = dec("fee7")[0]                                            # b .
    assert cycles.insn_cost(b, T) == (1, 1)


def test_it_block_predicated_loads():
    # loop body of loop_mix (kernels.s): ... ite gt; ldrgt r5,[r1]; ldrle.w r6,[r3,#-4]; subs; bne
    body = ("51f8045b12f8016b2c443444" "43f8044bb4f57a7fccbf0d6853f8046c0138efd1")
    ins = dec(body, 0x080000c2)
    assert len(ins) == 11
    pred = [i.address for i in ins if i.predicated]
    assert pred == [0x080000d8, 0x080000da]
    bc = cycles.analyse_block(ins, T)
    assert bc.cost == 12 and bc.taken_extra == 1 and bc.pass_delta == {0x080000d8: 1, 0x080000da: 1}
    assert bc.fetch_words == 9
    # ldrgt fails, ldrle passes: 13 / 14 taken; with 3 wait states and one flash data access
    assert cycles.block_cost(ins, T, False, it_passed={0x080000da}) == 13
    assert cycles.block_cost(ins, T, True, it_passed={0x080000da}) == 14
    assert cycles.block_cost(ins, T, True, it_passed={0x080000da}, wait_states=3,
                             flash_data_accesses=1) == 14 + 3 * (9 + 1)
    # effective-address descriptors
    ldr, ldrb = ins[0].mem, ins[1].mem
    assert (ldr.disp, ldr.nbytes, ldr.region) == (0, 4, None)        # post-indexed: EA = base
    assert (ldrb.nbytes, ldrb.is_load) == (1, True)
    assert ins[9].mem is None and ins[8].mem.disp == -4


def test_literal_and_fetch_words():
    lit = dec("0f49")[0]                  # ldr r1, [pc, #60] at 0x080000ba
    assert lit.literal and lit.mem.region == FLASH
    assert cycles.fetch_words(0, 2) == 1
    assert cycles.fetch_words(2, 4) == 2
    assert cycles.fetch_words(0, 8) == 2
    assert cycles.fetch_words(6, 4) == 2
    assert cycles.fetch_words(10, 32) == 9
    assert cycles.fetch_words(0, 0) == 0


def test_table_is_data():
    """Changing a table entry changes costs, without code changes (extensibility)."""
    import dataclasses
    slow = dataclasses.replace(T, name="test", costs={**T.costs, "load": (3, 0)},
                               refill={"direct": 2, "register": 2, "load": 2}, load_pipelining=False)
    assert cycles.block_cost(dec("08681168"), slow, False) == 6
    assert cycles.block_cost(dec("f0b5f0bd"), slow, True) == 6 + 6 + 2
