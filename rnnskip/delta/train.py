"""Delta-aware fine-tuning -- this *retrains* the network.

The paper's recipe (Neil et al. 2017, section 4), in tf_keras:

* the delta forward pass inside training: every recurrent layer keeps its last
  transmitted input x̂ and hidden state ĥ; an element transmits when it moved by
  more than its threshold; the cell sees the pre-activations of ``(x̂, ĥ)`` (= the
  running sums M of the delta network) and updates its true state (the cell kind's
  own float arithmetic, ``rnnskip/cells/``);
* straight-through gradient: the forward pass uses x̂ / ĥ, the backward pass treats
  them as x / h;
* activations rounded to the deployment grid (the int8 steps of the quantised
  model's input and hidden scales), also straight-through;
* Gaussian noise on the thresholds during training (std ``noise`` x theta);
* an L1 penalty on the transmitted hidden deltas (``l1`` x mean over sequences of
  sum |delta h| per executed step);
* with a cell threshold (``theta_m``, pre-activation steps of 2^-12), the cell runs only
  for the units one of whose pre-activations moved by that much since their last
  evaluation; the others keep their state (the gradient flows through the kept state);
* the steps the device runs: where the data's lengths end a row before steps the model's own
  mask would run (no ``Masking``), the training model masks them too, so the loss, the L1
  penalty and the density count only the steps the device runs.

The result is written as a *normal* Keras model (Embedding/Masking, Dense, the recurrent
layers with their activations and options, Dense head, rebuilt from the IR) with the
fine-tuned weights, so rnnskip-convert and any Keras code read it as usual, and OUT.delta.json
with the thresholds it was trained at (deploy at them, or re-tune them with delta-tune).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..cells import cell_of
from ..converter import support
from ..datasets import file_sha256
from ..errors import RnnskipError
from ..outputs import scored_steps
from ..quant.grid import grid_of
from .spec import DeltaSpec, check_supported


def _keras():
    from ..tfquiet import import_keras
    try:
        return import_keras()
    except ImportError:
        raise RnnskipError("delta-train needs TensorFlow and tf_keras (pip install 'rnnskip[train]')") from None


#: rnnskip's canonical activation names as TensorFlow functions (the delta forward pass in training)
def _tf_activation(tf, name):
    if name is None:
        return None
    from ..converter.support import activation_kind, leaky_alpha
    if activation_kind(name) == "leaky_relu":
        return lambda x: tf.nn.leaky_relu(x, leaky_alpha(name))
    fns = {"linear": lambda x: x, "relu": tf.nn.relu, "relu6": tf.nn.relu6, "tanh": tf.tanh, "sigmoid": tf.sigmoid,
           "softsign": tf.nn.softsign,
           "hard_sigmoid": lambda x: tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0),
           "hard_sigmoid_k3": lambda x: tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0)}
    return fns[name]


def _cell_class():
    tf, keras = _keras()
    from ..cells.base import tf_ops
    ops = tf_ops()

    def fake_quant(v, s):
        q = tf.clip_by_value(tf.round(v / s), -128.0, 127.0) * s
        return v + tf.stop_gradient(q - v)                      # straight-through

    class DeltaRNNCell(keras.layers.Layer):
        """One delta step of a recurrent layer, the cell kind's own float arithmetic
        (``rnnskip/cells/``) on x̂ / ĥ; states [cell state..., x̂, ĥ, sum|Δh|,
        transmitted x, transmitted h, steps, pre-activations at each unit's last
        evaluation, unit evaluations]."""

        def __init__(self, kind, units, in_dim, theta_x, theta_h, sx, sh, noise=0.25, activation="tanh",
                     recurrent_activation="sigmoid", bias_shape=None, theta_m=None, **kw):
            super().__init__(**kw)
            self.kind, self.units, self.in_dim = kind, int(units), int(in_dim)
            self.cell = cell_of(kind)
            self.theta_x, self.theta_h = float(theta_x), float(theta_h)   # real units
            self.theta_m = None if theta_m is None else float(theta_m)
            self.sx, self.sh, self.noise = float(sx), float(sh), float(noise)
            self.activation, self.recurrent_activation = activation, recurrent_activation
            self.bias_shape = tuple(bias_shape) if bias_shape is not None else (self.cell.gates * self.units,)
            self.acts = (_tf_activation(tf, activation), _tf_activation(tf, recurrent_activation))
            U = self.units
            self.n_state = len(self.cell.float_state)
            zw = {"kernel": np.zeros((self.in_dim, self.cell.gates * U)),
                  "recurrent_kernel": np.zeros((U, self.cell.gates * U)), "bias": np.zeros(self.bias_shape)}
            from ..cells.base import NUMPY_OPS
            self.pre_width = int(self.cell.float_pre(NUMPY_OPS, zw, np.zeros((1, self.in_dim)),
                                                     np.zeros((1, U))).shape[-1])
            self.state_size = [U] * self.n_state + [self.in_dim, U, 1, 1, 1, 1, self.pre_width, 1]
            self.output_size = U

        def build(self, input_shape):
            G, U = self.cell.gates, self.units
            self.kernel = self.add_weight(name="kernel", shape=(self.in_dim, G * U))
            self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=self.cell.recurrent_kernel_shape(U))
            self.bias = self.add_weight(name="bias", shape=self.bias_shape)
            self.built = True

        def _theta(self, t, training):
            if not training or self.noise <= 0 or t <= 0:
                return t
            return tf.maximum(t * (1.0 + self.noise * tf.random.normal([])), 0.0)

        def call(self, x, states, training=None):
            cell_state = tuple(states[:self.n_state])
            xh, hh, l1, nx, nh, ns, Ml, nc = states[self.n_state:]
            h = cell_state[0]
            xq = fake_quant(x, self.sx)
            hq = fake_quant(h, self.sh)
            dx, dh = xq - xh, hq - hh
            # This step's threshold noise after the previous step's (its states come from those draws):
            # each draw is one stateful op run once per step of the RNN's while loop, which would otherwise
            # run its steps' draws in thread-timing order, a different noise sequence in every process.
            with tf.control_dependencies([xh, hh, Ml]):
                tx_, th_ = self._theta(self.theta_x, training), self._theta(self.theta_h, training)
                tm_ = None if self.theta_m is None else self._theta(self.theta_m, training)
            mx = tf.abs(dx) > tx_
            mh = tf.abs(dh) > th_
            xh_new = tf.stop_gradient(tf.where(mx, xq, xh))
            hh_new = tf.stop_gradient(tf.where(mh, hq, hh))
            xs = xq + tf.stop_gradient(xh_new - xq)                 # forward x̂, backward x
            hs = hq + tf.stop_gradient(hh_new - hq)
            l1 = l1 + tf.reduce_sum(tf.abs(tf.where(mh, dh, 0.0)), axis=1, keepdims=True)
            nx = nx + tf.reduce_sum(tf.cast(mx, x.dtype), axis=1, keepdims=True)
            nh = nh + tf.reduce_sum(tf.cast(mh, x.dtype), axis=1, keepdims=True)
            w = {"kernel": self.kernel, "recurrent_kernel": self.recurrent_kernel, "bias": self.bias}
            M = self.cell.float_pre(ops, w, xs, hs)
            new = self.cell.float_cell(self.acts, cell_state, M)
            U = self.units
            if self.theta_m is None:
                moved = tf.ones_like(new[0], dtype=tf.bool)
            else:
                far = tf.abs(M - Ml) >= tm_
                moved = tf.reduce_any(tf.reshape(far, [-1, self.pre_width // U, U]), axis=1) | (ns < 0.5)
                new = tuple(tf.where(moved, a, b) for a, b in zip(new, cell_state))
            Ml = tf.stop_gradient(tf.where(tf.tile(moved, [1, self.pre_width // U]), M, Ml))
            nc = nc + tf.reduce_sum(tf.cast(moved, x.dtype), axis=1, keepdims=True)
            ns = ns + 1.0
            return new[0], list(new) + [xh_new, hh_new, l1, nx, nh, ns, Ml, nc]

        def get_config(self):
            return dict(super().get_config(), kind=self.kind, units=self.units, in_dim=self.in_dim,
                        theta_x=self.theta_x, theta_h=self.theta_h, theta_m=self.theta_m, sx=self.sx, sh=self.sh,
                        noise=self.noise,
                        activation=self.activation, recurrent_activation=self.recurrent_activation,
                        bias_shape=list(self.bias_shape))

    return DeltaRNNCell


def input_normalisation(ir):
    """(mean, scale) of the Keras ``Normalization`` the rebuilt model starts with when ``ir`` normalises its input
    (``FeatureInput.center``): it computes ``(x - mean) * scale``, what the device quantises (``norm_scale`` into a
    recurrent first layer, else 1), and rnnskip reads it back as the same centre and scale. None: no centring."""
    inp = ir.input
    if ir.is_token_model or inp.center is None:
        return None
    c = np.asarray(inp.center, np.float64)
    # (norm_scale is never 0: support.input_norm_scale gives a feature scaled by 0 a scale of 1)
    return c, np.ones_like(c) if inp.norm_scale is None else np.asarray(inp.norm_scale, np.float64)


def on_normalised_input(ir):
    """``ir``'s first layer (the per-step Dense, else the first recurrent layer) rewritten to read the normalised
    input z = (x - mean) * scale rather than x: the weights the rebuilt model trains from."""
    import copy
    norm = input_normalisation(ir)
    d = None if ir.is_token_model else ir.input.dense
    first = copy.deepcopy(d if d is not None else ir.rnn_layers[0])
    if norm is None:
        return first
    c, s = norm
    if d is not None:   # x = z / scale + mean
        k = np.asarray(first.kernel, np.float64)
        first.bias = np.asarray(first.bias, np.float64) + c @ k
        first.kernel = k / s[:, None]
    else:
        cell_of(first.kind).fold_input_affine(first, 1.0 / s, c)
    return first


def _normalisation_layer(keras, ir):
    """The rebuilt model's input Normalization (tf_keras: (x - mean) / max(sqrt(variance), 1e-7)), or None."""
    norm = input_normalisation(ir)
    if norm is None:
        return None
    c, s = norm
    return keras.layers.Normalization(mean=c.astype(np.float32), variance=(1.0 / s ** 2).astype(np.float32),
                                      name="input_normalization")


def build_delta_model(ir, qm, theta_x, theta_h, l1: float, noise: float = 0.25, theta_m=None,
                      steps_input: bool = False):
    """tf_keras model of ``ir`` with delta cells (weights copied from the IR); thresholds in int8
    steps, cell thresholds (``theta_m``, None: none) in pre-activation steps of 2^-12. ``steps_input``: the model
    takes a second input, bool ``[N, T]``, the steps each recurrent layer runs (its mask, in place of the model's
    own: :func:`run_steps`)."""
    theta_m = theta_m or [None] * len(ir.rnn_layers)
    tf, keras = _keras()
    Cell = _cell_class()
    from ..converter.ir import EmbeddingInput
    first = on_normalised_input(ir)   # the per-step Dense, else the first recurrent layer, on the normalised input
    steps = ir.pool_steps or None   # a Flatten over time needs the fixed number of steps
    if isinstance(ir.input, EmbeddingInput):
        inp = keras.Input(shape=(steps,), dtype="int32")
        emb = keras.layers.Embedding(ir.input.vocab, ir.input.dim, mask_zero=ir.input.mask_zero, name="embedding")
        y = emb(inp)
        pre = [(emb, [np.asarray(ir.input.table)])]
    else:
        inp = keras.Input(shape=(steps, ir.input.features))
        y = inp
        pre = []
        if ir.input.mask_value is not None:
            y = keras.layers.Masking(mask_value=ir.input.mask_value)(y)
        nl = _normalisation_layer(keras, ir)
        if nl is not None:   # the device's centring, as a layer (its statistics are config, not weights)
            y = nl(y)
        if ir.input.dense is not None:
            d = first
            dl = keras.layers.Dense(d.out_dim, activation=d.activation, name="in_dense")
            y = dl(y)
            pre.append((dl, [d.kernel, d.bias]))
    steps = keras.Input(shape=(None,), dtype="bool", name="steps") if steps_input else None
    penalties, cells = [], []
    for i, (l, ql) in enumerate(zip(ir.rnn_layers, qm.layers)):
        if i == 0 and (ir.is_token_model or ir.input.dense is None):
            l = first
        cell = Cell(l.kind, l.units, l.input_dim, theta_x[i] * ql.x_scale, theta_h[i] * ql.h_scale,
                    ql.x_scale, ql.h_scale, noise, activation=l.activation,
                    recurrent_activation=l.recurrent_activation, bias_shape=np.shape(l.bias),
                    theta_m=None if theta_m[i] is None else theta_m[i] / 4096.0, name=f"delta_{l.kind}_{i}")
        # pooling over time and a per-step head read every step's output
        last = i == len(ir.rnn_layers) - 1 and not ir.pool and not ir.per_step
        rnn = keras.layers.RNN(cell, return_sequences=not last, return_state=True, name=f"rnn_{i}")
        res = rnn(y) if steps is None else rnn(y, mask=steps)
        y, st = res[0], res[1:]
        l1_, nx, nh, ns, _, nc = st[-6:]
        penalties.append(tf.reduce_mean(l1_ / tf.maximum(ns, 1.0)))
        cells.append((cell, l, nx, nh, ns, nc))
    if ir.pool:
        y = _pool(keras, ir, y)
    head = []
    for j, d in enumerate(ir.head):
        if support.is_identity_dense(d):   # an Activation in the model: stays one, nothing to train
            y = keras.layers.Activation(d.activation, name=f"head_{j}")(y)
            continue
        if d.norm_epsilon is not None:   # its LayerNormalization (gamma and beta are in the Dense)
            y = keras.layers.LayerNormalization(epsilon=d.norm_epsilon, center=False, scale=False,
                                                name=f"head_{j}_norm")(y)
        dl = keras.layers.Dense(d.out_dim, activation=d.activation, name=f"head_{j}")
        y = dl(y)
        head.append((dl, [d.kernel, d.bias]))
    model = keras.Model(inp if steps is None else [inp, steps], y)
    for layer, w in pre + head:
        layer.set_weights([np.asarray(a, np.float32) for a in w])
    for cell, l, *_ in cells:
        cell.set_weights([np.asarray(l.kernel, np.float32), np.asarray(l.recurrent_kernel, np.float32),
                          np.asarray(l.bias, np.float32)])
    if l1 > 0:
        model.add_loss(l1 * tf.add_n(penalties))
    # transmitted fraction, for logging
    tx = tf.add_n([tf.reduce_mean(nx + nh) for _, _, nx, nh, _, _ in cells])
    tot = tf.add_n([tf.reduce_mean(ns) * (l.input_dim + (l.units if cell_of(l.kind).recurrent else 0))
                    for _, l, _, _, ns, _ in cells])
    model.add_metric(tx / tot, name="density")
    ev = tf.add_n([tf.reduce_mean(nc) for *_, nc in cells])
    units = tf.add_n([tf.reduce_mean(ns) * l.units for _, l, _, _, ns, _ in cells])
    model.add_metric(ev / units, name="cells")
    return model, cells, pre, head


def _pool(keras, ir, y):
    """The model's pooling over time of ``y`` as the Keras layers it came from (several kinds: concatenated)."""
    cls = {"avg": keras.layers.GlobalAveragePooling1D, "max": keras.layers.GlobalMaxPooling1D,
           "flatten": keras.layers.Flatten}
    kinds = ir.pool.split(",")
    if len(kinds) == 1:
        return cls[kinds[0]](name=ir.pool_name or None)(y)
    return keras.layers.Concatenate(name=ir.pool_name or None)([cls[k]()(y) for k in kinds])


def export_keras(ir, cells, pre, head, path) -> None:
    """Write a normal tf_keras model (Keras layers, no custom cells) with the trained weights."""
    tf, keras = _keras()
    from ..converter.ir import EmbeddingInput
    # functional, so a Concatenate of poolings fits too; the layers with weights come in the order below
    steps = ir.pool_steps or None   # a Flatten over time needs the fixed number of steps
    if isinstance(ir.input, EmbeddingInput):
        inp = keras.Input(shape=(steps,), dtype="int32")
        y = keras.layers.Embedding(ir.input.vocab, ir.input.dim, mask_zero=ir.input.mask_zero)(inp)
    else:
        inp = y = keras.Input(shape=(steps, ir.input.features))
        if ir.input.mask_value is not None:
            y = keras.layers.Masking(mask_value=ir.input.mask_value)(y)
        nl = _normalisation_layer(keras, ir)
        if nl is not None:
            y = nl(y)
        if ir.input.dense is not None:
            y = keras.layers.Dense(ir.input.dense.out_dim, activation=ir.input.dense.activation)(y)
    for i, l in enumerate(ir.rnn_layers):
        y = cell_of(l.kind).to_keras(keras, l, return_sequences=i < len(ir.rnn_layers) - 1 or bool(ir.pool)
                                     or bool(ir.per_step))(y)
    if ir.pool:
        y = _pool(keras, ir, y)
    for d in ir.head:
        if d.norm_epsilon is not None and not support.is_identity_dense(d):   # no weights: gamma, beta in the Dense
            y = keras.layers.LayerNormalization(epsilon=d.norm_epsilon, center=False, scale=False)(y)
        y = (keras.layers.Activation(d.activation) if support.is_identity_dense(d) else
             keras.layers.Dense(d.out_dim, activation=d.activation))(y)
    m = keras.Model(inp, y, name=ir.name)
    ws = [layer.get_weights() for layer, _ in pre]
    ws += [[w for w in cell.get_weights() if w.size] for cell, *_ in cells]   # a per-step Dense: no recurrent kernel
    ws += [layer.get_weights() for layer, _ in head]
    params = [l for l in m.layers if l.weights]
    assert len(params) == len(ws), (len(params), len(ws))
    for layer, w in zip(params, ws):
        layer.set_weights(w)
    import warnings
    with warnings.catch_warnings():   # .h5 on purpose: the format every Keras version and rnnskip read
        warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
        m.save(str(path))


def run_steps(qm, ds):
    """The steps of ``ds`` the device runs (bool ``[N, T]``: before each row's length, kept by the model's own mask)
    and whether the lengths end a row before a step that mask keeps (Keras would run it: the training model then
    takes these steps as its mask)."""
    from ..quant.golden import GoldenModel
    run = scored_steps(qm, ds)
    return run, bool((GoldenModel(qm, methods=[]).valid_steps(ds.x) & ~run).any())


def _weights(scored):
    """Per-step sample weights from the scored steps (None: one class per sequence, no weights)."""
    return None if scored is None else np.asarray(scored, np.float32)


def _is_thresholds_file(path) -> bool:
    try:
        DeltaSpec.load(path)
        return True
    except RnnskipError:
        return False


def classifier_loss(keras, ir):
    """The classifier's own loss: a linear head holds logits (trained with from_logits), a softmax or
    sigmoid head probabilities."""
    if ir.output_dim > 1:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=ir.output_activation == "linear")
    return keras.losses.BinaryCrossentropy(from_logits=ir.output_activation == "linear")


def classifier_metric(keras, ir):
    """The validation accuracy delta-train stops on, as rnnskip scores the classifier: Keras' "accuracy" would take
    one logit's class at 0.5, rnnskip at 0 (outputs.float_threshold)."""
    if ir.output_dim == 1 and ir.output_activation == "linear":
        return keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")
    return "accuracy"


def _dense_accuracy(ir, qm, va) -> float:
    """The float model's accuracy on ``va`` without thresholds, scored as the conversion scores it."""
    from ..outputs import score_like_float
    from ..reference import FloatModel
    probs = FloatModel(ir).predict(va.x, va.lengths)
    return score_like_float(qm, va, probs, probs)


def run_delta_train(model, train, val, out, theta_x=None, theta_h=None, delta_path=None, epochs=40, theta_m=None,
                    l1=0.02, lr=5e-4, calib=None, batch_size=32, noise=0.25, patience=8, seed=0,
                    log=print, verbose=0) -> dict:
    """``rnnskip delta-train``: fine-tune MODEL with the delta forward pass, write OUT (.h5). A classifier trains on
    its own loss and stops on the validation accuracy; a regression model (float targets) on the mean squared error
    and the validation RMSE (``info``'s ``val_rmse`` and ``val_rmse_before`` then stand for the accuracies)."""
    from .. import pipeline
    out = Path(out)
    l1 = 0.02 if l1 is None else float(l1)
    ok = math.isfinite   # NaN passes every comparison, so each check asks for the good case
    for good, what in ((ok(l1) and l1 >= 0, f"--l1 {l1} must be a number >= 0"),
                       (ok(noise) and noise >= 0, f"--noise {noise} must be a number >= 0"),
                       (ok(lr) and lr > 0, f"--lr {lr} must be a number > 0"),
                       (epochs >= 1, f"--epochs {epochs} must be >= 1"),
                       (patience >= 0, f"--patience {patience} must be >= 0")):
        if not good:   # before any work
            raise RnnskipError(f"delta-train: {what}")
    from .spec import checked_theta, checked_theta_cell
    for opt, v, check in (("--theta-x", theta_x, checked_theta), ("--theta-h", theta_h, checked_theta),
                          ("--theta-m", theta_m, checked_theta_cell)):
        for one in (v if isinstance(v, (list, tuple)) else [] if v is None else [v]):
            check(one, f"delta-train {opt}")   # the option at fault in the line, before any work
    if out.suffix.lower() != ".h5":
        raise RnnskipError(f"--out {out}: delta-train writes a Keras .h5 file")
    from ..outdir import check_writable
    check_writable(out)
    if out.exists() and Path(model).exists() and out.resolve() == Path(model).resolve():
        raise RnnskipError(f"--out {out} is the model being fine-tuned; write the delta-trained model to a new file "
                           f"(the original stays the run-time baseline)")
    thresholds = out.with_suffix(".delta.json")
    check_writable(thresholds)
    if thresholds.is_dir():
        raise RnnskipError(f"{thresholds} is a folder, where the thresholds of --out {out} go; choose another --out")
    if out.is_dir():
        raise RnnskipError(f"--out {out} is a folder; give the .h5 file to write")
    if (out.exists() or thresholds.exists()) and not (out.is_file() and _is_thresholds_file(thresholds)):
        # replaced only when they are an earlier delta-train's pair
        raise RnnskipError(f"--out {out} (or {thresholds.name} next to it) exists and is not an earlier "
                           f"delta-train output; it would be overwritten: choose a new file name or remove it "
                           f"yourself")
    ir = pipeline.import_model(model)
    check_supported(ir.rnn_layers)
    from ..outputs import check_class_outputs, is_regression
    if ir.output_activation == "sigmoid" and ir.output_dim > 1:
        raise RnnskipError(f"delta-train trains a softmax, logits or one-sigmoid classifier; this model ends in "
                           f"{ir.output_dim} independent sigmoid outputs (multi-label), which its loss does not fit")
    if ir.output_activation == "log_softmax":
        raise RnnskipError(f"layer '{ir.head[-1].name}' ends in log_softmax, which the tf_keras model delta-train "
                           f"writes cannot express; use delta-tune (no retraining), or export the model with softmax "
                           f"or logits (the same classes) to fine-tune it")
    if ir.bidirectional is not None:
        raise RnnskipError(f"layer '{ir.rnn_layers[ir.bidirectional].name}' is Bidirectional, which the model "
                           "delta-train rebuilds does not have; use delta thresholds without retraining on this model")
    normed = next((l for l in ir.rnn_layers if l.input_norm is not None), None)
    if normed is not None:
        raise RnnskipError(f"layer '{normed.name}' layer-normalises its input (a LayerNormalization between recurrent "
                           "layers), which the model delta-train rebuilds does not have; use delta-tune (no "
                           "retraining) on this model")
    if not ir.is_token_model and ir.input.front:
        raise RnnskipError(f"layer '{ir.input.front[0].name}' starts a Conv1D front end, which the model delta-train "
                           "rebuilds does not have; use delta-tune (no retraining) on this model")
    if not ir.is_token_model and ir.input.center is not None and ir.input.mask_value is not None:
        raise RnnskipError("the model masks (Masking) and normalises its input: the tf_keras model delta-train writes "
                           "would drop the mask at its Normalization layer (tf_keras passes no mask through it); use "
                           "delta-tune (no retraining) on this model")
    k3 = [l.name for l in ir.rnn_layers if "hard_sigmoid_k3" in (l.activation, l.recurrent_activation)]
    if k3:
        raise RnnskipError(f"layer '{k3[0]}' uses Keras 3's hard_sigmoid (clip(x/6 + 0.5)), which the tf_keras model "
                           f"delta-train writes cannot express; fine-tune it in Keras 3, or use delta-tune (no "
                           f"retraining)")
    from ..cli_support import note
    tr = pipeline.load_data(train, ir, "--train", note=note)
    va = pipeline.load_data(val, ir, "--val", note=note, loaded=[train])
    # float targets: a regression model, trained on the mean squared error and stopped on the validation RMSE;
    # else a classifier, on its own loss and the validation accuracy
    regression = is_regression(tr.y)
    if regression != is_regression(va.y):
        raise RnnskipError(f"--train {train} holds {'regression targets (float y)' if regression else 'class labels'} "
                           f"but --val {val} {'class labels' if regression else 'regression targets (float y)'}; "
                           f"give both the same kind")
    if regression and ir.output_activation in support.CLASSIFIER_ACTIVATIONS:
        raise RnnskipError(f"--train {train} holds regression targets (float y) but the model ends in a "
                           f"{ir.output_activation} (a classifier): give integer class labels")
    if not regression:
        check_class_outputs(ir, "delta-train", tr.y)
    L = len(ir.rnn_layers)
    if delta_path:
        s = DeltaSpec.load(delta_path)
        s.check_model(ir, where=f"--delta {delta_path}")
        tx, th, tm = list(s.theta_x), list(s.theta_h), list(s.theta_m)
    else:
        tx, th, tm = [8] * L, [8] * L, [None] * L
    if theta_x is not None:
        tx = list(theta_x) if isinstance(theta_x, (list, tuple)) else [theta_x] * L
    if theta_h is not None:
        th = list(theta_h) if isinstance(theta_h, (list, tuple)) else [theta_h] * L
    if theta_m is not None:
        tm = list(theta_m) if isinstance(theta_m, (list, tuple)) else [theta_m] * L
    checked = DeltaSpec(tx, th, theta_m=tm)          # one-line errors for negative / fractional values
    tx, th, tm = checked.theta_x, checked.theta_h, checked.theta_m
    cal = pipeline.load_data(calib, ir, "--calib", labels=False, note=note, loaded=[train, val]) if calib else tr
    qm, _ = pipeline.quantize_model(ir, cal, 1000, progress=False)   # the int8 grid the network is trained for
    if delta_path:
        from ..quant.grid import grid_mismatch
        mismatch = grid_mismatch(s.grid, qm)
        if mismatch:   # the same steps are other real thresholds on another grid
            tuned_on = s.tuning.get("calibration")
            note(f"warning: --delta {delta_path}: its thresholds are int8 steps of another grid ({mismatch}): pass "
                 f"the --calib it was made with{f' (--calib {tuned_on})' if tuned_on else ''}, or train at "
                 f"--theta-x/--theta-h chosen for this grid")
    tf, keras = _keras()
    keras.utils.set_random_seed(seed)
    (run_tr, cut_tr), (run_va, cut_va) = run_steps(qm, tr), run_steps(qm, va)
    cut = cut_tr or cut_va   # the lengths end rows early: the model runs only the steps the device runs
    m, cells, pre, head = build_delta_model(ir, qm, tx, th, l1, noise, theta_m=tm, steps_input=cut)
    x_tr, x_va = ([tr.x, run_tr], [va.x, run_va]) if cut else (tr.x, va.x)
    # per step: the loss and accuracy weigh the steps the device scores (before the row's length, kept by the
    # model's mask), as the float reference's outputs after the length are not the device's
    w_tr, w_va = (run_tr, run_va) if ir.per_step else (None, None)
    # a one-output per-step head gives [N, T, 1]: labels of that shape keep Keras' loss per step ([N, T] labels
    # would make it average over time and leave one loss per sequence, against [N, T] weights)
    y_tr, y_va = (tr.y[..., None], va.y[..., None]) if ir.per_step and ir.output_dim == 1 else (tr.y, va.y)
    # a regression model: the head's outputs (after its activation) against the targets, stopped on the lowest
    # validation RMSE (a metric of its own: the loss also holds the L1 penalty on the deltas)
    metric = keras.metrics.RootMeanSquaredError(name="rmse") if regression else classifier_metric(keras, ir)
    m.compile(optimizer=keras.optimizers.Adam(lr),
              loss=keras.losses.MeanSquaredError() if regression else classifier_loss(keras, ir),
              **({"weighted_metrics": [metric]} if ir.per_step else {"metrics": [metric]}))
    measure, key, pick = (("RMSE", "val_rmse", np.argmin) if regression else ("accuracy", "val_accuracy", np.argmax))
    from ..tfquiet import quiet_stderr
    with quiet_stderr():   # TF's C++ chatter at the first ops; Keras' progress goes to stdout
        ev0 = m.evaluate(x_va, y_va, sample_weight=_weights(w_va), verbose=0, batch_size=64, return_dict=True)
    acc0 = float(ev0[key[len("val_"):]])
    cell = f", cell {tm} (pre-activation steps)" if checked.cell_sparse else ""
    log(f"delta-train: {ir.name}, thresholds input {tx} hidden {th} (int8 steps){cell}, L1 {l1}, noise {noise}; "
        f"delta validation {measure} before fine-tuning {acc0:.4f}")
    t0 = time.time()

    def epoch_done(epoch, logs):   # one line per epoch: a long fine-tuning shows where it is
        logs = logs or {}
        log(f"epoch {epoch + 1}/{epochs}: loss {logs.get('loss', float('nan')):.4f}, validation {measure} "
            f"{logs.get(key, float('nan')):.4f}, training density {logs.get('density', float('nan')):.3f}, "
            f"{time.time() - t0:.0f} s")
    with quiet_stderr():
        hist = m.fit(x_tr, y_tr, sample_weight=_weights(w_tr), epochs=epochs, batch_size=batch_size,
                     validation_data=(x_va, y_va) if w_va is None else (x_va, y_va, _weights(w_va)),
                     verbose=verbose, callbacks=[keras.callbacks.EarlyStopping(
                         monitor=key, patience=patience, restore_best_weights=True,
                         mode="min" if regression else "max"),
                         keras.callbacks.LambdaCallback(on_epoch_end=epoch_done)])
    h = hist.history
    best = int(pick(h[key]))
    best_value = float(h[key][best])
    log(f"epochs {len(h['loss'])}, best {best + 1}: validation {measure} {best_value:.4f}, "
        f"training density {h.get('density', [float('nan')])[best]:.3f}, "
        f"cells {h.get('cells', [float('nan')])[best]:.3f}")
    bad = [w.name for w in m.weights if not np.all(np.isfinite(w.numpy()))]
    if bad:   # nothing written: a model of NaNs is no one's baseline
        raise RnnskipError(f"delta-train diverged: {len(bad)} weight arrays hold NaN or infinite values after "
                           f"training (first: {bad[0]}); nothing written: lower --lr (it was {lr:g})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, tmp_spec = out.with_name(f".{out.stem}.partial.h5"), thresholds.with_name(f".{thresholds.name}.partial")
    try:   # both files or neither
        export_keras(ir, cells, pre, head, tmp)
        # the thresholds it was trained for, as a ready delta.json for the new model
        spec = DeltaSpec(tx, th, theta_m=tm, tuning={
            "method": "delta-aware fine-tuning (delta-train) at these thresholds",
            f"validation_{'rmse' if regression else 'accuracy'}_float_delta": best_value,
            "calibration": str(calib) if calib else str(train), "seed": seed,
            # the rows that chose the epoch: delta-tune refuses to certify this model on them
            "early_stopping": {"data": str(val), "sha256": file_sha256(val), "sequences": len(va)}})
        out_ir = pipeline.import_model(tmp)
        # the grid rnnskip-convert gives the new weights on the same calibration data
        spec.grid = grid_of(pipeline.quantize_model(out_ir, cal, 1000, progress=False)[0])
        spec.save(tmp_spec, out_ir)
        tmp.replace(out)
        tmp_spec.replace(thresholds)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_spec.unlink(missing_ok=True)
    info = {"thresholds": {"input": tx, "hidden": th, "cell": tm}, "l1": l1, "noise": noise, "lr": lr,
            "epochs_run": len(h["loss"]), "best_epoch": best + 1,
            f"val_{'rmse' if regression else 'accuracy'}_before": float(acc0),
            f"val_{'rmse' if regression else 'accuracy'}": best_value,
            "train_density": float(h["density"][best]) if "density" in h else None,
            "train_cells": float(h["cells"][best]) if "cells" in h else None,
            "seed": seed}
    dense = None if regression or best_value > acc0 else _dense_accuracy(ir, qm, va)
    if dense is not None and best_value < dense:
        # written all the same (the user may want these weights), but not silently: a user converted one 25 points
        # below the dense model and read it as the fine-tuned result
        note(f"warning: delta-train: fine-tuning did not improve the delta validation accuracy ({acc0:.4f} before, "
             f"{best_value:.4f} at its best epoch {best + 1} of {len(h['loss'])}, dense model {dense:.4f}); try "
             f"another --lr (it was {lr:g}), more --epochs or smaller thresholds")
    budget = " --max-disagreement D --tolerance E" if regression else ""   # a regression model's one budget
    log(f"wrote {out} (a normal Keras model) and {thresholds} (the thresholds it was trained "
        f"for; 'rnnskip delta-tune {out} --baseline {model}{budget}' can choose others within a budget from {model})")
    return info
