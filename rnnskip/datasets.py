"""Data sets in the shape rnnskip's emulator and calibration want.

A :class:`Dataset` is ``x`` (int32 token ids ``[N, T]`` or float32 features
``[N, T, F]``), ``y`` (one label per sequence ``[N]``) and ``lengths``
(int32 ``[N]``, the true length of each sequence; steps ``>= length`` are
padding).  The text loaders post-pad with id 0 and give explicit lengths.

Without ``lengths`` in a user's ``.npz`` the model decides, as Keras does
(:func:`padding_rule`): an ``Embedding(mask_zero=True)`` skips id 0 wherever it
is; without it (or, for features, without ``Masking``) every step is run.

Sources:

* ``load_npz`` -- the user's own ``.npz`` (``x``, ``y``, optional ``lengths``),
  validated against the model's IR with one-line :class:`RnnskipError` messages.
* ``load_sst2`` / ``load_imdb`` -- the two text sets, with a :class:`Vocab`
  built on the training split and saved next to the model as JSON.
* ``load_aeon`` -- the UEA/UCR sets bundled inside ``aeon`` (offline).

Nothing here reads a default data location: paths always come from the caller.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .converter.ir import runs_every_step, steps_run
from .converter.support import CLASSIFIER_ACTIVATIONS
from .errors import RnnskipError

__all__ = [
    "Dataset", "Vocab", "load_npz", "save_npz", "infer_lengths", "padding_rule",
    "load_sst2", "load_imdb", "load_aeon", "aeon_bundled_classification",
    "TOKENIZERS", "tokenize", "load_stopwords",
]

PAD_ID = 0
OOV_ID = 1
VOCAB_FORMAT = "rnnskip-vocab-1"


# --------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------

@dataclass
class Dataset:
    """``x`` int32 ``[N, T]`` (token ids; id 0 is padding only to a ``mask_zero`` Embedding)
    or float32 ``[N, T, F]``; ``y`` labels ``[N]`` (int64 for classes, float32 for regression;
    None: unlabelled, only where a command says it takes that: ``load_npz(..., labels=False)``);
    ``lengths`` int32 ``[N]`` in ``1..T``; ``padding``: which rule gave the steps that run
    (:func:`padding_rule`; empty when the caller built the lengths)."""
    x: np.ndarray
    y: Optional[np.ndarray]
    lengths: np.ndarray
    texts: Optional[List[str]] = None
    class_names: Optional[List[str]] = None
    notes: List[str] = field(default_factory=list)
    padding: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def is_tokens(self) -> bool:
        return self.x.ndim == 2

    @property
    def max_len(self) -> int:
        return int(self.x.shape[1])

    @property
    def features(self) -> Optional[int]:
        return None if self.is_tokens else int(self.x.shape[2])

    def subset(self, idx) -> "Dataset":
        """Rows ``idx`` (an index array, slice or boolean mask)."""
        idx = np.arange(len(self))[idx]
        return Dataset(
            x=self.x[idx], y=None if self.y is None else self.y[idx], lengths=self.lengths[idx],
            texts=None if self.texts is None else [self.texts[i] for i in idx],
            class_names=self.class_names, notes=list(self.notes), padding=self.padding)

    def sample(self, n: int, seed: int = 0) -> "Dataset":
        """``n`` random rows (all rows if ``n >= len``), in a reproducible order."""
        if n >= len(self):
            return self.subset(slice(None))
        idx = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return self.subset(idx)


def spread_rows(n: int, k: int) -> np.ndarray:
    """``k`` row indices spread evenly over ``n`` rows (all of them when ``k >= n``), in order: a figure measured
    on a few rows takes them across the data, not from its start (a user's data sorted by class made the quietest
    class the whole traffic sample and halved its flash reads)."""
    return np.arange(n) if k >= n else (np.arange(max(k, 0)) * n) // k


def infer_lengths(x: np.ndarray, mask_zero: bool) -> np.ndarray:
    """Lengths from the data itself, as the model runs it.  Token ids under
    ``mask_zero``: index of the last non-zero id + 1 (trailing id-0 steps are
    masked anyway; 0 for an all-zero row); otherwise, and for float features
    (a ``Masking`` layer skips steps wherever they are), ``T`` for every row."""
    if x.ndim == 2 and mask_zero:
        nz = x != PAD_ID
        T = x.shape[1]
        last = T - np.argmax(nz[:, ::-1], axis=1)
        return np.where(nz.any(axis=1), last, 0).astype(np.int32)
    return np.full(x.shape[0], x.shape[1], dtype=np.int32)


PADDING_LENGTHS = "lengths from the data file"
PADDING_MASK_ZERO = "mask_zero: id-0 steps skipped"
PADDING_NO_MASK = "no mask: every step run"
PADDING_FLATTEN = "Flatten over time: every step run (lengths not used)"


def padding_rule(ir, has_lengths: bool) -> str:
    """Which steps of a row run, in a few words (report.json's ``data.padding``):
    the file's ``lengths``, then the model's own masking, as Keras applies it."""
    mask = None
    if runs_every_step(ir):
        return PADDING_FLATTEN
    if ir is not None and ir.is_token_model and getattr(ir.input, "mask_zero", False):
        mask = PADDING_MASK_ZERO
    elif ir is not None and not ir.is_token_model and getattr(ir.input, "mask_value", None) is not None:
        mask = f"Masking: steps with every feature = {ir.input.mask_value:g} skipped"
    if has_lengths:
        return PADDING_LENGTHS + (f"; {mask}" if mask else "")
    return mask or PADDING_NO_MASK


def save_npz(path: str, ds: Dataset) -> None:
    """Write ``x``, ``y``, ``lengths`` (plus ``texts`` / ``class_names`` as plain
    unicode arrays when present; no pickling; an unlabelled set has no ``y``) to ``path``."""
    arrays = {"x": np.asarray(ds.x), "lengths": np.asarray(ds.lengths, dtype=np.int32)}
    if ds.y is not None:
        arrays["y"] = np.asarray(ds.y)
    if ds.texts is not None:
        arrays["texts"] = np.asarray(ds.texts, dtype=np.str_)
    if ds.class_names is not None:
        arrays["class_names"] = np.asarray(ds.class_names, dtype=np.str_)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
        np.savez_compressed(f, **arrays)


def _is_classifier(ir) -> bool:
    return ir.output_activation in CLASSIFIER_ACTIVATIONS


def _binary_logit(ir, y) -> bool:
    """One linear output with integer labels 0 and 1: a binary classifier on its logit (PyTorch's
    BCEWithLogitsLoss, Keras' BinaryCrossentropy(from_logits=True)), class 1 where it is above 0. Integer targets
    beyond 0 and 1 (counts), or float ones, are a regression's."""
    return (bool(ir.head) and ir.output_dim == 1 and ir.output_activation == "linear"
            and np.issubdtype(y.dtype, np.integer) and bool(np.all((y == 0) | (y == 1))))


#: the arrays a data file may hold
KEYS = ("x", "y", "lengths", "texts", "class_names")


def _past_lengths(lengths, shape) -> Optional[np.ndarray]:
    """bool ``[N, T]``: the steps after each row's length, when ``lengths`` is a plausible one per row (integers in
    0..T; the full check comes later and says what is wrong otherwise); else None."""
    if lengths is None:
        return None
    v = np.asarray(lengths)
    N, T = shape
    if v.shape != (N,) or not (np.issubdtype(v.dtype, np.integer) or (
            np.issubdtype(v.dtype, np.floating) and np.all(np.isfinite(v)) and np.all(v == np.round(v)))):
        return None
    if (v < 0).any() or (v > T).any():
        return None
    return np.arange(T)[None, :] >= v.astype(np.int64)[:, None]


def load_npz(path: str, ir=None, labels: Optional[bool] = True, what: str = "") -> Dataset:
    """Read and validate a user ``.npz`` (``x``, ``y``, optional ``lengths``).

    ``labels``: True, ``y`` is required; None, ``y`` may be missing (unlabelled data) but is
    checked when present; False, ``y`` is not needed (a ``y`` that does not fit the model is
    dropped, not refused: calibration data). ``what``: the option that named the file (``--data``), for
    the messages.

    With ``ir`` (a :class:`rnnskip.converter.ir.ModelIR`) the data are also
    checked against the model: token ids against the vocabulary, feature count,
    label range.  Every problem is one :class:`RnnskipError` line.
    """
    name = os.path.basename(path) or str(path)
    expected = "expected keys x, y and optional lengths"
    if not os.path.exists(path):
        raise RnnskipError(f"data file {path} does not exist; pass an .npz with arrays x, y and optional lengths")
    if os.path.isdir(path):
        raise RnnskipError(f"data path {path} is a folder; pass an .npz file with arrays x, y and optional lengths")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise RnnskipError(f"{path} is not a readable .npz file ({type(e).__name__}); "
                           "save one with numpy.savez(path, x=..., y=..., lengths=...)") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise RnnskipError(f"{path} is a single .npy array, not an .npz; "
                           "save one with numpy.savez(path, x=..., y=..., lengths=...)")

    def get(key):
        try:
            return np.asarray(npz[key])
        except ValueError:
            raise RnnskipError(f"'{key}' in {name} is an object (pickled) array; save plain numeric arrays") from None

    with npz:
        keys = set(npz.files)
        for k in ("x", "y") if labels is True else ("x",):
            if k not in keys:
                holds = f"it holds {', '.join(sorted(keys))}" if keys else "it holds no arrays"
                raise RnnskipError(f"'{k}' is missing from {name} ({holds}); {expected}")
        x = get("x")
        y = get("y") if "y" in keys else None
        lengths = get("lengths") if "lengths" in keys else None
        texts = [str(t) for t in get("texts")] if "texts" in keys else None
        class_names = [str(t) for t in get("class_names")] if "class_names" in keys else None
        unread = sorted(keys - set(KEYS))

    # ---- x
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        kind = "tokens"
    elif x.ndim == 3 and np.issubdtype(x.dtype, np.floating):
        kind = "features"
    else:
        hint = ""
        if x.ndim == 2 and np.issubdtype(x.dtype, np.floating):   # ids saved as floats (whole numbers only)
            hint = ("; if these are token ids, save x.astype('int32')" if np.all(np.isfinite(x) & (x == np.round(x)))
                    else "; as token ids they would need whole numbers, as features a third axis (F)")
        elif x.ndim == 3 and np.issubdtype(x.dtype, np.integer):
            hint = "; if these are features, save x.astype('float32')"
        raise RnnskipError(
            f"x in {name} has shape {tuple(x.shape)} and dtype {x.dtype}; expected integer token ids [N, T] "
            f"or float features [N, T, F]" + hint)
    N, T = int(x.shape[0]), int(x.shape[1])
    if N == 0 or T == 0:
        raise RnnskipError(f"x in {name} is empty (shape {tuple(x.shape)}); "
                           "it needs at least one sequence of at least one step")

    if ir is not None:
        if ir.is_token_model and kind != "tokens":
            raise RnnskipError(
                f"the model starts with an Embedding and takes token ids, but x in {name} is float features "
                f"{tuple(x.shape)}; pass integer ids [N, T]")
        if not ir.is_token_model and kind != "features":
            raise RnnskipError(
                f"the model takes float features [N, T, {ir.input.features}], but x in {name} is 2-D integer "
                f"{tuple(x.shape)}; pass float features [N, T, F]")

    notes: List[str] = []
    if unread:   # a "mask" or "sample_weight" the user expects to matter
        notes.append(f"warning: {name} has {'keys' if len(unread) > 1 else 'a key'} rnnskip does not read "
                     f"({', '.join(unread)}); it reads {', '.join(KEYS)} (the model's own Masking or mask_zero "
                     f"and lengths decide which steps run)")
    if kind == "tokens":
        xmin, xmax = int(x.min()), int(x.max())
        if xmin < 0:
            r = int(np.argwhere(x < 0)[0][0])
            raise RnnskipError(f"x in {name} has a negative token id {xmin} (row {r}); "
                               "ids must be 0..vocab-1")
        if ir is not None and xmax >= ir.input.vocab:
            r = int(np.argwhere(x >= ir.input.vocab)[0][0])
            raise RnnskipError(
                f"token id {xmax} in x of {name} (row {r}) is out of range for the model's vocabulary of "
                f"{ir.input.vocab} ids (valid 0..{ir.input.vocab - 1}); "
                "encode the text with the model's own vocabulary")
        if xmax > np.iinfo(np.int32).max:
            raise RnnskipError(f"token id {xmax} in x of {name} does not fit in int32")
        x = x.astype(np.int32)
    else:
        bad = ~np.isfinite(x)
        past = _past_lengths(lengths, x.shape[:2])
        if past is not None and bad.any() and not (bad & ~past[..., None]).any():
            # only in steps the lengths end the rows before (padding that never runs): zeros, said once
            notes.append(f"note: x in {name} has NaN or inf only after the rows' lengths (steps that never run); "
                         "rnnskip reads them as 0")
            x = np.where(bad, 0.0, x).astype(x.dtype)
        if not np.all(np.isfinite(x)):
            r, t = (int(v) for v in np.argwhere(~np.isfinite(x))[0][:2])
            raise RnnskipError(
                f"x in {name} contains NaN or inf values (first at row {r}, step {t}"
                f"{', within its length' if past is not None else ''}); clean or impute them first")
        with np.errstate(over="ignore"):
            big = ~np.isfinite(x.astype(np.float32))
        if big.any():   # the models compute in float32 (Keras, onnxruntime and the device)
            r, t = (int(v) for v in np.argwhere(big)[0][:2])
            raise RnnskipError(
                f"x in {name} has values beyond float32's range (first at row {r}, step {t}: "
                f"{float(x[r, t][big[r, t]][0]):.3g}); the model computes in float32: check the data's scale")
        if ir is not None and x.shape[2] != ir.input.features:
            swapped = x.shape[1] == ir.input.features   # [N, features, time]: aeon's and torch Conv1d's layout
            raise RnnskipError(
                f"x in {name} has {x.shape[2]} features per step but the model expects {ir.input.features}"
                + (f"; its axis 1 has {x.shape[1]}: if x is [rows, features, steps] (aeon's and PyTorch Conv1d's "
                   f"layout), save x.transpose(0, 2, 1), rows x steps x features" if swapped else ""))
        x = x.astype(np.float32)

    # ---- y (optional with labels=False: unlabelled data, y None)
    if y is not None:
        try:
            y = _check_labels(y, ir, name, N, T)
            if ir is not None and _binary_logit(ir, y):
                notes.append(f"note: y in {name} holds integers 0 and 1 and the model ends in one linear output: "
                             f"scored as a binary classifier on its logit (class 1 where it is above 0); save y "
                             f"as floats to score the model as a regression")
        except RnnskipError:
            if labels is not False:
                raise
            y = None    # labels the command does not need (calibration data): not a reason to refuse the file
    return _finish(x, y, lengths, texts, class_names, notes, name, N, T, kind, ir, what)


def _check_labels(y, ir, name, N, T):
    from .outputs import check_targets  # per-step labels [N, T(, K)], several regression outputs [N, K]
    multi = check_targets(y, ir, name, N, T)
    if y.ndim == 2 and y.shape[1] == 1 and not multi:
        y = y[:, 0]
    if multi and y.ndim == 3 and y.shape[2] == 1:   # per step [N, T, 1] (Keras' sparse targets): one per step
        y = y[..., 0]
    if y.ndim != 1 and not multi:
        raise RnnskipError(f"y in {name} has shape {tuple(y.shape)}; expected one label per sequence, shape [{N}]")
    if y.shape[0] != N:
        # as many labels as steps: x may be time-major, or y cut short by chance to T (a user's was): both said
        swapped = (" (as many as x has steps: if x is time-major, [steps, sequences, ...], save x.swapaxes(0, 1); "
                   "--data holds x batch-major)" if y.shape[0] == T else "")
        raise RnnskipError(f"y in {name} has {y.shape[0]} labels but x has {N} sequences{swapped}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_):
        raise RnnskipError(f"y in {name} has dtype {y.dtype}; expected integer class labels (or floats for regression)")
    if y.dtype == np.bool_:
        y = y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
        r = int(np.argwhere(~np.isfinite(y))[0][0])
        raise RnnskipError(f"y in {name} contains NaN or inf (first at row {r})")

    classify = None  # None: unknown (no ir)
    if ir is not None:
        # several linear outputs: class indices when y is integer, or one integer-valued float per row (the
        # model's width rules out a regression target); float targets [N, K] are a regression
        classify = _is_classifier(ir) or (ir.output_dim > 1 and (np.issubdtype(y.dtype, np.integer) or (
            y.ndim == 1 and not ir.per_step and np.all(y == np.round(y))))) or _binary_logit(ir, y)
    if classify or (classify is None and np.issubdtype(y.dtype, np.integer)):
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(y == np.round(y)):
                raise RnnskipError(f"y in {name} has non-integer values but the model is a classifier; "
                                   "expected class indices")
        y = y.astype(np.int64)
        if classify:
            n_cls = 2 if ir.output_dim == 1 else ir.output_dim
            bad = (y < 0) | (y >= n_cls)
            if bad.any():
                r = int(np.argwhere(bad)[0][0])
                what = ("a single sigmoid unit, so labels must be 0 or 1" if ir.output_dim == 1
                        else f"{n_cls} classes, so labels must be 0..{n_cls - 1}")
                raise RnnskipError(f"label {int(y[bad][0])} in y of {name} (row {r}) is out of range: "
                                   f"the model has {what}")
    else:
        if ir is not None and y.ndim == 1 and ir.output_dim > 1 and not ir.per_step:
            # one non-integer float per row for several outputs: no regression target of the model's width
            raise RnnskipError(f"y in {name} holds one non-integer float per sequence, but the model has "
                               f"{ir.output_dim} outputs: give class indices [{N}] or regression targets "
                               f"[{N}, {ir.output_dim}]")
        y = y.astype(np.float32)
    return y


def _finish(x, y, lengths, texts, class_names, notes, name, N, T, kind, ir, what=""):
    # ---- lengths
    has_lengths = lengths is not None
    if has_lengths:
        if lengths.ndim != 1 or lengths.shape[0] != N:
            raise RnnskipError(f"lengths in {name} has shape {tuple(lengths.shape)}; "
                               f"expected [{N}], one length per sequence")
        if not np.issubdtype(lengths.dtype, np.integer):
            if (np.issubdtype(lengths.dtype, np.floating) and np.all(np.isfinite(lengths))
                    and np.all(lengths == np.round(lengths))):
                lengths = lengths.astype(np.int64)
            else:
                raise RnnskipError(f"lengths in {name} has dtype {lengths.dtype}; expected integers")
        least = 0 if runs_every_step(ir) else 1   # a model that flattens the time axis does not use them
        bad = (lengths < least) | (lengths > T)
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise RnnskipError(f"lengths in {name} must be in {least}..{T} (the padded length T); "
                               f"row {r} has {int(lengths[r])}")
        lengths = lengths.astype(np.int32)
    else:
        # Keras runs every step of a row unless the model masks it: an Embedding without
        # mask_zero embeds id 0 like any other id, so trailing zeros are not padding to it.
        mask_zero = kind == "tokens" and bool(ir is not None and getattr(ir.input, "mask_zero", False))
        # GlobalMaxPooling1D after a Bidirectional layer pools the zeros of the trailing padding too; a Flatten over
        # time reads every step
        lengths = infer_lengths(x, mask_zero and not getattr(ir, "pools_masked_zeros", False)
                                and not runs_every_step(ir))
        if (lengths == 0).any():
            # Keras predicts such a row: its mask skips every step, so the head reads the initial state. Its length is
            # the window's (every step masked), as if lengths were given
            empty = int((lengths == 0).sum())
            notes.append(f"note: {empty} row{'s' if empty > 1 else ''} of x in {name} {'are' if empty > 1 else 'is'} "
                         f"all padding (id 0, which the model's mask_zero Embedding skips, e.g. row "
                         f"{int(np.argwhere(lengths == 0)[0][0])}): every step is masked, so the output is the head on "
                         "the initial state, as Keras computes it")
            lengths = np.where(lengths == 0, T, lengths).astype(lengths.dtype)

    if has_lengths and ir is not None and getattr(ir, "pools_masked_zeros", False) and (lengths < T).any():
        cut = lengths_cut_unmasked(x, lengths, ir)
        # rows whose padding the model masks: Keras pools its zeros (docs/pooling.md); the others keep their
        # lengths (and the warning below)
        full = (lengths < T) & ~cut.any(axis=1) if cut is not None else np.zeros(N, bool)
        if full.any():
            notes.append(f"note: the model max-pools a Bidirectional layer's outputs, which Keras sets to 0 at masked "
                         f"steps, trailing padding included: {int(full.sum())} row{'s' if full.sum() > 1 else ''} of "
                         f"{name} run to the padded length {T} (masked steps cost nothing but count), not to their "
                         f"lengths")
            lengths = np.where(full, T, lengths).astype(np.int32)
    if runs_every_step(ir):
        from .reference import check_flatten_steps
        check_flatten_steps(ir, T, name)
        if (lengths < T).any():
            short = int((lengths < T).sum())
            notes.append(f"note: the model flattens the outputs of all {T} steps (its layer '{ir.pool_name}'), "
                         f"which it runs on the arrays as given: {short} row{'s' if short > 1 else ''} of {name} run "
                         f"all {T} steps, not to their lengths")
            lengths = steps_run(ir, lengths, T)
    if not has_lengths and T > 1 and getattr(ir, "lengths_input", False):
        notes.append(f"warning: {f'{what} {name}' if what else name} has no lengths, but the model takes each row's "
                     f"length as an input: every row runs all {T} steps, as onnxruntime does given lengths {T}; if "
                     f"the rows are padded, save each row's own length as lengths in the data")
    if has_lengths and ir is not None:
        src = f"{what} {name}" if what else name
        line = (_lengths_against_mask(x, lengths, ir, src) if _unmasked(x, ir) is not None
                else _lengths_without_mask(x, lengths, ir, src))
        if line:
            notes.append(line)
    if ir is not None and not ir.is_token_model and ir.input.front:
        line = _front_end_long_enough(ir.input.front, lengths, name, what)
        if line:
            notes.append(line)
    return Dataset(x=x, y=y, lengths=lengths, texts=texts, class_names=class_names, notes=notes,
                   padding=padding_rule(ir, has_lengths))


def _unmasked(x: np.ndarray, ir) -> Optional[np.ndarray]:
    """bool ``[N, T]``: the steps the model's own mask lets through (the float reference's rule, Keras'),
    None without a mask."""
    masked = getattr(ir.input, "mask_zero", False) if ir.is_token_model else ir.input.mask_value is not None
    if not masked:
        return None
    from .reference import FloatModel
    return FloatModel(ir).valid_steps(x)


def _lengths_without_mask(x, lengths, ir, src) -> str:
    """A ``warning:`` line when ``lengths`` end rows early but the model has no mask and takes no lengths
    (ONNX sequence_lens): Keras / onnxruntime run every step of x as given, rnnskip the steps before each
    length, so on those rows the results differ from the source framework's. "" otherwise."""
    if getattr(ir, "lengths_input", False):
        return ""
    short = np.flatnonzero(np.asarray(lengths) < x.shape[1])
    if short.size == 0:
        return ""
    onnx = str(getattr(ir, "source", "")).lower().endswith(".onnx")
    fw = "onnxruntime" if onnx else "Keras"
    front = not ir.is_token_model and bool(ir.input.front)
    fix = ("" if front else ", or export a graph that takes sequence_lens; keep them for a model trained on packed "
           "sequences (pack_padded_sequence): each row's own steps are what it computed" if onnx else
           ", or use Embedding(mask_zero=True) so the model itself skips the padding" if ir.is_token_model else
           ", or add a Masking layer so the model itself skips the padding")
    r = int(short[0])
    return (f"warning: lengths in {src} end {short.size} of {len(x)} rows before their last step (e.g. row {r}: "
            f"length {int(lengths[r])} of {x.shape[1]}), but the model has no mask: rnnskip runs only the steps "
            f"before each length and {fw} every step of x, so results on those rows differ from what {fw} gives on "
            f"the same arrays: drop lengths (every step runs){fix}")


def lengths_cut_unmasked(x, lengths, ir) -> Optional[np.ndarray]:
    """bool ``[N, T]``: steps at or after each row's length that the model's own mask would run (Keras runs
    them, rnnskip does not); None when the model has no mask."""
    real = _unmasked(x, ir)
    if real is None:
        return None
    return real & (np.arange(x.shape[1])[None, :] >= np.asarray(lengths)[:, None])


def _lengths_against_mask(x, lengths, ir, src) -> str:
    """A ``warning:`` line when ``lengths`` cut off steps the model's own mask (mask_zero Embedding,
    Masking) would run: Keras runs every unmasked step, rnnskip the steps before each row's length,
    so on those rows the float reference (and the int8 model) differ from Keras. Typically rows padded
    at the front, as Keras' ``pad_sequences`` does by default, with the lengths of their tokens. "" when
    the lengths agree with the mask (or the model has none)."""
    past = lengths_cut_unmasked(x, lengths, ir)
    if past is None:
        return ""
    real = _unmasked(x, ir)
    rows = np.flatnonzero(past.any(axis=1))
    if rows.size == 0:
        return ""
    r = int(rows[0])
    t = int(np.flatnonzero(past[r])[0])
    mask = "Embedding(mask_zero=True)" if ir.is_token_model else "Masking layer"
    front = ", as if padded at the front (Keras' pad_sequences default)" if not real[rows, 0].any() else ""
    return (f"warning: lengths in {src} contradict the model's {mask}: {rows.size} of {len(x)} rows have unmasked "
            f"steps at or after their length (e.g. row {r}: length {int(lengths[r])}, step {t} unmasked){front}; "
            f"rnnskip runs only the steps before each length and Keras every unmasked step, so results on those rows "
            f"differ from Keras: drop lengths to let the model's mask decide, or pad at the end")


def _front_end_long_enough(front, lengths, name, what="") -> str:
    """Refuse data whose longest sequence is too short for the Conv1D/pooling front end to emit a
    frame (no recurrent step would run on any row; Keras refuses such input); a ``warning:`` line
    when only some rows (by their ``lengths``) are that short. "" when every row is long enough."""
    from .converter.ir import front_min_steps
    need = front_min_steps(front)
    src = f"{what} {name}" if what else name
    longest = int(lengths.max())
    if longest < need:
        desc = " -> ".join(f"{_front_kind(f)} '{f.name}'" for f in front)
        raise RnnskipError(
            f"the longest sequence in {src} has {longest} step{'s' if longest != 1 else ''}, but the model's front "
            f"end ({desc}) needs at least {need} steps to emit one frame for the recurrent layers (Keras refuses "
            f"shorter input too); pass sequences of at least {need} steps")
    short = np.flatnonzero(lengths < need)
    if short.size == 0:
        return ""
    r = int(short[0])
    return (f"warning: {short.size} of {len(lengths)} rows in {src} are shorter than the {need} steps the model's "
            f"front end needs to emit one frame, e.g. row {r} (length {int(lengths[r])}): no recurrent step runs on "
            f"them (Keras would refuse them); drop those rows or give them at least {need} steps")


def _front_kind(f) -> str:
    from .converter.ir import ConvLayer, DepthwiseConvLayer
    if isinstance(f, ConvLayer):
        return "DepthwiseConv1D" if isinstance(f, DepthwiseConvLayer) else "Conv1D"
    return "MaxPooling1D" if f.kind == "max" else "AveragePooling1D"


# --------------------------------------------------------------------------
# Tokenizers and vocabulary
# --------------------------------------------------------------------------

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD_OR_PUNCT = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def _tok_whitespace(text: str) -> List[str]:
    return text.split()


def _tok_words_punct(text: str) -> List[str]:
    return _WORD_OR_PUNCT.findall(_BR.sub(" ", text))


#: name -> function(lower-cased text) -> tokens.  The name is saved in the
#: vocabulary JSON so that text -> ids is reproducible.
TOKENIZERS = {
    "whitespace": _tok_whitespace,          # SST-2: already tokenized
    "words-punct": _tok_words_punct,        # raw text (IMDB): drop <br />, split off punctuation
}


def tokenize(text: str, tokenizer: str = "whitespace", lower: bool = True) -> List[str]:
    if tokenizer not in TOKENIZERS:
        raise RnnskipError(f"unknown tokenizer '{tokenizer}'; known: {', '.join(sorted(TOKENIZERS))}")
    return TOKENIZERS[tokenizer](text.lower() if lower else text)


def load_stopwords(path: Optional[str] = None) -> frozenset:
    """The English stop-word list shipped as ``rnnskip/data/stopwords.txt``
    (or ``path``): one lower-case token per line, ``#`` comments.  Negations and
    sentiment/degree words are not in it."""
    if path is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "stopwords.txt")
    if not os.path.isfile(path):
        raise RnnskipError(f"stop-word file {path} does not exist; expected one word per line")
    with open(path, encoding="utf-8") as f:
        return frozenset(w for w in (line.strip() for line in f) if w and not w.startswith("#"))


class Vocab:
    """Word -> id.  0 = padding, 1 = out-of-vocabulary, then words by training
    frequency (ties alphabetical).  ``words[i]`` is the word with id ``i``
    (``words[0] == "<pad>"``, ``words[1] == "<oov>"``)."""

    def __init__(self, words: Sequence[str], tokenizer: str = "whitespace", lower: bool = True):
        if tokenizer not in TOKENIZERS:
            raise RnnskipError(f"unknown tokenizer '{tokenizer}'; known: {', '.join(sorted(TOKENIZERS))}")
        self.words = ["<pad>", "<oov>"] + list(words)
        self.tokenizer = tokenizer
        self.lower = bool(lower)
        self.index = {w: i for i, w in enumerate(self.words) if i >= 2}

    @classmethod
    def build(cls, texts: Iterable[str], max_words: Optional[int] = None, tokenizer: str = "whitespace",
              lower: bool = True, min_count: int = 1) -> "Vocab":
        """The ``max_words`` most frequent words of ``texts`` (ties alphabetical);
        vocabulary size is ``max_words + 2`` (padding and OOV)."""
        counts = Counter()
        for t in texts:
            counts.update(tokenize(t, tokenizer, lower))
        items = sorted(((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
        if max_words is not None:
            items = items[:max_words]
        return cls([w for w, _ in items], tokenizer=tokenizer, lower=lower)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def size(self) -> int:
        """Number of ids including padding and OOV (the Embedding's input_dim)."""
        return len(self.words)

    def tokens(self, text: str) -> List[str]:
        return tokenize(text, self.tokenizer, self.lower)

    def to_ids(self, text: str, max_len: Optional[int] = None, pad: bool = False,
               truncating: str = "post") -> np.ndarray:
        """int32 ids of ``text``; truncated to ``max_len`` (keep the first tokens,
        or the last with ``truncating="pre"``); with ``pad`` post-padded with 0."""
        ids = [self.index.get(w, OOV_ID) for w in self.tokens(text)]
        if max_len is not None and len(ids) > max_len:
            ids = ids[:max_len] if truncating == "post" else ids[-max_len:]
        out = np.asarray(ids, dtype=np.int32)
        if pad:
            if max_len is None:
                raise ValueError("pad=True needs max_len")
            out = np.concatenate([out, np.zeros(max_len - len(out), dtype=np.int32)])
        return out

    def encode(self, texts: Sequence[str], max_len: int, truncating: str = "post") -> Tuple[np.ndarray, np.ndarray]:
        """``(x int32 [N, max_len] post-padded with 0, lengths int32 [N])``.
        An empty text becomes a single OOV token (length 1)."""
        x = np.zeros((len(texts), max_len), dtype=np.int32)
        lengths = np.zeros(len(texts), dtype=np.int32)
        for i, t in enumerate(texts):
            ids = self.to_ids(t, max_len, truncating=truncating)
            if ids.size == 0:
                ids = np.array([OOV_ID], dtype=np.int32)
            x[i, :ids.size] = ids
            lengths[i] = ids.size
        return x, lengths

    def to_json(self) -> dict:
        return {"format": VOCAB_FORMAT, "lower": self.lower, "tokenizer": self.tokenizer,
                "pad_id": PAD_ID, "oov_id": OOV_ID, "words": self.words}

    def save(self, path: str) -> None:
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=0)
            f.write("\n")

    @classmethod
    def load(cls, path: str) -> "Vocab":
        if not os.path.isfile(path):
            raise RnnskipError(f"vocabulary file {path} does not exist; "
                               "it is saved next to the model as <model>.vocab.json")
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise RnnskipError(f"vocabulary file {path} is not valid JSON ({e.__class__.__name__})") from None
        if not isinstance(d, dict) or d.get("format") != VOCAB_FORMAT:
            raise RnnskipError(f"{path} is not an rnnskip vocabulary (expected \"format\": \"{VOCAB_FORMAT}\")")
        words = d.get("words")
        if not isinstance(words, list) or len(words) < 2 or words[0] != "<pad>" or words[1] != "<oov>":
            raise RnnskipError(f"vocabulary {path} is malformed: \"words\" must start with \"<pad>\", \"<oov>\"")
        if d.get("tokenizer") not in TOKENIZERS:
            raise RnnskipError(f"vocabulary {path} names unknown tokenizer {d.get('tokenizer')!r}; "
                               f"known: {', '.join(sorted(TOKENIZERS))}")
        return cls(words[2:], tokenizer=d["tokenizer"], lower=bool(d.get("lower", True)))

    def __eq__(self, other) -> bool:
        return (isinstance(other, Vocab) and self.words == other.words
                and self.tokenizer == other.tokenizer and self.lower == other.lower)

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, tokenizer={self.tokenizer!r}, lower={self.lower})"


# --------------------------------------------------------------------------
# Text data sets
# --------------------------------------------------------------------------

def _resolve_dir(root: str, sub: str, files: Sequence[str], what: str) -> str:
    """``root`` may be the data set's own folder or a folder holding ``sub/``."""
    for d in (root, os.path.join(root, sub)):
        if all(os.path.isfile(os.path.join(d, f)) for f in files):
            return d
    if not os.path.isdir(root):
        raise RnnskipError(f"{what} folder {root} does not exist; expected a folder with {', '.join(files)}")
    raise RnnskipError(f"{what} files not found in {root} (nor {os.path.join(root, sub)}); expected {', '.join(files)}")


def _read_tsv(path: str, text_col: str, label_col: str = "label") -> Tuple[List[str], np.ndarray]:
    csv.field_size_limit(1 << 30)
    opener = gzip.open if path.endswith(".gz") else open
    texts: List[str] = []
    labels: List[int] = []
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            try:
                header = next(r)
            except StopIteration:
                raise RnnskipError(f"{path} is empty; "
                                   f"expected a header row with columns {text_col}, {label_col}") from None
            if text_col not in header or label_col not in header:
                raise RnnskipError(f"{path} has columns {', '.join(header)}; expected {text_col} and {label_col}")
            ti, li = header.index(text_col), header.index(label_col)
            for lineno, row in enumerate(r, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise RnnskipError(f"{path} line {lineno} has {len(row)} tab-separated fields; "
                                       f"the header has {len(header)}")
                try:
                    labels.append(int(row[li]))
                except ValueError:
                    raise RnnskipError(f"{path} line {lineno}: label {row[li]!r} is not an integer") from None
                texts.append(row[ti])
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise RnnskipError(f"cannot read {path}: {e}") from None
    return texts, np.asarray(labels, dtype=np.int64)


def _text_dataset(texts, labels, vocab, max_len, truncating="post") -> Dataset:
    x, lengths = vocab.encode(texts, max_len, truncating=truncating)
    return Dataset(x=x, y=labels, lengths=lengths, texts=list(texts), class_names=["negative", "positive"])


def load_sst2(root: str, split: str, vocab: Optional[Vocab] = None, max_words: int = 8000,
              max_len: int = 50) -> Tuple[Dataset, Vocab]:
    """SST-2 (GLUE) ``split`` in ``{"train", "dev"}`` from ``root`` (the folder
    with ``train.tsv`` / ``dev.tsv``, or its parent).  Without ``vocab`` one is
    built on the train split (whitespace tokens, lower-cased).  Sentences are
    truncated to ``max_len`` tokens and post-padded with 0."""
    if split not in ("train", "dev"):
        raise RnnskipError(f"SST-2 split '{split}' is unknown; use 'train' or 'dev' (GLUE's test labels are hidden)")
    d = _resolve_dir(root, "sst2", ["train.tsv", "dev.tsv"], "SST-2")
    texts, labels = _read_tsv(os.path.join(d, f"{split}.tsv"), "sentence")
    if vocab is None:
        train_texts = texts if split == "train" else _read_tsv(os.path.join(d, "train.tsv"), "sentence")[0]
        vocab = Vocab.build(train_texts, max_words=max_words, tokenizer="whitespace")
    return _text_dataset(texts, labels, vocab, max_len), vocab


def load_imdb(root: str, split: str, vocab: Optional[Vocab] = None, max_words: int = 10000,
              max_len: int = 200, truncating: str = "post") -> Tuple[Dataset, Vocab]:
    """IMDB reviews ``split`` in ``{"train", "test"}`` from ``root`` (the folder
    with ``train.tsv.gz`` / ``test.tsv.gz``, or its parent).  Tokens: lower-cased,
    ``<br />`` removed, punctuation split off.  Without ``vocab`` one is built on
    the train split.  Reviews are truncated to ``max_len`` tokens (the first ones;
    ``truncating="pre"`` keeps the last) and post-padded with 0."""
    if split not in ("train", "test"):
        raise RnnskipError(f"IMDB split '{split}' is unknown; use 'train' or 'test'")
    d = _resolve_dir(root, "imdb", ["train.tsv.gz", "test.tsv.gz"], "IMDB")
    texts, labels = _read_tsv(os.path.join(d, f"{split}.tsv.gz"), "text")
    if vocab is None:
        train_texts = texts if split == "train" else _read_tsv(os.path.join(d, "train.tsv.gz"), "text")[0]
        vocab = Vocab.build(train_texts, max_words=max_words, tokenizer="words-punct")
    return _text_dataset(texts, labels, vocab, max_len, truncating), vocab


# --------------------------------------------------------------------------
# aeon's bundled UEA/UCR sets
# --------------------------------------------------------------------------

def _aeon_data_dir() -> str:
    try:
        import aeon.datasets
    except ImportError:
        raise RnnskipError("aeon is not installed; "
                           "install it with pip install 'rnnskip[train]' (or pip install aeon)") from None
    return os.path.join(os.path.dirname(aeon.datasets.__file__), "data")


def _ts_has_class_labels(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
            if low.startswith("@data"):
                break
    return False


def aeon_bundled_classification() -> List[str]:
    """Names of the classification sets that ship inside aeon (both splits as .ts,
    with class labels), e.g. JapaneseVowels, BasicMotions."""
    d = _aeon_data_dir()
    out = []
    for n in sorted(os.listdir(d)):
        p = [os.path.join(d, n, f"{n}_{s}.ts") for s in ("TRAIN", "TEST")]
        if all(os.path.isfile(q) for q in p) and _ts_has_class_labels(p[0]):
            out.append(n)
    return out


def _read_ts(path: str):
    from aeon.datasets import load_from_ts_file
    X, y, meta = load_from_ts_file(path, return_meta_data=True, return_type="np-list")
    return X, y, meta


def load_aeon(name: str, split: str, pad_to: Optional[int] = None,
              extract_path: Optional[str] = None) -> Tuple[Dataset, List[str]]:
    """A UEA/UCR classification set shipped with aeon (``JapaneseVowels``,
    ``BasicMotions``, ...), read offline from its bundled ``.ts`` files.

    Returns ``(Dataset, class_names)``: ``x`` float32 ``[N, T, F]`` (aeon's
    ``[C, T]`` series transposed), zero post-padded to ``pad_to`` (default: the
    longest series over both splits, so train and test share ``T``), ``lengths``
    the true lengths, ``y`` 0..K-1 in the order of the file's class list.
    ``extract_path``: a folder holding ``<name>/<name>_TRAIN.ts`` instead.
    """
    s = split.upper()
    if s not in ("TRAIN", "TEST"):
        raise RnnskipError(f"aeon split '{split}' is unknown; use 'train' or 'test'")
    base = extract_path if extract_path is not None else _aeon_data_dir()
    paths = {k: os.path.join(base, name, f"{name}_{k}.ts") for k in ("TRAIN", "TEST")}
    if not os.path.isfile(paths[s]):
        if extract_path is None:
            raise RnnskipError(f"'{name}' is not a classification set bundled with aeon; bundled: "
                               f"{', '.join(aeon_bundled_classification())}")
        raise RnnskipError(f"{paths[s]} does not exist; "
                           f"expected {name}/{name}_TRAIN.ts and {name}_TEST.ts under {extract_path}")
    X, y, meta = _read_ts(paths[s])
    class_names = [str(c) for c in (meta.get("class_values") or sorted(set(map(str, y))))]
    lookup = {c: i for i, c in enumerate(class_names)}
    try:
        labels = np.asarray([lookup[str(v)] for v in y], dtype=np.int64)
    except KeyError as e:
        raise RnnskipError(f"{paths[s]}: label {e.args[0]!r} is not in the file's class list {class_names}") from None
    lens = np.asarray([a.shape[-1] for a in X], dtype=np.int32)
    if pad_to is None:
        pad_to = int(lens.max())
        other = paths["TEST" if s == "TRAIN" else "TRAIN"]
        if os.path.isfile(other) and not meta.get("equallength", False):
            pad_to = max(pad_to, max(a.shape[-1] for a in _read_ts(other)[0]))
    if lens.max() > pad_to:
        raise RnnskipError(f"{name} has series of {int(lens.max())} steps, longer than pad_to={pad_to}")
    F = int(X[0].shape[0])
    x = np.zeros((len(X), pad_to, F), dtype=np.float32)
    for i, a in enumerate(X):
        a = np.asarray(a, dtype=np.float32).reshape(F, -1)
        x[i, :a.shape[1]] = a.T
    if not np.all(np.isfinite(x)):
        raise RnnskipError(f"{name} {split} has missing values (NaN); rnnskip needs complete series")
    return Dataset(x=x, y=labels, lengths=lens, class_names=class_names), class_names


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (hex): what identifies a data file wherever it is copied."""
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def same_rows_file(a, b) -> bool:
    """Whether two data files are one file, or byte for byte the same (rows that must be held out
    from each other: a certificate's and the ones that chose what it certifies)."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    if pa.stat().st_size != pb.stat().st_size:
        return False
    return file_sha256(pa) == file_sha256(pb)


def shared_rows(a: "Dataset", b: "Dataset") -> int:
    """How many rows of ``b`` also appear (the same steps up to the same length) in ``a``."""
    import hashlib

    def keys(ds):
        L = ds.lengths if ds.lengths is not None else [ds.x.shape[1]] * len(ds.x)
        return [hashlib.sha1(np.ascontiguousarray(x[:int(n)]).tobytes()).digest() for x, n in zip(ds.x, L)]
    seen = set(keys(a))
    return sum(k in seen for k in keys(b))
