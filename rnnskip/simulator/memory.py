"""Memory-system model: flash read in lines, a sequential prefetch, caches; stalls per line fill.

A board file's ``[memory_system]`` table describes the memory behind the core
(every group with a ``source`` naming the reference-manual section it comes
from)::

    [memory_system]
    name = "STM32F407 flash + ART accelerator"
    clock_hz = 168000000
    source = "RM0090 rev 19, 3.5 'Embedded Flash memory interface'"
    [memory_system.flash]      line_bytes, wait_states, source   (absent: zero-wait memory only)
    [memory_system.prefetch]   enabled, source
    [memory_system.icache]     lines, line_bytes, ways, replacement = "lru", source
    [memory_system.dcache]     the same; or unified = true: the icache also serves data reads

:class:`MemorySystem` is fed the addresses the core reads from flash, in program
order per side: instruction fetches (:meth:`MemorySystem.fetch`,
:meth:`MemorySystem.fetch_range`) and data reads (:meth:`MemorySystem.read`).
Addresses outside the flash range cost nothing (SRAM is zero-wait on every
modelled board). Rules, per side (instruction / data):

* Flash is read one line (``line_bytes``) at a time. The line last read is held
  in a line buffer: another access to it costs 0 and reaches no cache.
* Otherwise the cache (if any) is looked up: a hit costs 0; a miss fills the
  line from flash (``flash_line_fills`` + 1) and stalls the core ``wait_states``
  cycles - one fill serves every word of the line - then allocates it (LRU
  victim within its set).
* Prefetch (instruction side only): after each line change the next sequential
  line is read in the background. An instruction fetch of exactly that line is
  a fill that costs 0 (counted in ``flash_line_fills`` and ``prefetch_hits``).
  Simplification: the prefetch is assumed complete by the time straight-line
  code reaches the next line (RM0090 3.5.2 "Instruction prefetch": "the next
  sequential instruction line ... while the current instruction line is
  requested by the CPU"); a taken branch to elsewhere discards it. Unused
  prefetches are not counted as fills.
* Data reads never prefetch. Stores are not modelled (none go to flash).

Both sides are independent, except with a unified cache, which instruction and
data reads share in the order they are fed.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import RnnskipError


@dataclass(frozen=True)
class CacheSpec:
    lines: int
    line_bytes: int
    ways: int                 # lines per set; ways == lines: fully associative
    source: str
    replacement: str = "lru"

    @property
    def sets(self) -> int:
        return self.lines // self.ways

    def describe(self) -> dict:
        return {"lines": self.lines, "line_bytes": self.line_bytes, "ways": self.ways,
                "replacement": self.replacement, "bytes": self.lines * self.line_bytes, "source": self.source}


@dataclass(frozen=True)
class MemorySystemSpec:
    name: str
    source: str
    clock_hz: Optional[int]
    line_bytes: int = 4                   # flash read width
    wait_states: int = 0                  # stall cycles per line fill
    flash_source: str = ""
    prefetch: bool = False
    prefetch_source: str = ""
    icache: Optional[CacheSpec] = None
    dcache: Optional[CacheSpec] = None
    unified: bool = False                 # the icache also holds data reads
    has_flash: bool = True                # False: zero-wait memory everywhere (no fills)

    def describe(self) -> dict:
        """``report.json``'s ``memory_system`` object."""
        d: Dict[str, object] = {"name": self.name, "source": self.source, "clock_hz": self.clock_hz}
        p: Dict[str, object] = {}
        if self.has_flash:
            p["flash"] = {"line_bytes": self.line_bytes, "wait_states": self.wait_states,
                          "source": self.flash_source}
            p["prefetch"] = {"enabled": self.prefetch, "source": self.prefetch_source}
        else:
            p["flash"] = None
        if self.icache:
            p["icache"] = self.icache.describe()
        if self.dcache:
            p["dcache"] = self.dcache.describe()
        if self.unified:
            p["unified_cache"] = True
        d["parameters"] = p
        return d


def _need(tab: Mapping, key: str, where: str):
    if key not in tab:
        raise RnnskipError(f"{where}: missing '{key}'")
    return tab[key]


def _pos_int(tab: Mapping, key: str, where: str, zero_ok: bool = False) -> int:
    v = _need(tab, key, where)
    if not isinstance(v, int) or isinstance(v, bool) or v < (0 if zero_ok else 1):
        raise RnnskipError(f"{where}: '{key}' must be a {'non-negative' if zero_ok else 'positive'} "
                           f"integer, not {v!r}")
    return v


def _source(tab: Mapping, where: str) -> str:
    s = tab.get("source")
    if not isinstance(s, str) or not s.strip():
        raise RnnskipError(f"{where}: every parameter group needs a 'source' (reference manual and section)")
    return s


def _cache(tab: Mapping, where: str) -> CacheSpec:
    lines = _pos_int(tab, "lines", where)
    lb = _pos_int(tab, "line_bytes", where)
    ways = _pos_int(tab, "ways", where)
    repl = tab.get("replacement", "lru")
    if repl != "lru":
        raise RnnskipError(f"{where}: replacement '{repl}' is not modelled (only 'lru')")
    if lines % ways:
        raise RnnskipError(f"{where}: {lines} lines do not divide into {ways} ways")
    if lb & (lb - 1) or lb < 4:
        raise RnnskipError(f"{where}: line_bytes must be a power of two >= 4, not {lb}")
    return CacheSpec(lines=lines, line_bytes=lb, ways=ways, replacement=repl, source=_source(tab, where))


def parse(raw: Mapping, where: str = "memory_system") -> MemorySystemSpec:
    """A :class:`MemorySystemSpec` from a board file's ``[memory_system]`` table."""
    if not isinstance(raw, Mapping):
        raise RnnskipError(f"{where} must be a table")
    known = {"name", "clock_hz", "source", "flash", "prefetch", "icache", "dcache"}
    extra = set(raw) - known
    if extra:
        raise RnnskipError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    name = _need(raw, "name", where)
    src = _source(raw, where)
    clock = _pos_int(raw, "clock_hz", where) if "clock_hz" in raw else None
    kw: Dict[str, object] = {}
    fl = raw.get("flash")
    if fl is None:
        kw["has_flash"] = False
        if any(k in raw for k in ("prefetch", "icache", "dcache")):
            raise RnnskipError(f"{where}: prefetch and caches need a [flash] table to sit in front of")
    else:
        w = f"{where}.flash"
        lb = _pos_int(fl, "line_bytes", w)
        if lb & (lb - 1) or lb < 4:
            raise RnnskipError(f"{w}: line_bytes must be a power of two >= 4, not {lb}")
        kw.update(line_bytes=lb, wait_states=_pos_int(fl, "wait_states", w, zero_ok=True),
                  flash_source=_source(fl, w))
    pf = raw.get("prefetch")
    if pf is not None:
        w = f"{where}.prefetch"
        en = _need(pf, "enabled", w)
        if not isinstance(en, bool):
            raise RnnskipError(f"{w}: 'enabled' must be true or false")
        kw.update(prefetch=en, prefetch_source=_source(pf, w))
    for side in ("icache", "dcache"):
        tab = raw.get(side)
        if tab is None:
            continue
        w = f"{where}.{side}"
        if side == "dcache" and tab.get("unified"):
            if raw.get("icache") is None:
                raise RnnskipError(f"{w}: unified = true needs an [icache] table")
            kw["unified"] = True
            _source(tab, w)
            continue
        c = _cache(tab, w)
        # one miss = one flash line fill: the model has no multi-read refills
        if c.line_bytes != kw.get("line_bytes"):
            raise RnnskipError(f"{w}: line_bytes {c.line_bytes} differs from the flash line "
                               f"({kw.get('line_bytes')} bytes); the model needs them equal")
        kw[side] = c
    return MemorySystemSpec(name=str(name), source=src, clock_hz=clock, **kw)


class _Cache:
    """Set-associative LRU cache of line numbers (in units of its own line size)."""

    def __init__(self, spec: CacheSpec, name: str):
        self.spec, self.name = spec, name
        self.shift = spec.line_bytes.bit_length() - 1
        self.nsets = spec.sets
        self.ways = spec.ways
        self.sets: List["OrderedDict[int, None]"] = [OrderedDict() for _ in range(self.nsets)]
        self.hits = 0
        self.misses = 0

    def lookup(self, addr: int) -> bool:
        """True on a hit; on a miss the line is allocated (LRU victim)."""
        return self.lookup_line(addr >> self.shift)

    def lookup_line(self, line: int) -> bool:
        """:meth:`lookup` of line number ``line`` (address >> log2(line_bytes))."""
        s = self.sets[line % self.nsets]
        if line in s:
            s.move_to_end(line)
            self.hits += 1
            return True
        self.misses += 1
        if len(s) >= self.ways:
            s.popitem(last=False)
        s[line] = None
        return False


class MemorySystem:
    """Running state of one :class:`MemorySystemSpec` over a flash range ``[lo, hi)``."""

    def __init__(self, spec: MemorySystemSpec, flash: Tuple[int, int]):
        self.spec = spec
        self.lo, self.hi = flash
        self.enabled = spec.has_flash
        self.shift = spec.line_bytes.bit_length() - 1
        self.ws = spec.wait_states
        self.prefetch = spec.prefetch
        self.icache = _Cache(spec.icache, "icache") if spec.icache else None
        if spec.unified:
            self.dcache = self.icache
        else:
            self.dcache = _Cache(spec.dcache, "dcache") if spec.dcache else None
        self._block_lines: Dict[Tuple[int, int], Tuple[int, ...]] = {}   # (start, end) -> flash lines
        self.reset()

    def reset(self) -> None:
        """Cold caches and buffers, counters zero (the state after a core reset)."""
        self._ibuf = -1            # line held by the instruction-side line buffer
        self._dbuf = -1
        self._pf = -1              # line the prefetch buffer holds
        for c in {id(c): c for c in (self.icache, self.dcache) if c}.values():
            c.sets = [OrderedDict() for _ in range(c.nsets)]
        self.clear_counters()

    def clear_counters(self) -> None:
        """Counters to zero; cache and buffer contents kept (a warm start)."""
        self.flash_line_fills = 0
        self.prefetch_hits = 0
        self.stall_cycles = 0
        for c in (self.icache, self.dcache):
            if c:
                c.hits = c.misses = 0

    def counters(self) -> Dict[str, object]:
        hits, misses = {}, {}
        names = (("icache", self.icache),) if self.spec.unified else (("icache", self.icache),
                                                                        ("dcache", self.dcache))
        for n, c in names:
            if c:
                n = "cache" if self.spec.unified else n
                hits[n], misses[n] = c.hits, c.misses
        return {"flash_line_fills": self.flash_line_fills, "stall_cycles": self.stall_cycles,
                "prefetch_hits": self.prefetch_hits, "cache_hits": hits, "cache_misses": misses}

    # ------------------------------------------------------------ instruction side
    def fetch(self, addr: int) -> int:
        """Instruction fetch at ``addr``; returns the stall cycles (the rule is :meth:`fetch_range`'s)."""
        return self.fetch_range(addr, addr + 1)

    def fetch_range(self, start: int, end: int) -> int:
        """Instruction fetch of the code bytes ``[start, end)`` in order (one basic block), line by
        line: a line the line buffer holds costs 0; else an I-cache hit costs 0, the prefetched line
        is a fill that costs 0, and any other line is a fill that stalls ``wait_states``. Addresses
        outside flash cost nothing. The emulator calls this once per executed block, so each
        block's flash lines are computed once."""
        if not self.enabled or end <= start:
            return 0
        lines = self._block_lines.get((start, end))
        if lines is None:
            step = 1 << self.shift
            a, ls = start & ~(step - 1), []
            while a < end:
                if self.lo <= max(a, start) < self.hi:     # fetch() ignores other addresses
                    ls.append(a >> self.shift)
                a += step
            lines = self._block_lines[(start, end)] = tuple(ls)
        ibuf, pf, prefetch, c = self._ibuf, self._pf, self.prefetch, self.icache
        stall = fills = pf_hits = 0
        for line in lines:
            if line == ibuf:
                continue
            ibuf = line
            if c is not None and c.lookup_line(line):
                pass
            elif prefetch and line == pf:
                fills += 1
                pf_hits += 1
            else:
                fills += 1
                stall += self.ws
            if prefetch:
                pf = line + 1
        self._ibuf, self._pf = ibuf, pf
        self.flash_line_fills += fills
        self.prefetch_hits += pf_hits
        self.stall_cycles += stall
        return stall

    # ------------------------------------------------------------------- data side
    def read(self, addr: int, nbytes: int = 4) -> int:
        """Data read of ``nbytes`` at ``addr`` (one LDR/LDRD/LDM/VLDM); returns the stall cycles."""
        if not self.enabled or not (self.lo <= addr < self.hi):
            return 0
        stall = 0
        last = (addr + max(nbytes, 1) - 1) >> self.shift
        line = addr >> self.shift
        c = self.dcache
        while line <= last:
            if line != self._dbuf:
                self._dbuf = line
                if c is None or not c.lookup_line(line):
                    self.flash_line_fills += 1
                    stall += self.ws
            line += 1
        self.stall_cycles += stall
        return stall
