"""PNG figures for time-step skipping (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def change_distributions(series: Dict[str, np.ndarray], path: Path) -> Path:
    """Histograms of the per-step state change: one panel per measure (``name -> values``)."""
    plt = _plt()
    names = list(series)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        v = np.asarray(series[name], float)
        v = v[np.isfinite(v)]
        if "cosine" in name:
            pos = v[v > 0]
            bins = np.logspace(np.log10(max(pos.min(), 1e-8)), np.log10(max(pos.max(), 1e-7)), 60) if len(pos) else 20
            ax.set_xscale("log")
            ax.hist(pos if len(pos) else v, bins=bins, color="tab:orange")
        else:
            ax.hist(v, bins=60, color="tab:blue")
        if len(v):
            for q, ls in ((0.25, ":"), (0.5, "--"), (0.75, ":")):
                ax.axvline(np.quantile(v, q), color="k", lw=0.8, ls=ls)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("change per step")
        ax.set_ylabel("steps")
    fig.suptitle("state change per step (dense float model); dashed: median, dotted: quartiles", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def pareto(curves: List[dict], points: List[dict], path: Path, title: str, dense_acc: Optional[float] = None,
           measure: str = "accuracy", dense_label: str = "dense") -> Path:
    """Skip rate vs accuracy (or ``measure``). ``curves``: {label, skip [..], acc [..]}; ``points``: {label, skip,
    acc}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for c in curves:
        o = np.argsort(c["skip"])
        ax.plot(np.asarray(c["skip"])[o] * 100, np.asarray(c["acc"])[o] * 100, marker=".", label=c["label"],
                **({"ls": c["ls"]} if "ls" in c else {}))
    markers = "s^vDPX*ho"
    for i, p in enumerate(points):
        ax.scatter([p["skip"] * 100], [p["acc"] * 100], marker=markers[i % len(markers)], s=50, zorder=3,
                   label=p["label"])
    if dense_acc is not None:
        ax.axhline(dense_acc * 100, color="gray", lw=0.8, ls="--", label=dense_label)
    ax.set_xlabel("steps skipped (%)")
    ax.set_ylabel(f"{measure} (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def skipped_words(rows: List[Sequence[tuple]], path: Path, title: str) -> Path:
    """Each row: [(word, ran)]; skipped words drawn light grey and underlined."""
    plt = _plt()
    width = 110  # characters per line
    lines = []
    for words in rows:
        line, n = [], 0
        for w, ran in words:
            if n + len(w) + 1 > width and line:
                lines.append(line)
                line, n = [], 0
            line.append((w, ran))
            n += len(w) + 1
        lines.append(line)
        lines.append([])
    fig_h = 0.25 * len(lines) + 0.6
    fig = plt.figure(figsize=(11, fig_h))
    fig.text(0.01, 1 - 0.2 / fig_h, title + "   (black: step ran; grey, underlined: skipped)", fontsize=8,
             va="top", family="sans-serif")
    for i, line in enumerate(lines):
        x = 0.01
        y = 1 - (0.45 + 0.25 * i) / fig_h
        for w, ran in line:
            fig.text(x, y, w, fontsize=9, family="monospace", va="top", color="black" if ran else "#b0b0b0")
            if not ran:
                fig.text(x, y - 0.06 / fig_h, "\u2014" * max(1, len(w) // 2 + 1), fontsize=9, family="monospace",
                         va="top", color="#b0b0b0")
            x += (len(w) + 1) * 0.0081
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def skipped_steps(ran: np.ndarray, valid: np.ndarray, path: Path, title: str) -> Path:
    """Feature models: sequences x time, ran / skipped / padding."""
    plt = _plt()
    img = np.where(valid, np.where(ran, 2, 1), 0)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(img) + 1.2))
    from matplotlib.colors import ListedColormap
    ax.imshow(img, aspect="auto", cmap=ListedColormap(["white", "#d0d0d0", "black"]), vmin=0, vmax=2,
              interpolation="nearest")
    ax.set_xlabel("time step")
    ax.set_ylabel("sequence")
    ax.set_title(title + " (black: ran, grey: skipped)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def rounds(rounds_: List[dict], path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    r = [d["round"] for d in rounds_]
    ax.bar(r, [100 * d["val_skip_rate"] for d in rounds_], color=["tab:green" if d.get("chosen") else "tab:gray"
                                                                  for d in rounds_])
    ax.set_xlabel("relabel round (0 = oracle labels only)")
    ax.set_ylabel("validation skip rate within budget (%)")
    ax.set_xticks(r)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
