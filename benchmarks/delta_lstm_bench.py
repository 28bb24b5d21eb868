"""Delta networks on LSTMs: the FSDD ladder of the delta section (dense, run-time delta,
delta-trained, delta-trained with the cell threshold) on

* Masking -> LSTM(128) -> Dense(10) on FSDD: the same features, split, budget, training
  thresholds and seeds as the GRU (nothing chosen for this model);
* the SST-2 LSTM of the pipeline benchmark: run-time thresholds from the delta section, delta-train
  at those thresholds (chosen on validation) on the model's own training rows, dev set as test.

A section of its own so it can be measured without rerunning the GRU's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnskip.errors import RnnskipError

from . import delta_bench
from .common import bench_out, read_json, shared_data
from .common import fmt_x as _x

CONFIG = {"cell": "lstm"}       # fsdd.DEFAULT_CONFIG otherwise: units 128, the GRU's training recipe


def run(quick: bool = False) -> dict:
    from .fsdd import train as train_fsdd
    res = {"quick": quick, "fsdd_lstm": delta_bench.delta_ladder(train_fsdd("official", CONFIG), quick, "FSDD LSTM")}
    try:
        res["sst2"] = sst2_ladder(quick)
    except RnnskipError as e:   # the SST-2 data folder is optional, as in the delta section
        res["sst2"] = {"error": str(e)}
    return res


def sst2_ladder(quick: bool) -> dict:
    """The ladder on the SST-2 LSTM: test = the dev set (872), validation = the delta section's
    1,500 rows of the model's own held-out train part, delta-train on the rows the model was fitted
    on (the same seed and fraction as its training), calibration = the pipeline's 2,000 rows."""
    from rnnskip.datasets import save_npz

    from .sst2_model import DEFAULT_CONFIG, model_train_split
    paths, dj = delta_bench.sst2_thresholds()
    base = Path(bench_out("delta")) / "sst2-ladder"
    base.mkdir(parents=True, exist_ok=True)
    fit = base / "fit.npz"
    if not fit.is_file():
        save_npz(str(fit), model_train_split(paths, shared_data())[0])
    n_fit = int(np.load(fit)["y"].shape[0])
    n_dev = int(np.load(paths["dev"])["y"].shape[0])
    th = read_json(str(dj))["thresholds"][0]
    r = {"paths": {"model": paths["model"], "train": str(fit), "val": str(Path(bench_out("delta")) / "sst2_val.npz"),
                   "test": paths["dev"], "calib": paths["train"]},
         "dir": str(base),
         "meta": {"n_test": n_dev, "n_train": n_fit, "n_val": 1500, "config": {"units": 64, "cell": "lstm"},
                  "features": f"word ids (the pipeline model's vocabulary), <= {DEFAULT_CONFIG['max_len']} tokens",
                  "arch": "Embedding(mask_zero) -> LSTM(64) -> Dense(1, sigmoid)", "unit": "sentence",
                  "tuned_note": "",
                  "split_text": f"dev set as test: {n_dev} sentences; validation: 1,500 rows of the model's own "
                                f"held-out train part; delta-train on the {n_fit:,} rows it was fitted on"}}
    return delta_bench.delta_ladder(r, quick, "SST-2 LSTM", runtime_json=dj, train_theta=(th["input"], th["hidden"]),
                                    emulate=(60, 300))


def markdown(res: dict) -> str:
    f = res["fsdd_lstm"]
    L = ["## Delta networks on cortex-m4: LSTMs", "",
         "The delta section's method and columns, on an LSTM trained here with the GRU's recipe (fsdd.py, seed 0); "
         f"run-time thresholds from delta-tune on validation (budget {delta_bench.MAX_LOSS} point), delta-train at "
         f"the GRU's thresholds x{delta_bench.TRAIN_THETA[0]}/h{delta_bench.TRAIN_THETA[1]} with its seeds "
         f"{list(delta_bench.TRAIN_SEEDS)} (the best on validation deployed) and the cell threshold fine-tuning "
         f"(m{delta_bench.TRAIN_CELL} in the loop, thresholds then chosen on validation): nothing was chosen for "
         "this model or on its test split. An LSTM unit has four gates, so its cell work per unit (and the share "
         "the cell threshold can skip) differs from the GRU's.", ""]
    L += delta_bench.ladder_md(f, "### FSDD LSTM(128), official split", "of the delta section (the same kernel)")
    s2 = res.get("sst2")
    if s2 and "error" not in s2:
        L += ["The SST-2 LSTM below is delta-trained at its run-time thresholds (delta-tune's choice on validation, "
              "the delta section's SST-2 row), not at the FSDD models' x16/h40.", ""]
        L += delta_bench.ladder_md(s2, "### SST-2 LSTM(64)", "of the delta section (the same kernel)")
    elif s2:
        L += [f"SST-2: not measured ({s2['error']}).", ""]
    else:
        L += ["SST-2 LSTM: not in this run (its results predate the SST-2 rows of this section).", ""]
    return "\n".join(L).rstrip()


def summary(res: dict):
    f = res.get("fsdd_lstm")
    if not f:
        return []
    out = []
    for title, f in (("FSDD LSTM(128)", f), ("SST-2 LSTM(64)", res.get("sst2"))):
        if not f or "error" in f:
            continue
        fl = f["runtime"]["accuracy"]["float"]
        rows = [(n, f[k]) for n, k in (("run-time delta", "runtime"), ("delta-trained", "trained"),
                                       ("delta-trained + cell threshold", "trained_cell")) if f.get(k)]
        parts = [f"{n} {_x(r['mac_reduction_x'])} fewer MACs, {_x(r.get('cycle_reduction_x'))} fewer cycles, "
                 f"loss {100 * (fl - r['accuracy']['delta_int8']):+.2f} pt against the dense float model"
                 for n, r in rows]
        out += [f"- Delta networks, {title} on cortex-m4: " + "; ".join(parts) + " (details in BENCHMARKS.md).", ""]
    return out
