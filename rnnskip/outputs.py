"""What a model's outputs mean, for evaluation and reports.

* **classification** (integer labels): softmax / log_softmax / sigmoid heads, or a linear head with
  integer ``y``; accuracy from argmax (or logit > 0 for one unit), as before;
* **regression** (float ``y``): the device returns int16 pre-activations at the
  head's output scale; the host dequantises them and applies the last activation.
  The report gives ``error`` in the output's own units:
  ``float_vs_label_rmse``, ``int8_vs_float_rmse``, ``int8_vs_float_max_abs``;
* **per-step** models (``return_sequences=True`` at the output): one output row per
  time step; ``rnnskip_io_out`` holds ``[T][OUTPUT_LEN]`` and only steps ``t < length``
  are compared; of those, the steps the model's own mask keeps are scored (:func:`scored_steps`).
  Labels are ``[N, T]`` (classes, or one value per step) or
  ``[N, T, K]`` (several values per step).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .converter.support import CLASS_ACTIVATIONS, CLASSIFIER_ACTIVATIONS
from .errors import RnnskipError

#: what a step method's section accuracies measure for a model with an output per time step
PER_STEP_MEASURE = ("accuracy at every scored step, per sequence: each sequence's share of right steps, averaged "
                    "over the sequences (the measure the method's budget is on; the report's model accuracy weights "
                    "every step alike)")


def per_step(qm_or_ir) -> bool:
    return bool(qm_or_ir.per_step)


def readout(ir) -> str:
    """What the head reads, which the weights do not say: "every step" (one output per step), "pooled <kinds>"
    (pooling over time) or "last step". Files made for one readout do not fit another with the same weights."""
    return "every step" if ir.per_step else (f"pooled {ir.pool}" if ir.pool else "last step")


def output_activation(ir) -> str:
    """The activation the host applies to the device's int16 outputs (the last head Dense's; "none" without a
    head), which the weights do not say either: the same weights under softmax, log_softmax, sigmoid or none give
    other outputs, so a budget in their units (``--tolerance``) is another budget."""
    return ir.head[-1].activation if ir.head else "none"


def check_readout(stored: dict, ir, what: str, again: str) -> None:
    """Refuse ``what`` (a thresholds file, a predictor folder) made for a model with another :func:`readout` or
    :func:`output_activation`; ``stored`` is the model signature the file holds. A key it lacks: a file from
    before the key (readout: made when only one output per sequence was supported; activation: not checked)."""
    got, want = stored.get("readout"), readout(ir)
    if got is None and ir.per_step:
        got = "one output per sequence (the file predates models with an output per step)"
    if got is not None and got != want:
        raise RnnskipError(f"{what} was made for a model whose head reads {got}, but this model's reads {want} "
                           f"(same weights, another output: its budget is not this model's); {again}")
    got, want = stored.get("output_activation"), output_activation(ir)
    if got is not None and got != want:
        raise RnnskipError(f"{what} was made for a model whose outputs go through {got}, but this model's go "
                           f"through {want} (same weights, other output units: its budget is not this model's); "
                           f"{again}")


_NOT_LOADED = object()


def check_class_outputs(ir, what: str, y=_NOT_LOADED) -> None:
    """``what`` (a budget on class predictions) needs class predictions (one per sequence, or one per step): a
    softmax, log_softmax or sigmoid head, or a linear head (a classifier trained on logits: argmax of several, or
    one logit > 0, PyTorch's BCEWithLogitsLoss and Keras' from_logits binary classifier) when the labels ``y`` are
    integer classes (0 or 1 for one logit) - without them such a head may as well be a regression. One line
    otherwise; ``y`` left out: the labels are not loaded yet (checked again once they are)."""
    logits = bool(ir.head) and ir.output_activation == "linear"   # not a bare state
    if logits and ir.output_dim == 1 and y is not _NOT_LOADED and \
            (y is None or not np.issubdtype(np.asarray(y).dtype, np.integer)):
        logits = False   # one linear output without integer labels: a regression model
    if not (ir.output_activation in CLASSIFIER_ACTIVATIONS or logits):
        raise RnnskipError(f"{what} is tuned to an accuracy budget on class predictions, so the model must be a "
                           f"classifier (a softmax, log_softmax or sigmoid output, or a linear one with integer "
                           f"labels); this one "
                           f"ends in {ir.output_dim} '{ir.output_activation}' output(s)")
    if logits and y is not _NOT_LOADED and (y is None or not np.issubdtype(np.asarray(y).dtype, np.integer)):
        raise RnnskipError(f"{what} is tuned to an accuracy budget on class predictions: a model with "
                           f"{ir.output_dim} linear outputs must be a classifier trained on logits, which rnnskip "
                           f"takes from integer class labels (y) in the data; these are "
                           f"{'missing' if y is None else 'not integers'} (a regression model cannot be tuned so)")


def float_threshold(model) -> float:
    """Where one float output becomes class 1: a sigmoid's probability above 0.5, a logit above 0 (the int16 outputs
    are before the activation: 0 for both)."""
    return 0.5 if model.output_activation == "sigmoid" else 0.0


def row_len(qm) -> int:
    """int16 values per output row on the device (padded)."""
    return qm.out_len


def io_out_len(qm, T: int) -> int:
    """Length of ``rnnskip_io_out`` the host/emulator reads for sequences of ``T`` steps."""
    return row_len(qm) * (int(T) if per_step(qm) else 1)


def macs_budget(qm) -> int:
    """MACs per executed step for the emulator's instruction budget (per-step heads included)."""
    n = qm.recurrent_macs_per_step()
    # a front end's convolutions emit at most one frame each per input step
    n += sum(f.dense.mat.w.size for f in qm.front if hasattr(f, "dense"))
    if per_step(qm):
        n += sum(d.mat.w.size for d in qm.head)
    return int(n)


def rows(qm, o: np.ndarray, L: int) -> np.ndarray:
    """A device output buffer -> the values the golden model gives for that sequence."""
    o = np.asarray(o)
    if per_step(qm):
        return o.reshape(-1, row_len(qm))[:L, : qm.output_dim]
    return o[: qm.output_dim]


def flat_for_c(out: np.ndarray, lengths) -> np.ndarray:
    """Golden outputs [n, dim] or, per step, [n, T, dim] as generated C arrays hold them: sequence after
    sequence, a per-step model's first ``lengths[i]`` rows of sequence i."""
    out = np.asarray(out)
    if out.ndim != 3:
        return out.reshape(-1)
    rows = [out[i, : int(t)].reshape(-1) for i, t in enumerate(lengths)]
    return np.concatenate(rows) if rows else np.zeros(0, out.dtype)


def golden_rows(qm, g_out: np.ndarray, n: int, L: int) -> np.ndarray:
    return g_out[n, :L] if per_step(qm) else g_out[n]


def is_regression(y) -> bool:
    return np.issubdtype(np.asarray(y).dtype, np.floating)


def dequantize(qm, out16: np.ndarray) -> np.ndarray:
    """Device/golden int16 outputs -> float model outputs (after the last activation)."""
    from .reference import activation
    z = np.asarray(out16, np.float64) * float(qm.output_scale)
    act = qm.output_activation if qm.head else "linear"
    return activation(act)(z)


def step_mask(lengths: np.ndarray, T: int) -> np.ndarray:
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def scored_steps(qm, ds) -> np.ndarray:
    """bool ``[N, T]``: the steps a per-step model is scored on, those before each row's length that the model's own
    mask (``Masking``, ``mask_zero``) keeps, as Keras' compiled metrics and losses weight them (a masked step's
    output is a held or zero state, not a prediction)."""
    return steps_run_mask(qm, ds.x, ds.lengths)


def steps_run_mask(qm, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """bool ``[N, T]``: the steps before each row's length that the model's own mask keeps."""
    from .quant.golden import GoldenModel
    return step_mask(lengths, x.shape[1]) & GoldenModel(qm, methods=[]).valid_steps(x)


def class_outcomes(qm, x: np.ndarray, lengths: np.ndarray, values: np.ndarray, y: np.ndarray,
                   threshold: float = 0.0) -> np.ndarray:
    """Whether each class prediction from ``values`` is its label ``y`` (``values``: golden int16 outputs,
    ``threshold`` 0; float outputs, :func:`float_threshold`): bool ``[N]`` for one class per sequence; for a
    per-step model float ``[N, T]``, 1 or 0 at the steps it is scored on (:func:`scored_steps`) and NaN at the
    others, which rnnskip.stats reads per sequence (each sequence's share of right steps)."""
    pred = _classes(np.asarray(values), threshold)
    return outcomes(pred, y, steps_run_mask(qm, x, lengths) if per_step(qm) else None)


def outcomes(pred: np.ndarray, y, scored: Optional[np.ndarray]) -> np.ndarray:
    """Whether each class prediction ``pred`` is its label ``y``: bool ``[N]``; per step float ``[N, T]``, NaN at the
    steps not ``scored``."""
    hit = np.asarray(pred) == np.asarray(y)
    return hit if hit.ndim == 1 else np.where(scored, hit.astype(np.float64), np.nan)


def output_outcomes(qm, x: np.ndarray, lengths: np.ndarray, values: np.ndarray, ref: np.ndarray,
                    tolerance: float) -> np.ndarray:
    """Whether each sequence's outputs from ``values`` (golden int16 outputs of ``qm``) stay within ``tolerance`` of
    ``ref`` (float outputs in the model's own units, e.g. another model's :func:`dequantize`), every output: the
    agreement a regression model's budget counts, as :func:`class_outcomes` counts classes. bool ``[N]``; per step
    float ``[N, T]``, 1 or 0 at the scored steps and NaN at the others."""
    off = np.abs(dequantize(qm, values) - np.asarray(ref, np.float64)).max(axis=-1)
    hit = off <= float(tolerance)
    return hit if hit.ndim == 1 else np.where(steps_run_mask(qm, x, lengths), hit.astype(np.float64), np.nan)


def _classes(values: np.ndarray, threshold: float) -> np.ndarray:
    if values.shape[-1] == 1:
        return (values[..., 0] > threshold).astype(np.int64)
    return np.argmax(values, axis=-1)


def _acc(pred: np.ndarray, y: np.ndarray, mask: Optional[np.ndarray]) -> float:
    if mask is None:
        return float(np.mean(pred == y)) if len(y) else float("nan")
    return float(np.mean((pred == y)[mask])) if mask.any() else float("nan")


def _labels_like(y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Regression labels shaped like the model output (``[N(, T), K]``)."""
    y = np.asarray(y, np.float64)
    return y.reshape(out.shape) if y.size == out.size else y


def score(ir, qm, ds, probs: np.ndarray, g_out: np.ndarray) -> Tuple[float, float, Optional[dict]]:
    """(float accuracy, int8 golden accuracy, regression error or None); NaN accuracies
    for unlabelled data (``ds.y`` None)."""
    if ds.y is None:
        return float("nan"), float("nan"), None
    ps = per_step(qm)
    mask = scored_steps(qm, ds) if ps else None
    if is_regression(ds.y):
        f = np.asarray(probs, np.float64)
        q = dequantize(qm, g_out)
        y = _labels_like(ds.y, f)
        sel = (lambda a: a[mask]) if ps else (lambda a: a)
        d_fl, d_qf = sel(f - y), sel(q - f)
        return float("nan"), float("nan"), {
            "float_vs_label_rmse": _rmse(d_fl),
            "int8_vs_float_rmse": _rmse(d_qf),
            "int8_vs_float_max_abs": float(np.abs(d_qf).max()) if d_qf.size else float("nan"),
            "values": int(d_qf.size),
        }
    y = np.asarray(ds.y)
    return (_acc(_classes(np.asarray(probs), float_threshold(qm)), y, mask),
            _acc(_classes(np.asarray(g_out), 0), y, mask), None)


def _rmse(d: np.ndarray) -> float:
    return float(np.sqrt(np.mean(d ** 2))) if d.size else float("nan")


def method_error(ir, qm, ds, out: np.ndarray, dense_out: np.ndarray) -> dict:
    """A step method on a regression model, in the output's own units at the values it is scored on: the
    method's golden int16 outputs ``out`` against the dense int8 model's ``dense_out`` (its cost), and, when ``ds``
    has labels, each of them and the float model against the labels (else those are None)."""
    from .reference import FloatModel
    q, d = dequantize(qm, out), dequantize(qm, dense_out)
    mask = scored_steps(qm, ds) if per_step(qm) else None

    def sel(a):
        return a if mask is None else a[mask]
    moved = sel(q - d)
    e = {"float_vs_label_rmse": None, "dense_int8_vs_label_rmse": None, "method_int8_vs_label_rmse": None,
         "method_vs_dense_rmse": _rmse(moved),
         "method_vs_dense_max_abs": float(np.abs(moved).max()) if moved.size else float("nan"),
         "values": int(moved.size)}
    if ds.y is not None:
        f = np.asarray(FloatModel(ir).predict(ds.x, ds.lengths), np.float64)
        y = _labels_like(ds.y, f)
        e.update(float_vs_label_rmse=_rmse(sel(f - y)), dense_int8_vs_label_rmse=_rmse(sel(d - y)),
                 method_int8_vs_label_rmse=_rmse(sel(q - y)))
    return e


def within_tolerance(qm, ds, out: np.ndarray, dense_out: np.ndarray, tolerance: float) -> float:
    """The share of sequences of ``ds`` whose outputs (golden ``out``) all stay within ``tolerance`` of the dense
    int8 model's (``dense_out``), in the model's units after its last activation; per step, each sequence's share
    of its scored steps, averaged: the measure a budget with a tolerance certifies (its complement)."""
    from .stats import accuracy
    return accuracy(output_outcomes(qm, ds.x, ds.lengths, out, dequantize(qm, dense_out), tolerance))


def score_like_float(qm, ds, probs: np.ndarray, other: np.ndarray) -> float:
    """A second float model's outputs ``other`` scored as :func:`score` scores the float model's: its
    accuracy, or for a regression head its RMSE against the float model's outputs ``probs``."""
    if ds.y is None:
        return float("nan")
    mask = scored_steps(qm, ds) if per_step(qm) else None
    if is_regression(ds.y):
        d = np.asarray(other, np.float64) - np.asarray(probs, np.float64)
        return _rmse(d if mask is None else d[mask])
    return _acc(_classes(np.asarray(other), float_threshold(qm)), np.asarray(ds.y), mask)


def device_accuracy(qm, ds, d_rows: List[np.ndarray], m: int) -> Optional[float]:
    """Accuracy of the emulated outputs (``rows`` of the first ``m`` sequences); None for regression
    and for unlabelled data."""
    if ds.y is None or is_regression(ds.y):
        return None
    y = np.asarray(ds.y)
    if per_step(qm):
        keep = scored_steps(qm, ds)
        hits = [(_classes(r, 0) == y[n, : len(r)])[keep[n, : len(r)]] for n, r in enumerate(d_rows[:m])]
        hits = np.concatenate(hits) if hits else np.zeros(0, bool)
        return float(hits.mean()) if hits.size else float("nan")
    if m == 0:
        return float("nan")
    pred = _classes(np.stack(d_rows[:m]), 0)
    return float(np.mean(pred == y[:m]))


def check_targets(y: np.ndarray, ir, name: str, N: int, T: int) -> bool:
    """Validate ``y`` shapes beyond one label per sequence; True when ``y`` is such a
    target array (per-step labels ``[N, T(, K)]`` or several regression outputs ``[N, K]``)."""
    if ir is None:
        return False
    K = ir.output_dim
    if per_step(ir):
        ok = (y.ndim == 2 and y.shape[1] == T) or (y.ndim == 3 and y.shape[1] == T and y.shape[2] in (1, K))
        if not ok:
            raise RnnskipError(
                f"y in {name} has shape {tuple(y.shape)}; the model has one output per time step "
                f"(return_sequences=True), so y must be [N, T] = [{N}, {T}] (a class or value per step)"
                f"{f' or [{N}, {T}, {K}]' if K > 1 else ''}")
        if K > 1 and y.ndim == 3 and y.shape[2] == K:   # K values per step: a K-output regression's targets
            _check_k_values(y, ir, name, [N, T], "step")
        elif K > 1 and np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
            raise RnnskipError(
                f"y in {name} has real values, one per step, but the model has {K} outputs per step: regression "
                f"targets are [N, T, {K}] = [{N}, {T}, {K}]; class indices are integers")
        return True
    if y.ndim == 2 and y.shape[1] == K and K > 1:
        _check_k_values(y, ir, name, [N], "sequence")
        return True
    return False


def _check_k_values(y: np.ndarray, ir, name: str, lead: List[int], per: str) -> None:
    """``y`` of K values per ``per`` (sequence or step; ``lead`` the axes before them): a K-output regression's
    float targets, not a softmax (log_softmax) classifier's one-hot labels or integers."""
    K, axis, dims = y.shape[-1], y.ndim - 1, ", ".join(map(str, lead))
    if getattr(ir, "output_activation", None) in CLASS_ACTIVATIONS:   # a classifier: one label per sequence (step)
        hot = "one-hot " if np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=axis) == 1) else ""
        raise RnnskipError(
            f"y in {name} is {hot}[{dims}, {K}] but the model is a {ir.output_activation} classifier, which takes one "
            f"class index per {per}: save y.argmax(axis={axis}) as y")
    if getattr(ir, "output_activation", None) == "linear" and np.all((y == 0) | (y == 1)) and \
            np.all(y.sum(axis=axis) == 1):   # a classifier on its logits, labelled one-hot (Keras' to_categorical)
        raise RnnskipError(
            f"y in {name} is one-hot [{dims}, {K}]: rnnskip scores a model with {K} linear outputs as a classifier on "
            f"its logits given one class index per {per} (else as a {K}-output regression): save "
            f"y.argmax(axis={axis}) as y")
    if not np.issubdtype(y.dtype, np.floating):
        labels = "[N]" if len(lead) == 1 else "[N, T]"
        raise RnnskipError(
            f"y in {name} is integer with shape {tuple(y.shape)}; pass class indices {labels} for a "
            f"classifier, or float targets {labels[:-1]}, {K}] for a {K}-output regression")
