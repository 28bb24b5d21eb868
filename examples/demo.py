"""rnnskip demo: train a small GRU on aeon's bundled JapaneseVowels (no download),
save it as a Keras-2 .h5, convert it for a Cortex-M4, emulate the whole test set
and print the report.   Run: make demo   (or .venv/bin/python examples/demo.py)
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # keep TensorFlow's start-up chatter out of the demo
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def train(out: Path, seed: int = 0):
    import warnings
    warnings.filterwarnings("ignore")
    import numpy as np

    from rnnskip.datasets import load_aeon, save_npz
    from rnnskip.tfquiet import quiet_stderr
    with quiet_stderr():   # TensorFlow's C++ start-up lines go straight to stderr
        import tf_keras as keras

    full_ds, classes = load_aeon("JapaneseVowels", "train")
    test_ds, _ = load_aeon("JapaneseVowels", "test")
    # every 5th training sequence is held out as validation data for delta-tune / train-predictor
    held = np.arange(len(full_ds)) % 5 == 4
    train_ds, val_ds = full_ds.subset(~held), full_ds.subset(held)
    out.mkdir(parents=True, exist_ok=True)
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        save_npz(str(out / f"{name}.npz"), ds)
    keras.utils.set_random_seed(seed)
    T, F = train_ds.x.shape[1:]
    model = keras.Sequential([
        keras.layers.Masking(mask_value=0.0, input_shape=(None, F)),
        keras.layers.GRU(32),
        keras.layers.Dense(len(classes), activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"training GRU(32) on JapaneseVowels: {len(train_ds)} train / {len(val_ds)} validation / "
          f"{len(test_ds)} test sequences, {F} features, {len(classes)} classes")
    with quiet_stderr():
        model.fit(train_ds.x, train_ds.y, epochs=40, batch_size=32, verbose=0, validation_data=(val_ds.x, val_ds.y),
                  callbacks=[keras.callbacks.ProgbarLogger()] if sys.stdout.isatty() else [])
        _, acc = model.evaluate(test_ds.x, test_ds.y, verbose=0)
    print(f"Keras test accuracy: {acc:.4f}")
    model.save(out / "model.h5")
    return out / "model.h5"


def certifiable_budget(n: int, confidence: float = 0.9) -> tuple:
    """(smallest loss budget in points that ``n`` certification rows can certify at ``confidence``,
    the half point above it a command can ask for) - rnnskip.certify's bound with no loss seen."""
    from rnnskip.certify import smallest_certifiable
    b = 100.0 * smallest_certifiable(n, 1.0 - confidence)
    return b, math.floor(2 * b + 1) / 2


def next_steps(out: Path, model: Path, target: str = "cortex-m4") -> tuple:
    """(what the budgets rest on, the commands that apply delta networks and a skip predictor to the
    demo's model): each budget is one the demo's validation rows can certify, so every command works
    (tests/test_examples.py runs them)."""
    from rnnskip.certify import split_rows, up2
    from rnnskip.datasets import load_npz
    m = out / "model"
    n = len(load_npz(str(m / "val.npz")))
    half = n - len(split_rows(n)[0])          # train-predictor certifies on half of --val
    b_all, ask_all = certifiable_budget(n)
    b_half, ask_half = certifiable_budget(half)
    text = (f"next, with the same files. Budgets are certified (90% confidence) on the {n} validation "
            f"sequences; with none of them changed, they certify a loss of {up2(b_all)} points when all of them "
            f"certify (delta-tune --select) and {up2(b_half)} when half do (train-predictor), less only when more "
            "of them turn right than wrong; your own data with more validation sequences certifies tighter budgets:")
    common = ["--data", str(m / "test.npz"), "--calib", str(m / "train.npz"), "--target", target]
    commands = [
        ["rnnskip", "delta-tune", str(model), "--select", str(m / "train.npz"), "--val", str(m / "val.npz"),
         "--calib", str(m / "train.npz"), "--max-loss", f"{ask_all:g}", "--out", str(out / "delta.json")],
        ["rnnskip-convert", str(model), "--delta", str(out / "delta.json")] + common + ["--out", str(out / "m4-delta")],
        ["rnnskip", "train-predictor", str(model), "--train", str(m / "train.npz"), "--val", str(m / "val.npz"),
         "--calib", str(m / "train.npz"), "--max-loss", f"{ask_half:g}", "--out", str(out / "predictor")],
        ["rnnskip-convert", str(model), "--predictor", str(out / "predictor")] + common
        + ["--out", str(out / "m4-skip")],
    ]
    return text, commands


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="build/demo")
    ap.add_argument("--target", default="cortex-m4")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()
    model = train(out / "model")
    from rnnskip.errors import RnnskipError
    from rnnskip.pipeline.convert import run_convert
    print(f"\nrnnskip-convert {model} --target {args.target} --data {out / 'model/test.npz'} "
          f"--calib {out / 'model/train.npz'} --out {out / args.target}")
    try:
        conv = run_convert(model, args.target, out / "model" / "test.npz", out / args.target,
                           calib=out / "model" / "train.npz", log=print, note=lambda s: print(s, file=sys.stderr))
        print(conv.summary())
        print(f"wrote {conv.out / 'report.json'}")
        conv.check()
    except RnnskipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"demo finished in {time.time() - t0:.0f} s\n")
    text, commands = next_steps(out, model, args.target)
    print(text)
    for c in commands:
        print("  " + shlex.join(c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
