"""Folds both importers (Keras, ONNX) apply to the IR they build: rewrites that leave the model's outputs
exactly as they are."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ..reference import activation
from .ir import DenseLayer, EmbeddingInput

#: why a softmax Dense after an Embedding does not fold (the importers' refusal)
EMBEDDING_FOLD_SOFTMAX = "uses softmax: rnnskip folds a per-step Dense into the embedding table only without it"


def fold_dense_into_embedding(emb: EmbeddingInput, dense: DenseLayer) -> Tuple[EmbeddingInput, str]:
    """Embedding -> per-step Dense is a lookup of act(table @ kernel + bias): the same rows for every id, so the
    Dense folds into the table exactly (computed in float64, stored float32 as Keras' and PyTorch's own).
    Returns the new embedding and the note saying so. The caller refuses softmax (EMBEDDING_FOLD_SOFTMAX)."""
    rows = activation(dense.activation)(np.asarray(emb.table, np.float64) @ np.asarray(dense.kernel, np.float64)
                                        + np.asarray(dense.bias, np.float64))
    new = EmbeddingInput(table=np.asarray(rows, np.float32), mask_zero=emb.mask_zero, name=emb.name)
    return new, (f"folded per-step Dense '{dense.name}' into the embedding table (every id's row is the Dense of "
                 f"its vector: {new.vocab} rows of {new.dim})")
