"""The delta-network commands ``rnnskip delta-tune`` and ``rnnskip delta-train`` (registered
in rnnskip/cli.py); ``rnnskip-convert --delta`` is rnnskip/delta/convert.py."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..cli_support import certified_budget, guard, note
from ..errors import RnnskipError
from .tune import CELL_GRID, GRID


def _our_plot(path: Path) -> bool:
    """Whether ``path`` is a PNG an earlier delta-tune wrote: its "Software" text says so, or (a plot written before
    the text existed) it sits next to the thresholds file of its name, which is one of ours."""
    from .tune import PLOT_SOFTWARE
    try:
        from PIL import Image
        with Image.open(path) as im:
            if im.info.get("Software") == PLOT_SOFTWARE:
                return True
    except Exception:   # not an image at all: not ours
        return False
    if not path.name.endswith("_pareto.png"):
        return False
    thresholds = path.with_name(path.name[: -len("_pareto.png")] + ".json")
    from .spec import DeltaSpec
    try:
        DeltaSpec.load(thresholds)
    except RnnskipError:
        return False
    return True


def run_delta_tune(model, val, max_loss, out, calib=None, calib_max=1000, grid=None, log=click.echo, progress=True,
                   cell_grid=None, confidence=0.9, max_disagreement=None, select=None, warn=note,
                   baseline=None, tolerance=None) -> dict:
    """Tune thresholds on --val, certify them on rows the search did not see, write delta.json
    (+ delta_pareto.png next to it). ``warn``: where a warning goes (the CLI: stderr).
    ``baseline``: the model a delta-trained MODEL was fine-tuned from; the budget is measured
    against its dense int8 model. ``tolerance`` (with ``max_disagreement``): a sequence disagrees when an output
    moves more than it from the dense int8 model's, the budget a regression model is tuned to."""
    from .. import pipeline
    from ..outdir import check_writable
    from .spec import DeltaSpec
    from .tune import CELL_GRID, GRID, certified_tune, plot_pareto
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise RnnskipError(f"--out {out}: the thresholds file must end in .json")
    check_writable(out)
    if out.is_file():   # replaced only when it is an earlier thresholds file, never a user's own JSON
        try:
            DeltaSpec.load(out)
        except RnnskipError:
            raise RnnskipError(f"--out {out} exists and is not an rnnskip delta file; it would be overwritten: "
                               f"choose a new file name or remove it yourself") from None
    from .tune import check_budget
    check_budget(max_loss, max_disagreement, confidence, tolerance)   # before the banner echoes them and any work
    plot = out.with_name(out.stem + "_pareto.png")
    check_writable(plot)
    if plot.is_dir():
        raise RnnskipError(f"{plot} is a folder, where the Pareto plot of --out {out} goes; choose another --out")
    if plot.is_file() and not _our_plot(plot):   # replaced only when an earlier delta-tune wrote it
        raise RnnskipError(f"{plot} exists and delta-tune did not write it; the Pareto plot of --out {out} would "
                           f"overwrite it: choose another --out or move the file")
    from ..datasets import file_sha256, same_rows_file, shared_rows
    if select is not None and Path(select).exists() and Path(val).exists() and same_rows_file(select, val):
        raise RnnskipError(f"--select {select} holds the same rows as --val {val}: the rows that certify the "
                           f"thresholds must be rows the selection never saw; give --select other data, or leave it "
                           f"out (half of --val then selects, the other half certifies)")
    if baseline is not None and not Path(baseline).exists():
        raise RnnskipError(f"--baseline {baseline} not found; give the model MODEL was fine-tuned from")
    early = _early_stopping_rows(model)
    if early and val is not None and Path(val).exists() and early.get("sha256") == file_sha256(val):
        raise RnnskipError(f"--val {val} holds the rows delta-train chose {model}'s epoch on (its --val, recorded in "
                           f"{Path(model).with_suffix('.delta.json')}): rows that picked the model cannot certify "
                           f"it; give delta-tune held-out rows (and delta-train a --val of its own)")
    ir = pipeline.import_model(model)
    from ..quant.grid import grid_of
    from .spec import check_supported
    check_supported(ir.rnn_layers)
    from ..outputs import check_class_outputs

    def classifier(*y):   # what a budget on classes needs (y: the labels, None if missing, left out: not loaded yet);
        if tolerance is not None:   # a regression model is tuned with a tolerance
            return
        try:
            check_class_outputs(ir, "delta-tune", *y)
        except RnnskipError as e:
            raise RnnskipError(f"{e}; for a regression model give --max-disagreement D --tolerance E (at most D% of "
                               f"sequences with an output more than E from the dense int8 model's)") from None
    classifier()
    if val is None:
        raise RnnskipError("--val is required: validation data (.npz) to measure accuracy on")
    bir = pipeline.import_model(baseline) if baseline is not None else None
    if bir is not None:   # before any data is read or quantised
        check_baseline(ir, bir, baseline)
    labels = max_disagreement is None   # a tolerance goes with --max-disagreement: no labels either
    try:
        va = pipeline.load_data(val, ir, "--val", labels=labels, note=warn)
    except RnnskipError as e:   # --max-loss needs labels; unlabelled data has a budget of its own
        if labels and "'y' is missing" in str(e):
            raise RnnskipError(f"{e}; --max-loss needs class labels: for unlabelled data give --max-disagreement D "
                               f"(percent of sequences whose class differs from the dense model's) and --calib")
        raise
    if va.y is not None:   # unlabelled: --calib's labels below (and --calib is required then)
        classifier(va.y)
    if early and Path(str(early.get("data", ""))).is_file():   # the same rows in another file: counted, as --select's
        try:
            shared = shared_rows(pipeline.load_data(early["data"], ir, "delta-train's --val", labels=False), va)
        except RnnskipError:   # no longer data this model reads: nothing to compare
            shared = 0
        if shared:
            warn(f"warning: {shared} of the {len(va)} --val rows also chose {model}'s epoch in delta-train (its "
                 f"--val {early['data']}): the certificate is optimistic on those; remove them from --val")
    sel = pipeline.load_data(select, ir, "--select", labels=labels, note=warn, loaded=[val]) if select else None
    if sel is not None:
        shared = shared_rows(sel, va)
        if shared:
            warn(f"warning: {shared} of the {len(va)} --val rows also appear in --select: the certificate holds for "
                 f"rows the selection never saw, so it is optimistic on those; remove them from one of the files")
    if calib is None and va.y is None:
        raise RnnskipError("--calib is required with unlabelled --val: the int8 grid is calibrated on it")
    cal = (pipeline.load_data(calib, ir, "--calib", labels=False, note=warn, loaded=[val, select])   # no labels needed
           if calib else va)
    if va.y is None:   # unlabelled --val: the training data's labels say whether the model classifies
        classifier(cal.y)
    qm, _ = pipeline.quantize_model(ir, cal, calib_max, progress=False)
    base_qm = None
    if bir is not None:   # quantised on the same rows, as rnnskip-convert would quantise it
        base_qm, _ = pipeline.quantize_model(bir, cal, calib_max, progress=False)
    grid = list(GRID if grid is None else grid)
    cell_grid = list(CELL_GRID if cell_grid is None else cell_grid)
    ref = "the dense int8 model" if baseline is None else f"{baseline}'s dense int8 model"
    of = "of the scored steps (per sequence)" if ir.per_step else "of sequences"
    budget = (f"disagreement with {ref} <= {max_disagreement}% {of}" if max_disagreement
              is not None else f"loss <= {1.0 if max_loss is None else max_loss} points against {ref}")
    if tolerance is not None:
        budget += f" (an output more than {tolerance:g} from its own)"
    log(f"delta-tune: {ir.name}, {len(va)} validation sequences"
        + (f" (+ {len(sel)} in --select)" if sel is not None else " (half select the thresholds, half certify)")
        + f", thresholds from {grid} int8 steps, {budget} at {100 * confidence:g}% confidence; int8 grid "
        f"calibrated on {calib or val}"
        f"{'' if calib else ' (--val; pass --calib train.npz to calibrate on training data)'}: "
        f"give rnnskip-convert the same --calib")
    if calib is None or (Path(calib).exists() and same_rows_file(calib, val)):
        log("note: the int8 grid is calibrated on --val, whose rows also certify the thresholds, so the model "
            "being certified has seen them (a small effect, outside the guarantee): pass --calib train.npz")
    res = certified_tune(ir, qm, va, max_loss=max_loss, max_disagreement=max_disagreement, confidence=confidence,
                         select=sel, grid=grid, cell_grid=cell_grid, data_name=str(val),
                         progress=(lambda s: log("  " + s)) if progress else None, baseline_qm=base_qm,
                         tolerance=tolerance)
    if base_qm is not None and res.certificate.chosen is None:
        # thresholds 0 are MODEL's dense outputs, which nothing certifies against the baseline
        kept = f" ({out} from an earlier run is left as it was)" if out.exists() else ""
        raise RnnskipError(f"{res.certificate.line(str(val))} against {baseline}'s dense int8 model; nothing "
                           f"written{kept}: give more validation sequences or a larger budget, or deploy {baseline}")
    spec = res.spec(ir)
    spec.grid = grid_of(qm)
    spec.tuning.update({"calibration": str(calib or val),   # the int8 grid: convert must use the same
                        "validation": str(val), "baseline": None if baseline is None else str(baseline),
                        # delta-train's record goes on: this file may replace the one it was in
                        **({"early_stopping": early} if early else {})})
    from ..outputs import is_regression
    if tolerance is not None and va.y is not None and is_regression(va.y):
        # the budget is on the outputs' moves from the dense model; what they cost against the labels, so a
        # tolerance can be chosen knowing it (on all of --val: both halves)
        from ..outputs import method_error
        from ..quant.golden import GoldenModel
        from .golden import with_delta
        dense_out = GoldenModel(qm).run(va.x, va.lengths)[0]
        delta_out = GoldenModel(with_delta(qm, spec)).run(va.x, va.lengths)[0]
        spec.tuning["error_on_validation"] = method_error(ir, qm, va, delta_out, dense_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        spec.save(tmp, ir)
        plot_pareto(res, plot, f"{ir.name}: delta thresholds on {res.extra['selection_sequences']} selection "
                    f"sequences")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    c, cert = res.chosen, res.certificate
    cell = "" if c.theta_m == (None,) * len(c.theta_m) else f", cell {list(c.theta_m)} (pre-activation steps)"
    log(f"chosen: input {list(c.theta_x)}, hidden {list(c.theta_h)} (int8 steps){cell}: "
        + (cert.line(str(val)) if cert.chosen is not None else "nothing certified (the warning says why)")
        + "; " + _calibration_numbers(res))
    e = spec.tuning.get("error_on_validation")
    if e is not None:
        log(f"on all of {val}: RMSE against the labels {e['dense_int8_vs_label_rmse']:.4g} (dense int8) -> "
            f"{e['method_int8_vs_label_rmse']:.4g} (delta int8); the delta outputs' RMSE against the dense ones "
            f"{e['method_vs_dense_rmse']:.4g}, largest difference {e['method_vs_dense_max_abs']:.4g}")
    from .report import unpaid_cell_threshold
    cell_m = unpaid_cell_threshold(list(c.theta_m), c.density_cells)
    if cert.chosen is not None and cell_m is not None:
        # the largest cell threshold within the budget: fewer operations, not always fewer cycles
        warn(f"warning: the chosen cell threshold m{cell_m} still evaluates {c.density_cells:.0%} of the units and "
             f"adds a check to every one, which can make the firmware slower than the same thresholds without it: "
             f"compare the cycles of a conversion with {out} and one with thresholds from --cell-grid ''")
    if cert.chosen is None:
        # at thresholds 0 only values that change transmit: a relu layer's zeros that stay zero do not, so the
        # delta firmware can still be faster than the dense one; its cycles say which
        warn(
            f"warning: {cert.line(str(val))}; wrote thresholds 0, which compute the dense model's outputs exactly "
            f"(only values that change transmit: {res.dense_macs / max(c.macs, 1):.2f}x fewer MACs on these rows); "
            f"compare the cycles of conversions with and without --delta before deploying it. Give more validation "
            f"sequences (unlabelled ones work with --max-disagreement) or a larger budget")
    log(f"wrote {out} and {plot}")
    return spec.to_json(ir)


def _early_stopping_rows(model) -> dict:
    """What delta-train recorded of the rows that chose MODEL's epoch (``tuning.early_stopping`` of the
    thresholds file it writes next to MODEL); empty for any other model."""
    import json
    p = Path(model).with_suffix(".delta.json")
    try:
        e = json.loads(p.read_text()).get("tuning", {}).get("early_stopping") if p.is_file() else None
    except (OSError, ValueError, AttributeError):
        return {}
    return e if isinstance(e, dict) else {}


def check_baseline(ir, bir, path) -> None:
    """The baseline must read the same inputs and predict the same classes as the tuned model."""
    def inputs(m):
        i = m.input
        return ("token ids", i.vocab) if m.is_token_model else ("features", i.features)
    if inputs(bir) != inputs(ir):
        (k1, n1), (k2, n2) = inputs(ir), inputs(bir)
        raise RnnskipError(f"--baseline {path} reads {k2} ({n2}) but the model reads {k1} ({n1}); give the model "
                           f"it was fine-tuned from")
    if (bir.output_dim, bir.output_activation) != (ir.output_dim, ir.output_activation):
        raise RnnskipError(f"--baseline {path} has {bir.output_dim} {bir.output_activation} outputs but the model "
                           f"has {ir.output_dim} {ir.output_activation}; give the model it was fine-tuned from")
    def mask(m):
        return ("mask_zero", m.input.mask_zero) if m.is_token_model else ("Masking value", m.input.mask_value)
    if mask(bir) != mask(ir):
        raise RnnskipError(f"--baseline {path} has {mask(bir)[0]} {mask(bir)[1]} but the model {mask(ir)[1]}: the "
                           f"two would run different steps; give the model it was fine-tuned from")
    if bir.per_step != ir.per_step:
        raise RnnskipError(f"--baseline {path} and the model differ in return_sequences at the output; give the "
                           f"model it was fine-tuned from")
    if bir.pool != ir.pool:
        from ..converter.ir import POOL_WORDS
        def what(p):
            return POOL_WORDS.get(p, p) if p else "no pooling over time"
        raise RnnskipError(f"--baseline {path} has {what(bir.pool)} but the model {what(ir.pool)}; give the model it "
                           f"was fine-tuned from")


def _calibration_numbers(res) -> str:
    c = res.chosen
    own = res.accuracy.get("model_dense_int8")
    acc = "" if np.isnan(res.accuracy["float"]) else (
        f"accuracy {c.accuracy:.4f} (dense int8 {res.accuracy['dense_int8']:.4f}"
        + ("" if own is None else f" baseline, {own:.4f} this model") + ") on the calibration rows, ")
    return (f"{acc}{res.dense_macs / max(c.macs, 1):.2f}x fewer MACs, density input {c.density_input:.3f} "
            f"hidden {c.density_hidden:.3f} cells {c.density_cells:.3f}")


def _grid(s, opt="--grid", example="0,1,2,4,8"):
    if s is None:
        return None
    try:
        g = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise RnnskipError(f"{opt} '{s}' must be comma-separated whole numbers, e.g. {example}")
    if opt == "--cell-grid" and s.strip() == "":
        return []
    if not g or min(g) < 0:
        raise RnnskipError(f"{opt} '{s}': thresholds are whole numbers >= 0")
    from .spec import THETA_M_MAX, THETA_MAX
    top = THETA_M_MAX if opt == "--cell-grid" else THETA_MAX
    if max(g) > top:
        raise RnnskipError(f"{opt} '{s}': {max(g)} is above {top}, which already never "
                           f"{'re-evaluates a unit' if opt == '--cell-grid' else 'transmits'}")
    return g


@click.command("delta-tune")
@click.argument("model", type=click.Path())
@click.option("--val", type=click.Path(dir_okay=False), required=True,
              help="Validation data (.npz): half chooses the thresholds, half certifies them (or all of it certifies "
                   "with --select). Labels (y) are optional with --max-disagreement.")
@click.option("--max-loss", type=float, default=None,
              help="Budget: accuracy points below the dense int8 model (default 1.0), certified.")
@certified_budget
@click.option("--select", type=click.Path(dir_okay=False), default=None,
              help="Data (.npz) the thresholds are chosen on, so all of --val certifies them.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Thresholds file to write (delta.json; the Pareto plot goes next to it as <stem>_pareto.png).")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Calibration data for quantisation (default: --val); use the same as rnnskip-convert.")
@click.option("--calib-max", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many calibration sequences (as rnnskip-convert).")
@click.option("--grid", default=None,
              help=f"Comma-separated threshold values to try (int8 steps; default {','.join(map(str, GRID))}).")
@click.option("--baseline", type=click.Path(dir_okay=False), default=None,
              help="The model a delta-trained MODEL was fine-tuned from: the budget is measured against its dense "
                   "int8 model (default: MODEL's own, which delta-training may have moved).")
@click.option("--cell-grid", default=None,
              help=f"Comma-separated cell thresholds to try at the chosen thresholds (pre-activation steps of 1/4096; "
                   f"default {','.join(map(str, CELL_GRID))}; '' for none).")
@click.option("--tolerance", type=float, default=None,
              help="With --max-disagreement: a sequence disagrees when any output moves more than this (the model's "
                   "output units) from the dense int8 model's; the budget for a regression model.")
@guard
def delta_tune_cmd(model, val, max_loss, max_disagreement, confidence, select, out, calib, calib_max, grid,
                   baseline, cell_grid, tolerance):
    """Choose delta thresholds for MODEL without retraining, certified on held-out rows (writes delta.json)."""
    run_delta_tune(model, val, max_loss, out, calib, calib_max, _grid(grid),
                   cell_grid=_grid(cell_grid, "--cell-grid", "64,256,1024"), confidence=confidence,
                   max_disagreement=max_disagreement, select=select, baseline=baseline, tolerance=tolerance)


@click.command("delta-train")
@click.argument("model", type=click.Path())
@click.option("--train", "train_path", type=click.Path(dir_okay=False), required=True, help="Training data (.npz).")
@click.option("--val", type=click.Path(dir_okay=False), required=True,
              help="Validation data (.npz) for early stopping.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Fine-tuned Keras model to write (.h5).")
@click.option("--theta-x", type=float, default=None, help="Input threshold in int8 steps (default: from --delta or 8).")
@click.option("--theta-h", type=float, default=None,
              help="Hidden threshold in int8 steps (default: from --delta or 8).")
@click.option("--theta-m", type=float, default=None,
              help="Cell threshold in pre-activation steps of 1/4096 (default: from --delta, else none).")
@click.option("--delta", "delta_path", type=click.Path(dir_okay=False), default=None,
              help="Start from these thresholds (delta.json).")
@click.option("--epochs", default=40, show_default=True, help="At most this many epochs (early stopping on --val).")
@click.option("--patience", default=8, show_default=True, help="Early-stopping patience (epochs).")
@click.option("--l1", default=0.02, show_default=True, type=float,
              help="L1 penalty: weight of sum |transmitted hidden delta| per step.")
@click.option("--noise", default=0.25, show_default=True, type=float,
              help="Threshold noise in training: std as a fraction of theta.")
@click.option("--lr", default=5e-4, show_default=True, help="Adam learning rate.")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Calibration data for the int8 grid (default: --train).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Random seed: the same seed, data and package versions give the same model bit for bit.")
@guard
def delta_train_cmd(model, train_path, val, out, theta_x, theta_h, theta_m, delta_path, epochs, patience, l1, noise,
                    lr, calib, seed):
    """Delta-aware fine-tuning of MODEL (this retrains; writes a normal Keras model OUT and, next to it,
    its thresholds file: model_dt.h5 -> model_dt.delta.json)."""
    from .train import run_delta_train
    run_delta_train(model, train_path, val, out, theta_x=theta_x, theta_h=theta_h, theta_m=theta_m,
                    delta_path=delta_path,
                    epochs=epochs, patience=patience, l1=l1, noise=noise, lr=lr, calib=calib, seed=seed, log=click.echo)
