"""The paper's baselines, decided from the input alone (no look at the state).

* stop-word removal: skip tokens in the stop-word list shipped with the package
  (``rnnskip/data/stopwords.txt``), token models only;
* Concat(n): keep the first n and the last n elements of each sequence, skip the rest.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..datasets import Vocab, load_stopwords
from ..outputs import outcomes
from ..stats import accuracy
from . import features


def stopword_mask(x: np.ndarray, vocab: Vocab, stopwords: Optional[frozenset] = None) -> np.ndarray:
    """bool [N, T]: True where the token is a stop word."""
    sw = load_stopwords() if stopwords is None else stopwords
    is_stop = np.array([w in sw for w in vocab.words], bool)
    ids = np.clip(np.asarray(x, np.int64), 0, len(is_stop) - 1)
    return is_stop[ids] & (np.asarray(x) != 0)


def concat_mask(lengths: np.ndarray, T: int, n: int) -> np.ndarray:
    """bool [N, T]: True for steps outside the first n and last n of each sequence."""
    t = np.arange(T)[None, :]
    L = np.asarray(lengths)[:, None]
    return (t >= n) & (t < L - n)


def evaluate_mask(fm, x, lengths, y, mask, dense_acc: float, name: str, golden=None) -> dict:
    """Float (and, with ``golden``, int8) skip rate / accuracy of skipping where ``mask``."""
    r = features.run(fm, x, lengths, decide=features.mask_rule(mask))
    d = {"name": name, "skip_rate": r.skip_rate, "accuracy_float": r.accuracy(y),
         "loss_points_float": 100.0 * (dense_acc - r.accuracy(y))}
    if golden is not None:
        from .evaluate import golden_run
        g = golden_run(golden, x, lengths, skip_mask=mask)
        d["accuracy_int8"] = accuracy(outcomes(g["pred"], y, r.valid))
        d["skip_rate_int8"] = g["skip_rate"]
    return d
