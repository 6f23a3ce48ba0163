"""Trajectory plots of the tracking table (paper 004 Figs. 1–3 style): per class and for
the global score, C-Score and AUC against the epoch; below, the gold-list sizes.

Uses matplotlib's object API (``Figure`` + Agg canvas), never pyplot's global state, so
it is safe in worker threads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from brainxai.xai.tracking import GLOBAL


def plot_trajectory(table: pd.DataFrame, model: str, method: str, path: str | Path) -> Path:
    """One PNG for (model, method): a C-Score/AUC panel per class + global, gold sizes."""
    sub = table[(table["model"] == model) & (table["method"] == method)]
    if sub.empty:
        raise ValueError(f"no rows for model {model!r}, method {method!r}")
    classes = [*sorted(k for k in sub["klass"].unique() if k != GLOBAL), GLOBAL]
    n = len(classes)
    fig = Figure(figsize=(3.2 * n, 5.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, n, height_ratios=(3, 2))
    for j, k in enumerate(classes):
        s = sub[sub["klass"] == k].sort_values("epoch")
        ax = fig.add_subplot(grid[0, j])
        ax.plot(s["epoch"], s["cscore"], "o-", color="tab:blue", label="C-Score")
        empty = s[s["empty"].astype(bool)]
        ax.plot(
            empty["epoch"], empty["cscore"], "x", color="tab:red", ms=9, label="empty gold list"
        )
        ax.plot(s["epoch"], s["auc"], "s--", color="tab:orange", label="AUC")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("epoch")
        ax.set_title("global" if k == GLOBAL else f"class {k}")
        if j == 0:
            ax.set_ylabel("C-Score / AUC")
            ax.legend(fontsize=7, loc="lower left")
    ax = fig.add_subplot(grid[1, :])
    for k in classes[:-1]:
        s = sub[sub["klass"] == k].sort_values("epoch")
        ax.plot(
            s["epoch"], s["gold_size"], "o-", label=f"class {k} (support {int(s['support'].max())})"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("gold-list size |G_k|")
    ax.legend(fontsize=7, ncol=min(4, n))
    fig.suptitle(f"{model} · {method}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_trajectories(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """:func:`plot_trajectory` for every (model, method): ``<model>__<method>.png``."""
    out = []
    for (model, method), _ in table.groupby(["model", "method"], sort=True):
        name = "__".join(
            re.sub(r"[^A-Za-z0-9._-]", "_", str(v).replace("+", "p")) for v in (model, method)
        )
        out.append(plot_trajectory(table, model, method, Path(out_dir) / f"{name}.png"))
    return out
