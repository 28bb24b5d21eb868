"""Run firmware functions under Unicorn and measure them.

``UnicornEmulator(elf, target)`` loads an ELF built with the rnnskip runtime
into an emulated Cortex-M (the core selected by ``target.unicorn_cpu``) in the
state right after ``Reset_Handler``'s copy/zero loops - without running it -
and then calls individual functions with :meth:`UnicornEmulator.call`.

Counting
--------
Both modes use one ``UC_HOOK_BLOCK`` callback. Every basic block is decoded once
(capstone; the whole ELF's code is swept at load time using the ``$t``/``$d``
mapping symbols so IT blocks are tracked) and its static cost computed with
:mod:`rnnskip.simulator.cycles`. Per executed block the callback adds its
instruction count and cost; whether the previous block's final instruction
branched is resolved at the next callback (next address != fall-through) and
charges the refill penalty.

Instructions inside IT blocks whose condition fails do execute (1 cycle each),
but Unicorn runs no code hook for them; every IT-predicated instruction whose
cost or memory traffic depends on passing gets a single-address ``UC_HOOK_CODE``
hook (installed at load), which therefore runs exactly when it passes and adds
the difference. (No memory read/write hooks are used anywhere: they corrupt
execution in Unicorn 2.1.4.)

* ``mode="exact"``: additionally a ``UC_HOOK_CODE`` callback on the address
  ranges holding load/store instructions computes each access's effective
  address from the registers before the instruction runs, classifies it (flash
  / SRAM / other) and counts bytes and bus transfers. The per-PC results are
  accumulated into a *profile*. ``traffic_exact=True``.
* ``mode="blocks"`` (default, fast): traffic = for every executed load/store,
  its bytes and transfers attributed to regions by that PC's profile (the
  fraction of its past exact-mode executions that hit flash / SRAM / other).
  PC-relative (literal pool, TBB/TBH) and SP-relative accesses have a static
  region and need no profile. A load/store with neither a static region nor a
  profile is counted in ``CallStats.unprofiled`` and contributes *no* traffic.
  ``traffic_exact`` is always False in this mode: it is a profile-based
  estimate (exact when every such PC always hits the same region, which is the
  case for rnnskip kernels whose weights live in flash and state in SRAM).

Cycles and instruction counts are identical in both modes. Flash wait states
are charged per instruction-fetch word (both modes identically) and per flash
data access (from the exact or estimated traffic).

Memory system
-------------
When the target carries a board's memory system (``target.memory_system``,
:mod:`rnnskip.simulator.memory`), the per-word wait states are off and the
model is fed instead: each executed block's code bytes (from the block hook)
and each load's effective address (from the exact-mode code hook, which every
call then installs: the cache needs addresses, so such calls are always
``mode="exact"``). The stall cycles it returns are added to the cycles. Every
call starts from cold caches and empty buffers, so a sequence's count does not
depend on which sequences ran before it in the same worker process.
"""
from __future__ import annotations

import bisect
import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import unicorn
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from unicorn import arm_const as UA

from ..errors import RnnskipError
from . import cycles as _cycles
from .decode import FLASH, OTHER, SRAM, Decoder
from .memory import MemorySystem

MAGIC_BASE = 0x1FFF0000          # unused in the Code region on every target we model
MAGIC_SIZE = 0x1000
MAGIC_RETURN = MAGIC_BASE + 0x100
STACK_PAINT = b"\xef\xbe\xad\xde"   # 0xDEADBEEF little-endian

_INTR_NAMES = {1: "undefined instruction (UsageFault)", 2: "SVC", 3: "prefetch abort / bad branch target",
               4: "data abort (BusFault)", 5: "IRQ", 6: "FIQ", 7: "BKPT", 8: "exception exit",
               17: "coprocessor access (UsageFault NOCP, FPU disabled?)",
               18: "invalid state (UsageFault INVSTATE)", 19: "stack limit (STKOF)",
               22: "unaligned access (UsageFault)", 23: "divide by zero (UsageFault)"}


class EmulationError(RnnskipError):
    """Firmware misbehaved under emulation (fault, runaway, missing symbol)."""


@dataclass
class CallStats:
    """Measurements of one :meth:`UnicornEmulator.call`.

    Traffic counts bus transfers (``flash_reads`` etc.: 1 per LDR/LDRB/LDRH,
    2 per LDRD/VLDR.64, N per LDM/POP/VLDM of N words) and bytes. Instruction
    fetches are not traffic (see ``fetch_words``).
    """
    instructions: int = 0
    cycles: int = 0
    flash_read_bytes: int = 0
    sram_read_bytes: int = 0
    sram_write_bytes: int = 0
    flash_reads: int = 0
    sram_reads: int = 0
    sram_writes: int = 0
    traffic_exact: bool = True
    return_value: int = 0           # r0 as unsigned 32-bit
    mode: str = "blocks"
    fetch_words: int = 0            # 32-bit instruction-fetch words (charged ws each)
    other_bytes: int = 0            # accesses outside flash/SRAM (peripherals)
    unprofiled: int = 0             # blocks mode: executed load/stores with unknown region
    memory: Optional[dict] = None   # memory-system counters (MemorySystem.counters()); None without one

    @property
    def flash_line_fills(self) -> float:
        return self._mem("flash_line_fills")

    @property
    def stall_cycles(self) -> float:
        return self._mem("stall_cycles")

    @property
    def icache_hits(self) -> float:
        return self._cache("cache_hits", "icache")

    @property
    def icache_misses(self) -> float:
        return self._cache("cache_misses", "icache")

    @property
    def dcache_hits(self) -> float:
        return self._cache("cache_hits", "dcache")

    @property
    def dcache_misses(self) -> float:
        return self._cache("cache_misses", "dcache")

    def _mem(self, key: str) -> float:
        """A memory-system counter; NaN (not measured) without a memory system."""
        return float("nan") if self.memory is None else float(self.memory[key])

    def _cache(self, kind: str, cache: str) -> float:
        if self.memory is None:
            return float("nan")
        d = self.memory[kind]
        if cache == "icache" and "cache" in d:      # a unified cache
            return float(d["cache"])
        return float(d[cache]) if cache in d else float("nan")

    @property
    def return_signed(self) -> int:
        v = self.return_value
        return v - (1 << 32) if v & 0x80000000 else v


# Raw ctypes callbacks for the hot hooks: the Python binding's generic wrapper
# (exception capture + argument shuffling) roughly doubles the per-call cost.
_CODE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p)

#: engines inside emu_start in this process, and exceptions that signals asked for meanwhile
_RUNNING: List["unicorn.Uc"] = []
_PENDING: List[BaseException] = []


def interrupt_emulation(exc: BaseException) -> bool:
    """For signal handlers: when an emulation is running, stop it and have ``exc``
    raised once ``emu_start`` has returned (an exception raised inside a hook, which
    runs under a ctypes callback, would be printed and ignored). False when no
    emulation is running: raise ``exc`` yourself."""
    if not _RUNNING:
        return False
    _PENDING.append(exc)
    for uc in list(_RUNNING):
        uc.emu_stop()
    return True


def _fast_reg_reader(uc):
    """``read(reg_id) -> int`` for 32-bit core registers, bypassing the binding's dispatch."""
    try:
        from unicorn.unicorn_py3.unicorn import uclib
        uch = uc._uch
        buf = ctypes.c_uint64(0)
        ref = ctypes.byref(buf)
        fn = uclib.uc_reg_read
        uc.reg_read(UA.UC_ARM_REG_R0)         # the binding works at all

        def read(rid):
            fn(uch, rid, ref)
            return buf.value & 0xFFFFFFFF
        if read(UA.UC_ARM_REG_SP) != uc.reg_read(UA.UC_ARM_REG_SP):
            raise AttributeError
        return read
    except (ImportError, AttributeError):
        return uc.reg_read


def _fmt_ctx(context) -> str:
    return f" ({context})" if context else ""


class UnicornEmulator:
    """An emulated Cortex-M with one firmware image loaded.

    State (RAM contents, the exact-mode profile) persists across calls;
    :meth:`reset` restores RAM to the post-reset image.
    """

    def __init__(self, elf_path, target, max_instructions: int = 50_000_000):
        if not target.unicorn_cpu:
            raise EmulationError(f"target {target.name} cannot run under Unicorn: "
                                 + target.raw.get("unicorn_missing", "no Unicorn CPU model for this core"))
        self.elf_path = Path(elf_path)
        self.target = target
        self.max_instructions = int(max_instructions)
        self.table = _cycles.get_table(target.cycle_table)
        self.ws = int(target.flash_wait_states)
        self._flash = (target.flash_origin, target.flash_origin + target.flash_size)
        spec = target.memory_system
        self.memory = MemorySystem(spec, self._flash) if spec is not None else None
        if self.memory is not None:
            self.ws = 0                   # the memory system charges fills, not words
        #: a list to record the memory-system input stream into (tests): ("i", start, end) per
        #: executed block, ("d", address, nbytes) per data access
        self.stream: Optional[list] = None
        self._ram = (target.ram_origin, target.ram_origin + target.ram_size)

        self._read_elf()
        self._init_uc()
        self._load_image()
        self._sweep()

        # per-PC exact-mode profile: pc -> [flash execs, sram execs, other execs]
        self.profile: Dict[int, List[int]] = {}
        self._blocks: Dict[int, list] = {}
        # Blocks whose start address is already cached with another size (rare: a TB
        # retranslated differently); kept separately so no execution count is lost.
        self._alt_blocks: Dict[Tuple[int, int], list] = {}
        # instructions, cycles, expected fall-through, pending taken extra, mid-word re-fetches,
        # step limit, previous block changed SP, lowest SP seen
        self._state = [0, 0, -1, 0, 0, 0, 0, self._estack]
        self._min_sp = self._estack
        self._pred_passes: Dict[int, int] = {}
        self._exact_counts: Dict[int, List[int]] = {}
        self._install_hooks()
        #: --weights sram|tcm: the start-up copy of the weights, run once here (CallStats), else None
        self.weights_copy: Optional[CallStats] = None
        self._copy_weights()

    def _copy_weights(self) -> None:
        """Firmware whose weights run from RAM (--weights sram|tcm) copies them there at start-up
        (startup.c's rnnskip_copy_weights): run that copy for real, on a zeroed destination, so the
        weights every inference reads are the ones it copied, and keep what it cost (once, not per
        inference)."""
        if "rnnskip_copy_weights" not in self._syms:
            return
        lo, hi = self.symbol("_sweights")[0], self.symbol("_eweights")[0]
        if hi > lo:
            self.uc.mem_write(lo, bytes(hi - lo))
        self.weights_copy = self.call("rnnskip_copy_weights", context="start-up copy of the weights", mode="exact")
        self.weights_bytes = hi - lo
        self.weights_address = lo

    # ------------------------------------------------------------------ ELF
    def _read_elf(self) -> None:
        try:
            with open(self.elf_path, "rb") as fh:
                elf = ELFFile(fh)
                if elf["e_machine"] != "EM_ARM":
                    raise EmulationError(f"{self.elf_path.name} is not an Arm ELF ({elf['e_machine']})")
                self._segments = []
                for seg in elf.iter_segments():
                    if seg["p_type"] == "PT_LOAD":
                        self._segments.append((seg["p_paddr"], seg["p_vaddr"], seg.data(), seg["p_memsz"]))
                self._exec_sections = []
                exec_idx = set()
                for idx, sec in enumerate(elf.iter_sections()):
                    if sec["sh_flags"] & 0x4 and sec["sh_type"] == "SHT_PROGBITS":  # SHF_EXECINSTR
                        self._exec_sections.append((sec["sh_addr"], sec.data()))
                        exec_idx.add(idx)
                symtab = elf.get_section_by_name(".symtab")
                if symtab is None:
                    raise EmulationError(f"{self.elf_path.name} has no symbol table; "
                                         "do not strip firmware for emulation")
                self._syms: Dict[str, Tuple[int, int]] = {}
                self._funcs: List[Tuple[int, int, str]] = []
                self._mapping: List[Tuple[int, str]] = []
                for s in symtab.iter_symbols():
                    name, val, size, typ = s.name, s["st_value"], s["st_size"], s["st_info"]["type"]
                    if not name:
                        continue
                    if name[0] == "$":
                        # only code sections' mapping symbols: a $d in .debug_frame has a
                        # section offset for a value, which collides with code at address 0
                        if s["st_shndx"] in exec_idx:
                            self._mapping.append((val, name[1]))
                        continue
                    if typ == "STT_FUNC":
                        val &= ~1
                        self._funcs.append((val, size, name))
                    if typ in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") and s["st_shndx"] != "SHN_UNDEF":
                        if name not in self._syms or typ != "STT_NOTYPE":
                            self._syms[name] = (val, size)
        except FileNotFoundError:
            raise EmulationError(f"firmware ELF not found: {self.elf_path}") from None
        except ELFError as e:
            raise EmulationError(f"cannot read firmware ELF {self.elf_path}: {e}") from None
        self._funcs.sort()
        self._func_addrs = [f[0] for f in self._funcs]
        self._mapping.sort()
        sym = self._syms
        self._estack = sym.get("_estack", (self._ram[1], 0))[0]
        self._stack_end = sym.get("__stack_end", (self._estack, 0))[0]
        self._stack_start = sym.get("__stack_start", (self._stack_end - self.target.stack_size, 0))[0]

    def _region(self, addr: int) -> int:
        if self._flash[0] <= addr < self._flash[1]:
            return FLASH
        if self._ram[0] <= addr < self._ram[1]:
            return SRAM
        return OTHER

    # ------------------------------------------------------------- unicorn
    def _init_uc(self) -> None:
        t = self.target
        try:
            uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
            cpu = getattr(UA, t.unicorn_cpu, None)
            if cpu is None:
                raise EmulationError(f"target {t.name}: unknown unicorn_cpu '{t.unicorn_cpu}'")
            uc.ctl_set_cpu_model(cpu)
            uc.mem_map(t.flash_origin, t.flash_size, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
            uc.mem_map(t.ram_origin, t.ram_size, unicorn.UC_PROT_ALL)
            uc.mem_map(MAGIC_BASE, MAGIC_SIZE, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
            uc.mem_write(MAGIC_BASE, b"\xfe\xe7" * (MAGIC_SIZE // 2))   # b . everywhere
            if t.fpu:
                # CPACR CP10/CP11 full access (what Reset_Handler does); FPEXC.EN.
                for reg, val in ((UA.UC_ARM_REG_C1_C0_2, 0xF << 20), (UA.UC_ARM_REG_FPEXC, 1 << 30)):
                    try:
                        uc.reg_write(reg, val)
                    except unicorn.UcError:
                        pass
        except unicorn.UcError as e:
            raise EmulationError(f"cannot set up the {t.name} emulator: {e}") from None
        self.uc = uc

    def _load_image(self) -> None:
        uc = self.uc
        try:
            uc.mem_write(self._ram[0], bytes(self._ram[1] - self._ram[0]))
            for paddr, vaddr, data, memsz in self._segments:
                if data:
                    uc.mem_write(paddr, data)          # load image (flash)
                    if vaddr != paddr:
                        uc.mem_write(vaddr, data)      # .data at its VMA (what Reset_Handler copies)
                if memsz > len(data):
                    uc.mem_write(vaddr + len(data), bytes(memsz - len(data)))   # .bss
        except unicorn.UcError as e:
            raise EmulationError(f"{self.elf_path.name} does not fit the {self.target.name} memory map "
                                 f"(flash 0x{self._flash[0]:08x}+{self.target.flash_size}, "
                                 f"RAM 0x{self._ram[0]:08x}+{self.target.ram_size}): {e}") from None
        n = self._stack_end - self._stack_start
        if n > 0:
            uc.mem_write(self._stack_start, STACK_PAINT * (n // 4))

    def reset(self) -> None:
        """Restore RAM to the post-reset image (.data copied, .bss zeroed, weights copied to RAM
        when the firmware places them there, stack repainted)."""
        self._load_image()
        self._min_sp = self._estack

    def _sweep(self) -> None:
        """Decode all code once (Thumb spans per the $t/$d mapping symbols)."""
        self.insns: Dict[int, _cycles.Insn] = {}
        dec = Decoder(self._region)
        maps = self._mapping
        for addr, data in self._exec_sections:
            end = addr + len(data)
            marks = [(a, k) for a, k in maps if addr <= a < end]
            if not marks:
                marks = [(addr, "t")]
            elif marks[0][0] != addr:
                marks.insert(0, (addr, "t"))
            for i, (a, kind) in enumerate(marks):
                if kind != "t":
                    continue
                b = marks[i + 1][0] if i + 1 < len(marks) else end
                dec.it_left = 0
                pos = a
                while pos < b:
                    out = dec.decode(data[pos - addr:b - addr], pos)
                    for ins in out:
                        self.insns[ins.address] = ins
                    pos = out[-1].address + out[-1].size if out else pos
                    if pos < b:          # undecodable halfword (inline data without $d): skip it
                        pos += 2
                        dec.it_left = 0

    # --------------------------------------------------------------- hooks
    def _install_hooks(self) -> None:
        uc = self.uc
        self._fault = None
        self._intr = None
        self._hook_error = None
        self._fast_hook(unicorn.UC_HOOK_BLOCK, self._make_block_hook())
        uc.hook_add(unicorn.UC_HOOK_MEM_INVALID, self._on_invalid)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        # IT-predicated instructions whose pass matters: one hook per address.
        pred = []
        for a, ins in self.insns.items():
            if ins.predicated and (ins.mem is not None or self._pass_delta_of(ins)):
                pred.append(a)
        self._pred_hook_addrs = sorted(pred)
        self._pred_set = frozenset(pred)
        if pred:
            cb = self._make_pred_hook()
            for a in self._pred_hook_addrs:
                self._fast_hook(unicorn.UC_HOOK_CODE, cb, a, a)
        # address ranges holding load/stores, for exact mode
        self._mem_ops = {a: ins.mem for a, ins in self.insns.items() if ins.mem is not None}
        mem_pcs = sorted(self._mem_ops)
        self._mem_ranges = self._merge_ranges(mem_pcs)
        self._exact_hooks: List[int] = []

    def _fast_hook(self, htype: int, raw, begin: int = 1, end: int = 0) -> int:
        """Register ``raw(handle, address, size, user)`` as a code/block hook with a raw ctypes
        callback (the binding's own dispatch costs a Python call per event). ``raw`` must catch
        every exception itself and pass it to :meth:`_hook_failed`: none may cross the C
        boundary. Falls back to ``uc.hook_add``."""
        uc = self.uc
        adder = getattr(uc, "_Uc__do_hook_add", None)
        if adder is None:
            return uc.hook_add(htype, lambda _uc, a, sz, _u: raw(None, a, sz, None), begin=begin, end=end)
        return adder(htype, _CODE_CB(raw), begin, end)

    def _hook_failed(self, e: BaseException) -> None:
        """An exception in one of our hooks: kept in ``self._hook_error`` (re-raised by
        :meth:`call`) and the emulation stops, as the binding does."""
        if self._hook_error is None:
            self._hook_error = e
        self.uc.emu_stop()

    def _pass_delta_of(self, ins) -> int:
        c, _ = _cycles.insn_cost(ins, self.table)
        if ins.branch:
            return 0
        return c - self.table.failed_cost

    def _merge_ranges(self, pcs: List[int], max_ranges: int = 48) -> List[Tuple[int, int]]:
        if not pcs:
            return []
        ranges = [[pcs[0], pcs[0]]]
        for a in pcs[1:]:
            if a - ranges[-1][1] <= 8:
                ranges[-1][1] = a
            else:
                ranges.append([a, a])
        while len(ranges) > max_ranges:   # merge the smallest gaps
            gaps = sorted(range(len(ranges) - 1), key=lambda i: ranges[i + 1][0] - ranges[i][1])
            drop = set(gaps[:len(ranges) - max_ranges])
            merged = []
            for i, r in enumerate(ranges):
                if merged and (i - 1) in drop:
                    merged[-1][1] = r[1]
                else:
                    merged.append(list(r))
            ranges = merged
        return [(lo, hi) for lo, hi in ranges]

    def _make_block_hook(self):
        blocks = self._blocks
        state = self._state
        new_block = self._new_block
        SP = UA.UC_ARM_REG_SP

        uc = self.uc
        reg_read = _fast_reg_reader(uc)
        emu_stop = uc.emu_stop
        mem = self.memory
        fetch_range = mem.fetch_range if mem is not None else None
        me = self
        fail = self._hook_failed

        def on_block(_h, address, size, _u):
            try:
                b = blocks.get(address)
                if b is None or b[7] != size:
                    b = new_block(address, size)
                st = state
                if fetch_range is not None:
                    st[1] += fetch_range(address, address + size)
                    if me.stream is not None:
                        me.stream.append(("i", address, address + size))
                if st[6]:                       # the previous block moved SP: sample it now
                    sp = reg_read(SP)
                    if sp < st[7]:
                        st[7] = sp
                st[6] = b[9]
                if address == st[2]:
                    st[4] += b[5]
                    st[1] += b[10]
                else:
                    st[1] += st[3]
                st[1] += b[1]
                st[0] += b[0]
                st[2] = b[2]
                st[3] = b[3]
                b[4] += 1
                if st[0] > st[5]:
                    emu_stop()
            except BaseException as e:      # never across the C boundary
                fail(e)
        return on_block

    def _make_pred_hook(self):
        state = self._state
        delta = {a: self._pass_delta_of(self.insns[a]) for a in self._pred_hook_addrs}
        passes = self._pred_passes
        fail = self._hook_failed

        def on_pred(_h, address, size, _u):
            try:
                state[1] += delta[address]
                passes[address] = passes.get(address, 0) + 1
            except BaseException as e:
                fail(e)
        return on_pred

    def _make_mem_hook(self):
        mem_ops = self._mem_ops
        counts = self._exact_counts
        reg_read = _fast_reg_reader(self.uc)
        flo, fhi = self._flash
        rlo, rhi = self._ram
        mem = self.memory
        state = self._state
        me = self
        fail = self._hook_failed
        PC = UA.UC_ARM_REG_PC

        def on_mem(_h, address, size, _u):
            try:
                m = mem_ops.get(address)
                if m is None:               # the hooked ranges also hold other instructions
                    return
                r = m.region
                if r is None or (mem is not None and r == FLASH):
                    ea = (m.pc_value if m.base == PC else reg_read(m.base)) + m.disp
                    if m.index:
                        ea += reg_read(m.index) << m.shift
                    ea &= 0xFFFFFFFF
                    r = 0 if flo <= ea < fhi else (1 if rlo <= ea < rhi else 2)
                    if mem is not None and r == FLASH and m.is_load:
                        state[1] += mem.read(ea, m.nbytes)
                        if me.stream is not None:
                            me.stream.append(("d", ea, m.nbytes))
                c = counts.get(address)
                if c is None:
                    c = counts[address] = [0, 0, 0]
                c[r] += 1
            except BaseException as e:
                fail(e)
        return on_mem

    def _new_block(self, address: int, size: int) -> list:
        alt = self._alt_blocks.get((address, size))
        if alt is not None:
            return alt
        insns = []
        pc, end = address, address + size
        while pc < end:
            ins = self.insns.get(pc)
            if ins is None:
                break
            insns.append(ins)
            pc += ins.size
        if pc != end:     # code outside the sweep (e.g. copied to RAM): decode on the fly
            code = bytes(self.uc.mem_read(address, size))
            insns = Decoder(self._region).decode(code, address)
            for i in insns:                # traffic accounting looks load/stores up by PC
                self.insns.setdefault(i.address, i)
        bc = _cycles.analyse_block(insns, self.table)
        ws = self.ws
        static = bc.cost + ws * bc.fetch_words
        mid = 1 if address & 3 else 0      # fall-through entry shares its first word
        # plain load/stores counted per block execution; predicated ones by their hook
        mem = tuple(i.address for i in insns if i.mem is not None and not (
            i.predicated and i.address in self._pred_set))
        # [n, static cost, fall-through, taken extra, execs, mid-word refetch, mem pcs, size, fetch words,
        #  writes SP, fall-through adjustment]
        b = [len(insns), static, end, bc.taken_extra, 0, mid, mem, size, bc.fetch_words,
             any(i.writes_sp for i in insns), self._fall_through_adjustment(address, insns)]
        if address in self._blocks:
            self._alt_blocks[(address, size)] = b
        else:
            self._blocks[address] = b
        return b

    def _fall_through_adjustment(self, address: int, insns: list) -> int:
        """Cycles to add when the block is entered by falling through from the instruction
        before it. Unicorn also ends blocks where the code does not branch (page boundaries,
        block size limits); the core's pipeline does not, so the pairing rules (load
        pipelining, load-use stalls, dual issue) apply across such a split exactly as inside
        a block. 0 when the block is entered by a branch (a refill separates the two)."""
        pred = next((p for p in (self.insns.get(address - 2), self.insns.get(address - 4))
                     if p is not None and p.address + p.size == address), None)
        if pred is None or not insns:
            return 0
        joined = _cycles.analyse_block([pred] + list(insns), self.table).cost
        return joined - _cycles.analyse_block([pred], self.table).cost - _cycles.analyse_block(insns, self.table).cost

    def _all_blocks(self):
        yield from self._blocks.values()
        yield from self._alt_blocks.values()

    def _on_invalid(self, uc, access, address, size, value, _user):
        kinds = {unicorn.UC_MEM_READ_UNMAPPED: "read of unmapped", unicorn.UC_MEM_WRITE_UNMAPPED: "write to unmapped",
                 unicorn.UC_MEM_FETCH_UNMAPPED: "instruction fetch from unmapped",
                 unicorn.UC_MEM_WRITE_PROT: "write to read-only", unicorn.UC_MEM_READ_PROT: "read of protected",
                 unicorn.UC_MEM_FETCH_PROT: "instruction fetch from non-executable"}
        self._fault = (kinds.get(access, "invalid access to"), address, size)
        return False

    def _on_intr(self, uc, intno, _user):
        self._intr = intno
        uc.emu_stop()

    # ------------------------------------------------------------ symbols
    def symbol(self, name: str) -> Tuple[int, int]:
        """``(address, size)`` of an ELF symbol (functions: Thumb bit cleared)."""
        try:
            return self._syms[name]
        except KeyError:
            raise EmulationError(
                f"symbol '{name}' not found in {self.elf_path.name}; check the name and that "
                f"--gc-sections kept it (build_firmware(keep=[...]))") from None

    def describe(self, pc: int) -> str:
        """``0x08000116 <crash+0x2>``: an address with the nearest function symbol."""
        i = bisect.bisect_right(self._func_addrs, pc) - 1
        s = f"0x{pc:08x}"
        if i >= 0:
            a, size, name = self._funcs[i]
            if pc < a + max(size, 1) or size == 0:
                s += f" <{name}+0x{pc - a:x}>" if pc != a else f" <{name}>"
        return s

    def _addr(self, where: Union[str, int], offset: int, size: int) -> int:
        if isinstance(where, str):
            addr, ssize = self.symbol(where)
            if ssize and offset + size > ssize:
                raise EmulationError(f"access of {size} bytes at offset {offset} overruns '{where}' "
                                     f"({ssize} bytes)")
            return addr + offset
        return int(where) + offset

    def write(self, where: Union[str, int], data: bytes, offset: int = 0) -> None:
        """Write ``data`` at symbol/address ``where`` + ``offset`` (flash included)."""
        data = bytes(data)
        addr = self._addr(where, offset, len(data))
        try:
            self.uc.mem_write(addr, data)
        except unicorn.UcError as e:
            raise EmulationError(f"cannot write {len(data)} bytes at 0x{addr:08x}: {e}") from None

    def read(self, where: Union[str, int], size: int, offset: int = 0) -> bytes:
        """Read ``size`` bytes at symbol/address ``where`` + ``offset``."""
        addr = self._addr(where, offset, size)
        try:
            return bytes(self.uc.mem_read(addr, size))
        except unicorn.UcError as e:
            raise EmulationError(f"cannot read {size} bytes at 0x{addr:08x}: {e}") from None

    def reg(self, name: str) -> int:
        """Read a register by name (``"r0"``, ``"s0"``, ``"sp"``...)."""
        rid = getattr(UA, "UC_ARM_REG_" + name.upper(), None)
        if rid is None:
            raise EmulationError(f"unknown register '{name}'")
        return self.uc.reg_read(rid)

    # ---------------------------------------------------------------- stack
    def stack_high_water(self) -> int:
        """Bytes of stack ever used since load/reset.

        The larger of: the painted-stack scan (lowest word no longer holding the
        paint pattern) and the lowest SP seen after any block that moved SP
        (catches frames that are reserved but not fully written).
        """
        n = self._stack_end - self._stack_start
        used_sp = max(0, self._estack - self._min_sp)
        if n <= 0:
            return used_sp
        mem = bytes(self.uc.mem_read(self._stack_start, n))
        if mem == STACK_PAINT * (n // 4):
            return used_sp
        off = next(o for o in range(0, n, 4) if mem[o:o + 4] != STACK_PAINT)
        return max(used_sp, n - off)

    # -------------------------------------------------------------- profile
    def merge_profile(self, profile: Dict[int, Sequence[int]]) -> None:
        """Add another emulator's ``profile`` (same ELF) to this one's, e.g. to give
        worker processes the traffic profile learned by exact calls elsewhere."""
        for pc, c in profile.items():
            if pc not in self.insns or self.insns[pc].mem is None:
                continue
            p = self.profile.setdefault(int(pc), [0, 0, 0])
            for r in range(3):
                p[r] += int(c[r])

    # ----------------------------------------------------------------- call
    def function_cycles(self, stats: CallStats) -> Dict[str, int]:
        """Cycles of the last call (``stats``, what it returned) by function symbol.

        Each executed block's static cost (cycle-table cost plus wait states on its
        instruction fetch) times its executions, credited to the function symbol that
        contains the block. What the cycle model adds per *event* (taken-branch
        refills, IT-block instructions whose condition passes, data wait states, fetch
        words shared across blocks, pairing across a fall-through block split, a memory
        system's stalls) is not
        tied to one block: it is reported under ``"(branches, wait states)"``, so the
        values sum to ``stats.cycles``. Inlined code counts for the function it was
        inlined into.
        """
        out: Dict[str, int] = {}
        fa, funcs = self._func_addrs, self._funcs
        for b in self._all_blocks():
            if not b[4]:
                continue
            addr = b[2] - b[7]
            i = bisect.bisect_right(fa, addr) - 1
            name = funcs[i][2] if i >= 0 and addr < funcs[i][0] + max(funcs[i][1], 1) else "(no symbol)"
            out[name] = out.get(name, 0) + b[4] * b[1]
        rest = int(stats.cycles) - sum(out.values())
        if rest:
            out["(branches, wait states)"] = rest
        return out

    def call(self, func: str, args: Sequence[Union[int, str]] = (), context: Optional[str] = None,
             mode: str = "blocks") -> CallStats:
        """Call ``func(*args)`` (AAPCS; str args are symbol addresses) and measure it."""
        if mode not in ("blocks", "exact"):
            raise EmulationError(f"unknown emulation mode '{mode}' (use 'blocks' or 'exact')")
        if self.memory is not None:
            mode = "exact"                # the caches need every data address
            self.memory.reset()
        addr, _ = self.symbol(func)
        uc = self.uc
        vals = [self.symbol(a)[0] if isinstance(a, str) else int(a) & 0xFFFFFFFF for a in args]
        sp = self._estack
        extra = vals[4:]
        if extra:
            sp = (sp - 4 * len(extra)) & ~7
            uc.mem_write(sp, b"".join(v.to_bytes(4, "little") for v in extra))
        for i, v in enumerate(vals[:4]):
            uc.reg_write(UA.UC_ARM_REG_R0 + i, v)
        uc.reg_write(UA.UC_ARM_REG_SP, sp)
        uc.reg_write(UA.UC_ARM_REG_LR, MAGIC_RETURN | 1)

        st = self._state
        st[0] = st[1] = st[3] = st[4] = st[6] = 0
        st[2] = -1
        st[7] = sp
        st[5] = self.max_instructions
        self._pred_passes.clear()
        self._exact_counts.clear()
        for b in self._all_blocks():
            b[4] = 0
        self._fault = None
        self._intr = None
        self._hook_error = None
        exact = mode == "exact"
        if exact:
            cb = self._make_mem_hook()
            self._exact_hooks = [self._fast_hook(unicorn.UC_HOOK_CODE, cb, lo, hi)
                                 for lo, hi in self._mem_ranges]
            uc.ctl_flush_tb()
        err = None
        _RUNNING.append(uc)
        try:
            uc.emu_start(addr | 1, MAGIC_RETURN)
        except unicorn.UcError as e:
            err = e
        finally:
            _RUNNING.remove(uc)
            if exact:
                for h in self._exact_hooks:
                    uc.hook_del(h)
                self._exact_hooks = []
                uc.ctl_flush_tb()
        if _PENDING:                          # Ctrl-C / SIGTERM arrived during the run
            e = _PENDING.pop()
            _PENDING.clear()
            raise e
        if self._hook_error is not None:      # a bug in our own hooks, not in the firmware
            e, self._hook_error = self._hook_error, None
            raise e
        self._min_sp = min(self._min_sp, st[7])
        pc = uc.reg_read(UA.UC_ARM_REG_PC)
        where = self.describe(pc)
        ctx = _fmt_ctx(context)
        if err is not None or self._intr is not None:
            if self._fault is not None:
                kind, faddr, fsize = self._fault
                msg = f"{func}{ctx}: {kind} memory at 0x{faddr:08x} ({fsize} bytes), pc={where}"
            elif self._intr is not None:
                msg = (f"{func}{ctx}: CPU exception {_INTR_NAMES.get(self._intr, self._intr)}, pc={where}")
            elif err is not None and err.errno == unicorn.UC_ERR_INSN_INVALID:
                msg = (f"{func}{ctx}: invalid instruction (undefined encoding, or a branch to an "
                       f"ARM-state/even address), pc={where}")
            else:
                msg = f"{func}{ctx}: emulation failed ({err}), pc={where}"
            raise EmulationError("firmware fault in " + msg)
        if pc != MAGIC_RETURN:
            if st[0] > st[5]:
                raise EmulationError(f"firmware did not return from {func} within {self.max_instructions} "
                                     f"instructions{ctx}; pc={where}")
            raise EmulationError(f"emulation of {func}{ctx} stopped unexpectedly; pc={where}")
        # the final block's branch (the return) was taken; shared fetch words are fetched once
        st[1] += st[3] - self.ws * st[4]

        stats = CallStats(instructions=st[0], cycles=st[1], mode=mode,
                          return_value=uc.reg_read(UA.UC_ARM_REG_R0))
        self._account_traffic(stats, exact)
        stats.fetch_words -= st[4]
        stats.cycles += self.ws * stats.flash_reads
        if self.memory is not None:
            stats.memory = self.memory.counters()
        if self._stack_end > self._stack_start and (
                st[7] < self._stack_start or
                bytes(uc.mem_read(self._stack_start, 4)) != STACK_PAINT):
            raise EmulationError(f"stack overflow in {func}{ctx}: it used all {self._stack_end - self._stack_start} "
                                 f"bytes of the {self.target.name} stack; raise stack_size or reduce locals")
        return stats

    def _account_traffic(self, stats: CallStats, exact: bool) -> None:
        insns = self.insns
        fetch = 0
        # per-PC executions (by region) for this call
        acc = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]   # [load/store][region] -> bytes
        cnt = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]   # transfers
        unprofiled = 0
        if exact:
            for pc, c in self._exact_counts.items():
                m = insns[pc].mem
                k = 0 if m.is_load else 1
                for r in range(3):
                    if c[r]:
                        acc[k][r] += c[r] * m.nbytes
                        cnt[k][r] += c[r] * m.accesses
                p = self.profile.get(pc)
                if p is None:
                    self.profile[pc] = list(c)
                else:
                    for r in range(3):
                        p[r] += c[r]
        execs: Dict[int, int] = {}
        for b in self._all_blocks():
            n = b[4]
            if not n:
                continue
            fetch += n * b[8]
            if not exact:
                for pc in b[6]:
                    execs[pc] = execs.get(pc, 0) + n
        if not exact:
            for pc, n in self._pred_passes.items():
                if insns[pc].mem is not None:
                    execs[pc] = execs.get(pc, 0) + n
            for pc, n in execs.items():
                m = insns[pc].mem
                k = 0 if m.is_load else 1
                if m.region is not None:
                    acc[k][m.region] += n * m.nbytes
                    cnt[k][m.region] += n * m.accesses
                    continue
                p = self.profile.get(pc)
                tot = sum(p) if p else 0
                if not tot:
                    unprofiled += n
                    continue
                for r in range(3):
                    if p[r]:
                        f = n * p[r] / tot
                        acc[k][r] += f * m.nbytes
                        cnt[k][r] += f * m.accesses
        stats.traffic_exact = exact
        stats.unprofiled = unprofiled
        stats.flash_read_bytes = round(acc[0][FLASH])
        stats.flash_reads = round(cnt[0][FLASH])
        stats.sram_read_bytes = round(acc[0][SRAM])
        stats.sram_reads = round(cnt[0][SRAM])
        stats.sram_write_bytes = round(acc[1][SRAM])
        stats.sram_writes = round(cnt[1][SRAM])
        stats.other_bytes = round(acc[0][OTHER] + acc[1][OTHER])
        stats.fetch_words = fetch
