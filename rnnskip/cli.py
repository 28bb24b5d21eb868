"""Command line: ``rnnskip-convert`` (everything in one go) and the ``rnnskip`` group of stages.

Each command parses its options, calls one function of rnnskip.pipeline (or of the
skip and delta packages) and prints what it returns. Every user error is one line on
stderr and exit status 2 (rnnskip.cli_support); output folders are written to a
temporary sibling and renamed into place only when complete.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_support import OneLineCommand, OneLineGroup, certified_budget, guard, note
from .errors import RnnskipError

_kernels_opt = click.option("--kernels", default="portable", show_default=True,
                            help="Kernel provider: portable, cmsis-nn (needs CMSIS_NN_PATH) or naive (baseline loops).")
_common = [
    click.option("--target", "target_name", default=None,
                 help="Cortex-M target (see 'rnnskip targets'; default: the board's core, else cortex-m4)."),
    click.option("--board", "board_name", default=None,
                 help="Board: the target's core on a real part's memory map (see 'rnnskip boards')."),
    _kernels_opt,
    click.option("--variant", type=click.Choice(["dsp", "plain"]), default=None,
                 help="Portable kernels: DSP path or plain C (default: dsp where the core has it)."),
    click.option("--flash-wait-states", "wait_states", type=click.IntRange(0, 15), default=None,
                 help="Override the target's flash wait states in the cycle model."),
    click.option("--weights", type=click.Choice(["flash", "sram", "tcm"]), default=None,
                 help="Where the int8 weights live: flash (read in place; the default), sram or tcm (copied there "
                      "once at start-up; tcm needs a board with a data TCM, e.g. stm32f746). Unicorn only."),
]


#: time-step skipping options of rnnskip-convert
_skip_opts = [
    click.option("--predictor", type=click.Path(file_okay=False), default=None,
                 help="Skip predictor folder from 'rnnskip train-predictor': "
                      "the firmware skips the steps it rejects."),
    click.option("--skip", type=click.Choice(["auto", "off"]), default=None,
                 help="auto: train a skip predictor now (needs --train, --val, --max-loss) and convert with it; "
                      "off: no skipping (the default)."),
    click.option("--train", type=click.Path(dir_okay=False), default=None,
                 help="--skip auto: training data (.npz) for the predictor."),
    click.option("--val", type=click.Path(dir_okay=False), default=None,
                 help="--skip auto: validation data (.npz) for its thresholds."),
    click.option("--max-loss", type=float, default=None, help="--skip auto: accuracy loss budget in points on --val."),
    click.option("--predictor-type", "ptype", type=click.Choice(["mlp", "logistic", "tree", "forest"]), default=None,
                 help="--skip auto: predictor type (default mlp)."),
    click.option("--margin-se", type=float, default=None,
                 help="--skip auto: meet --max-loss with this many standard errors of the validation loss "
                      "to spare (default 0)."),
    click.option("--confidence", type=float, default=None,
                 help="--skip auto: certify the budget with this probability on half of --val the training never "
                      "sees (default 0.9)."),
    click.option("--max-disagreement", type=click.FloatRange(min=0, max=100), default=None,
                 help="--skip auto: budget instead of --max-loss: percent of sequences whose class differs from "
                      "the dense model's (an output per step: of each sequence's steps, averaged; no labels needed "
                      "in --val)."),
]


_prefix_opt = click.option("--prefix", default="rnnskip", show_default=True,
                           help="Prefix of the generated C's external names (rnnskip_init -> PREFIX_init), so two "
                                "models link into one firmware image (give it again when generate runs again).")


def _apply(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@click.command("convert", cls=OneLineCommand)
@click.version_option(package_name="rnnskip")
@click.argument("model", type=click.Path())
@_apply(_common)
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Evaluation data (.npz: x, optional y and lengths; without y no accuracy is reported); "
                   "default: --calib (the report then says the accuracy is measured on the calibration data).")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Calibration data (.npz); default: --data.")
@click.option("--calib-max", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many calibration sequences.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder (replaced when complete).")
@click.option("--emulate-max", type=click.IntRange(min=1), default=None,
              help="Emulate only the first N sequences (default: all).")
@click.option("--traffic-sample", type=click.IntRange(min=0), default=16, show_default=True,
              help="Sequences whose memory traffic is counted exactly, spread evenly over the emulated ones.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Emulator processes.")
@click.option("--emulator", default=None,
              help="unicorn (one function, cycle model; the default), qemu or renode (boot the --board image); "
                   "a core Unicorn lacks (cortex-m55) runs on qemu, by default on the board its target names.")
@click.option("--bundle", type=click.IntRange(min=1), default=16, show_default=True,
              help="qemu/renode: test sequences linked into the board image (--emulate-max overrides).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="qemu/renode: seconds to wait for the firmware's summary line.")
@click.option("--export", type=click.Path(file_okay=False), default=None,
              help="Also write a standalone CMake + Makefile firmware project for --board here.")
@click.option("--delta", type=click.Path(dir_okay=False), default=None,
              help="Delta-network thresholds (delta.json from 'rnnskip delta-tune'): "
                   "the firmware reads only the weight columns of inputs/units that changed.")
@click.option("--selftest", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also write src/rnnskip_selftest.c: the first N sequences of --data as given and the golden "
                   "outputs; rnnskip_selftest(&state) on the board returns 0 when the build is bit-exact.")
@click.option("--max-t", type=click.IntRange(min=1), default=None,
              help="Longest window the generated buffers hold (Bidirectional layers' window, the I/O buffers); "
                   "default: the longest sequence in --data.")
@_prefix_opt
@_apply(_skip_opts)
@guard
def convert_cmd(model, target_name, board_name, kernels, variant, wait_states, weights, data, calib, calib_max, out,
                emulate_max, traffic_sample, workers, emulator, bundle, timeout, export, delta, selftest, max_t, prefix,
                **skip):
    """Convert MODEL (.h5/.keras, or .onnx), build firmware, emulate it on --data and report."""
    from .pipeline.convert import run_convert
    if data is None and calib is None:
        raise RnnskipError("rnnskip-convert needs data: --calib (sequences to calibrate the int8 grid on) and "
                           "--data (sequences to check and measure the firmware on; default: --calib)")
    no_data = data is None
    data = calib if no_data else data
    skip = skip if (skip.get("predictor") or skip.get("skip") or skip.get("train") or skip.get("val")
                    or any(skip.get(k) is not None for k in ("max_loss", "margin_se", "confidence",
                                                             "max_disagreement", "ptype"))) else None
    conv = run_convert(model, target_name, data, out, kernels, variant, calib, calib_max, emulate_max,
                       traffic_sample, wait_states, workers, board_name=board_name, emulator=emulator,
                       bundle=bundle, timeout=timeout, export=export, methods={"skip": skip, "delta": delta},
                       log=click.echo, note=note, weights=weights, prefix=prefix, selftest=selftest, max_t=max_t)
    if conv.export:
        click.echo(f"wrote the {conv.board} firmware project to {conv.export} (cmake with cmake/arm-none-eabi.cmake, "
                   f"or make)")
    click.echo(conv.summary())
    click.echo(f"wrote {conv.out}: {written(conv.out)}")
    conv.check()
    ctx = click.get_current_context()
    given = [o for o in ("bundle", "timeout")
             if ctx.get_parameter_source(o) == click.core.ParameterSource.COMMANDLINE]
    ignored = [o for o in given if o == "timeout" or not export]    # --export links --bundle sequences in
    if ignored and (conv.report.get("emulation") or {}).get("emulator") == "unicorn":
        two = len(ignored) > 1
        note(f"note: {' and '.join('--' + o for o in ignored)} {'apply' if two else 'applies'} to a board image "
             f"under qemu or renode (--emulator); Unicorn ran the model without {'them' if two else 'it'}")
    if "bundle" in given and emulate_max and emulate_max != bundle and \
            (conv.report.get("emulation") or {}).get("emulator") in ("qemu", "renode"):
        note(f"note: --emulate-max {emulate_max} overrides --bundle {bundle}: the board image holds up to "
             f"{emulate_max} sequences")
    for line in conv.slower():
        note(line)
    if not calib:   # after the run, so that a failure is still one line
        note(f"note: calibrated on --data {data}, the evaluation data; pass --calib train.npz so the int8 "
             f"accuracy is not measured on the calibration data")
    elif no_data:
        note(f"note: no --data: checked and measured on the calibration data --calib {calib}; pass --data "
             f"test.npz so the int8 accuracy is not measured on the data it was calibrated on")


def written(folder: Path) -> str:
    """What a conversion wrote into ``folder``, for its last line: report.json first, then folders, then files."""
    names = sorted((p for p in Path(folder).iterdir() if not p.name.startswith(".")),
                   key=lambda p: (p.name != "report.json", not p.is_dir(), p.name))
    return ", ".join(p.name + ("/" if p.is_dir() else "") for p in names)


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
from .delta.cli import delta_train_cmd, delta_tune_cmd  # noqa: E402  (delta networks)

main.add_command(delta_tune_cmd)
main.add_command(delta_train_cmd)


@main.command("inspect")
@click.argument("model", type=click.Path())
@click.option("--max-t", type=click.IntRange(min=1), default=None,
              help="Sequence length the RAM estimate sizes the I/O buffers for (default: the number of steps a "
                   "model that flattens the time axis reads, else the steps its input declares, else 64).")
@click.option("--target", "target_names", multiple=True, help="Estimate only for these targets (default: all).")
@click.option("--board", "board_names", multiple=True,
              help="Estimate for these boards too: their core on their part's flash and RAM (see 'rnnskip boards').")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
@guard
def inspect_cmd(model, max_t, target_names, board_names, as_json):
    """Layers, parameters, MACs per step, int8 flash/RAM per target (or --board), and whether MODEL converts
    (exit status 0) or what blocks it (exit status 1, also when it fits none of the --target
    cores or --board boards asked for), without calibration data or a compiler."""
    import json as _json

    from .inspect import format_text, inspect_file
    ins = inspect_file(model, max_t=max_t, target_names=list(target_names) or None,
                       board_names=list(board_names) or None)
    if not ins.format and ins.blockers:   # no model file rnnskip reads: bad input (exit 2), as convert says it
        raise RnnskipError(ins.blockers[0])
    click.echo(_json.dumps(ins.to_dict(), indent=2) if as_json else format_text(ins))
    if not ins.converts or ((target_names or board_names) and not any(t["fits"] for t in ins.targets)):
        sys.exit(1)


@main.command("import")
@click.argument("model", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Work folder to create (model.ir.json).")
@guard
def import_cmd(model, out):
    """Read MODEL into the IR (work folder: model.ir.json + .npz) and print its layers."""
    from .converter.ir import POOL_WORDS, DepthwiseConvLayer
    from .pipeline.commands import import_command
    ir = import_command(model, out)
    front = [] if ir.is_token_model else ir.input.front
    click.echo(f"{ir.name}: {'tokens' if ir.is_token_model else 'features'} -> "
               + "".join(f"{'DepthwiseConv1D' if isinstance(f, DepthwiseConvLayer) else 'Conv1D'}({f.out_dim}, "
                         f"{f.taps}, {f.padding}) -> " if hasattr(f, "kernel")
                         else f"{f.kind.capitalize()}Pooling1D({f.pool_size}) -> " for f in front)
               + " -> ".join(f"Bidirectional({l.kind.upper()}({l.units}), {l.merge_mode})" if l.backward is not None
                             else f"{l.kind.upper()}({l.units})" for l in ir.rnn_layers)
               + (f" -> {POOL_WORDS[ir.pool]}" if ir.pool else "")
               + "".join(f" -> Dense({d.out_dim}, {d.activation})" for d in ir.head)
               + f"; {ir.params():,} params, {ir.macs_per_step():,} MAC/step")
    for n in ir.notes:
        click.echo(f"note: {n}")


@main.command("quantize")
@click.argument("work", type=click.Path(file_okay=False))
@click.option("--calib", type=click.Path(dir_okay=False), required=True, help="Calibration data (.npz).")
@click.option("--calib-max", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many calibration sequences.")
@guard
def quantize_cmd(work, calib, calib_max):
    """Calibrate and quantise the imported model (writes model.q.json + .npz)."""
    from .pipeline.commands import quantize_command
    qm, ranges = quantize_command(work, calib, calib_max, note=note)
    click.echo(f"quantised on {ranges.sequences} sequences; int8 weights {qm.flash_weight_bytes():,} bytes")


@main.command("generate")
@click.argument("work", type=click.Path(file_okay=False))
@click.option("--max-t", type=click.IntRange(min=1), default=256, show_default=True,
              help="Longest sequence the I/O buffers hold.")
@click.option("--kernels", default="portable", show_default=True,
              help="Kernel provider: portable, cmsis-nn (needs CMSIS_NN_PATH) or naive (baseline loops).")
@_prefix_opt
@guard
def generate_cmd(work, max_t, kernels, prefix):
    """Render the C sources into WORK/src (flash these with your own project)."""
    from .pipeline.commands import generate_command
    files = generate_command(work, max_t, kernels, prefix)
    click.echo(f"wrote {len(files)} files to {Path(work) / 'src'}")


@main.command("build")
@click.argument("work", type=click.Path(file_okay=False))
@_apply([o for o in _common if o is not _kernels_opt])
@click.option("--kernels", default=None,
              help="The kernel provider 'generate' wrote WORK/src for (the default); another is refused.")
@guard
def build_cmd(work, target_name, board_name, kernels, variant, wait_states, weights):
    """Compile WORK/src for the target (WORK/firmware) and for this machine (WORK/host)."""
    from .pipeline.commands import build_command
    fw, target = build_command(work, target_name, board_name, kernels, variant, wait_states, weights)
    click.echo(f"firmware: {fw.flash_bytes:,} bytes flash, {fw.ram_bytes:,} bytes RAM ({target.name}, {fw.variant})")


@main.command("emulate")
@click.argument("work", type=click.Path(file_okay=False))
@click.option("--data", type=click.Path(dir_okay=False), required=True,
              help="Evaluation data (.npz: x, optional y and lengths; without y no accuracy is reported).")
@click.option("--emulate-max", type=click.IntRange(min=1), default=None,
              help="Emulate only the first N sequences (default: all).")
@click.option("--traffic-sample", type=click.IntRange(min=0), default=16, show_default=True,
              help="Sequences whose memory traffic is counted exactly, spread evenly over the emulated ones.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Parallel emulator processes.")
@click.option("--emulator", default=None,
              help="unicorn (the default), qemu or renode (qemu/renode boot the board image); "
                   "a core Unicorn lacks (cortex-m55) runs on qemu.")
@click.option("--board", "board_name", default=None,
              help="qemu/renode: the board to boot (default: the one 'build' used).")
@click.option("--bundle", type=click.IntRange(min=1), default=16, show_default=True,
              help="qemu/renode: test sequences linked into the image.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="qemu/renode: seconds to wait for the summary line.")
@guard
def emulate_cmd(work, data, emulate_max, traffic_sample, workers, emulator, board_name, bundle, timeout):
    """Run float, golden, host build and emulated firmware on --data (writes evaluation.json + .npz)."""
    from .pipeline.commands import emulate_command
    res = emulate_command(work, data, emulator, board_name, emulate_max, bundle, timeout, traffic_sample, workers,
                          note=note)
    ev, run = res.evaluation, res.evaluation.emu.board_run
    if run is not None:
        click.echo(f"{res.emulator.label}: {ev.device_checked} sequences, {ev.mismatches} mismatches; "
                   f"{run['device_summary'].get('result', '?')} ({run.get('instruction_counts')})")
    else:
        click.echo(f"emulated {ev.device_checked} sequences; {ev.mismatches} mismatches")
    res.check()


@main.command("report")
@click.argument("work", type=click.Path(file_okay=False))
@guard
def report_cmd(work):
    """Write WORK/report.json from the last 'emulate' run and print the table."""
    from .pipeline.commands import report_command
    from .report import table
    click.echo(table(report_command(work)))


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
    """List the boards (--board): part, core, memory map, UART, QEMU machine, Renode platform, memory system."""
    from .boards import describe
    for line in describe():
        click.echo(line)


@main.command("train-predictor")
@click.argument("model", type=click.Path())
@click.option("--train", type=click.Path(dir_okay=False), required=True,
              help="Training data (.npz: x, y, optional lengths).")
@click.option("--val", type=click.Path(dir_okay=False), required=True,
              help="Validation data (.npz) for the oracle and decision thresholds.")
@click.option("--max-loss", type=float, default=None,
              help="Accuracy loss budget in points against the dense model (e.g. 0.3), certified.")
@certified_budget
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Predictor folder (replaced when complete).")
@click.option("--type", "ptype", type=click.Choice(["mlp", "logistic", "tree", "forest"]), default="mlp",
              show_default=True, help="Predictor type.")
@click.option("--rounds", type=click.IntRange(min=0), default=2, show_default=True,
              help="Relabel rounds on the predictor's own states (0: oracle labels only).")
@click.option("--size-ratio", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Predictor size budget as a fraction of the recurrent layers' parameters, "
                   "embedding and head excluded (default 0.03).")
@click.option("--measure", type=click.Choice(["auto", "l2", "cosine"]), default="auto", show_default=True,
              help="State-change measure of the oracle.")
@click.option("--calibrate-on", type=click.Choice(["int8", "float"]), default="int8", show_default=True,
              help="Model the decision threshold is calibrated on.")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Quantisation calibration data for the int8 model (default: --train); "
                   "pass the --calib you will give rnnskip-convert.")
@click.option("--margin-se", type=float, default=0.0, show_default=True,
              help="Meet --max-loss with this many standard errors of the validation loss to spare "
                   "(the loss on a small --val is noisy; 1-2 guards against picking a lucky point).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Random seed: the same seed, data and package versions give the same predictor bit for bit.")
@guard
def train_predictor_cmd(model, train, val, max_loss, max_disagreement, confidence, out, ptype, rounds, size_ratio,
                        measure, calibrate_on, calib, margin_se, seed):
    """Train a time-step skip predictor for MODEL (frozen) within an accuracy budget.

    The skip-predictor method is the subject of Arm's US patent 11,663,814 B2
    ("Skip predictor for pre-trained recurrent neural networks"); take advice before commercial use."""
    from .skip.convert import run_train_predictor
    run_train_predictor(model, train, val, max_loss, out, ptype=ptype, rounds=rounds, size_ratio=size_ratio,
                        measure=measure, calibrate_on=calibrate_on, calib=calib, margin_se=margin_se, log=click.echo,
                        confidence=confidence, max_disagreement=max_disagreement, seed=seed)


if __name__ == "__main__":   # python -m rnnskip.cli
    main(prog_name="rnnskip")
