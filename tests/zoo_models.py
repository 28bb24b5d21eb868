"""The model corpus: tiny recurrent models as people publish them, written by
every Keras generation, each converted end to end or refused with its one-line reason.

Generations (``Case.gens``):

* ``"k2"``: tf_keras 2.x (``import tf_keras``) -> ``.h5`` and ``.keras``
* ``"k3"``: Keras 3 (``import keras``) -> ``.keras`` and legacy ``.h5``
* ``"legacy"``: standalone Keras 2.0-2.3 / tf.keras 1.x layouts, written here with h5py
  (``keras_version`` 2.0.8, 2.1.2, 2.2.4, 2.2.4-tf, 2.3.0-tf, 2.3.1; Sequential configs as a
  list or dict, functional ``Model`` with an InputLayer named ``input``, no InputLayer and
  ``batch_input_shape`` on the first layer, time dimension ``None``, weight paths
  ``lstm_1/lstm_1/kernel:0`` or ``lstm/lstm/lstm_cell/kernel:0``, CuDNNLSTM/CuDNNGRU
  weights in CuDNN layout). Their reference outputs come from the same model built in
  tf_keras with the same weights (the semantics of these layers did not change).

:func:`run_corpus` builds every file, then per file: imports it, reads its rows as a
user's ``--data`` (x and y, no lengths: the model's own masking decides which steps run),
checks the float reference against Keras (1e-5), quantises it, generates C, builds it for this machine
and for the Cortex-M4 (identical sources are built once) and compares golden, host
build and emulated firmware bit for bit; refused files must fail with the case's
words in a one-line error; ``rnnskip inspect`` must agree on every file.
:func:`render_matrix` turns the results into docs/support_matrix.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

T = 7          # time steps of the test data
N = 6          # sequences
VOCAB = 13
FEATURES = 3
MATRIX_PATH = Path(__file__).resolve().parent.parent / "docs" / "support_matrix.md"


def _L(k):
    return k.layers


@dataclass
class Case:
    name: str
    layer: str                    # support-matrix row: the layer ...
    option: str                   # ... and the option exercised
    layers: Callable              # (k) -> list of layers after the input
    gens: Tuple[str, ...] = ("k2", "k3")
    tokens: bool = False
    functional: bool = False
    mask_value: Optional[float] = None
    fixed_t: bool = False         # Input(shape=(T, F)) instead of (None, F)
    t: int = T                    # time steps of its test data
    x_scale: float = 1.0          # test data times this (relu6 cases: outputs past 6, so the clip is exercised)
    shape: Optional[tuple] = None   # another input shape (refused cases: e.g. images for a Conv2D)
    refused: Optional[List[str]] = None   # words of the expected one-line refusal
    # legacy files only
    version: str = ""
    style: str = "seq_dict"       # seq_list | seq_dict | model
    paths: str = "plain"          # plain: <l>/<l>/kernel:0; cell: <l>/<l>/<l>_cell/kernel:0
    cudnn: Dict[str, str] = field(default_factory=dict)   # layer name -> CuDNNLSTM / CuDNNGRU


CASES: List[Case] = [
    # ---- tf_keras 2 and Keras 3, both file formats each
    Case("gru_v1_hard_sigmoid", "GRU", "reset_after=False, recurrent_activation=hard_sigmoid (2017 style)",
         lambda k: [_L(k).GRU(5, reset_after=False, recurrent_activation="hard_sigmoid"),
                    _L(k).Dense(1, activation="sigmoid")]),
    Case("lstm_relu_regression", "LSTM", "activation=relu, linear regression head",
         lambda k: [_L(k).LSTM(6, activation="relu"), _L(k).Dense(1)], functional=True),
    Case("lstm_softsign_hsig_tokens", "LSTM", "activation=softsign, recurrent_activation=hard_sigmoid, Embedding",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True),
                    _L(k).LSTM(5, activation="softsign", recurrent_activation="hard_sigmoid"),
                    _L(k).Dense(3, activation="softmax")], tokens=True),
    Case("gru_linear_multi_regression", "GRU", "activation=linear, Masking, 3-output regression",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(5, activation="linear"), _L(k).Dense(3)],
         functional=True, mask_value=0.0),
    Case("dense_stack", "Dense head", "Dense->Dense stack: softsign, hard_sigmoid, relu, softmax",
         lambda k: [_L(k).LSTM(6), _L(k).Dense(8, activation="softsign"),
                    _L(k).Dense(6, activation="hard_sigmoid"), _L(k).Dense(5, activation="relu"),
                    _L(k).Dense(3, activation="softmax")]),
    Case("seq_labelling", "LSTM", "return_sequences=True + TimeDistributed(Dense softmax): per-step classes",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(6, return_sequences=True),
                    _L(k).TimeDistributed(_L(k).Dense(4, activation="softmax"))], tokens=True),
    Case("seq_regression", "LSTM", "return_sequences=True + Dense on 3-D: per-step 2-output regression",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(5, return_sequences=True), _L(k).Dense(2)],
         functional=True, mask_value=0.0),
    Case("seq_gru_no_head", "GRU", "return_sequences=True at the output, no head",
         lambda k: [_L(k).GRU(4, return_sequences=True, activation="softsign")]),
    Case("noops_and_bn", "no-ops / BatchNormalization",
         "Masking, BN on the input, dropout/recurrent_dropout, unit_forget_bias, GaussianNoise, "
         "ActivityRegularization, Dropout, Dense->BN->Activation",
         lambda k: [_L(k).Masking(0.0), _L(k).BatchNormalization(),
                    _L(k).LSTM(6, dropout=0.2, recurrent_dropout=0.3, unit_forget_bias=True),
                    _L(k).GaussianNoise(0.1), _L(k).ActivityRegularization(l1=0.01), _L(k).Dropout(0.5),
                    _L(k).Dense(8), _L(k).BatchNormalization(), _L(k).Activation("relu"), _L(k).Dense(1)],
         mask_value=0.0),
    Case("lstm_no_bias_hsig", "LSTM", "use_bias=False, recurrent_activation=hard_sigmoid, recurrent_dropout",
         lambda k: [_L(k).LSTM(5, use_bias=False, recurrent_activation="hard_sigmoid", recurrent_dropout=0.2),
                    _L(k).Dense(2, activation="softmax", use_bias=False)], functional=True),
    Case("td_softsign_gru", "TimeDistributed(Dense)", "softsign input Dense, GRU activation=softsign",
         lambda k: [_L(k).TimeDistributed(_L(k).Dense(4, activation="softsign")),
                    _L(k).GRU(5, activation="softsign"), _L(k).Dense(1, activation="sigmoid")]),
    Case("bn_relu_after_lstm", "BatchNormalization", "after LSTM, then Activation(relu): one Dense with relu",
         lambda k: [_L(k).LSTM(6), _L(k).BatchNormalization(), _L(k).Activation("relu"),
                    _L(k).Dense(3, activation="softmax")]),
    Case("bn_after_lstm", "BatchNormalization", "after LSTM (folded into the next Dense), Activation(softmax)",
         lambda k: [_L(k).LSTM(6), _L(k).BatchNormalization(), _L(k).Dense(3), _L(k).Activation("softmax")],
         functional=True),
    Case("rnn_tanh_tokens", "SimpleRNN", "activation=tanh, Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).SimpleRNN(6),
                    _L(k).Dense(3, activation="softmax")], tokens=True),
    Case("rnn_relu_lstm_stack", "SimpleRNN", "activation=relu, Masking, stacked under an LSTM",
         lambda k: [_L(k).Masking(0.0), _L(k).SimpleRNN(5, activation="relu", return_sequences=True),
                    _L(k).LSTM(4), _L(k).Dense(2, activation="softmax")], functional=True, mask_value=0.0),
    Case("rnn_cell_in_rnn", "SimpleRNN", "RNN(SimpleRNNCell), dropout, use_bias=False, sigmoid output",
         lambda k: [_L(k).RNN(_L(k).SimpleRNNCell(5, dropout=0.1, use_bias=False)),
                    _L(k).Dense(1, activation="sigmoid")]),
    Case("lstm_gru_stack", "LSTM, GRU", "mixed stack: LSTM (return_sequences) then GRU",
         lambda k: [_L(k).LSTM(5, return_sequences=True), _L(k).GRU(4), _L(k).Dense(3, activation="softmax")]),
    Case("stack3_gru_lstm_rnn", "LSTM, GRU, SimpleRNN", "3-layer mixed stack: GRU, LSTM, SimpleRNN, Masking",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(6, return_sequences=True),
                    _L(k).LSTM(5, return_sequences=True), _L(k).SimpleRNN(4), _L(k).Dense(3, activation="softmax")],
         functional=True, mask_value=0.0),
    Case("stack4_tokens", "LSTM, GRU", "4-layer stack: LSTM, GRU, LSTM, GRU(reset_after=False), Embedding",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(6, return_sequences=True),
                    _L(k).GRU(5, return_sequences=True), _L(k).LSTM(4, return_sequences=True),
                    _L(k).GRU(4, reset_after=False), _L(k).Dense(1, activation="sigmoid")], tokens=True),
    # padding as Keras runs it (issue 19): the data have post-, pre-padded and holed rows and no lengths
    Case("emb_no_mask_padded", "Embedding", "no mask_zero: post/pre-padded rows, id 0 run as a step (no lengths)",
         lambda k: [_L(k).Embedding(VOCAB, 5), _L(k).GRU(6), _L(k).Dense(1, activation="sigmoid")], tokens=True),
    Case("emb_mask_zero_padded", "Embedding", "mask_zero=True: id 0 skipped in post/pre padding and holes "
         "(no lengths)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(6), _L(k).Dense(3, activation="softmax")],
         tokens=True, functional=True),

    # ---- standalone Keras 2.0-2.3 and tf.keras 1.x layouts (h5py)
    Case("k20_seq_list_lstm", "LSTM", "Keras 2.0 defaults: recurrent_activation=hard_sigmoid, Sequential as a list",
         lambda k: [_L(k).LSTM(5, recurrent_activation="hard_sigmoid", name="lstm_1"),
                    _L(k).Dense(2, activation="softmax", name="output")],
         gens=("legacy",), version="2.0.8", style="seq_list"),
    Case("k21_model_gru", "GRU", "Keras 2.1 functional Model, input 'input', no reset_after key, hard_sigmoid",
         lambda k: [_L(k).GRU(6, reset_after=False, recurrent_activation="hard_sigmoid", name="gru_1"),
                    _L(k).Dropout(0.5, name="dropout_1"), _L(k).Dense(1, activation="sigmoid", name="output")],
         gens=("legacy",), version="2.1.2", style="model"),
    Case("k22_embedding_lstm", "LSTM", "Keras 2.2 Embedding + SpatialDropout1D + LSTM",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True, name="embedding_1"),
                    _L(k).SpatialDropout1D(0.2, name="spatial_dropout1d_1"),
                    _L(k).LSTM(5, recurrent_activation="hard_sigmoid", name="lstm_1"),
                    _L(k).Dense(3, activation="softmax", name="dense_1")],
         gens=("legacy",), tokens=True, version="2.2.4"),
    Case("k22_cudnnlstm", "CuDNNLSTM", "CuDNN weight layout, regression head",
         lambda k: [_L(k).LSTM(5, name="cu_dnnlstm_1"), _L(k).Dense(2, name="dense_1")],
         gens=("legacy",), version="2.2.4", cudnn={"cu_dnnlstm_1": "CuDNNLSTM"}),
    Case("k22_cudnngru", "CuDNNGRU", "CuDNN weight layout (GRU reset_after=True)",
         lambda k: [_L(k).GRU(4, reset_after=True, name="cu_dnngru_1"),
                    _L(k).Dense(3, activation="softmax", name="dense_1")],
         gens=("legacy",), version="2.2.4", cudnn={"cu_dnngru_1": "CuDNNGRU"}),
    Case("k22tf_td_per_step", "TimeDistributed(Dense)",
         "tf.keras 1.x: TD(Dense relu) -> LSTM(return_sequences) -> TD(Dense softmax)",
         lambda k: [_L(k).TimeDistributed(_L(k).Dense(4, activation="relu"), name="time_distributed"),
                    _L(k).LSTM(5, return_sequences=True, name="lstm"),
                    _L(k).TimeDistributed(_L(k).Dense(3, activation="softmax"), name="time_distributed_1")],
         gens=("legacy",), version="2.2.4-tf"),
    Case("k23tf_bn_head", "BatchNormalization", "tf.keras 2.2/2.3: lstm_cell weight paths, Dense->BN->relu->Dense(1)",
         lambda k: [_L(k).LSTM(6, name="lstm"), _L(k).Dense(8, name="dense"),
                    _L(k).BatchNormalization(name="batch_normalization"), _L(k).Activation("relu", name="activation"),
                    _L(k).Dense(1, name="dense_1")],
         gens=("legacy",), version="2.3.0-tf", paths="cell"),
    Case("k23_stacked_gru", "GRU", "Keras 2.3: Masking, 2 stacked GRU (reset_after=False), 3-output regression",
         lambda k: [_L(k).Masking(0.0, name="masking_1"),
                    _L(k).GRU(5, return_sequences=True, reset_after=False, name="gru_1"),
                    _L(k).GRU(4, reset_after=False, name="gru_2"), _L(k).Dense(3, name="dense_1")],
         gens=("legacy",), mask_value=0.0, version="2.3.1"),

    # ---- refused, with the documented one-line reason
    Case("refuse_elu_lstm", "LSTM", "activation=elu",
         lambda k: [_L(k).LSTM(4, activation="elu", name="lstm_elu"), _L(k).Dense(2)],
         refused=["'lstm_elu'", "(LSTM)", "activation='elu'", "softsign"]),
    Case("refuse_relu_gates", "LSTM", "recurrent_activation=relu (gates outside [0, 1])",
         lambda k: [_L(k).LSTM(4, recurrent_activation="relu", name="lstm_relu_gates"), _L(k).Dense(2)],
         gens=("k2",), refused=["'lstm_relu_gates'", "recurrent_activation='relu'", "[0, 1]"]),
    Case("refuse_selu_dense", "Dense head", "activation=selu",
         lambda k: [_L(k).GRU(4), _L(k).Dense(3, activation="selu", name="selu_dense"), _L(k).Dense(2)],
         gens=("k2",), refused=["'selu_dense'", "(Dense)", "activation='selu'"]),
    Case("refuse_gelu_gru", "GRU", "activation=gelu",
         lambda k: [_L(k).GRU(4, activation="gelu", name="gru_gelu"), _L(k).Dense(2)],
         gens=("k3",), refused=["'gru_gelu'", "(GRU)", "activation='gelu'"]),
    Case("refuse_elu_rnn", "SimpleRNN", "activation=elu",
         lambda k: [_L(k).SimpleRNN(4, activation="elu", name="rnn_elu"), _L(k).Dense(2)],
         gens=("k3",), refused=["'rnn_elu'", "(SimpleRNN)", "activation='elu'"]),
    Case("refuse_bn_time_axis", "BatchNormalization", "axis=1 (time axis)",
         lambda k: [_L(k).BatchNormalization(axis=1, name="bn_time"), _L(k).LSTM(4), _L(k).Dense(2)],
         gens=("k2",), fixed_t=True, refused=["'bn_time'", "(BatchNormalization)", "axis"]),
    Case("activation_between_recurrent", "Activation", "Activation(relu) between two LSTMs (at every step)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Activation("relu", name="act_relu"), _L(k).LSTM(3),
                    _L(k).Dense(2)], gens=("k3",)),
    # Keras 3's log_softmax (tf_keras has none): the device returns the logits, the host applies it
    Case("gru_log_softmax", "Dense head", "activation=log_softmax (Keras 3)",
         lambda k: [_L(k).GRU(5), _L(k).Dense(3, activation="log_softmax")], gens=("k3",)),
    Case("lstm_activation_log_softmax", "Activation", "Activation(log_softmax) after the head's Dense (Keras 3)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Dense(3), _L(k).Activation("log_softmax")],
         gens=("k3",)),
    Case("refuse_keras1", "any", "file written by Keras 1.x",
         lambda k: [_L(k).LSTM(4, name="lstm_1"), _L(k).Dense(2, name="dense_1")],
         gens=("legacy",), version="1.2.2", refused=["Keras 1.2.2", "Keras 2.0 and later"]),
]

# ---- Conv1D front ends (issue 20), streamed: the recurrent layers run on the frames the convolutions
# and poolings emit; longer sequences so strides and pooling leave several frames
FT = 24
FRONTEND_CASES: List[Case] = [
    Case("conv_causal_gru", "Conv1D", "padding=causal, relu -> GRU",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal", activation="relu"), _L(k).GRU(5),
                    _L(k).Dense(3, activation="softmax")], t=FT),
    Case("conv_valid_lstm", "Conv1D", "padding=valid, linear -> LSTM, regression head",
         lambda k: [_L(k).Conv1D(5, 3), _L(k).LSTM(4), _L(k).Dense(1)], functional=True, t=FT),
    Case("conv_same_gru", "Conv1D", "padding=same (flushed at the end), kernel 4, tanh -> GRU",
         lambda k: [_L(k).Conv1D(4, 4, padding="same", activation="tanh"), _L(k).GRU(4),
                    _L(k).Dense(2, activation="softmax")], t=FT),
    Case("conv_strided_lstm", "Conv1D", "strides=2, padding=causal, relu -> LSTM",
         lambda k: [_L(k).Conv1D(6, 4, strides=2, padding="causal", activation="relu"), _L(k).LSTM(5),
                    _L(k).Dense(3, activation="softmax")], t=FT),
    Case("conv_dilated_rnn", "Conv1D", "dilation_rate=3, padding=causal, use_bias=False -> SimpleRNN",
         lambda k: [_L(k).Conv1D(4, 3, padding="causal", dilation_rate=3, use_bias=False), _L(k).SimpleRNN(5),
                    _L(k).Dense(1, activation="sigmoid")], t=FT),
    Case("conv_maxpool_gru", "MaxPooling1D", "pool_size=2 after Conv1D(causal, relu) -> GRU",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal", activation="relu"), _L(k).MaxPooling1D(2), _L(k).GRU(5),
                    _L(k).Dense(3, activation="softmax")], t=FT),
    Case("conv_avgpool_lstm", "AveragePooling1D", "pool_size=3, strides=2 after Conv1D(valid, relu) -> LSTM",
         lambda k: [_L(k).Conv1D(6, 3, activation="relu"), _L(k).AveragePooling1D(3, strides=2), _L(k).LSTM(4),
                    _L(k).Dense(2, activation="softmax")], functional=True, t=FT),
    Case("conv_bn_relu_gru", "BatchNormalization", "Conv1D -> BN -> Activation(relu) folded into the Conv1D, Dropout",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal"), _L(k).BatchNormalization(), _L(k).Activation("relu"),
                    _L(k).Dropout(0.3), _L(k).GRU(5), _L(k).Dense(3, activation="softmax")], t=FT),
    Case("crnn_two_convs", "Conv1D", "CRNN: Conv1D(same) -> MaxPool -> Conv1D(causal, dilation 2) -> "
         "SpatialDropout1D -> MaxPool -> GRU",
         lambda k: [_L(k).Conv1D(8, 3, padding="same", activation="relu"), _L(k).MaxPooling1D(2),
                    _L(k).Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
                    _L(k).SpatialDropout1D(0.2), _L(k).MaxPooling1D(2), _L(k).GRU(6),
                    _L(k).Dense(4, activation="softmax")], t=FT),
    Case("conv_bn_tanh_conv_lstm", "Conv1D", "Conv1D(valid, strides 2) -> BN -> tanh -> Conv1D(valid) -> LSTM",
         lambda k: [_L(k).Conv1D(6, 5, strides=2), _L(k).BatchNormalization(), _L(k).Activation("tanh"),
                    _L(k).Conv1D(4, 3), _L(k).LSTM(4), _L(k).Dense(3, activation="softmax")],
         functional=True, t=FT),
    Case("conv_relu_bn_lstm", "BatchNormalization", "Conv1D(relu) -> BN folded into the LSTM's input",
         lambda k: [_L(k).Conv1D(5, 3, padding="causal", activation="relu"), _L(k).BatchNormalization(),
                    _L(k).LSTM(5), _L(k).Dense(3, activation="softmax")], t=FT),
    Case("conv_lstm_gru_stack", "Conv1D", "Conv1D(causal) -> LSTM (return_sequences) -> GRU",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal", activation="relu"), _L(k).LSTM(5, return_sequences=True),
                    _L(k).GRU(4), _L(k).Dense(2, activation="softmax")], t=FT),
    Case("pool_first_conv_gru", "MaxPooling1D", "on the raw features, then Conv1D(valid) -> GRU",
         lambda k: [_L(k).MaxPooling1D(2), _L(k).Conv1D(4, 2), _L(k).GRU(4), _L(k).Dense(2, activation="softmax")],
         t=FT),
    Case("conv_same_dilated_avgpool", "AveragePooling1D", "after Conv1D(same, dilation 2, relu) -> GRU regression",
         lambda k: [_L(k).Conv1D(4, 3, padding="same", dilation_rate=2, activation="relu"),
                    _L(k).AveragePooling1D(2), _L(k).GRU(4), _L(k).Dense(1)], t=FT),
    Case("dw_valid_gru", "DepthwiseConv1D", "padding=valid, relu -> GRU",
         lambda k: [_L(k).DepthwiseConv1D(3, activation="relu"), _L(k).GRU(5),
                    _L(k).Dense(3, activation="softmax")], t=FT),
    Case("dw_mult2_same_bn_lstm", "DepthwiseConv1D", "depth_multiplier=2, padding=same -> BN -> relu (folded) -> LSTM",
         lambda k: [_L(k).DepthwiseConv1D(3, depth_multiplier=2, padding="same"), _L(k).BatchNormalization(),
                    _L(k).Activation("relu"), _L(k).LSTM(4), _L(k).Dense(2, activation="softmax")],
         functional=True, t=FT),
    Case("dw_pointwise_pool_gru", "DepthwiseConv1D", "separable by hand: DepthwiseConv1D(strides 2, valid, tanh) -> "
         "Conv1D(kernel 1, relu) -> MaxPooling1D -> GRU",
         lambda k: [_L(k).DepthwiseConv1D(4, strides=2, activation="tanh"),
                    _L(k).Conv1D(6, 1, activation="relu"), _L(k).MaxPooling1D(2), _L(k).GRU(4),
                    _L(k).Dense(3, activation="softmax")], t=FT),
    Case("bn_dw_dilated_rnn", "DepthwiseConv1D", "BN on the input folded into DepthwiseConv1D(valid, dilation 2, "
         "depth_multiplier 3, no bias) -> SimpleRNN regression",
         lambda k: [_L(k).BatchNormalization(), _L(k).DepthwiseConv1D(3, dilation_rate=2, depth_multiplier=3,
                                                                     use_bias=False),
                    _L(k).SimpleRNN(4), _L(k).Dense(1)], t=FT),
    Case("sep_causal_gru", "SeparableConv1D", "padding=causal (tf_keras: Keras 3 has no causal one), relu -> GRU",
         lambda k: [_L(k).SeparableConv1D(6, 3, padding="causal", activation="relu"), _L(k).GRU(5),
                    _L(k).Dense(3, activation="softmax")], gens=("k2",), t=FT),
    Case("sep_same_dilated_gru", "SeparableConv1D", "padding=same, dilation_rate=2, tanh -> GRU regression",
         lambda k: [_L(k).SeparableConv1D(4, 3, padding="same", dilation_rate=2, activation="tanh"), _L(k).GRU(4),
                    _L(k).Dense(1)], t=FT),
    Case("bn_sep_strided_bn_lstm", "SeparableConv1D", "BN -> SeparableConv1D(valid, strides 2, depth_multiplier 2, "
         "no bias) -> BN -> relu (all folded) -> MaxPooling1D -> LSTM",
         lambda k: [_L(k).BatchNormalization(), _L(k).SeparableConv1D(5, 4, strides=2, depth_multiplier=2,
                                                                     use_bias=False),
                    _L(k).BatchNormalization(), _L(k).Activation("relu"), _L(k).MaxPooling1D(2), _L(k).LSTM(4),
                    _L(k).Dense(2, activation="softmax")], functional=True, t=FT),
    # refused, one line naming the layer
    Case("refuse_conv_after_rnn", "Conv1D", "after the recurrent layer",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Conv1D(4, 3, name="conv_after"), _L(k).GRU(3),
                    _L(k).Dense(2)],
         gens=("k3",), refused=["'conv_after'", "(Conv1D)", "first recurrent layer"]),
    Case("refuse_conv_elu", "Conv1D", "activation=elu",
         lambda k: [_L(k).Conv1D(4, 3, activation="elu", name="conv_elu"), _L(k).LSTM(4), _L(k).Dense(2)],
         gens=("k2",), refused=["'conv_elu'", "(Conv1D)", "activation='elu'"]),
    Case("refuse_masking_conv", "Conv1D", "Masking into a Conv1D",
         lambda k: [_L(k).Masking(0.0), _L(k).Conv1D(4, 3, name="conv_masked"), _L(k).LSTM(4), _L(k).Dense(2)],
         gens=("k3",), refused=["'conv_masked'", "(Conv1D)", "Masking"]),
    Case("refuse_conv_same_strided", "Conv1D", "padding=same with strides=2",
         lambda k: [_L(k).Conv1D(4, 3, strides=2, padding="same", name="conv_same_s2"), _L(k).LSTM(4),
                    _L(k).Dense(2)],
         gens=("k2",), refused=["'conv_same_s2'", "(Conv1D)", "padding='same'", "strides=2"]),
    Case("refuse_pool_same", "MaxPooling1D", "padding=same",
         lambda k: [_L(k).Conv1D(4, 3), _L(k).MaxPooling1D(2, padding="same", name="pool_same"), _L(k).LSTM(4),
                    _L(k).Dense(2)],
         gens=("k3",), refused=["'pool_same'", "(MaxPooling1D)", "padding='same'"]),
    Case("refuse_embedding_conv", "Conv1D", "after an Embedding (token ids)",
         lambda k: [_L(k).Embedding(VOCAB, 5), _L(k).Conv1D(4, 3, name="conv_tokens"), _L(k).LSTM(4), _L(k).Dense(2)],
         gens=("k2",), tokens=True, refused=["'conv_tokens'", "(Conv1D)", "Embedding"]),
    Case("refuse_conv_per_step", "Conv1D", "Conv1D -> LSTM(return_sequences=True) at the output",
         lambda k: [_L(k).Conv1D(4, 3, padding="causal"), _L(k).LSTM(4, return_sequences=True, name="lstm_seq")],
         gens=("k3",), refused=["'lstm_seq'", "front end", "return_sequences=False"]),
    Case("refuse_conv2d", "Conv2D", "Conv2D over [time, features, 1], reshaped into an LSTM",
         lambda k: [_L(k).Conv2D(4, (3, 1), padding="same", name="conv2d_front"), _L(k).Reshape((-1, 4 * FEATURES)),
                    _L(k).LSTM(4), _L(k).Dense(2)],
         gens=("k3",), shape=(None, FEATURES, 1), refused=["'conv2d_front'", "(Conv2D)", "not supported"]),
    Case("refuse_conv_groups", "Conv1D", "groups=2 (a grouped convolution)",
         lambda k: [_L(k).Conv1D(4, 3, groups=2, name="conv_grouped"), _L(k).LSTM(4), _L(k).Dense(2)],
         gens=("k3",), shape=(None, 4), refused=["'conv_grouped'", "(Conv1D)", "groups=2", "DepthwiseConv1D"]),
    Case("refuse_dw_same_strided", "DepthwiseConv1D", "padding=same with strides=2",
         lambda k: [_L(k).DepthwiseConv1D(3, strides=2, padding="same", name="dw_same_s2"), _L(k).LSTM(4),
                    _L(k).Dense(2)],
         gens=("k3",), refused=["'dw_same_s2'", "(DepthwiseConv1D)", "padding='same'", "strides=2"]),
]
CASES += FRONTEND_CASES


def _reduce(k, what: str):
    """The mean or maximum op over an axis in Keras generation ``k``: ``keras.ops.mean`` / ``max`` (Keras 3: op layers
    Mean, Max), ``tf.reduce_mean`` / ``reduce_max`` (tf_keras: TFOpLambda)."""
    if k.__name__.startswith("tf_keras"):
        import tensorflow as tf
        return getattr(tf, f"reduce_{what}")
    return getattr(k.ops, what)


def _bi(k, inner, **kw):
    return _L(k).Bidirectional(inner, **kw)


# Bidirectional (issue 20 item 3): the forward direction streams, the backward one runs over the buffered window
# at the end (docs/bidirectional.md); masked rows are post-, pre-padded and holed as above
BIDI_CASES: List[Case] = [
    Case("bidi_lstm_concat", "Bidirectional", "LSTM, merge_mode=concat, softmax head",
         lambda k: [_bi(k, _L(k).LSTM(5)), _L(k).Dense(3, activation="softmax")]),
    Case("bidi_gru_sum_masking", "Bidirectional", "GRU, merge_mode=sum, Masking (post/pre-padded, holed rows)",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(4), merge_mode="sum"), _L(k).Dense(2)],
         functional=True, mask_value=0.0),
    Case("bidi_lstm_ave_tokens", "Bidirectional", "LSTM, merge_mode=ave, Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).LSTM(4), merge_mode="ave"),
                    _L(k).Dense(1, activation="sigmoid")], tokens=True),
    Case("bidi_gru_mul", "Bidirectional", "GRU(reset_after=False), merge_mode=mul",
         lambda k: [_bi(k, _L(k).GRU(5, reset_after=False), merge_mode="mul"), _L(k).Dense(3, activation="softmax")],
         functional=True),
    Case("bidi_seq_into_lstm", "Bidirectional", "GRU return_sequences=True (concat) feeding an LSTM, Masking",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(4, return_sequences=True)), _L(k).LSTM(5),
                    _L(k).Dense(2, activation="softmax")], mask_value=0.0),
    Case("bidi_stack_middle", "Bidirectional", "stack: LSTM -> Bidirectional(LSTM, sum, return_sequences) -> GRU, "
         "Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(5, return_sequences=True),
                    _bi(k, _L(k).LSTM(4, return_sequences=True), merge_mode="sum"), _L(k).GRU(4),
                    _L(k).Dense(3, activation="softmax")], tokens=True, functional=True),
    Case("bidi_rnn_mul_seq", "Bidirectional", "SimpleRNN, merge_mode=mul, return_sequences=True into a SimpleRNN",
         lambda k: [_bi(k, _L(k).SimpleRNN(4, return_sequences=True), merge_mode="mul"), _L(k).SimpleRNN(3),
                    _L(k).Dense(1)]),
    Case("refuse_bidi_merge_none", "Bidirectional", "merge_mode=None",
         lambda k: [_bi(k, _L(k).LSTM(4), merge_mode=None, name="bidi_none")],
         gens=("k3",), refused=["'bidi_none'", "(Bidirectional)", "merge_mode=None"]),
    Case("refuse_bidi_backward_layer", "Bidirectional", "backward_layer with other options",
         lambda k: [_bi(k, _L(k).LSTM(4), backward_layer=_L(k).LSTM(4, go_backwards=True, activation="relu"),
                        name="bidi_bw"), _L(k).Dense(2)],
         gens=("k3",), refused=["'bidi_bw'", "(Bidirectional)", "backward_layer", "activation"]),
    Case("bidi_per_step_head", "Bidirectional", "LSTM return_sequences=True, merge_mode=ave, "
         "TimeDistributed(Dense softmax) per step, Masking",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).LSTM(4, return_sequences=True), merge_mode="ave"),
                    _L(k).TimeDistributed(_L(k).Dense(3, activation="softmax"))], mask_value=0.0),
    Case("bidi_seq_gru_per_step", "Bidirectional", "GRU return_sequences=True (concat) into a "
         "GRU(return_sequences=True), per-step regression, Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).GRU(4, return_sequences=True)),
                    _L(k).GRU(3, return_sequences=True), _L(k).Dense(2)], tokens=True, functional=True),
    Case("refuse_bidi_elu", "Bidirectional", "SimpleRNN activation=elu (the wrapped layer's refusal)",
         lambda k: [_bi(k, _L(k).SimpleRNN(4, activation="elu"), name="bidi_elu"), _L(k).Dense(2)],
         gens=("k3",), refused=["'bidi_elu'", "activation='elu'"]),
    Case("bidi_twice", "Bidirectional", "two Bidirectional GRUs (concat), the second one's last output",
         lambda k: [_bi(k, _L(k).GRU(4, return_sequences=True)), _bi(k, _L(k).GRU(4), name="bidi_2nd"),
                    _L(k).Dense(2)],
         gens=("k2",)),
]
CASES += BIDI_CASES

class _ConcatPools:
    """A functional-model step: the poolings over time of one tensor (``kinds``), concatenated."""

    def __init__(self, k, kinds, name=None):
        cls = {"avg": _L(k).GlobalAveragePooling1D, "max": _L(k).GlobalMaxPooling1D}
        self.pools = [cls[kind]() for kind in kinds]
        self.cat = _L(k).Concatenate(**({"name": name} if name else {}))

    def __call__(self, x):
        return self.cat([p(x) for p in self.pools])


def _concat_pools(k, *kinds, name=None):
    return _ConcatPools(k, kinds, name)


# Pooling over time after the recurrent layers (docs/pooling.md): GlobalAveragePooling1D averages the steps the mask
# keeps, GlobalMaxPooling1D takes every step (a masked one repeats the output before it; a Bidirectional's are zeros)
POOL_CASES: List[Case] = [
    Case("pool_lstm_avg", "GlobalAveragePooling1D", "after LSTM(return_sequences=True), softmax head",
         lambda k: [_L(k).LSTM(5, return_sequences=True), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(3, activation="softmax")]),
    Case("pool_gru_max_masking", "GlobalMaxPooling1D", "after GRU, Masking (post/pre-padded, holed rows)",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).GlobalMaxPooling1D(),
                    _L(k).Dense(2)], functional=True, mask_value=0.0),
    Case("pool_avg_masking", "GlobalAveragePooling1D", "Masking: the mean over the steps that run, Dense->BN->relu",
         lambda k: [_L(k).Masking(0.0), _L(k).SimpleRNN(5, return_sequences=True), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(4), _L(k).BatchNormalization(), _L(k).Activation("relu"),
                    _L(k).Dense(1, activation="sigmoid")], mask_value=0.0),
    Case("pool_avg_tokens_stack", "GlobalAveragePooling1D", "Embedding(mask_zero=True), LSTM -> GRU stack",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(5, return_sequences=True),
                    _L(k).GRU(4, return_sequences=True), _L(k).GlobalAvgPool1D(),
                    _L(k).Dense(3, activation="softmax")], tokens=True, functional=True),
    Case("pool_max_tokens", "GlobalMaxPooling1D", "Embedding(mask_zero=True), no head",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(4, return_sequences=True),
                    _L(k).GlobalMaxPool1D()], tokens=True),
    Case("pool_bidi_lstm_max_tokens", "GlobalMaxPooling1D", "after Bidirectional(LSTM, concat), Embedding(mask_zero)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).LSTM(4, return_sequences=True)),
                    _L(k).GlobalMaxPooling1D(), _L(k).Dense(2, activation="softmax")], tokens=True),
    Case("pool_bidi_gru_avg_sum", "GlobalAveragePooling1D", "after Bidirectional(GRU, sum), Masking",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(4, return_sequences=True), merge_mode="sum"),
                    _L(k).GlobalAveragePooling1D(), _L(k).Dense(3, activation="softmax")],
         functional=True, mask_value=0.0),
    Case("pool_bidi_into_gru_max", "GlobalMaxPooling1D", "Bidirectional(GRU, ave) into a GRU, Masking",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(4, return_sequences=True), merge_mode="ave"),
                    _L(k).GRU(3, return_sequences=True), _L(k).GlobalMaxPooling1D(), _L(k).Dense(2)],
         mask_value=0.0),
    Case("pool_conv_lstm_avg", "GlobalAveragePooling1D", "CNN-LSTM: Conv1D(causal) -> MaxPooling1D -> LSTM",
         lambda k: [_L(k).Conv1D(4, 3, padding="causal", activation="relu"), _L(k).MaxPooling1D(2),
                    _L(k).LSTM(5, return_sequences=True), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(3, activation="softmax")], t=11),
    Case("pool_conv_gru_max_same", "GlobalMaxPooling1D", "Conv1D(padding=same, dilation_rate=2) -> GRU",
         lambda k: [_L(k).Conv1D(4, 3, padding="same", dilation_rate=2), _L(k).GRU(4, return_sequences=True),
                    _L(k).GlobalMaxPooling1D(), _L(k).Dense(2, activation="softmax")], functional=True, t=11),
    Case("pool_bn_avg", "GlobalAveragePooling1D", "LSTM -> BatchNormalization -> pooling (BN folded into the Dense)",
         lambda k: [_L(k).LSTM(5, return_sequences=True), _L(k).BatchNormalization(), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(3, activation="softmax")], functional=True),
    Case("pool_bn_max_masking", "GlobalMaxPooling1D", "Masking, GRU -> BatchNormalization -> pooling (BN folded)",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).BatchNormalization(),
                    _L(k).GlobalMaxPooling1D(), _L(k).Dense(2)], mask_value=0.0),
    Case("pool_concat_bigru_tokens", "Concatenate", "of GlobalAveragePooling1D and GlobalMaxPooling1D of a "
         "Bidirectional(GRU), Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).GRU(4, return_sequences=True)),
                    _concat_pools(k, "avg", "max"), _L(k).Dense(2, activation="softmax")], tokens=True,
         functional=True),
    Case("pool_concat_max_avg_masking", "Concatenate", "of GlobalMaxPooling1D and GlobalAveragePooling1D of an LSTM, "
         "Masking, BatchNormalization before the poolings",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(5, return_sequences=True), _L(k).BatchNormalization(),
                    _concat_pools(k, "max", "avg"), _L(k).Dense(3, activation="softmax")], functional=True,
         mask_value=0.0),
    Case("refuse_concat_same_pool", "Concatenate", "of two GlobalAveragePooling1D",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _concat_pools(k, "avg", "avg", name="cat_avg"),
                    _L(k).Dense(2)], gens=("k3",), functional=True,
         refused=["'cat_avg'", "(Concatenate)", "some are the same kind"]),
    Case("refuse_pool_keepdims", "GlobalAveragePooling1D", "keepdims=True",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).GlobalAveragePooling1D(keepdims=True, name="gap_k"),
                    _L(k).Dense(2)],
         gens=("k3",), refused=["'gap_k'", "(GlobalAveragePooling1D)", "keepdims=True"]),
    Case("refuse_pool_channels_first", "GlobalMaxPooling1D", "data_format=channels_first",
         lambda k: [_L(k).LSTM(4, return_sequences=True),
                    _L(k).GlobalMaxPooling1D(data_format="channels_first", name="gmp_cf")],
         gens=("k2",), refused=["'gmp_cf'", "(GlobalMaxPooling1D)", "channels_first"]),
    Case("refuse_pool_input", "GlobalAveragePooling1D", "on the input, before the recurrent layer",
         lambda k: [_L(k).Conv1D(4, 3, name="conv_a"), _L(k).GlobalAveragePooling1D(name="gap_in"),
                    _L(k).Dense(2)],
         gens=("k3",), refused=["'gap_in'", "before any recurrent layer"]),
    # Flatten where no time axis is left is the identity (an audit found it refused)
    Case("flatten_pool_dense", "Flatten", "after GlobalAveragePooling1D and between Dense layers (the identity)",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).GlobalAveragePooling1D(),
                    _L(k).Flatten(), _L(k).Dense(5, activation="relu"), _L(k).Flatten(), _L(k).Dense(2)],
         mask_value=0.0),
]
CASES += POOL_CASES

OTHER_CASES = [
    Case("flatten_last_state", "Flatten", "after the last state (the identity), TimeDistributed(Dropout) dropped",
         lambda k: [_L(k).TimeDistributed(_L(k).Dropout(0.2)), _L(k).LSTM(5), _L(k).Flatten(),
                    _L(k).Dense(3, activation="softmax")], functional=True),
    Case("normalization_gru", "Normalization", "adapted (mean, variance weights) on the input, Masking before it",
         lambda k: [_L(k).Masking(0.0), _L(k).Normalization(), _L(k).GRU(5), _L(k).Dense(3, activation="softmax")],
         mask_value=0.0),
    Case("normalization_given_dense_lstm", "Normalization", "mean and variance given, into a per-step Dense",
         lambda k: [_L(k).Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0]),
                    _L(k).Dense(4, activation="relu"), _L(k).LSTM(5), _L(k).Dense(2)], functional=True),
    Case("rescaling_lstm", "Rescaling", "scale=0.125, offset=0.5 on the input",
         lambda k: [_L(k).Rescaling(0.125, offset=0.5), _L(k).LSTM(5), _L(k).Dense(3, activation="softmax")]),
    Case("normalization_conv_valid", "Normalization", "adapted, into a Conv1D(padding=valid) -> GRU",
         lambda k: [_L(k).Normalization(), _L(k).Conv1D(4, 3, activation="relu"), _L(k).GRU(5),
                    _L(k).Dense(3, activation="softmax")], t=11),
    Case("bn_conv_valid_pool", "BatchNormalization", "on the input, into a Conv1D(padding=valid, strides 2) -> "
         "MaxPooling1D -> LSTM",
         lambda k: [_L(k).BatchNormalization(), _L(k).Conv1D(4, 3, strides=2), _L(k).MaxPooling1D(2), _L(k).LSTM(5),
                    _L(k).Dense(2)], functional=True, t=13),
    # a normalisation before a padded Conv1D: the folded convolution pads with the input it maps to 0
    Case("normalization_conv_causal", "Normalization", "mean and variance given, into a Conv1D(padding=causal)",
         lambda k: [_L(k).Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0]),
                    _L(k).Conv1D(4, 3, padding="causal"), _L(k).GRU(4), _L(k).Dense(2)], t=11),
    Case("bn_conv_same_dilated", "BatchNormalization", "on the input, into a Conv1D(padding=same, 4 taps, dilation 2)",
         lambda k: [_L(k).BatchNormalization(), _L(k).Conv1D(4, 4, padding="same", dilation_rate=2, activation="tanh"),
                    _L(k).LSTM(5), _L(k).Dense(3, activation="softmax")], functional=True, t=12),
    Case("conv_bn_conv_causal", "BatchNormalization", "between Conv1D(relu) and a Conv1D(padding=causal)",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal", activation="relu"), _L(k).BatchNormalization(),
                    _L(k).Conv1D(4, 2, padding="causal"), _L(k).GRU(4), _L(k).Dense(2)], t=11),
    Case("rescaling_conv_same_pool", "Rescaling", "into a Conv1D(padding=same) -> AveragePooling1D",
         lambda k: [_L(k).Rescaling(0.5, offset=-0.25), _L(k).Conv1D(4, 3, padding="same", activation="relu"),
                    _L(k).AveragePooling1D(2), _L(k).GRU(4), _L(k).Dense(2)], t=12),
    Case("refuse_normalization_invert", "Normalization", "invert=True",
         lambda k: [_L(k).Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0], invert=True,
                                        name="denorm"), _L(k).GRU(4), _L(k).Dense(2)],
         gens=("k3",), refused=["'denorm'", "(Normalization)", "invert=True"]),
    Case("flatten_sequences", "Flatten", "of the time axis (every step's output side by side), a Dense on it",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Flatten(name="flat_t"), _L(k).Dense(2)],
         gens=("k3",), fixed_t=True),
]
CASES += OTHER_CASES

# An activation on the head's input: an identity Dense with it (ReLU() as Activation('relu')). Appended last: a
# case's random weights come from its index in CASES, so the cases before keep theirs.
HEAD_ACTIVATION_CASES: List[Case] = [
    Case("relu_after_lstm", "Activation", "Activation(relu) on an LSTM's final state, then a softmax Dense",
         lambda k: [_L(k).LSTM(4), _L(k).Activation("relu"), _L(k).Dense(3, activation="softmax")]),
    Case("relu_layer_after_pooling", "ReLU", "ReLU() after GlobalAveragePooling1D of a GRU",
         lambda k: [_L(k).GRU(5, return_sequences=True), _L(k).GlobalAveragePooling1D(), _L(k).ReLU(),
                    _L(k).Dense(2)]),
    Case("tanh_on_every_step", "Activation", "Activation(tanh) on every step of an LSTM, a per-step Dense",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Activation("tanh"), _L(k).Dense(2)]),
    Case("relu_after_bidirectional", "Activation", "Activation(relu) on a Bidirectional GRU's output (concat)",
         lambda k: [_L(k).Bidirectional(_L(k).GRU(3)), _L(k).Activation("relu"), _L(k).Dense(2)]),
    Case("dense_relu_layer", "ReLU", "Dense, then ReLU() (folded into the Dense)",
         lambda k: [_L(k).LSTM(4), _L(k).Dense(6), _L(k).ReLU(), _L(k).Dense(2)]),
    Case("relu6_layer_head", "ReLU", "ReLU(max_value=6) on an LSTM's final state (an identity Dense, relu6)",
         lambda k: [_L(k).LSTM(4), _L(k).ReLU(max_value=6.0, name="relu6"), _L(k).Dense(2)]),
    Case("relu_before_max_pooling", "Activation", "Activation(relu) before GlobalMaxPooling1D (runs after it)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Activation("relu", name="act_pool"),
                    _L(k).GlobalMaxPooling1D(), _L(k).Dense(2)],
         gens=("k3",)),
]
CASES += HEAD_ACTIVATION_CASES

# An activation before a max pooling over time runs after it (it commutes with the maximum); before a mean it does
# not, and runs at every step as a per-step layer with identity weights. Appended last (a case's random weights come
# from its index in CASES).
ACT_POOL_CASES: List[Case] = [
    Case("tanh_before_max_pooling_masked", "Activation",
         "Activation(tanh) before GlobalMaxPooling1D of a masked GRU (runs after it)",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(5, return_sequences=True), _L(k).Activation("tanh"),
                    _L(k).GlobalMaxPooling1D(), _L(k).Dense(3, activation="softmax")], mask_value=0.0),
    Case("relu_before_mean_pooling", "Activation", "Activation(relu) before GlobalAveragePooling1D (at every step)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Activation("relu", name="act_mean"),
                    _L(k).GlobalAveragePooling1D(), _L(k).Dense(2)]),
]
CASES += ACT_POOL_CASES

# Stacked Bidirectional layers (PyTorch's nn.LSTM(num_layers=2, bidirectional=True), stacked BiLSTM taggers): the
# first one's forward direction streams, the rest runs over the buffered window at the end, one layer at a time.
# Appended last.
BIDI_STACK_CASES: List[Case] = [
    Case("bidi_two_masked", "Bidirectional", "Bidirectional(LSTM, concat, return_sequences) into Bidirectional(GRU, "
         "sum), Masking (post/pre-padded, holed rows)",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).LSTM(4, return_sequences=True)),
                    _bi(k, _L(k).GRU(3), merge_mode="sum"), _L(k).Dense(3, activation="softmax")],
         mask_value=0.0),
    Case("bidi_two_max_pool_tokens", "Bidirectional", "two Bidirectional layers (GRU concat, LSTM ave) into "
         "GlobalMaxPooling1D, Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).GRU(4, return_sequences=True)),
                    _bi(k, _L(k).LSTM(3, return_sequences=True), merge_mode="ave"), _L(k).GlobalMaxPooling1D(),
                    _L(k).Dense(1, activation="sigmoid")], tokens=True),
    Case("bidi_two_between_per_step", "Bidirectional", "Bidirectional(GRU, mul) -> LSTM -> Bidirectional(SimpleRNN, "
         "concat) -> GRU, all return_sequences, per-step Dense, Masking",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(4, return_sequences=True), merge_mode="mul"),
                    _L(k).LSTM(5, return_sequences=True), _bi(k, _L(k).SimpleRNN(3, return_sequences=True)),
                    _L(k).GRU(3, return_sequences=True), _L(k).TimeDistributed(_L(k).Dense(2))],
         mask_value=0.0, functional=True),
    Case("bidi_three_per_step_avg", "Bidirectional", "three Bidirectional LSTMs (concat, sum, ave) with "
         "return_sequences, per-step softmax head",
         lambda k: [_bi(k, _L(k).LSTM(3, return_sequences=True)),
                    _bi(k, _L(k).LSTM(4, return_sequences=True), merge_mode="sum"),
                    _bi(k, _L(k).LSTM(3, return_sequences=True), merge_mode="ave"),
                    _L(k).Dense(3, activation="softmax")]),
    Case("bidi_two_mean_pool_masked", "Bidirectional", "two Bidirectional GRUs (sum, concat) into "
         "GlobalAveragePooling1D, Masking",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(4, return_sequences=True), merge_mode="sum"),
                    _bi(k, _L(k).GRU(3, return_sequences=True)), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(2, activation="softmax")], mask_value=0.0),
]
CASES += BIDI_STACK_CASES

# Flatten over the time axis (return_sequences=True -> Flatten -> Dense, a fixed number of steps): the head reads
# every step's output side by side. Appended last.
FLATTEN_CASES: List[Case] = [
    Case("flatten_gru_softmax", "Flatten", "of a GRU's outputs at every step (fixed T), softmax Dense",
         lambda k: [_L(k).GRU(5, return_sequences=True), _L(k).Flatten(), _L(k).Dense(3, activation="softmax")],
         fixed_t=True),
    Case("flatten_stack_tokens", "Flatten", "Embedding (no mask) -> LSTM -> GRU(3 units, padded) -> Flatten -> "
         "Dense(relu) -> Dense(sigmoid)",
         lambda k: [_L(k).Embedding(VOCAB, 5), _L(k).LSTM(4, return_sequences=True),
                    _L(k).GRU(3, return_sequences=True), _L(k).Flatten(), _L(k).Dense(6, activation="relu"),
                    _L(k).Dense(1, activation="sigmoid")], tokens=True, fixed_t=True),
    Case("flatten_dense_input_rnn", "Flatten",
         "per-step Dense input -> SimpleRNN -> Flatten -> Dropout -> softmax Dense",
         lambda k: [_L(k).Dense(6, activation="tanh"), _L(k).SimpleRNN(5, return_sequences=True), _L(k).Flatten(),
                    _L(k).Dropout(0.2), _L(k).Dense(3, activation="softmax")], fixed_t=True, functional=True),
    Case("flatten_masking", "Flatten", "Masking (post/pre-padded, holed rows): a masked step's output is the one "
         "before it",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(4, return_sequences=True), _L(k).Flatten(),
                    _L(k).Dense(3, activation="softmax")], fixed_t=True, mask_value=0.0),
    Case("flatten_mask_zero_tokens", "Flatten", "Embedding(mask_zero=True) -> GRU -> Flatten -> Dense",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).GRU(4, return_sequences=True), _L(k).Flatten(),
                    _L(k).Dense(2, activation="softmax")], tokens=True, fixed_t=True),
    Case("refuse_flatten_bidirectional", "Flatten", "after a Bidirectional layer",
         lambda k: [_bi(k, _L(k).GRU(3, return_sequences=True)), _L(k).Flatten(name="flat_bi"), _L(k).Dense(2)],
         gens=("k2",), fixed_t=True, refused=["'flat_bi'", "(Flatten)", "after the Bidirectional layer"]),
    Case("flatten_after_dense", "Flatten", "after a linear per-step Dense (run at every step)",
         lambda k: [_L(k).GRU(4, return_sequences=True), _L(k).Dense(3), _L(k).Flatten(name="flat_d"),
                    _L(k).Dense(2)],
         fixed_t=True),
]
CASES += FLATTEN_CASES

# Layers around a Flatten over time (found by a review): an activation before it runs after it (element by element),
# a BatchNormalization before it folds into the Dense after it per step, layers after it see no time axis. Appended.
FLATTEN_AROUND_CASES: List[Case] = [
    Case("flatten_after_activation", "Flatten", "Activation(relu) between the LSTM and the Flatten (at every step)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Activation("relu"), _L(k).Flatten(),
                    _L(k).Dense(3, activation="softmax")], fixed_t=True),
    Case("flatten_bn_before", "Flatten", "BatchNormalization between a masked GRU and the Flatten (folded per step "
         "into the Dense)",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).BatchNormalization(),
                    _L(k).Flatten(), _L(k).Dense(3, activation="softmax")], fixed_t=True, mask_value=0.0),
    Case("flatten_bn_softmax_after", "Flatten", "Flatten -> BatchNormalization -> Dense -> Softmax(axis=1)",
         lambda k: [_L(k).SimpleRNN(3, return_sequences=True), _L(k).Flatten(), _L(k).BatchNormalization(),
                    _L(k).Dense(3), _L(k).Softmax(axis=1)], fixed_t=True),
    Case("refuse_flatten_channels_first", "Flatten", "data_format=channels_first (unit-major)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Flatten(data_format="channels_first", name="flat_cf"),
                    _L(k).Dense(2)],
         gens=("k2",), fixed_t=True, refused=["'flat_cf'", "(Flatten)", "data_format='channels_first'"]),
]
CASES += FLATTEN_AROUND_CASES

# Linear per-step Dense layers between two recurrent layers (a projection, a bottleneck): folded into the next
# layer's input kernel and bias. Appended last.
DENSE_BETWEEN_CASES: List[Case] = [
    Case("dense_between_lstm_gru", "Dense", "linear per-step Dense between an LSTM and a GRU (folded into the GRU)",
         lambda k: [_L(k).LSTM(5, return_sequences=True), _L(k).Dense(3), _L(k).GRU(4),
                    _L(k).Dense(3, activation="softmax")]),
    Case("dense_between_masked_two", "Dense", "TimeDistributed(Dense) -> Dropout -> Dense between masked GRUs, "
         "per-step head",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True),
                    _L(k).TimeDistributed(_L(k).Dense(6)), _L(k).Dropout(0.3), _L(k).Dense(3, use_bias=False),
                    _L(k).GRU(3, return_sequences=True, reset_after=False), _L(k).Dense(2)], mask_value=0.0),
    Case("dense_between_bidi_tokens", "Dense", "Bidirectional(LSTM) -> Dense -> BatchNormalization -> "
         "Bidirectional(GRU), Embedding(mask_zero=True)",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).LSTM(3, return_sequences=True)),
                    _L(k).Dense(4), _L(k).BatchNormalization(), _bi(k, _L(k).GRU(3), merge_mode="sum"),
                    _L(k).Dense(1, activation="sigmoid")], tokens=True),
    Case("dense_relu_between", "Dense", "Dense(relu) between two LSTMs (run at every step)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Dense(3, activation="relu", name="mid_relu"),
                    _L(k).LSTM(3, name="lstm_after"), _L(k).Dense(2)]),
]
CASES += DENSE_BETWEEN_CASES

# Reshape to one axis per row: what Flatten computes (over time, or the identity where no time axis is left). Appended.
RESHAPE_CASES: List[Case] = [
    Case("reshape_flat_lstm", "Reshape", "Reshape((-1,)) of an LSTM's outputs at every step (fixed T), softmax Dense",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Reshape((-1,)), _L(k).Dense(3, activation="softmax")],
         fixed_t=True),
    Case("reshape_sized_masked_gru", "Reshape", "Reshape((T * units,)) of a masked GRU's outputs",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(3, return_sequences=True), _L(k).Reshape((T * 3,)),
                    _L(k).Dense(2, activation="softmax")], fixed_t=True, mask_value=0.0),
    Case("reshape_last_state", "Reshape", "Reshape((-1,)) of the last state (the identity)",
         lambda k: [_L(k).GRU(4), _L(k).Reshape((-1,)), _L(k).Dense(2, activation="softmax")]),
    Case("refuse_reshape_two_axes", "Reshape", "Reshape to two axes after an LSTM",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Reshape((T * 2, 2), name="resh2"), _L(k).GRU(2),
                    _L(k).Dense(2)],
         gens=("k2",), fixed_t=True, refused=["'resh2'", "(Reshape)", "target_shape=(14, 2)"]),
]
CASES += RESHAPE_CASES

# Found by review: a sized Reshape fixes the steps of an input that declares none; an Activation layer after a Dense
# between recurrent layers is what the refusal names. Appended last.
REVIEW_CASES: List[Case] = [
    Case("reshape_sized_undeclared_t", "Reshape", "Reshape((T * units,)) on an input of undeclared length",
         lambda k: [_L(k).GRU(3, return_sequences=True), _L(k).Reshape((T * 3,)),
                    _L(k).Dense(2, activation="softmax")]),
    Case("activation_after_dense_between", "Dense", "Dense -> Activation(tanh) between two GRUs (run at every step)",
         lambda k: [_L(k).GRU(4, return_sequences=True), _L(k).Dense(3), _L(k).Activation("tanh", name="act_t"),
                    _L(k).GRU(3, name="gru_after"), _L(k).Dense(2)]),
]
CASES += REVIEW_CASES

# Per-step Dense layers with an activation, between recurrent layers or after the last one before pooling or a
# Flatten over time: they run at every step as layers of their own (rnnskip/cells/dense.py). Appended last.
PER_STEP_DENSE_CASES: List[Case] = [
    Case("per_step_relu_flatten", "Dense", "TimeDistributed(Dense(relu)) -> Flatten -> softmax Dense",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).TimeDistributed(_L(k).Dense(3, activation="relu")),
                    _L(k).Flatten(), _L(k).Dense(3, activation="softmax")], fixed_t=True),
    Case("per_step_tanh_gap", "Dense", "Dense(tanh) on every step -> GlobalAveragePooling1D",
         lambda k: [_L(k).GRU(5, return_sequences=True), _L(k).Dense(4, activation="tanh"),
                    _L(k).GlobalAveragePooling1D(), _L(k).Dense(2)]),
    Case("per_step_gmp_masked", "Dense", "masked LSTM -> Dense(relu) -> GlobalMaxPooling1D (its output on zeros "
         "before a row's first step)",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(4, return_sequences=True), _L(k).Dense(5, activation="relu"),
                    _L(k).GlobalMaxPooling1D(name="gmp_m"), _L(k).Dense(2, activation="softmax")], mask_value=0.0),
    Case("per_step_relu_gap_masked", "Dense", "masked LSTM -> Dense(relu) -> GlobalAveragePooling1D",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(4, return_sequences=True), _L(k).Dense(5, activation="relu"),
                    _L(k).GlobalAveragePooling1D(), _L(k).Dense(2, activation="softmax")], mask_value=0.0),
    Case("per_step_sigmoid_gap_tokens", "Dense", "Embedding(mask_zero=True) -> LSTM -> Dense(sigmoid) -> "
         "GlobalAveragePooling1D",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).LSTM(4, return_sequences=True),
                    _L(k).Dense(3, activation="sigmoid"), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(1, activation="sigmoid")], tokens=True),
    Case("per_step_bidi_between", "Dense", "Bidirectional(GRU) -> Dense(relu) -> GRU",
         lambda k: [_bi(k, _L(k).GRU(3, return_sequences=True)), _L(k).Dense(4, activation="relu"), _L(k).GRU(3),
                    _L(k).Dense(2, activation="softmax")]),
    Case("per_step_chain_between", "Dense", "Dense -> Dense(relu) -> Dropout -> Dense between an LSTM and a SimpleRNN "
         "(linear ones folded)",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Dense(6), _L(k).Dense(5, activation="relu"),
                    _L(k).Dropout(0.2), _L(k).Dense(3), _L(k).SimpleRNN(4), _L(k).Dense(2)]),
    Case("per_step_relu_per_step_head", "Dense", "masked GRU -> Dense(relu) -> GRU, per-step head",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).Dense(4, activation="relu"),
                    _L(k).GRU(3, return_sequences=True), _L(k).Dense(2)], mask_value=0.0),
    Case("per_step_relu_dense_gmp", "Dense", "Dense(relu) -> Dense -> GlobalMaxPooling1D (two per-step layers)",
         lambda k: [_L(k).GRU(4, return_sequences=True), _L(k).Dense(5, activation="relu"), _L(k).Dense(3),
                    _L(k).GlobalMaxPooling1D(), _L(k).Dense(2)]),
    Case("per_step_frontend_gap", "Dense", "Conv1D front end -> LSTM -> Dense(relu) -> GlobalAveragePooling1D",
         lambda k: [_L(k).Conv1D(4, 3, padding="causal", activation="relu"), _L(k).LSTM(4, return_sequences=True),
                    _L(k).Dense(3, activation="relu"), _L(k).GlobalAveragePooling1D(), _L(k).Dense(2)]),
    Case("refuse_per_step_softmax_between", "Dense", "Dense(softmax) between two GRUs",
         lambda k: [_L(k).GRU(4, return_sequences=True), _L(k).Dense(3, activation="softmax", name="mid_sm"),
                    _L(k).GRU(3), _L(k).Dense(2)],
         gens=("k2",), refused=["'mid_sm'", "activation='softmax'", "per-step Dense layers"]),
    # found by review: Flatten reads the Dense's act(bias) at the masked steps before a row's first, as max pooling does
    Case("per_step_flatten_masked", "Dense", "masked LSTM -> Dense -> Flatten (its output on zeros before a row's "
         "first step)",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(4, return_sequences=True), _L(k).Dense(3),
                    _L(k).Flatten(name="flat_m"), _L(k).Dense(2)], fixed_t=True, mask_value=0.0),
    # an activation alone on every step, read by a recurrent layer or a mean over time: identity weights, at every step
    Case("per_step_activation_between", "Activation", "Activation(relu) between an LSTM and a GRU (at every step)",
         lambda k: [_L(k).LSTM(5, return_sequences=True), _L(k).Activation("relu"), _L(k).GRU(4),
                    _L(k).Dense(2, activation="softmax")]),
    Case("per_step_relu_layer_gap_masked", "Activation", "masked GRU -> ReLU() -> GlobalAveragePooling1D",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(5, return_sequences=True), _L(k).ReLU(),
                    _L(k).GlobalAveragePooling1D(), _L(k).Dense(2)], mask_value=0.0),
    Case("per_step_tanh_between_bidi_tokens", "Activation", "Embedding(mask_zero=True) -> Bidirectional(LSTM) -> "
         "Activation(tanh) -> LSTM",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _bi(k, _L(k).LSTM(3, return_sequences=True)),
                    _L(k).Activation("tanh"), _L(k).LSTM(3), _L(k).Dense(1, activation="sigmoid")], tokens=True),
    Case("per_step_sigmoid_flatten_masked_tokens", "Dense", "Embedding(mask_zero=True) -> GRU -> "
         "TimeDistributed(Dense(sigmoid)) -> Flatten",
         lambda k: [_L(k).Embedding(VOCAB, 5, mask_zero=True), _L(k).GRU(4, return_sequences=True),
                    _L(k).TimeDistributed(_L(k).Dense(3, activation="sigmoid")), _L(k).Flatten(),
                    _L(k).Dense(2, activation="softmax")], tokens=True, fixed_t=True),
    Case("refuse_per_step_gmp_masked_bidi", "Dense", "masked Bidirectional(GRU) -> Dense(relu) -> GlobalMaxPooling1D",
         lambda k: [_L(k).Masking(0.0), _bi(k, _L(k).GRU(3, return_sequences=True)), _L(k).Dense(4, activation="relu"),
                    _L(k).GlobalMaxPooling1D(name="gmp_b"), _L(k).Dense(2)], mask_value=0.0,
         gens=("k2",), refused=["'gmp_b'", "(GlobalMaxPooling1D)", "after the Bidirectional layer",
                                "activation of the bias"]),
    Case("flatten_after_sigmoid_masked", "Flatten", "masked GRU -> Activation(sigmoid) -> Flatten (sigmoid(0) before a "
         "row's first step)",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).Activation("sigmoid"),
                    _L(k).Flatten(), _L(k).Dense(2)], fixed_t=True, mask_value=0.0),
    # several per-step Dense layers on the input: the first is the input's Dense, the later ones with an activation
    # run at every step before the first recurrent layer
    Case("input_dense_two_relu", "Dense", "Dense(relu) -> Dense(relu) -> LSTM on the input features",
         lambda k: [_L(k).Dense(6, activation="relu"), _L(k).Dense(5, activation="relu", name="in_relu2"),
                    _L(k).LSTM(4), _L(k).Dense(2, activation="softmax")]),
    Case("input_dense_linear_chain_masked", "Dense", "Masking -> Dense -> Dense(tanh) -> Dropout -> Dense -> GRU (the "
         "linear ones folded)",
         lambda k: [_L(k).Masking(0.0), _L(k).Dense(6), _L(k).Dense(5, activation="tanh"), _L(k).Dropout(0.2),
                    _L(k).Dense(4), _L(k).GRU(3), _L(k).Dense(2)], mask_value=0.0),
    Case("input_dense_three_bidi", "Dense", "TimeDistributed(Dense(relu)) x 2 -> Dense(sigmoid) -> "
         "Bidirectional(LSTM)",
         lambda k: [_L(k).TimeDistributed(_L(k).Dense(5, activation="relu")),
                    _L(k).TimeDistributed(_L(k).Dense(4, activation="relu")), _L(k).Dense(4, activation="sigmoid"),
                    _bi(k, _L(k).LSTM(3)), _L(k).Dense(2, activation="softmax")]),
    Case("input_dense_relu_layers_gap_masked", "Dense", "masked Dense -> ReLU() -> Dense -> ReLU() -> GRU -> "
         "GlobalAveragePooling1D",
         lambda k: [_L(k).Masking(0.0), _L(k).Dense(6), _L(k).ReLU(), _L(k).Dense(4), _L(k).ReLU(),
                    _L(k).GRU(4, return_sequences=True), _L(k).GlobalAveragePooling1D(), _L(k).Dense(2)],
         mask_value=0.0),
    Case("input_dense_two_per_step_head", "Dense", "Dense(tanh) -> Dense(relu) -> SimpleRNN, per-step head",
         lambda k: [_L(k).Dense(5, activation="tanh"), _L(k).Dense(4, activation="relu"),
                    _L(k).SimpleRNN(4, return_sequences=True), _L(k).Dense(2)]),
    Case("input_dense_bn_relu_twice", "BatchNormalization", "(Dense -> BatchNormalization -> ReLU) x 2 -> LSTM",
         lambda k: [_L(k).Dense(6), _L(k).BatchNormalization(), _L(k).ReLU(), _L(k).Dense(5),
                    _L(k).BatchNormalization(), _L(k).ReLU(), _L(k).LSTM(4), _L(k).Dense(2, activation="softmax")]),
    # Bidirectional layers after a Conv1D front end (CNN-BiLSTM): the backward direction runs over the buffered
    # front-end frames at the window's end
    Case("frontend_bidi_lstm", "Bidirectional", "Conv1D(causal, relu) -> Bidirectional(LSTM)",
         lambda k: [_L(k).Conv1D(4, 3, padding="causal", activation="relu"), _bi(k, _L(k).LSTM(3)),
                    _L(k).Dense(2, activation="softmax")], t=FT),
    Case("frontend_pool_bidi_gru_gru", "Bidirectional", "Conv1D(valid, strides 2) -> MaxPooling1D -> "
         "Bidirectional(GRU, sum) -> GRU",
         lambda k: [_L(k).Conv1D(5, 3, strides=2), _L(k).MaxPooling1D(2),
                    _bi(k, _L(k).GRU(3, return_sequences=True), merge_mode="sum"), _L(k).GRU(3), _L(k).Dense(2)],
         t=FT),
    Case("frontend_same_bidi_gap", "Bidirectional", "Conv1D(same, flushed) -> Bidirectional(GRU) -> "
         "GlobalAveragePooling1D",
         lambda k: [_L(k).Conv1D(4, 3, padding="same", activation="tanh"),
                    _bi(k, _L(k).GRU(3, return_sequences=True)), _L(k).GlobalAveragePooling1D(),
                    _L(k).Dense(2, activation="softmax")], t=FT),
    Case("frontend_bidi_gmp", "Bidirectional", "Conv1D(causal, strides 2) -> Bidirectional(LSTM) -> "
         "GlobalMaxPooling1D",
         lambda k: [_L(k).Conv1D(4, 3, strides=2, padding="causal", activation="relu"),
                    _bi(k, _L(k).LSTM(3, return_sequences=True)), _L(k).GlobalMaxPooling1D(), _L(k).Dense(2)], t=FT),
    Case("frontend_two_bidi", "Bidirectional", "Conv1D -> AveragePooling1D -> Bidirectional(GRU) -> "
         "Bidirectional(LSTM, ave)",
         lambda k: [_L(k).Conv1D(5, 2, activation="relu"), _L(k).AveragePooling1D(2),
                    _bi(k, _L(k).GRU(3, return_sequences=True)), _bi(k, _L(k).LSTM(3), merge_mode="ave"),
                    _L(k).Dense(2, activation="softmax")], t=FT),
    # per-step Dense layers after a Conv1D front end: layers of the stack on its frames (linear ones folded)
    Case("frontend_dense_relu_lstm", "Dense", "Conv1D(causal, relu) -> TimeDistributed(Dense(relu)) -> LSTM",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal", activation="relu"),
                    _L(k).TimeDistributed(_L(k).Dense(5, activation="relu")), _L(k).LSTM(4),
                    _L(k).Dense(2, activation="softmax")], t=FT),
    Case("frontend_pool_dense_linear_gru", "Dense", "Conv1D -> MaxPooling1D -> Dense (folded into the GRU) -> GRU",
         lambda k: [_L(k).Conv1D(6, 3), _L(k).MaxPooling1D(2), _L(k).Dense(4), _L(k).GRU(3), _L(k).Dense(2)], t=FT),
    Case("frontend_dense_two_bidi", "Dense", "Conv1D(same, tanh) -> Dense(relu) -> Dense(sigmoid) -> "
         "Bidirectional(GRU)",
         lambda k: [_L(k).Conv1D(5, 3, padding="same", activation="tanh"), _L(k).Dense(6, activation="relu"),
                    _L(k).Dense(4, activation="sigmoid"), _bi(k, _L(k).GRU(3)), _L(k).Dense(2, activation="softmax")],
         t=FT),
    Case("refuse_dense_before_conv", "Conv1D", "Dense(relu) -> Conv1D -> GRU",
         lambda k: [_L(k).Dense(4, activation="relu", name="d_first"), _L(k).Conv1D(4, 3, name="conv_after_dense"),
                    _L(k).GRU(3), _L(k).Dense(2)],
         gens=("k2",), t=FT, refused=["'conv_after_dense'", "follows the per-step Dense 'd_first'",
                                      "per-step Dense layers after it, not before it"]),
    # relu6 (ReLU(max_value=6), activation='relu6') where a layer's output is int8; the data is scaled so that
    # outputs pass 6 and the clip (int8 saturation on a scale ending at 6) is exercised
    Case("conv_relu6_gru", "Conv1D", "activation=relu6 (clipped), strides 2 -> GRU",
         lambda k: [_L(k).Conv1D(6, 3, strides=2, padding="causal", activation="relu6"), _L(k).GRU(4),
                    _L(k).Dense(2, activation="softmax")], t=FT, x_scale=6.0),
    Case("conv_bn_relu6_lstm", "ReLU", "Conv1D -> BN -> ReLU(max_value=6) folded into the Conv1D -> LSTM",
         lambda k: [_L(k).Conv1D(5, 3, padding="causal"), _L(k).BatchNormalization(), _L(k).ReLU(max_value=6.0),
                    _L(k).LSTM(4), _L(k).Dense(2)], t=FT, x_scale=6.0),
    Case("dense_relu6_input_head", "Dense", "Masking -> Dense -> ReLU(max_value=6) -> LSTM -> Dense(relu6) -> Dense",
         lambda k: [_L(k).Masking(0.0), _L(k).Dense(6), _L(k).ReLU(max_value=6.0), _L(k).LSTM(4, return_sequences=True),
                    _L(k).TimeDistributed(_L(k).Dense(5, activation="relu6")), _L(k).GRU(3),
                    _L(k).Dense(6, activation="relu6"), _L(k).Dense(3, activation="softmax")],
         mask_value=0.0, x_scale=6.0),
    Case("refuse_relu_max_value", "ReLU", "max_value=4 (only 6 is relu6)",
         lambda k: [_L(k).LSTM(4), _L(k).ReLU(max_value=4.0, name="relu4"), _L(k).Dense(2)],
         gens=("k2",), refused=["'relu4'", "(ReLU)", "max_value=4.0", "max_value=6 (relu6)"]),
    # leaky_relu(a): a layer with an int8 output, its slope a multiplier on that output's scale
    Case("conv_leaky_gru", "LeakyReLU", "Conv1D -> LeakyReLU() (0.3, folded) -> Conv1D(activation='leaky_relu') -> GRU",
         lambda k: [_L(k).Conv1D(6, 3, padding="causal"), _L(k).LeakyReLU(),
                    _L(k).Conv1D(5, 3, strides=2, activation="leaky_relu"), _L(k).GRU(4),
                    _L(k).Dense(2, activation="softmax")], t=FT),
    Case("dense_leaky_input_head", "LeakyReLU", "Masking -> Dense -> LeakyReLU(0.1) -> LSTM -> Dense -> "
         "ReLU(negative_slope=0.2) -> Dense",
         lambda k: [_L(k).Masking(0.0), _L(k).Dense(6), _L(k).LeakyReLU(0.1), _L(k).LSTM(4), _L(k).Dense(5),
                    _L(k).ReLU(negative_slope=0.2), _L(k).Dense(2)], mask_value=0.0),
    Case("refuse_leaky_per_step", "LeakyReLU", "LeakyReLU on every step between two LSTMs",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).LeakyReLU(name="leaky_steps"), _L(k).LSTM(3),
                    _L(k).Dense(2)],
         gens=("k2",), refused=["'leaky_steps' (LeakyReLU, leaky_relu(0.3)) runs on every step of",
                                "in per-step layers"]),
    # x[:, -1, :] on a recurrent layer's sequence (Keras 3 GetItem, tf_keras SlicingOpLambda): its
    # return_sequences=False where no mask makes the last step padding
    Case("gru_last_step_slice", "GetItem", "GRU(return_sequences=True) -> x[:, -1, :] -> Dense",
         lambda k: [_L(k).GRU(4, return_sequences=True), lambda t: t[:, -1, :], _L(k).Dense(2, activation="softmax")],
         functional=True),
    Case("lstm_stack_last_step_slice", "GetItem", "LSTM -> LSTM(return_sequences=True) -> x[:, -1] -> Dense",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).LSTM(3, return_sequences=True), lambda t: t[:, -1],
                    _L(k).Dense(3)], functional=True),
    Case("conv_gru_last_step_slice", "GetItem", "Conv1D front end -> GRU(return_sequences=True) -> x[:, -1, :]",
         lambda k: [_L(k).Conv1D(4, 3, padding="causal", activation="relu"), _L(k).GRU(4, return_sequences=True),
                    lambda t: t[:, -1, :], _L(k).Dense(2)], functional=True, t=FT),
    Case("refuse_last_step_masked", "GetItem", "x[:, -1] of a masked sequence (padding for a shorter row)",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(4, return_sequences=True), lambda t: t[:, -1], _L(k).Dense(2)],
         functional=True, mask_value=0.0, gens=("k2",),
         refused=["takes the last step of 'lstm", "whose steps the Masking layer", "use return_sequences=False"]),
    Case("refuse_last_step_bidi", "GetItem", "x[:, -1, :] of a Bidirectional layer's sequence",
         lambda k: [_bi(k, _L(k).GRU(3, return_sequences=True)), lambda t: t[:, -1, :], _L(k).Dense(2)],
         functional=True, gens=("k2",),
         refused=["takes the last step of the Bidirectional layer", "backward direction has run one step"]),
    Case("refuse_first_step_slice", "GetItem", "x[:, 0, :] (the first step)",
         lambda k: [_L(k).GRU(4, return_sequences=True), lambda t: t[:, 0, :], _L(k).Dense(2)],
         functional=True, gens=("k2",), refused=["slices [:, 0, :]", "x[:, -1, :] or x[:, -1]"]),
    # return_state=True: the chain reads the output (0) or the final h (1, read as return_sequences=False)
    Case("lstm_return_state_h", "LSTM", "return_state=True, the Dense reads h (out, h, c = LSTM(...)(x))",
         lambda k: [lambda t, l=_L(k).LSTM(4, return_state=True): l(t)[1], _L(k).Dense(2, activation="softmax")],
         functional=True),
    Case("gru_seq_return_state_h", "GRU", "return_sequences=True, return_state=True, the Dense reads the final h",
         lambda k: [_L(k).LSTM(4, return_sequences=True),
                    lambda t, l=_L(k).GRU(3, return_sequences=True, return_state=True): l(t)[1], _L(k).Dense(2)],
         functional=True),
    Case("lstm_return_state_output_masked", "LSTM", "Masking -> LSTM(return_state=True), the Dense reads its output",
         lambda k: [_L(k).Masking(0.0), lambda t, l=_L(k).LSTM(4, return_state=True): l(t)[0], _L(k).Dense(2)],
         functional=True, mask_value=0.0),
    Case("lstm_return_state_h_masked", "LSTM", "Masking -> LSTM(return_sequences=True, return_state=True), the "
         "Dense reads h (each row's last valid step)",
         lambda k: [_L(k).Masking(0.0), lambda t, l=_L(k).LSTM(4, return_sequences=True, return_state=True): l(t)[1],
                    _L(k).Dense(2)],
         functional=True, mask_value=0.0),
    Case("refuse_lstm_return_state_c", "LSTM", "return_state=True, the Dense reads the cell state c",
         lambda k: [lambda t, l=_L(k).LSTM(4, return_state=True, name="lstm_c"): l(t)[2], _L(k).Dense(2)],
         functional=True, gens=("k2",),
         refused=["'lstm_c' (LSTM) has return_state=True and the next layer reads its state 2",
                  "final hidden state h"]),
    Case("refuse_bidi_return_state_h", "Bidirectional", "return_state=True, the Dense reads the forward h",
         lambda k: [lambda t, l=_bi(k, _L(k).LSTM(3, return_state=True)): l(t)[1], _L(k).Dense(2)],
         functional=True, gens=("k2",), refused=["(Bidirectional) has return_state=True and the next layer reads its "
                                                 "state 1", "merged output"]),
    # relu / linear candidates on raw values: an int16 format from their calibrated range, not Q3.12's +-8
    Case("lstm_relu_raw_values", "LSTM", "activation=relu on raw values (x40: candidates far past 8)",
         lambda k: [_L(k).LSTM(6, activation="relu"), _L(k).Dense(3, activation="softmax")], x_scale=40.0),
    Case("gru_relu_raw_values", "GRU", "activation=relu on raw values (x40), reset_after=False",
         lambda k: [_L(k).GRU(5, activation="relu", reset_after=False), _L(k).Dense(2, activation="softmax")],
         x_scale=40.0),
    # Keras 3 passes the states as the initial_state kwarg, tf_keras as more inputs of the decoder: one refusal
    Case("refuse_initial_state", "LSTM", "encoder-decoder: a decoder LSTM starts from the encoder's h and c "
         "(initial_state)",
         lambda k: [lambda t, e=_L(k).LSTM(4, return_sequences=True, return_state=True), d=_L(k).LSTM(4, name="dec"):
                    (lambda o: d(o[0], initial_state=[o[1], o[2]]))(e(t)), _L(k).Dense(2)],
         functional=True,
         refused=["'dec' (LSTM) starts from the states of another layer (initial_state", "start from zeros"]),
    # a mean or maximum over time as an op (Keras 3 ops.mean / ops.max, tf_keras tf.reduce_mean / tf.reduce_max):
    # the pooling layer where no mask is involved
    Case("gru_mean_op", "Mean", "GRU(return_sequences=True) -> mean op over axis 1 -> softmax Dense",
         lambda k: [_L(k).GRU(4, return_sequences=True), lambda t: _reduce(k, "mean")(t, 1),
                    _L(k).Dense(2, activation="softmax")], functional=True),
    Case("lstm_mean_max_ops_concat", "Mean", "LSTM -> [mean op (axis 1), max op (axis -2)] concatenated -> Dense",
         lambda k: [_L(k).LSTM(4, return_sequences=True),
                    lambda t: _L(k).Concatenate()([_reduce(k, "mean")(t, 1), _reduce(k, "max")(t, -2)]),
                    _L(k).Dense(3)], functional=True),
    Case("refuse_mean_op_masked", "Mean", "mean op over a masked sequence (it averages the padding too)",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(4, return_sequences=True), lambda t: _reduce(k, "mean")(t, 1),
                    _L(k).Dense(2)], functional=True, mask_value=0.0,
         refused=["takes the mean over every step of a masked sequence, padding included", "GlobalAveragePooling1D"]),
    Case("refuse_mean_op_features", "Mean", "mean op over the features (axis -1)",
         lambda k: [_L(k).GRU(4, return_sequences=True), lambda t: _reduce(k, "mean")(t, -1), _L(k).Dense(2)],
         functional=True, fixed_t=True, gens=("k2",),
         refused=["takes the mean over axis -1", "only over the time axis"]),
    Case("gru_max_op_axis_tuple", "Mean", "max op over axis=(1,) (a one-axis tuple)",
         lambda k: [_L(k).GRU(4, return_sequences=True), lambda t: _reduce(k, "max")(t, (1,)), _L(k).Dense(2)],
         functional=True),
    # LayerNormalization: into the head's Dense after it, which normalises its input on the device (integer)
    Case("lstm_layernorm_head", "LayerNormalization", "LSTM -> LayerNormalization -> Dense(relu) -> "
         "LayerNormalization(epsilon=1e-5) -> softmax Dense",
         lambda k: [_L(k).LSTM(6), _L(k).LayerNormalization(), _L(k).Dense(5, activation="relu"),
                    _L(k).LayerNormalization(epsilon=1e-5), _L(k).Dense(3, activation="softmax")]),
    Case("gru_pool_layernorm", "LayerNormalization", "GRU -> GlobalAveragePooling1D -> LayerNormalization "
         "(center=False) -> Dense",
         lambda k: [_L(k).GRU(5, return_sequences=True), _L(k).GlobalAveragePooling1D(),
                    _L(k).LayerNormalization(center=False), _L(k).Dense(2)]),
    Case("per_step_layernorm", "LayerNormalization", "Masking -> GRU(return_sequences=True) -> "
         "LayerNormalization (scale=False) -> per-step softmax Dense",
         lambda k: [_L(k).Masking(0.0), _L(k).GRU(4, return_sequences=True), _L(k).LayerNormalization(scale=False),
                    _L(k).Dense(3, activation="softmax")], mask_value=0.0),
    Case("bidi_layernorm_head", "LayerNormalization", "Bidirectional(LSTM) -> Dropout -> LayerNormalization -> "
         "Dense",
         lambda k: [_bi(k, _L(k).LSTM(3)), _L(k).Dropout(0.2), _L(k).LayerNormalization(),
                    _L(k).Dense(2, activation="softmax")]),
    # between recurrent layers: the next layer normalises its input on the device (integer), gamma and beta folded
    Case("lstm_layernorm_gru", "LayerNormalization", "Masking -> LSTM(return_sequences) -> LayerNormalization -> GRU",
         lambda k: [_L(k).Masking(0.0), _L(k).LSTM(6, return_sequences=True), _L(k).LayerNormalization(),
                    _L(k).GRU(5), _L(k).Dense(3, activation="softmax")], mask_value=0.0),
    Case("gru_layernorm_stack3", "LayerNormalization", "GRU -> LayerNormalization(center=False) -> SimpleRNN -> "
         "LayerNormalization(epsilon=1e-5) -> LSTM",
         lambda k: [_L(k).GRU(5, return_sequences=True), _L(k).LayerNormalization(center=False),
                    _L(k).SimpleRNN(7, return_sequences=True), _L(k).LayerNormalization(epsilon=1e-5),
                    _L(k).LSTM(4), _L(k).Dense(2)]),
    Case("bidi_layernorm_lstm", "LayerNormalization", "Bidirectional(GRU) -> LayerNormalization -> LSTM",
         lambda k: [_bi(k, _L(k).GRU(3, return_sequences=True)), _L(k).LayerNormalization(), _L(k).LSTM(4),
                    _L(k).Dense(2, activation="softmax")]),
    Case("lstm_layernorm_bidi", "LayerNormalization", "LSTM -> Dropout -> LayerNormalization -> Bidirectional(GRU)",
         lambda k: [_L(k).LSTM(5, return_sequences=True), _L(k).Dropout(0.1), _L(k).LayerNormalization(),
                    _bi(k, _L(k).GRU(3)), _L(k).Dense(2, activation="softmax")]),
    Case("refuse_layernorm_after_step_dense", "LayerNormalization", "between a per-step Dense and a recurrent layer",
         lambda k: [_L(k).LSTM(4, return_sequences=True), _L(k).Dense(5, name="d_mid"),
                    _L(k).LayerNormalization(name="ln_mid"), _L(k).GRU(3, name="gru_next"), _L(k).Dense(2)],
         gens=("k2",),
         refused=["'ln_mid' (LayerNormalization) is before 'gru_next' (GRU)",
                  "or into the recurrent layer right after another one"]),
    Case("refuse_layernorm_last", "LayerNormalization", "after the last Dense",
         lambda k: [_L(k).LSTM(4), _L(k).Dense(2), _L(k).LayerNormalization(name="ln_end")], gens=("k2",),
         refused=["'ln_end' (LayerNormalization) is last in the model"]),
    Case("refuse_layernorm_input", "LayerNormalization", "on the input features",
         lambda k: [_L(k).LayerNormalization(name="ln_in"), _L(k).LSTM(4), _L(k).Dense(2)], gens=("k2",),
         refused=["'ln_in' (LayerNormalization) is on the model's input"]),
    Case("refuse_layernorm_before_pooling", "LayerNormalization", "on every step before GlobalAveragePooling1D",
         lambda k: [_L(k).GRU(4, return_sequences=True), _L(k).LayerNormalization(name="ln_step"),
                    _L(k).GlobalAveragePooling1D(name="gap"), _L(k).Dense(2)], gens=("k2",),
         refused=["'ln_step' (LayerNormalization) is before 'gap' (GlobalAveragePooling1D)"]),
]
CASES += PER_STEP_DENSE_CASES

GEN_COLUMNS = [("legacy", "h5", "Keras 2.0–2.3 / tf.keras 1.x .h5"), ("k2", "h5", "tf_keras 2 .h5"),
               ("k2", "keras", "tf_keras 2 .keras"), ("k3", "keras", "Keras 3 .keras"), ("k3", "h5", "Keras 3 .h5")]
FORMATS = {"k2": ("h5", "keras"), "k3": ("keras", "h5"), "legacy": ("h5",)}


# --------------------------------------------------------------------------
# building the files

def keras_module(gen: str):
    if gen == "k3":
        import keras
    else:
        import tf_keras as keras
    return keras


def _build(k, case: Case):
    if case.shape is not None:
        inp = k.Input(shape=case.shape, dtype="float32")
    elif case.tokens:
        inp = k.Input(shape=(case.t if case.fixed_t else None,), dtype="int32")
    else:
        inp = k.Input(shape=(case.t if case.fixed_t else None, FEATURES), dtype="float32")
    layers = case.layers(k)
    if case.functional or case.gens == ("legacy",) and case.style == "model":
        x = inp
        for layer in layers:
            x = layer(x)
        return k.Model(inp, x, name=case.name)
    return k.Sequential([inp] + layers, name=case.name)


def _randomize(model, rng):
    vals = []
    for w in model.weights:
        name = str(getattr(w, "path", None) or w.name)
        shape = tuple(w.shape)
        if "variance" in name:   # BatchNormalization's moving_variance, Normalization's variance
            vals.append(rng.uniform(0.5, 2.0, shape))
        elif "gamma" in name:
            vals.append(rng.normal(1.0, 0.3, shape))
        else:
            vals.append(rng.normal(0.0, 0.6, shape))
    model.set_weights([v.astype(np.float32) for v in vals])
    for layer in model.layers:   # Keras 3's Normalization computes with what adapt() last finalised, not its weights
        if type(layer).__name__ == "Normalization" and hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _data(case: Case, rng) -> np.ndarray:
    if case.tokens:
        X = rng.integers(1, VOCAB, size=(N, case.t))
        X[0, 5:] = 0
        X[1, :2] = 0
        X[2, [2, 4]] = 0
        return X.astype(np.int32)
    X = (rng.normal(0.0, 1.0, size=(N, case.t, FEATURES)) * case.x_scale).astype(np.float32)
    if case.mask_value is not None:
        X[0, 4:] = case.mask_value
        X[1, :2] = case.mask_value
        X[2, 3] = case.mask_value
    return X


@dataclass
class ZooFile:
    case: Case
    gen: str
    fmt: str
    path: str
    X: np.ndarray
    y_keras: Optional[np.ndarray]   # Keras' own output (None for refused files)
    labels: Optional[np.ndarray]    # int classes or float targets (per step for per-step models)

    @property
    def id(self) -> str:
        return f"{self.case.name}-{self.gen}-{self.fmt}"


def _labels(y: np.ndarray, case: Case, rng, classify: bool) -> np.ndarray:
    if classify:
        return (y[..., 0] > 0.5).astype(np.int64) if y.shape[-1] == 1 else np.argmax(y, -1).astype(np.int64)
    lab = (y + rng.normal(0.0, 0.05, y.shape)).astype(np.float32)
    return lab[..., 0] if lab.shape[-1] == 1 else lab


def _is_classifier(model_layers_last_act: str) -> bool:
    return model_layers_last_act in ("softmax", "log_softmax", "sigmoid")


def _last_activation(model) -> str:
    for layer in reversed(model.layers):
        if type(layer).__name__ == "Softmax":   # a Softmax layer (over the classes)
            return "softmax"
        cfg = layer.get_config()
        if "layer" in cfg and isinstance(cfg["layer"], dict):
            cfg = cfg["layer"].get("config", {})
        act = cfg.get("activation")
        if isinstance(act, dict):
            act = act.get("config", act.get("class_name"))
        if act is not None:
            return str(act)
        if "units" in cfg:
            return "linear"
    return "linear"


def build_corpus(outdir, gens=("k2", "k3", "legacy"), seed: int = 7, names=None) -> List[ZooFile]:
    import logging
    logging.getLogger("absl").setLevel(logging.ERROR)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files: List[ZooFile] = []
    for ci, case in enumerate(CASES):
        for gen in case.gens:
            if gen not in gens or (names is not None and case.name not in names):
                continue
            k = keras_module(gen)
            rng = np.random.default_rng(seed + ci)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = _build(k, case)
                _randomize(model, rng)
                X = _data(case, rng)
                y = None if case.refused else np.asarray(model(X, training=False), np.float64)
                base = outdir / f"{case.name}-{gen}"
                if gen == "legacy":
                    p = f"{base}.h5"
                    write_legacy_h5(model, case, p)
                    paths = {"h5": p}
                else:
                    paths = {}
                    for fmt in FORMATS[gen]:
                        paths[fmt] = f"{base}.{fmt}"
                        model.save(paths[fmt])
            labels = None
            if y is not None:
                labels = _labels(y, case, rng, _is_classifier(_last_activation(model)))
            for fmt, p in paths.items():
                files.append(ZooFile(case, gen, fmt, p, X, y, labels))
            k.backend.clear_session()
    return files


# ---- the old layouts -------------------------------------------------------

_OLD_KEYS = {"name", "trainable", "batch_input_shape", "dtype", "units", "activation",
             "recurrent_activation", "use_bias", "return_sequences", "return_state", "go_backwards",
             "stateful", "unroll", "implementation", "dropout", "recurrent_dropout",
             "unit_forget_bias", "reset_after", "input_dim", "output_dim", "mask_zero", "input_length",
             "rate", "noise_shape", "seed", "stddev", "mask_value", "axis", "momentum", "epsilon",
             "center", "scale", "l1", "l2"}


def _old_config(layer, case: Case) -> dict:
    cfg = layer.get_config()
    cls = type(layer).__name__
    out = {k: v for k, v in cfg.items() if k in _OLD_KEYS}
    if cls == "Embedding":
        out["input_dim"], out["output_dim"] = int(cfg["input_dim"]), int(cfg["output_dim"])
        out["input_length"] = None
    if cls == "TimeDistributed":
        inner = cfg["layer"]
        out["layer"] = {"class_name": inner["class_name"],
                        "config": {k: v for k, v in inner["config"].items() if k in _OLD_KEYS}}
    if case.version.startswith(("2.0", "2.1")):
        out.pop("reset_after", None)   # no such option before Keras 2.1.3
        out["implementation"] = 0 if case.version.startswith("2.0") else 1
    if layer.name in case.cudnn:
        out = {k: out[k] for k in ("name", "trainable", "units", "return_sequences", "return_state",
                                   "stateful", "go_backwards") if k in out}
        cls = case.cudnn[layer.name]
    return {"class_name": cls, "config": out}


def _role(w) -> str:
    return str(w.name).split("/")[-1].split(":")[0]


def write_legacy_h5(model, case: Case, path: str) -> None:
    """``model`` (tf_keras) saved the way Keras ``case.version`` laid out .h5 files."""
    import h5py
    from tf_keras.src.saving.legacy.hdf5_format import _convert_rnn_weights
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    entries = [_old_config(l, case) for l in layers]
    shape = [None, None] if case.tokens else [None, None, FEATURES]
    if case.style == "model":
        lays = [{"name": "input", "class_name": "InputLayer", "inbound_nodes": [],
                 "config": {"batch_input_shape": shape, "dtype": "int32" if case.tokens else "float32",
                            "sparse": False, "name": "input"}}]
        prev = "input"
        for l, e in zip(layers, entries):
            lays.append({"name": l.name, "class_name": e["class_name"], "config": e["config"],
                         "inbound_nodes": [[[prev, 0, 0, {}]]]})
            prev = l.name
        cfg = {"class_name": "Model", "config": {"name": "model_1", "layers": lays,
                                                   "input_layers": [["input", 0, 0]],
                                                   "output_layers": [[prev, 0, 0]]}}
    else:
        entries[0]["config"]["batch_input_shape"] = shape
        entries[0]["config"]["dtype"] = "float32"
        cfg = {"class_name": "Sequential",
               "config": entries if case.style == "seq_list" else {"name": "sequential_1", "layers": entries}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = case.version.encode()
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(cfg).encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [l.name.encode() for l in layers]
        for l in layers:
            g = mw.create_group(l.name)
            ws = [(_role(w), np.asarray(w.numpy(), np.float32)) for w in l.weights]
            if l.name in case.cudnn:
                fake = type(case.cudnn[l.name], (), {})()
                vals = _convert_rnn_weights(fake, [v for _, v in ws])
                ws = [(r, np.asarray(v, np.float32)) for (r, _), v in zip(ws, vals)]
            prefix = f"{l.name}/{l.name}_cell" if case.paths == "cell" and _role_is_rnn(l) else l.name
            names = [f"{prefix}/{r}:0" for r, _ in ws]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, (_, v) in zip(names, ws):
                g[n] = v


def _role_is_rnn(layer) -> bool:
    return type(layer).__name__ in ("LSTM", "GRU")


# --------------------------------------------------------------------------
# running it

@dataclass
class Result:
    file: ZooFile
    keras_version: str = ""
    status: str = ""            # bit-exact | refused | FAILED
    reason: str = ""            # the one-line refusal or failure
    float_err: float = float("nan")    # max |float reference - Keras|
    host_mismatches: int = -1
    device_mismatches: int = -1
    device_checked: int = 0
    int8_error: Optional[dict] = None  # regression: errors; classification: agreement
    inspect_converts: Optional[bool] = None
    inspect_blocker: str = ""
    build: str = ""             # hash of (quantised model, test data): equal hashes share one build and run
    shared_with: str = ""       # the file whose identical build/run this result reuses


def _key(qm, zf: ZooFile) -> str:
    from rnnskip.stagefile import content_hash
    h = hashlib.sha1(content_hash(qm).encode())
    h.update(np.ascontiguousarray(zf.X).tobytes())
    h.update(np.ascontiguousarray(zf.labels).tobytes())
    return h.hexdigest()[:12]


def _as_user_data(zf: ZooFile, ir, workdir: Path):
    """``zf``'s rows written as a user's ``.npz`` (x, and y where there are labels; no lengths)
    and read back the way ``--data`` is."""
    from rnnskip.datasets import load_npz
    p = workdir / f"{zf.id}.npz"
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, x=zf.X, **({} if zf.labels is None else {"y": zf.labels}))
    return load_npz(str(p), ir, labels=zf.labels is not None)


def run_corpus(files: List[ZooFile], workdir, target_name: str = "cortex-m4", firmware: bool = True,
               threads: int = 2) -> List[Result]:
    """Convert every file (or check its refusal); golden = host = firmware."""
    from rnnskip import pipeline, targets
    from rnnskip.converter.keras_import import load_model_file
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.errors import RnnskipError
    from rnnskip.generate import generate
    from rnnskip.inspect import inspect_file
    from rnnskip.quant.calibrate import calibrate
    from rnnskip.quant.quantize import quantize
    from rnnskip.reference import FloatModel

    workdir = Path(workdir)
    target = targets.load(target_name)
    results, todo = [], []
    for zf in files:
        r = Result(zf)
        results.append(r)
        ins = inspect_file(zf.path, target_names=[target_name])
        r.inspect_converts, r.keras_version = ins.converts, ins.keras_version
        r.inspect_blocker = ins.blockers[0] if ins.blockers else ""
        try:
            ir = load_model_file(zf.path)
            fm = FloatModel(ir)
            # the data as a user's --data: x and y, no lengths (the model's masking decides)
            ds = _as_user_data(zf, ir, workdir)
            y = fm.predict(ds.x, ds.lengths)
            r.float_err = float(np.abs(y - zf.y_keras).max()) if zf.y_keras is not None else float("nan")
            qm = quantize(ir, calibrate(ir, fm, ds.x, ds.lengths, progress=False))
        except RnnskipError as e:
            r.status, r.reason = "refused", str(e)
            continue
        r.build = _key(qm, zf)
        todo.append((r, ir, qm, ds))

    # Files whose quantised models and data are identical (e.g. the .h5 and .keras of one
    # model) generate identical C: build and run it once, share the result.
    first: Dict[str, tuple] = {}
    for item in todo:
        first.setdefault(item[0].build, item)

    def build(item):
        r, _ir, qm, _ds = item
        src = workdir / r.file.id / "src"
        generate(qm, src, max_t=int(r.file.X.shape[1]))
        so = pipeline.build_host(src, src.parent / "host")
        fw = pipeline.build_target(src, src.parent / "fw", target, "dsp") if firmware else None
        return r.build, (so, fw)

    with ThreadPoolExecutor(max_workers=threads) as ex:
        builds = dict(ex.map(build, first.values()))

    for r, ir, qm, ds in todo:
        lead = first[r.build][0]
        if lead is not r:
            for a in ("status", "reason", "host_mismatches", "device_mismatches", "device_checked", "int8_error"):
                setattr(r, a, getattr(lead, a))
            r.shared_with = lead.file.id
            continue
        so, fw = builds[r.build]
        zf = r.file
        ev = pipeline.evaluate(ir, qm, ds, host_so=so, firmware=fw,
                               emulator=Unicorn(target, traffic_sample=0, workers=1, progress=False))
        r.host_mismatches, r.device_mismatches, r.device_checked = (ev.host_mismatches, ev.device_mismatches,
                                                                      ev.device_checked)
        r.int8_error = ev.error if ev.error is not None else {"float_acc": ev.float_acc, "int8_acc": ev.golden_acc}
        ok = ev.host_mismatches == 0 and ev.device_mismatches == 0 and (ev.device_checked == len(zf.X) or not fw)
        r.status = "bit-exact" if ok else "FAILED"
        r.reason = "" if ok else ev.first_mismatch
    return results


# --------------------------------------------------------------------------
# the support matrix

def _column(res: Result) -> str:
    for gen, fmt, label in GEN_COLUMNS:
        if res.file.gen == gen and res.file.fmt == fmt:
            return label
    return f"{res.file.gen} .{res.file.fmt}"


def render_matrix(results: List[Result]) -> str:
    """docs/support_matrix.md from the corpus results (deterministic)."""
    cols = [label for _, _, label in GEN_COLUMNS]
    rows: Dict[Tuple[str, str], Dict[str, str]] = {}
    reasons: List[str] = []
    for res in results:
        c = res.file.case
        cell = rows.setdefault((c.layer, c.option), {})
        col = _column(res)
        if res.status == "bit-exact":
            mark = "✓"
        elif res.status == "refused":
            reason = res.reason.replace(res.file.path, "<file>")
            if reason not in reasons:
                reasons.append(reason)
            mark = f"✗ [{reasons.index(reason) + 1}]"
        else:
            mark = "FAILED"
        if res.file.gen == "legacy":
            mark += f" ({res.keras_version})"
        cell[col] = mark if col not in cell else cell[col] + ", " + mark
    n_files = len(results)
    n_ok = sum(r.status == "bit-exact" for r in results)
    n_ref = sum(r.status == "refused" for r in results)
    out = ["# rnnskip support matrix",
           "",
           "Generated by the corpus test (`tests/test_zoo.py`, models in `tests/zoo_models.py`); do not edit.",
           "Regenerate with `.venv/bin/python tools/support_matrix.py`.",
           "",
           f"{n_files} model files: {n_ok} convert bit-exact (int8 golden model = host build = emulated "
           f"Cortex-M4 firmware, float reference = Keras to 1e-5), {n_ref} refused with the one-line reason below. "
           "`rnnskip inspect` gives the same verdict on every file.",
           "",
           "✓ converts bit-exact · ✗ [n] refused, reason n below · blank: not in the corpus",
           "",
           "| layer | option | " + " | ".join(cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for (layer, option), cells in rows.items():
        out.append(f"| {layer} | {option} | " + " | ".join(cells.get(c, "") for c in cols) + " |")
    out += ["", "Refusal reasons (verbatim, `<file>` is the model path):", ""]
    out += [f"{i + 1}. `{r}`" for i, r in enumerate(reasons)]
    out += ["", "Activation semantics: `hard_sigmoid` is clip(0.2·x + 0.5, 0, 1) in files from Keras 1/2 "
            "(standalone, tf.keras, tf_keras) and clip(x/6 + 0.5, 0, 1) in files from Keras 3 "
            "(read from `keras_version`).", "",
            "ONNX models (PyTorch's `torch.onnx.export`): [onnx_support.md](onnx_support.md), generated from "
            "`tests/test_onnx_import.py`.", ""]
    return "\n".join(out)
