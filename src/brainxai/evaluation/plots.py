"""The label-efficiency curve (issue 6; paper 000's main figure with error bars).

One panel per protocol; x = label fraction on a log axis labelled in percent (the nominal
fraction, with the effective share of patients and images under it when the summary carries
them, :mod:`brainxai.evaluation.fractions`); one line per
init (mean over seeds) with its patient-bootstrap CI as a band; the baseline in black,
dashed; ``*`` above a point where the init beats or trails the baseline with a Holm-adjusted
bootstrap p below alpha (``compare``'s ``significant``). Matplotlib object API on an Agg
canvas (no pyplot state: safe in worker threads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from brainxai.atomic import savefig_atomic
from brainxai.evaluation.fractions import fraction_labels, percent_label

__all__ = ["BASELINE_STYLE", "label_efficiency", "percent_label"]

BASELINE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 2.2, "marker": "s"}


def label_efficiency(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    metric: str,
    path: str | Path,
) -> Path:
    """Write the label-efficiency figure of ``metric`` (``summarise`` + ``compare`` tables)."""
    sub = summary[summary["metric"] == metric]
    if sub.empty:
        raise ValueError(f"summary has no rows for metric {metric!r}")
    comp = comparisons
    if not comp.empty:
        comp = comp[comp["metric"] == metric]
    baseline = str(comp["baseline"].iloc[0]) if not comp.empty else None
    protocols = sorted(sub["protocol"].unique())
    inits = sorted(sub["init"].unique(), key=lambda i: (i != baseline, i))
    colours = {init: f"C{j}" for j, init in enumerate(i for i in inits if i != baseline)}
    fractions = np.sort(sub["fraction"].unique().astype(float))
    ticks = fraction_labels(sub, style="tick")
    xlabel = "labelled training fraction" + (
        " (nominal)\nunder it: effective % of patients (P), images (I)"
        if "effective_patients" in sub
        else ""
    )
    fig = Figure(figsize=(5.0 * len(protocols), 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(protocols), squeeze=False, sharey=True)[0]
    span = float(sub["ci_high"].max() - sub["ci_low"].min()) or 1.0
    for ax, protocol in zip(axes, protocols, strict=True):
        for init in inits:
            s = sub[(sub["protocol"] == protocol) & (sub["init"] == init)].sort_values("fraction")
            if s.empty:
                continue
            x = s["fraction"].to_numpy(dtype=float)
            style = (
                BASELINE_STYLE
                if init == baseline
                else {"color": colours[init], "linestyle": "-", "linewidth": 1.6, "marker": "o"}
            )
            label = f"{init} (baseline)" if init == baseline else init
            ax.plot(x, s["mean"], label=label, markersize=5, **style)
            ax.fill_between(
                x, s["ci_low"], s["ci_high"], color=style["color"], alpha=0.15, linewidth=0
            )
            if init == baseline or comp.empty:
                continue
            marks = comp[
                (comp["protocol"] == protocol)
                & (comp["init"] == init)
                & comp["significant"].astype(bool)
            ]
            for fraction in marks["fraction"].astype(float):
                row = s[np.isclose(x, fraction)]
                if not row.empty:
                    ax.annotate(
                        "*",
                        (fraction, float(row["ci_high"].iloc[0]) + 0.02 * span),
                        ha="center",
                        va="bottom",
                        color=style["color"],
                        fontsize=14,
                        fontweight="bold",
                    )
        ax.margins(y=0.1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(fractions))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([ticks[float(f)] for f in fractions], fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_title(protocol)
        ax.grid(True, alpha=0.3)
    level = 100 * (1 - float(sub["alpha"].iloc[0])) if "alpha" in sub else 95.0
    axes[0].set_ylabel(f"{metric} (mean over seeds, {level:g} % patient-bootstrap CI)")
    axes[-1].legend(
        loc="best",
        fontsize=8,
        title="* Holm-significant vs baseline" if baseline else None,
        title_fontsize=7,
    )
    path = Path(path)
    savefig_atomic(fig, path)
    return path
