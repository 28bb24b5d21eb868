"""Static cycle model for Cortex-M cores: one data table per core plus a cost function.

Source for the ``cortex-m4`` table: Arm Cortex-M4 Processor Technical Reference
Manual r0p1 (DDI 0439B), section 3.3 "Instruction set summary", Table 3-1
"Cortex-M4 instruction set summary" (integer core), the DSP rows of the same
summary (all single cycle on the M4), section 3.3.2 "Load/store timings", and
section 7.2.3 "FPU instruction set" Table 7-1 (FPv4-SP timings).

What the model is
-----------------
A per-instruction cost from the table, plus a few documented adjustments. It is
*static*: no bus contention, no prefetch-buffer / ART model, no interrupt
latency, no early-termination divide, no dual-issue (the M4 has none).

Cost of one executed instruction = ``base + per_word * N`` where the table gives
``(base, per_word)`` for the instruction's class and ``N`` is the number of
32-bit words the instruction transfers (registers in an LDM/STM/PUSH/POP
list, 2 for LDRD/STRD, 1 or 2 for VLDR/VSTR.32/.64, words in a VLDM/VSTM list).
The TRM symbols map as follows (Table 3-1 footnotes):

* ``P`` (pipeline refill, "1 to 3 depending on the alignment and width of the
  target instruction, and whether the processor manages to speculate the
  address early") is added when an instruction changes the PC. We pick one
  documented value per kind of branch (``CycleTable.refill``):

  - ``direct`` = 1: B, B<cc>, BL, CBZ, CBNZ. The target is an immediate the
    core computes at decode ("speculates the address early"), best case.
  - ``register`` = 2: BX, BLX Rm, MOV/ADD PC (target from a register): the
    middle of the TRM's 1..3 range.
  - ``load`` = 3: POP/LDM with PC, LDR PC, TBB/TBH (target loaded from memory).
    Section 3.3.2: "LDR PC,[any] is always a blocking operation. This means at
    least two cycles for the load, and three cycles for the pipeline reload."

  A branch that is not taken costs its base (1): "B<cc> 1 or 1+P",
  "CBZ/CBNZ 1 or 1+P".
* ``N`` as above; POP/LDM including PC is ``1 + N + P`` (N counts PC).
* ``B`` (barrier) is taken as 0 ("For DSB and DMB, the minimum number of cycles
  is zero"), so DMB/DSB/ISB cost 1.
* ``W`` (WFI/WFE wait) is taken as 0.

Load/store rules implemented (section 3.3.2 "Load/store timings"):

* LDR/LDRB/LDRH/LDRSB/LDRSH/LDREX (single register): 2 cycles.
* STR/STRB/STRH with an immediate offset (incl. pre/post-indexed immediate):
  1 cycle - "STR Rx,[Ry,#imm] is always one cycle ... the data store is
  performed at the same time as the next instruction is executing" (the write
  buffer). STR with a register offset: 2 cycles (Table 3-1 value).
* Pipelining: "if the next instruction is an LDR or STR, and the destination of
  the first LDR is not used to compute the address for the next instruction,
  then one cycle is removed from the cost of the next instruction" and "STR can
  only be pipelined when it follows an LDR, but nothing can be pipelined after
  the store". Implemented exactly as: if instruction *i-1* is a single-register
  load (not writing PC) and instruction *i* is a single-register load or store
  whose base/index registers do not include *i-1*'s destination, instruction
  *i* costs one cycle less, never below 1 ("destination" = the loaded register;
  a base-register writeback of *i-1* is not treated as a dependency). Chains
  work: LDR;LDR;LDR = 2+1+1 = 4
  (the TRM's example). Both instructions must be unconditional (not inside an
  IT block) and in the same basic block (an executed block starts after a
  branch, which is never a load, so this loses nothing).
* ``LDR Rx,[PC,#imm]`` "might add a cycle because of contention with the fetch
  unit": modelled as +0 (``literal_load_extra``).
* LDRD/STRD: ``1 + N`` with N = 2, i.e. 3. LDM/STM/PUSH/POP: ``1 + N``.
* TBB/TBH: Table 3-1 gives ``2 + P`` (P = 3 here, so 5); section 3.3.2 says
  "at least six cycles" - we follow Table 3-1.

Other decisions:

* Data processing, MUL/MLA/MLS, long multiplies (SMULL/UMULL/SMLAL/UMLAL) and
  every DSP instruction (SMLAD, SMLABB, SMULBB, QADD, SADD16, SSAT, ...): 1.
* SDIV/UDIV: Table 3-1 gives "2 to 12" (early termination on operand
  magnitudes). We use the documented worst case, **12**, as a fixed value.
* IT: 1 cycle. The TRM allows an IT to be folded onto a preceding 16-bit
  instruction (0 cycles); we do not model folding (``it_folding=False``), which
  over-estimates by at most 1 cycle per IT.
* An instruction inside an IT block whose condition fails costs 1 cycle
  (``failed_cost``), whatever its class; it performs no memory access.
* FPU (Table 7-1): VADD/VSUB/VMUL/VNMUL/VABS/VNEG/VCMP/VCVT/VMOV/VMRS/VMSR 1;
  VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS 3; VDIV/VSQRT 14; VMOV between
  two core registers and a double/two singles 2; VLDR/VSTR .32 2, .64 3
  (``1 + N``); VLDM/VSTM/VPUSH/VPOP ``1 + N`` with N in 32-bit words.
* Flash wait states (``target.flash_wait_states`` = ws) are *not* in the table:
  the emulator adds ``ws`` per data access (bus transfer) to flash, and ``ws``
  per 32-bit instruction-fetch word from flash. Instruction fetch is modelled
  as fetching every aligned 32-bit word a basic block's code touches, each time
  the block executes; a word shared by two consecutive blocks entered by
  fall-through is fetched once. With ws = 0 (the default target) both are free.

Adding a core: add a ``CycleTable`` to ``TABLES`` with its own ``costs``/``refill``
numbers (and, if its pipeline rules differ, flags such as ``load_pipelining``);
the class names are ISA-level and shared. ``name_costs`` overrides the class
cost for single instructions (e.g. BL on the M0/M0+, long multiplies on the M3).

Other cores (each table's ``source`` names its document; details at the table):

* ``cortex-m0`` / ``cortex-m0plus``: the TRMs' Table 3-1 (all values exact
  rows of the tables; no IT, no load pipelining, no divide instruction).
* ``cortex-m3``: Cortex-M3 TRM r2p1 Table 18-1 and 18.3 "Load/store timings"
  (the same pipelining rules as the M4); MLA/MLS 2; long multiplies at their
  documented worst case (SMULL/UMULL 5, SMLAL/UMLAL 7), like SDIV at 12.
* ``cortex-m33``: Arm publishes no per-instruction table for the M33 (its TRM
  has none). It is a 3-stage Armv8-M Mainline pipeline like the M4's, so the
  M4 values are used unchanged; its limited dual issue of 16-bit pairs is not
  modelled (an over-estimate).
* ``cortex-m7``: Arm publishes no per-instruction table for the M7 either.
  The table is a documented approximation built from third-party measurements
  (quinapalus.com "Cortex-M7 instruction cycle counts, timings, and
  dual-issue combinations", STM32H730) and the TRM's pipeline description:
  single-cycle issue of loads and stores, a one-cycle load-use stall
  (``load_use_penalty``) and in-order **dual issue** (``dual_issue``, rules in
  :func:`dual_issues`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Container, Dict, Mapping, Optional, Sequence, Tuple

from ..errors import RnnskipError

# ----------------------------------------------------------------------------
# ISA level: capstone instruction name (ARM_INS_<NAME>) -> cost class.
# Anything not listed costs the "alu" class (1 cycle on the M4).
# ----------------------------------------------------------------------------
INSN_CLASS: Dict[str, str] = {}


def _cls(names: str, cls: str) -> None:
    for n in names.split():
        INSN_CLASS[n] = cls


_cls("LDR LDRB LDRH LDRSB LDRSH LDRT LDRBT LDRHT LDRSBT LDRSHT LDREX LDREXB LDREXH", "load")
_cls("STR STRB STRH STRT STRBT STRHT", "store")          # register offset -> "store_reg"
_cls("STREX STREXB STREXH", "store_excl")
_cls("LDRD", "load_dual")
_cls("STRD", "store_dual")
_cls("LDM LDMDB LDMIB LDMDA POP", "load_multi")
_cls("STM STMDB STMIB STMDA PUSH", "store_multi")
_cls("VLDR", "vload")
_cls("VSTR", "vstore")
_cls("VLDMIA VLDMDB VPOP", "vload_multi")
_cls("VSTMIA VSTMDB VPUSH", "vstore_multi")
_cls("B BL CBZ CBNZ", "branch")
_cls("BX BLX", "branch_reg")
_cls("TBB TBH", "table_branch")
_cls("MUL MLA MLS SMULL UMULL SMLAL UMLAL UMAAL "
     "SMLABB SMLABT SMLATB SMLATT SMLAWB SMLAWT SMLAD SMLADX SMLSD SMLSDX "
     "SMLALBB SMLALBT SMLALTB SMLALTT SMLALD SMLALDX SMLSLD SMLSLDX "
     "SMMLA SMMLAR SMMLS SMMLSR SMMUL SMMULR SMUAD SMUADX SMUSD SMUSDX "
     "SMULBB SMULBT SMULTB SMULTT SMULWB SMULWT USAD8 USADA8", "mul")
_cls("SDIV UDIV", "div")
_cls("IT", "it")
_cls("DMB DSB ISB", "barrier")
_cls("VMLA VMLS VNMLA VNMLS VFMA VFMS VFNMA VFNMS", "fp_mac")
_cls("VDIV VSQRT", "fp_div")
_cls("VADD VSUB VMUL VNMUL VABS VNEG VCMP VCMPE VCVT VCVTR VCVTB VCVTT VMOV VMRS VMSR", "fp")
# "fp_mov2" (VMOV between two core registers and a double / two singles) is
# assigned by the decoder from the operand count.

#: Classes that read memory / write memory (for traffic and pipelining).
LOAD_CLASSES = frozenset({"load", "load_dual", "load_multi", "vload", "vload_multi", "table_branch"})
STORE_CLASSES = frozenset({"store", "store_reg", "store_excl", "store_dual", "store_multi",
                           "vstore", "vstore_multi"})


@dataclass(frozen=True)
class CycleTable:
    """Per-core timing data. ``costs[cls] = (base, per_word)``."""
    name: str
    source: str
    costs: Mapping[str, Tuple[int, int]]
    refill: Mapping[str, int]            # P per branch kind: direct / register / load
    load_pipelining: bool = True         # 3.3.2 LDR->LDR/STR address/data phase overlap
    it_folding: bool = False             # IT folded onto the previous 16-bit insn (0 cycles)
    failed_cost: int = 1                 # IT-predicated instruction whose condition fails
    literal_load_extra: int = 0          # LDR [PC,#imm] fetch contention (TRM: "might add")
    name_costs: Mapping[str, Tuple[int, int]] = field(default_factory=dict)  # per-instruction override
    dual_issue: bool = False             # in-order dual issue of adjacent pairs (Cortex-M7)
    load_use_penalty: int = 0            # stall when an instruction reads the register loaded just before

    def cost_of_insn(self, insn: "Insn") -> Tuple[int, int]:
        c = self.name_costs.get(insn.name)
        return c if c is not None else self.cost_of(insn.cls)

    def cost_of(self, cls: str) -> Tuple[int, int]:
        try:
            return self.costs[cls]
        except KeyError:
            return self.costs["alu"]


CORTEX_M4 = CycleTable(
    name="cortex-m4",
    source=("Arm Cortex-M4 Processor TRM r0p1 (DDI 0439B): 3.3.1 Table 3-1 'Cortex-M4 "
            "instruction set summary', 3.3.2 'Load/store timings', 7.2.3 Table 7-1 "
            "'FPU instruction set'"),
    costs={
        # class          (base, per 32-bit word)         TRM row
        "alu":           (1, 0),   # Table 3-1: MOV/ADD/SUB/logical/shift/compare/extend/bitfield/REV/CLZ/SSAT: 1
        "mul":           (1, 0),   # Table 3-1: MUL/MLA/MLS/SMULL/UMULL/SMLAL/UMLAL 1; DSP rows (SMLAD, SMLABB ...) 1
        "div":           (12, 0),  # Table 3-1: SDIV/UDIV "2 to 12"; worst case used
        "load":          (2, 0),   # Table 3-1: LDR/LDRH/LDRB/LDRSH/LDRSB/LDRT/LDREX 2
                                   # (3.3.2 pipelining applied separately)
        "store":         (1, 0),   # 3.3.2: "STR Rx,[Ry,#imm] is always one cycle" (write buffer)
        "store_reg":     (2, 0),   # Table 3-1: STR/STRH/STRB 2 (register offset; pipelinable after LDR)
        "store_excl":    (2, 0),   # Table 3-1: STREX 2
        "load_dual":     (1, 1),   # Table 3-1: LDRD 1+N, N=2 -> 3
        "store_dual":    (1, 1),   # Table 3-1: STRD 1+N, N=2 -> 3
        "load_multi":    (1, 1),   # Table 3-1: LDM/POP 1+N (+P with PC)
        "store_multi":   (1, 1),   # Table 3-1: STM/PUSH 1+N
        "branch":        (1, 0),   # Table 3-1: B/BL 1+P, B<cc>/CBZ/CBNZ 1 or 1+P
        "branch_reg":    (1, 0),   # Table 3-1: BX/BLX 1+P
        "table_branch":  (2, 0),   # Table 3-1: TBB/TBH 2+P
        "it":            (1, 0),   # Table 3-1: IT 1 (folding not modelled)
        "barrier":       (1, 0),   # Table 3-1: DMB/DSB/ISB 1+B, B=0
        "fp":            (1, 0),   # Table 7-1: VADD/VSUB/VMUL/VNMUL/VABS/VNEG/VCMP/VCVT/VMOV/VMRS/VMSR 1
        "fp_mac":        (3, 0),   # Table 7-1: VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS 3
        "fp_div":        (14, 0),  # Table 7-1: VDIV/VSQRT 14
        "fp_mov2":       (2, 0),   # Table 7-1: VMOV Dm,Rt,Rt2 / two singles <-> two core registers 2
        "vload":         (1, 1),   # Table 7-1: VLDR .32 2, .64 3
        "vstore":        (1, 1),   # Table 7-1: VSTR .32 2, .64 3
        "vload_multi":   (1, 1),   # Table 7-1: VLDM/VPOP 1+N (N words)
        "vstore_multi":  (1, 1),   # Table 7-1: VSTM/VPUSH 1+N (N words)
    },
    refill={"direct": 1, "register": 2, "load": 3},
    load_pipelining=True,
    it_folding=False,
    failed_cost=1,
    literal_load_extra=0,
)


def _v6m_costs(barrier: int) -> Dict[str, Tuple[int, int]]:
    """Armv6-M (M0/M0+) class costs; both TRMs' Table 3-1 agree on everything but branches."""
    return {
        "alu":          (1, 0),   # MOVS/ADDS/SUBS/logical/shift/CMP/extend/REV: 1
        "mul":          (1, 0),   # MULS: "1 or 32" - the fast (single-cycle) multiplier option
        "load":         (2, 0),   # LDR/LDRH/LDRB/LDRSH/LDRSB, immediate or register offset, PC-relative: 2
        "store":        (2, 0),   # STR/STRH/STRB: 2
        "store_reg":    (2, 0),
        "load_multi":   (1, 1),   # LDM/POP: 1+N (POP {..,PC}: + refill, see the tables)
        "store_multi":  (1, 1),   # STM/PUSH: 1+N
        "branch":       (1, 0),   # B<cc> not taken: 1
        "branch_reg":   (1, 0),
        "barrier":      (barrier, 0),  # DMB/DSB/ISB
    }


CORTEX_M0PLUS = CycleTable(
    name="cortex-m0plus",
    source=("Arm Cortex-M0+ Processor TRM r0p1 (DDI 0484C), 3.3 'Instruction set summary', Table 3-1 "
            "'Cortex-M0+ instruction summary' (zero wait states; fast multiplier)"),
    costs=_v6m_costs(barrier=3),
    # Table 3-1: B<cc> 1 or 2, B 2, BX/BLX 2, MOV/ADD PC 2, POP {..,PC} 3+N
    refill={"direct": 1, "register": 1, "load": 2},
    load_pipelining=False,     # 2-stage pipeline: no LDR->LDR overlap rule
    name_costs={"BL": (2, 0)},     # BL 3 = 2 + refill 1
)

CORTEX_M0 = CycleTable(
    name="cortex-m0",
    source=("Arm Cortex-M0 Processor TRM r0p0 (DDI 0432C), 3.3 'Instruction set summary', Table 3-1 "
            "'Cortex-M0 instruction summary' (zero wait states; fast multiplier)"),
    costs=_v6m_costs(barrier=4),
    # Table 3-1: B<cc> 1 or 3, B 3, BX/BLX 3, MOV/ADD PC 3, POP {..,PC} 4+N
    refill={"direct": 2, "register": 2, "load": 3},
    load_pipelining=False,
    name_costs={"BL": (2, 0)},     # BL 4 = 2 + refill 2
)

CORTEX_M3 = CycleTable(
    name="cortex-m3",
    source=("Arm Cortex-M3 Processor TRM r2p1 (DDI 0337I), 18.2 'Processor instruction timings' Table 18-1 "
            "and 18.3 'Load/store timings'"),
    # Same pipeline and load/store rules as the M4 (the two TRMs' 3.3.2 / 18.3 texts
    # are identical); no DSP extension, no FPU; multiplies differ:
    costs={k: v for k, v in CORTEX_M4.costs.items() if not k.startswith(("fp", "v"))},
    refill=dict(CORTEX_M4.refill),
    load_pipelining=True,
    name_costs={
        "MLA": (2, 0), "MLS": (2, 0),          # Table 18-1: MLA/MLS 2
        "SMULL": (5, 0), "UMULL": (5, 0),      # Table 18-1: "3 to 5" (early termination): worst case
        "SMLAL": (7, 0), "UMLAL": (7, 0),      # Table 18-1: "4 to 7": worst case
    },
)

CORTEX_M33 = CycleTable(
    name="cortex-m33",
    source=("Arm Cortex-M33 Processor TRM r0p4 (DDI 0553B) has no per-instruction timing table: the "
            "Cortex-M4 TRM r0p1 (DDI 0439B) Table 3-1 / 3.3.2 / Table 7-1 values are used for this "
            "3-stage Armv8-M Mainline pipeline; its limited dual issue of 16-bit pairs is not modelled"),
    costs=dict(CORTEX_M4.costs),
    refill=dict(CORTEX_M4.refill),
    load_pipelining=True,
)

CORTEX_M7 = CycleTable(
    name="cortex-m7",
    source=("approximation: Arm Cortex-M7 Processor TRM r1p2 (DDI 0489F) 1.2 'Features' (6-stage in-order "
            "superscalar pipeline, dual issue, 64-bit load/store path) - Arm publishes no per-instruction "
            "timings for the M7 - plus the measurements of quinapalus.com 'Cortex-M7 instruction cycle "
            "counts, timings, and dual-issue combinations' (STM32H730, caches on)"),
    costs={
        "alu":          (1, 0),
        "mul":          (1, 0),   # MUL/MLA/SMLAD/SMULL...: single-cycle issue (pipelined MAC)
        "div":          (12, 0),  # SDIV/UDIV: worst case, as on the M4
        "load":         (1, 0),   # single-cycle issue; the result is late: load_use_penalty
        "store":        (1, 0),
        "store_reg":    (1, 0),
        "store_excl":   (1, 0),
        "load_dual":    (1, 0),   # LDRD/STRD: one 64-bit transfer
        "store_dual":   (1, 0),
        "load_multi":   (1, 1),   # LDM/POP/STM/PUSH: 1+N (the 64-bit path is not modelled: over-estimate)
        "store_multi":  (1, 1),
        "branch":       (1, 0),
        "branch_reg":   (1, 0),
        "table_branch": (2, 0),
        "it":           (1, 0),
        "barrier":      (1, 0),
        "fp":           (1, 0),
        "fp_mac":       (1, 0),   # fused/chained MACs issue every cycle (FPv5)
        "fp_div":       (14, 0),
        "fp_mov2":      (1, 0),
        "vload":        (1, 0),
        "vstore":       (1, 0),
        "vload_multi":  (1, 1),
        "vstore_multi": (1, 1),
    },
    # Taken branches: the branch target address cache makes a predicted loop branch
    # cost about one bubble; returns and loads of PC are not predicted (6-stage refill).
    refill={"direct": 1, "register": 4, "load": 4},
    load_pipelining=False,
    dual_issue=True,
    load_use_penalty=1,
)

TABLES: Dict[str, CycleTable] = {t.name: t for t in (CORTEX_M0, CORTEX_M0PLUS, CORTEX_M3, CORTEX_M4,
                                                     CORTEX_M7, CORTEX_M33)}


def get_table(name: str) -> CycleTable:
    """The cycle table called ``name`` (``target.cycle_table``)."""
    try:
        return TABLES[name]
    except KeyError:
        raise RnnskipError(f"no cycle table '{name}'; available: {', '.join(sorted(TABLES))}") from None


# ----------------------------------------------------------------------------
# Decoded instruction (produced by rnnskip.simulator.decode, or by hand in tests)
# ----------------------------------------------------------------------------
@dataclass
class Insn:
    """What the cost model needs to know about one Thumb instruction."""
    address: int
    size: int
    name: str                       # capstone ARM_INS_ name without prefix, e.g. "LDRB"
    cls: str                        # cost class (see INSN_CLASS)
    words: int = 0                  # N: 32-bit words transferred by a multi/dual/VFP transfer
    branch: Optional[str] = None    # writes PC: "direct" | "register" | "load"; else None
    predicated: bool = False        # inside an IT block (condition may fail)
    literal: bool = False           # PC-relative load
    dest: Tuple[int, ...] = ()      # destination register ids of a single load (pipelining)
    addr_regs: Tuple[int, ...] = () # base / index register ids (pipelining)
    writes_sp: bool = False         # changes SP (stack-depth tracking, not timing)
    text: str = ""                  # disassembly, for messages
    mem: object = None              # rnnskip.simulator.decode.MemOp or None
    reads: Tuple[int, ...] = ()     # capstone register ids read (conservative: every register operand)
    writes: Tuple[int, ...] = ()    # capstone register ids written (incl. flags, writeback)
    shifted: bool = False           # shifted-register operand, extend or bitfield (M7 pairing)

    @property
    def is_single_load(self) -> bool:
        return self.cls == "load" and self.branch is None

    @property
    def is_single_ls(self) -> bool:
        return self.cls in ("load", "store", "store_reg") and self.branch is None


def insn_cost(insn: Insn, table: CycleTable) -> Tuple[int, int]:
    """``(cost, taken_extra)`` of an executed, unconditional-or-passing instruction.

    ``cost`` is what the instruction costs if it does not branch (a not-taken
    conditional branch, or any non-branch); ``taken_extra`` is added when it
    does change the PC (``P``, from ``table.refill``). No pipelining discount.
    """
    base, per = table.cost_of_insn(insn)
    c = base + per * insn.words
    if insn.cls == "it" and table.it_folding:
        c = 0
    if insn.literal:
        c += table.literal_load_extra
    extra = table.refill[insn.branch] if insn.branch else 0
    return c, extra


def pipelined(prev: Optional[Insn], insn: Insn, table: CycleTable) -> bool:
    """Section 3.3.2: does ``insn`` get one cycle removed for following ``prev``?"""
    return (table.load_pipelining and prev is not None
            and prev.is_single_load and not prev.predicated
            and insn.is_single_ls and not insn.predicated
            and not (set(prev.dest) & set(insn.addr_regs)))


#: Loads whose destination registers feed ``load_use``.
_LOADS_WITH_DEST = frozenset({"load", "load_dual", "load_multi", "vload", "vload_multi"})

#: DSP / SIMD instructions: on the M7 they dual-issue only as the older (first)
#: instruction of a pair (observation in the M7 table's sources).
DSP_NAMES = frozenset(
    "SADD16 SADD8 SASX SSAX SSUB16 SSUB8 UADD16 UADD8 UASX USAX USUB16 USUB8 "
    "QADD QSUB QDADD QDSUB QADD16 QADD8 QASX QSAX QSUB16 QSUB8 UQADD16 UQADD8 UQASX UQSAX UQSUB16 UQSUB8 "
    "SHADD16 SHADD8 SHASX SHSAX SHSUB16 SHSUB8 UHADD16 UHADD8 UHASX UHSAX UHSUB16 UHSUB8 "
    "SXTB16 SXTAB16 UXTB16 UXTAB16 SEL SSAT16 USAT16 PKHBT PKHTB USAD8 USADA8 "
    "SMLABB SMLABT SMLATB SMLATT SMLAWB SMLAWT SMLAD SMLADX SMLSD SMLSDX "
    "SMLALBB SMLALBT SMLALTB SMLALTT SMLALD SMLALDX SMLSLD SMLSLDX "
    "SMMLA SMMLAR SMMLS SMMLSR SMMUL SMMULR SMUAD SMUADX SMUSD SMUSDX "
    "SMULBB SMULBT SMULTB SMULTT SMULWB SMULWT REV REV16 REVSH".split())

#: Classes that may take part in a dual-issue pair (single-cycle issue).
_PAIRABLE = frozenset({"alu", "mul", "load", "store", "store_reg", "fp", "vload", "vstore", "branch"})
_MEM_CLASSES = LOAD_CLASSES | STORE_CLASSES


def load_use(prev: Optional[Insn], insn: Insn) -> bool:
    """``insn`` reads a register that ``prev`` (a load) has just loaded."""
    if prev is None or prev.cls not in _LOADS_WITH_DEST or prev.branch:
        return False
    loaded = set(prev.dest) if prev.dest else set(prev.writes)
    return bool(loaded & set(insn.reads))


def dual_issues(prev: Optional[Insn], insn: Insn) -> bool:
    """Cortex-M7 model: may ``insn`` issue in the same cycle as ``prev``?

    Both single-cycle classes (ALU, multiply/MAC, single load/store, FP
    data-processing or single VLDR/VSTR; a branch only as the second); not both
    memory accesses (one load/store unit issue per cycle), not both multiplies
    (one MAC pipeline), not both with a shifted operand / extend / bitfield;
    DSP/SIMD only as the first; neither inside an IT block nor the IT itself;
    ``insn`` neither reads nor writes a register ``prev`` writes (a conditional
    branch after the flag-setting ``prev`` is allowed: it is predicted).
    """
    if prev is None or prev.branch or prev.predicated or insn.predicated:
        return False
    if prev.cls not in _PAIRABLE or insn.cls not in _PAIRABLE or prev.cls == "branch":
        return False
    if prev.cls in _MEM_CLASSES and insn.cls in _MEM_CLASSES:
        return False
    if prev.cls == "mul" and insn.cls == "mul":
        return False
    if prev.shifted and insn.shifted:
        return False
    if insn.name in DSP_NAMES:
        return False
    w = set(prev.writes)
    if insn.cls == "branch":        # predicted: only a register operand (CBZ/CBNZ) must be ready
        return not (w & set(insn.reads))
    return not (w & set(insn.reads)) and not (w & set(insn.writes))


@dataclass
class BlockCost:
    """Static cost of a basic block, split the way the emulator consumes it."""
    cost: int                 # all instructions; IT-predicated ones at failed_cost; final branch not taken
    taken_extra: int          # added when the block's final instruction changes the PC
    pass_delta: Dict[int, int] = field(default_factory=dict)  # IT-predicated addr -> extra when it passes
    fetch_words: int = 0      # aligned 32-bit words the block's code spans


def fetch_words(address: int, size: int) -> int:
    """Number of aligned 32-bit words covering ``[address, address + size)``."""
    if size <= 0:
        return 0
    return ((address + size + 3) >> 2) - (address >> 2)


def analyse_block(insns: Sequence[Insn], table: CycleTable) -> BlockCost:
    """Static cost of a straight-line sequence (a basic block)."""
    total = 0
    taken_extra = 0
    pass_delta: Dict[int, int] = {}
    prev: Optional[Insn] = None
    last = len(insns) - 1
    prev_second = False              # prev issued as the second of a dual-issue pair
    for i, ins in enumerate(insns):
        c, extra = insn_cost(ins, table)
        if pipelined(prev, ins, table):
            c = max(1, c - 1)
        if table.load_use_penalty and load_use(prev, ins):
            c += table.load_use_penalty
            prev_second = False
        elif table.dual_issue and not prev_second and dual_issues(prev, ins):
            c = max(0, c - 1)       # issues in the same cycle as prev
            prev_second = True
        else:
            prev_second = False
        if ins.predicated:
            if ins.branch and i == last:
                # Passing == branching: the whole difference is charged on "taken".
                taken_extra = c + extra - table.failed_cost
            else:
                d = c - table.failed_cost
                if d:
                    pass_delta[ins.address] = d
            total += table.failed_cost
        else:
            total += c
            if i == last:
                taken_extra = extra
        prev = ins
    if insns:
        start = insns[0].address
        end = insns[-1].address + insns[-1].size
        fw = fetch_words(start, end - start)
    else:
        fw = 0
    return BlockCost(total, taken_extra, pass_delta, fw)


def block_cost(insns: Sequence[Insn], table: CycleTable, next_taken: bool,
               it_passed: Container[int] = (), wait_states: int = 0,
               flash_data_accesses: int = 0) -> int:
    """Cycles for one execution of a basic block.

    ``next_taken``: the block's final instruction changed the PC (the next block
    is not the fall-through). ``it_passed``: addresses of IT-predicated
    instructions whose condition passed (the rest cost ``failed_cost``).
    ``wait_states``: flash wait states, charged per instruction-fetch word of the
    block and per flash data access (``flash_data_accesses``); pass 0 for code
    in zero-wait-state memory.
    """
    bc = analyse_block(insns, table)
    total = bc.cost + sum(d for a, d in bc.pass_delta.items() if a in it_passed)
    if next_taken:
        total += bc.taken_extra
    return total + wait_states * (bc.fetch_words + flash_data_accesses)
