"""ONNX Conv front ends: PyTorch models with nn.Conv1d / nn.MaxPool1d / nn.AvgPool1d / nn.BatchNorm1d /
F.pad on [batch, channels, time] before their recurrent layers (CRNN, CNN-LSTM) read into the same streamed
front end as Keras' Conv1D (docs/frontends.md). Exported the three ways users export, the float reference equals
onnxruntime to 1e-5 and the int8 golden model equals the host build (and the emulated firmware) bit for bit;
what a stream cannot run is refused in one line naming the node."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantize_on

from rnnskip import pipeline
from rnnskip.converter.formats import load_model_file
from rnnskip.converter.ir import ConvLayer, DepthwiseConvLayer, PoolLayer
from rnnskip.errors import RnnskipError
from rnnskip.quant.golden import GoldenModel
from rnnskip.reference import FloatModel

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
FEAT, T, N = 4, 16, 12


def _bn(c: int):
    bn = nn.BatchNorm1d(c)
    with torch.no_grad():   # statistics and an affine part a trained model would have
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return bn


class FrontNet(nn.Module):
    """x [batch, time, features] -> x.transpose(1, 2) -> a front end -> back to [batch, time, channels] -> a
    recurrent layer -> a head. ``how`` picks the front end (FRONTS)."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        if how == "crnn":          # Conv(same) + BN + ReLU, MaxPool, F.pad causal + dilated Conv -> GRU, softmax
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 8, 3, padding=1), _bn(8), nn.MaxPool1d(2),
                                    nn.Conv1d(8, 6, 3, dilation=2)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 3
        elif how == "bn-in-causal":   # BatchNorm1d on the input, F.pad causal, Conv + tanh -> LSTM, h_n[-1]
            self.f = nn.ModuleList([_bn(FEAT), nn.Conv1d(FEAT, 6, 3)])
            self.rnn, out = nn.LSTM(6, 5, batch_first=True), 2
        elif how == "strided-avg":    # Conv(valid, stride 2) + ReLU, AvgPool(2) -> time-major LSTM
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, stride=2), nn.AvgPool1d(2)])
            self.rnn, out = nn.LSTM(6, 5), 3
        elif how == "same-even":      # padding='same' with 4 taps (torch splits it as Keras), sigmoid -> GRU -> mean
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 4, padding="same"), nn.Conv1d(6, 6, 1)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 2
        elif how == "pool-first":     # MaxPool on the input, Conv(padding=1) + BN folded after it -> GRU
            self.f = nn.ModuleList([nn.MaxPool1d(2, stride=1), nn.Conv1d(FEAT, 6, 3, padding=1), _bn(6)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 3
        elif how == "relu-bn-gru":    # Conv + ReLU, BatchNorm1d folded into the GRU's input
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, padding=1), _bn(6)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 3
        elif how == "max-relu":       # Conv, MaxPool, then the ReLU (it commutes with the maximum) -> LSTM
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3), nn.MaxPool1d(2)])
            self.rnn, out = nn.LSTM(6, 5, batch_first=True), 3
        elif how == "pool-bn-conv":   # MaxPool on the input, BatchNorm1d, Conv(padding=1): padded behind the pooling
            self.f = nn.ModuleList([nn.MaxPool1d(2, stride=1), _bn(FEAT), nn.Conv1d(FEAT, 6, 3, padding=1)])
            with torch.no_grad():
                self.f[1].running_mean.fill_(7.0)   # beyond the inputs (|x| < ~4): calibration must widen
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 3
        elif how == "bn-gru":         # BatchNorm1d on the input, no convolution: into the GRU, the input centred
            self.f = nn.ModuleList([_bn(FEAT)])
            self.rnn, out = nn.GRU(FEAT, 5, batch_first=True), 3
        elif how == "norm-gru":       # (x - mean) / std on [batch, time, features]: into the GRU, the input centred
            self.f = nn.ModuleList()
            self.rnn, out = nn.GRU(FEAT, 5, batch_first=True), 3
        elif how == "norm-causal":    # (x^T - mean) * (1 / std) per channel, F.pad causal, Conv + ReLU -> GRU
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 3
        elif how == "conv-norm":      # Conv(padding=1), then (z - m) / s per channel (into it) + tanh -> GRU
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, padding=1)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 2
        elif how == "conv-linear":    # Conv(padding=1) + ReLU -> relu(Linear) -> Linear (into the GRU) -> GRU
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, padding=1), nn.Linear(6, 5), nn.Linear(5, 4)])
            self.rnn, out = nn.GRU(4, 5, batch_first=True), 3
        elif how == "cnn-bigru":      # Conv(padding=1) + ReLU, MaxPool -> bidirectional GRU, both final states
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, padding=1), nn.MaxPool1d(2)])
            self.rnn, out = nn.GRU(6, 5, batch_first=True, bidirectional=True), 3
        elif how == "leaky":          # Conv + LeakyReLU(0.1), MaxPool -> LSTM -> F.leaky_relu(Linear) (0.01) -> Linear
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, padding=1), nn.MaxPool1d(2), nn.Linear(5, 5)])
            self.rnn, out = nn.LSTM(6, 5, batch_first=True), 3
        elif how == "depthwise":      # a time-channel separable block: F.pad causal + depthwise Conv (2 per channel)
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 2 * FEAT, 3, groups=FEAT, dilation=2), _bn(2 * FEAT),
                                    nn.Conv1d(2 * FEAT, 6, 1)])   # + BatchNorm1d + ReLU, a pointwise Conv -> GRU
            self.rnn, out = nn.GRU(6, 5, batch_first=True), 3
        elif how == "dw-same":        # depthwise Conv(padding=1) + tanh -> GRU
            self.f = nn.ModuleList([nn.Conv1d(FEAT, FEAT, 3, groups=FEAT, padding=1)])
            self.rnn, out = nn.GRU(FEAT, 5, batch_first=True), 3
        elif how == "relu6":          # Conv + ReLU6 (Clip(0, 6)), ReLU6(Linear) per frame -> GRU -> ReLU6(Linear)
            self.f = nn.ModuleList([nn.Conv1d(FEAT, 6, 3, padding=1), nn.Linear(6, 5), nn.Linear(5, 5)])
            with torch.no_grad():   # large enough that outputs pass 6: the clip is exercised
                self.f[0].weight.mul_(12.0)
                self.f[1].weight.mul_(3.0)
            self.rnn, out = nn.GRU(5, 5, batch_first=True), 3
        g = torch.Generator().manual_seed(11)   # a normalisation's statistics, as buffers (saved with the model)
        width = 6 if how == "conv-norm" else FEAT
        self.register_buffer("mean", torch.rand(width, generator=g) - 0.5)
        self.register_buffer("std", torch.rand(width, generator=g) * 1.5 + 0.5)
        self.fc = nn.Linear(10 if how == "cnn-bigru" else 5, out)

    def forward(self, x):
        if self.how == "norm-gru":
            x = (x - self.mean) / self.std
        z = x.transpose(1, 2)
        f = self.f
        if self.how == "norm-causal":
            z = torch.relu(f[0](F.pad((z - self.mean[:, None]) * (1.0 / self.std)[:, None], (2, 0))))
        elif self.how == "conv-norm":
            z = torch.tanh((f[0](z) - self.mean[:, None]) / self.std[:, None])
        elif self.how == "crnn":
            z = f[2](torch.relu(f[1](f[0](z))))
            z = f[3](F.pad(z, (4, 0)))
        elif self.how == "bn-in-causal":
            z = torch.tanh(f[1](F.pad(f[0](z), (2, 0))))
        elif self.how == "strided-avg":
            z = f[1](torch.relu(f[0](z)))
        elif self.how == "same-even":
            z = f[1](torch.sigmoid(f[0](z)))
        elif self.how == "relu-bn-gru":
            z = f[1](torch.relu(f[0](z)))
        elif self.how == "max-relu":
            z = torch.relu(f[1](f[0](z)))
        elif self.how == "cnn-bigru":
            z = f[1](torch.relu(f[0](z)))
        elif self.how == "conv-linear":
            z = torch.relu(f[0](z))
        elif self.how == "depthwise":
            z = f[2](torch.relu(f[1](f[0](F.pad(z, (4, 0))))))
        elif self.how == "dw-same":
            z = torch.tanh(f[0](z))
        elif self.how == "relu6":
            z = F.relu6(f[0](z))
        elif self.how == "leaky":
            z = f[1](F.leaky_relu(f[0](z), 0.1))
        elif self.how == "bn-gru":
            z = f[0](z)
        elif self.how == "norm-gru":
            pass
        else:
            z = f[2](f[1](f[0](z)))
        if self.how == "leaky":
            h = self.rnn(z.transpose(1, 2))[1][0][-1]
            return self.fc(F.leaky_relu(f[2](h)))
        if self.how == "relu6":
            h = self.rnn(F.relu6(f[1](z.transpose(1, 2))))[1][-1]
            return torch.softmax(self.fc(F.relu6(f[2](h))), -1)
        if self.how == "conv-linear":   # per-step layers on the front end's frames
            p = f[2](torch.relu(f[1](z.transpose(1, 2))))
            return torch.softmax(self.fc(self.rnn(p)[1][-1]), -1)
        if self.how == "strided-avg":
            y, _ = self.rnn(z.permute(2, 0, 1))
            return torch.softmax(self.fc(y[-1]), -1)
        y, h = self.rnn(z.transpose(1, 2))
        if self.how == "bn-in-causal":
            return self.fc(h[0][-1])
        if self.how == "same-even":
            return self.fc(y.mean(1))
        if self.how == "max-relu":
            return torch.softmax(self.fc(y[:, -1]), -1)
        if self.how == "cnn-bigru":
            return self.fc(torch.cat([h[-2], h[-1]], 1))
        return torch.softmax(self.fc(h[-1]), -1)


#: how -> (the front end the importer makes: (kind, padding, activation) per layer, the row of the support matrix)
FRONTS = {
    "crnn": ([("conv", "same", "relu"), ("max", "", ""), ("conv", "causal", "linear")],
             "nn.Conv1d(padding=1) + BatchNorm1d + ReLU, MaxPool1d(2), F.pad causal + dilated Conv1d -> GRU"),
    "bn-in-causal": ([("conv", "causal", "tanh")], "BatchNorm1d on the input, F.pad causal + Conv1d + tanh -> LSTM"),
    "strided-avg": ([("conv", "valid", "relu"), ("avg", "", "")],
                    "Conv1d(stride=2) + ReLU, AvgPool1d(2) -> time-major LSTM"),
    "same-even": ([("conv", "same", "sigmoid"), ("conv", "valid", "linear")],
                  "Conv1d(4 taps, padding='same') + sigmoid, 1-tap Conv1d -> GRU, y.mean(1)"),
    "pool-first": ([("max", "", ""), ("conv", "same", "linear")],
                   "MaxPool1d(2, stride=1) on the input, Conv1d(padding=1) + BatchNorm1d -> GRU"),
    "relu-bn-gru": ([("conv", "same", "relu")], "Conv1d(padding=1) + ReLU, BatchNorm1d into the GRU's input"),
    "max-relu": ([("conv", "valid", "relu"), ("max", "", "")], "Conv1d, MaxPool1d(2), ReLU (folded into the Conv)"),
    "pool-bn-conv": ([("max", "", ""), ("conv", "same", "linear")],
                     "MaxPool1d(2, stride=1), BatchNorm1d, Conv1d(padding=1): the padding frame behind the pooling"),
    "bn-gru": ([], "BatchNorm1d on x.transpose(1, 2), no convolution: into the GRU, the input centred"),
    "norm-gru": ([], "(x - mean) / std with per-feature buffers -> GRU: into it, the input centred"),
    "norm-causal": ([("conv", "causal", "relu")],
                    "(x - mean) * (1 / std) per channel, F.pad causal + Conv1d + ReLU -> GRU"),
    "conv-norm": ([("conv", "same", "tanh")], "Conv1d(padding=1), (z - mean) / std per channel, tanh -> GRU"),
    "conv-linear": ([("conv", "same", "relu")],
                    "Conv1d(padding=1) + ReLU, then relu(nn.Linear) and nn.Linear on every frame -> GRU"),
    "cnn-bigru": ([("conv", "same", "relu"), ("max", "", "")],
                  "Conv1d(padding=1) + ReLU, MaxPool1d(2) -> bidirectional GRU, torch.cat([h_n[-2], h_n[-1]], 1)"),
    "leaky": ([("conv", "same", "leaky_relu(0.1)"), ("max", "", "")],
              "Conv1d(padding=1) + LeakyReLU(0.1), MaxPool1d(2) -> LSTM -> leaky_relu(nn.Linear) (0.01) -> Linear"),
    "depthwise": ([("dwconv", "causal", "relu"), ("conv", "valid", "linear")],
                  "F.pad causal + nn.Conv1d(C, 2C, 3, groups=C, dilation=2) (depthwise) + BatchNorm1d + ReLU, a "
                  "pointwise Conv1d -> GRU"),
    "dw-same": ([("dwconv", "same", "tanh")], "nn.Conv1d(C, C, 3, groups=C, padding=1) (depthwise) + tanh -> GRU"),
    "relu6": ([("conv", "same", "relu6")],
              "Conv1d(padding=1) + ReLU6, relu6(nn.Linear) on every frame -> GRU -> relu6(nn.Linear) -> Linear"),
}
EXPORTS = {"dynamic": "torch.onnx.export, opset 17", "static": "torch.onnx.export, static shapes",
           "dynamo": "torch.onnx.export(dynamo=True)"}


def export_front(net, path, how: str = "dynamic", seed: int = 0) -> np.ndarray:
    """``net`` exported as users do ("dynamic": TorchScript exporter with dynamic batch and time axes, "static",
    "dynamo": torch's default exporter); returns the example input [N, T, FEAT]."""
    torch.manual_seed(seed)
    net.eval()
    x = torch.randn(N, T, FEAT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "dynamo":
            pytest.importorskip("onnxscript")
            torch.onnx.export(net, (x,), str(path), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            axes = {"dynamic_axes": {"x": {0: "n", 1: "t"}}} if how == "dynamic" else {}
            torch.onnx.export(net, (x,), str(path), opset_version=17, dynamo=False, input_names=["x"],
                              output_names=["y"], **axes)
    return x.numpy()


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def front_layers(ir):
    return [("dwconv" if isinstance(f, DepthwiseConvLayer) else "conv", f.padding, f.activation)
            if isinstance(f, ConvLayer) else (f.kind, "", "") for f in ir.input.front]


def float_diff(path, x) -> float:
    """The float reference's largest difference from onnxruntime on ``x``."""
    return float(np.abs(FloatModel(load_model_file(path)).predict(x) - ort_run(path, x)).max())


def _rows_stopped(ir, x, lengths):
    """The float model's outputs on each row's first ``lengths`` steps."""
    fm = FloatModel(ir)
    return np.stack([fm.predict(x[i:i + 1, : int(n)])[0] for i, n in enumerate(lengths)])


@pytest.mark.parametrize("exporter", sorted(EXPORTS))
@pytest.mark.parametrize("how", sorted(FRONTS))
def test_front_end_equals_onnxruntime_and_host(how, exporter, tmp_path):
    torch.manual_seed(7)
    path = tmp_path / f"{how}.onnx"
    x = export_front(FrontNet(how), path, exporter)
    ir = load_model_file(path)
    assert front_layers(ir) == FRONTS[how][0]
    assert ir.input.features == FEAT and ir.input.dense is None
    if how == "conv-linear":   # relu(Linear) a per-step layer on the frames, the linear one folded into the GRU
        from rnnskip import cells
        assert [(r.kind, r.input_dim) for r in ir.rnn_layers] == [(cells.per_step_cell().kind, 6), ("gru", 5)]
    if how == "leaky":
        assert [d.activation for d in ir.head] == ["leaky_relu(0.01)", "linear"]
    if how == "relu6":         # relu6 on the frames, per step and in the head
        assert [r.activation for r in ir.rnn_layers] == ["relu6", "tanh"]
        assert [d.activation for d in ir.head] == ["relu6", "softmax"]
    assert float_diff(path, x) <= 1e-5
    if exporter == "dynamic":   # and on short rows, where padding frames weigh most
        assert float_diff(path, x[:, :5]) <= 1e-5
    lengths = np.random.default_rng(1).integers(6, T + 1, len(x)).astype(np.int32)   # streams that stop early
    qm = quantize_on(ir, x, lengths)
    if how in ("bn-gru", "norm-gru", "norm-causal"):   # a normalisation of the model's input: centred on its mean
        assert qm.feature_offsets is not None
    # int8 close to float (a padding frame int8 cannot hold, e.g. clipped behind a pooling layer, is not)
    g, _ = GoldenModel(qm).run(x, lengths)
    from rnnskip.outputs import dequantize
    err = np.abs(dequantize(qm, g[:, : qm.output_dim]) - _rows_stopped(ir, x, lengths)).max()
    assert err <= 0.06, err
    from rnnskip.generate import generate
    generate(qm, tmp_path / "src", max_t=T)
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    ev = pipeline.evaluate(ir, qm, dataset(x, lengths, np.zeros(len(x), np.int64)), host_so=so)
    assert ev.host_checked == len(x) and ev.host_mismatches == 0, ev.first_mismatch


def test_batch_norm_before_a_padded_conv_pads_with_what_it_maps_to_zero(tmp_path):
    """torch pads the normalised input with zeros (F.pad after the BatchNorm1d); the folded Conv pads the raw
    input with the frame the normalisation sends to 0: without it the float reference is off by ~0.1."""
    torch.manual_seed(7)
    net = FrontNet("bn-in-causal")
    path = tmp_path / "m.onnx"
    x = export_front(net, path)
    conv = load_model_file(path).input.front[0]
    bn = net.f[0]
    want = (bn.running_mean - bn.bias * torch.sqrt(bn.running_var + bn.eps) / bn.weight).detach().numpy()
    np.testing.assert_allclose(conv.pad, want, rtol=1e-6, atol=1e-7)
    ir = load_model_file(path)
    x = x[:, :3]   # short rows, so the padding frames weigh in the final state (dynamic time axis)
    assert float_diff(path, x) <= 1e-5
    ir.input.front[0].pad = None   # padded with raw zeros instead: what Keras and torch do not compute
    assert np.abs(FloatModel(ir).predict(x) - ort_run(path, x)).max() > 1e-3


@needs_arm
@pytest.mark.parametrize("how", ["crnn", "bn-in-causal", "cnn-bigru", "relu6", "leaky", "depthwise"])
def test_front_end_firmware_bit_exact(how, tmp_path):
    """The emulated Cortex-M4 firmware equals the golden model on every sequence fed (outputs and step flags)."""
    from rnnskip import targets
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.generate import generate
    torch.manual_seed(7)
    path = tmp_path / "m.onnx"
    x = export_front(FrontNet(how), path)
    ir = load_model_file(path)
    lengths = np.full(len(x), T, np.int32)
    qm = quantize_on(ir, x, lengths)
    generate(qm, tmp_path / "src", max_t=T)
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    ev = pipeline.evaluate(ir, qm, dataset(x[:4], lengths[:4], np.zeros(4, np.int64)), firmware=fw,
                           emulator=Unicorn(t, traffic_sample=0, workers=1, progress=False))
    assert ev.device_checked == 4 and ev.device_mismatches == 0, ev.first_mismatch


class Refused(nn.Module):
    """A front end a stream cannot run (or rnnskip does not convert): REFUSED."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        groups = 2 if how == "grouped" else 1
        self.conv = nn.Conv1d(FEAT, 8, 3, groups=groups, padding=2 if how == "pad2" else 0)
        self.bn = _bn(FEAT)
        if how == "gamma0":
            with torch.no_grad():
                self.bn.weight[1] = 0.0
        self.rnn = nn.GRU(8, 5, batch_first=True)
        self.conv0 = nn.Conv1d(FEAT, FEAT, 1)
        self.lin0, self.lin = nn.Linear(FEAT, FEAT), nn.Linear(8, 8)
        if how == "tanh-bn":   # pads with mean - beta * std / gamma = -2, beyond tanh's +-1
            with torch.no_grad():
                self.bn.running_mean.fill_(0.0)
                self.bn.running_var.fill_(0.25 - self.bn.eps)
                self.bn.weight.fill_(0.25)
                self.bn.bias.fill_(1.0)
        self.fc = nn.Linear(5, 2)
        self.register_buffer("std", torch.rand(FEAT) + 0.5)
        self.register_buffer("drift", torch.linspace(0, 1, T)[:, None])   # varies along time, not per feature

    def forward(self, x):
        if self.how == "norm-time":
            x = x - self.drift
        if self.how == "std-over-x":
            x = self.std / x
        if self.how == "square":
            x = x * x
        if self.how == "lin-conv":
            x = torch.relu(self.lin0(x))
        if self.how == "hardtanh":
            x = F.hardtanh(self.lin0(x))
        z = x.transpose(1, 2)
        if self.how == "gamma0":
            z = F.pad(self.bn(z), (2, 0))
        if self.how == "tanh-bn":
            z = F.pad(self.bn(torch.tanh(self.conv0(z))), (2, 0))
        if self.how == "reflect":
            z = F.pad(z, (2, 0), mode="reflect")
        if self.how == "ceil":
            z = F.max_pool1d(z, 2, ceil_mode=True)
        z = self.conv(z)
        if self.how == "lin-pool":   # a per-step layer on the frames, then more front end: found accepted by review
            z = F.max_pool1d(torch.relu(self.lin(z.transpose(1, 2))).transpose(1, 2), 2)
        if self.how == "pad-pool":
            z = F.max_pool1d(z, 3, stride=1, padding=1)
        z = z.transpose(1, 2)
        y, h = self.rnn(z)
        return self.fc(h[-1])


#: how -> (what the support matrix row says, the refusal after "node '<name>' (<op>) ")
REFUSED = {
    "grouped": ("nn.Conv1d(groups=2) (grouped, not depthwise)",
                r"\(Conv\) has group=2 with a weight of 2 input channel\(s\) per group: rnnskip streams convolutions "
                r"with group=1 and depthwise ones \(group = the input channels, nn.Conv1d\(C, C \* m, k, groups=C\)\), "
                r"not other grouped convolutions"),
    "pad2": ("nn.Conv1d(3 taps, padding=2)",
             r"\(Conv\) pads the time axis with 2 frames before and 2 after \(a 3-frame window, stride 1\): rnnskip "
             r"streams a Conv with no padding, with 2 frames before \(causal: F.pad\(x, \(2, 0\)\)\) or, with "
             r"stride 1, 1 before and 1 after \('same'\)"),
    "gamma0": ("BatchNorm1d with a channel's weight 0, F.pad causal + Conv1d",
               r"\(Conv\) is padded \(causal\) after a BatchNormalization that maps channel 1 to a constant other "
               r"than 0: no input frame normalises to the zeros the Conv pads with, so the fold cannot pad the raw "
               r"input; rnnskip folds it before a Conv without padding \(or put it after the Conv\)"),
    "tanh-bn": ("Conv1d + tanh, BatchNorm1d mapping -2 to 0, F.pad causal + Conv1d",
                r"\(Conv\) pads with -?2, the input the normalisation before it maps to 0, but reads the tanh output "
                r"of '[^']+', whose int8 scale holds \+-1: put the normalisation before that activation, or after "
                r"this convolution"),
    "reflect": ("F.pad(mode='reflect') before a Conv1d",
                r"\(Pad\) has mode=reflect: rnnskip folds a zero Pad of the time axis into the next Conv"),
    "ceil": ("MaxPool1d(ceil_mode=True) on the input",
             r"\(MaxPool\) has ceil_mode=1: its last window depends on where the sequence ends; rnnskip streams "
             r"pooling with ceil_mode=0"),
    "pad-pool": ("MaxPool1d(padding=1) after a Conv1d",
                 r"\(MaxPool\) pads the time axis: rnnskip streams pooling without padding \(its padding would depend "
                 r"on where the sequence ends\)"),
    "lin-conv": ("relu(nn.Linear) on the input, then a Conv1d",
                 r"\(Conv\) follows a per-step MatMul: rnnskip streams a Conv front end on the input features and "
                 r"runs per-step MatMul\+Add layers after it, not before it"),
    "lin-pool": ("Conv1d, relu(nn.Linear) on its frames, then MaxPool1d",
                 r"\(MaxPool\) follows a per-step MatMul: rnnskip streams a Conv front end on the input features "
                 r"and runs per-step MatMul\+Add layers after it, not before it"),
    "hardtanh": ("hardtanh(nn.Linear) on the input (Clip(-1, 1))",
                 r"\(Clip\) clips to \[-1.0, 1.0\]: rnnskip supports Clip\(0, 6\) \(nn.ReLU6\) as an activation"),
    "norm-time": ("x - c with c of shape [time, 1] (not per feature)",
                  r"\(Sub\) subtracts a constant of shape \[16, 1\] on data with axes \('[^)]*\): rnnskip folds a "
                  r"normalisation with one value per feature \(\(x - mean\) / std, mean and std of shape "
                  r"\[features\]\)"),
    "std-over-x": ("std / x", r"\(Div\) divides a constant by model data: rnnskip folds a normalisation x / std, "
                              r"not std / x"),
    "square": ("x * x", r"\(Mul\) multiplies by model data: rnnskip folds elementwise arithmetic on model data only "
                        r"with a constant \(a normalisation such as \(x - mean\) / std\)"),
}


@pytest.mark.parametrize("how", sorted(REFUSED))
def test_front_ends_a_stream_cannot_run_are_refused_in_one_line(how, tmp_path):
    torch.manual_seed(7)
    path = tmp_path / f"{how}.onnx"
    export_front(Refused(how), path)
    with pytest.raises(RnnskipError) as e:
        load_model_file(path)
    msg = str(e.value)
    assert "\n" not in msg and re.fullmatch(r"node '[^']+' " + REFUSED[how][1], msg), msg


#: the op column of the support matrix for the rows that are not about a Conv
MATRIX_OP = {"hardtanh": "Clip",
             "bn-gru": "BatchNormalization", "norm-gru": "Sub, Div", "norm-causal": "Sub, Mul", "conv-norm": "Sub, Div",
             "norm-time": "Sub", "std-over-x": "Div", "square": "Mul"}


def matrix_rows(tmp_path, verdict):
    """(row, option, column, verdict) for docs/onnx_support.md (tests/test_onnx_import.py renders it)."""
    out = []
    for how, (_, option) in FRONTS.items():
        for exporter, col in EXPORTS.items():
            def run(how=how, exporter=exporter):
                torch.manual_seed(7)
                x = export_front(FrontNet(how), tmp_path / "last.onnx", exporter)
                return float_diff(tmp_path / "last.onnx", x)
            out.append((MATRIX_OP.get(how, "Conv"), option, col, verdict(run)))
    for how, (option, _) in REFUSED.items():
        def run(how=how):
            torch.manual_seed(7)
            export_front(Refused(how), tmp_path / "last.onnx")
            load_model_file(tmp_path / "last.onnx")
            return 0.0
        out.append((MATRIX_OP.get(how, "Conv"), option, EXPORTS["dynamic"], verdict(run)))
    return out


def test_pool_layer_reads_its_channels():
    """A pooling layer first in the front end takes its channel count from the input (PoolLayer.channels)."""
    p = PoolLayer("max", 2, 1, FEAT)
    assert p.channels == FEAT and p.window == 2


def test_circular_padding_names_itself(tmp_path):
    """Conv1d(padding_mode='circular') exports as slices of the time axis: the refusal says so (an audit found it
    advising dynamo=False, which the export already used)."""
    class Circular(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.rnn = nn.Conv1d(FEAT, 6, 3, padding=1, padding_mode="circular"), nn.GRU(6, 5)

        def forward(self, x):
            return self.rnn(self.conv(x.transpose(1, 2)).permute(2, 0, 1))[1][-1]

    path = tmp_path / "c.onnx"
    export_front(Circular(), path)
    with pytest.raises(RnnskipError) as e:
        load_model_file(path)
    assert "padding_mode='circular'" in str(e.value) and "dynamo=False" not in str(e.value), str(e.value)


def test_normalisation_written_out_is_read_as_one(tmp_path):
    """(x - mean) / std in the model's forward (Sub and Div nodes on buffers) folds as a BatchNormalization would:
    into the GRU, the device centring the input on the mean and the recurrent layer reading it in the
    normalisation's units (FeatureInput.norm_scale = 1 / std)."""
    net = FrontNet("norm-gru")
    path = tmp_path / "n.onnx"
    export_front(net, path)
    ir = load_model_file(path)
    np.testing.assert_allclose(ir.input.center, net.mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ir.input.norm_scale, 1.0 / net.std.numpy(), rtol=1e-6)


def test_batch_norm_on_the_input_into_a_per_step_linear_centres_it(tmp_path):
    """nn.BatchNorm1d on x.transpose(1, 2), back, then a per-step nn.Linear: the input is centred on what the
    normalisation maps to 0, as for Keras (an audit found it uncentred: int8 0.76 against float 0.97)."""
    class BnLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.lin, self.rnn, self.fc = _bn(FEAT), nn.Linear(FEAT, 6), nn.GRU(6, 5, batch_first=True), \
                nn.Linear(5, 3)
            with torch.no_grad():
                self.bn.running_mean.copy_(torch.tensor([100.0, -50.0, 1013.0, 20.0]))

        def forward(self, x):
            z = torch.tanh(self.lin(self.bn(x.transpose(1, 2)).transpose(1, 2)))
            return torch.softmax(self.fc(self.rnn(z)[1][-1]), -1)

    path = tmp_path / "m.onnx"
    net = BnLinear()
    x = export_front(net, path)
    ir = load_model_file(path)
    bn = net.bn
    want = (bn.running_mean - bn.bias * torch.sqrt(bn.running_var + bn.eps) / bn.weight).detach().numpy()
    np.testing.assert_allclose(ir.input.center, want, rtol=1e-6)
    assert ir.input.dense is not None and ir.input.norm_scale is None   # per-feature scales fold into the Linear
    x = x + want   # raw readings around the centre
    lengths = np.full(len(x), T, np.int32)
    qm = quantize_on(ir, x, lengths)
    from rnnskip.outputs import dequantize
    err = np.abs(dequantize(qm, GoldenModel(qm).run(x, lengths)[0][:, :3]) - FloatModel(ir).predict(x)).max()
    assert qm.feature_offsets is not None and err <= 0.06, err


class Arith(nn.Module):
    """Normalisations an audit found misread: "zero" (x - m) * w with a feature switched off (w = 0), "scalar"
    (x - 3) * 0.5 on an input whose feature axis the export left dynamic, "lin-time" a constant varying along time
    added to a per-step nn.Linear's output, "shape-div" the output divided by x.shape[1], "norm-out" a normalised
    state as the model's output, "tiny-std" a constant feature divided by a std of 1e-8 (float 0.94 off
    onnxruntime)."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.lin, self.conv = nn.Linear(FEAT, T), nn.Conv1d(FEAT, 6, 3)   # T outputs: the constant's size fits
        self.rnn4, self.rnn6, self.fc = nn.GRU(FEAT, 5, batch_first=True), nn.GRU(6, 5, batch_first=True), \
            nn.Linear(5, 3)
        self.rnn_t = nn.GRU(T, 5, batch_first=True)
        self.register_buffer("m", torch.tensor([50.0, -20.0, 3.0, 100.0]))
        self.register_buffer("w", torch.tensor([0.2, 0.5, 0.0, 0.1]))
        self.register_buffer("drift", torch.linspace(0, 1, T)[:, None])
        self.register_buffer("tiny", torch.tensor([2.0, 1e-8, 1.5, 1.0]))   # a constant feature's std

    def forward(self, x):
        if self.how == "tiny-std":
            return self.fc(self.rnn4((x - self.m) / self.tiny)[1][-1])
        if self.how == "zero":
            return self.fc(self.rnn4((x - self.m) * self.w)[1][-1])
        if self.how == "scalar":
            return self.fc(self.rnn6(self.conv(((x - 3.0) * 0.5).transpose(1, 2)).transpose(1, 2))[1][-1])
        if self.how == "lin-time":
            return self.fc(self.rnn_t(self.lin(x) + self.drift)[1][-1])
        h = self.rnn4(x)[1][-1]
        return self.fc(h) / x.shape[1] if self.how == "shape-div" else (h - 0.1) / 0.5


def test_normalisations_an_audit_found_misread(tmp_path):
    """A feature scaled by 0 into a recurrent first layer keeps a norm_scale of 1 (it divided by 0: int8 0.28 off
    float); a scalar normalisation on a dynamic feature axis centres every feature (the C offset array had one
    entry, so C and golden quantised differently); the rest are refused in one line, not folded wrong (0.49 off
    onnxruntime) or misnamed."""
    import ctypes
    torch.manual_seed(1)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, T, FEAT)) * [5, 2, 0.5, 10] + [50, -20, 3, 100]).astype(np.float32)
    export_front(Arith("zero"), tmp_path / "zero.onnx")
    ir = load_model_file(tmp_path / "zero.onnx")
    assert ir.input.norm_scale.tolist() == pytest.approx([0.2, 0.5, 1.0, 0.1])
    L = np.full(N, T, np.int32)
    qm = quantize_on(ir, x, L)
    from rnnskip.outputs import dequantize
    err = np.abs(dequantize(qm, GoldenModel(qm).run(x, L)[0][:, :3]) - FloatModel(ir).predict(x)).max()
    assert np.all(np.isfinite(qm.feature_scales)) and err <= 0.02, err
    x = (rng.standard_normal((N, T, FEAT)) + 3).astype(np.float32)
    net = Arith("scalar").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), str(tmp_path / "s.onnx"), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n", 1: "t", 2: "f"}})
    ir = load_model_file(tmp_path / "s.onnx")
    assert ir.input.center.tolist() == [3.0] * FEAT and float_diff(tmp_path / "s.onnx", x) <= 1e-5
    qm = quantize_on(ir, x, L)
    from rnnskip.generate import generate
    generate(qm, tmp_path / "src", max_t=T)
    lib = ctypes.CDLL(str(pipeline.build_host(tmp_path / "src", tmp_path / "host")))
    step, q = np.ascontiguousarray(x[0, 0]), np.zeros(FEAT, np.int8)
    lib.rnnskip_quantize_features(step.ctypes.data_as(ctypes.c_void_p), q.ctypes.data_as(ctypes.c_void_p))
    assert q.tolist() == GoldenModel(qm).device_inputs(x[:1, :1])[0, 0, :FEAT].tolist()
    for how, want in (
            ("lin-time", r"\(Add\) adds a constant of shape \[16, 1\] on data with axes \('[^)]*\): rnnskip folds a "
                         r"normalisation with one value per feature"),
            ("shape-div", r"\(Div\) divides by a value computed from the input's shape \(e.g. x.shape\[1\]\), which "
                          r"changes with the sequence: rnnskip folds elementwise arithmetic on model data only with "
                          r"a constant"),
            ("norm-out", r"output 'y' is a normalisation's output \(a BatchNormalization, or arithmetic with "
                         r"constants\) with no Dense layer after it"),
            ("tiny-std", r"\(Div\) scales feature 1 by 1e\+08 \(a standard deviation of 1e-08\): folded into "
                         r"float32 weights, a normalisation this sharp loses the other features' precision")):
        export_front(Arith(how), tmp_path / f"{how}.onnx")
        with pytest.raises(RnnskipError) as e:
            load_model_file(tmp_path / f"{how}.onnx")
        assert "\n" not in str(e.value) and re.search(want, str(e.value)), str(e.value)


@needs_arm
def test_a_depthwise_crnn_converts_with_delta_and_says_what_its_macs_count(tmp_path):
    """rnnskip-convert --delta on a time-channel separable CRNN from PyTorch: bit-exact, and the summary says the
    delta MACs leave out the front end's (a user check read "4.12x fewer" while the convolutions' MACs stayed)."""
    from test_cli import cli

    from rnnskip.datasets import Dataset, save_npz
    from rnnskip.delta.spec import DeltaSpec
    torch.manual_seed(7)
    path = tmp_path / "dw.onnx"
    x = export_front(FrontNet("depthwise"), path)
    ir = load_model_file(path)
    DeltaSpec([4], [4]).save(tmp_path / "delta.json", ir)
    save_npz(str(tmp_path / "d.npz"), Dataset(x=x, y=np.zeros(len(x), np.int64), lengths=np.full(len(x), T, np.int32)))
    p = cli("rnnskip-convert", path, "--delta", tmp_path / "delta.json", "--data", tmp_path / "d.npz",
            "--emulate-max", "4", "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    rep = __import__("json").loads((tmp_path / "o" / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 4
    front = ir.front_macs()
    assert front == 3 * FEAT * 2 + 2 * FEAT * 6 and rep["model"]["front_macs_per_frame"] == front
    assert f"MAC/step + {front} MAC front end" in p.stdout
    assert re.search(rf"delta MACs count +the recurrent layers and the head: the front end's {front} MAC per step "
                     r"run the same with and without delta", p.stdout), p.stdout
    # one rnnskip_step per input frame: the cycles per frame are the inference's over its T frames
    e = rep["emulation"]
    assert e["input_frames_mean"] == T and e["cycles_per_input_frame"] == pytest.approx(e["cycles_per_inference"] / T)
    assert re.search(rf"cycles / input frame +{e['cycles_per_input_frame']:,.0f}  \(mean over the {T} frames of a "
                     r"sequence; rnnskip_step per frame", p.stdout), p.stdout
    assert f"(the recurrent layers' and head's MACs; the step's cycles include the front end's {front} MAC)" in p.stdout
