"""The SST-2 benchmark model: a small LSTM sentiment classifier for a Cortex-M4.

Trained with **tf_keras** (the Keras 2 API) and saved as a Keras-2 ``.h5``, the
file most users have.  Sized for 1 MB flash / 128 KB RAM: an 8000-word (+pad,
OOV) vocabulary, a 32-wide ``Embedding(mask_zero=True)``, ``LSTM(64)`` and
``Dense(1, sigmoid)`` -- about 300 K parameters, ~0.3 MB as int8.

``python -m benchmarks.sst2_model [--data ../shared/data] [--out bench_out/sst2]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from rnnskip.datasets import load_npz, load_sst2, save_npz

from .common import bench_out, config_hash, fmt_seconds, read_json, shared_data, versions, write_json

#: Bump when the training code changes in a way that changes the model.
CODE_VERSION = 1

DEFAULT_CONFIG = dict(
    max_words=8000,      # real words; the Embedding has max_words + 2 rows (pad, OOV)
    max_len=50,          # SST-2 train: 99.9% of phrases <= 45 tokens, dev max 47
    embed_dim=32,
    lstm_units=64,
    batch_size=128,
    max_epochs=6,
    patience=1,
    learning_rate=3e-3,
    val_fraction=0.05,   # of train, for early stopping (dev is the test set)
    calib_rows=2000,
)

def _paths(out_dir: str) -> dict:
    return {
        "model": os.path.join(out_dir, "model.h5"),
        "vocab": os.path.join(out_dir, "model.vocab.json"),
        "train": os.path.join(out_dir, "train.npz"),
        "dev": os.path.join(out_dir, "dev.npz"),
        "meta": os.path.join(out_dir, "meta.json"),
    }


def _data_fingerprint(sst2_dir: str) -> dict:
    return {f: os.path.getsize(os.path.join(sst2_dir, f)) for f in ("train.tsv", "dev.tsv")}


def held_out_split(train_ds, val_fraction: float, seed: int = 0):
    """(fit, val) of the SST-2 train rows: the split train_sst2 fits and early-stops on (``seed``'s
    permutation; validation rows sorted, fit rows in the permutation's order)."""
    perm = np.random.default_rng(seed).permutation(len(train_ds))
    n_val = int(round(val_fraction * len(train_ds)))
    return train_ds.subset(perm[n_val:]), train_ds.subset(np.sort(perm[:n_val]))


def model_train_split(paths: dict, data_root: str, seed: int = 0):
    """(fit, val) as train_sst2 made them for the model at ``paths`` (its vocabulary and max_len):
    what the benchmarks that need its training or held-out rows read."""
    from rnnskip.datasets import Vocab
    tr, _ = load_sst2(_sst2_dir(data_root), "train", vocab=Vocab.load(paths["vocab"]),
                      max_len=DEFAULT_CONFIG["max_len"])
    return held_out_split(tr, DEFAULT_CONFIG["val_fraction"], seed)


def _sst2_dir(data_root: str) -> str:
    for d in (data_root, os.path.join(data_root, "sst2")):
        if os.path.isfile(os.path.join(d, "train.tsv")):
            return d
    return data_root  # load_sst2 raises the one-line error


def build_model(tfk, vocab_size: int, cfg: dict, input_length=None):
    """Embedding(mask_zero) -> LSTM -> Dense(1, sigmoid), Keras-2 Sequential."""
    L = tfk.layers
    return tfk.Sequential([
        L.InputLayer(input_shape=(input_length,), dtype="int32", name="tokens"),
        L.Embedding(vocab_size, cfg["embed_dim"], mask_zero=True, name="embedding"),
        L.LSTM(cfg["lstm_units"], name="lstm"),
        L.Dense(1, activation="sigmoid", name="sentiment"),
    ], name="sst2_lstm")


def _bucketed_sequence(tfk, x, y, lengths, batch_size, seed):
    """Batches of similar length, each cut to its longest row (SST-2 phrases are
    mostly short, so this trains ~4x faster than always running 50 steps;
    the model is identical because padding is masked)."""

    class Bucketed(tfk.utils.Sequence):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self._make()

        def _make(self):
            # sort by length with random tie-breaking, chunk, shuffle the chunks
            order = np.lexsort((self.rng.random(len(lengths)), lengths))
            self.batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
            self.rng.shuffle(self.batches)

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            idx = self.batches[i]
            t = int(lengths[idx].max())
            return x[idx, :t], y[idx].astype(np.float32)

        def on_epoch_end(self):
            self._make()

    return Bucketed()


def train_sst2(data_root: str, out_dir: str, seed: int = 0, config: dict | None = None,
               force: bool = False, verbose: int = 2) -> dict:
    """Train (or reuse) the SST-2 LSTM.  ``data_root``: the folder with
    ``sst2/`` (or the ``sst2`` folder itself).  Writes ``model.h5``,
    ``model.vocab.json``, ``train.npz`` (``calib_rows`` random train rows, for
    calibration), ``dev.npz`` (all 872 dev rows) and ``meta.json`` into
    ``out_dir``; returns their paths (keys model, vocab, train, dev, meta).
    Skips training when the outputs exist and ``meta.json`` has the same config
    hash (config + seed + code version + data file sizes)."""
    cfg = dict(DEFAULT_CONFIG, **(config or {}))
    sst2_dir = _sst2_dir(data_root)
    paths = _paths(out_dir)

    # load first: a missing data folder is a one-line error before anything else
    train_ds, vocab = load_sst2(sst2_dir, "train", max_words=cfg["max_words"], max_len=cfg["max_len"])
    dev_ds, _ = load_sst2(sst2_dir, "dev", vocab=vocab, max_len=cfg["max_len"])

    key = dict(cfg, seed=seed, code_version=CODE_VERSION, data=_data_fingerprint(sst2_dir))
    h = config_hash(key)
    if not force and all(os.path.exists(p) for p in paths.values()):
        try:
            meta = read_json(paths["meta"])
        except (OSError, ValueError):
            meta = {}
        if meta.get("config_hash") == h:
            if verbose:
                print(f"[sst2] reusing {out_dir} (config {h}; dev accuracy {meta.get('dev_accuracy'):.4f})", flush=True)
            return paths

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as tfk

    tfk.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)

    # hold out a validation part of train for early stopping
    fit, val = held_out_split(train_ds, cfg["val_fraction"], seed)

    model = build_model(tfk, vocab.size, cfg, input_length=None)
    model.compile(optimizer=tfk.optimizers.Adam(cfg["learning_rate"]),
                  loss="binary_crossentropy", metrics=["accuracy"])
    seq = _bucketed_sequence(tfk, fit.x, fit.y, fit.lengths, cfg["batch_size"], seed)
    val_t = int(val.lengths.max())
    stop = tfk.callbacks.EarlyStopping(monitor="val_accuracy", patience=cfg["patience"],
                                       restore_best_weights=True, mode="max")
    if verbose:
        print(f"[sst2] training LSTM({cfg['lstm_units']}) on {len(fit)} phrases "
              f"({len(val)} held out), vocab {vocab.size}, up to {cfg['max_epochs']} epochs", flush=True)
    t0 = time.perf_counter()
    hist = model.fit(seq, validation_data=(val.x[:, :val_t], val.y.astype(np.float32)),
                     epochs=cfg["max_epochs"], callbacks=[stop], verbose=verbose, shuffle=False)
    train_seconds = time.perf_counter() - t0

    # the saved model has a fixed input length, like Embedding(input_length=50)
    final = build_model(tfk, vocab.size, cfg, input_length=cfg["max_len"])
    final.set_weights(model.get_weights())
    final.save(paths["model"], save_format="h5")
    vocab.save(paths["vocab"])
    save_npz(paths["train"], train_ds.sample(cfg["calib_rows"], seed=seed))
    save_npz(paths["dev"], dev_ds)

    # dev accuracy of the saved file, reloaded (checks the .h5 round trip)
    reloaded = tfk.models.load_model(paths["model"], compile=False)
    dev_prob = reloaded.predict(dev_ds.x, batch_size=256, verbose=0)[:, 0]
    dev_acc = float(np.mean((dev_prob > 0.5).astype(np.int64) == dev_ds.y))
    val_acc = max(hist.history.get("val_accuracy", [float("nan")]))

    emb = vocab.size * cfg["embed_dim"]
    meta = {
        "config": cfg, "seed": seed, "config_hash": h, "code_version": CODE_VERSION,
        "dev_accuracy": dev_acc, "val_accuracy": float(val_acc),
        "epochs_run": len(hist.history["loss"]), "train_seconds": round(train_seconds, 1), "versions": versions(),
        "params": int(final.count_params()), "embedding_params": int(emb),
        "int8_weight_bytes_estimate": int(final.count_params()),
        "vocab_size": vocab.size, "n_train": len(fit), "n_val": len(val), "n_dev": len(dev_ds),
        "calib_rows": min(cfg["calib_rows"], len(train_ds)),
        "tf_version": tf.__version__, "tf_keras_version": tfk.__version__,
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
    }
    write_json(paths["meta"], meta)
    if verbose:
        print(f"[sst2] dev accuracy {dev_acc:.4f} (float, Keras), {meta['params']} params, "
              f"trained in {fmt_seconds(train_seconds)}", flush=True)
    return paths


def load_benchmark(out_dir: str):
    """``(paths, calib Dataset, dev Dataset, meta)`` of a trained benchmark model."""
    p = _paths(out_dir)
    return p, load_npz(p["train"]), load_npz(p["dev"]), read_json(p["meta"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder holding sst2/ (default ../shared/data)")
    ap.add_argument("--out", default=None, help="output folder (default bench_out/sst2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="retrain even if outputs match")
    a = ap.parse_args(argv)
    from rnnskip.errors import RnnskipError
    try:
        data = a.data or shared_data()
        paths = train_sst2(data, a.out or bench_out("sst2"), seed=a.seed, force=a.force)
    except RnnskipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
