"""A binary classifier that ends in one logit (PyTorch's BCEWithLogitsLoss, Keras' BinaryCrossentropy(from_logits=
True)): with integer labels 0 and 1 it is scored as a classifier, class 1 where the logit is above 0 (a user found
it reported as a regression, its accuracy missing and delta-tune --max-loss refused). Integer targets beyond 0 and
1, or float ones, stay a regression's."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import needs_arm

from rnnskip.converter.formats import load_model_file
from rnnskip.datasets import Dataset, load_npz, save_npz
from rnnskip.errors import RnnskipError
from rnnskip.outputs import check_class_outputs

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
FEAT, UNITS, T = 3, 6, 8


class OneLogit(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.fc = torch.nn.GRU(FEAT, UNITS, batch_first=True), torch.nn.Linear(UNITS, 1)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


@pytest.fixture(scope="module")
def logit_model(tmp_path_factory):
    """The model exported, 120 rows and their labels: the logit's sign, flipped on every tenth row (so accuracy is
    not trivially 1)."""
    d = tmp_path_factory.mktemp("logit")
    torch.manual_seed(0)
    path = d / "m.onnx"
    x = np.random.default_rng(0).normal(0, 1, (120, T, FEAT)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(OneLogit().eval(), (torch.from_numpy(x[:2]),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "b"}})
    logit = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0][:, 0]
    y = (logit > 0).astype(np.int64)
    y[::10] ^= 1
    return path, x, y, logit


def _loaded_y(tmp_path, path, x, y):
    save_npz(str(tmp_path / "d.npz"), Dataset(x=x, y=y, lengths=np.full(len(x), T, np.int32)))
    return load_npz(str(tmp_path / "d.npz"), ir=load_model_file(path)).y


def test_integer_zero_one_labels_make_it_a_classifier(logit_model, tmp_path):
    path, x, y, _ = logit_model
    got = _loaded_y(tmp_path, path, x, y)
    assert got.dtype == np.int64 and np.array_equal(got, y)
    check_class_outputs(load_model_file(path), "delta-tune", got)   # no refusal: a classifier on its logit


@pytest.mark.parametrize("y,why", [(lambda y: y.astype(np.float32), "float 0/1 targets"),
                                   (lambda y: y * 2, "integer counts 0 and 2")])
def test_other_targets_stay_a_regression(logit_model, tmp_path, y, why):
    path, x, y0, _ = logit_model
    got = _loaded_y(tmp_path, path, x, y(y0))
    assert got.dtype == np.float32, why
    with pytest.raises(RnnskipError, match=r"or a linear one with integer labels\); this one ends in 1 'linear' "
                                           r"output\(s\)$"):
        check_class_outputs(load_model_file(path), "delta-tune", got)


def test_delta_train_stops_on_the_logits_own_accuracy(logit_model):
    """delta-train's validation accuracy scores one logit at 0 as rnnskip does (Keras' "accuracy" took 0.5: a review
    found logits [0.2, 0.3, 0.4, -0.3] against labels [1, 1, 1, 0] scored 0.25), trained with from_logits."""
    k = pytest.importorskip("tf_keras")
    from rnnskip.delta.train import classifier_loss, classifier_metric
    ir = load_model_file(logit_model[0])
    metric = classifier_metric(k, ir)
    metric.update_state(np.array([[1], [1], [1], [0]]), np.array([[0.2], [0.3], [0.4], [-0.3]]))
    assert float(metric.result()) == 1.0 and metric.name == "accuracy"
    assert classifier_loss(k, ir).get_config()["from_logits"] is True


def cli(*args):
    exe = Path(sys.executable).parent
    return subprocess.run([str(exe / args[0])] + [str(a) for a in args[1:]], capture_output=True, text=True)


@needs_arm
def test_convert_reports_the_logit_classifier_accuracy(logit_model, tmp_path):
    """The report's float accuracy is the logit's sign against the labels (onnxruntime's logit, counted here), the
    int8 and device accuracies are there, and delta-tune takes an accuracy budget."""
    path, x, y, logit = logit_model
    save_npz(str(tmp_path / "d.npz"), Dataset(x=x, y=y, lengths=np.full(len(x), T, np.int32)))
    p = cli("rnnskip-convert", path, "--target", "cortex-m4", "--data", tmp_path / "d.npz", "--out", tmp_path / "o")
    assert p.returncode == 0, p.stderr
    assert "note: y in " in p.stdout + p.stderr and "holds integers 0 and 1 and the model ends in one linear output: " \
        "scored as a binary classifier on its logit (class 1 where it is above 0); save y as floats to score the " \
        "model as a regression" in p.stdout + p.stderr
    acc = json.loads((tmp_path / "o" / "report.json").read_text())["accuracy"]
    assert acc["float"] == pytest.approx(np.mean((logit > 0) == y), abs=1e-12) and acc["float"] == 0.9
    assert abs(acc["int8_golden"] - acc["float"]) <= 0.05 and acc["int8_device"] == acc["int8_golden"]
    p = cli("rnnskip", "delta-tune", path, "--val", tmp_path / "d.npz", "--max-loss", "5", "--grid", "0,4",
            "--out", tmp_path / "delta.json")
    assert p.returncode == 0, p.stderr
