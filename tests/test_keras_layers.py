"""The importer's structure: one handler per Keras layer class, the fold passes on small
hand-made chains, and ``rnnskip inspect`` giving the importer's own refusal for every
refused layer of the corpus."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import keras_models as km
import numpy as np
import pytest
import zoo_models as zoo_cases

from rnnskip import cells
from rnnskip.converter import keras_layers
from rnnskip.converter.ir import DenseLayer
from rnnskip.converter.keras_files import WeightStore
from rnnskip.converter.keras_graph import KerasLayer
from rnnskip.converter.keras_import import describe_model_file, load_model_file
from rnnskip.converter.keras_layers import HANDLERS, RecurrentHandler, handler_for, layer_refusals
from rnnskip.converter.keras_passes import assemble, fold_activations, fold_batchnorm
from rnnskip.converter.support import LayerError
from rnnskip.errors import RnnskipError
from rnnskip.inspect import inspect_file

ROOT = Path(__file__).resolve().parent.parent
CONVERTER = ROOT / "rnnskip" / "converter"


# --------------------------------------------------------------------------
# the handler table

def _matrix_classes():
    """(classes of the support matrix's converting rows, classes only ever refused there)."""
    converts, refused = set(), set()
    for line in (ROOT / "docs" / "support_matrix.md").read_text().splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) < 3 or not any(("✓" in c or "✗" in c) for c in cols[2:]):
            continue
        label = {"Dense head": "Dense", "no-ops / BatchNormalization": "BatchNormalization", "any": ""}.get(
            cols[0], cols[0])
        names = set(re.findall(r"[A-Za-z0-9]+", label))
        (converts if any("✓" in c for c in cols[2:]) else refused).update(names)
    return converts, refused - converts


def test_every_class_of_the_support_matrix_has_one_handler():
    converts, refused = _matrix_classes()
    assert {"LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "Dense", "TimeDistributed",
            "BatchNormalization", "Conv1D", "DepthwiseConv1D", "SeparableConv1D", "MaxPooling1D", "AveragePooling1D",
            "Bidirectional"} <= converts
    readme = {"Embedding", "Masking", "Dropout", "SpatialDropout1D", "GaussianNoise", "Activation", "RNN",
              "InputLayer"}
    for cls in converts | readme:
        assert cls in HANDLERS, cls
        assert cls in HANDLERS[cls].classes
    # the matrix's classes without a handler are refused because of that (Conv2D)
    unhandled = {cls for cls in converts | refused if cls not in HANDLERS}
    assert unhandled == {"Conv2D"} and unhandled <= refused
    for cls in unhandled:
        layer = KerasLayer({"class_name": cls, "config": {"name": "x"}})
        assert handler_for(layer) is keras_layers.UNSUPPORTED
        assert layer_refusals(layer) == [f"layer 'x' ({cls}) is not supported: {keras_layers.SUPPORTED_SUMMARY}"]


def test_softmax_layer_is_an_activation_and_over_time_layers_say_what_to_do():
    soft = layer("Softmax", "soft", axis=-1)
    nodes = read([LSTM, DENSE, soft], weights())
    left = fold_activations(fold_batchnorm(nodes))
    assert [n.name for n in left] == ["lstm", "dense"] and nodes[1].value.activation == "softmax"
    assert nodes[2].notes == ["folded Softmax 'soft' (softmax) into 'dense'"]
    # axis 1 is the last one after a last-step Dense ([batch, classes]); on a per-step output it is time
    nodes = read([LSTM, DENSE, layer("Softmax", "s1", axis=1)], weights())
    assert nodes[2].layer.config["axis"] == 1 and fold_activations(nodes)[-1].value.activation == "softmax"
    per_step = layer("LSTM", "lstm", units=U, return_sequences=True)
    assert fold_activations(read([per_step, DENSE, layer("Softmax", "s2", axis=[2])], weights()))[-1].value.activation \
        == "softmax"
    with pytest.raises(LayerError) as ei:
        fold_activations(read([per_step, DENSE, layer("Softmax", "s1", axis=1)], weights()))
    assert str(ei.value) == ("layer 's1' (Softmax) normalises axis 1, not the last one (the classes): rnnskip "
                             "supports a Softmax over the last axis after a linear Dense")
    # Flatten: over the time axis it needs the input's fixed number of steps (docs/pooling.md), before the recurrent
    # layers it is refused, the identity where no time axis is left
    flat = layer("Flatten", "p")
    assert layer_refusals(flat) == []
    with pytest.raises(LayerError) as ei:
        assemble(fold_activations(fold_batchnorm(read([per_step, flat, DENSE], weights()))), "m", "m.h5", [])
    assert str(ei.value) == ("layer 'p' (Flatten) flattens the time axis of an input with no fixed number of steps: "
                             "declare it (Input(shape=(T, features))), as the Dense after the Flatten needs")
    with pytest.raises(LayerError) as ei:
        assemble(fold_activations(fold_batchnorm(read([flat, per_step, DENSE], weights()))), "m", "m.h5", [])
    assert str(ei.value) == f"layer 'p' (Flatten) is not supported: {keras_layers.HINTS['Flatten']}"
    nodes = read([LSTM, flat, DENSE, layer("Flatten", "p2")], weights())
    ir = assemble(fold_activations(fold_batchnorm(nodes)), "m", "m.h5", [])
    assert [d.name for d in ir.head] == ["dense"] and nodes[1].status == nodes[3].status == \
        "dropped (no time axis left: the identity)"
    assert ir.notes == ["dropped Flatten 'p' (after 'lstm' there is no time axis left: the identity)",
                        "dropped Flatten 'p2' (after 'lstm' there is no time axis left: the identity)"]


def test_handlers_claim_disjoint_classes():
    handlers = {id(h): h for h in HANDLERS.values()}.values()
    claimed = [cls for h in handlers for cls in h.classes]
    assert len(claimed) == len(set(claimed)) == len(HANDLERS)
    assert all(HANDLERS[cls] is h for h in handlers for cls in h.classes)


def test_recurrent_handlers_come_from_the_cells():
    for cell in cells.CELLS.values():
        for cls in cell.keras_classes:
            h = HANDLERS[cls]
            assert isinstance(h, RecurrentHandler) and h.cell is cell
        for cell_cls in cell.keras_cell_classes:
            rnn = KerasLayer({"class_name": "RNN", "config": {"name": "r", "cell": {"class_name": cell_cls,
                                                                                      "config": {"units": 3}}}})
            assert HANDLERS["RNN"].cell_of(rnn) is cell
    keras_classes = {cls for cell in cells.CELLS.values() for cls in cell.keras_classes}
    recurrent = {cls for cls, h in HANDLERS.items() if isinstance(h, RecurrentHandler)}
    assert recurrent == keras_classes | {"RNN"}


def _code_strings(path: Path):
    """The string constants of a module's code (docstrings aside)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def test_importer_never_names_a_cell_kind():
    """Recurrent specifics belong to rnnskip/cells: the importer names no recurrent cell kind or class (the per-step
    Dense's kind is the Keras Dense it reads, reached through ``cells.per_step_cell``)."""
    names = set()
    for cell in (c for c in cells.CELLS.values() if c.recurrent):
        names |= {cell.kind, cell.label, *cell.keras_classes, *cell.keras_cell_classes}
    for path in CONVERTER.glob("keras_*.py"):
        for s in _code_strings(path):
            words = set(re.findall(r"[A-Za-z_]+", s))
            assert not words & names, (path.name, s)


def test_inspect_uses_only_public_importer_names():
    tree = ast.parse((ROOT / "rnnskip" / "inspect.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "converter" in node.module:
            assert all(not a.name.startswith("_") for a in node.names), ast.dump(node)
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_") or node.attr.startswith("__"), node.attr


# --------------------------------------------------------------------------
# the passes on hand-made chains

class ArrayWeights(WeightStore):
    """Weights from a dict: layer name -> {role: array}."""

    def __init__(self, arrays):
        self.arrays = arrays

    def datasets(self, layer):
        return list(self.arrays.get(layer.name, {}).items())


def layer(cls, name, **cfg):
    return KerasLayer({"class_name": cls, "config": dict(name=name, **cfg)})


RNG = np.random.default_rng(3)
F, U, D = 3, 4, 5


def weights():
    n = lambda *shape: RNG.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
    bn = lambda k: {"gamma": n(k) + 1, "beta": n(k), "moving_mean": n(k),  # noqa: E731
                    "moving_variance": np.abs(n(k)) + 0.5}
    return ArrayWeights({
        "lstm": {"kernel": n(F, 4 * U), "recurrent_kernel": n(U, 4 * U), "bias": n(4 * U)},
        "dense": {"kernel": n(U, D), "bias": n(D)}, "dense_in": {"kernel": n(F, F), "bias": n(F)},
        "out": {"kernel": n(D, 2), "bias": n(2)},
        "bn": bn(D), "bn_in": bn(F), "bn_in2": bn(F)})


LSTM = layer("LSTM", "lstm", units=U)
DENSE = layer("Dense", "dense", units=D, activation="linear")
OUT = layer("Dense", "out", units=2, activation="linear")


def read(layers, store):
    return [handler_for(l).build(l, store) for l in layers]


def bn_map(store, name, x):
    w = store.arrays[name]
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + 1e-3) * w["gamma"] + w["beta"]


def test_batchnorm_after_a_linear_dense_folds_into_it():
    store = weights()
    nodes = read([LSTM, DENSE, layer("BatchNormalization", "bn"), OUT], store)
    left = fold_batchnorm(nodes)
    assert [n.name for n in left] == ["lstm", "dense", "out"]
    assert nodes[2].status == "folded into 'dense'"
    assert nodes[2].notes == ["folded BatchNormalization 'bn' into 'dense'"]
    h = RNG.normal(size=(7, U))
    w = store.arrays["dense"]
    folded: DenseLayer = nodes[1].value
    np.testing.assert_allclose(h @ folded.kernel + folded.bias, bn_map(store, "bn", h @ w["kernel"] + w["bias"]),
                               rtol=1e-5, atol=1e-5)


def test_batchnorm_before_a_recurrent_layer_folds_into_its_input():
    store = weights()
    nodes = read([layer("BatchNormalization", "bn_in"), layer("BatchNormalization", "bn_in2"), LSTM, DENSE],
                 store)
    left = fold_batchnorm(nodes)
    assert [n.name for n in left] == ["lstm", "dense"]
    assert nodes[1].status == "folded into 'bn_in'" and nodes[0].status == "folded into 'lstm'"
    # BN after BN first becomes one map, then goes into the recurrent layer's input weights
    assert nodes[1].notes == ["folded BatchNormalization 'bn_in2' into 'bn_in'"]
    assert nodes[2].notes == ["folded BatchNormalization 'bn_in' into 'lstm'"]
    x = RNG.normal(size=(7, F))
    w = store.arrays["lstm"]
    rnn = nodes[2].value
    want = bn_map(store, "bn_in2", bn_map(store, "bn_in", x)) @ w["kernel"] + w["bias"]
    np.testing.assert_allclose(x @ rnn.kernel + rnn.bias, want, rtol=1e-5, atol=1e-5)


def test_normalization_and_rescaling_fold_as_keras_computes_them():
    """(x - mean) / max(sqrt(var), 1e-7) and x * scale + offset (one value for every feature) into the LSTM. A
    feature of variance 0 is its mean on the data adapted on (Keras gives 0 there): folded as x - mean, 0 there
    too, not as 1e7 (x - mean), which float32 folds badly (an audit measured float 0.24 off Keras, int8 unusable);
    the mean stays the input's centre."""
    store = weights()
    mean, var = [0.5, -1.0, 2.0], [4.0, 0.0, 0.25]   # a zero variance: Keras divides by 1e-7
    x = RNG.normal(size=(7, F))
    x[:, 1] = -1.0   # that feature constant at its mean, as on the data it was adapted on
    want = ((x - mean) / np.maximum(np.sqrt(var), 1e-7)) * 0.5 + 0.25
    nodes = read([layer("Normalization", "norm", axis=-1, mean=mean, variance=var),
                  layer("Rescaling", "rs", scale=0.5, offset=0.25), LSTM], store)
    w = store.arrays["lstm"]
    lstm = fold_batchnorm(nodes)[0].value
    np.testing.assert_allclose(x @ lstm.kernel + lstm.bias, want @ w["kernel"] + w["bias"], rtol=1e-5)
    assert nodes[1].notes == ["folded Rescaling 'rs' into 'norm'"] and nodes[0].status == "folded into 'lstm'"
    assert nodes[0].notes == ["'norm' (Normalization) has variance 0 for feature 1: constant on the data it was "
                              "adapted on, where Keras and rnnskip give 0; rnnskip takes another value's distance "
                              "from the mean as it is, where Keras multiplies it by 1e7"]
    np.testing.assert_allclose(nodes[2].input_center, [0.5 - 0.5 * 2, -1.0 - 0.5, 2.0 - 0.5 * 0.5])   # map = 0
    assert np.abs(lstm.kernel).max() < 10   # no 1e7 column
    assert layer_refusals(layer("Normalization", "inv", invert=True, mean=mean, variance=var)) == [
        "layer 'inv' (Normalization) has invert=True: it undoes a normalisation (x * std + mean); rnnskip folds "
        "Normalization with invert=False"]


def _conv_case(bn, padding, store):
    store.arrays["conv"] = {"kernel": RNG.normal(size=(3, F, D)).astype(np.float32),
                            "bias": RNG.normal(size=D).astype(np.float32)}
    conv = layer("Conv1D", "conv", filters=D, kernel_size=[3], padding=padding, activation="linear")
    return read([bn, conv, LSTM], store)


@pytest.mark.parametrize("padding", ["causal", "same", "valid"])
def test_normalization_before_a_padded_conv_pads_with_the_input_it_maps_to_zero(padding):
    """Keras pads the normalised input with zeros; the folded Conv1D pads the raw input with mean + 0 * std."""
    store = weights()
    mean, var = [0.5, -1.0, 2.0], [4.0, 0.25, 1.0]
    nodes = _conv_case(layer("Normalization", "norm", axis=-1, mean=mean, variance=var), padding, store)
    conv = fold_batchnorm(nodes)[0].value
    if padding == "valid":   # never padded: zeros, as before
        assert conv.pad is None and nodes[1].notes == ["folded Normalization 'norm' into 'conv'"]
        return
    np.testing.assert_allclose(conv.pad, mean)
    assert nodes[1].notes == ["folded Normalization 'norm' into 'conv'",
                              f"'conv' pads (padding='{padding}') with the input frame 'norm' maps to 0, as Keras "
                              "pads its output with zeros"]


def test_batchnorm_with_a_zero_scale_before_a_padded_conv_is_refused():
    """gamma = 0 with beta != 0: no input normalises to the zeros Keras pads with."""
    store = weights()
    store.arrays["bn_in"]["gamma"][1] = 0.0
    nodes = _conv_case(layer("BatchNormalization", "bn_in"), "same", store)
    with pytest.raises(LayerError) as e:
        fold_batchnorm(nodes)
    assert str(e.value).startswith(
        "layer 'bn_in' (BatchNormalization) maps feature 1 to a constant other than 0 before 'conv' (Conv1D) with "
        "padding='same', whose zeros pad the BatchNormalization's output: no input frame normalises to them")
    store.arrays["bn_in"]["beta"][1] = 0.0   # a zero shift too: any input pads it (0)
    conv = fold_batchnorm(_conv_case(layer("BatchNormalization", "bn_in"), "same", store))[0].value
    assert conv.pad[1] == 0.0 and np.all(np.isfinite(conv.pad))


def test_a_normalisation_centred_on_zero_records_no_centre():
    """Rescaling(1/255) maps 0 to 0: nothing to subtract on the device, so no centre (an audit found a centre of
    -0.0, an offset table doing nothing, and delta-train refusing the model); with an offset it has one."""
    for cfg, want in (({"scale": 1 / 255}, None), ({"scale": 1 / 127.5, "offset": -1.0}, 127.5)):
        nodes = read([layer("Rescaling", "rs", **cfg), LSTM], weights())
        fold_batchnorm(nodes)
        got = nodes[1].input_center
        assert (got is None) if want is None else np.allclose(got, want), (cfg, got)


@pytest.mark.parametrize("version,kept", [("2.15.0", False), ("3.6.0", True)])
def test_keras2_loses_the_mask_at_normalization(version, kept):
    """tf_keras passes no mask through Normalization or Rescaling (it runs every step); Keras 3 does."""
    from rnnskip.converter.keras_passes import drop_lost_masks
    for source in (layer("Masking", "mask", mask_value=0.0),
                   layer("Embedding", "emb", input_dim=5, output_dim=F, mask_zero=True)):
        store = weights()
        store.arrays["emb"] = {"embeddings": RNG.normal(size=(5, F)).astype(np.float32)}
        nodes = drop_lost_masks(read([source, layer("Rescaling", "rs", scale=2.0), LSTM], store), version)
        masked = nodes[0].kind == "masking" if source.class_name == "Masking" else nodes[0].value.mask_zero
        assert masked == kept
        assert nodes[0].notes == ([] if kept else [
            f"the mask of {source.class_name} '{source.name}' is lost at Rescaling 'rs', which Keras 2 passes no "
            "mask through: Keras runs every step, padding included, and so does rnnskip (Keras 3 passes the mask "
            "through it)"])


def test_batchnorm_after_an_activation_goes_into_the_next_dense():
    """Dense -> Activation(relu) -> BN -> Dense: the BN acts after the relu, so it cannot go
    into the first Dense; it goes into the second one's input."""
    store = weights()
    nodes = read([LSTM, DENSE, layer("Activation", "act", activation="relu"), layer("BatchNormalization", "bn"),
                  OUT], store)
    left = fold_activations(fold_batchnorm(nodes))
    assert [n.name for n in left] == ["lstm", "dense", "out"]
    assert nodes[2].status == "folded into 'dense'" and nodes[3].status == "folded into 'out'"
    h = RNG.normal(size=(7, U))
    w, o = store.arrays["dense"], store.arrays["out"]
    want = bn_map(store, "bn", np.maximum(h @ w["kernel"] + w["bias"], 0)) @ o["kernel"] + o["bias"]
    first, second = nodes[1].value, nodes[4].value
    got = np.maximum(h @ first.kernel + first.bias, 0) @ second.kernel + second.bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_then_softmax_activation_folds():
    store = weights()
    nodes = read([LSTM, DENSE, layer("Activation", "act", activation="softmax")], store)
    left = fold_activations(fold_batchnorm(nodes))
    assert [n.name for n in left] == ["lstm", "dense"]
    assert nodes[1].value.activation == "softmax"
    assert nodes[2].status == "folded into 'dense'"
    assert nodes[2].notes == ["folded Activation 'act' (softmax) into 'dense'"]
    ir = assemble(left, "m", "m.h5", [n for node in nodes for n in node.notes])
    assert [d.activation for d in ir.head] == ["softmax"]
    assert ir.notes == ["folded Activation 'act' (softmax) into 'dense'"]


def test_linear_activation_after_a_recurrent_layer_is_dropped():
    nodes = read([LSTM, layer("Activation", "act", activation="linear"), DENSE], weights())
    assert [n.name for n in fold_activations(nodes)] == ["lstm", "dense"]
    assert nodes[1].status == "dropped (linear)" and nodes[1].notes == ["dropped Activation 'act' (linear)"]


def test_relu_activation_after_a_recurrent_layer_runs_as_an_identity_dense():
    """On the head's input it becomes the head's first Dense: identity weights sized by assemble (it was refused)."""
    store = weights()
    nodes = fold_activations(fold_batchnorm(read([LSTM, layer("Activation", "act_relu", activation="relu"), DENSE],
                                                 store)))
    act = nodes[1]
    assert act.kind == "dense" and act.value.activation == "relu" and act.value.kernel.shape == (0, 0)
    assert act.status == "converted (an identity Dense with this activation)"
    ir = assemble(nodes, "m", "m.h5", [])
    assert [d.name for d in ir.head] == ["act_relu", "dense"]
    assert np.array_equal(ir.head[0].kernel, np.eye(U)) and not ir.head[0].bias.any()


def test_an_activation_alone_between_recurrent_layers_runs_at_every_step():
    """Refused before: a per-step layer with identity weights and that activation (sized to the layer before)."""
    lstm2 = layer("LSTM", "lstm", units=U, return_sequences=True)
    store = weights()
    store.arrays["lstm2"] = {"kernel": RNG.normal(size=(U, 8)), "recurrent_kernel": RNG.normal(size=(2, 8)),
                             "bias": np.zeros(8)}
    nodes = fold_activations(fold_batchnorm(read([lstm2, layer("Activation", "act_relu", activation="relu"),
                                                  layer("LSTM", "lstm2", units=2)], store)))
    ir = assemble(nodes, "m", "m.h5", [])
    act = ir.rnn_layers[1]
    assert (act.kind, act.name, act.activation) == (cells.per_step_cell().kind, "act_relu", "relu")
    assert np.array_equal(act.kernel, np.eye(U)) and not act.bias.any() and act.recurrent_kernel.shape == (0, U)
    assert nodes[1].status == "converted (runs at every step: a per-step Dense layer with identity weights)"
    assert nodes[1].notes == ["Activation 'act_relu' (relu) on every step of 'lstm' runs as a per-step Dense with "
                              "identity weights and that activation (a square weight matrix: its flash and MACs are "
                              "in the report)"]


def test_linear_dense_layers_between_recurrent_layers_fold_into_the_next():
    """Two linear per-step Dense layers between recurrent layers become one map in the next layer's input kernel and
    the bias its input part adds to, with the Dense layers' status and the model's notes saying so."""
    store = weights()
    n = lambda *shape: RNG.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
    store.arrays["mid"] = {"kernel": n(D, 6), "bias": n(6)}
    store.arrays["lstm2"] = {"kernel": n(6, 4 * 3), "recurrent_kernel": n(3, 4 * 3), "bias": n(4 * 3)}
    store.arrays["out3"] = {"kernel": n(3, 2), "bias": n(2)}
    seq = layer("LSTM", "lstm", units=U, return_sequences=True)
    mid = layer("Dense", "mid", units=6, activation="linear")
    nodes = fold_activations(fold_batchnorm(read([seq, DENSE, mid, layer("LSTM", "lstm2", units=3),
                                                 layer("Dense", "out3", units=2)], store)))
    ir = assemble(nodes, "m", "m.h5", [])
    assert [r.name for r in ir.rnn_layers] == ["lstm", "lstm2"] and [d.name for d in ir.head] == ["out3"]
    assert not ir.per_step and nodes[1].status == nodes[2].status == "folded into 'lstm2'"
    assert ir.notes[:2] == ["folded Dense 'dense' into 'lstm2'", "folded Dense 'mid' into 'lstm2'"]
    y = RNG.normal(size=(7, U))   # the first layer's outputs at 7 steps
    d, m, k = store.arrays["dense"], store.arrays["mid"], store.arrays["lstm2"]
    want = ((y @ d["kernel"] + d["bias"]) @ m["kernel"] + m["bias"]) @ k["kernel"] + k["bias"]
    l2 = ir.rnn_layers[1]
    np.testing.assert_allclose(y @ l2.kernel + l2.bias, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(l2.recurrent_kernel, k["recurrent_kernel"])
    # 4 -> 5 -> 6 into 12 gate rows: 4 x 12 = 48 weights, fewer than the 20 + 30 + 72 before
    assert not any("through the folded Dense" in note for note in ir.notes)
    # a bottleneck: 4 -> 1 into 12 gate rows was 4 + 12 weights, folded it is 48; the note says so
    store.arrays["neck"] = {"kernel": n(U, 1), "bias": n(1)}
    store.arrays["lstm2"] = {"kernel": n(1, 4 * 3), "recurrent_kernel": n(3, 4 * 3), "bias": n(4 * 3)}
    nodes = fold_activations(fold_batchnorm(read([seq, layer("Dense", "neck", units=1), layer("LSTM", "lstm2", units=3),
                                                  layer("Dense", "out3", units=2)], store)))
    assert assemble(nodes, "m", "m.h5", []).notes[1] == (
        "'lstm2' reads 4 inputs through the folded Dense: its input kernel has 48 weights where the Dense and the "
        "kernel had 16 (a per-step Dense runs as a layer of its own only when it has an activation)")


def test_a_dense_with_an_activation_between_recurrent_layers_runs_at_every_step():
    """Dense -> Activation(relu) -> linear Dense between two LSTMs (refused before): the relu Dense becomes a per-step
    layer of the stack, the linear Dense after it folds into the next LSTM; the statuses and notes say which."""
    store = weights()
    n = lambda *shape: RNG.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
    store.arrays["lin"] = {"kernel": n(D, 5), "bias": n(5)}
    store.arrays["lstm2"] = {"kernel": n(5, 8), "recurrent_kernel": n(2, 8), "bias": n(8)}
    nodes = fold_activations(fold_batchnorm(read([layer("LSTM", "lstm", units=U, return_sequences=True), DENSE,
                                                  layer("Activation", "act_r", activation="relu"),
                                                  layer("Dense", "lin", units=5), layer("LSTM", "lstm2", units=2)],
                                                 store)))
    ir = assemble(nodes, "m", "m.h5", [])
    per_step = cells.per_step_cell()
    assert [(r.name, r.kind) for r in ir.rnn_layers] == [("lstm", "lstm"), ("dense", per_step.kind),
                                                         ("lstm2", "lstm")]
    mid = ir.rnn_layers[1]
    d = store.arrays["dense"]
    assert mid.activation == "relu" and mid.recurrent_activation is None and mid.return_sequences
    np.testing.assert_array_equal(mid.kernel, d["kernel"])
    np.testing.assert_array_equal(mid.bias, d["bias"])
    assert mid.recurrent_kernel.shape == (0, D) and ir.macs_per_step() == (
        ir.rnn_layers[0].kernel.size + ir.rnn_layers[0].recurrent_kernel.size + U * D + 5 * 8 + 2 * 8)
    assert nodes[1].status == "converted (runs at every step: a per-step Dense layer)"
    assert nodes[2].status == "folded into 'lstm2'"
    assert nodes[1].activation_layer.name == "act_r" and ir.notes == ["folded Dense 'lin' into 'lstm2'"]
    k2 = store.arrays["lstm2"]
    y = RNG.normal(size=(7, D))   # the per-step Dense's outputs at 7 steps
    np.testing.assert_allclose(y @ ir.rnn_layers[2].kernel + ir.rnn_layers[2].bias,
                               (y @ store.arrays["lin"]["kernel"] + store.arrays["lin"]["bias"]) @ k2["kernel"]
                               + k2["bias"], rtol=1e-5, atol=1e-5)


def test_per_step_dense_layers_on_the_input_before_the_first_recurrent_layer():
    """Linear a -> relu b -> tanh c -> linear d -> LSTM (a second one was refused before): a composed into b, the
    input's Dense; c a per-step layer of the stack; d folded into the LSTM. The composed maps equal the chain's."""
    store = weights()
    n = lambda *shape: RNG.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
    store.arrays.update({"a": {"kernel": n(F, 6), "bias": n(6)}, "b": {"kernel": n(6, 5), "bias": n(5)},
                         "c": {"kernel": n(5, 4), "bias": n(4)}, "d": {"kernel": n(4, F), "bias": n(F)}})
    chain = [layer("Dense", "a", units=6), layer("Dense", "b", units=5, activation="relu"),
             layer("Dense", "c", units=4, activation="tanh"), layer("Dense", "d", units=F), LSTM, OUT]
    store.arrays["out"] = {"kernel": n(U, 2), "bias": n(2)}
    nodes = fold_activations(fold_batchnorm(read(chain, store)))
    ir = assemble(nodes, "m", "m.h5", [])
    assert [(r.name, r.kind) for r in ir.rnn_layers] == [("c", cells.per_step_cell().kind), ("lstm", "lstm")]
    assert (ir.input.dense.name, ir.input.dense.activation, ir.input.features) == ("b", "relu", F)
    assert [nd.status for nd in nodes[:4]] == ["folded into 'b'", "converted",
                                               "converted (runs at every step: a per-step Dense layer)",
                                               "folded into 'lstm'"]
    assert ir.notes == ["folded Dense 'a' into 'b'", "folded Dense 'd' into 'lstm'",
                        "'lstm' reads 4 inputs through the folded Dense: its input kernel has 64 weights where the "
                        "Dense and the kernel had 60 (a per-step Dense runs as a layer of its own only when it has an "
                        "activation)"]
    w = store.arrays
    x = RNG.normal(size=(7, F))
    lin = lambda v, k: v @ w[k]["kernel"] + w[k]["bias"]  # noqa: E731
    np.testing.assert_allclose(x @ ir.input.dense.kernel + ir.input.dense.bias, lin(lin(x, "a"), "b"),
                               rtol=1e-5, atol=1e-5)
    y = RNG.normal(size=(7, 4))   # c's outputs
    lstm = ir.rnn_layers[1]
    np.testing.assert_allclose(y @ lstm.kernel + lstm.bias, lin(lin(y, "d"), "lstm"), rtol=1e-5, atol=1e-5)


@pytest.mark.keras
def test_a_reshape_of_another_size_than_it_reads_is_refused(tmp_path):
    """Reshape((k,)) is read as a Flatten: a k that is not steps x units (a file Keras itself would not load, its
    target_shape edited) is refused, not flattened to another width; one that is, fixes the steps the input does
    not declare."""
    import json

    import h5py
    tfk = pytest.importorskip("tf_keras")
    L = tfk.layers
    for name, t, size in (("bad", 7, 20), ("undeclared", None, 21)):
        m = tfk.Sequential([L.Input((t, 3)), L.LSTM(3, return_sequences=True, name="lstm"),
                            L.Reshape((21,), name="resh"), L.Dense(2)])
        m.save(tmp_path / f"{name}.h5")
        with h5py.File(tmp_path / f"{name}.h5", "r+") as f:
            cfg = json.loads(f.attrs["model_config"])
            next(l for l in cfg["config"]["layers"] if l["class_name"] == "Reshape")["config"]["target_shape"] = [size]
            f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(LayerError) as ei:
        load_model_file(str(tmp_path / "bad.h5"))
    assert str(ei.value) == ("layer 'resh' (Reshape) has target_shape=(20,) for 7 steps of 3 units: the file is "
                             "inconsistent")
    ir = load_model_file(str(tmp_path / "undeclared.h5"))
    assert (ir.pool, ir.pool_steps) == ("flatten", 7)
    assert "Reshape 'resh' reads the outputs of 'lstm' at all 7 steps its size gives: every sequence " \
           "runs 7 steps (the data's lengths are not used)" in ir.notes


@pytest.mark.parametrize("pool_cls", ["GlobalMaxPooling1D", "GlobalAveragePooling1D"])
def test_activation_before_max_pooling_runs_after_it(pool_cls):
    """An activation before a max pooling over time moves after it (every supported one is non-decreasing, so it
    commutes with the maximum); before a mean it does not commute and runs at every step (identity weights)."""
    lstm2 = layer("LSTM", "lstm", units=U, return_sequences=True)
    nodes = read([lstm2, layer("Activation", "act_tanh", activation="tanh"), layer(pool_cls, "pool"), DENSE],
                 weights())
    if pool_cls == "GlobalAveragePooling1D":
        ir = assemble(fold_activations(fold_batchnorm(nodes)), "m", "m.h5", [])
        assert [r.name for r in ir.rnn_layers] == ["lstm", "act_tanh"] and ir.pool == "avg"
        assert np.array_equal(ir.rnn_layers[1].kernel, np.eye(U)) and ir.rnn_layers[1].activation == "tanh"
        return
    out = fold_activations(fold_batchnorm(nodes))
    assert [n.name for n in out] == ["lstm", "pool", "act_tanh", "dense"]
    assert out[2].kind == "dense" and out[2].value.activation == "tanh"
    assert out[2].status == "converted (after the max pooling, as an identity Dense with this activation)"
    ir = assemble(out, "m", "m.h5", [])
    assert ir.pool == "max" and [d.name for d in ir.head] == ["act_tanh", "dense"]
    assert np.array_equal(ir.head[0].kernel, np.eye(U))


def test_softmax_does_not_fold_into_the_per_step_dense():
    nodes = read([layer("Dense", "dense_in", units=F), layer("Activation", "act", activation="softmax"), LSTM],
                 weights())
    with pytest.raises(LayerError, match=r"'act' \(Activation 'softmax'\) is supported only directly after"):
        fold_activations(nodes)


def test_log_softmax_folds_like_softmax_on_the_head_only():
    """Keras 3's log_softmax: folded into the head's last Dense (the host applies it to the int16 logits), refused
    on a Dense before the recurrent layers as softmax is."""
    nodes = read([LSTM, DENSE, layer("Activation", "act", activation="log_softmax")], weights())
    ir = assemble(fold_activations(fold_batchnorm(nodes)), "m", "m.h5", [])
    assert [d.activation for d in ir.head] == ["log_softmax"] and ir.output_activation == "log_softmax"
    nodes = read([layer("Dense", "dense_in", units=F), layer("Activation", "act", activation="log_softmax"), LSTM],
                 weights())
    with pytest.raises(LayerError, match=r"'act' \(Activation 'log_softmax'\) is supported only directly after .*"
                                         r"not softmax or log_softmax"):
        fold_activations(nodes)
    store = weights()
    store.arrays["emb"] = {"embeddings": np.ones((7, F), np.float32)}
    nodes = read([layer("Embedding", "emb", input_dim=7, output_dim=F),
                  layer("Dense", "dense_in", units=F, activation="log_softmax"), LSTM, DENSE], store)
    with pytest.raises(LayerError, match=r"^layer 'dense_in' \(Dense\) between the Embedding and the RNN uses softmax "
                                         r"or log_softmax: rnnskip folds a per-step Dense into the embedding table "
                                         r"only without them"):
        assemble(fold_activations(fold_batchnorm(nodes)), "m", "m.h5", [])


@pytest.mark.parametrize("act,constant", [("softmax", 1), ("log_softmax", 0)])
def test_softmax_over_one_output_is_refused(act, constant):
    """Dense(1, activation='softmax'), a common mistake, outputs 1 whatever the input (log_softmax 0)."""
    nodes = read([LSTM, layer("Dense", "out", units=1, activation=act)],
                 ArrayWeights({**weights().arrays, "out": {"kernel": np.ones((U, 1), np.float32),
                                                           "bias": np.zeros(1, np.float32)}}))
    with pytest.raises(LayerError, match=rf"^layer 'out' \(Dense\) applies {act} to one output, which makes it the "
                                         rf"constant {constant} whatever the input: a binary classifier ends in one "
                                         r"sigmoid output"):
        assemble(fold_activations(fold_batchnorm(nodes)), "m", "m.h5", [])


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_batchnorm_then_an_activation_on_the_final_state_runs_as_one_dense(act):
    """LSTM -> BatchNormalization -> Activation -> Dense: the normalisation and the activation run as the head's first
    Dense (diagonal weights); it was refused (the activation followed no Dense)."""
    store = weights()
    w = RNG.normal(0, 0.5, (4, U)).astype(np.float32)
    store.arrays["bn_u"] = {"gamma": w[0] + 1, "beta": w[1], "moving_mean": w[2], "moving_variance": np.abs(w[3]) + .5}
    store.arrays["out"] = {"kernel": w[:2].T.copy(), "bias": np.zeros(2, np.float32)}
    nodes = read([LSTM, layer("BatchNormalization", "bn_u"), layer("Activation", "act", activation=act),
                  layer("Dense", "out", units=2, activation="softmax")], store)
    ir = assemble(fold_activations(fold_batchnorm(nodes)), "m", "m.h5", [n for node in nodes for n in node.notes])
    assert [d.activation for d in ir.head] == [act, "softmax"]
    h = RNG.normal(0, 1, (6, U))
    want = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[act](bn_map(store, "bn_u", h))
    np.testing.assert_allclose(h @ ir.head[0].kernel + ir.head[0].bias, bn_map(store, "bn_u", h), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose({"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[act](
        h @ ir.head[0].kernel + ir.head[0].bias), want, rtol=1e-5, atol=1e-5)
    assert any("after 'bn_u' runs as a Dense with that activation" in n for n in ir.notes), ir.notes


def test_batchnorm_with_nothing_to_fold_into_is_refused_by_the_grammar():
    store = weights()
    nodes = read([LSTM, layer("Dense", "dense", units=D, activation="relu"), layer("BatchNormalization", "bn")],
                 store)
    left = fold_activations(fold_batchnorm(nodes))
    assert [n.name for n in left] == ["lstm", "dense", "bn"]
    with pytest.raises(LayerError) as ei:
        assemble(left, "m", "m.h5", [])
    assert str(ei.value) == ("layer 'bn' (BatchNormalization) has no linear Dense or Conv1D before it and no Dense "
                             "after it: rnnskip folds BatchNormalization into an adjacent Dense, Conv1D or recurrent "
                             "layer")
    assert ei.value.layer == "bn"


def test_batchnorm_on_the_time_axis_is_refused_by_the_fold():
    store = weights()
    bn_time = layer("BatchNormalization", "bn_in", axis=[1])
    assert layer_refusals(bn_time) == []   # axis 1 is the feature axis after a recurrent layer's last output
    with pytest.raises(LayerError, match=r"'bn_in' \(BatchNormalization\) normalises axis \[1\]"):
        fold_batchnorm(read([bn_time, LSTM, DENSE], store))


# --------------------------------------------------------------------------
# the corpus: inspect shows the importer's refusal on the refused layer

def _agree(path):
    with pytest.raises(RnnskipError) as ei:
        load_model_file(path)
    error = str(ei.value)
    desc = describe_model_file(path)
    ins = inspect_file(path, target_names=["cortex-m4"])
    assert desc.error == error and ins.blockers[0] == error and not ins.converts
    refused = getattr(ei.value, "layer", None)
    if refused is not None:
        row = next(row for row in desc.layers if row.name == refused)
        assert row.status == f"refused: {error}"
        assert {l.name: l.status for l in ins.layers}[refused] == row.status
        if row.refusals:   # a refusal of the layer on its own: the very line the importer raised
            assert row.refusals[0] == error
    for row in desc.layers:   # every layer's own refusals are among inspect's blockers
        assert set(row.refusals) <= set(ins.blockers)
    return error


@pytest.mark.keras
@pytest.mark.parametrize("name", list(km.REFUSED))
def test_inspect_gives_the_importers_refusal_keras_models(zoo, name):
    for path in zoo.refused[name].values():
        error = _agree(path)
        for word in km.REFUSED[name][1]:
            assert word in error


@pytest.fixture(scope="module")
def refused_corpus(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    pytest.importorskip("keras")
    names = {c.name for c in zoo_cases.CASES if c.refused}
    return zoo_cases.build_corpus(tmp_path_factory.mktemp("refused"), names=names)


@pytest.mark.keras
def test_inspect_gives_the_importers_refusal_zoo(refused_corpus):
    assert len(refused_corpus) >= 15
    for f in refused_corpus:
        error = _agree(f.path)
        for word in f.case.refused:
            assert word in error, (f.id, error)


# --------------------------------------------------------------------------
# describe_model_file: every layer's row

def _old_h5(path, layers):
    """A Keras 2.2-era Sequential .h5: ``layers`` = [(class, config, {role: array})]."""
    import json

    import h5py
    entries = []
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        mw = f.create_group("model_weights")
        for i, (cls, cfg, arrays) in enumerate(layers):
            cfg = dict(cfg, **({"batch_input_shape": [None, None, F]} if i == 0 else {}))
            entries.append({"class_name": cls, "config": cfg})
            g = mw.create_group(cfg["name"])
            names = [f"{cfg['name']}/{role}:0" for role in arrays]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, a in zip(names, arrays.values()):
                g[n] = a
        f.attrs["model_config"] = json.dumps(
            {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": entries}}).encode()
    return path


def test_describe_rows(tmp_path):
    store = weights().arrays
    path = _old_h5(tmp_path / "m.h5", [
        ("Masking", {"name": "masking", "mask_value": 0.0}, {}),
        ("BatchNormalization", {"name": "bn_in", "axis": -1}, store["bn_in"]),
        ("LSTM", {"name": "lstm", "units": U, "recurrent_dropout": 0.2}, store["lstm"]),
        ("Dropout", {"name": "dropout", "rate": 0.5}, {}),
        ("Dense", {"name": "dense", "units": D, "activation": "linear"}, store["dense"]),
        ("Activation", {"name": "act", "activation": "softmax"}, {})])
    desc = describe_model_file(path)
    assert (desc.format, desc.keras_version, desc.model_name, desc.error) == ("h5", "2.2.4", "sequential_1", "")
    rows = [(r.name, r.cls, r.params, r.options, r.status) for r in desc.layers]
    assert rows == [
        ("masking", "Masking", 0, "mask_value=0.0", "converted (masking)"),
        ("bn_in", "BatchNormalization", 4 * F, "", "folded into 'lstm'"),
        ("lstm", "LSTM", (F + U + 1) * 4 * U, "units=4", "converted"),
        ("dropout", "Dropout", 0, "rate=0.5", "dropped (inference no-op)"),
        ("dense", "Dense", (U + 1) * D, "units=5, activation=linear", "converted"),
        ("act", "Activation", 0, "activation=softmax", "folded into 'dense'")]
    assert load_model_file(path).notes == [
        "recurrent_dropout=0.2 of 'lstm' ignored (inference no-op)", "folded BatchNormalization 'bn_in' into 'lstm'",
        "dropped Dropout 'dropout' (inference no-op)", "folded Activation 'act' (softmax) into 'dense'"]


def test_describe_a_refused_model(tmp_path):
    store = weights().arrays
    path = _old_h5(tmp_path / "m.h5", [
        ("LSTM", {"name": "lstm", "units": U, "stateful": True}, store["lstm"]),
        ("Dropout", {"name": "dropout", "rate": 0.5}, {}),
        ("Dense", {"name": "dense", "units": D, "activation": "selu"}, store["dense"])])
    desc = describe_model_file(path)
    stateful = ("layer 'lstm' (LSTM) has stateful=True, which is not supported: rnnskip converts stateless RNNs "
                "(re-save with stateful=False)")
    selu = ("layer 'dense' (Dense) uses activation='selu': rnnskip supports Dense activations linear, relu, relu6, "
            "leaky_relu, tanh, sigmoid, hard_sigmoid, softsign, softmax and log_softmax (last layer)")
    assert desc.error == stateful
    assert [(r.status, r.refusals) for r in desc.layers] == [
        (f"refused: {stateful}", [stateful]), ("dropped (inference no-op)", []), (f"refused: {selu}", [selu])]
    ins = inspect_file(path)
    assert ins.blockers == [stateful, selu] and not ins.converts
    assert ins.params == (F + U + 1) * 4 * U + (U + 1) * D


def _seq_bn_pool(pool_cls, gamma_sign):
    """LSTM(return_sequences) -> BatchNormalization -> pooling over time -> Dense, gammas of one sign."""
    n = lambda *shape: RNG.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
    store = ArrayWeights({
        "lstm": {"kernel": n(F, 4 * U), "recurrent_kernel": n(U, 4 * U), "bias": n(4 * U)},
        "bn_seq": {"gamma": gamma_sign * (np.abs(n(U)) + 0.5), "beta": n(U), "moving_mean": n(U),
                   "moving_variance": np.abs(n(U)) + 0.5},
        "out": {"kernel": n(U, 2), "bias": n(2)}})
    nodes = read([layer("LSTM", "lstm", units=U, return_sequences=True), layer("BatchNormalization", "bn_seq"),
                  layer(pool_cls, "pool"), OUT], store)
    return store, nodes


@pytest.mark.parametrize("pool_cls,gamma_sign", [("GlobalAveragePooling1D", -1.0), ("GlobalMaxPooling1D", 1.0)])
def test_batchnorm_before_pooling_over_time_folds_into_the_dense_after_it(pool_cls, gamma_sign):
    """The affine map commutes with the mean (any scales) and with the max (positive scales): Dense(pool(bn(h)))
    = Dense'(pool(h)) with the map folded into Dense'."""
    store, nodes = _seq_bn_pool(pool_cls, gamma_sign)
    left = fold_batchnorm(nodes)
    assert [n.name for n in left] == ["lstm", "pool", "out"] and nodes[1].status == "folded into 'out'"
    h = RNG.normal(size=(6, 9, U))
    pool = np.mean if pool_cls == "GlobalAveragePooling1D" else np.max
    w, folded = store.arrays["out"], nodes[3].value
    np.testing.assert_allclose(pool(h, axis=1) @ folded.kernel + folded.bias,
                               pool(bn_map(store, "bn_seq", h), axis=1) @ w["kernel"] + w["bias"], rtol=1e-5, atol=1e-5)


def test_batchnorm_with_a_negative_scale_before_max_pooling_is_refused():
    _, nodes = _seq_bn_pool("GlobalMaxPooling1D", -1.0)
    with pytest.raises(LayerError) as ei:
        fold_batchnorm(nodes)
    assert str(ei.value) == ("layer 'bn_seq' (BatchNormalization) scales some features by 0 or less before the max "
                             "pooling 'pool', which the maximum does not commute with: rnnskip folds a "
                             "BatchNormalization through GlobalMaxPooling1D only when every scale is positive (put it "
                             "after the pooling)")
