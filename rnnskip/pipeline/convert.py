"""``rnnskip-convert``: the whole flow in one go, into one output folder that is
also a complete work folder for the stage commands."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from .. import boards, emulators
from ..build import build_host
from ..errors import RnnskipError
from ..outdir import atomic_dir, check_replaceable
from ..quant.diagnose import clip_warnings, saturation_warnings, shared_scale_warnings
from . import stages, workdir


def _quiet(msg: str) -> None:
    pass


def method_setups():
    """The step methods rnnskip-convert offers, by option (rnnskip.stepmethod.MethodSetup)."""
    from ..delta.convert import DeltaSetup
    from ..skip.convert import SkipSetup
    return (SkipSetup, DeltaSetup)


@dataclass
class Conversion:
    """What rnnskip-convert made: the report, its folder and, with --export, the firmware project."""
    report: dict
    out: Path
    board: Optional[str] = None
    export: Optional[str] = None

    def summary(self) -> str:
        """The terminal table, with the step methods' section lines under it."""
        from ..report import table
        text = [table(self.report)]
        for setup in method_setups():
            if setup.key in self.report:
                sec = self.report[setup.key]
                base = [(f"{setup.key} baseline", sec["baseline"])] if "baseline" in sec else []
                rows = setup.table_rows(sec) if sec.get("attached", True) else [(setup.key, sec["why"])]
                front = self.report["model"].get("front_macs_per_frame")
                if front and sec.get("attached", True):   # its MACs leave out what it does not change
                    rows.append((f"{setup.key} MACs count", f"the recurrent layers and the head: the front end's "
                                                            f"{front:,} MAC per step run the same with and without "
                                                            f"{setup.key}"))
                text.append("\n".join(f"  {k:<21} {v}" for k, v in base + rows))
        return "\n".join(text)

    def slower(self) -> List[str]:
        """A note for each step method whose firmware took more cycles per inference than the same
        model without it (the emulated comparison of its section): its per-step bookkeeping cost
        more than the work it saved on these sequences."""
        notes = []
        for setup in method_setups():
            em = (self.report.get(setup.key) or {}).get("emulated") or {}
            c = em.get("cycles_per_inference") or {}
            # cycles where the core has a cycle model, else what was measured: instructions (the M55 under QEMU)
            m, says, unit, why = (c, "makes the firmware slower", "cycles per inference", "") if c.get("dense") else \
                (em.get("instructions_per_inference") or {}, "executes more instructions", "per inference",
                 "; no cycle model on this core")
            if m.get("dense") and m.get(setup.key) and m[setup.key] > m["dense"]:
                name = setup.note_name or setup.option.split('/')[0]
                notes.append(f"note: {name} {says} here: {m[setup.key]:,.0f} {unit} against "
                             f"{m['dense']:,.0f} for the same model without it ({m[setup.key] / m['dense']:.2f}x"
                             f"{why}); its per-step work costs "
                             f"more than the steps or weight columns it saves on these sequences"
                             + setup.slower_hint(self.report[setup.key]))
        return notes

    def check(self) -> None:
        """One line when any output differs from the golden model (the contract is bit-exactness)."""
        st = self.report.get("selftest") or {}
        if st.get("host_failures"):
            raise RnnskipError(f"rnnskip_selftest() failed {st['host_failures']} of its {st['sequences']} sequences on "
                               f"the host build; this is a bug, please report it")
        b = self.report["bitexact"]
        if b["mismatches"]:
            raise RnnskipError(f"{b['mismatches']} sequences differ from the golden model ({b['first_mismatch']}); "
                               f"this is a bug, please report it")


def _unlabelled_ok(ir, setups) -> bool:
    """Whether step methods can run on unlabelled --data: each measures a regression model in its outputs' units
    against the model without it (MethodSetup.regression), and the model is no classifier (one that needs labels
    to be scored: its section is an accuracy)."""
    from ..outputs import check_class_outputs
    if not all(s.regression for s in setups):
        return False
    try:   # unlabelled: a one-logit model is no classifier here (its integer 0/1 labels would make it one)
        check_class_outputs(ir, "", *([None] if ir.output_dim == 1 else []))
    except RnnskipError:
        return True
    return False


def run_convert(model, target_name, data, out, kernels="portable", variant=None, calib=None,
                calib_max=1000, emulate_max=None, traffic_sample=16, wait_states=None, workers=2,
                host=True, progress=True, board_name=None, emulator=None, bundle=16, timeout=120.0,
                export=None, methods: Optional[dict] = None, log: Callable[[str], None] = _quiet,
                note: Callable[[str], None] = _quiet, weights: Optional[str] = None,
                prefix: str = "rnnskip", selftest: int = 0, max_t: Optional[int] = None) -> Conversion:
    """Import, quantize, generate, build, emulate and report MODEL into ``out`` (replaced
    only when complete). Used by rnnskip-convert, the demo and the benchmarks.

    emulator: "unicorn", "qemu" or "renode"; None picks Unicorn where it has the core, else
    QEMU on ``board_name`` or the core's default board (rnnskip.emulators.choose).
    board_name: build for that board's memory map; QEMU and Renode boot the board image with
    ``bundle`` test sequences (``emulate_max`` if given) linked in.
    methods: the step methods' options by key (None or missing: off): ``"skip"`` time-step
    skipping options (keys predictor, skip, train, val, max_loss, ptype, margin_se; see
    rnnskip.skip.convert.SkipSetup.prepare), ``"delta"`` a thresholds file (delta.json).
    log: progress lines (predictor training); note: one-line remarks for stderr (the emulator
    picked for a core Unicorn lacks, a delta grid that differs).
    weights: "flash" (None), "sram" or "tcm": where the firmware keeps its weights (Unicorn only).
    selftest: write ``src/rnnskip_selftest.c`` with that many sequences of ``data`` (rnnskip.selftest),
    run on the host build before the report is written.
    The caller checks bit-exactness with :meth:`Conversion.check` after showing the report."""
    from ..converter import source_check
    from ..generate import check_prefix, generate
    from ..report import build_report, write_plots, write_report
    from ..selftest import make_selftest, selftest_section
    from ..targets.fit import check_fits
    stages.check_kernels(kernels)
    if kernels == "cmsis-nn":   # refused before the model is even read, not after calibrating it
        from ..build import cmsis_nn_path
        cmsis_nn_path()
    check_prefix(prefix)
    board, target = boards.resolve(target_name, board_name, wait_states, weights)
    if target.weights != "flash" and (emulator in ("qemu", "renode") or export):
        raise RnnskipError(stages.weights_unicorn_only(target.weights))
    emu, why = emulators.choose(emulator, target, board, wait_states, traffic_sample=traffic_sample,
                                workers=workers, progress=progress, timeout=timeout)
    if target.weights != "flash" and (emu.board is not None or export):
        raise RnnskipError(stages.weights_unicorn_only(target.weights))
    if export is not None and not str(export).strip():
        raise RnnskipError("--export is empty: give the folder to write the board project into")
    if export and board is None:
        raise RnnskipError("--export needs --board: the project is for one board (memory map, startup, UART); "
                           "see 'rnnskip boards'")
    if export:
        board.require_uart("--export")   # now, not after the whole conversion
    if why:
        note(why)
    board, target = (emu.board or board), emu.target
    variant = stages.kernel_variant(target, variant, kernels)
    if export:   # refused now rather than after the whole conversion
        from ..boards.export import EXPORT_MARKER, EXPORT_REGENERATED
        e, o = Path(export).resolve(), Path(out).resolve()
        if e == o or o in e.parents or e in o.parents:   # each is replaced as a whole: neither may hold the other
            how = "the same folder as" if e == o else ("inside" if o in e.parents else "holds")
            raise RnnskipError(f"--export {export} is {how} --out {out}, and each is replaced as a whole; give the "
                               f"exported project a folder of its own")
        check_replaceable(export, EXPORT_MARKER, "--export", [model, data, calib], EXPORT_REGENERATED)
    check_replaceable(out, "report.json", inputs=[model, data, calib])   # before the model is read (seconds)
    methods = {k: v for k, v in (methods or {}).items() if v}
    unknown = set(methods) - {s.key for s in method_setups()}
    if unknown:
        raise ValueError(f"run_convert: no step method {', '.join(sorted(unknown))}")
    for setup in method_setups():
        setup.check_options(methods.get(setup.key))
    ir = stages.import_model(model)
    ds = stages.load_data(data, ir, labels=None, note=note)   # unlabelled: no accuracy, the rest as usual
    if max_t is not None and max_t < ds.x.shape[1]:
        raise RnnskipError(f"--max-t {max_t} is shorter than --data's sequences of {ds.x.shape[1]} steps; give at "
                           f"least {ds.x.shape[1]}")
    if ds.y is None and methods and not _unlabelled_ok(ir, [s for s in method_setups() if s.key in methods]):
        what = next(s.option for s in method_setups() if s.key in methods)
        raise RnnskipError(f"--data {data} has no labels (y): {what} is reported as accuracy with and without it; "
                           f"add y to --data, or convert without {what.split('/')[0]}")
    classes = [s for s in method_setups() if s.key in methods and not s.regression]
    if ds.y is not None and classes:
        from ..outputs import check_class_outputs, is_regression
        what = classes[0].option
        check_class_outputs(ir, what)   # the model first: a one-output regression model is not the data's fault
        if is_regression(ds.y):   # the methods' sections are accuracies on classes: refuse before any work
            raise RnnskipError(f"--data {data} holds regression targets (float y): {what} is reported as accuracy on "
                               f"class labels; give integer class labels, or convert without {what.split('/')[0]}")
    cal = stages.load_data(calib, ir, "--calib", labels=False, note=note, loaded=[data]) if calib else ds
    ref_check = source_check.check(ir, ds.x, ds.lengths)   # the float reference against onnxruntime, as given
    ref_warning = source_check.warning(ref_check)
    if ref_warning:
        note(ref_warning)
    # step methods: options, predictor folders and thresholds files checked before anything is written
    setups = [s for s in (setup.prepare(ir, methods.get(setup.key), log, note, [data, calib])
                          for setup in method_setups()) if s]
    inputs = [model, data, calib] + [p for s in setups for p in s.inputs]
    with atomic_dir(out, "report.json", inputs=inputs, hashed=True) as tmp:   # an edited file stops a re-run
        qm, ranges = stages.quantize_model(ir, cal, calib_max, progress)
        for line in clip_warnings(qm, *stages.calibration_sample(cal, calib_max)) + \
                shared_scale_warnings(qm, ranges.features):
            note(line)
        if not calib:
            source = f"{data} (the evaluation data; pass --calib to separate)"
        elif Path(calib).resolve() == Path(data).resolve():
            source = f"{calib} (also the evaluation data; pass --data to separate)"
        else:
            source = str(calib)
        qm.calibration = {"source": source, "sequences": ranges.sequences}
        qm.c_prefix = prefix
        for s in setups:
            s.attach(ir, qm, tmp, progress, note, data=ds)
        if max_t is None and qm.bidi is not None:   # the one buffer the step API itself is bounded by
            from ..generate import bidi_steps
            note(f"note: the Bidirectional window buffer holds {bidi_steps(qm, ds.x.shape[1])} steps, for --data's "
                 f"{ds.x.shape[1]}-step sequences: a longer stream's later steps are dropped (rnnskip_step returns "
                 f"RNNSKIP_STEP_WINDOW_FULL); give --max-t for longer windows")
        max_t = int(ds.x.shape[1]) if max_t is None else int(max_t)
        check_fits(qm, max_t, target)   # refuse before compiling
        if export:   # the exported image holds its test sequences: refused now, not after the conversion
            from ..boards.firmware import make_bundle
            bd = make_bundle(qm, ds.x, ds.lengths, emulate_max or bundle)
            check_fits(qm, max_t, target, where=f"board {board.name}", bundled_bytes=bd.flash_bytes())
        st = make_selftest(qm, ds.x, ds.lengths, selftest) if selftest else None
        if st is not None and st.n < selftest:
            note(f"note: --selftest {selftest}: --data has {st.n} sequence(s), so the self-test holds {st.n}")
        if st is not None:
            est = check_fits(qm, max_t, target)
            if est.flash + st.flash_bytes() > target.flash_size:
                raise RnnskipError(f"--selftest {selftest}: the vectors ({st.flash_bytes():,} B) and the model (about "
                                   f"{est.flash:,} B) need more flash than {target.name} has "
                                   f"({target.flash_size:,} B); use a smaller --selftest")
        src = tmp / "src"
        generate(qm, src, max_t=max_t, kernels=kernels, selftest=st)
        so = build_host(src, tmp / "host") if host else None
        n = emulate_max if emu.board is None else (emulate_max or bundle)   # a board image holds its sequences
        fw = stages.build_firmware(src, tmp / "firmware", emu, variant, qm, ds, n, max_t, ir.name)
        ev = stages.evaluate(ir, qm, ds, host_so=so, firmware=fw, emulator=emu, emulate_max=n)
        for line in saturation_warnings(qm, ev.saturation, "the calibration data" if calib else "--data itself"):
            note(line)
        rep = build_report(ir, qm, ev, target, kernels, variant, firmware=fw)
        if st is not None:
            rep["selftest"] = selftest_section(st, so)
        if ref_check is not None:
            rep["reference_check"] = ref_check
        for s in setups:   # each method against the same model without it (the others still on)
            if s.not_attached is not None:
                rep[s.key] = s.unattached_section()
                continue
            rep[s.key] = s.section(ir, qm, ds, ev, tmp, stages.compare_without(qm, s.key, ir, ds, ev, fw, emu, tmp,
                                                                               kernels, variant, target), str(model))
            others = ", ".join(f"{o.what} on" for o in setups if o is not s and o.not_attached is None)
            if others:
                rep[s.key]["baseline"] = f"this model without {s.what}, {others}"
                # each method chose (and certified) its settings on the model without the others
                rep[s.key]["budget_note"] = (f"{s.what} was chosen and certified on this model without "
                                             f"{' or '.join(o.what for o in setups if o is not s)}; the budgets "
                                             f"are separate and the losses can add")
        attached = [s for s in setups if s.not_attached is None]
        if len(attached) > 1:
            note(f"note: {' and '.join(s.what for s in attached)} were each chosen and certified on the model "
                 f"without the other: their budgets are separate and the accuracy losses can add (the report's "
                 f"sections give the accuracy with both on)")
        write_report(_final_paths(rep, str(tmp), str(tmp.parent / Path(out).name)), tmp / "report.json")
        write_plots(ev, tmp, f"{ir.name} on {target.name} ({kernels}, {variant})",
                    fit=not any(m.varying_step_cost for m in qm.methods))
        # a complete work folder: the stage commands can carry on from here
        workdir.save_ir(tmp, ir)
        workdir.save_model(tmp, qm)
        workdir.generated(tmp, max_t, kernels)
        workdir.save_build(tmp, workdir.build_record(target, board, variant, wait_states, kernels, fw, max_t))
    if export:
        from ..boards.export import export_project
        export_project(Path(out) / "src", export, board, bd, variant, kernels, ir.name, wait_states,
                       footprint=rep.get("footprint"))
    return Conversion(report=rep, out=Path(out), board=board.name if board else None, export=export)


def _final_paths(obj, tmp: str, out: str):
    """``obj`` with every path inside the temporary folder pointing into the output folder it becomes (a
    predictor trained by --skip auto is saved there)."""
    if isinstance(obj, dict):
        return {k: _final_paths(v, tmp, out) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_final_paths(v, tmp, out) for v in obj]
    if isinstance(obj, str) and (obj == tmp or obj.startswith(tmp + os.sep)):
        return out + obj[len(tmp):]
    return obj
