"""The work folder the stage commands share.

Each stage writes plain data (``rnnskip/stagefile.py``: JSON + ``.npz``, or a folder of
sources / the firmware) and records in ``stages.json`` the content hash of what it wrote and
the hashes of the outputs it read. A stage refuses inputs that no longer match each other
(``quantize`` ran again after ``build``: the firmware holds the old weights) or that changed
on disk since their stage wrote them.

    WORK/model.ir.json + .npz      import      the IR (rnnskip.converter.ir.ModelIR)
    WORK/model.q.json + .npz       quantize    the int8 model (rnnskip.quant.model.QModel)
    WORK/src/                      generate    the C sources
    WORK/firmware/, build.json     build       the firmware and what it was built for
    WORK/evaluation.json + .npz    emulate     what was measured (pipeline.stages.Evaluation)
    WORK/stages.json                           hashes: what each output was made from
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Tuple

from .. import stagefile
from ..converter.ir import ModelIR
from ..errors import RnnskipError
from ..quant.model import QModel

#: what each stage's output was made from (the stage commands of ``rnnskip``)
STAGE_READS = {"import": (), "quantize": ("import",), "generate": ("quantize",), "build": ("quantize", "generate"),
               "emulate": ("import", "quantize", "build"), "report": ("import", "quantize", "emulate")}
#: each stage's output, as the messages name it
STAGE_OUTPUT = {"import": "model.ir.json", "quantize": "model.q.json", "generate": "src/", "build": "firmware/",
                "emulate": "evaluation.json"}
_STEMS = {"import": "model.ir", "quantize": "model.q", "emulate": "evaluation"}
#: the files and folders each stage writes into WORK
_STAGE_WRITES = {"import": ("model.ir.json", "model.ir.npz"), "quantize": ("model.q.json", "model.q.npz"),
                 "generate": ("src",), "build": ("firmware", "host", "build.json"),
                 "emulate": ("evaluation.json", "evaluation.npz")}
#: the stages in pipeline order
STAGE_ORDER = ("import", "quantize", "generate", "build", "emulate", "report")
#: the options a stage command requires, as the messages that ask to rerun it show them (where the
#: work folder does not record what was given: see :func:`stage_command`)
STAGE_OPTIONS = {"quantize": " --calib CALIB.npz", "build": " --target TARGET (or --board BOARD)",
                 "emulate": " --data DATA.npz"}

#: keys of WORK/build.json (build_record); "weights" too, absent (flash) in older ones
BUILD_KEYS = {"target", "board", "variant", "wait_states", "kernels", "flash_bytes", "ram_bytes", "max_t"}


# ---- the stage files --------------------------------------------------------------------

def _save(obj, work, stage: str) -> str:
    return stagefile.save(obj, Path(work) / _STEMS[stage], stage)


def _load(work, stage: str, cls):
    jpath = stagefile.paths(Path(work) / _STEMS[stage])[0]
    if not jpath.is_file():
        raise RnnskipError(f"{jpath} not found; run '{stage_command(work, stage)}' first")
    recorded = (_manifest(work).get(stage) or {}).get("sha256")
    if not recorded:
        raise RnnskipError(f"{Path(work) / STAGE_OUTPUT[stage]} is not recorded in {_manifest_path(work)}, so "
                           f"nothing says what it was made from; run '{stage_command(work, stage)}' again")
    obj, digest = stagefile.load(Path(work) / _STEMS[stage], stage, cls, stage)
    if recorded != digest:
        raise RnnskipError(f"{Path(work) / STAGE_OUTPUT[stage]} changed since 'rnnskip {stage}' wrote it; run that "
                           f"stage (and the stages after it) again")
    return obj


def wrote(work, *names: str) -> None:
    """Names (files or folders in WORK) a stage command wrote, with stages.json: listed as rnnskip's in
    WORK's file list when it has one (a conversion's folder), so the next conversion replaces them."""
    from ..outdir import add_to_manifest
    add_to_manifest(work, [Path(work) / n for n in (*names, "stages.json")])


def save_ir(work, ir: ModelIR) -> None:
    stage_done(work, "import", _save(ir, work, "import"))


def load_ir(work) -> ModelIR:
    return _load(work, "import", ModelIR)


def save_model(work, qm: QModel) -> None:
    stage_done(work, "quantize", _save(qm, work, "quantize"))


def load_model(work) -> QModel:
    return _load(work, "quantize", QModel)


def save_evaluation(work, evaluation, ran: dict, reference_check: Optional[dict] = None) -> None:
    """What 'emulate' measured, and on which firmware (``ran``: the build record of the image it ran);
    ``reference_check``: the float reference against the source runtime on the same data."""
    stage_done(work, "emulate", _save({"evaluation": evaluation, "build": ran, "reference_check": reference_check},
                                      work, "emulate"))


def load_evaluation(work) -> Tuple[object, dict, Optional[dict]]:
    """The evaluation, the build record of the image it ran, and the reference check (None: no
    source runtime to compare with)."""
    from .stages import Evaluation
    e = _load(work, "emulate", dict)
    if not isinstance(e.get("evaluation"), Evaluation) or not BUILD_KEYS <= set(e.get("build") or {}):
        raise RnnskipError(f"{Path(work) / STAGE_OUTPUT['emulate']} is not a file written by rnnskip's 'emulate' "
                           f"stage; run that stage again")
    return e["evaluation"], e["build"], e.get("reference_check")


def build_record(target, board, variant: str, wait_states, kernels: str, fw, max_t: int) -> dict:
    """WORK/build.json: what 'build' (or rnnskip-convert) compiled, read by 'emulate' and 'report'.
    max_t: the longest sequence the firmware's I/O buffers hold."""
    return {"target": target.name, "board": board.name if board else None, "variant": variant,
            "wait_states": wait_states, "kernels": kernels, "flash_bytes": fw.flash_bytes, "ram_bytes": fw.ram_bytes,
            "max_t": int(max_t), "weights": target.weights}


def _build_hash(work) -> str:
    w = Path(work)
    return tree_hash(w / "firmware", w / "host", w / "build.json")


def save_build(work, record: dict) -> None:
    """The build record, and the build stage done (its hash covers the firmware, the host build and
    the record)."""
    (Path(work) / "build.json").write_text(json.dumps(record, indent=1))
    stage_done(work, "build", _build_hash(work))


def load_build_record(work) -> dict:
    path = Path(work) / "build.json"
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise RnnskipError(f"{path} not found; run '{stage_command(work, 'build')}' first") from None
    except (OSError, ValueError):
        rec = None
    if not isinstance(rec, dict) or not BUILD_KEYS <= set(rec):
        raise RnnskipError(f"{path} is not a file written by rnnskip's 'build' stage; run that stage again")
    recorded = (_manifest(work).get("build") or {}).get("sha256")
    again = f"run '{stage_command(work, 'build')}' (and the stages after it) again"
    if not recorded:
        raise RnnskipError(f"{path} is not recorded in {_manifest_path(work)}; {again}")
    for d in ("firmware", "host"):
        if not (Path(work) / d).is_dir():
            raise RnnskipError(f"{Path(work) / d} is missing; {again}")
    if recorded != _build_hash(work):
        raise RnnskipError(f"{Path(work) / 'firmware'} or {Path(work) / 'host'} changed since 'rnnskip build' wrote "
                           f"them; {again}")
    return rec


def tree_hash(*paths: Path) -> str:
    """Content hash of files and folders (names relative to each, and bytes)."""
    h = hashlib.sha256()
    for p in paths:
        if not p.exists():   # hashed as missing: differs from any recorded content
            h.update(b"\0missing\0" + p.name.encode())
            continue
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()


# ---- stages.json ------------------------------------------------------------------------

def _manifest_path(work) -> Path:
    return Path(work) / "stages.json"


def _manifest(work, first: bool = False) -> dict:
    """WORK/stages.json; {} for a folder no stage has written to yet (``first``: 'import' starts the records
    of a new folder). Without it (or with a damaged one) nothing says what the outputs were made from, so
    the stages refuse the folder rather than mix them."""
    p = _manifest_path(work)
    if not p.is_file():
        if not first and any((Path(work) / f).exists() for fs in _STAGE_WRITES.values() for f in fs):
            raise RnnskipError(f"{p} is missing, so nothing says what the stage outputs in {work} were made from; "
                               f"start a new work folder with 'rnnskip import MODEL --out NEW_FOLDER'")
        return {}
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError):
        m = None
    if not isinstance(m, dict) or not all(isinstance(v, dict) for v in m.values()):
        raise RnnskipError(f"{p} is damaged (not the stage records rnnskip writes); start a new work folder with "
                           f"'rnnskip import MODEL --out NEW_FOLDER'")
    return m


def check_work(work) -> None:
    """One line unless WORK is a work folder of the stage commands (import made it)."""
    if not Path(work).is_dir():
        raise RnnskipError(f"work folder {work} not found; create it with 'rnnskip import MODEL --out {work}'")
    if not _manifest_path(work).is_file():
        _manifest(work)   # stage outputs without their records: that message
        raise RnnskipError(f"{work} is not an rnnskip work folder (no stages.json in it); create one with "
                           f"'rnnskip import MODEL --out FOLDER'")


def stage_command(work, stage: str) -> str:
    """The command that (re)runs ``stage`` on WORK, with the options the work folder records
    (build: its target or board, wait states, kernels, weights; generate: --max-t), placeholders
    for the rest."""
    if stage == "import":
        return f"rnnskip import MODEL --out {work}"
    opts = STAGE_OPTIONS.get(stage, "")
    if stage == "generate":
        rec = _manifest(work).get("generate") or {}
        max_t, kernels = rec.get("max_t"), rec.get("kernels")
        opts = f" --max-t {max_t}" if isinstance(max_t, int) and max_t != 256 else ""
        opts += f" --kernels {kernels}" if isinstance(kernels, str) and kernels != "portable" else ""
    if stage == "build":
        try:
            rec = json.loads((Path(work) / "build.json").read_text())
        except (OSError, ValueError):
            rec = None
        if isinstance(rec, dict) and (rec.get("board") or rec.get("target")):
            opts = f" --board {rec['board']}" if rec.get("board") else f" --target {rec['target']}"
            if rec.get("wait_states") is not None:
                opts += f" --flash-wait-states {rec['wait_states']}"
            if rec.get("kernels") not in (None, "portable"):
                opts += f" --kernels {rec['kernels']}"
            if rec.get("weights") not in (None, "flash"):
                opts += f" --weights {rec['weights']}"
    return f"rnnskip {stage} {work}{opts}"


def check_fresh(work, stage: str) -> None:
    """Refuse to run ``stage`` on outputs of earlier stages that no longer match each
    other (say 'quantize' ran again after 'build': the firmware holds the old weights).
    The message names the earliest stale stage: rerunning it, then the ones after it, mends
    the folder."""
    m = _manifest(work)
    stale = []
    todo, seen = list(STAGE_READS[stage]), set()
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        todo += STAGE_READS[s]
        rec = m.get(s)
        if not isinstance(rec, dict):
            continue
        for d, made_from in (rec.get("read") or {}).items():
            now = (m.get(d) or {}).get("sha256")
            if made_from and now and made_from != now:
                stale.append((s, d))
    if stale:
        s, d = min(stale, key=lambda t: STAGE_ORDER.index(t[0]))
        raise RnnskipError(f"{Path(work) / STAGE_OUTPUT[s]} was made from an earlier '{d}' run; run "
                           f"'{stage_command(work, s)}' (and the stages after it) again")


def stage_done(work, stage: str, digest: Optional[str] = None, **made) -> None:
    """Record that ``stage`` wrote an output with content hash ``digest``, from the current
    outputs of the stages it read; ``made``: what later stages need to know (generate: max_t)."""
    m = _manifest(work, first=stage == "import")
    m[stage] = {"sha256": digest, "read": {d: (m.get(d) or {}).get("sha256") for d in STAGE_READS[stage]}, **made}
    tmp = _manifest_path(work).with_suffix(".json.partial")
    tmp.write_text(json.dumps(m, indent=1))
    tmp.replace(_manifest_path(work))
    wrote(work, *_STAGE_WRITES[stage])


def generated(work, max_t: int, kernels: str) -> None:
    """'generate' wrote WORK/src with ``kernels``' sources, for sequences of up to ``max_t`` steps."""
    stage_done(work, "generate", tree_hash(Path(work) / "src"), max_t=int(max_t), kernels=kernels)


def generated_kernels(work) -> Optional[str]:
    """The kernel provider 'generate' wrote WORK/src for (None: not recorded by older versions)."""
    k = (_manifest(work).get("generate") or {}).get("kernels")
    return k if isinstance(k, str) else None


def generated_max_t(work) -> int:
    """The longest sequence WORK/src's I/O buffers hold, as 'generate' recorded it."""
    rec = _manifest(work).get("generate") or {}
    max_t = rec.get("max_t")
    if not rec.get("sha256") or not isinstance(max_t, int):
        raise RnnskipError(f"{Path(work) / 'src'} is not recorded in {_manifest_path(work)} (with its --max-t); "
                           f"run '{stage_command(work, 'generate')}' again")
    if rec["sha256"] != tree_hash(Path(work) / "src"):
        raise RnnskipError(f"{Path(work) / 'src'} changed since 'rnnskip generate' wrote it; run that stage "
                           f"(and the stages after it) again")
    return max_t
