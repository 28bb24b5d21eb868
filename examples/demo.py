"""rnnskip demo: train a small GRU on aeon's bundled JapaneseVowels (no download),
save it as a Keras-2 .h5, convert it for a Cortex-M4, emulate the whole test set
and print the report.   Run: make demo   (or .venv/bin/python examples/demo.py)
"""
from __future__ import annotations

import argparse
import os
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
    m = out / "model"
    print(f"demo finished in {time.time() - t0:.0f} s\n\nnext, with the same files:\n"
          f"  rnnskip delta-tune {model} --val {m / 'val.npz'} --calib {m / 'train.npz'} --max-loss 1.0 "
          f"--out {out / 'delta.json'}\n"
          f"  rnnskip-convert {model} --delta {out / 'delta.json'} --data {m / 'test.npz'} --calib {m / 'train.npz'} "
          f"--out {out / 'm4-delta'}\n"
          f"  rnnskip train-predictor {model} --train {m / 'train.npz'} --val {m / 'val.npz'} "
          f"--calib {m / 'train.npz'} --max-loss 1.0 --out {out / 'predictor'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
