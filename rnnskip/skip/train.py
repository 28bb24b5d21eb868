"""The train-predictor flow.

1. change statistics of the frozen float model on the training data;
2. oracle threshold sweep on validation data (largest skip rate within ``max_loss``);
3. labels from the oracle on the training data (state reached under oracle skipping);
4. fit the predictor (class-balanced, size within ``size_ratio`` of the RNN's parameters);
5. calibrate its decision threshold on validation data to meet ``max_loss``
   (int8 golden model with the quantised predictor, or the float model);
6. relabel rounds: run the model with the predictor itself skipping, label the
   states it reaches with the oracle, add them, refit, recalibrate; keep the round
   with the largest validation skip rate within budget.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional

import numpy as np

from .. import outputs
from ..errors import RnnskipError
from ..quant.grid import grid_of
from ..stats import accuracy
from . import features, oracle
from .predictor import DEFAULT_BUDGET, FloatPredictor, default_size, fit, rnn_params


@dataclass
class TrainConfig:
    type: str = "mlp"
    max_loss: float = 0.3            # accuracy points
    rounds: int = 2                  # relabel rounds after the first fit (0: paper's method only)
    measure: str = "auto"            # change measure of the oracle: l2 | cosine | auto (best on validation)
    include_cell: Optional[bool] = None  # LSTM: cell state counts in the change (None: auto)
    size_ratio: float = DEFAULT_BUDGET
    max_train_sequences: int = 20000
    max_train_steps: int = 300_000
    max_val_sequences: int = 4000
    calibrate_on: str = "int8"       # int8 (golden model) | float
    margin_se: float = 0.0           # budget holds for loss + margin_se * (its standard error) on validation
    seed: int = 0
    #: certify the decision threshold on half of the validation data the rest of the training never
    #: sees (rnnskip/certify.py); None: the validation estimate only
    confidence: Optional[float] = None
    #: certify the disagreement with the dense model (percent of sequences) instead of the loss
    max_disagreement: Optional[float] = None

    def check(self) -> None:
        """One-line errors for option values no training can use (checked before any work)."""
        # NaN and infinity too: a promise of "loss <= inf" is no promise
        if self.max_disagreement is not None and not (0 <= self.max_disagreement <= 100):   # first: sets max_loss
            raise RnnskipError(f"--max-disagreement {self.max_disagreement:g} must be between 0 and 100 (percent "
                               f"of sequences)")
        if not (0 <= self.max_loss <= 100):
            raise RnnskipError(f"--max-loss {self.max_loss:g} must be between 0 and 100 (accuracy points)")
        if self.rounds < 0:
            raise RnnskipError(f"--rounds must be >= 0 (got {self.rounds})")
        if not (0 < self.size_ratio <= 1):
            raise RnnskipError(f"--size-ratio {self.size_ratio:g} must be in (0, 1], a fraction of the RNN's "
                               f"parameters")
        if not (0 <= self.margin_se < float("inf")):
            raise RnnskipError(f"--margin-se {self.margin_se:g} must be a finite number >= 0 (standard errors)")
        if self.calibrate_on not in ("int8", "float"):
            raise RnnskipError(f"calibrate_on must be int8 or float (got {self.calibrate_on!r})")
        if self.confidence is not None and not (0.0 < self.confidence < 1.0):
            raise RnnskipError(f"--confidence {self.confidence} must be in (0, 1), e.g. 0.9 for 90%")


@dataclass
class TrainResult:
    predictor: FloatPredictor
    config: TrainConfig
    oracle: oracle.Sweep
    calibration: oracle.Sweep        # predictor operating points on validation (chosen round)
    rounds: List[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    dense_train: Optional[features.Run] = None
    budget_params: int = 0
    rnn_params: int = 0
    labels: dict = field(default_factory=dict)
    oracle_variants: dict = field(default_factory=dict)
    dense_val: Optional[features.Run] = None
    seconds: float = 0.0
    certificate: Optional[object] = None   # rnnskip.certify.Certificate when cfg.confidence is set
    calibration_lengths: Optional[list] = None   # the certification rows' sequence lengths
    int8_grid: Optional[list] = None   # quant.grid.grid_of the int8 model calibrated on (calibrate_on int8)


#: float runs that do not depend on the predictor type (dense statistics, oracle sweeps, oracle
#: labels), kept for the next train() on the same model and data (benchmarks train every type)
_MEMO: dict = {}


def _fingerprint(ir, *arrays) -> str:
    import hashlib
    h = hashlib.sha1()
    for l in ir.rnn_layers:
        for a in (l.kernel, l.recurrent_kernel, l.bias):
            h.update(np.ascontiguousarray(a).tobytes())
        if l.input_norm is not None:
            h.update(np.float64(l.input_norm).tobytes())
    for d in ir.head:
        h.update(np.ascontiguousarray(d.kernel).tobytes())
        if d.norm_epsilon is not None:
            h.update(np.float64(d.norm_epsilon).tobytes())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _memo(key, fn):
    if key not in _MEMO:
        if len(_MEMO) > 24:
            _MEMO.clear()
        _MEMO[key] = fn()
    return _MEMO[key]


def _say(log, msg):
    if log:
        log(msg)


def _check_data(name: str, ds, fm) -> None:
    if len(ds) == 0:
        raise RnnskipError(f"{name} data is empty; pass an .npz with at least one sequence")
    valid = fm.valid_steps(ds.x) & (np.arange(ds.x.shape[1])[None, :] < ds.lengths[:, None])
    if not valid.any():
        raise RnnskipError(f"{name} data has no valid steps (every step is padding or masked); "
                           f"pass real sequences")


def _cap(F_, y, n, rng):
    if len(y) <= n:
        return F_, y
    idx = rng.choice(len(y), n, replace=False)
    return F_[idx], y[idx]


# Fractions of the scored steps a candidate threshold skips (0 = none). They run to
# 0.99 so the search can follow a model that allows nearly all steps to be skipped;
# bisection refines between the best candidate within budget and the next one.
CALIBRATION_FRACS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def candidate_thresholds(scores: np.ndarray, fracs=CALIBRATION_FRACS) -> list:
    """Decision thresholds to try, from none skipped up: just above the top score, then the score
    quantiles that skip ``fracs`` of the steps. A step is skipped when score > threshold, so a
    quantile equal to the top score (tied scores) skips nothing either and is left out."""
    top = float(scores.max()) if len(scores) else 0.0
    qs = {float(np.quantile(scores, 1.0 - f)) for f in fracs if f > 0} if len(scores) else set()
    return [top + 1e-6 + abs(top) * 1e-6] + sorted((q for q in qs if q < top), reverse=True)


def _predictor_points(p: FloatPredictor, val, qm, dense_correct: np.ndarray, calibrate_on: str, fm,
                      scores: np.ndarray, max_loss: float, log, margin_se: float = 0.0) -> oracle.Sweep:
    """Calibrate p's decision threshold on val; losses are paired against
    ``dense_correct`` (bool [N]). Search variable a = -threshold (larger = more skipping)."""
    from .evaluate import golden_run
    from .qpredictor import quantize_predictor
    qp = quantize_predictor(p, qm) if calibrate_on == "int8" else None
    scored = scored_steps(fm, val)   # once: every point is scored on the same steps

    def evaluate(a: float) -> oracle.Point:
        thr = -a
        if calibrate_on == "int8":
            r = golden_run(qm, val.x, val.lengths, qp=qp.with_threshold(thr))
            pred, sr = r["pred"], r["skip_rate"]
        else:
            r = features.run(fm, val.x, val.lengths, decide=features.predictor_rule(p, thr))
            pred, sr = r.pred, r.skip_rate
        return oracle.point(a, sr, dense_correct, outputs.outcomes(pred, val.y, scored))

    sw = oracle.search(evaluate, [-t for t in candidate_thresholds(scores)], max_loss, refine=4,
                       dense_accuracy=accuracy(dense_correct), margin_se=margin_se,
                       progress=lambda pt: _say(log, f"    threshold {-pt.threshold:+.4f}: skip {pt.skip_rate:6.1%}, "
                                                     f"loss {pt.loss:+.2f} ± {pt.loss_se:.2f} pt"))
    for pt in sw.points:   # back to thresholds
        pt.threshold = -pt.threshold
    sw.points.sort(key=lambda pt: -pt.threshold)
    return sw


def _budget(cfg, ir) -> tuple:
    """(name, unit, option) of the budget: a disagreement budget is max_loss in percent of sequences (the
    oracle and calibration sweeps score agreement with the dense model there; per step, of each one's steps)."""
    if cfg.max_disagreement is not None:
        return "disagreement budget", "% of scored steps (per sequence)" if ir.per_step else "% of sequences", \
            "--max-disagreement"
    return "accuracy budget", "points", "--max-loss"


def train(ir, train_ds, val_ds, cfg: TrainConfig, qm=None, log: Optional[Callable[[str], None]] = print,
          vocab=None) -> TrainResult:
    """Train a skip predictor for ``ir`` (frozen). ``qm``: the quantised model used
    for int8 calibration (default: quantised on ``train_ds``)."""
    from ..reference import FloatModel
    t_start = time.time()
    cfg = replace(cfg)
    cfg.check()
    features.check_classifier(ir, train_ds.y)
    fm = FloatModel(ir)
    _check_data("--train", train_ds, fm)
    if cfg.max_disagreement is not None:   # the budget is about agreeing with the dense model, not labels:
        from ..datasets import Dataset  # its classes are what the selection half is scored against
        val_ds = Dataset(x=val_ds.x, y=features.run(fm, val_ds.x, val_ds.lengths).pred, lengths=val_ds.lengths)
    elif val_ds.y is None:
        raise RnnskipError("--max-loss needs class labels (y) in --val; without labels give --max-disagreement")
    _check_data("--val", val_ds, fm)
    cert_ds = None
    if cfg.confidence is not None:   # disjoint rows: the rest of the training never sees them
        from ..certify import split_rows
        if len(val_ds) < 2:
            raise RnnskipError("--val needs at least 2 sequences (half train the threshold, half certify it)")
        sel, cer = split_rows(len(val_ds), cfg.seed)
        val_ds, cert_ds = val_ds.subset(sel), val_ds.subset(cer)
        _check_certifiable(len(cert_ds), cfg, log)   # before any training: no predictor could be certified
    rng = np.random.default_rng(cfg.seed)
    tr = (train_ds.sample(cfg.max_train_sequences, seed=cfg.seed) if len(train_ds) > cfg.max_train_sequences
          else train_ds)
    val = val_ds.sample(cfg.max_val_sequences, seed=cfg.seed) if len(val_ds) > cfg.max_val_sequences else val_ds
    in_dim, units = features.layout(ir)
    nsteps = int((fm.valid_steps(tr.x) & (np.arange(tr.x.shape[1])[None, :] < tr.lengths[:, None])).sum())
    keep = min(1.0, cfg.max_train_steps / max(nsteps, 1))

    # 1. change statistics (dense float run)
    _say(log, f"[skip] change statistics on {len(tr)} training sequences ({nsteps} steps)")
    ktr = _fingerprint(ir, tr.x, tr.lengths, np.asarray([keep, cfg.seed]))
    kval = _fingerprint(ir, val.x, val.lengths, val.y)
    dense_tr = _memo(("dense", ktr, False),
                     lambda: features.run(fm, tr.x, tr.lengths, collect=True, keep_prob=keep, seed=cfg.seed))
    if len(dense_tr.feats) == 0 or not (np.ptp(dense_tr.feats, axis=0) > 0).any():
        raise RnnskipError("--train data is constant: every step gives the predictor the same input; "
                           "pass representative sequences")
    stats = {"h": features.change_stats(dense_tr)}
    if features.has_cell_state(ir):
        dense_tr_c = _memo(("dense", ktr, True),
                           lambda: features.run(fm, tr.x, tr.lengths, collect=True, include_cell=True,
                                                keep_prob=keep, seed=cfg.seed))
        stats["h+cell"] = features.change_stats(dense_tr_c)
        dense_tr.extra["cell_change"], dense_tr.extra["cell_cosine"] = dense_tr_c.change, dense_tr_c.cosine

    # 2. oracle sweep on validation (every change measure asked for; the best one is kept)
    has_cell = features.has_cell_state(ir)
    measures = list(features.MEASURES) if cfg.measure == "auto" else [cfg.measure]
    if cfg.include_cell is None:
        cells = [False, True] if has_cell else [False]
    else:
        cells = [bool(cfg.include_cell) and has_cell]
    variants = {}
    for cell in cells:
        dense_val = _memo(("dval", kval, cell),
                          lambda: features.run(fm, val.x, val.lengths, collect=True, include_cell=cell))
        dense_acc_f = dense_val.accuracy(val.y)
        for meas in measures:
            _say(log, f"[skip] oracle sweep on {len(val)} validation sequences: {meas} change"
                      f"{' (h and cell)' if cell else ''}; dense float accuracy {dense_acc_f:.4f}")
            sw = _memo(("sweep", kval, cfg.max_loss, cfg.margin_se, meas, cell), lambda: oracle.sweep(
                fm, val.x, val.lengths, val.y, cfg.max_loss, meas, cell, dense=dense_val, margin_se=cfg.margin_se,
                progress=lambda pt: _say(log, f"    change < {pt.threshold:.4g}: skip {pt.skip_rate:6.1%}, "
                                              f"loss {pt.loss:+.2f} ± {pt.loss_se:.2f} pt")))
            variants[(meas, cell)] = (sw, dense_val)
    (measure, include_cell), (osw, dense_val) = max(
        variants.items(), key=lambda kv: (kv[1][0].chosen.skip_rate if kv[1][0].chosen else 0.0))
    cfg.measure, cfg.include_cell = measure, include_cell
    oracle_variants = {f"{m}{'+cell' if c else ''}": v[0].chosen.as_dict() for (m, c), v in variants.items()}
    theta = osw.chosen.threshold
    if osw.chosen.skip_rate <= 0.0:
        best = min((p for p in osw.points if p.skip_rate > 0), key=lambda p: p.loss, default=None)
        name, unit, option = _budget(cfg, ir)
        raise BudgetNotMet(
            f"the {name} cannot be met: even ideal (oracle) skipping loses more than {cfg.max_loss:g} {unit} on "
            f"the validation data; the best achievable is "
            + (f"{best.loss:.2f} {unit} at {best.skip_rate:.1%} skipped" if best else "no skipping at all")
            + _margin_hint(cfg) + f"; raise {option}")
    _say(log, f"[skip] oracle ({measure}{' with cell' if include_cell else ''}): change < {theta:.4g} skips "
              f"{osw.chosen.skip_rate:.1%} at {osw.chosen.loss:+.2f} ± {osw.chosen.loss_se:.2f} pt")

    # 3. oracle labels on the training data (states reached under oracle skipping)
    orun = _memo(("orun", ktr, theta, cfg.measure, cfg.include_cell), lambda: features.run(
        fm, tr.x, tr.lengths, decide=features.oracle_rule(theta), collect=True, measure=cfg.measure,
        include_cell=cfg.include_cell, keep_prob=keep, seed=cfg.seed + 1))
    Xl, yl = orun.feats, orun.skipped.astype(np.int64)
    if yl.min() == yl.max():
        if not yl[0]:
            why = "data too constant or too short, or a budget too tight for any step to be skipped"
        elif osw.chosen.loss <= 0:   # no budget can exclude it, so "a smaller budget" would be no advice
            how = (f"scores {-osw.chosen.loss:.2f} points better than" if osw.chosen.loss < 0 else
                   "loses nothing against")
            why = (f"on the validation data the oracle's skipping {how} the dense model, so every budget admits "
                   f"it: check that the model is trained and --val is representative")
        else:
            why = "the budget is so loose that skipping every step meets it: give a smaller --max-loss or " \
                  "--max-disagreement"
        raise RnnskipError(f"the oracle labels every training step '{'skip' if yl[0] else 'run'}' at its threshold; "
                           f"there is nothing for a predictor to learn ({why})")
    labels = {"steps": int(len(yl)), "skip_fraction": float(yl.mean())}

    # 4.-6. fit, calibrate, relabel rounds
    rp = rnn_params(ir)
    budget = max(1, int(cfg.size_ratio * rp))
    size = default_size(cfg.type, in_dim + sum(units), budget)
    if qm is None and cfg.calibrate_on == "int8":
        from ..pipeline import quantize_model
        qm, _ = quantize_model(ir, train_ds, progress=False)
    val_scores_feats = dense_val.feats
    dense_correct = outputs.outcomes(dense_val.pred if cfg.calibrate_on == "float" else _int8_dense_pred(qm, val),
                                     val.y, scored_steps(fm, val))
    rounds, best = [], None
    for rnd in range(cfg.rounds + 1):
        t0 = time.time()
        _say(log, f"[skip] round {rnd}: fitting {cfg.type} on {len(yl)} labelled steps "
                  f"({yl.mean():.1%} skip)")
        p = fit(cfg.type, Xl, yl, in_dim, units, size, seed=cfg.seed + rnd)
        scores = p.score(val_scores_feats)
        cal = _predictor_points(p, val, qm, dense_correct, cfg.calibrate_on, fm, scores, cfg.max_loss, log,
                                cfg.margin_se)
        ch = cal.chosen
        p.threshold = ch.threshold if ch is not None else float("inf")
        info = {"round": rnd, "train_steps": int(len(yl)), "label_skip_fraction": float(yl.mean()),
                "val_skip_rate": ch.skip_rate if ch else 0.0, "val_loss_points": ch.loss if ch else None,
                "val_loss_se_points": ch.as_dict()["loss_se_points"] if ch else None,
                "threshold": p.threshold, "seconds": round(time.time() - t0, 1)}
        rounds.append(info)
        _say(log, f"[skip] round {rnd}: validation skip {info['val_skip_rate']:.1%} at {ch.loss:+.2f} pt" if ch else
                  f"[skip] round {rnd}: no threshold meets the budget on validation (this predictor would never skip)")
        if best is None or info["val_skip_rate"] > best[0]["val_skip_rate"] + 1e-9:
            best = (info, p, cal)
        if rnd == cfg.rounds:
            break
        # relabel: states the predictor itself reaches, labelled by the oracle rule
        rr = features.run(fm, tr.x, tr.lengths, decide=features.predictor_rule(p), collect=True, measure=cfg.measure,
                          include_cell=cfg.include_cell, keep_prob=keep, seed=cfg.seed + 10 + rnd)
        ch_ = rr.change if cfg.measure == "l2" else rr.cosine
        Xn, yn = rr.feats, (ch_ < theta).astype(np.int64)
        Xl = np.concatenate([Xl, Xn])
        yl = np.concatenate([yl, yn])
        Xl, yl = _cap(Xl, yl, 2 * cfg.max_train_steps, rng)
    info, p, cal = best
    if info["val_skip_rate"] <= 0.0:
        pos = [pt for pt in cal.points if pt.skip_rate > 0]
        b = min(pos, key=lambda pt: pt.loss, default=None)
        name, unit, option = _budget(cfg, ir)
        raise BudgetNotMet(
            f"the {name} cannot be met: no {cfg.type} predictor threshold keeps the validation "
            f"{'disagreement' if cfg.max_disagreement is not None else 'loss'} within {cfg.max_loss:g} {unit} "
            f"while skipping steps; the best achievable is "
            + (f"{b.loss:.2f} {unit} at {b.skip_rate:.1%} skipped" if b else "no skipping at all")
            + _margin_hint(cfg)
            + (f"; raise {option} or try another --type" if b else
               f": no threshold of the {p.describe()}'s scores skips a validation step, so a larger budget would "
               f"not help (its scores are all alike, or the rows have no steps to skip); raise --size-ratio or "
               f"try another --type"))
    for r in rounds:
        r["chosen"] = r["round"] == info["round"]
    cert = _certify(p, cal, cert_ds, qm, fm, cfg, log) if cert_ds is not None else None
    from ..certify import run_lengths
    return TrainResult(predictor=p, config=cfg, oracle=osw, calibration=cal, rounds=rounds, stats=stats,
                       dense_train=dense_tr, budget_params=budget, rnn_params=rp, labels=labels,
                       oracle_variants=oracle_variants, dense_val=dense_val,
                       seconds=time.time() - t_start, certificate=cert,
                       calibration_lengths=None if cert_ds is None else sorted(int(v) for v in
                                                                               run_lengths(qm, cert_ds)),
                       int8_grid=grid_of(qm) if cfg.calibrate_on == "int8" else None)


class BudgetNotMet(RnnskipError):
    """No skipping keeps the validation loss within the budget: the dense model is the only answer."""


class NotCertified(RnnskipError):
    """No decision threshold could be certified (``certificate`` says how far it got)."""

    def __init__(self, msg: str, certificate):
        super().__init__(msg)
        self.certificate = certificate


def _check_certifiable(n: int, cfg: TrainConfig, log=None) -> None:
    """NotCertified now when ``n`` certification rows cannot certify a disagreement budget whatever the predictor
    (the bound with no sequence changed is above it, and no predictor's is lower): the training would be wasted.
    A loss budget gets a note instead: a predictor that turns more sequences right than wrong certifies below
    that bound."""
    from ..certify import Certificate, smallest_certifiable, up2
    kind = "disagreement" if cfg.max_disagreement is not None else "paired"
    budget = (cfg.max_disagreement if kind == "disagreement" else cfg.max_loss) / 100.0
    floor = smallest_certifiable(n, 1.0 - float(cfg.confidence), kind)
    if floor <= budget:
        return
    if kind == "paired":
        _say(log, f"note: {n} certification sequences (half of --val) certify a loss below {up2(100 * floor)} "
                  f"points at {100 * cfg.confidence:g}% confidence only for a predictor that turns more of them "
                  f"right than wrong; more --val sequences or a larger --max-loss make certifying likelier")
        return
    cert = Certificate(kind, budget, float(cfg.confidence), n, None, None, None, 0, floor)
    raise NotCertified(f"nothing certified: {n} certification sequences (half of --val) certify no budget below "
                       f"{up2(100 * floor)} % at {100 * cfg.confidence:g}% confidence, above the budget of "
                       f"{100 * budget:g}, whatever the predictor (checked before training it); give more --val "
                       f"sequences (they need no labels) or a larger budget", cert)


def certification_path(points, chosen: float) -> list:
    """The thresholds Learn-then-Test tries, in its fixed order: the calibration points that skip
    anything, from the most conservative to the one the selection rows chose. The order depends on
    the selection rows only, which is what makes testing them in sequence valid."""
    return [pt.threshold for pt in sorted(points, key=lambda q: -q.threshold) if pt.skip_rate > 0
            and pt.threshold >= chosen]


def _certify(p: FloatPredictor, cal: oracle.Sweep, cert_ds, qm, fm, cfg: TrainConfig, log):
    """Learn-then-Test on the certification rows: the calibration points from the most conservative
    that skips anything to the chosen one, in that order; p.threshold becomes the last certified
    (none: one line saying so and how much could be certified). The loss is paired against the
    dense int8 model (float with ``calibrate_on='float'``), or the disagreement with it."""
    from ..certify import fixed_sequence, sequence_loss
    from .evaluate import golden_run
    from .qpredictor import quantize_predictor
    kind = "disagreement" if cfg.max_disagreement is not None else "paired"
    budget = (cfg.max_disagreement if kind == "disagreement" else cfg.max_loss) / 100.0
    path = certification_path(cal.points, p.threshold)
    qp = quantize_predictor(p, qm) if cfg.calibrate_on == "int8" else None

    def pred(thr):
        if qp is not None:
            q = None if thr is None else qp.with_threshold(thr)
            return golden_run(qm, cert_ds.x, cert_ds.lengths, qp=q)["pred"]
        rule = None if thr is None else features.predictor_rule(p, thr)
        return features.run(fm, cert_ds.x, cert_ds.lengths, decide=rule).pred

    dense = pred(None)
    y = None if cert_ds.y is None else np.asarray(cert_ds.y)

    per_step = bool(fm.ir.per_step)
    scored = scored_steps(fm, cert_ds)

    def losses():
        for thr in path:
            loss = sequence_loss(kind, dense, pred(thr), y)
            yield np.where(scored, loss, np.nan) if per_step else loss   # per step: NaN where not scored

    n = int(scored.any(axis=1).sum()) if per_step else len(cert_ds)
    cert = fixed_sequence(losses(), budget, float(cfg.confidence), kind, n=n, per_step=per_step)
    if cert.chosen is None:
        # each budget trains its own predictor (the oracle threshold and the round kept follow it), so another
        # budget, smaller too (down to what the rows can certify), may certify where this one did not
        from ..certify import up2
        floor, unit = 100 * cert.smallest_certifiable, "points" if kind == "paired" else "%"
        # below the floor, the certificate's line names it once a candidate was tested (a user read it twice)
        other = ((("a larger budget" if cert.tested else
                   f"a larger budget (these rows certify none below {up2(floor)} {unit})"))
                 if floor > 100 * budget else
                 f"another budget: each budget trains its own predictor, so a larger or a smaller one (down to "
                 f"{up2(floor)} {unit}) can certify where this one did not")
        raise NotCertified(cert.line("--val") + f" ({cfg.type} predictor); give more --val sequences (unlabelled "
                           f"ones work with --max-disagreement) or {other}", cert)
    p.threshold = path[cert.chosen]
    _say(log, f"[skip] certification on {len(cert_ds)} held-out validation sequences: " + cert.line("--val")
         + f" at threshold {p.threshold:+.4f}")
    return cert


def _margin_hint(cfg: TrainConfig) -> str:
    return (f" (--margin-se {cfg.margin_se:g}: the loss plus {cfg.margin_se:g} standard errors must fit; "
            f"lower it to accept noisier points)" if cfg.margin_se > 0 else "")


def scored_steps(fm, d) -> Optional[np.ndarray]:
    """The steps of ``d``'s rows a per-step model is scored on (those ``fm`` runs: before the row's length, kept by
    the mask), for rnnskip.outputs.outcomes; None for one output per sequence."""
    return fm.frames(d.x, d.lengths)[1] if fm.ir.per_step else None


def _int8_dense_pred(qm, val) -> np.ndarray:
    from .evaluate import golden_run
    return golden_run(qm, val.x, val.lengths)["pred"]
