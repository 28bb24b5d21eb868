"""Command line: ``rnnskip-convert`` (everything in one go) and the ``rnnskip`` group of stages.

Every user error is one line on stderr and exit status 2; output folders are
written to a temporary sibling and renamed into place only when complete.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_support import OneLineCommand, OneLineGroup, guard, note
from .converter.ir import ModelIR
from .errors import RnnskipError
from .outdir import atomic_dir, check_replaceable
from .quant.model import QModel


def _target(name: str, wait_states):
    from . import targets
    t = targets.load(name)
    return t if wait_states is None else t.with_wait_states(wait_states)


def _board_target(target_name, board_name, wait_states):
    """(board or None, target): --board binds the target's core to the board's memory map."""
    from .boards import resolve
    return resolve(target_name, board_name, wait_states)


def _variant(target, variant, kernels="portable"):
    if kernels == "naive":  # the baseline is plain C throughout
        return "plain"
    return variant or ("dsp" if target.dsp else "plain")


def _build_record(target, board, variant, wait_states, kernels, fw) -> dict:
    """WORK/build.pkl: what 'build' (or rnnskip-convert) compiled, read by 'emulate' and 'report'."""
    return {"target": target.name, "board": board.name if board else None, "variant": variant,
            "wait_states": wait_states, "kernels": kernels, "flash_bytes": fw.flash_bytes, "ram_bytes": fw.ram_bytes}


def _load_data(path, ir, what="--data"):
    from .datasets import load_npz
    if path is None:
        raise RnnskipError(f"{what} is required: an .npz with x, y and optional lengths")
    return load_npz(str(path), ir)


def run_convert(model, target_name, data, out, kernels="portable", variant=None, calib=None,
                calib_max=1000, emulate_max=None, traffic_sample=16, wait_states=None, workers=2,
                host=True, progress=True, board_name=None, emulator="unicorn", bundle=16, timeout=120.0,
                export=None, skip=None, delta=None):
    """The whole flow; returns the report dict. Used by rnnskip-convert and the demo.

    skip: time-step skipping options (keys predictor, skip, train, val, max_loss, ptype, margin_se;
    see rnnskip.skip.convert.SkipSetup.prepare), None for a dense model.

    board_name: build for that board's memory map; emulator "qemu"/"renode" boots the
    board image with ``bundle`` test sequences linked in (see rnnskip.emulators)."""
    from . import pipeline as P
    from .emulators import choose
    from .report import build_report, table, write_plots, write_report
    P.check_kernels(kernels)
    board, target = _board_target(target_name, board_name, wait_states)
    emu = choose(emulator, target, board, wait_states, traffic_sample=traffic_sample, workers=workers,
                 progress=progress, timeout=timeout)
    if export and board is None:
        raise RnnskipError("--export needs --board: the project is for one board (memory map, startup, UART); "
                           "see 'rnnskip boards'")
    variant = _variant(target, variant, kernels)
    if export:   # refused now rather than after the whole conversion
        from .boards.export import EXPORT_MARKER, EXPORT_REGENERATED
        check_replaceable(export, EXPORT_MARKER, "--export", [model, data, calib, out], EXPORT_REGENERATED)
    ir = P.import_model(model)
    if ir.per_step and (skip or delta or board is not None):
        # these paths read one output row per sequence; refuse rather than report wrong numbers
        what = "--predictor/--skip" if skip else ("--delta" if delta else "--board")
        raise RnnskipError(f"{what} does not support models with an output per time step (return_sequences=True "
                           f"at the output) yet; convert without {what.split('/')[0]}")
    ds = _load_data(data, ir)
    cal = _load_data(calib, ir, "--calib") if calib else ds
    sk = None
    if skip:  # time-step skipping (issue 4): options and predictor folder checked before anything is written
        from .skip.convert import SkipSetup
        sk = SkipSetup.prepare(ir, log=click.echo, **skip)
    dl = None
    if delta:  # delta network (issue 5): the thresholds file is checked before anything is written
        from .delta.cli import DeltaSetup
        dl = DeltaSetup.prepare(ir, delta)
    inputs = [model, data, calib, delta] + ([skip.get("predictor"), skip.get("train"), skip.get("val")] if skip else [])
    with atomic_dir(out, "report.json", inputs=inputs) as tmp:
        qm, ranges = P.quantize_model(ir, cal, calib_max, progress)
        qm.calibration = {"source": str(calib) if calib else f"{data} (the evaluation data; pass --calib to separate)",
                          "sequences": ranges.sequences}
        if sk:
            sk.attach(ir, qm, tmp, progress)
        if dl:
            dl.attach(qm)
        from .targets.fit import check_fits
        check_fits(qm, int(ds.x.shape[1]), target)   # refuse before compiling
        src = tmp / "src"
        from .generate import generate
        generate(qm, src, max_t=int(ds.x.shape[1]), kernels=kernels)
        so = P.build_host(src, tmp / "host") if host else None
        n = emulate_max if emu.board is None else (emulate_max or bundle)   # a board image holds its sequences
        fw = P.build_firmware(src, tmp / "firmware", emu, variant, qm, ds, n, int(ds.x.shape[1]), ir.name)
        ev = P.evaluate(ir, qm, ds, host_so=so, firmware=fw, emulator=emu, emulate_max=n)
        rep = build_report(ir, qm, ev, target, kernels, variant, firmware=fw)
        k = int(ev.device_checked)
        if sk:
            from .skip.evaluate import with_predictor
            ref = P.dense_reference(with_predictor(qm, None), tmp / "dense", emu, ds, k, kernels, variant, ir.name)
            rep["skip"] = sk.section(ir, qm, ds, ev, tmp, target=target, model_path=str(model),
                                     dense_fw=ref.firmware if ref else None, dense_emu=ref.result if ref else None)
        if dl:
            from .delta.report import without_delta
            ref = P.dense_reference(without_delta(qm), tmp / "dense-ref-delta", emu, ds, k, kernels, variant, ir.name)
            rep["delta"] = dl.section(ir, qm, ds, ev, tmp, fw=fw, target=target,
                                      dense_fw=ref.firmware if ref else None, dense_emu=ref.result if ref else None)
        if sk and dl:   # each section measures its own method against the model with the other one still on
            rep["skip"]["baseline"] = "this model without the skip predictor, delta thresholds on"
            rep["delta"]["baseline"] = "this model without delta thresholds, skip predictor on"
        write_report(rep, tmp / "report.json")
        write_plots(ev, tmp, f"{ir.name} on {target.name} ({kernels}, {variant})")
        P.save_pickle(ir, tmp / "model.ir.pkl")
        P.save_pickle(qm, tmp / "model.q.pkl")
        P.save_pickle(_build_record(target, board, variant, wait_states, kernels, fw), tmp / "build.pkl")
        for stage in ("import", "quantize", "generate", "build"):   # the stage commands can carry on from here
            P.stage_done(tmp, stage)
    if export:
        from .boards.export import export_project
        from .boards.firmware import make_bundle
        bd = make_bundle(qm, ds.x, ds.lengths, emulate_max or bundle)
        from .targets.fit import check_fits
        check_fits(qm, int(ds.x.shape[1]), target, where=f"board {board.name}", bundled_bytes=bd.flash_bytes())
        export_project(Path(out) / "src", export, board, bd, variant, kernels, ir.name, wait_states)
        click.echo(f"wrote the {board.name} firmware project to {export} (cmake with cmake/arm-none-eabi.cmake, or make)")
    click.echo(table(rep))
    from .delta.report import table_rows as delta_rows
    from .skip.convert import table_rows as skip_rows
    for key, rows_of in (("skip", skip_rows), ("delta", delta_rows)):
        if key in rep:
            base = [(f"{key} baseline", rep[key]["baseline"])] if "baseline" in rep[key] else []
            click.echo("\n".join(f"  {k:<21} {v}" for k, v in base + rows_of(rep[key])))
    click.echo(f"wrote {Path(out) / 'report.json'}")
    if rep["bitexact"]["mismatches"]:
        raise RnnskipError(f"{rep['bitexact']['mismatches']} sequences differ from the golden model "
                           f"({rep['bitexact']['first_mismatch']}); this is a bug, please report it")
    if not calib:   # after the run, so that a failure is still one line
        note(f"note: calibrated on --data {data}, the evaluation data; pass --calib train.npz so the int8 "
             f"accuracy is not measured on the calibration data")
    return rep


_common = [
    click.option("--target", "target_name", default=None, help="Cortex-M target (see 'rnnskip targets'; default: the board's core, else cortex-m4)."),
    click.option("--board", "board_name", default=None, help="Board: the target's core on a real part's memory map (see 'rnnskip boards')."),
    click.option("--kernels", default="portable", show_default=True, help="Kernel provider: portable, cmsis-nn (needs CMSIS_NN_PATH) or naive (baseline loops)."),
    click.option("--variant", type=click.Choice(["dsp", "plain"]), default=None, help="Portable kernels: DSP path or plain C (default: dsp where the core has it)."),
    click.option("--flash-wait-states", "wait_states", type=click.IntRange(0, 15), default=None, help="Override the target's flash wait states in the cycle model."),
]


#: time-step skipping (issue 4) options of rnnskip-convert
_skip_opts = [
    click.option("--predictor", type=click.Path(file_okay=False), default=None, help="Skip predictor folder from 'rnnskip train-predictor': the firmware skips the steps it rejects."),
    click.option("--skip", type=click.Choice(["auto", "off"]), default=None, help="auto: train a skip predictor now (needs --train, --val, --max-loss) and convert with it; off: no skipping (the default)."),
    click.option("--train", type=click.Path(dir_okay=False), default=None, help="--skip auto: training data (.npz) for the predictor."),
    click.option("--val", type=click.Path(dir_okay=False), default=None, help="--skip auto: validation data (.npz) for its thresholds."),
    click.option("--max-loss", type=float, default=None, help="--skip auto: accuracy loss budget in points on --val."),
    click.option("--predictor-type", "ptype", type=click.Choice(["mlp", "logistic", "tree", "forest"]), default=None, help="--skip auto: predictor type (default mlp)."),
    click.option("--margin-se", type=float, default=None, help="--skip auto: meet --max-loss with this many standard errors of the validation loss to spare (default 0)."),
]


def _apply(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@click.command("convert", cls=OneLineCommand)
@click.argument("model", type=click.Path())
@_apply(_common)
@click.option("--data", type=click.Path(dir_okay=False), required=True, help="Evaluation data (.npz: x, y, optional lengths).")
@click.option("--calib", type=click.Path(dir_okay=False), default=None, help="Calibration data (.npz); default: --data.")
@click.option("--calib-max", default=1000, show_default=True, help="At most this many calibration sequences.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (replaced when complete).")
@click.option("--emulate-max", type=click.IntRange(min=1), default=None, help="Emulate only the first N sequences (default: all).")
@click.option("--traffic-sample", default=16, show_default=True, help="Sequences whose memory traffic is counted exactly.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Emulator processes.")
@click.option("--emulator", default="unicorn", show_default=True, help="unicorn (one function, cycle model), qemu or renode (boot the --board image).")
@click.option("--bundle", type=click.IntRange(min=1), default=16, show_default=True, help="qemu/renode: test sequences linked into the board image (--emulate-max overrides).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True, help="qemu/renode: seconds to wait for the firmware's summary line.")
@click.option("--export", type=click.Path(file_okay=False), default=None, help="Also write a standalone CMake + Makefile firmware project for --board here.")
@click.option("--delta", type=click.Path(dir_okay=False), default=None, help="Delta-network thresholds (delta.json from 'rnnskip delta-tune'): the firmware reads only the weight columns of inputs/units that changed.")
@_apply(_skip_opts)
@guard
def convert_cmd(model, target_name, board_name, kernels, variant, wait_states, data, calib, calib_max, out,
                emulate_max, traffic_sample, workers, emulator, bundle, timeout, export, delta, **skip):
    """Convert MODEL (.h5/.keras), build firmware, emulate it on --data and report."""
    skip = skip if (skip.get("predictor") or skip.get("skip") or skip.get("train") or skip.get("val")
                    or skip.get("max_loss") is not None or skip.get("margin_se") is not None) else None
    run_convert(model, target_name, data, out, kernels, variant, calib, calib_max, emulate_max,
                traffic_sample, wait_states, workers, board_name=board_name, emulator=emulator,
                bundle=bundle, timeout=timeout, export=export, skip=skip, delta=delta)


def convert_main():
    convert_cmd(prog_name="rnnskip-convert")


@click.group(cls=OneLineGroup)
@click.version_option(package_name="rnnskip")
def main():
    """rnnskip: cheap recurrent-network inference on Arm Cortex-M.

    Stages, each reading and writing a work folder: import -> quantize ->
    generate -> build -> emulate -> report. 'convert' runs them all.
    """


main.add_command(convert_cmd)
from .delta.cli import delta_train_cmd, delta_tune_cmd  # noqa: E402  (delta networks, issue 5)
main.add_command(delta_tune_cmd)
main.add_command(delta_train_cmd)


@main.command("inspect")
@click.argument("model", type=click.Path())
@click.option("--max-t", type=click.IntRange(min=1), default=64, show_default=True, help="Sequence length the RAM estimate sizes the I/O buffers for.")
@click.option("--target", "target_names", multiple=True, help="Estimate only for these targets (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
@guard
def inspect_cmd(model, max_t, target_names, as_json):
    """Layers, parameters, MACs per step, int8 flash/RAM per target, and whether MODEL converts
    (exit status 0) or what blocks it (exit status 1, also when it fits none of the --target
    cores asked for), without calibration data or a compiler."""
    import json as _json
    from .inspect import format_text, inspect_file
    ins = inspect_file(model, max_t=max_t, target_names=list(target_names) or None)
    click.echo(_json.dumps(ins.to_dict(), indent=2) if as_json else format_text(ins))
    if not ins.converts or (target_names and not any(t["fits"] for t in ins.targets)):
        sys.exit(1)


@main.command("import")
@click.argument("model", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Work folder to create (model.ir.pkl).")
@guard
def import_cmd(model, out):
    """Read MODEL into the IR (work folder: model.ir.pkl) and print its layers."""
    from . import pipeline as P
    ir = P.import_model(model)
    Path(out).mkdir(parents=True, exist_ok=True)
    P.save_pickle(ir, Path(out) / "model.ir.pkl")
    P.stage_done(out, "import")
    click.echo(f"{ir.name}: {'tokens' if ir.is_token_model else 'features'} -> "
               + " -> ".join(f"{l.kind.upper()}({l.units})" for l in ir.rnn_layers)
               + "".join(f" -> Dense({d.out_dim}, {d.activation})" for d in ir.head)
               + f"; {ir.params():,} params, {ir.macs_per_step():,} MAC/step")
    for n in ir.notes:
        click.echo(f"note: {n}")


@main.command("quantize")
@click.argument("work", type=click.Path(file_okay=False))
@click.option("--calib", type=click.Path(dir_okay=False), required=True, help="Calibration data (.npz).")
@click.option("--calib-max", default=1000, show_default=True, help="At most this many calibration sequences.")
@guard
def quantize_cmd(work, calib, calib_max):
    """Calibrate and quantise the imported model (writes model.q.pkl)."""
    from . import pipeline as P
    ir = P.load_pickle(Path(work) / "model.ir.pkl", "import", ModelIR)
    qm, ranges = P.quantize_model(ir, _load_data(calib, ir, "--calib"), calib_max)
    qm.calibration = {"source": str(calib), "sequences": ranges.sequences}
    P.save_pickle(qm, Path(work) / "model.q.pkl")
    P.stage_done(work, "quantize")
    click.echo(f"quantised on {ranges.sequences} sequences; int8 weights {qm.flash_weight_bytes():,} bytes")


@main.command("generate")
@click.argument("work", type=click.Path(file_okay=False))
@click.option("--max-t", type=click.IntRange(min=1), default=256, show_default=True, help="Longest sequence the I/O buffers hold.")
@click.option("--kernels", default="portable", show_default=True, help="Kernel provider: portable, cmsis-nn (needs CMSIS_NN_PATH) or naive (baseline loops).")
@guard
def generate_cmd(work, max_t, kernels):
    """Render the C sources into WORK/src (flash these with your own project)."""
    from . import pipeline as P
    from .generate import generate
    P.check_kernels(kernels)
    P.check_fresh(work, "generate")
    qm = P.load_pickle(Path(work) / "model.q.pkl", "quantize", QModel)
    with atomic_dir(Path(work) / "src", "rnnskip_model.h", what="WORK/src") as tmp:
        files = generate(qm, tmp, max_t=max_t, kernels=kernels)
    P.stage_done(work, "generate")
    click.echo(f"wrote {len(files)} files to {Path(work) / 'src'}")


@main.command("build")
@click.argument("work", type=click.Path(file_okay=False))
@_apply(_common)
@guard
def build_cmd(work, target_name, board_name, kernels, variant, wait_states):
    """Compile WORK/src for the target (WORK/firmware) and for this machine (WORK/host)."""
    from . import pipeline as P
    P.check_kernels(kernels)
    board, target = _board_target(target_name, board_name, wait_states)
    src = Path(work) / "src"
    if not src.is_dir():
        raise RnnskipError(f"{src} not found; run 'rnnskip generate {work}' first")
    P.check_fresh(work, "build")
    variant = _variant(target, variant, kernels)
    from .targets.fit import check_fits
    check_fits(P.load_pickle(Path(work) / "model.q.pkl", "quantize", QModel), _io_max_t(Path(work)), target)
    with atomic_dir(Path(work) / "firmware", "firmware.elf", what="WORK/firmware") as tmp:
        fw = P.build_target(src, tmp, target, variant)
    P.build_host(src, Path(work) / "host")
    P.save_pickle(_build_record(target, board, variant, wait_states, kernels, fw), Path(work) / "build.pkl")
    P.stage_done(work, "build")
    click.echo(f"firmware: {fw.flash_bytes:,} bytes flash, {fw.ram_bytes:,} bytes RAM ({target.name}, {variant})")


@main.command("emulate")
@click.argument("work", type=click.Path(file_okay=False))
@click.option("--data", type=click.Path(dir_okay=False), required=True, help="Evaluation data (.npz: x, y, optional lengths).")
@click.option("--emulate-max", type=click.IntRange(min=1), default=None, help="Emulate only the first N sequences (default: all).")
@click.option("--traffic-sample", default=16, show_default=True, help="Sequences whose memory traffic is counted exactly.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Parallel emulator processes.")
@click.option("--emulator", default="unicorn", show_default=True, help="unicorn, qemu or renode (qemu/renode boot the board image).")
@click.option("--board", "board_name", default=None, help="qemu/renode: the board to boot (default: the one 'build' used).")
@click.option("--bundle", type=click.IntRange(min=1), default=16, show_default=True, help="qemu/renode: test sequences linked into the image.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True, help="qemu/renode: seconds to wait for the summary line.")
@guard
def emulate_cmd(work, data, emulate_max, traffic_sample, workers, emulator, board_name, bundle, timeout):
    """Run float, golden, host build and emulated firmware on --data (writes evaluation.pkl)."""
    from . import pipeline as P
    from .build import Firmware
    from .emulators import choose
    w = Path(work)
    P.check_fresh(w, "emulate")
    ir = P.load_pickle(w / "model.ir.pkl", "import", ModelIR)
    qm = P.load_pickle(w / "model.q.pkl", "quantize", QModel)
    b = P.load_pickle(w / "build.pkl", "build", dict)
    if not {"target", "variant", "wait_states", "flash_bytes", "ram_bytes"} <= set(b):
        raise RnnskipError(f"{w / 'build.pkl'} is not a file written by rnnskip's 'build' stage; run that stage again")
    if emulator == "unicorn":   # the firmware 'build' compiled; --board is for the board emulators
        board, target = None, _board_target(b["target"], b.get("board"), b["wait_states"])[1]
    else:
        board, target = _board_target(None, board_name or b.get("board"), b["wait_states"])
    emu = choose(emulator, target, board, b["wait_states"], traffic_sample=traffic_sample, workers=workers,
                 timeout=timeout)
    ds = _load_data(data, ir)
    max_t = _io_max_t(w)
    if ds.x.shape[1] > max_t:
        raise RnnskipError(f"--data has sequences of {ds.x.shape[1]} steps but the firmware holds {max_t}; "
                           f"regenerate with 'rnnskip generate {work} --max-t {ds.x.shape[1]}'")
    if emu.board is None:
        fw = Firmware(elf=w / "firmware" / "firmware.elf", map=w / "firmware" / "firmware.map",
                      variant=b["variant"], flash_bytes=b["flash_bytes"], ram_bytes=b["ram_bytes"])
        n = emulate_max
    else:
        n = emulate_max or bundle
        fw = P.build_firmware(w / "src", w / f"board-{emu.board.name}", emu, b["variant"], qm, ds, n, max_t, ir.name)
    ev = P.evaluate(ir, qm, ds, host_so=w / "host" / "librnnskip_model.so", firmware=fw, emulator=emu, emulate_max=n)
    b = dict(b, target=emu.target.name, board=emu.board.name if emu.board else b.get("board"),
             flash_bytes=fw.flash_bytes, ram_bytes=fw.ram_bytes, elf=str(fw.elf))
    P.save_pickle({"ev": ev, "build": b}, w / "evaluation.pkl")
    P.stage_done(w, "emulate")
    run = ev.emu.board_run
    if run is not None:
        click.echo(f"{emulator} {emu.board.name}: {ev.device_checked} sequences, {ev.mismatches} "
                   f"mismatches; {run['device_summary'].get('result', '?')} ({run.get('instruction_counts')})")
    else:
        click.echo(f"emulated {ev.device_checked} sequences; {ev.mismatches} mismatches")
    if ev.mismatches:   # the contract is bit-exactness, as in rnnskip-convert
        raise RnnskipError(f"{ev.mismatches} sequences differ from the golden model "
                           f"({ev.first_mismatch}); this is a bug: please report it with the work folder")


def _io_max_t(work: Path) -> int:
    import re
    m = re.search(r"#define RNNSKIP_MAX_T (\d+)", (work / "src" / "rnnskip_io.c").read_text())
    return int(m.group(1))


@main.command("report")
@click.argument("work", type=click.Path(file_okay=False))
@guard
def report_cmd(work):
    """Write WORK/report.json from the last 'emulate' run and print the table."""
    from . import pipeline as P
    from .build import Firmware
    from .report import build_report, table, write_report
    w = Path(work)
    P.check_fresh(w, "report")
    ir = P.load_pickle(w / "model.ir.pkl", "import", ModelIR)
    qm = P.load_pickle(w / "model.q.pkl", "quantize", QModel)
    e = P.load_pickle(w / "evaluation.pkl", "emulate", dict)
    if not {"ev", "build"} <= set(e):
        raise RnnskipError(f"{w / 'evaluation.pkl'} is not a file written by rnnskip's 'emulate' stage; run that stage again")
    b = e["build"]
    _, target = _board_target(b["target"], b.get("board"), b["wait_states"])
    elf = Path(b.get("elf") or w / "firmware" / "firmware.elf")
    fw = Firmware(elf=elf, map=elf.with_suffix(".map"),
                  variant=b["variant"], flash_bytes=b["flash_bytes"], ram_bytes=b["ram_bytes"])
    rep = build_report(ir, qm, e["ev"], target, b["kernels"], b["variant"], firmware=fw)
    write_report(rep, w / "report.json")
    click.echo(table(rep))


@main.command("targets")
@guard
def targets_cmd():
    """List the Cortex-M targets: memory, clock, features, emulator, and the cycle model's
    table and source (an indented line under each target)."""
    from . import targets
    for name in targets.available():
        t = targets.load(name)
        feats = ", ".join(f for f, on in (("DSP", t.dsp), ("FPU", t.fpu), ("MVE", t.mve)) if on) or "-"
        click.echo(f"{t.name:<14} flash {t.flash_size // 1024:>5} KiB  RAM {t.ram_size // 1024:>4} KiB  "
                   f"{t.clock_hz / 1e6:>3.0f} MHz  {feats:<13} {'unicorn' if t.unicorn_cpu else 'qemu only':<9}  "
                   f"{t.description}")
        click.echo(f"{'':<14} cycles: table '{t.cycle_table}', {t.flash_wait_states} flash wait states; "
                   f"source: {t.cycle_source}")


@main.command("boards")
@guard
def boards_cmd():
    """List the boards (--board): part, core, memory map, UART, QEMU machine, Renode platform."""
    from .boards import describe
    for line in describe():
        click.echo(line)


@main.command("train-predictor")
@click.argument("model", type=click.Path())
@click.option("--train", type=click.Path(dir_okay=False), required=True, help="Training data (.npz: x, y, optional lengths).")
@click.option("--val", type=click.Path(dir_okay=False), required=True, help="Validation data (.npz) for the oracle and decision thresholds.")
@click.option("--max-loss", type=float, required=True, help="Accuracy loss budget in points on --val (e.g. 0.3).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Predictor folder (replaced when complete).")
@click.option("--type", "ptype", type=click.Choice(["mlp", "logistic", "tree", "forest"]), default="mlp", show_default=True, help="Predictor type.")
@click.option("--rounds", type=click.IntRange(min=0), default=2, show_default=True, help="Relabel rounds on the predictor's own states (0: oracle labels only).")
@click.option("--size-ratio", type=click.FloatRange(min=0, min_open=True), default=None, help="Predictor size budget as a fraction of the recurrent layers' parameters, embedding and head excluded (default 0.03).")
@click.option("--measure", type=click.Choice(["auto", "l2", "cosine"]), default="auto", show_default=True, help="State-change measure of the oracle.")
@click.option("--calibrate-on", type=click.Choice(["int8", "float"]), default="int8", show_default=True, help="Model the decision threshold is calibrated on.")
@click.option("--calib", type=click.Path(dir_okay=False), default=None, help="Quantisation calibration data for the int8 model (default: --train); pass the --calib you will give rnnskip-convert.")
@click.option("--margin-se", type=float, default=0.0, show_default=True, help="Meet --max-loss with this many standard errors of the validation loss to spare (the loss on a small --val is noisy; 1-2 guards against picking a lucky point).")
@guard
def train_predictor_cmd(model, train, val, max_loss, out, ptype, rounds, size_ratio, measure, calibrate_on, calib,
                        margin_se):
    """Train a time-step skip predictor for MODEL (frozen) within an accuracy budget (issue 4).

    The skip-predictor method is the subject of Arm's US patent 11,663,814 B2
    ("Skip predictor for pre-trained recurrent neural networks"); take advice before commercial use."""
    from .skip.convert import run_train_predictor
    run_train_predictor(model, train, val, max_loss, out, ptype=ptype, rounds=rounds, size_ratio=size_ratio,
                        measure=measure, calibrate_on=calibrate_on, calib=calib, margin_se=margin_se, log=click.echo)
