"""The int8 skip predictor: quantisation, golden evaluation, and the C it becomes.

Device features (int8, padded columns, no copy for one-layer models)::

    f = [ x (in_p) | h_0 (up_0) | h_1 (up_1) ... ]

``x`` is ``xh0[0:in_p]`` after the step's input stage (embedding row / input
Dense / features), ``h_l`` the int8 hidden state of layer ``l`` before the step
(``xh0[in_p:]``, ``xh_l[in_p_l:]``). Column scales: ``x_scale`` of layer 0 for
x, ``h_scale`` of each layer for its h.

MLP / logistic: the first Dense acts on f with one accumulator per row on a
shared per-row scale (like ``cells.base.fused_block``: ``W * s_col`` quantised per
row), hidden layers are int8 with ReLU (``rnnskip_fully_connected_s8``), the
final unit is an int32 dot product ``score = bias + w . a``; skip iff
``score > score_thr`` (``score_thr = floor(threshold / s_score)``, exact for an
integer score).

Trees: ``f[c] <= t`` with ``t = floor(threshold / s_c)`` (exact for int8 ``f[c]``
on the quantisation grid); each leaf holds ``round(P(skip) * 32767)``; skip iff
the sum over the trees ``> floor(threshold * 32767 * n_trees)``.

``QPredictor.skip`` is the specification the generated C follows bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..errors import RnnskipError
from ..quant import fixedpoint as fp
from ..quant.golden import dense as golden_dense
from ..quant.model import QDense, QMat, QModel, pad4
from ..stagefile import stage_data
from ..stepmethod import StepMethod
from .predictor import FloatPredictor

LEAF_ONE = 32767


@stage_data
@dataclass
class QPredictor(StepMethod):
    """The int8 skip predictor, a step method: before each step it decides, on the state
    reached, whether the step runs."""
    key = "skip"
    label = "skip"
    template = "model/skip.c.j2"
    c_row_major_users = ("skip predictor",)   # its MLP layers are rnnskip_fully_connected_s8 calls
    varying_step_cost = ("a skipped step still costs the predictor (and a front end's frame), so cycles against the "
                         "steps run are no step's cost: the skip section's cycles compare the firmware with the dense "
                         "one")

    type: str
    in_p: int
    ups: List[int]
    col_scale: np.ndarray            # float [cols]: scale of each device column (0 for padding)
    col_of_feature: np.ndarray       # int [D]: device column of each real feature
    hidden: List[QDense] = field(default_factory=list)   # relu int8 layers
    out_w: Optional[np.ndarray] = None   # int8 [cols of the last input]
    out_b: int = 0
    score_scale: float = 1.0         # float score per unit of the integer score
    trees: List[dict] = field(default_factory=list)      # feature (column), thr (int), left, right, value (int)
    score_thr: int = 0
    threshold: float = 0.0           # the float decision threshold it came from
    params: int = 0
    macs: int = 0                    # MACs per evaluated step (padded shapes, as executed)
    description: str = ""

    @property
    def cols(self) -> int:
        return int(self.in_p + sum(self.ups))

    @property
    def is_tree(self) -> bool:
        return self.type in ("tree", "forest")

    # ---- golden --------------------------------------------------------------
    def features(self, x: np.ndarray, state: List[dict]) -> np.ndarray:
        """int8 device features ``[N, cols]`` from the step input ``x [N, in_p]`` and the golden state."""
        return np.concatenate([np.asarray(x, np.int64)] + [s["h8"] for s in state], axis=1)

    def score(self, f: np.ndarray) -> np.ndarray:
        """Integer score ``[N]`` (int64 holding int32) of device features ``f``."""
        if self.is_tree:
            tot = np.zeros(len(f), np.int64)
            for t in self.trees:
                tot += _descend(t, f)
            return tot
        a = f
        for d in self.hidden:
            a = golden_dense(d, a, final=False)
        return fp.wrap32(self.out_b + a @ self.out_w.astype(np.int64))

    def skip(self, x: np.ndarray, state: List[dict]) -> np.ndarray:
        """bool ``[N]``: the predictor says skip this step (the firmware's rnnskip_predict_skip)."""
        return self.score(self.features(x, state)) > self.score_thr

    def golden_skip(self, golden, x, state):
        return self.skip(x, state)

    def macs_per_step(self, qm) -> int:
        return int(self.macs)

    def with_threshold(self, threshold: float) -> "QPredictor":
        """A copy deciding at another float threshold (same weights)."""
        import copy
        q = copy.copy(self)
        q.threshold = float(threshold)
        q.score_thr = _score_thr(self, threshold)
        return q

    # ---- C -----------------------------------------------------------------------
    def c_context(self, qm) -> dict:
        return c_context(self, qm)

    def c_arrays(self, qm=None) -> List[tuple]:
        """(name, values, numpy dtype, doc) for rnnskip_weights.c."""
        a = []
        for j, d in enumerate(self.hidden):
            m = d.mat
            doc = f"skip predictor hidden layer {j}"
            a += [(f"rnnskip_p{j}_w", m.w, np.int8, f"{doc}: weights [{m.rows}][{m.cols}], row-major"),
                  (f"rnnskip_p{j}_b", m.bias, np.int32, f"{doc}: bias on the accumulator scale"),
                  (f"rnnskip_p{j}_m", m.mult, np.int32, f"{doc}: requantisation multipliers (left shift {m.ls})")]
        if not self.is_tree:
            a.append(("rnnskip_p_out_w", self.out_w, np.int8, "skip predictor score weights"))
        return a


def _descend(t: dict, f: np.ndarray) -> np.ndarray:
    node = np.zeros(len(f), np.int64)
    while True:
        inner = t["left"][node] >= 0
        if not inner.any():
            break
        idx = np.nonzero(inner)[0]
        n = node[idx]
        go = f[idx, t["feature"][n]] <= t["thr"][n]
        node[idx] = np.where(go, t["left"][n], t["right"][n])
    return t["value"][node].astype(np.int64)


def _score_thr(q: QPredictor, threshold: float) -> int:
    if q.is_tree:
        v = math.floor(threshold * LEAF_ONE * len(q.trees))
    else:
        v = math.floor(threshold / q.score_scale) if np.isfinite(threshold) else (
            fp.INT32_MAX if threshold > 0 else fp.INT32_MIN)
    return int(min(max(v, fp.INT32_MIN), fp.INT32_MAX))


def bidirectional_refusal(name: str) -> str:
    """Why a model with a Bidirectional layer takes no skip predictor (docs/bidirectional.md)."""
    return (f"layer '{name}' is Bidirectional: rnnskip does not skip steps of Bidirectional models (its backward "
            "direction and the layers after it run over the whole window at the end, so a skipped step would save "
            "only its forward direction); use delta thresholds (--delta) instead")


def check_compatible(p: FloatPredictor, qm: QModel, where: str = "the predictor") -> None:
    """One-line error when a predictor was trained for another model's shapes."""
    if qm.bidi is not None:
        raise RnnskipError(bidirectional_refusal(qm.layers[qm.bidi].name))
    units = [l.units for l in qm.layers]
    if p.in_dim != qm.in_dim or list(p.units) != units:
        raise RnnskipError(
            f"{where} was trained for input size {p.in_dim} and hidden sizes {list(p.units)}, but the model has "
            f"input size {qm.in_dim} and hidden sizes {units}; train a predictor for this model "
            f"('rnnskip train-predictor')")


def _raw_x(qm: QModel) -> bool:
    """The x columns are the float features themselves (no embedding, per-step Dense or front end before them)."""
    return not qm.token_input and qm.input_dense is None and not qm.front


def feature_scales(qm: QModel):
    """(column scales [cols], device column of each real feature [D], in_p, ups)."""
    ups = [l.up for l in qm.layers]
    cols = qm.in_p + sum(ups)
    scale = np.zeros(cols)
    col = list(range(qm.in_dim))
    scale[: qm.in_dim] = qm.layers[0].x_scale
    if qm.feature_scales is not None and _raw_x(qm):   # raw features: their units
        scale[: qm.in_dim] = np.asarray(qm.feature_scales, np.float64)[: qm.in_dim]
    off = qm.in_p
    for l in qm.layers:
        scale[off: off + l.units] = l.h_scale
        col += list(range(off, off + l.units))
        off += l.up
    return scale, np.asarray(col, np.int64), qm.in_p, ups


def feature_offsets(qm: QModel, cols: int) -> np.ndarray:
    """Per device column, the float value its int8 zero stands for: the features' offsets where the first recurrent
    layer reads them raw (``qm.feature_offsets``: the device quantises ``x - offset``), else 0."""
    off = np.zeros(cols)
    if qm.feature_offsets is not None and _raw_x(qm):
        off[: qm.in_dim] = np.asarray(qm.feature_offsets, np.float32)
    return off


def quantize_predictor(p: FloatPredictor, qm: QModel) -> QPredictor:
    """Int8 version of ``p`` for the quantised model ``qm`` (its x and h scales, and the offset of raw features:
    ``x = x_q s + offset``)."""
    check_compatible(p, qm)
    scale, col, in_p, ups = feature_scales(qm)
    shift = feature_offsets(qm, len(scale))
    q = QPredictor(type=p.type, in_p=in_p, ups=ups, col_scale=scale, col_of_feature=col,
                   threshold=float(p.threshold), params=p.params(), description=p.describe())
    cols = q.cols
    if p.is_tree:
        for t in p.trees:
            inner = t["left"] >= 0
            c = col[t["feature"]]
            s = scale[c]
            thr = np.where(inner, np.floor((t["threshold"] - shift[c]) / np.where(s > 0, s, 1.0)), 0)
            thr = np.clip(thr, -129, 128).astype(np.int64)   # beyond int8: always one side
            q.trees.append({"feature": np.where(inner, c, 0).astype(np.int64), "thr": thr,
                            "left": t["left"].astype(np.int64), "right": t["right"].astype(np.int64),
                            "value": np.round(np.clip(t["value"], 0, 1) * LEAF_ONE).astype(np.int64)})
        q.score_thr = _score_thr(q, p.threshold)
        return q
    # first layer on the device features: per-row shared scale over columns of different scales
    W0, b0 = p.layers[0]
    b0 = np.asarray(b0, np.float64) + shift[col] @ W0   # W (x_q s + offset) + b
    Wd = np.zeros((cols, W0.shape[1]))
    Wd[col] = W0 * scale[col][:, None]          # weights on int8 feature units
    rows_scale = np.abs(Wd).max(axis=0) / 127.0
    rows_scale = np.where(rows_scale > 0, rows_scale, 1.0)
    w0q = np.clip(np.round(Wd / rows_scale), -127, 127).astype(np.int8).T   # [out, cols]
    b0q = np.clip(np.round(b0 / rows_scale), fp.INT32_MIN, fp.INT32_MAX).astype(np.int64)
    if len(p.layers) == 1:  # logistic regression: the score is the first layer
        q.out_w = np.ascontiguousarray(w0q[0])
        q.out_b, q.score_scale = int(b0q[0]), float(rows_scale[0])
    else:
        in_scale, in_cols = None, cols
        acc_scale, wq, bq = rows_scale, w0q, b0q
        for j in range(len(p.layers) - 1):
            if j > 0:
                W, b = p.layers[j]
                sw = np.abs(W).max(axis=0) / 127.0
                sw = np.where(sw > 0, sw, 1.0)
                wq = np.clip(np.round(W / sw), -127, 127).astype(np.int8).T
                acc_scale = sw * in_scale
                bq = np.clip(np.round(b / acc_scale), fp.INT32_MIN, fp.INT32_MAX).astype(np.int64)
            rows = pad4(wq.shape[0])
            out_scale = max(float(p.act_max[j]), 1e-8) / 127.0
            w = np.zeros((rows, in_cols), np.int8)
            w[: wq.shape[0], : wq.shape[1]] = wq
            bias = np.zeros(rows, np.int64)
            bias[: len(bq)] = bq
            eff = np.zeros(rows)
            eff[: len(acc_scale)] = acc_scale / out_scale
            m, ls = fp.quantize_multipliers(eff)
            q.hidden.append(QDense(mat=QMat(w=w, bias=bias, mult=m, ls=ls, input="in"), activation="relu",
                                   out_dim=int(wq.shape[0]), in_scale=1.0 if in_scale is None else in_scale,
                                   out_scale=out_scale, name=f"skip_hidden{j}"))
            in_scale, in_cols = out_scale, rows
        W, b = p.layers[-1]
        sw = max(float(np.abs(W).max()), 1e-12) / 127.0
        ow = np.zeros(in_cols, np.int8)
        ow[: W.shape[0]] = np.clip(np.round(W[:, 0] / sw), -127, 127).astype(np.int8)
        q.out_w = ow
        q.score_scale = sw * in_scale
        q.out_b = int(np.clip(np.round(b[0] / q.score_scale), fp.INT32_MIN, fp.INT32_MAX))
    q.macs = int(sum(d.mat.w.size for d in q.hidden) + q.out_w.size)
    q.score_thr = _score_thr(q, p.threshold)
    return q


# ---- C generation context ------------------------------------------------------

def _feature_expr(qm: QModel, c: int) -> str:
    """C expression reading device feature column ``c`` from the state ``s``."""
    l0 = qm.layers[0]
    if c < l0.in_p + l0.up:
        return f"s->xh0[{c}]"
    off = l0.in_p + l0.up
    for i, l in enumerate(qm.layers[1:], start=1):
        if c < off + l.up:
            return f"s->xh{i}[{l.in_p + c - off}]"
        off += l.up
    raise ValueError(c)


def _tree_c(qm: QModel, t: dict, node: int, indent: str) -> List[str]:
    if t["left"][node] < 0:
        return [f"{indent}return {int(t['value'][node])};"]
    c, thr = int(t["feature"][node]), int(t["thr"][node])
    out = [f"{indent}if ({_feature_expr(qm, c)} <= {thr}) {{"]
    out += _tree_c(qm, t, int(t["left"][node]), indent + "    ")
    out += [f"{indent}}} else {{"]
    out += _tree_c(qm, t, int(t["right"][node]), indent + "    ")
    out += [f"{indent}}}"]
    return out


def c_context(q: QPredictor, qm: QModel) -> dict:
    """Template context for model/skip.c.j2."""
    l0 = qm.layers[0]
    ctx = {"q": q, "cols": q.cols, "xh0_len": l0.in_p + l0.up,
           "extra": [(i, l.in_p, l.up, l0.in_p + l0.up + sum(m.up for m in qm.layers[1:i]))
                     for i, l in enumerate(qm.layers[1:], start=1)],
           "hidden": [{"j": j, "rows": d.rows, "cols": d.cols, "ls": d.mat.ls} for j, d in enumerate(q.hidden)],
           "trees": [], "score_thr": q.score_thr, "out_b": q.out_b,
           "out_cols": 0 if q.out_w is None else int(q.out_w.size)}
    for k, t in enumerate(q.trees):
        ctx["trees"].append("\n".join(_tree_c(qm, t, 0, "    ")))
    ctx["scratch"] = max([d.rows for d in q.hidden], default=4)
    return ctx
