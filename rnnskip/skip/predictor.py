"""Float skip predictors: what they compute, how they are trained, how they are stored.

Input of every predictor: the float feature vector ``f = [v_t, h_{t-1}]`` --
``v_t`` the vector entering the first RNN layer (embedding row / input Dense
output / raw features, ``in_dim`` wide) and ``h_{t-1}`` every RNN layer's hidden
state, concatenated (``units[l]`` wide each). Output: a score; the step is
skipped when ``score > threshold``.

* ``mlp`` / ``logistic``: ``score`` = the logit of "skip" from Dense layers
  (ReLU between, none for logistic regression). Feature standardisation used
  in training is folded into the first layer, so the stored layers act on raw
  features.
* ``tree`` / ``forest``: ``score`` = mean over trees of the leaf's P(skip);
  a node sends ``f[feature] <= threshold`` left.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from ..errors import RnnskipError

TYPES = ("mlp", "logistic", "tree", "forest")
#: default predictor size: at most this fraction of the recurrent layers' parameters
DEFAULT_BUDGET = 0.03


@dataclass
class FloatPredictor:
    type: str
    in_dim: int
    units: List[int]
    layers: List[tuple] = field(default_factory=list)   # [(W [in, out], b [out])], relu between
    act_max: List[float] = field(default_factory=list)  # max relu output per hidden layer (training features)
    trees: List[dict] = field(default_factory=list)     # feature, threshold, left, right, value (P(skip))
    threshold: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.in_dim + sum(self.units))

    @property
    def is_tree(self) -> bool:
        return self.type in ("tree", "forest")

    # ---- evaluation ----------------------------------------------------------
    def score(self, F: np.ndarray) -> np.ndarray:
        F = np.asarray(F, np.float64)
        if self.is_tree:
            return np.mean([tree_leaf_values(t, F) for t in self.trees], axis=0)
        y = F
        for i, (W, b) in enumerate(self.layers):
            y = y @ W + b
            if i < len(self.layers) - 1:
                y = np.maximum(y, 0.0)
        return y[:, 0]

    def skip(self, F: np.ndarray, threshold: Optional[float] = None) -> np.ndarray:
        return self.score(F) > (self.threshold if threshold is None else threshold)

    # ---- size ----------------------------------------------------------------
    def params(self) -> int:
        """Weights + biases; trees: 2 per split (feature, threshold) + 1 per leaf."""
        if self.is_tree:
            n = 0
            for t in self.trees:
                leaves = int((t["left"] < 0).sum())
                n += 2 * (len(t["left"]) - leaves) + leaves
            return n
        return int(sum(W.size + b.size for W, b in self.layers))

    def macs(self) -> int:
        """Multiply-accumulates per evaluated step (trees: 0, they compare)."""
        return 0 if self.is_tree else int(sum(W.size for W, _ in self.layers))

    def hidden(self) -> List[int]:
        return [int(W.shape[1]) for W, _ in self.layers[:-1]]

    def describe(self) -> str:
        if self.type == "mlp":
            return f"MLP {self.dim}->" + "->".join(map(str, self.hidden())) + "->1"
        if self.type == "logistic":
            return f"logistic regression on {self.dim} features"
        leaves = [int((t['left'] < 0).sum()) for t in self.trees]
        if self.type == "tree":
            return f"decision tree, {leaves[0]} leaves, depth {tree_depth(self.trees[0])}"
        return f"random forest, {len(self.trees)} trees, {sum(leaves)} leaves"

    # ---- storage ---------------------------------------------------------------
    def arrays(self) -> dict:
        a = {"act_max": np.asarray(self.act_max, np.float64)}
        for i, (W, b) in enumerate(self.layers):
            a[f"W{i}"], a[f"b{i}"] = np.asarray(W, np.float64), np.asarray(b, np.float64)
        for k, t in enumerate(self.trees):
            for key in ("feature", "threshold", "left", "right", "value"):
                a[f"t{k}_{key}"] = np.asarray(t[key])
        return a

    @classmethod
    def from_arrays(cls, meta: dict, a) -> "FloatPredictor":
        p = cls(type=meta["type"], in_dim=int(meta["in_dim"]), units=[int(u) for u in meta["units"]],
                threshold=float(meta["threshold"]))
        p.act_max = [float(v) for v in a["act_max"]]
        i = 0
        while f"W{i}" in a:
            p.layers.append((np.asarray(a[f"W{i}"], np.float64), np.asarray(a[f"b{i}"], np.float64)))
            i += 1
        k = 0
        while f"t{k}_feature" in a:
            p.trees.append({key: np.asarray(a[f"t{k}_{key}"]) for key in
                            ("feature", "threshold", "left", "right", "value")})
            k += 1
        if (p.is_tree and not p.trees) or (not p.is_tree and not p.layers):
            raise RnnskipError("predictor weights are missing from the predictor folder; train it again")
        return p


# ---- trees ------------------------------------------------------------------

def tree_leaf_values(t: dict, F: np.ndarray) -> np.ndarray:
    """Leaf value reached by every row of ``F`` (vectorised descent)."""
    node = np.zeros(len(F), np.int64)
    left, right, feat, thr = t["left"], t["right"], t["feature"], t["threshold"]
    while True:
        inner = left[node] >= 0
        if not inner.any():
            break
        idx = np.nonzero(inner)[0]
        n = node[idx]
        go_left = F[idx, feat[n]] <= thr[n]
        node[idx] = np.where(go_left, left[n], right[n])
    return np.asarray(t["value"], np.float64)[node]


def tree_depth(t: dict) -> int:
    depth = {0: 0}
    best = 0
    for n in range(len(t["left"])):
        d = depth.get(n, 0)
        best = max(best, d)
        if t["left"][n] >= 0:
            depth[int(t["left"][n])] = d + 1
            depth[int(t["right"][n])] = d + 1
    return best


def _sk_tree(est) -> dict:
    """scikit-learn tree -> arrays (leaf value = P(class 1 = skip))."""
    tr = est.tree_
    v = tr.value[:, 0, :]
    p = v[:, 1] / np.maximum(v.sum(axis=1), 1e-12) if v.shape[1] > 1 else np.zeros(len(v))
    left = tr.children_left.astype(np.int32)
    return {"feature": np.where(left >= 0, tr.feature, 0).astype(np.int32),
            "threshold": np.where(left >= 0, tr.threshold, 0.0).astype(np.float64),
            "left": left, "right": tr.children_right.astype(np.int32), "value": p.astype(np.float64)}


# ---- sizes -----------------------------------------------------------------

def rnn_params(ir) -> int:
    """Parameters of the layers that run at every step (kernel, recurrent kernel, bias): the recurrent layers and
    any per-step Dense layers of the stack, all of which a skipped step does not run; the size a predictor's
    ``params_ratio`` is measured against (embedding, front end and head excluded)."""
    return int(sum(np.size(l.kernel) + np.size(l.recurrent_kernel) + np.size(l.bias) for l in ir.rnn_layers))


def default_size(ptype: str, dim: int, budget_params: int) -> dict:
    """Largest predictor of ``ptype`` within ``budget_params``."""
    if ptype == "mlp":
        best = None
        for h in range(1, 11):  # the paper's tiny MLP: two hidden layers of up to 10
            if dim * h + h + h * h + h + h + 1 <= budget_params:
                best = h
        if best is None:
            raise RnnskipError(f"no MLP predictor fits {budget_params} parameters ({dim} inputs); "
                               f"choose a logistic or tree predictor (--type; rnnskip-convert: --predictor-type), or "
                               f"train one with a larger --size-ratio in 'rnnskip train-predictor'")
        return {"hidden": [best, best]}
    if ptype == "logistic":
        if dim + 1 > budget_params:
            raise RnnskipError(f"logistic regression on {dim} features needs {dim + 1} parameters, more than "
                               f"the budget of {budget_params}; raise --size-ratio ('rnnskip train-predictor')")
        return {}
    # a tree of L leaves holds 3 L - 2 parameters (a feature and a threshold per split, a value per leaf);
    # at least 2 leaves, within the budget (a floor above it gave predictors past --size-ratio)
    n = 1 if ptype == "tree" else 8
    leaves = min(512 if n == 1 else 256, (budget_params // n + 2) // 3)
    if leaves < 2:
        what = "a decision tree" if n == 1 else f"a forest of {n} trees"
        raise RnnskipError(f"{what} needs at least {4 * n} parameters (2 leaves{' each' if n > 1 else ''}), more "
                           f"than the budget of {budget_params}; choose a logistic predictor (--type; "
                           f"rnnskip-convert: --predictor-type), or raise --size-ratio ('rnnskip train-predictor')")
    return {"leaves": int(leaves), "trees": n}


# ---- training ----------------------------------------------------------------

def _balanced_weights(y: np.ndarray) -> np.ndarray:
    n1 = max(int(y.sum()), 1)
    n0 = max(int(len(y) - y.sum()), 1)
    return np.where(y > 0, len(y) / (2.0 * n1), len(y) / (2.0 * n0))


def fit(ptype: str, F: np.ndarray, y: np.ndarray, in_dim: int, units: List[int], size: dict,
        seed: int = 0, verbose: int = 0) -> FloatPredictor:
    """Train a predictor of ``ptype`` on features ``F [M, D]`` and labels ``y`` (1 = skip), class-balanced."""
    if ptype not in TYPES:
        raise RnnskipError(f"unknown predictor type '{ptype}'; choose one of {', '.join(TYPES)}")
    F = np.asarray(F, np.float32)
    y = np.asarray(y, np.int64)
    p = FloatPredictor(type=ptype, in_dim=in_dim, units=list(units))
    if ptype in ("tree", "forest"):
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.tree import DecisionTreeClassifier
        min_leaf = max(5, len(y) // 5000)
        if ptype == "tree":
            est = DecisionTreeClassifier(max_leaf_nodes=size["leaves"], min_samples_leaf=min_leaf,
                                         class_weight="balanced", random_state=seed).fit(F, y)
            p.trees = [_sk_tree(est)]
        else:
            est = RandomForestClassifier(n_estimators=size["trees"], max_leaf_nodes=size["leaves"],
                                         min_samples_leaf=min_leaf, class_weight="balanced",
                                         max_features=0.3, n_jobs=1, random_state=seed).fit(F, y)
            p.trees = [_sk_tree(e) for e in est.estimators_]
        return p
    mu = F.mean(axis=0).astype(np.float64)
    sd = F.std(axis=0).astype(np.float64)
    sd = np.where(sd > 1e-6, sd, 1.0)
    Z = ((F - mu) / sd).astype(np.float32)
    hidden = list(size.get("hidden", [])) if ptype == "mlp" else []
    layers = _fit_keras(Z, y, hidden, seed, verbose)
    W0, b0 = layers[0]
    layers[0] = (W0 / sd[:, None], b0 - (mu / sd) @ W0)   # fold the standardisation
    p.layers = layers
    a = F.astype(np.float64)
    for W, b in layers[:-1]:
        a = np.maximum(a @ W + b, 0.0)
        p.act_max.append(float(a.max()) if a.size else 0.0)
    return p


def _fit_keras(Z, y, hidden, seed, verbose):
    from ..tfquiet import import_keras, quiet_stderr
    _, tfk = import_keras()
    with quiet_stderr():   # TF's C++ chatter at the first ops (one line per error on stderr)
        return _fit_keras_quiet(tfk, Z, y, hidden, seed, verbose)


def _fit_keras_quiet(tfk, Z, y, hidden, seed, verbose):
    tfk.utils.set_random_seed(seed)
    L = tfk.layers
    model = tfk.Sequential([L.InputLayer(input_shape=(Z.shape[1],))]
                           + [L.Dense(h, activation="relu") for h in hidden] + [L.Dense(1)])
    model.compile(optimizer=tfk.optimizers.Adam(3e-3),
                  loss=tfk.losses.BinaryCrossentropy(from_logits=True), weighted_metrics=[])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_val = max(1, len(y) // 10)
    vi, ti = perm[:n_val], perm[n_val:]
    w = _balanced_weights(y).astype(np.float32)
    stop = tfk.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    epochs = 30 if len(y) < 200_000 else 15
    model.fit(Z[ti], y[ti].astype(np.float32), sample_weight=w[ti], batch_size=512, epochs=epochs,
              validation_data=(Z[vi], y[vi].astype(np.float32), w[vi]), callbacks=[stop],
              verbose=verbose, shuffle=True)
    ws = model.get_weights()
    return [(np.asarray(ws[i], np.float64), np.asarray(ws[i + 1], np.float64)) for i in range(0, len(ws), 2)]
