"""Helpers shared by the benchmarks: where things are, config hashes, versions, durations, JSON files."""
from __future__ import annotations

import hashlib
import json
import math
import os

from rnnskip.errors import RnnskipError

#: Environment variable that overrides the shared data folder.
DATA_ENV = "RNNSKIP_SHARED_DATA"


def repo_root() -> str:
    """The rnnskip repository root (the folder holding ``benchmarks/``)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data(sub: str | None = None, required: bool = True) -> str | None:
    """``../shared/data`` relative to the repo root (or ``$RNNSKIP_SHARED_DATA``),
    optionally a sub-folder such as ``"sst2"``.  Raises a one-line
    :class:`RnnskipError` when absent (``required=False``: returns None)."""
    base = os.environ.get(DATA_ENV) or os.path.normpath(os.path.join(repo_root(), "..", "shared", "data"))
    path = os.path.join(base, sub) if sub else base
    if not os.path.isdir(path):
        if not required:
            return None
        raise RnnskipError(
            f"benchmark data folder {path} not found; benchmarks read ../shared/data relative to the repo root "
            f"(see its README.md) or the folder named by ${DATA_ENV}")
    return path


def convert(*args, **kw) -> dict:
    """rnnskip-convert from Python (rnnskip.pipeline.convert.run_convert, same arguments): prints
    the table as the command does and fails on any mismatch with the golden model; the report."""
    import sys

    from rnnskip.pipeline.convert import run_convert
    conv = run_convert(*args, log=print, note=lambda s: print(s, file=sys.stderr), **kw)
    print(conv.summary())
    conv.check()
    return conv.report


def bench_out(sub: str | None = None) -> str:
    """``bench_out/`` under the repo root (created), optionally a sub-folder."""
    path = os.path.join(repo_root(), "bench_out", *( [sub] if sub else []))
    os.makedirs(path, exist_ok=True)
    return path


def config_hash(cfg: dict) -> str:
    """Short stable hash of a JSON-able config (keys sorted)."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def versions() -> dict:
    """Versions of what decides the numbers: Python, the training and emulation packages, the
    Arm compiler. Model trainers store it in their meta.json; run_all prints it under each section."""
    import platform
    import subprocess
    from importlib import metadata
    v = {"python": platform.python_version()}
    for pkg in ("tensorflow", "tf_keras", "numpy", "scikit-learn", "unicorn"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        gcc = subprocess.run(["arm-none-eabi-gcc", "-dumpversion"], capture_output=True, text=True, check=True)
        v["arm-none-eabi-gcc"] = gcc.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return v


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only), None where matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def fit_classifier(m, tr, va, cfg: dict, keras) -> dict:
    """Compile a Keras classifier (Adam at ``cfg['learning_rate']``, sparse categorical cross-entropy) and fit it on
    the Datasets ``tr`` with early stopping on ``va``'s loss (``cfg['patience']``, best weights kept); the training
    facts a bench model's meta.json holds."""
    import time

    import numpy as np
    m.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    t0 = time.time()
    hist = m.fit(tr.x, tr.y, validation_data=(va.x, va.y), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                 verbose=0, callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg["patience"],
                                                                     restore_best_weights=True)])
    vl = hist.history["val_loss"]
    best = int(np.argmin(vl))
    return {"params": int(m.count_params()), "epochs_run": len(vl), "epoch_kept": best + 1,
            "val_accuracy": float(hist.history["val_accuracy"][best]), "train_seconds": round(time.time() - t0, 1)}


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def fmt_pct(v, d: int = 2) -> str:
    """A fraction as a percentage cell (no % sign); '-' for None."""
    return "-" if v is None else f"{100 * v:.{d}f}"


def fmt_x(v, d: int = 2) -> str:
    """A ratio cell, '3.21x'; '-' for None."""
    return "-" if v is None else f"{v:.{d}f}x"


def fmt_num(v, d: int = 0) -> str:
    """A table cell: thousands separators, ``d`` decimals for floats; '-' for None or NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{d}f}" if isinstance(v, float) else f"{v:,}"
