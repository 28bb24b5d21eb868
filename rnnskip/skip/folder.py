"""The predictor folder: ``predictor.json`` (metadata, model fingerprint, operating
points), ``predictor.npz`` (float weights / trees) and PNG plots."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np

from .. import __version__
from ..errors import RnnskipError
from . import PATENT_NOTICE, plots
from .predictor import FloatPredictor

FORMAT = "rnnskip-skip-predictor-1"
META, WEIGHTS = "predictor.json", "predictor.npz"


def fingerprint(ir) -> dict:
    """What a predictor depends on: input size, hidden sizes (and kinds), vocabulary / features."""
    from ..converter.ir import EmbeddingInput
    emb = isinstance(ir.input, EmbeddingInput)
    from ..converter.ir import model_fingerprint, weights_fingerprint
    from ..outputs import output_activation, readout
    return {"input_dim": int(ir.input_dim), "units": [int(l.units) for l in ir.rnn_layers],
            "kinds": [l.kind for l in ir.rnn_layers], "vocab": int(ir.input.vocab) if emb else None,
            "features": None if emb else int(ir.input.features), "output_dim": int(ir.output_dim),
            "weights_sha256": weights_fingerprint(ir), "model_sha256": model_fingerprint(ir), "readout": readout(ir),
            "output_activation": output_activation(ir)}


def check_fingerprint(meta: dict, ir, folder) -> None:
    got, want = meta.get("model", {}), fingerprint(ir)
    for key, what in (("input_dim", "first recurrent layer's input size"), ("units", "hidden sizes"),
                      ("kinds", "layer kinds"), ("vocab", "vocabulary size"), ("features", "feature count")):
        # (input size: after an embedding, a per-step Dense or a Conv1D front end, not the data's feature count)
        if got.get(key) != want[key]:
            raise RnnskipError(
                f"predictor folder {folder} was trained for a model with {what} {got.get(key)}, but this model has "
                f"{want[key]}; train a predictor for this model with 'rnnskip train-predictor'")
    if got.get("weights_sha256") and got["weights_sha256"] != want["weights_sha256"]:   # older folders: no hash
        raise RnnskipError(
            f"predictor folder {folder} was trained for a model with other weights (same layer sizes): its labels "
            f"come from that model's state changes; train a predictor for this model with 'rnnskip train-predictor'")
    if got.get("model_sha256") and got["model_sha256"] != want["model_sha256"]:   # older folders: no key
        raise RnnskipError(
            f"predictor folder {folder} was trained for a model with the same recurrent weights but another head or "
            f"input stage, so its accuracy budget is not this model's; train a predictor for this model with "
            f"'rnnskip train-predictor'")
    from ..outputs import check_readout
    check_readout(got, ir, f"predictor folder {folder}",
                  "train a predictor for this model with 'rnnskip train-predictor'")


def save(out: Path, res, ir, model_path: str, train_path: str, val_path: str, vocab=None,
         val_ds=None) -> dict:
    """Write the folder contents into ``out`` (already created, e.g. by outdir.atomic_dir). Returns the metadata."""
    out = Path(out)
    p = res.predictor
    cal = res.calibration.chosen
    meta = {
        "format": FORMAT, "rnnskip": __version__, "notice": PATENT_NOTICE,
        "model": fingerprint(ir), "model_file": str(model_path), "model_params": int(ir.params()),
        "type": p.type, "in_dim": p.in_dim, "units": p.units, "description": p.describe(),
        "sizes": {"hidden": p.hidden()} if not p.is_tree else
                 {"trees": len(p.trees), "leaves": [int((t['left'] < 0).sum()) for t in p.trees]},
        "threshold": float(p.threshold), "decision": "skip the step when score > threshold",
        "params": p.params(), "macs_per_step": p.macs(), "rnn_params": res.rnn_params,
        "params_ratio": p.params() / max(res.rnn_params, 1), "budget_params": res.budget_params,
        "max_loss_points": res.config.max_loss, "margin_se": res.config.margin_se,
        "oracle": {"measure": res.config.measure, "include_cell": bool(res.config.include_cell),
                   "threshold": res.oracle.chosen.threshold, "val": res.oracle.as_dict(),
                   "variants": res.oracle_variants},
        "calibration": {"on": res.config.calibrate_on, **res.calibration.as_dict()},
        "val": {"skip_rate": cal.skip_rate if cal else 0.0, "loss_points": cal.loss if cal else None,
                "loss_se_points": cal.as_dict()["loss_se_points"] if cal else None,
                "accuracy": cal.accuracy if cal else None, "dense_accuracy": res.calibration.dense_accuracy},
        "rounds": res.rounds, "labels": res.labels, "change_stats": res.stats,
        "config": {k: v for k, v in vars(res.config).items()},
        "data": {"train": str(train_path), "val": str(val_path)},
        "train_seconds": round(res.seconds, 1), "plots": [],
    }
    if res.int8_grid:   # the int8 model the threshold was calibrated (and certified) on
        meta["int8_grid"] = res.int8_grid
    if res.certificate is not None:   # the threshold above is the certified one
        meta["certified"] = res.certificate.as_dict(str(val_path))
        meta["calibration_lengths"] = res.calibration_lengths
        meta["val"]["rows"] = "the selection half of --val (the certificate is about the other half)"
        meta["val"]["certified_threshold_differs"] = bool(cal is not None and cal.threshold != p.threshold)
        if meta["val"]["certified_threshold_differs"]:   # what the threshold that ships skips, on the same rows
            at = [q for q in res.calibration.points if q.threshold == p.threshold]
            meta["val"]["certified_skip_rate"] = at[0].skip_rate if at else None
        if res.config.max_disagreement is not None:   # the budget's real kind (max_loss held D for the search)
            meta["max_loss_points"] = None
            meta["max_disagreement_percent"] = res.config.max_disagreement
    # what "accuracy" and "loss" measure in val, calibration and oracle: with --max-disagreement, agreement
    # with the dense model's classes and the percent of sequences that disagree (no labels needed)
    meta["measure"] = ("agreement with the dense model" if res.config.max_disagreement is not None
                       else "accuracy on the labels") + (
        " at every scored step, per sequence (its share of steps, averaged over the sequences)" if ir.per_step else "")
    with open(out / WEIGHTS, "wb") as f:
        np.savez(f, **p.arrays())
    # plots
    d = res.dense_train
    series = {"L2 of h change": d.change, "cosine distance of h": d.cosine}
    if "cell_change" in d.extra:
        series["L2 of [h, c] change"] = d.extra["cell_change"]
    meta["plots"].append(plots.change_distributions(series, out / "change_distributions.png").name)
    o = res.oracle
    curves = [{"label": f"oracle ({res.config.measure}{'+cell' if res.config.include_cell else ''}, float)",
               "skip": [q.skip_rate for q in o.points], "acc": [q.accuracy for q in o.points]},
              {"label": f"{p.type} predictor ({res.config.calibrate_on})",
               "skip": [q.skip_rate for q in res.calibration.points],
               "acc": [q.accuracy for q in res.calibration.points]}]
    pts = [{"label": "chosen oracle", "skip": o.chosen.skip_rate, "acc": o.chosen.accuracy}]
    # the threshold that ships: the certified one where it differs from the selection's pick
    ships = [q for q in res.calibration.points if q.threshold == p.threshold] if cal else []
    if ships:
        certified = res.certificate is not None and cal.threshold != p.threshold
        pts.append({"label": "shipped threshold (certified)" if certified else "chosen predictor",
                    "skip": ships[0].skip_rate, "acc": ships[0].accuracy})
    elif cal:
        pts.append({"label": "chosen predictor", "skip": cal.skip_rate, "acc": cal.accuracy})
    disagreement = res.config.max_disagreement is not None
    measure = "agreement with the dense model" if disagreement else "accuracy"
    budget = f"{res.config.max_disagreement:g}% disagreement" if disagreement else f"{res.config.max_loss:g} pt"
    rows = " (selection half)" if res.certificate is not None else ""
    meta["plots"].append(plots.pareto(curves, pts, out / "pareto_val.png",
                                      f"validation{rows}: skip rate vs {measure} (budget {budget})",
                                      dense_acc=o.dense_accuracy, measure=measure, dense_label="dense (float)").name)
    if len(res.rounds) > 1:
        meta["plots"].append(plots.rounds(res.rounds, out / "relabel_rounds.png",
                                          "relabelling on the predictor's own states").name)
    from ..jsonio import dumps
    (out / META).write_text(dumps(meta))
    return meta


def _check_sections(meta: dict, where) -> None:
    """The parts of predictor.json the conversion reads, of the types train-predictor writes: one line
    otherwise, before any work (a damaged file failed after the whole build and emulation)."""
    def bad(what):
        return RnnskipError(f"{where}: {what}; it is not a file 'rnnskip train-predictor' wrote (edited?): train "
                            f"the predictor again")
    for key in ("model", "oracle", "val", "calibration"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise bad(f"'{key}' is a {type(meta[key]).__name__}, not an object")
    from ..certify import is_certificate, is_lengths
    if meta.get("certified") is not None and not is_certificate(meta["certified"]):
        raise bad("'certified' is not a certificate")
    if meta.get("calibration_lengths") is not None and not is_lengths(meta["calibration_lengths"]):
        raise bad("'calibration_lengths' is not a list of sequence lengths")
    from ..quant.grid import is_grid
    if meta.get("int8_grid") is not None and not is_grid(meta["int8_grid"]):
        raise bad("'int8_grid' is not a list of {input_scale, hidden_scale} (> 0)")


def load(folder, ir=None) -> Tuple[FloatPredictor, dict]:
    """Read a predictor folder (and check it against ``ir``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RnnskipError(f"predictor folder {folder} does not exist; create one with 'rnnskip train-predictor'")
    mp = folder / META
    if not mp.is_file():
        raise RnnskipError(f"{folder} is not a predictor folder ({META} missing); create one with "
                           f"'rnnskip train-predictor'")
    try:
        meta = json.loads(mp.read_text())
    except (ValueError, UnicodeDecodeError):
        raise RnnskipError(f"{mp} is not valid JSON; train the predictor again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RnnskipError(f"{mp} is not an rnnskip predictor (expected \"format\": \"{FORMAT}\")")
    _check_sections(meta, mp)
    if ir is not None:
        check_fingerprint(meta, ir, folder)
    wp = folder / WEIGHTS
    try:
        with np.load(wp, allow_pickle=False) as a:
            arrays = {k: a[k] for k in a.files}
    except FileNotFoundError:
        raise RnnskipError(f"{wp} is missing; train the predictor again") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise RnnskipError(f"{wp} is not a readable .npz; train the predictor again") from None
    try:
        p = FloatPredictor.from_arrays(meta, arrays)
        p.threshold = float(p.threshold)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise RnnskipError(f"predictor folder {folder} is damaged ({type(e).__name__}: {e}); "
                           f"train the predictor again") from None
    return p, meta
