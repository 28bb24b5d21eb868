"""Thumb-2 decoding with capstone into :class:`rnnskip.simulator.cycles.Insn`.

Besides the cost class, every load/store gets a :class:`MemOp` describing how to
compute its effective address from registers *before* it executes (what the
exact-mode code hook does) and how many bytes / bus transfers it makes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import capstone
from capstone import arm_const as AC
from unicorn import arm_const as UA

from .cycles import INSN_CLASS, Insn

# Region codes used throughout the simulator.
FLASH, SRAM, OTHER = 0, 1, 2

_INS_NAMES = {getattr(AC, n): n[len("ARM_INS_"):] for n in dir(AC) if n.startswith("ARM_INS_")}
_DB_NAMES = frozenset({"STMDB", "LDMDB", "PUSH", "VPUSH", "VSTMDB", "VLDMDB", "STMDA", "LDMDA"})
_IB_NAMES = frozenset({"STMIB", "LDMIB"})
# extend / bitfield instructions: "shifted operand" class of the M7 pairing rules
_SHIFTED_NAMES = frozenset("SXTB SXTH UXTB UXTH SXTAB SXTAH UXTAB UXTAH SXTB16 UXTB16 SXTAB16 UXTAB16 "
                           "BFI BFC UBFX SBFX".split())


@dataclass(frozen=True)
class MemOp:
    """How one load/store instruction touches memory.

    Effective (lowest) address = ``R[base] + (R[index] << shift) + disp`` where a
    base of PC reads as ``Align(PC, 4)`` (= ``pc_value``). ``region`` is set when
    the region is known statically (PC-relative literal/table loads; SP-relative
    accesses, which always hit the stack in SRAM).
    """
    is_load: bool
    base: int           # unicorn register id (0 if none)
    index: int          # unicorn register id (0 if none)
    shift: int
    disp: int
    nbytes: int         # total bytes transferred
    accesses: int       # bus transfers (1 per byte/halfword/word; LDRD 2; LDM N)
    region: Optional[int] = None
    pc_value: int = 0   # Align(address + 4, 4) when base is PC


def _uc_reg(name: str) -> int:
    return getattr(UA, "UC_ARM_REG_" + name.upper())


def _width(name: str) -> int:
    stem = name[:-1] if name.endswith("T") and name not in ("LDRT", "STRT") else name
    if stem.endswith(("SB", "B")) and not stem.endswith("DB"):
        return 1
    if stem.endswith(("SH", "H")):
        return 2
    return 4


class Decoder:
    """Capstone Thumb decoder that tracks IT blocks across calls.

    ``region_of(addr)`` classifies a static address (FLASH/SRAM/OTHER).
    """

    def __init__(self, region_of: Callable[[int], int]):
        self.md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self.md.detail = True
        self.region_of = region_of
        self.it_left = 0

    def decode(self, code: bytes, address: int) -> List[Insn]:
        """Decode ``code`` at ``address``; stops at the first undecodable halfword."""
        out = []
        for ci in self.md.disasm(code, address):
            out.append(self._convert(ci))
        return out

    # ------------------------------------------------------------------
    def _convert(self, ci) -> Insn:
        name = _INS_NAMES.get(ci.id, ci.mnemonic.split(".")[0].upper())
        cls = INSN_CLASS.get(name, "alu")
        ops = list(ci.operands)
        predicated = self.it_left > 0
        if predicated:
            self.it_left -= 1
        if name == "IT":
            self.it_left = len(ci.mnemonic.split(".")[0]) - 1
        text = f"{ci.mnemonic} {ci.op_str}".strip()
        ins = Insn(address=ci.address, size=ci.size, name=name, cls=cls,
                   predicated=predicated, text=text)

        try:
            acc_r, acc_w = ci.regs_access()
        except capstone.CsError:
            acc_r, acc_w = (), ()
        ins.writes_sp = AC.ARM_REG_SP in acc_w or name in ("VPUSH", "VPOP")
        regs = [o for o in ops if o.type == AC.ARM_OP_REG]
        mems = [o for o in ops if o.type == AC.ARM_OP_MEM]
        # register dependencies (dual-issue / load-use models): reads are conservative
        ins.reads = tuple(sorted(set(acc_r) | {o.reg for o in regs} |
                                 {r for o in mems for r in (o.mem.base, o.mem.index) if r}))
        ins.writes = tuple(sorted(set(acc_w) | {o.reg for o in regs if o.access & capstone.CS_AC_WRITE}))
        ins.shifted = name in _SHIFTED_NAMES or any(o.shift.type != 0 and o.shift.value for o in ops
                                                    if o.type == AC.ARM_OP_REG)
        pc = AC.ARM_REG_PC
        sp = AC.ARM_REG_SP

        if name == "VMOV" and len(ops) >= 3:
            ins.cls = cls = "fp_mov2"

        # ---- branch kind -------------------------------------------------
        if name in ("B", "BL", "CBZ", "CBNZ"):
            ins.branch = "direct"
        elif name in ("BX", "BLX"):
            ins.branch = "register"
        elif name in ("TBB", "TBH"):
            ins.branch = "load"
        elif cls in ("load_multi",) and any(o.reg == pc for o in regs):
            ins.branch = "load"
        elif cls == "load" and regs and regs[0].reg == pc:
            ins.branch = "load"
        elif cls == "alu" and regs and regs[0].reg == pc and (regs[0].access & capstone.CS_AC_WRITE):
            ins.branch = "register"

        # ---- memory --------------------------------------------------------
        if cls in ("load", "store", "store_excl", "table_branch", "load_dual", "store_dual",
                   "vload", "vstore"):
            if not mems:
                return ins
            m = mems[0]
            base = m.mem.base
            index = m.mem.index
            shift = m.shift.value if m.shift.type == AC.ARM_SFT_LSL else m.mem.lshift
            disp = 0 if getattr(ci, "post_index", False) else m.mem.disp
            if cls == "table_branch":
                nbytes, acc = (1 if name == "TBB" else 2), 1
            elif cls in ("load_dual", "store_dual"):
                ins.words = 2
                nbytes, acc = 8, 2
            elif cls in ("vload", "vstore"):
                w = 2 if ci.reg_name(regs[0].reg).startswith("d") else 1
                ins.words = w
                nbytes, acc = 4 * w, w
            else:
                nbytes, acc = _width(name), 1
                if cls == "store" and index:
                    ins.cls = "store_reg"
                if cls == "load" and regs:
                    ins.dest = (regs[0].reg,)
            ins.addr_regs = tuple(r for r in (base, index) if r)
            region = None
            pc_value = 0
            if base == pc:
                pc_value = (ci.address + 4) & ~3
                region = self.region_of(pc_value + disp) if not index else self.region_of(ci.address)
                ins.literal = cls in ("load", "vload", "load_dual")
            elif base == sp:
                region = SRAM
            ins.mem = MemOp(is_load=cls in ("load", "table_branch", "load_dual", "vload"),
                            base=_uc_reg(ci.reg_name(base)) if base else 0,
                            index=_uc_reg(ci.reg_name(index)) if index else 0,
                            shift=shift, disp=disp, nbytes=nbytes, accesses=acc,
                            region=region, pc_value=pc_value)
        elif cls in ("load_multi", "store_multi", "vload_multi", "vstore_multi"):
            if name in ("PUSH", "POP", "VPUSH", "VPOP"):
                base, lst = sp, regs
            else:
                base, lst = regs[0].reg, regs[1:]
            if cls.startswith("v"):
                words = sum(2 if ci.reg_name(o.reg).startswith("d") else 1 for o in lst)
            else:
                words = len(lst)
            ins.words = words
            if name in _DB_NAMES:
                disp = -4 * words
            elif name in _IB_NAMES:
                disp = 4
            else:
                disp = 0
            ins.addr_regs = (base,)
            ins.mem = MemOp(is_load=cls in ("load_multi", "vload_multi"),
                            base=_uc_reg(ci.reg_name(base)), index=0, shift=0, disp=disp,
                            nbytes=4 * words, accesses=words,
                            region=SRAM if base == sp else None)
        return ins
