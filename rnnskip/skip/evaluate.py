"""Int8 (golden) runs with skipping, and the MAC accounting the report uses."""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np

from ..errors import RnnskipError
from ..quant.golden import GoldenModel, predict_classes
from ..quant.model import QModel
from ..stepmethod import find, without


def with_predictor(qm: QModel, qp) -> QModel:
    """Shallow copy of ``qm`` carrying predictor ``qp`` (None: without; other step methods kept)."""
    q = copy.copy(qm)
    q.methods = without(qm.methods, "skip") + ([qp] if qp is not None else [])
    return q


def predictor_of(qm: QModel):
    return find(qm.methods, "skip")


def golden_run(qm: QModel, x, lengths, qp=None, skip_mask: Optional[np.ndarray] = None) -> dict:
    """Golden int8 run: dense, with predictor ``qp``, or skipping where ``skip_mask [N, T]``."""
    x = np.asarray(x)
    lengths = np.asarray(lengths)
    N, T = x.shape[:2]
    if skip_mask is None:
        g = GoldenModel(with_predictor(qm, qp))
        out, flags = g.run(x, lengths)
        if qm.front:   # the steps that could be skipped are the frames the front end emits (the dense run's)
            valid = GoldenModel(with_predictor(qm, None)).run(x, lengths)[1].astype(bool)
        else:
            valid = GoldenModel(with_predictor(qm, None)).valid_steps(x) & (np.arange(T)[None, :] < lengths[:, None])
    elif qm.front:
        raise RnnskipError(f"model '{qm.name}' has a Conv1D front end: a skip mask over its input steps does not say "
                           "which of its frames to skip; evaluate masks on the float model (features.run)")
    else:
        g = GoldenModel(with_predictor(qm, None))
        valid = g.valid_steps(x) & (np.arange(T)[None, :] < lengths[:, None])
        out, flags = g.run(x, lengths, skip=np.asarray(skip_mask, bool))
    v = int(valid.sum())
    return {"pred": predict_classes(out, qm.output_activation), "out": out, "flags": flags,
            "valid_steps": valid.sum(axis=1), "run_steps": flags.sum(axis=1),
            "skip_rate": float(1.0 - flags.sum() / v) if v else 0.0}


def macs(ir, valid_steps, run_steps, pred_macs: int = 0) -> dict:
    """Mean MACs per inference: dense (every valid step), effective (steps run +
    the predictor on every valid step + head) and the predictor's share. The head runs once, or with an output
    per step after every step that ran (a skipped step repeats the output before it)."""
    valid_steps = np.asarray(valid_steps, float)
    run_steps = np.asarray(run_steps, float)
    step, head = ir.macs_per_step(), ir.head_macs()
    if ir.per_step:
        step, head = step + head, 0
    dense = float(np.mean(valid_steps * step + head))
    pred = float(np.mean(valid_steps * pred_macs))
    eff = float(np.mean(run_steps * step + head)) + pred
    return {"dense": dense, "effective": eff, "predictor": pred,
            "reduction": (1.0 - eff / dense) if dense else 0.0}
