"""Skipping inside rnnskip-convert: ``--predictor DIR`` or ``--skip auto`` (train, then convert).

:class:`SkipSetup` is created before the output folder (so bad arguments and a
mismatched predictor folder fail with one line and nothing written), attaches
the int8 predictor to the quantised model, and after the normal evaluation adds
the report's ``skip`` section: the dense model's int8 accuracy, emulated cycles
and flash traffic on the same sequences (a second, dense firmware), the float
oracle on the same data, baselines, a Pareto plot and the skipped-elements picture.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import RnnskipError
from ..outputs import PER_STEP_MEASURE
from ..stepmethod import MethodSetup
from . import PATENT_NOTICE, features, plots
from .evaluate import golden_run, macs, predictor_of, with_predictor

METHOD = ("skip predictor without retraining (Arm Research, SenSys-ML 2019): a tiny int8 predictor evaluates "
          "[v_t, h_(t-1)] before each step and skips the step (state kept) when it predicts a small state change")


@dataclass
class SkipSetup(MethodSetup):
    """``--predictor DIR`` or ``--skip auto`` (train a predictor, then convert with it)."""
    key = "skip"
    option = "--predictor/--skip"
    what = "the skip predictor"
    note_name = "the skip predictor"

    predictor_dir: Optional[str] = None
    auto: bool = False
    train_path: Optional[str] = None
    val_path: Optional[str] = None
    max_loss: Optional[float] = None
    type: str = "mlp"
    rounds: int = 2
    margin_se: float = 0.0
    confidence: float = 0.9
    max_disagreement: Optional[float] = None
    log: Callable[[str], None] = print
    # filled in
    fp: object = None
    meta: dict = field(default_factory=dict)
    train_ds: object = None
    val_ds: object = None
    data_check: Optional[dict] = None   # attach(): --data against the certification rows
    grid_mismatch: Optional[str] = None   # attach(): what differs from the int8 model the threshold was calibrated on

    @property
    def inputs(self) -> list:
        return [self.predictor_dir, self.train_path, self.val_path]

    @classmethod
    def check_options(cls, options: Optional[dict]) -> None:
        cls._from_options(**(options or {}))

    @classmethod
    def prepare(cls, ir, options: Optional[dict], log=print, note=None, loaded=()) -> Optional["SkipSetup"]:
        """Validate the skipping options (keys predictor, skip, train, val, max_loss, ptype, rounds,
        margin_se) before anything is written; None when skipping is off."""
        return cls.from_options(ir, log=log, note=note, loaded=loaded, **(options or {}))

    @classmethod
    def _from_options(cls, predictor: Optional[str] = None, skip: Optional[str] = None, train: Optional[str] = None,
                      val: Optional[str] = None, max_loss: Optional[float] = None, ptype: Optional[str] = None,
                      rounds: int = 2, margin_se: Optional[float] = None, confidence: Optional[float] = None,
                      max_disagreement: Optional[float] = None, log=print) -> Optional["SkipSetup"]:
        """The setup from its options, checked as far as they can be without the model (None: skipping is off);
        :meth:`_check_complete` checks --skip auto's data and budget once the model's own refusals are done."""
        from .predictor import TYPES
        if predictor is None and skip in (None, "off", "none"):
            if train or val or any(v is not None for v in (max_loss, margin_se, confidence, max_disagreement, ptype)):
                raise RnnskipError("--train/--val/--max-loss/--max-disagreement/--confidence/--margin-se/"
                                   "--predictor-type configure skipping: add --skip auto (train a predictor) or "
                                   "--predictor DIR")
            return None
        if predictor is not None and ptype is not None:
            raise RnnskipError(f"--predictor-type picks what --skip auto trains; the predictor in {predictor} is "
                               f"already trained (its type is in its predictor.json): drop --predictor-type")
        given = [o for o, v in (("--train", train), ("--val", val), ("--max-loss", max_loss),
                                ("--max-disagreement", max_disagreement), ("--confidence", confidence),
                                ("--margin-se", margin_se)) if v is not None]
        if predictor is not None and given:   # they would be silently ignored: the folder has its own
            raise RnnskipError(f"{'/'.join(given)} configure what --skip auto trains; the predictor in {predictor} "
                               f"is already trained with its own budget (in its predictor.json): drop "
                               f"{'them' if len(given) > 1 else 'it'}")
        if predictor is not None and skip in ("off", "none"):
            raise RnnskipError(f"--skip {skip} turns skipping off but --predictor {predictor} turns it on; "
                               "drop one of them")
        if predictor is not None and skip is not None:
            raise RnnskipError("pass either --predictor DIR (a trained predictor) or --skip auto (train one now), "
                               "not both")
        if skip not in (None, "auto", "off", "none"):
            raise RnnskipError(f"--skip '{skip}' is unknown; use --skip auto (or --predictor DIR)")
        if ptype is not None and ptype not in TYPES:
            raise RnnskipError(f"unknown --type '{ptype}'; choose one of {', '.join(TYPES)}")
        s = cls(predictor_dir=predictor, auto=skip == "auto", train_path=train, val_path=val, max_loss=max_loss,
                type=ptype or "mlp", rounds=rounds, margin_se=0.0 if margin_se is None else margin_se,
                confidence=0.9 if confidence is None else confidence, max_disagreement=max_disagreement, log=log)
        if s.auto and (max_loss is not None or max_disagreement is not None):
            s.config().check()
        return s

    def _check_complete(self) -> None:
        """--skip auto has its data and budget, and its certifying rows are not its training rows."""
        missing = [n for n, v in (("--train", self.train_path), ("--val", self.val_path),
                                  ("--max-loss (or --max-disagreement)",
                                   self.max_loss if self.max_disagreement is None else 0)) if v is None]
        if missing:
            raise RnnskipError(f"--skip auto trains a predictor and needs {', '.join(missing)}")
        check_train_not_val(self.train_path, self.val_path)

    @classmethod
    def from_options(cls, ir, predictor: Optional[str] = None, skip: Optional[str] = None,
                     train: Optional[str] = None, val: Optional[str] = None, max_loss: Optional[float] = None,
                     ptype: Optional[str] = None, rounds: int = 2, margin_se: Optional[float] = None,
                     confidence: Optional[float] = None, max_disagreement: Optional[float] = None,
                     log=print, note=None, loaded=()) -> Optional["SkipSetup"]:
        from ..pipeline.stages import load_data
        s = cls._from_options(predictor, skip, train, val, max_loss, ptype, rounds, margin_se, confidence,
                              max_disagreement, log)
        if s is None:
            return None
        if ir.bidirectional is not None:   # before asking for more options: none would make it skip
            from .qpredictor import bidirectional_refusal
            raise RnnskipError(bidirectional_refusal(ir.rnn_layers[ir.bidirectional].name))
        if s.auto:
            s._check_complete()
        features.check_classifier(ir)
        if s.auto:
            s.train_ds = load_data(train, ir, "--train", note=note, loaded=loaded)
            s.val_ds = load_data(val, ir, "--val", labels=max_disagreement is None, note=note,
                                 loaded=[*loaded, train])
            warn_shared_rows(s.train_ds, s.val_ds, note)
        else:
            from .folder import load
            s.fp, s.meta = load(predictor, ir)
        return s

    def config(self):
        """The --skip auto training options as a TrainConfig."""
        from .train import TrainConfig
        return TrainConfig(type=self.type, max_loss=float(_budget(self.max_loss, self.max_disagreement)),
                           rounds=self.rounds, margin_se=float(self.margin_se), confidence=self.confidence,
                           max_disagreement=self.max_disagreement)

    def attach(self, ir, qm, work: Path, progress: bool = True, note=None, data=None):
        """Train (``--skip auto``: into ``work/predictor``) or take the loaded predictor; attach it to ``qm``."""
        from .qpredictor import quantize_predictor
        if self.auto:
            from . import folder
            from .train import BudgetNotMet, NotCertified, train
            try:
                res = train(ir, self.train_ds, self.val_ds, self.config(), qm=qm, log=self.log if progress else None)
            except (NotCertified, BudgetNotMet) as e:
                # no skipping within the budget (or none certified): the dense model keeps the promise
                self.not_attached = {"why": f"{'not certified' if isinstance(e, NotCertified) else 'budget not met'}"
                                            f", converted without skipping: {e}"}
                if isinstance(e, NotCertified):
                    self.not_attached["certified"] = e.certificate.as_dict(str(self.val_path))
                if note is not None:
                    note(f"warning: --skip auto: {e}; converting without skipping (the dense model)")
                return None
            out = Path(work) / "predictor"
            out.mkdir(parents=True, exist_ok=True)
            self.meta = folder.save(out, res, ir, "(rnnskip-convert --skip auto)", self.train_path, self.val_path)
            if progress:   # what the certified threshold skips (a user saw only the selection's 74% before)
                # (the certificate itself is logged by the training)
                summary, _, conservative = trained_lines(self.meta, res, str(self.val_path),
                                                         self.max_disagreement is not None)
                for line in (summary, f"certified at {conservative}" if conservative else ""):
                    if line:
                        self.log("[skip] " + line)
            reason = unpaid_reason(self.meta, ir.macs_per_step())
            if reason:   # certified, but it would cost more than it saves: the dense model is the better answer
                import shutil
                shutil.rmtree(out)
                self.not_attached = {"why": f"does not pay, converted without skipping: {reason}"}
                if note is not None:
                    note(f"warning: --skip auto: {reason}; converting without skipping (the dense model)")
                return None
            self.fp = res.predictor
            self.predictor_dir = str(out)
        qp = quantize_predictor(self.fp, qm)
        qm.methods = with_predictor(qm, qp).methods
        from ..quant.grid import grid_mismatch
        self.grid_mismatch = grid_mismatch(self.meta.get("int8_grid"), qm)
        if self.grid_mismatch and note is not None:   # --skip auto trained on this qm: only a folder can differ
            note(f"warning: --predictor {self.predictor_dir}: its threshold was calibrated and certified on another "
                 f"int8 model ({self.grid_mismatch}): pass the --calib it was trained with, or train it again with "
                 f"this --calib")
        from ..certify import check_against_certificate
        # --skip auto's folder is still the temporary one here: its messages name the option, not a path that
        # will be gone
        self.data_check = check_against_certificate(
            self.meta, data, "the --skip auto predictor" if self.auto else
            f"the skip predictor {self.predictor_dir}", note, qm)
        return qp

    # ---- report ----------------------------------------------------------------
    def section(self, ir, qm, ds, ev, out_dir: Path, comparison: Optional[dict] = None,
                model_path: Optional[str] = None) -> dict:
        """The report's ``skip`` section (and its plots, written into ``out_dir``); ``comparison``:
        the emulated firmware against the model without its predictor (report.compare_with_dense)."""
        from ..report import reduction, relative
        qp = predictor_of(qm)
        t0 = time.time()
        dense = golden_run(qm, ds.x, ds.lengths, qp=None)
        y = np.asarray(ds.y)
        acc = _accuracy_on(_fm(ir), ds)
        # the evaluation already ran the golden model with the predictor (per step: its accuracy weighs every step)
        if ev.golden_steps is not None and ev.n == len(y) and not qm.per_step:
            run_steps = np.asarray(ev.golden_steps)
            v = int(dense["valid_steps"].sum())
            skip = {"run_steps": run_steps, "skip_rate": float(1.0 - run_steps.sum() / v) if v else 0.0,
                    "acc": float(ev.golden_acc)}
        else:
            g = golden_run(qm, ds.x, ds.lengths, qp=qp)
            skip = {"run_steps": g["run_steps"], "skip_rate": g["skip_rate"], "acc": acc(g["pred"])}
        fm_ = features.run(_fm(ir), ds.x, ds.lengths)
        o = self.meta.get("oracle", {})
        orc = features.run(_fm(ir), ds.x, ds.lengths, decide=features.oracle_rule(float(o.get("threshold", 0.0))),
                           measure=o.get("measure", "l2"), include_cell=bool(o.get("include_cell", False)))
        fmacs = macs(ir, orc.valid.sum(axis=1), orc.ran.sum(axis=1), 0)
        m = macs(ir, dense["valid_steps"], skip["run_steps"], qp.macs)
        sec = {
            "method": METHOD,
            "notice": PATENT_NOTICE,
            "predictor": {"type": self.fp.type, "params": int(self.fp.params()),
                          "params_ratio": float(self.fp.params() / max(_rnn_params(ir), 1)),
                          "params_ratio_of": "recurrent layers' parameters (embedding and head excluded)",
                          "description": self.fp.describe(), "macs_per_step": int(qp.macs),
                          "threshold": float(self.fp.threshold), "score_threshold_int": int(qp.score_thr),
                          "folder": self.predictor_dir},
            "skip_rate": skip["skip_rate"],
            "oracle_skip_rate": orc.skip_rate,
            "macs_per_inference": {"dense": m["dense"], "skip": m["effective"], "predictor": m["predictor"]},
            "mac_reduction": reduction(m["dense"], m["effective"]),
            "accuracy": {"dense_int8": acc(dense["pred"]), "skip_int8": skip["acc"],
                         **({"measure": PER_STEP_MEASURE} if qm.per_step else {})},
            "oracle": {"measure": o.get("measure"), "include_cell": o.get("include_cell"),
                       "threshold": o.get("threshold"), "skip_rate": orc.skip_rate,
                       "macs_per_inference": {"dense": fmacs["dense"], "skip": fmacs["effective"]},
                       "mac_reduction": reduction(fmacs["dense"], fmacs["effective"]),
                       "accuracy": {"dense_float": fm_.accuracy(y), "skip_float": orc.accuracy(y)}},
            "n": int(len(y)),
        }
        if any(getattr(mt, "key", "") == "delta" for mt in qm.methods):
            # the cycles are measured against the model with the delta thresholds on; these MACs are counted as a dense
            # model's steps (the delta section counts the transmitting columns)
            sec["macs_per_inference"]["counted"] = ("as dense steps (every column of each step that runs), without the "
                                                    "delta thresholds: the delta section counts those")
        if self.meta.get("int8_grid"):
            from ..quant.grid import grid_of
            sec["int8_grid"] = {"calibrated": self.meta["int8_grid"], "deployed": grid_of(qm),
                                "same": self.grid_mismatch is None}
        if self.meta.get("certified"):
            on = (self.meta.get("calibration") or {}).get("on", "int8")
            sec["certified"] = dict(self.meta["certified"], calibrated_on=on,
                                    **({"data_check": self.data_check} if self.data_check else {}))
        if comparison is not None:
            k = comparison["sequences"]
            mk = macs(ir, dense["valid_steps"][:k], skip["run_steps"][:k], qp.macs)
            e = dict(comparison, mac_reduction=reduction(mk["dense"], mk["effective"]))
            e["cycles_vs_macs"] = relative(e["reduction"]["cycles"], e["mac_reduction"])
            sec["emulated"] = e
        sec["plots"] = self._plots(ir, qm, ds, skip, dense, fm_, out_dir, model_path)
        sec["seconds"] = round(time.time() - t0, 1)
        return sec

    @staticmethod
    def table_rows(sec: dict) -> list:
        return table_rows(sec)

    def _plots(self, ir, qm, ds, skip, dense, fm_run, out_dir: Path, model_path, plot_max: int = 2000) -> list:
        out_dir = Path(out_dir)
        full = ds
        if len(ds) > plot_max:   # the curves on a random subset of a large evaluation set
            sub = np.sort(np.random.default_rng(0).choice(len(ds), plot_max, replace=False))
            ds = ds.subset(sub)
            dense = {k: (v[sub] if isinstance(v, np.ndarray) and len(v) == len(full) else v) for k, v in dense.items()}
            fm_run = features.run(_fm(ir), ds.x, ds.lengths)
        y = np.asarray(ds.y)
        fm = _fm(ir)
        acc = _accuracy_on(fm, ds)
        names = []
        chosen = golden_run(qm, ds.x, ds.lengths, qp=predictor_of(qm))
        # Pareto on the evaluation data: oracle (float), predictor (int8), baselines (float)
        o = self.meta.get("oracle", {})
        ths = sorted({float(p["threshold"]) for p in o.get("val", {}).get("points", [])})
        oc = {"label": "oracle (float)", "skip": [], "acc": []}
        for th in ths:   # every sweep point (<= 16): the grid runs to 99% skipping
            r = features.run(fm, ds.x, ds.lengths, decide=features.oracle_rule(th), measure=o.get("measure", "l2"),
                      include_cell=bool(o.get("include_cell", False)))
            oc["skip"].append(r.skip_rate)
            oc["acc"].append(r.accuracy(y))
        pc = {"label": f"{self.fp.type} predictor (int8)", "skip": [], "acc": []}
        pths = sorted({float(p["threshold"]) for p in self.meta.get("calibration", {}).get("points", [])})
        for th in pths:
            r = golden_run(qm, ds.x, ds.lengths, qp=predictor_of(qm).with_threshold(th))
            pc["skip"].append(r["skip_rate"])
            pc["acc"].append(acc(r["pred"]))
        pts = [{"label": "predictor, chosen (int8)", "skip": chosen["skip_rate"], "acc": acc(chosen["pred"])}]
        vocab = find_vocab(model_path, int(qm.embedding.shape[0]), self.log) if qm.token_input else None
        for b in baseline_points(fm, ds, vocab, fm_run.accuracy(y)):
            pts.append({"label": b["name"] + " (float)", "skip": b["skip_rate"], "acc": b["accuracy_float"]})
        names.append(plots.pareto([oc, pc], pts, out_dir / "skip_pareto.png",
                                  f"{ir.name}: skip rate vs accuracy on the evaluation data ({len(y)} sequences"
                                  + (f" of {len(full)}" if len(full) > len(ds) else "") + ")",
                                  dense_acc=acc(dense["pred"])).name)
        # which elements were skipped
        idx = _pick_examples(ds.lengths, 8)
        if vocab is not None:
            # id 0 is padding only to a mask_zero Embedding; without one it is a step like any word
            rows = [[(vocab.words[int(t)] if int(t) < len(vocab.words) else "?", bool(chosen["flags"][n, j]))
                     for j, t in enumerate(ds.x[n][: int(ds.lengths[n])]) if int(t) != 0 or not qm.mask_zero]
                    for n in idx]
            names.append(plots.skipped_words(rows, out_dir / "skipped_words.png",
                                             f"{ir.name}: words the int8 predictor skipped").name)
        else:
            names.append(plots.skipped_steps(chosen["flags"][idx].astype(bool), dense["flags"][idx].astype(bool),
                                             out_dir / "skipped_steps.png",
                                             f"{ir.name}: steps the int8 predictor skipped").name)
        return names


def _fm(ir):
    from ..reference import FloatModel
    return FloatModel(ir)


def _accuracy_on(fm, ds):
    """pred -> accuracy on ``ds``'s labels (per step: each sequence's share of right steps, averaged)."""
    from ..outputs import outcomes
    from ..stats import accuracy
    from .train import scored_steps
    scored = scored_steps(fm, ds)
    return lambda pred: accuracy(outcomes(pred, ds.y, scored))


def _rnn_params(ir) -> int:
    from .predictor import rnn_params
    return rnn_params(ir)


def trained_lines(meta: dict, res, val: str, disagreement: bool) -> tuple:
    """What a trained predictor is and skips (train-predictor and --skip auto): its size with the selection half's
    skip rate and loss; the certificate (None without one); and, when certification chose a more conservative
    threshold, what that one skips ("" otherwise)."""
    v = meta["val"]
    summary = (f"{meta['description']}: {meta['params']:,} params ({meta['params_ratio']:.1%} of the RNN's "
               f"{meta['rnn_params']:,}); validation{' (selection half)' if 'rows' in v else ''}: "
               f"{v['skip_rate']:.1%} of steps skipped at {v['loss_points']:+.2f} ± {v['loss_se_points'] or 0:.2f} "
               f"{'% disagreement with the dense model' if disagreement else 'points'} (1 standard error; "
               f"oracle {meta['oracle']['val']['chosen']['skip_rate']:.1%})")
    conservative = ("a more conservative threshold than the selection's" + (
        f": {v['certified_skip_rate']:.1%} of steps skipped on the selection half"
        if v.get("certified_skip_rate") is not None else "")) if v.get("certified_threshold_differs") else ""
    cert = None if res.certificate is None else "certified: " + res.certificate.line(val) + (
        f" ({conservative})" if conservative else "")
    return summary, cert, conservative


def _pick_examples(lengths, k: int) -> np.ndarray:
    L = np.asarray(lengths)
    cand = np.nonzero((L >= 6) & (L <= 40))[0]
    if len(cand) < k:
        cand = np.arange(len(L))
    from ..datasets import spread_rows
    return cand[spread_rows(len(cand), k)]


def find_vocab(model_path: Optional[str], size: Optional[int] = None, note=None):
    """``<model>.vocab.json`` or ``model.vocab.json`` next to the model file (None if absent): rnnskip's
    vocabulary, or for the plots a plain JSON word -> id object (Keras' Tokenizer.word_index) or list of words
    by id (TextVectorization.get_vocabulary()). ``size``: the Embedding's rows, which the ids must fit; a file
    that is not read gets one ``note`` saying why (a user's plain dict was dropped without a word)."""
    if not model_path:
        return None
    from ..datasets import Vocab
    p = Path(model_path)
    c = next((c for c in (p.with_suffix(".vocab.json"), p.parent / "model.vocab.json") if c.is_file()), None)
    if c is None:
        return None
    try:
        v = Vocab.load(str(c))
    except RnnskipError as e:
        v, why = _plain_vocab(c, size, str(e))
    else:
        why = None if size is None or v.size == size else \
            f"an rnnskip vocabulary of {v.size:,} ids, and the model's Embedding has {size:,} rows"
        v = v if why is None else None
    if v is None and note is not None:
        note(f"note: {c} is not used for the word plots: {why} (it can be rnnskip's vocabulary, a JSON word -> id "
             f"object or a list of words by id)")
    return v


def _plain_vocab(path: Path, size: Optional[int], load_error: str):
    """(a display-only Vocab, None) from a JSON word -> id object or list of words by id; (None, why not) when it is
    neither, or an rnnskip vocabulary that did not load (``load_error``). Ids the Embedding does not have are left
    out (Keras' Tokenizer.word_index holds every word, not its num_words); its id 1 is a word, not <oov>."""
    from ..datasets import Vocab
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError, RecursionError) as e:
        return None, f"it does not read as JSON ({e.__class__.__name__})"
    if isinstance(d, dict) and "format" in d:
        return None, load_error
    if isinstance(d, list) and all(isinstance(w, str) for w in d):
        pairs = list(enumerate(d))
    elif isinstance(d, dict) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in d.values()):
        pairs = [(i, w) for w, i in d.items()]
    else:
        return None, "it is neither a word -> id object nor a list of words"
    n = size if size is not None else max((i for i, _ in pairs), default=-1) + 1
    pairs = [(i, w) for i, w in pairs if i < n]
    if not pairs:
        return None, f"none of its ids is below the model's Embedding's {n:,} rows"
    v = Vocab(["?"] * max(n - 2, 0))
    for i, w in pairs:
        v.words[i] = w
    v.words[0] = v.words[0] or "<pad>"
    v.index = {w: i for i, w in enumerate(v.words) if i >= 2}
    return v, None


def baseline_points(fm, ds, vocab, dense_acc: float, golden_qm=None, concat_ns=None) -> list:
    """Stop words (token models with a vocabulary) and Concat(n) for a few n."""
    from .baselines import concat_mask, evaluate_mask, stopword_mask
    out = []
    lengths = ds.lengths
    if fm.front:   # the steps are the frames the Conv1D front end emits on each row's length
        lengths = fm.frames(ds.x, ds.lengths)[1].sum(axis=1)
    if vocab is not None:
        out.append(evaluate_mask(fm, ds.x, ds.lengths, ds.y, stopword_mask(ds.x, vocab), dense_acc, "stop words",
                                 golden=golden_qm))
    if concat_ns is None:
        mean_len = float(np.mean(lengths))
        concat_ns = sorted({max(1, int(round(mean_len * f))) for f in (0.1, 0.2, 0.3)})
    for n in concat_ns:
        out.append(evaluate_mask(fm, ds.x, ds.lengths, ds.y, concat_mask(lengths, ds.x.shape[1], n), dense_acc,
                                 f"Concat({n})", golden=golden_qm))
    return out


def _budget(max_loss, max_disagreement) -> float:
    """The selection budget in points: --max-loss, or --max-disagreement when only it is given."""
    if max_loss is not None and max_disagreement is not None:
        raise RnnskipError("give one budget: --max-loss (accuracy points, needs labels) or --max-disagreement "
                           "(percent of sequences whose class differs from the dense model's)")
    if max_loss is None and max_disagreement is None:
        raise RnnskipError("--max-loss is required: the accuracy budget in points, e.g. 0.3 "
                           "(or --max-disagreement D, percent of sequences)")
    return max_loss if max_loss is not None else max_disagreement


def table_rows(sec: dict) -> list:
    """Lines for the terminal table."""
    from ..certify import budget_text
    from ..report import comparison_rows
    p, a, c = sec["predictor"], sec["accuracy"], sec.get("certified")
    budget = []
    if c:
        line = budget_text(c, "the predictor never skips")
        if c.get("certified") and c.get("calibrated_on") == "float":   # not this firmware's int8 model
            line += "; certified on the float model and predictor (--calibrate-on float), not on this int8 model"
        elif c.get("certified") and not (sec.get("int8_grid") or {}).get("same", True):
            line += "; certified on another int8 grid (see the warning), not this one"
        budget = [("skip budget", line)]
    return [("skip predictor", f"{p['type']}, {p['params']:,} params ({p['params_ratio']:.1%} of the RNN)")] + \
        budget + [
            ("steps skipped", f"{sec['skip_rate']:.1%} (oracle {sec['oracle_skip_rate']:.1%})"),
            ("accuracy dense / skip", f"{a['dense_int8']:.4f} / {a['skip_int8']:.4f} (int8"
             + ("; per step, averaged per sequence)" if a.get("measure") else ")"))] + \
        comparison_rows(sec, "skip")


def check_train_not_val(train, val) -> None:
    """The certificate's rows (half of --val) must be rows the predictor never saw: not --train's file."""
    from ..datasets import same_rows_file
    if train and val and Path(train).exists() and Path(val).exists() and same_rows_file(train, val):
        raise RnnskipError(f"--train {train} holds the same rows as --val {val}: half of --val certifies the "
                           f"budget and must be rows the predictor was not trained on; give --val held-out data")


def warn_shared_rows(tr, va, note) -> None:
    from ..datasets import shared_rows
    n = shared_rows(tr, va)
    if n and note is not None:
        note(f"warning: {n} of the {len(va)} --val rows also appear in --train: the certificate holds for rows the "
             f"predictor never saw, so it is optimistic on those; remove them from one of the files")


def run_train_predictor(model, train, val, max_loss, out, ptype="mlp", rounds=2, size_ratio=None,
                        measure="auto", calibrate_on="int8", seed=0, calib=None, margin_se=0.0, log=print,
                        confidence=0.9, max_disagreement=None) -> dict:
    """``rnnskip train-predictor``: train, calibrate and write the predictor folder (atomically)."""
    from ..datasets import same_rows_file
    from ..outdir import atomic_dir, check_replaceable
    from ..pipeline import import_model, load_data
    from . import folder
    from .predictor import DEFAULT_BUDGET, TYPES
    from .train import TrainConfig
    from .train import train as train_fn
    if ptype not in TYPES:
        raise RnnskipError(f"unknown --type '{ptype}'; choose one of {', '.join(TYPES)}")
    cfg = TrainConfig(type=ptype, max_loss=float(_budget(max_loss, max_disagreement)), rounds=int(rounds),
                      measure=measure, size_ratio=DEFAULT_BUDGET if size_ratio is None else float(size_ratio),
                      calibrate_on=calibrate_on, margin_se=float(margin_se), seed=seed, confidence=confidence,
                      max_disagreement=max_disagreement)
    cfg.check()   # before the output folder check and the import, not after the training
    if calib is not None and calibrate_on == "float":
        raise RnnskipError("--calib sets the int8 grid the threshold is calibrated on; with --calibrate-on float "
                           "there is none: drop --calib, or calibrate on the int8 model (the default)")
    inputs = (model, train, val, calib)
    check_replaceable(out, "predictor.json", inputs=inputs)   # before the training, not after it
    ir = import_model(model)
    if ir.bidirectional is not None:
        from .qpredictor import bidirectional_refusal
        raise RnnskipError(bidirectional_refusal(ir.rnn_layers[ir.bidirectional].name))
    features.check_classifier(ir)   # the model's own refusals first: no data would make it skip
    check_train_not_val(train, val)
    from ..cli_support import note
    tr = load_data(train, ir, "--train", note=note)
    va = load_data(val, ir, "--val", labels=max_disagreement is None, note=note, loaded=[train])
    warn_shared_rows(tr, va, note)
    qm = None
    if calib is not None and calibrate_on == "int8" and Path(calib).exists() and same_rows_file(calib, val):
        log("note: --calib is the --val file, whose rows also certify the threshold, so the int8 model being "
            "certified has seen them (a small effect, outside the guarantee): pass --calib train.npz")
    if calibrate_on == "int8":   # the int8 model the decision threshold is calibrated on
        from ..pipeline import quantize_model
        cal = load_data(calib, ir, "--calib", labels=False, note=note, loaded=[train, val]) if calib else tr
        qm, _ = quantize_model(ir, cal, progress=False)
    res = train_fn(ir, tr, va, cfg, qm=qm, log=log)
    with atomic_dir(out, "predictor.json", inputs=inputs) as tmp:
        meta = folder.save(tmp, res, ir, str(model), str(train), str(val))
    summary, cert, _ = trained_lines(meta, res, str(val), max_disagreement is not None)
    for line in (summary, cert):
        if line:
            log(line)
    unpaid = unpaid_note(meta, ir.macs_per_step())
    if unpaid:
        log(unpaid)
    log(f"wrote {out}")
    return meta


def unpaid_note(meta: dict, step_macs: int) -> Optional[str]:
    """train-predictor's note on :func:`unpaid_reason` (None when the predictor pays)."""
    reason = unpaid_reason(meta, step_macs)
    return f"note: {reason}; try another budget or --type" if reason else None


def unpaid_reason(meta: dict, step_macs: int) -> Optional[str]:
    """Why the threshold a predictor folder ships (``meta``: its predictor.json) costs more than it saves, or None:
    it skips fewer of the validation steps than its own MACs per step cost, and the predictor runs before every
    step (a certified threshold can skip almost nothing)."""
    v = meta["val"]
    rate = v.get("certified_skip_rate") if v.get("certified_threshold_differs") else v["skip_rate"]
    if rate is not None and rate <= 0:   # skipping nothing never pays (a tree has no MACs to compare with)
        return ("the predictor skips none of the validation steps at its threshold, and it runs before every "
                "step: it will cost more than it saves (rnnskip-convert --predictor compares the cycles)")
    pays = meta["macs_per_step"] / max(int(step_macs), 1)   # the skipped share at which its MACs pay for themselves
    if rate is None or rate >= pays:
        return None
    return (f"the predictor skips {rate:.1%} of the validation steps at its threshold, below the {pays:.1%} at which "
            f"its {meta['macs_per_step']:,} MACs per step pay for themselves: it will cost more than it saves "
            f"(rnnskip-convert --predictor compares the cycles)")
