"""rnnskip demo, PyTorch edition: train a small nn.GRU on aeon's bundled JapaneseVowels (no
download), export it with torch.onnx.export, convert the .onnx for a Cortex-M4, emulate the
whole test set and print the report -- the PyTorch twin of `make demo`.

    .venv/bin/python examples/pytorch_gru.py     (needs: pip install -e '.[onnx,torch]')
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path


def train(out: Path, seed: int = 0, epochs: int = 60):
    import numpy as np
    import torch
    from torch import nn

    from rnnskip.datasets import Dataset, load_aeon, save_npz

    full_ds, classes = load_aeon("JapaneseVowels", "train")
    test_ds, _ = load_aeon("JapaneseVowels", "test")
    held = np.arange(len(full_ds)) % 5 == 4   # every 5th training sequence: validation data
    train_ds, val_ds = full_ds.subset(~held), full_ds.subset(held)
    T = max(full_ds.x.shape[1], test_ds.x.shape[1])
    F = full_ds.x.shape[2]

    def padded(ds):
        # the exported graph runs every step of a row (zero features after the sequence), so the model is
        # trained that way and the data says every row is T steps long
        x = np.zeros((len(ds), T, F), np.float32)
        x[:, :ds.x.shape[1]] = ds.x
        return Dataset(x=x, y=ds.y, lengths=np.full(len(ds), T, np.int32))

    train_ds, val_ds, test_ds = padded(train_ds), padded(val_ds), padded(test_ds)
    out.mkdir(parents=True, exist_ok=True)
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        save_npz(str(out / f"{name}.npz"), ds)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(F, 32, batch_first=True)
            self.fc = nn.Linear(32, len(classes))

        def forward(self, x):
            y, _ = self.gru(x)
            return self.fc(y[:, -1])   # logits; the exported model ends in softmax (below)

    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    x, y = torch.from_numpy(train_ds.x), torch.from_numpy(np.asarray(train_ds.y, np.int64))
    print(f"training nn.GRU(32) on JapaneseVowels: {len(train_ds)} train / {len(val_ds)} validation / "
          f"{len(test_ds)} test sequences, {F} features, {len(classes)} classes")
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(torch.from_numpy(test_ds.x)).argmax(1).numpy() == test_ds.y).mean()
    print(f"PyTorch test accuracy: {acc:.4f}")

    class WithSoftmax(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), -1)

    path = out / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice
        torch.onnx.export(WithSoftmax(net).eval(), (x[:2],), str(path), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "time"}})
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="build/pytorch_gru")
    ap.add_argument("--target", default="cortex-m4")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()
    model = train(out / "model")
    from rnnskip.errors import RnnskipError
    from rnnskip.pipeline.convert import run_convert
    m = out / "model"
    print(f"\nrnnskip-convert {model} --target {args.target} --data {m / 'test.npz'} --calib {m / 'train.npz'} "
          f"--out {out / args.target}")
    try:
        conv = run_convert(model, args.target, m / "test.npz", out / args.target, calib=m / "train.npz", log=print,
                           note=lambda s: print(s, file=sys.stderr))
        print(conv.summary())
        print(f"wrote {conv.out / 'report.json'}")
        conv.check()
    except RnnskipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"PyTorch demo finished in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
