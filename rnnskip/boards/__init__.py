"""Board files: a target core bound to a real part, its memory map, UART and emulators.

One TOML file per board in this package (``rnnskip boards`` lists them)::

    name, description, part, target, clock_hz, aliases = [...], inherits = "other-board"
    [memory]  flash_origin, flash_size, ram_origin, ram_size, stack_size,
              dtcm_origin, dtcm_size (a data TCM at the start of RAM: --weights tcm)
    [uart]    kind (stm32-usart-v1 | stm32-usart-v2 | cmsdk-uart | nrf51-uart), base, label, wiring
              (optional: how to reach the port, for the export README),
              baud, clock_hz, init = [[address, mask, value], ...], tx_pin (nrf51)
              (absent: no board image - the board serves the Unicorn cycle model only)
    [qemu]    machine, serial_index, fallback_machine          (absent: no QEMU machine)
    [renode]  platform (a Renode platform .repl; absent: rnnskip writes one), uart
    [memory_system]  the flash/cache model the Unicorn cycle count uses with --board
              (rnnskip.simulator.memory; absent: the core-only model)
    [power]   run_current_ma, supply_v, clock_hz, source: datasheet figures for the energy
              estimate (rnnskip.power), or none = "why not"
    flash_hint: the command the exported project's README gives for programming the image.
    [startup] init = [[address, mask, value], ...], l1_caches (Cortex-M7), note (what a user of
    another board with the part must know about the writes), source: what the
              board image sets before it runs the model, so the part runs with the flash wait
              states and caches its [memory_system] describes (at the reset clock)

``inherits`` deep-merges another board's file under this one's keys.

    board = load("stm32f407")
    target = board_target(board)          # the core's Target with the board's memory map
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from typing import Dict, List, Optional

import tomllib

from ..errors import RnnskipError

UART_KINDS = ("stm32-usart-v1", "stm32-usart-v2", "cmsdk-uart", "nrf51-uart")


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    part: str
    target: str                       # target name, e.g. "cortex-m4"
    clock_hz: int                     # clock the firmware runs at (reset clock; no PLL set-up)
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    stack_size: int
    uart: Optional[Dict]              # None: no UART driver, no board image (Unicorn only)
    qemu: Optional[Dict]
    renode: Dict
    aliases: List[str] = field(default_factory=list)
    startup: Optional[Dict] = None    # [startup]: register writes and caches the board image sets
    flash_hint: Optional[str] = None  # how to program the exported image (its README; None: a generic probe hint)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def qemu_machine(self) -> Optional[str]:
        return self.qemu.get("machine") if self.qemu else None

    def require_uart(self, what: str) -> Dict:
        """The UART table, or a one-line refusal of ``what`` (a board image needs a UART)."""
        if self.uart is None:
            raise RnnskipError(f"board {self.name} has no UART driver in rnnskip, so no board image "
                               f"({what}): it serves the Unicorn cycle model only (--emulator unicorn)")
        return self.uart


def _files() -> Dict[str, str]:
    return {f.name[:-5]: f.read_text() for f in resources.files(__package__).iterdir()
            if f.name.endswith(".toml")}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _raw(name: str, files: Dict[str, str], seen=()) -> dict:
    if name in seen:
        raise RnnskipError(f"board file {name}.toml: 'inherits' loops through {', '.join(seen)}")
    raw = tomllib.loads(files[name])
    parent = raw.pop("inherits", None)
    if parent:
        if parent not in files:
            raise RnnskipError(f"board file {name}.toml inherits unknown board '{parent}'")
        base = _raw(parent, files, seen + (name,))
        base.pop("aliases", None)
        raw = _merge(base, raw)
    return raw


def available() -> List[str]:
    """Names of every board file shipped in the package, sorted."""
    return sorted(_files())


def _resolve(name: str, files: Dict[str, str]) -> str:
    if name in files:
        return name
    for n, text in files.items():
        if name in tomllib.loads(text).get("aliases", []):
            return n
    raise RnnskipError(f"unknown board '{name}'; available boards: {', '.join(sorted(files))} "
                       f"(see 'rnnskip boards')")


def load(name: str) -> Board:
    """Load board ``name`` (or one of its aliases)."""
    files = _files()
    real = _resolve(name, files)
    raw = _raw(real, files)
    try:
        mem = raw["memory"]
        uart = dict(raw["uart"]) if "uart" in raw else None
        if uart is not None and uart.get("kind") not in UART_KINDS:
            raise RnnskipError(f"board {real}: uart.kind must be one of {', '.join(UART_KINDS)}")
        return Board(name=raw["name"], description=raw["description"], part=raw["part"],
                     target=raw["target"], clock_hz=int(raw["clock_hz"]),
                     flash_origin=int(mem["flash_origin"]), flash_size=int(mem["flash_size"]),
                     ram_origin=int(mem["ram_origin"]), ram_size=int(mem["ram_size"]),
                     stack_size=int(mem["stack_size"]), uart=uart, qemu=raw.get("qemu"),
                     renode=dict(raw.get("renode", {})), aliases=list(raw.get("aliases", [])),
                     startup=_startup(real, raw), flash_hint=raw.get("flash_hint"), raw=raw)
    except KeyError as e:
        raise RnnskipError(f"board file {real}.toml is missing key {e}") from None


def _startup(name: str, raw: dict) -> Optional[Dict]:
    """The validated ``[startup]`` table (None when absent): each init entry three 32-bit
    integers whose value sets no bit outside its mask; the L1-cache enable on a Cortex-M7 only."""
    st = raw.get("startup")
    if st is None:
        return None
    where = f"board file {name}.toml [startup]"
    unknown = set(st) - {"init", "l1_caches", "source", "note"}
    if unknown:
        raise RnnskipError(f"{where}: unknown key '{sorted(unknown)[0]}' (keys: init, l1_caches, source, note)")
    if not isinstance(st.get("note", ""), str):
        raise RnnskipError(f"{where}: 'note' must be a string (what a user of another board must know)")
    if not isinstance(st.get("source"), str) or not st["source"].strip():
        raise RnnskipError(f"{where}: 'source' must name the manual sections the writes come from")
    init = st.get("init", [])
    for e in init:
        ok = isinstance(e, list) and len(e) == 3 and all(isinstance(v, int) and 0 <= v < 2 ** 32 for v in e)
        if not ok or e[2] & ~e[1]:
            raise RnnskipError(f"{where}: init entry {e!r} must be [address, mask, value], 32-bit integers "
                               "with no value bit outside the mask")
    l1 = st.get("l1_caches", False)
    if not isinstance(l1, bool):
        raise RnnskipError(f"{where}: l1_caches must be true or false")
    if l1 and raw["target"] != "cortex-m7":
        raise RnnskipError(f"{where}: l1_caches needs a cortex-m7 target, not {raw['target']}")
    return {"init": [tuple(e) for e in init], "l1_caches": l1, "source": st["source"], "note": st.get("note")}


def board_target(board: Board, wait_states: Optional[int] = None):
    """The board's core as a :class:`rnnskip.targets.Target` with the board's memory map."""
    from .. import targets
    t = targets.load(board.target)
    raw = dict(t.raw, board=board.name)
    mem = board.raw["memory"]
    if "dtcm_origin" in mem:       # a data TCM (--weights tcm may place the weights there)
        raw["dtcm"] = {"origin": int(mem["dtcm_origin"]), "size": int(mem["dtcm_size"])}
    if "power" in board.raw:       # datasheet run current and supply: the energy estimate
        raw["power"] = board.raw["power"]
    clock = t.clock_hz
    ms = board.raw.get("memory_system")
    if ms is not None and wait_states is None:
        # the board's memory system replaces the per-word wait states; its clock is the one
        # the wait states hold at, so latency is reported at it
        raw["memory_system"] = ms
        clock = int(ms.get("clock_hz", clock))
    cflags = list(t.cflags)
    if "mfpu" in board.raw:   # the part's FPU where it is not the core's fullest (an STM32F746's is single precision)
        cflags = [f for f in cflags if not f.startswith("-mfpu=")] + [f"-mfpu={board.raw['mfpu']}"]
    # the core as this part has it, for the exported project and header (a user read FPv5-D16 for an F746)
    t = dataclasses.replace(t, description=board.raw.get("target_description", t.description),
                            flash_origin=board.flash_origin, flash_size=board.flash_size,
                            ram_origin=board.ram_origin, ram_size=board.ram_size,
                            stack_size=board.stack_size, clock_hz=clock, raw=raw, cflags=cflags)
    t.power                    # a bad [power] table fails here, in one line
    if wait_states is None:
        t.memory_system        # a bad table fails here, in one line
        return t
    return t.with_wait_states(wait_states)


def load_target(target_name: str):
    """targets.load, with the option to use when ``target_name`` is a board's name."""
    from .. import targets
    try:
        return targets.load(target_name)
    except RnnskipError as e:   # a board named as a target: say which option takes it
        try:
            b = load(target_name.strip().lower())
        except RnnskipError:
            raise e from None
        raise RnnskipError(f"{e}; '{target_name}' is a board: use --board {b.name} (its core is {b.target})") \
            from None


def resolve(target_name: Optional[str], board_name: Optional[str], wait_states: Optional[int] = None,
            weights: Optional[str] = None):
    """(board or None, target) for the CLI's --target/--board pair (and --weights placement).

    With a board, the target defaults to the board's core; naming a different
    core is an error (one board, one core)."""
    if not board_name:
        t = load_target(target_name or "cortex-m4")
        return None, (t if wait_states is None else t.with_wait_states(wait_states)).with_weights(weights)
    from .. import targets
    b = load(board_name)
    if target_name and targets.canonical_name(target_name) != b.target:
        raise RnnskipError(f"board {b.name} has a {b.target} core, not {target_name}; "
                           f"drop --target or pass --target {b.target}")
    return b, board_target(b, wait_states).with_weights(weights)


def describe() -> List[str]:
    """Three lines per board for ``rnnskip boards``."""
    lines = []
    for n in available():
        b = load(n)
        q = b.qemu_machine or "-"
        if b.qemu and b.qemu.get("fallback_machine"):
            q += f" (or {b.qemu['fallback_machine']})"
        rn = b.renode.get("platform", "generated .repl")
        lines.append(f"{b.name:<18} {b.target:<14} {b.part:<14} flash {b.flash_size // 1024:>5} KiB @ "
                     f"{b.flash_origin:#010x}  RAM {b.ram_size // 1024:>5} KiB @ {b.ram_origin:#010x}  "
                     f"UART {b.uart['label'] if b.uart else '- (Unicorn cycle model only)'}")
        aliases = f";  aliases: {', '.join(b.aliases)}" if b.aliases else ""
        lines.append(f"{'':<18} qemu: {q};  renode: {rn}{aliases}")
        ms = b.raw.get("memory_system")
        lines.append(f"{'':<18} cycle model memory: "
                     + (f"{ms['name']} @ {int(ms.get('clock_hz', 0)) / 1e6:g} MHz" if ms else "core only"))
    return lines
