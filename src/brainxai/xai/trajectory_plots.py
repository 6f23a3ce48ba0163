"""Trajectory plots of the tracking table (paper 004 Figs. 1–3 style): per class and for
the global score, C-Score and AUC against the epoch; below, the gold-list sizes. A run
whose backbone was frozen for its first epochs and trained afterwards (paper 004's
two-phase protocol) gets the phase boundary drawn on every panel (:func:`phase_boundary`).

A class C-Score over a gold list of fewer than ``min_gold`` images (``xai.tracking.min_gold``)
is undefined - paper 004 counts it as 0 - and is not drawn: the class's curve has a gap
there and the panel says at how many checkpoints (issue 15.5). The global panel writes the
number of such classes beside each point and leaves out a checkpoint where every class has
one (:func:`short_classes`).

Uses matplotlib's object API (``Figure`` + Agg canvas), never pyplot's global state, so
it is safe in worker threads.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from brainxai.atomic import savefig_atomic
from brainxai.xai.trajectory import GLOBAL, TrackingConfig

#: Class panels per row of a trajectory figure.
PANELS_PER_ROW = 6
#: Where a phase boundary sits between the last frozen epoch and the first trained one.
BOUNDARY_OFFSET = 0.5
BOUNDARY_LABEL = "backbone unfrozen"
#: Gold-list size below which a class C-Score is not drawn (the stage passes its own).
DEFAULT_MIN_GOLD = TrackingConfig().min_gold


def short_classes(table: pd.DataFrame, min_gold: int) -> pd.DataFrame:
    """Per (model, method, epoch) of a trajectory table: ``k`` classes and ``short`` of them
    with a gold list of fewer than ``min_gold`` images (their C-Score is uninformative)."""
    keys = ["model", "method", "epoch"]
    cls = table[table["klass"] != GLOBAL]
    if cls.empty:
        return pd.DataFrame(columns=[*keys, "k", "short"])
    return (
        cls.assign(short=cls["gold_size"] < min_gold)
        .groupby(keys)
        .agg(k=("klass", "size"), short=("short", "sum"))
        .reset_index()
    )


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


def plot_trajectory(
    table: pd.DataFrame, model: str, method: str, path: str | Path, min_gold: int = DEFAULT_MIN_GOLD
) -> Path:
    """One PNG for (model, method) (:func:`trajectory_figure`)."""
    fig = trajectory_figure(table, model, method, min_gold)
    path = Path(path)
    savefig_atomic(fig, path, format="png")
    return path


def trajectory_figure(
    table: pd.DataFrame, model: str, method: str, min_gold: int = DEFAULT_MIN_GOLD
) -> Figure:
    """A C-Score/AUC panel per class + global, gold sizes below; the phase boundary as a
    dotted vertical line on every panel when the run has two phases; no C-Score point over
    a gold list of fewer than ``min_gold`` images (module docstring)."""
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
    short = short_classes(sub, min_gold).set_index("epoch")
    for j, k in enumerate(classes):
        s = sub[sub["klass"] == k].sort_values("epoch")
        ax = fig.add_subplot(grid[j // ncol, j % ncol])
        if k == GLOBAL:
            n_short = short["short"].reindex(s["epoch"]).to_numpy(dtype=float)
            every = n_short >= short["k"].reindex(s["epoch"]).to_numpy(dtype=float)
            cs = s["cscore"].to_numpy(dtype=float).copy()
            cs[every] = np.nan  # no class has a gold pair: nothing to score
            ax.plot(s["epoch"], cs, "o-", color="tab:blue", label="C-Score")
            for x, y, c in zip(s["epoch"], cs, n_short, strict=True):
                if c > 0 and np.isfinite(y):
                    ax.annotate(
                        f"{c:g}", (x, y), xytext=(2, 3), textcoords="offset points",
                        fontsize=6, color="tab:red",
                    )  # fmt: skip
            gap = int(every.sum())
        else:
            undefined = (s["gold_size"] < min_gold).to_numpy()
            cs = s["cscore"].where(~undefined)
            ax.plot(s["epoch"], cs, "o-", color="tab:blue", label="C-Score")
            gap = int(undefined.sum())
        if gap:
            ax.text(
                0.98, 0.97, f"no C-Score at {gap} checkpoint{'s' if gap > 1 else ''}: "
                f"gold < {min_gold}", transform=ax.transAxes, ha="right", va="top",
                fontsize=6, color="tab:red",
            )  # fmt: skip
        ax.plot(s["epoch"], s["auc"], "s--", color="tab:orange", label="AUC")
        if boundary is not None:
            ax.axvline(boundary, color="grey", linestyle=":", label=BOUNDARY_LABEL)
        ax.set_ylim(-0.03, 1.03)
        title = f"global (red: classes with gold < {min_gold})" if k == GLOBAL else f"class {k}"
        ax.set_title(title, fontsize=9)
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


def plot_trajectories(
    table: pd.DataFrame, out_dir: str | Path, min_gold: int = DEFAULT_MIN_GOLD
) -> list[Path]:
    """:func:`plot_trajectory` for every (model, method): ``<model>__<method>.png``."""
    out = []
    for (model, method), _ in table.groupby(["model", "method"], sort=True):
        name = "__".join(
            re.sub(r"[^A-Za-z0-9._-]", "_", str(v).replace("+", "p")) for v in (model, method)
        )
        path = Path(out_dir) / f"{name}.png"
        out.append(plot_trajectory(table, model, method, path, min_gold))
    return out
