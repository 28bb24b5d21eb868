"""Delta networks on an LSTM: the FSDD ladder of the delta section (dense, run-time delta,
delta-trained, delta-trained with the cell threshold) on Masking -> LSTM(128) -> Dense(10),
the same features, split, budget, training thresholds and seeds as the GRU (nothing chosen
for this model). A section of its own so it can be measured without rerunning the GRU's.
"""
from __future__ import annotations

from . import delta_bench
from .common import fmt_x as _x

CONFIG = {"cell": "lstm"}       # fsdd.DEFAULT_CONFIG otherwise: units 128, the GRU's training recipe


def run(quick: bool = False) -> dict:
    from .fsdd import train as train_fsdd
    return {"quick": quick, "fsdd_lstm": delta_bench.delta_ladder(train_fsdd("official", CONFIG), quick,
                                                                  "FSDD LSTM")}


def markdown(res: dict) -> str:
    f = res["fsdd_lstm"]
    L = ["## Delta networks on cortex-m4: an LSTM on FSDD", "",
         "The delta section's method and columns, on an LSTM trained here with the GRU's recipe (fsdd.py, seed 0); "
         f"run-time thresholds from delta-tune on validation (budget {delta_bench.MAX_LOSS} point), delta-train at "
         f"the GRU's thresholds x{delta_bench.TRAIN_THETA[0]}/h{delta_bench.TRAIN_THETA[1]} with its seeds "
         f"{list(delta_bench.TRAIN_SEEDS)} (the best on validation deployed) and the cell threshold fine-tuning "
         f"(m{delta_bench.TRAIN_CELL} in the loop, thresholds then chosen on validation): nothing was chosen for "
         "this model or on its test split. An LSTM unit has four gates, so its cell work per unit (and the share "
         "the cell threshold can skip) differs from the GRU's.", ""]
    L += delta_bench.ladder_md(f, "### FSDD LSTM(128), official split", "of the delta section (the same kernel)")
    return "\n".join(L).rstrip()


def summary(res: dict):
    f = res.get("fsdd_lstm")
    if not f:
        return []
    fl = f["runtime"]["accuracy"]["float"]
    rows = [(n, f[k]) for n, k in (("run-time delta", "runtime"), ("delta-trained", "trained"),
                                   ("delta-trained + cell threshold", "trained_cell")) if f.get(k)]
    return ["- Delta networks, FSDD LSTM(128) on cortex-m4: " + "; ".join(
        f"{n} {_x(r['mac_reduction_x'])} fewer MACs, {_x(r.get('cycle_reduction_x'))} fewer cycles, accuracy "
        f"{100 * (r['accuracy']['delta_int8'] - fl):+.2f} pt against the dense float model" for n, r in rows) + " (details in BENCHMARKS.md).", ""]
