"""Declarative target descriptions: one TOML file per Cortex-M core."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import List

import tomllib

from ..errors import RnnskipError


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


def load(name: str) -> Target:
    """Load target ``name`` (e.g. ``"cortex-m4"``)."""
    names = available()
    if name not in names:
        raise RnnskipError(f"unknown target '{name}'; available targets: {', '.join(names)}")
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
