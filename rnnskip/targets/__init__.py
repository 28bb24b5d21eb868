"""Declarative target descriptions: one TOML file per Cortex-M core."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from typing import List, Optional

import tomllib

from ..errors import RnnskipError

#: --weights: where the int8 weights sit at run time
WEIGHT_PLACEMENTS = ("flash", "sram", "tcm")


@dataclass(frozen=True)
class Target:
    """A Cortex-M core: compiler flags, features, memory map, clock and cycle table."""
    name: str
    description: str
    cflags: List[str]
    dsp: bool
    fpu: bool
    mve: bool
    clock_hz: int
    unicorn_cpu: str
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    stack_size: int
    flash_wait_states: int
    cycle_table: str
    cycle_source: str
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    #: where the int8 weights live at run time (WEIGHT_PLACEMENTS): flash (const, read in
    #: place), sram or tcm (copied there from flash by the start-up code)
    weights: str = "flash"

    @property
    def power(self):
        """The board's ``[power]`` figures (:class:`rnnskip.power.PowerSpec`), the reason there are
        none (a string), or None: no board, or a board file without the table."""
        raw = self.raw.get("power")
        if raw is None:
            return None
        from ..power import parse
        return parse(raw, f"board {self.raw.get('board', self.name)}: [power]")

    @property
    def dtcm(self):
        """(origin, size) of the data TCM at the start of RAM, or None (only boards declare one)."""
        d = self.raw.get("dtcm")
        return (int(d["origin"]), int(d["size"])) if d else None

    def with_weights(self, placement: Optional[str]) -> "Target":
        """This target with its weights placed in ``placement`` (None: flash); a one-line
        refusal of an unknown placement, or of tcm on a core/board without a data TCM."""
        placement = placement or "flash"
        if placement not in WEIGHT_PLACEMENTS:
            raise RnnskipError(f"unknown --weights '{placement}'; choose one of {', '.join(WEIGHT_PLACEMENTS)}")
        if placement == "tcm" and self.dtcm is None:
            where = f"board {self.raw['board']}" if self.raw.get("board") else f"target {self.name}"
            raise RnnskipError(f"--weights tcm: {where} has no data TCM rnnskip knows of (the stm32f746 board "
                               f"has one); use --weights sram")
        return dataclasses.replace(self, weights=placement)

    def with_wait_states(self, ws: int) -> "Target":
        """This core with ``ws`` wait states charged per flash word (the per-word model):
        a board's memory system, if any, no longer applies."""
        d = dict(self.__dict__)
        d["flash_wait_states"] = int(ws)
        d["raw"] = {k: v for k, v in self.raw.items() if k != "memory_system"}
        return Target(**d)

    @property
    def memory_system(self):
        """The board's memory-system model (:class:`rnnskip.simulator.memory.MemorySystemSpec`),
        or None: the core-only model (single-cycle memory plus ``flash_wait_states`` per word)."""
        raw = self.raw.get("memory_system")
        if raw is None:
            return None
        from ..simulator.memory import parse
        return parse(raw, f"board {self.raw.get('board', self.name)}: memory_system")


def available() -> List[str]:
    """Names of every target file shipped in the package, sorted."""
    files = resources.files(__package__).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def canonical_name(name: str) -> str:
    """The target file name for how people write a core: any case, "+" for "plus" (cortex-m0+), "m4" or
    "cm4" without "cortex-"."""
    n = name.strip().lower().replace("+", "plus")
    for short in ("cm", "m"):
        if n.startswith(short) and n[len(short):len(short) + 1].isdigit():
            return "cortex-m" + n[len(short):]
    return n


def load(name: str) -> Target:
    """Load target ``name`` (e.g. ``"cortex-m4"``; :func:`canonical_name` spellings too)."""
    names = available()
    given, name = name, canonical_name(name)
    if name not in names:   # (boards.resolve adds a hint when it is a board's name)
        raise RnnskipError(f"unknown target '{given}'; available targets: {', '.join(names)}")
    raw = tomllib.loads(resources.files(__package__).joinpath(name + ".toml").read_text())
    mem, cyc = raw["memory"], raw["cycles"]
    return Target(
        name=raw["name"], description=raw["description"], cflags=list(raw["cflags"]),
        dsp=bool(raw["dsp"]), fpu=bool(raw["fpu"]), mve=bool(raw.get("mve", False)),
        clock_hz=int(raw["clock_hz"]), unicorn_cpu=raw["unicorn_cpu"],
        flash_origin=int(mem["flash_origin"]), flash_size=int(mem["flash_size"]),
        ram_origin=int(mem["ram_origin"]), ram_size=int(mem["ram_size"]),
        stack_size=int(mem["stack_size"]), flash_wait_states=int(mem["flash_wait_states"]),
        cycle_table=cyc["table"], cycle_source=cyc["source"], raw=raw,
    )
