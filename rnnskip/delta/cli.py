"""The delta-network commands ``rnnskip delta-tune`` and ``rnnskip delta-train`` (registered
in rnnskip/cli.py); ``rnnskip-convert --delta`` is rnnskip/delta/convert.py."""
from __future__ import annotations

from pathlib import Path

import click

from ..cli_support import guard
from ..errors import RnnskipError
from .tune import CELL_GRID, GRID


def run_delta_tune(model, val, max_loss, out, calib=None, calib_max=1000, reference="float", grid=None,
                   log=click.echo, progress=True, margin_se=0.0, cell_grid=None) -> dict:
    """Tune thresholds on --val and write delta.json (+ delta_pareto.png next to it)."""
    from .. import pipeline
    from ..datasets import load_npz
    from .tune import CELL_GRID, GRID, plot_pareto, tune
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise RnnskipError(f"--out {out}: the thresholds file must end in .json")
    if not (margin_se >= 0):
        raise RnnskipError(f"--margin-se {margin_se} must be >= 0 (standard errors, e.g. 1)")
    ir = pipeline.import_model(model)
    from .spec import check_supported, grid_of
    check_supported(ir.rnn_layers)
    if val is None:
        raise RnnskipError("--val is required: validation data (.npz) to measure accuracy on")
    va = load_npz(str(val), ir)
    cal = load_npz(str(calib), ir) if calib else va
    qm, _ = pipeline.quantize_model(ir, cal, calib_max, progress=False)
    grid = list(GRID if grid is None else grid)
    cell_grid = list(CELL_GRID if cell_grid is None else cell_grid)
    log(f"delta-tune: {ir.name}, {len(va)} validation sequences, thresholds from {grid} int8 steps, "
        f"budget {max_loss} points below the {reference} model; int8 grid calibrated on {calib or val}"
        f"{'' if calib else ' (--val; pass --calib train.npz to calibrate on training data)'}: "
        f"give rnnskip-convert the same --calib")
    res = tune(ir, qm, va, max_loss=max_loss, reference=reference, grid=grid, margin_se=margin_se, cell_grid=cell_grid,
               progress=(lambda s: log("  " + s)) if progress else None)
    spec = res.spec(ir)
    spec.grid = grid_of(qm)
    spec.tuning.update({"calibration": str(calib or val),   # the default is --val: the grid convert must match
                        "validation": str(val)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    spec.save(tmp, ir)
    plot = out.with_name(out.stem + "_pareto.png")
    plot_pareto(res, plot, f"{ir.name}: delta thresholds on {len(va)} validation sequences")
    tmp.replace(out)
    c = res.chosen
    cell = "" if c.theta_m == (None,) * len(c.theta_m) else f", cell {list(c.theta_m)} (pre-activation steps)"
    log(f"chosen: input {list(c.theta_x)}, hidden {list(c.theta_h)} (int8 steps){cell}: accuracy {c.accuracy:.4f} "
        f"(dense int8 {res.accuracy['dense_int8']:.4f}, float {res.accuracy['float']:.4f}; "
        f"loss {c.loss:+.2f} ± {c.loss_se:.2f} points), "
        f"{res.dense_macs / max(c.macs, 1):.2f}x fewer MACs, density input {c.density_input:.3f} "
        f"hidden {c.density_hidden:.3f} cells {c.density_cells:.3f}")
    log(f"wrote {out} and {plot} ({len(res.pareto)} Pareto points of {len(res.points)} evaluated)")
    return spec.to_json(ir)


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
    return g


@click.command("delta-tune")
@click.argument("model", type=click.Path())
@click.option("--val", type=click.Path(dir_okay=False), required=True,
              help="Validation data (.npz) the thresholds are chosen on.")
@click.option("--max-loss", type=float, default=1.0, show_default=True,
              help="Accuracy budget: points below the reference.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Thresholds file to write (delta.json; the Pareto plot goes next to it as <stem>_pareto.png).")
@click.option("--calib", type=click.Path(dir_okay=False), default=None,
              help="Calibration data for quantisation (default: --val); use the same as rnnskip-convert.")
@click.option("--calib-max", default=1000, show_default=True,
              help="At most this many calibration sequences (as rnnskip-convert).")
@click.option("--reference", type=click.Choice(["float", "int8"]), default="float", show_default=True,
              help="Budget relative to the dense float model or the dense int8 model.")
@click.option("--grid", default=None,
              help=f"Comma-separated threshold values to try (int8 steps; default {','.join(map(str, GRID))}).")
@click.option("--margin-se", type=float, default=0.0, show_default=True,
              help="Meet --max-loss with this many standard errors of the validation loss to spare.")
@click.option("--cell-grid", default=None,
              help=f"Comma-separated cell thresholds to try at the chosen thresholds (pre-activation steps of 1/4096; "
                   f"default {','.join(map(str, CELL_GRID))}; '' for none).")
@guard
def delta_tune_cmd(model, val, max_loss, out, calib, calib_max, reference, grid, margin_se, cell_grid):
    """Choose delta thresholds for MODEL without retraining (writes delta.json)."""
    run_delta_tune(model, val, max_loss, out, calib, calib_max, reference, _grid(grid), margin_se=margin_se,
                   cell_grid=_grid(cell_grid, "--cell-grid", "64,256,1024"))


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
@guard
def delta_train_cmd(model, train_path, val, out, theta_x, theta_h, theta_m, delta_path, epochs, patience, l1, noise,
                    lr, calib):
    """Delta-aware fine-tuning of MODEL (this retrains; writes a normal Keras model OUT and, next to it,
    OUT.delta.json with the thresholds it was trained for)."""
    from .train import run_delta_train
    run_delta_train(model, train_path, val, out, theta_x=theta_x, theta_h=theta_h, theta_m=theta_m,
                    delta_path=delta_path,
                    epochs=epochs, patience=patience, l1=l1, noise=noise, lr=lr, calib=calib, log=click.echo)
