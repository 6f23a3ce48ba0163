"""Trajectory plots of the tracking table (paper 004 Figs. 1–3 style): per class and for
the global score, C-Score and AUC against the epoch; below, the gold-list sizes. A run
whose backbone was frozen for its first epochs and trained afterwards (paper 004's
two-phase protocol) gets the phase boundary drawn on every panel (:func:`phase_boundary`).

Uses matplotlib's object API (``Figure`` + Agg canvas), never pyplot's global state, so
it is safe in worker threads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from brainxai.atomic import savefig_atomic
from brainxai.xai.tracking import GLOBAL

#: Class panels per row of a trajectory figure.
PANELS_PER_ROW = 6
#: Where a phase boundary sits between the last frozen epoch and the first trained one.
BOUNDARY_OFFSET = 0.5
BOUNDARY_LABEL = "backbone unfrozen"


def phase_boundary(rows: pd.DataFrame) -> float | None:
    """x position of the transfer → fine-tuning boundary of one run's rows: ``frozen_epochs
    + 0.5`` when the run froze its backbone for some epochs and trained it in others
    (``0 < frozen_epochs < last epoch``), else None (one phase only, or no phase info)."""
    if "frozen_epochs" not in rows or rows.empty:
        return None
    frozen = int(rows["frozen_epochs"].max())
    if 0 < frozen < int(rows["epoch"].max()):
        return frozen + BOUNDARY_OFFSET
    return None


def plot_trajectory(table: pd.DataFrame, model: str, method: str, path: str | Path) -> Path:
    """One PNG for (model, method) (:func:`trajectory_figure`)."""
    fig = trajectory_figure(table, model, method)
    path = Path(path)
    savefig_atomic(fig, path, format="png")
    return path


def trajectory_figure(table: pd.DataFrame, model: str, method: str) -> Figure:
    """A C-Score/AUC panel per class + global, gold sizes below; the phase boundary as a
    dotted vertical line on every panel when the run has two phases."""
    sub = table[(table["model"] == model) & (table["method"] == method)]
    if sub.empty:
        raise ValueError(f"no rows for model {model!r}, method {method!r}")
    classes = [*sorted(k for k in sub["klass"].unique() if k != GLOBAL), GLOBAL]
    boundary = phase_boundary(sub)
    n = len(classes)
    # Panels wrap after PANELS_PER_ROW (17 classes in one row made a 5,800 px wide figure
    # whose constrained layout took ~10 s); fixed margins instead of a layout engine.
    ncol = min(n, PANELS_PER_ROW)
    nrow = -(-n // ncol)
    fig = Figure(figsize=(2.8 * ncol, 2.4 * nrow + 2.6), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        nrow + 1, ncol, height_ratios=(*([1.0] * nrow), 1.1),
        left=0.06, right=0.99, bottom=0.07, top=0.93, hspace=0.55, wspace=0.25,
    )  # fmt: skip
    for j, k in enumerate(classes):
        s = sub[sub["klass"] == k].sort_values("epoch")
        ax = fig.add_subplot(grid[j // ncol, j % ncol])
        ax.plot(s["epoch"], s["cscore"], "o-", color="tab:blue", label="C-Score")
        empty = s[s["empty"].astype(bool)]
        ax.plot(
            empty["epoch"], empty["cscore"], "x", color="tab:red", ms=9, label="empty gold list"
        )
        ax.plot(s["epoch"], s["auc"], "s--", color="tab:orange", label="AUC")
        if boundary is not None:
            ax.axvline(boundary, color="grey", linestyle=":", label=BOUNDARY_LABEL)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title("global" if k == GLOBAL else f"class {k}", fontsize=9)
        if j % ncol == 0:
            ax.set_ylabel("C-Score / AUC")
        if j == 0:
            ax.legend(fontsize=7, loc="lower left")
    ax = fig.add_subplot(grid[nrow, :])
    for k in classes[:-1]:
        s = sub[sub["klass"] == k].sort_values("epoch")
        ax.plot(
            s["epoch"], s["gold_size"], "o-", label=f"class {k} (support {int(s['support'].max())})"
        )
    if boundary is not None:
        ax.axvline(boundary, color="grey", linestyle=":", label=BOUNDARY_LABEL)
    ax.set_xlabel("epoch")
    ax.set_ylabel("gold-list size |G_k|")
    ax.legend(fontsize=7, ncol=min(4, n))
    phases = " · transfer | fine-tuning" if boundary is not None else ""
    fig.suptitle(f"{model} · {method}{phases}")
    return fig


def plot_trajectories(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """:func:`plot_trajectory` for every (model, method): ``<model>__<method>.png``."""
    out = []
    for (model, method), _ in table.groupby(["model", "method"], sort=True):
        name = "__".join(
            re.sub(r"[^A-Za-z0-9._-]", "_", str(v).replace("+", "p")) for v in (model, method)
        )
        out.append(plot_trajectory(table, model, method, Path(out_dir) / f"{name}.png"))
    return out
