"""Free Spoken Digit Dataset (``../shared/data/fsdd``): log-mel features in numpy/scipy
and the GRU digit classifier the delta-network benchmark uses.

Features: 8 kHz audio, 25 ms Hamming frames every 10 ms (200 / 80 samples), 256-point
FFT power spectrum, 40 triangular mel filters (20 Hz - 4 kHz), log(energy + 1e-6),
then per-band mean/std normalisation with statistics of the training split. At most
``T_MAX`` = 100 frames (1 s; 99% of the recordings are shorter), post-padded with
zero vectors that a Keras ``Masking(0.0)`` layer skips.

Splits: ``official`` (take 0-4 of every speaker and digit is test, 5-49 train, as the
data set's README says) and ``loso:<speaker>`` (leave one speaker out: all of that
speaker's 500 recordings are test). A validation set for early stopping and threshold
tuning is carved out of the training part (every 10th take), never from test.

``python -m benchmarks.fsdd [--units 128]`` trains the official-split model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from rnnskip.datasets import Dataset, save_npz

from .common import bench_out, config_hash, read_json, shared_data, versions, write_json

SR = 8000
WIN, HOP, NFFT, N_MELS = 200, 80, 256, 40
T_MAX = 100
CODE_VERSION = 1
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def mel_filters(n_mels: int = N_MELS, nfft: int = NFFT, sr: int = SR, fmin: float = 20.0,
                fmax: float = SR / 2) -> np.ndarray:
    """Triangular mel filter bank ``[n_mels, nfft // 2 + 1]`` (HTK mel scale)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    imel = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)
    pts = imel(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, nfft // 2 + 1)
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return fb


_FB = None


def logmel(wav: np.ndarray) -> np.ndarray:
    """int16/float waveform at 8 kHz -> log-mel frames ``[T, N_MELS]`` (float64)."""
    global _FB
    if _FB is None:
        _FB = mel_filters()
    a = np.asarray(wav, np.float64)
    if a.dtype.kind != "f" or np.abs(a).max() > 2:
        a = a / 32768.0
    if len(a) < WIN:
        a = np.pad(a, (0, WIN - len(a)))
    n = 1 + (len(a) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = a[idx] * np.hamming(WIN)[None, :]
    spec = np.abs(np.fft.rfft(frames, NFFT, axis=1)) ** 2
    return np.log(spec @ _FB.T + 1e-6)


def read_recordings(root: str):
    """[(digit, speaker, take, waveform int16)] from ``root/recordings``, sorted by name."""
    from scipy.io import wavfile
    rec = os.path.join(root, "recordings")
    out = []
    for f in sorted(os.listdir(rec)):
        if not f.endswith(".wav"):
            continue
        d, spk, take = f[:-4].split("_")
        sr, a = wavfile.read(os.path.join(rec, f))
        if sr != SR:
            raise ValueError(f"{f}: sample rate {sr}, expected {SR}")
        out.append((int(d), spk, int(take), a))
    return out


def features(root: str) -> dict:
    """Cached raw log-mel features of every recording (bench_out/fsdd/features.npz)."""
    path = os.path.join(bench_out("fsdd"), "features.npz")
    if os.path.isfile(path):
        z = np.load(path, allow_pickle=False)
        if int(z["code_version"]) == CODE_VERSION:
            return {k: z[k] for k in z.files}
    recs = read_recordings(root)
    feats = [logmel(a)[:T_MAX] for _, _, _, a in recs]
    lengths = np.array([len(f) for f in feats], np.int32)
    x = np.zeros((len(feats), T_MAX, N_MELS), np.float32)
    for i, f in enumerate(feats):
        x[i, : len(f)] = f
    d = {"x": x, "lengths": lengths, "digit": np.array([r[0] for r in recs], np.int64),
         "speaker": np.array([r[1] for r in recs]), "take": np.array([r[2] for r in recs], np.int64),
         "code_version": np.array(CODE_VERSION)}
    np.savez_compressed(path, **d)
    return d


def split(feat: dict, name: str = "official"):
    """-> (train, val, test) Datasets, features normalised with the training part's statistics."""
    take, spk = feat["take"], feat["speaker"]
    if name == "official":
        test = take < 5
    elif name.startswith("loso:"):
        s = name[5:]
        if s not in SPEAKERS:
            raise ValueError(f"unknown speaker '{s}' (have {', '.join(SPEAKERS)})")
        test = spk == s
    else:
        raise ValueError(f"unknown split '{name}'")
    val = ~test & (take % 10 == 5)           # every 10th take of the training part
    train = ~test & ~val
    x, L = feat["x"], feat["lengths"]
    valid = np.arange(x.shape[1])[None, :] < L[:, None]
    frames = x[train][valid[train]]
    mu, sd = frames.mean(0), frames.std(0) + 1e-6
    xn = np.where(valid[..., None], (x - mu) / sd, 0.0).astype(np.float32)
    # a real frame that normalises to exactly zero everywhere would be masked: nudge (never happens in practice)
    allzero = valid & np.all(xn == 0.0, axis=-1)
    xn[allzero] = 1e-3

    def ds(m):
        return Dataset(x=xn[m], y=feat["digit"][m], lengths=L[m].astype(np.int32))
    return ds(train), ds(val), ds(test)


DEFAULT_CONFIG = dict(units=128, epochs=40, batch_size=32, learning_rate=2e-3, patience=6, seed=0)


def build_model(units: int, keras=None, cell: str = "gru"):
    if keras is None:
        import tf_keras as keras
    rnn = keras.layers.GRU(units, reset_after=True) if cell == "gru" else keras.layers.LSTM(units)
    return keras.Sequential([
        keras.layers.Masking(mask_value=0.0, input_shape=(None, N_MELS)),
        rnn,
        keras.layers.Dense(10, activation="softmax"),
    ])


def train(split_name: str = "official", config: dict | None = None, verbose: int = 0, force: bool = False) -> dict:
    """Train (or reuse) the dense float GRU (``config`` {"cell": "lstm"}: an LSTM) for ``split_name``;
    writes model.h5, train/val/test.npz, meta.json."""
    cfg = dict(DEFAULT_CONFIG, **(config or {}))    # no "cell" key for the GRU: its cache key stays
    cell = cfg.get("cell", "gru")
    if cell not in ("gru", "lstm"):
        raise ValueError(f"FSDD model cell must be gru or lstm, not {cell!r}")
    out = os.path.join(bench_out("fsdd"), split_name.replace(":", "-") + f"-{cell}{cfg['units']}")
    os.makedirs(out, exist_ok=True)
    paths = {k: os.path.join(out, f"{k}.npz") for k in ("train", "val", "test")}
    paths["model"] = os.path.join(out, "model.h5")
    paths["meta"] = os.path.join(out, "meta.json")
    h = config_hash({"cfg": cfg, "split": split_name, "code": CODE_VERSION})
    if not force and os.path.isfile(paths["meta"]) and all(os.path.isfile(p) for p in paths.values()):
        meta = read_json(paths["meta"])
        if meta.get("config_hash") == h:
            return {"paths": paths, "meta": meta, "dir": out}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_keras as keras
    tr, va, te = split(features(shared_data("fsdd")), split_name)
    for k, d in (("train", tr), ("val", va), ("test", te)):
        save_npz(paths[k], d)
    keras.utils.set_random_seed(cfg["seed"])
    m = build_model(cfg["units"], keras, cell)
    m.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    t0 = time.time()
    hist = m.fit(tr.x, tr.y, validation_data=(va.x, va.y), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                 verbose=verbose, callbacks=[keras.callbacks.EarlyStopping(
                     monitor="val_accuracy", patience=cfg["patience"], restore_best_weights=True)])
    _, acc = m.evaluate(te.x, te.y, verbose=0)
    m.save(paths["model"])
    meta = {"config": cfg, "config_hash": h, "split": split_name, "test_accuracy": float(acc),
            "val_accuracy": float(max(hist.history["val_accuracy"])), "epochs_run": len(hist.history["loss"]),
            "train_seconds": round(time.time() - t0, 1), "versions": versions(),
            "n_train": len(tr), "n_val": len(va), "n_test": len(te),
            "features": f"{N_MELS} log-mel, {WIN}/{HOP} samples at {SR} Hz, <= {T_MAX} frames"}
    write_json(paths["meta"], meta)
    return {"paths": paths, "meta": meta, "dir": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="official")
    ap.add_argument("--units", type=int, default=DEFAULT_CONFIG["units"])
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    r = train(a.split, {"units": a.units}, verbose=2, force=a.force)
    print(r["meta"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
