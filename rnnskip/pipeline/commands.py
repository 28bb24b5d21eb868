"""The ``rnnskip`` stage commands, each reading and writing a work folder:
import -> quantize -> generate -> build -> emulate -> report. They return what
they made; the command line prints it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .. import boards
from ..build import Firmware, build_host, build_target
from ..converter.ir import ModelIR
from ..errors import RnnskipError
from ..outdir import atomic_dir
from . import stages, workdir


def import_command(model, out) -> ModelIR:
    """Read MODEL into WORK/model.ir.json (+ .npz)."""
    from ..outdir import check_writable
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "stages.json").is_file():
        raise RnnskipError(f"--out {out} already exists and is not an rnnskip work folder (no stages.json in it); "
                           f"the stages write their files into it: choose a new folder")
    check_writable(out / "model.ir.json", "--out")
    ir = stages.import_model(model)
    new = not out.is_dir() or not any(out.iterdir())
    Path(out).mkdir(parents=True, exist_ok=True)
    workdir.save_ir(out, ir)
    if new:   # a work folder of rnnskip's own: its file list, which each stage extends (a conversion may replace it)
        from ..outdir import start_manifest
        start_manifest(out)
    return ir


def quantize_command(work, calib, calib_max: int = 1000, note=None):
    """Calibrate and quantise WORK's model into WORK/model.q.json (+ .npz); returns (QModel, Ranges).
    ``note`` gets the calibration data's ``warning:`` lines."""
    workdir.check_work(work)
    ir = workdir.load_ir(work)
    cal = stages.load_data(calib, ir, "--calib", labels=False, note=note)
    qm, ranges = stages.quantize_model(ir, cal, calib_max)
    if note is not None:
        from ..quant.diagnose import clip_warnings
        for line in clip_warnings(qm, *stages.calibration_sample(cal, calib_max)):
            note(line)
    qm.calibration = {"source": str(calib), "sequences": ranges.sequences}
    workdir.save_model(work, qm)
    return qm, ranges


def generate_command(work, max_t: int, kernels: str = "portable", prefix: str = "rnnskip") -> List[Path]:
    """Render the C sources into WORK/src (external names with ``prefix``); returns the files written."""
    from ..generate import check_prefix, generate
    stages.check_kernels(kernels)
    check_prefix(prefix)
    workdir.check_work(work)
    workdir.check_fresh(work, "generate")
    qm = workdir.load_model(work)
    qm.c_prefix = prefix
    with atomic_dir(Path(work) / "src", "rnnskip_model.h", what="WORK/src") as tmp:
        files = generate(qm, tmp, max_t=max_t, kernels=kernels)
    workdir.generated(work, max_t, kernels)
    return files


def build_command(work, target_name=None, board_name=None, kernels: Optional[str] = None, variant=None,
                  wait_states=None, weights=None):
    """Compile WORK/src for the target (WORK/firmware) and this machine (WORK/host); ``kernels``:
    None or the provider 'generate' wrote the sources for. Returns (Firmware, target)."""
    from ..targets.fit import check_fits
    if kernels is not None:
        stages.check_kernels(kernels)
    board, target = boards.resolve(target_name, board_name, wait_states, weights)
    workdir.check_work(work)
    src = Path(work) / "src"
    if not src.is_dir():
        raise RnnskipError(f"{src} not found; run 'rnnskip generate {work}' first")
    workdir.check_fresh(work, "build")
    max_t = workdir.generated_max_t(work)
    made = workdir.generated_kernels(work) or "portable"
    if kernels is not None and kernels != made:   # the provider's sources are in WORK/src already
        raise RnnskipError(f"{src} holds the {made} kernels ('rnnskip generate' chose them); run "
                           f"'rnnskip generate {work} --kernels {kernels}' first, or drop --kernels")
    variant = stages.kernel_variant(target, variant, made)
    check_fits(workdir.load_model(work), max_t, target)
    # both builds replace their folders only when both succeed: a failed build leaves the last one whole
    with atomic_dir(Path(work) / "firmware", "firmware.elf", what="WORK/firmware") as tmp:
        fw = build_target(src, tmp, target, variant)
        with atomic_dir(Path(work) / "host", "librnnskip_model.so", what="WORK/host") as htmp:
            build_host(src, htmp)
    workdir.save_build(work, workdir.build_record(target, board, variant, wait_states, made, fw, max_t))
    return fw, target


@dataclass
class Emulation:
    """What 'emulate' measured, and on what."""
    evaluation: stages.Evaluation
    emulator: object

    def check(self) -> None:
        """One line when any output differs from the golden model (the contract is bit-exactness)."""
        ev = self.evaluation
        if ev.mismatches:
            raise RnnskipError(f"{ev.mismatches} sequences differ from the golden model ({ev.first_mismatch}); "
                               f"this is a bug: please report it with the work folder")


def emulate_command(work, data, emulator: Optional[str] = None, board_name: Optional[str] = None,
                    emulate_max: Optional[int] = None, bundle: int = 16, timeout: float = 120.0,
                    traffic_sample: int = 16, workers: int = 2, note=None) -> Emulation:
    """Float, golden, host build and emulated firmware on ``data`` (WORK/evaluation.json + .npz).

    Unicorn runs WORK/firmware; QEMU and Renode boot a board image built here from WORK/src
    (``board_name``, else the board 'build' used) with the first ``emulate_max`` or
    ``bundle`` sequences linked in. ``emulator`` None: Unicorn where it has the core,
    else QEMU; ``note`` gets the line saying so before the run."""
    from .. import emulators
    w = Path(work)
    workdir.check_work(w)
    workdir.check_fresh(w, "emulate")
    ir = workdir.load_ir(w)
    qm = workdir.load_model(w)
    rec = workdir.load_build_record(w)
    built_board, built_target = boards.resolve(rec["target"], rec["board"], rec["wait_states"], rec.get("weights"))
    if board_name:
        boards.resolve(None, board_name, rec["wait_states"])   # an unknown name: its one line
    if emulator == "unicorn" or (emulator is None and built_target.unicorn_cpu):
        if board_name:   # Unicorn runs the firmware 'build' compiled; --board picks the image a board emulator boots
            raise RnnskipError(f"--board {board_name} picks the board image QEMU or Renode boots; Unicorn runs "
                               f"WORK/firmware as 'build' made it: add --emulator qemu (or renode), or drop --board")
        board, target = None, built_target
    elif built_target.weights != "flash":
        raise RnnskipError(stages.weights_unicorn_only(built_target.weights))
    elif board_name:
        board, target = boards.resolve(None, board_name, rec["wait_states"])
    else:
        board, target = built_board, built_target
    emu, why = emulators.choose(emulator, target, board, rec["wait_states"], traffic_sample=traffic_sample,
                                workers=workers, progress=True, timeout=timeout)
    if why and note is not None:
        note(why)
    ds = stages.load_data(data, ir, labels=None, note=note)   # unlabelled: no accuracy, the rest as usual
    from ..converter import source_check
    ref_check = source_check.check(ir, ds.x, ds.lengths)      # as rnnskip-convert: the source runtime on --data
    warning = source_check.warning(ref_check)
    if warning and note is not None:
        note(warning)
    if ds.x.shape[1] > rec["max_t"]:
        raise RnnskipError(f"--data has sequences of {ds.x.shape[1]} steps but the firmware holds {rec['max_t']}; "
                           f"regenerate with 'rnnskip generate {work} --max-t {ds.x.shape[1]}'")
    try:
        if emu.board is None:
            fw = Firmware(elf=w / "firmware" / "firmware.elf", map=w / "firmware" / "firmware.map",
                          variant=rec["variant"], flash_bytes=rec["flash_bytes"], ram_bytes=rec["ram_bytes"])
            n = emulate_max
        else:
            n = emulate_max or bundle
            fw = stages.build_firmware(w / "src", w / f"board-{emu.board.name}", emu, rec["variant"], qm, ds, n,
                                       rec["max_t"], ir.name)
        ev = stages.evaluate(ir, qm, ds, host_so=w / "host" / "librnnskip_model.so", firmware=fw, emulator=emu,
                             emulate_max=n)
    finally:   # the board image and what its run left there, a failed run's too: rnnskip's, which a conversion replaces
        if emu.board is not None and (w / f"board-{emu.board.name}").exists():
            workdir.wrote(w, f"board-{emu.board.name}")
    ran = dict(rec, target=emu.target.name, board=emu.board.name if emu.board else rec["board"],
               flash_bytes=fw.flash_bytes, ram_bytes=fw.ram_bytes, elf=str(fw.elf))
    workdir.save_evaluation(w, ev, ran, reference_check=ref_check)
    return Emulation(evaluation=ev, emulator=emu)


def report_command(work) -> dict:
    """WORK/report.json from the last 'emulate' run; returns the report."""
    from ..report import build_report, write_report
    w = Path(work)
    workdir.check_work(w)
    workdir.check_fresh(w, "report")
    ir = workdir.load_ir(w)
    qm = workdir.load_model(w)
    ev, b, ref_check = workdir.load_evaluation(w)
    _, target = boards.resolve(b["target"], b["board"], b["wait_states"], b.get("weights"))
    elf = Path(b["elf"])
    fw = Firmware(elf=elf, map=elf.with_suffix(".map"), variant=b["variant"], flash_bytes=b["flash_bytes"],
                  ram_bytes=b["ram_bytes"])
    rep = build_report(ir, qm, ev, target, b["kernels"], b["variant"], firmware=fw)
    if ref_check is not None:
        rep["reference_check"] = ref_check
    write_report(rep, w / "report.json")
    workdir.wrote(w, "report.json")
    return rep
