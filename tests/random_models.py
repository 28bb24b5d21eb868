"""Random float IRs of every supported configuration, for golden-vs-C tests.

No Keras needed: weights are drawn directly, with ranges like trained models'.
"""
from __future__ import annotations

import numpy as np

from rnnskip.cells import cell_of
from rnnskip.converter.ir import DenseLayer, EmbeddingInput, FeatureInput, ModelIR, RNNLayer

# name -> (input kind, rnn kinds, reset_after, input dense, head sizes)
CONFIGS = {
    "tok-lstm-softmax": ("tokens", ["lstm"], True, False, [3]),
    "tok-gru-sigmoid": ("tokens", ["gru"], True, False, [1]),
    "tok-gru-v1": ("tokens", ["gru"], False, False, [2]),
    "feat-lstm": ("features", ["lstm"], True, False, [4]),
    "feat-dense-gru": ("features", ["gru"], True, True, [5]),
    "feat-lstm-lstm": ("features", ["lstm", "lstm"], True, False, [6, 3]),
    "feat-gru-gru-v1": ("features", ["gru", "gru"], False, False, [2]),
    "feat-lstm-gru": ("features", ["lstm", "gru"], True, True, [3]),   # mixed stack, delta-capable
    "tok-lstm-nohead": ("tokens", ["lstm"], True, False, []),
    "feat-mask-gru": ("features-mask", ["gru"], True, False, [3]),
    "feat-rnn": ("features", ["simple_rnn"], True, False, [3]),
    "tok-rnn-relu": ("tokens", ["simple_rnn"], True, False, [1]),
    "feat-mask-rnn-lstm": ("features-mask", ["simple_rnn", "lstm"], True, True, [4]),
    "feat-gru-lstm-rnn": ("features", ["gru", "lstm", "simple_rnn"], True, True, [3]),   # 3-layer mixed stack
    "tok-lstm-gru-lstm-gru": ("tokens", ["lstm", "gru", "lstm", "gru"], True, False, [2]),   # 4 layers
    "feat-mask-lstm-dense-gru": ("features-mask", ["lstm", "dense", "gru"], True, False, [3]),   # a per-step Dense
    "feat-mask-dense-dense-lstm": ("features-mask", ["dense", "lstm"], True, True, [3]),   # two on the input
    # a LayerNormalization between recurrent layers (RNNLayer.input_norm on every layer after the first)
    "feat-mask-lstm-ln-gru": ("features-mask", ["lstm", "gru"], True, False, [3]),
    "tok-gru-ln-rnn-ln-lstm": ("tokens", ["gru", "simple_rnn", "lstm"], True, False, [2]),
}
#: layer activations other than the cell's default, by config
ACTIVATIONS = {"tok-rnn-relu": "relu"}
#: configs whose layers after the first layer-normalise their input, with this epsilon
INPUT_NORM = {"feat-mask-lstm-ln-gru": 1e-3, "tok-gru-ln-rnn-ln-lstm": 1e-5}


def random_ir(config: str, seed: int = 0, units=(9, 6, 7, 5), dim: int = 7, vocab: int = 50,
              features: int = 5) -> ModelIR:
    """A random model; unit counts deliberately not multiples of 4 (exercises padding)."""
    kind_in, kinds, reset_after, in_dense, head = CONFIGS[config]
    rng = np.random.default_rng(seed)
    if kind_in == "tokens":
        inp = EmbeddingInput(table=rng.normal(0, 0.5, (vocab, dim)), mask_zero=True)
        d_in = dim
    else:
        dense = None
        d_in = features
        if in_dense:
            dense = DenseLayer(rng.normal(0, 0.4, (features, dim)), rng.normal(0, 0.1, dim), "relu", "in_dense")
            d_in = dim
        inp = FeatureInput(features=features, dense=dense,
                           mask_value=0.0 if kind_in == "features-mask" else None)
    layers = []
    for i, k in enumerate(kinds):
        U = units[i]
        cell = cell_of(k)
        G = cell.gates
        options = {"reset_after": reset_after} if k == "gru" else {}
        bias = rng.normal(0, 0.3, cell.bias_shape(U, options))
        layers.append(RNNLayer(kind=k, units=U, kernel=rng.normal(0, 0.5, (d_in, G * U)),
                               recurrent_kernel=rng.normal(0, 0.4, cell.recurrent_kernel_shape(U)), bias=bias,
                               activation=ACTIVATIONS.get(config, "tanh"),
                               recurrent_activation="sigmoid" if cell.gated else None,
                               return_sequences=i < len(kinds) - 1, options=options, name=f"{k}_{i}",
                               input_norm=INPUT_NORM.get(config) if i else None))
        d_in = U
    dl = []
    for j, n in enumerate(head):
        last = j == len(head) - 1
        act = ("sigmoid" if n == 1 else "softmax") if last else "tanh"
        dl.append(DenseLayer(rng.normal(0, 0.5, (d_in, n)), rng.normal(0, 0.2, n), act, f"dense_{j}"))
        d_in = n
    return ModelIR(input=inp, rnn_layers=layers, head=dl, name=config)


def random_data(ir: ModelIR, n: int = 12, T: int = 10, seed: int = 1, spread: bool = False):
    """(x, lengths): ids with zero padding, or features with some all-zero (masked) steps; ``spread``:
    features on ranges from 1/4 to 4 (sensors in their own units: per-feature input scales differ)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, n).astype(np.int32)
    if ir.is_token_model:
        x = rng.integers(1, ir.input.vocab, (n, T)).astype(np.int32)
        x[np.arange(T)[None, :] >= lengths[:, None]] = 0
        x[rng.random((n, T)) < 0.1] = 0  # interior padding tokens are masked too
    else:
        x = rng.normal(0, 1.0, (n, T, ir.input.features))
        if spread:
            x = x * np.geomspace(0.25, 4.0, ir.input.features)
        x = x.astype(np.float32)
        x[rng.random((n, T)) < 0.15] = 0.0
    return x, lengths


def mixed_ir(seed=0, features=5, dim=7, units=(9, 6)):
    """Input Dense -> LSTM -> GRU (reset_after=False) -> Dense(tanh) -> Dense(softmax):
    one demo-sized model that runs every kernel the targets compile (mat-vec, both
    cells, GRU reset, requantise, fully connected with and without a LUT)."""
    rng = np.random.default_rng(seed)
    inp = FeatureInput(features=features, mask_value=0.0,
                       dense=DenseLayer(rng.normal(0, 0.4, (features, dim)), rng.normal(0, 0.1, dim), "relu", "in"))
    U0, U1 = units
    layers = [RNNLayer(kind="lstm", units=U0, kernel=rng.normal(0, 0.5, (dim, 4 * U0)),
                       recurrent_kernel=rng.normal(0, 0.4, (U0, 4 * U0)), bias=rng.normal(0, 0.3, 4 * U0),
                       return_sequences=True, name="lstm_0"),
              RNNLayer(kind="gru", units=U1, kernel=rng.normal(0, 0.5, (U0, 3 * U1)),
                       recurrent_kernel=rng.normal(0, 0.4, (U1, 3 * U1)), bias=rng.normal(0, 0.3, 3 * U1),
                       return_sequences=False, options={"reset_after": False}, name="gru_1")]
    head = [DenseLayer(rng.normal(0, 0.5, (U1, 6)), rng.normal(0, 0.2, 6), "tanh", "d0"),
            DenseLayer(rng.normal(0, 0.5, (6, 3)), rng.normal(0, 0.2, 3), "softmax", "d1")]
    return ModelIR(input=inp, rnn_layers=layers, head=head, name="mixed")


def generated_mixed(d, n: int, seed: int, T: int = 9):
    """mixed_ir() quantised on n random sequences (``seed``) with its C sources generated
    into ``d/src``. Returns (ir, qm, x, lengths)."""
    from rnnskip.generate import generate
    from rnnskip.quant.calibrate import calibrate
    from rnnskip.quant.quantize import quantize
    from rnnskip.reference import FloatModel
    ir = mixed_ir()
    x, L = random_data(ir, n=n, T=T, seed=seed)
    qm = quantize(ir, calibrate(ir, FloatModel(ir), x, L, progress=False))
    generate(qm, d / "src", max_t=x.shape[1])
    return ir, qm, x, L


def bidi_ir(config: str, index=0, merge: str = "concat", seed: int = 0, per_step: bool = False,
            **shape) -> ModelIR:
    """random_ir(config) with recurrent layer ``index`` (or each of a tuple of indices) made Bidirectional (a
    backward direction with its own random weights, ``merge`` its merge_mode); with concat the layer after it reads
    both directions' units. ``per_step``: the last recurrent layer returns sequences and the head runs on every
    step."""
    ir = random_ir(config, seed=seed, **shape)
    if per_step:
        ir.rnn_layers[-1].return_sequences, ir.per_step = True, True
    rng = np.random.default_rng(seed + 100)
    for i in sorted((index,) if isinstance(index, int) else index):
        r = ir.rnn_layers[i]
        r.backward = RNNLayer(kind=r.kind, units=r.units, kernel=rng.normal(0, 0.5, r.kernel.shape),
                              recurrent_kernel=rng.normal(0, 0.4, r.recurrent_kernel.shape),
                              bias=rng.normal(0, 0.3, r.bias.shape), activation=r.activation,
                              recurrent_activation=r.recurrent_activation, return_sequences=r.return_sequences,
                              options=dict(r.options), name=f"{r.name}_backward")
        r.merge_mode = merge
        later = ir.rnn_layers[i + 1:] + ir.head
        if merge == "concat" and later:   # kernels are [in, out] for both
            later[0].kernel = np.concatenate([later[0].kernel, rng.normal(0, 0.5, later[0].kernel.shape)], axis=0)
    return ir
