"""Models that read each row's own steps of a padded batch through a lengths input, as PyTorch code does without
pack_padded_sequence: the output at each row's last valid step (out[torch.arange(B), lengths - 1], or out.gather
along the time axis), or each row's mean over its own steps ((out * mask).sum(1) / lengths). PyTorch runs every step
and reads only the row's own; rnnskip stops each row at the data's lengths, which gives the same. The float
reference equals onnxruntime fed the same lengths to 1e-5 on ragged rows, the int8 golden model equals the host C
build bit for bit, the firmware too (rnnskip-convert end to end), and readings that are not that are refused in one
line."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import dataset, needs_arm, quantize_on

from rnnskip import pipeline
from rnnskip.converter.formats import load_model_file
from rnnskip.errors import RnnskipError
from rnnskip.reference import FloatModel

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn
VOCAB, FEAT, UNITS, T, N = 30, 4, 6, 9, 16


class LastValid(nn.Module):
    """A recurrent layer read at each row's last valid step: "index" out[arange(B), lengths - 1] (batch-first),
    "tm" out[lengths - 1, arange(B)] (time-major), "gather" out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1,
    H)).squeeze(1), "lstm2" a 2-layer LSTM, "tok" an embedding first, "softmax" softmax after the head; refused:
    "bi" a bidirectional GRU indexed so (its backward direction there has read the padding), "minus2" lengths - 2,
    "conv" after a Conv1d front end. Means over each row's own steps: "mean" (out * mask.unsqueeze(-1).float()).sum(1) /
    lengths[:, None].float() with mask = torch.arange(T)[None, :] < lengths[:, None], "mean-count" divided by
    mask.sum(1, keepdim=True), "mean-gt" the mask as lengths[:, None] > torch.arange(T)[None, :], "mean-tm"
    time-major; refused: "mean-bi" of a bidirectional GRU, "len-feature" the lengths as a feature of the head."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        bf = how not in ("tm", "mean-tm")
        self.emb = nn.Embedding(VOCAB, FEAT) if how == "tok" else None
        self.conv = nn.Conv1d(FEAT, FEAT, 3, padding=1) if how == "conv" else None
        cell = nn.LSTM if how in ("lstm2", "tok") else nn.GRU
        self.rnn = cell(FEAT, UNITS, num_layers=2 if how == "lstm2" else 1, batch_first=bf,
                        bidirectional=how in ("bi", "mean-bi"))
        self.fc = nn.Linear(2 * UNITS if how in ("bi", "mean-bi") else UNITS + (how == "len-feature"), 3)

    def forward(self, x, lengths):
        if self.emb is not None:
            x = self.emb(x)
        if self.conv is not None:
            x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        y = self.rnn(x)[0]
        if self.how.startswith("mean"):
            return self.fc(self._mean(y, lengths))
        if self.how == "mask5":   # a mask over 5 steps, not the input's 9: its sum is no row's length
            mask5 = torch.arange(5)[None, :] < lengths[:, None]
            mask = torch.arange(y.size(1))[None, :] < lengths[:, None]
            return self.fc((y * mask.unsqueeze(-1).float()).sum(1) / mask5.sum(1, keepdim=True).float())
        if self.how == "unit0":   # the gather's index not expanded over the hidden units: unit 0 alone
            return torch.sigmoid(y.gather(1, (lengths - 1).view(-1, 1, 1)).view(-1, 1))
        if self.how == "len-feature":
            return self.fc(torch.cat([y[:, -1], lengths[:, None].float()], 1))
        if self.how == "tm":
            last = y[lengths - 1, torch.arange(y.size(1))]
        elif self.how == "gather":
            last = y.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, y.size(2))).squeeze(1)
        else:
            last = y[torch.arange(y.size(0)), lengths - (2 if self.how == "minus2" else 1)]
        z = self.fc(last)
        return torch.softmax(z, -1) if self.how == "softmax" else z

    def _mean(self, y, lengths):
        if self.how == "mean-tm":
            mask = torch.arange(y.size(0))[:, None] < lengths[None, :]
            return (y * mask[..., None].float()).sum(0) / lengths[:, None].float()
        steps = torch.arange(y.size(1))[None, :]
        mask = lengths[:, None] > steps if self.how == "mean-gt" else steps < lengths[:, None]
        total = (y * mask.unsqueeze(-1).float()).sum(1)
        if self.how == "mean-count":
            return total / mask.sum(1, keepdim=True).float()
        return total / lengths[:, None].float()


def export(how, path, exporter="dynamic", seed=0):
    """LastValid(how) exported with the TorchScript exporter (dynamic batch and time) or the dynamo exporter
    (dynamic batch); returns (x in the model's layout, ragged lengths) as numpy."""
    torch.manual_seed(seed)
    net = LastValid(how).eval()
    rng = np.random.default_rng(seed)
    tm = how in ("tm", "mean-tm")
    shape = (T, N) if tm else (N, T)
    x = torch.randint(0, VOCAB, shape) if how == "tok" else torch.randn(shape + (FEAT,))
    lengths = torch.from_numpy(rng.integers(1, T + 1, N))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter in ("dynamic", "static"):
            axes = {"x": {1: "b", 0: "t"} if tm else {0: "b", 1: "t"}, "lengths": {0: "b"}} \
                if exporter == "dynamic" else None
            torch.onnx.export(net, (x, lengths), str(path), opset_version=17, dynamo=False,
                              input_names=["x", "lengths"], output_names=["y"], dynamic_axes=axes)
        else:
            pytest.importorskip("onnxscript")
            b = torch.export.Dim("batch")
            torch.onnx.export(net, (x, lengths), str(path), dynamo=True, input_names=["x", "lengths"],
                              dynamic_shapes={"x": {1 if tm else 0: b}, "lengths": {0: b}})
    return x.numpy(), lengths.numpy()


def batch_major(x, how):
    return np.swapaxes(x, 0, 1) if how in ("tm", "mean-tm") else x


def float_diff(path, how, x, lengths) -> float:
    """The float reference against onnxruntime on ragged rows, both fed the lengths."""
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "lengths": lengths})[0]
    got = FloatModel(load_model_file(path)).predict(batch_major(x, how), lengths)
    return float(np.abs(got - want).max())


CONVERTED = {"index": "out[torch.arange(B), lengths - 1] (each row's last valid step; lengths as a graph input)",
             "tm": "time-major: out[lengths - 1, torch.arange(B)]",
             "gather": "out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, H)).squeeze(1)",
             "lstm2": "2-layer LSTM, out[torch.arange(B), lengths - 1]",
             "tok": "nn.Embedding, LSTM, out[torch.arange(B), lengths - 1]",
             "softmax": "out[torch.arange(B), lengths - 1], softmax after the head",
             "mean": "(out * mask.unsqueeze(-1).float()).sum(1) / lengths[:, None].float(), mask = "
                     "torch.arange(T)[None, :] < lengths[:, None] (each row's mean over its own steps)",
             "mean-count": "(out * mask.unsqueeze(-1).float()).sum(1) / mask.sum(1, keepdim=True)",
             "mean-gt": "the mask as lengths[:, None] > torch.arange(T)[None, :], then the mean",
             "mean-tm": "time-major: (out * mask[..., None].float()).sum(0) / lengths[:, None].float()"}
#: out.gather(..).squeeze(1) with a dynamic time axis: TorchScript writes the squeeze as an If (refused, HINTS)
EXPORTERS = {"dynamic": "torch.onnx.export, opset 17", "dynamo": "torch.onnx.export(dynamo=True)"}


@pytest.mark.parametrize("how,exporter", [(h, e) for h in CONVERTED for e in EXPORTERS
                                          if (h, e) != ("gather", "dynamic")])   # test_gather_exported_by_torchscript
def test_last_valid_step_equals_onnxruntime(how, exporter, tmp_path):
    path = tmp_path / "m.onnx"
    x, lengths = export(how, path, exporter)
    assert len(set(lengths.tolist())) > 3 and lengths.min() < T   # ragged: rows end before the last step
    ir = load_model_file(path)
    assert ir.lengths_input and ir.source_io["lengths"] == "lengths" and ir.source_io["lengths_dtype"] == "int64"
    assert "'lengths' gives each row's length (the model reads each row's own steps): pass it as lengths in --data" \
        in ir.notes
    assert ir.pool == ("avg" if how.startswith("mean") else "")
    assert float_diff(path, how, x, lengths) <= 1e-5
    # and not just the last step: the same rows read at their last step differ
    full = FloatModel(ir).predict(batch_major(x, how), np.full(N, T, np.int32))
    short = lengths < T
    assert np.abs(full[short] - FloatModel(ir).predict(batch_major(x, how), lengths)[short]).max() > 1e-3


@pytest.mark.parametrize("how", ["index", "tm", "mean"])
def test_static_shapes_export(how, tmp_path):
    """TorchScript without dynamic axes folds torch.arange(B) into a constant (a review found the index refused)."""
    path = tmp_path / "m.onnx"
    x, lengths = export(how, path, "static")
    assert float_diff(path, how, x, lengths) <= 1e-5


@pytest.mark.parametrize("how", ["index", "tm", "lstm2", "tok", "mean", "mean-tm"])
def test_golden_equals_host_build(how, tmp_path):
    path = tmp_path / "m.onnx"
    x, lengths = export(how, path, "dynamic", seed=1)
    ir = load_model_file(path)
    xb = batch_major(x, how)
    lengths = lengths.astype(np.int32)
    qm = quantize_on(ir, xb, lengths)
    from rnnskip.generate import generate
    generate(qm, tmp_path / "src", max_t=T)
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    ev = pipeline.evaluate(ir, qm, dataset(xb, lengths), host_so=so)
    assert ev.host_checked == N and ev.host_mismatches == 0, ev.first_mismatch


def cli(*args):
    exe = Path(sys.executable).parent
    return subprocess.run([str(exe / args[0])] + [str(a) for a in args[1:]], capture_output=True, text=True)


@needs_arm
@pytest.mark.parametrize("how", ["index", "mean"])
def test_convert_end_to_end_with_ragged_lengths(how, tmp_path):
    """rnnskip-convert with the lengths in --data: the reference check feeds them to onnxruntime (int64, as the graph
    declares), every row is compared, and golden = host = emulated firmware."""
    from rnnskip.datasets import Dataset, save_npz
    path = tmp_path / "m.onnx"
    torch.manual_seed(0)
    export(how, path, "dynamo")
    rng = np.random.default_rng(5)
    xs = rng.normal(0, 1, (40, T, FEAT)).astype(np.float32)
    ls = rng.integers(1, T + 1, 40)
    ys = np.argmax(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": xs, "lengths": ls})[0], 1)
    save_npz(str(tmp_path / "d.npz"), Dataset(x=xs, y=ys, lengths=ls.astype(np.int32)))
    out = tmp_path / "m4"
    p = cli("rnnskip-convert", path, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out", out)
    assert p.returncode == 0, p.stderr
    assert "warning: lengths" not in p.stdout + p.stderr   # the model takes them: nothing to warn about
    rep = json.loads((out / "report.json").read_text())
    assert rep["bitexact"]["mismatches"] == 0 and rep["bitexact"]["device_checked"] == 40
    assert rep["accuracy"]["float"] == 1.0   # labels: onnxruntime's own answers on the ragged rows
    rc = rep["reference_check"]
    assert rc["runtime"] == "onnxruntime" and rc["rows"] == 40 and rc["max_abs_diff"] <= 1e-5


def refusal(path) -> str:
    with pytest.raises(RnnskipError) as e:
        load_model_file(path)
    return str(e.value)


REFUSED = {
    "bi": ("bidirectional=True, out[torch.arange(B), lengths - 1]",
           "takes each row's last valid step of bidirectional operator 'rnn/GRU', whose backward direction there has "
           "read the padding after the row's length: rnnskip reads each row's own steps of forward layers (a "
           "bidirectional layer with lengths: sequence_lens on the operator, Y_h read)"),
    "mean-bi": ("bidirectional=True, (out * mask.unsqueeze(-1).float()).sum(1) / lengths[:, None].float()",
                "averages each row over its own steps of bidirectional operator 'rnn/GRU', whose backward direction "
                "there has read the padding after the row's length: rnnskip reads each row's own steps of forward "
                "layers (a bidirectional layer with lengths: sequence_lens on the operator, Y_h read)"),
    "mask5": ("(out * mask).sum(1) / mask5.sum(1): a mask over 5 of the 9 steps as the divisor",
              "sums a mask over 5 steps where the input has no fixed number of steps: that is not each row's length; "
              "rnnskip reads mask.sum(1) of torch.arange(T) with T the input's own steps"),
    "unit0": ("out.gather(1, (lengths - 1).view(-1, 1, 1)): hidden unit 0 alone",
              "gathers a recurrent output other than at each row's last valid step along its time axis, every hidden "
              "unit: rnnskip reads out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden))"),
    "len-feature": ("torch.cat([out[:, -1], lengths[:, None].float()], 1): the lengths as a feature",
                    "node 'Concat' (Concat) computes with the lengths input: rnnskip reads the lengths as each row's "
                    "last valid step (out[torch.arange(B), lengths - 1]) or to average each row over its own steps "
                    "((out * mask).sum(1) / lengths)"),
    "minus2": ("out[torch.arange(B), lengths - 2]",
               "subtracts 2 from the lengths: rnnskip reads them as each row's last valid step, lengths - 1"),
    "conv": ("Conv1d front end, then out[torch.arange(B), lengths - 1]",
             "takes each row's last valid step after a Conv front end, whose frames are not the input's steps: "
             "rnnskip streams each row's steps through the front end; read out[:, -1]"),
}


@pytest.mark.parametrize("how", list(REFUSED))
def test_other_readings_refused_in_one_line(how, tmp_path):
    path = tmp_path / "m.onnx"
    export(how, path)
    msg = refusal(path)
    assert "\n" not in msg and msg.endswith(REFUSED[how][1]), msg


def test_gather_exported_by_torchscript(tmp_path):
    """The TorchScript exporter builds the gather's expanded index through a run-time Where that shape inference does
    not follow: refused, since nothing shows the index covers every hidden unit (a review found an index of one unit
    converted with the whole layer as output), with the exports that convert."""
    path = tmp_path / "m.onnx"
    export("gather", path)
    assert refusal(path).endswith("(GatherElements) gathers with an index whose shape the graph does not fix, so "
                                  "rnnskip cannot check it reads every hidden unit of one step: export with "
                                  "dynamo=True, or index out[torch.arange(B), lengths - 1]")


def _matrix_op(how: str, exporter: str) -> str:
    """The support matrix's row label: the op types that read the lengths."""
    if how.startswith("mean") or how == "mask5":
        return ("Greater" if how == "mean-gt" else "Less") + ", ReduceSum, Div"
    if how == "len-feature":
        return "Concat"
    return "GatherElements" if how in ("gather", "unit0") else "GatherND" if exporter == "dynamo" else "Gather"


def matrix_rows(tmp_path, verdict):
    """(row, option, column, verdict) for docs/onnx_support.md (tests/test_onnx_import.py renders it)."""
    out = []
    for how, option in CONVERTED.items():
        for exporter, col in EXPORTERS.items():
            def run(how=how, exporter=exporter):
                x, lengths = export(how, tmp_path / "last.onnx", exporter)
                return float_diff(tmp_path / "last.onnx", how, x, lengths)
            out.append((_matrix_op(how, exporter), option, col, verdict(run)))
    for how, (option, _) in REFUSED.items():
        def run(how=how):
            export(how, tmp_path / "last.onnx")
            load_model_file(tmp_path / "last.onnx")
            return 0.0
        out.append((_matrix_op(how, "dynamic"), option, EXPORTERS["dynamic"], verdict(run)))
    return out
