"""The label-efficiency curve (issue 6; paper 000's main figure with error bars).

One panel per protocol; x = label fraction on a log axis labelled in percent (the nominal
fraction, with the effective share of patients and images under it when the summary carries
them, :mod:`brainxai.evaluation.fractions`); one line per
init (mean over seeds) with its patient-bootstrap CI as a band; the baseline in black,
dashed; ``*`` above a point where the init beats or trails the baseline with a Holm-adjusted
bootstrap p below alpha (``compare``'s ``significant``). Degenerate results are not drawn as
results (issue 15.5): a point at chance (``summarise``'s ``at_chance``) is a hollow grey
marker, the chance level a dotted grey line, and an uninformative comparison (``compare``'s
``informative`` False: both at chance) or an init named in ``uninformative_inits`` (e.g.
an SSL init whose pretraining did not beat random features) gets no ``*``; such an init's
points are all hollow grey. Matplotlib object API on an Agg canvas (no pyplot state: safe
in worker threads).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from brainxai.atomic import savefig_atomic
from brainxai.evaluation.aggregate import flags
from brainxai.evaluation.fractions import fraction_labels, percent_label

__all__ = [
    "BASELINE_STYLE",
    "SIGNIFICANCE_MARK",
    "UNINFORMATIVE_COLOUR",
    "draw_label_efficiency",
    "label_efficiency",
    "percent_label",
]

BASELINE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 2.2, "marker": "s"}
#: Text of the mark above a Holm-significant, informative difference from the baseline.
SIGNIFICANCE_MARK = "*"
#: Edge colour of a hollow (uninformative: at chance) marker and of the chance line.
UNINFORMATIVE_COLOUR = "grey"


def label_efficiency(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    metric: str,
    path: str | Path,
    uninformative_inits: Mapping[str, str] | None = None,
) -> Path:
    """Write the label-efficiency figure of ``metric`` (``summarise`` + ``compare`` tables;
    :func:`draw_label_efficiency`)."""
    fig = draw_label_efficiency(summary, comparisons, metric, uninformative_inits)
    path = Path(path)
    savefig_atomic(fig, path)
    return path


def _chance(sub: pd.DataFrame) -> float | None:
    if "chance" not in sub:
        return None
    levels = pd.to_numeric(sub["chance"], errors="coerce").dropna().unique()
    return float(levels[0]) if len(levels) == 1 else None


def draw_label_efficiency(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    metric: str,
    uninformative_inits: Mapping[str, str] | None = None,
) -> Figure:
    """The label-efficiency figure of ``metric`` (module docstring); ``uninformative_inits``:
    init -> why its results are no evidence (legend)."""
    uninformative = dict(uninformative_inits or {})
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
    chance = _chance(sub)
    fig = Figure(figsize=(5.0 * len(protocols), 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(protocols), squeeze=False, sharey=True)[0]
    span = float(sub["ci_high"].max() - sub["ci_low"].min()) or 1.0
    any_hollow = False
    for ax, protocol in zip(axes, protocols, strict=True):
        if chance is not None:
            ax.axhline(chance, color=UNINFORMATIVE_COLOUR, linestyle=":", linewidth=1.2,
                       label=f"chance ({chance:.3f})")  # fmt: skip
        for init in inits:
            s = sub[(sub["protocol"] == protocol) & (sub["init"] == init)].sort_values("fraction")
            if s.empty:
                continue
            x = s["fraction"].to_numpy(dtype=float)
            hollow = flags(s, "at_chance", False) | (init in uninformative)
            style = (
                BASELINE_STYLE
                if init == baseline
                else {"color": colours[init], "linestyle": "-", "linewidth": 1.6, "marker": "o"}
            )
            label = f"{init} (baseline)" if init == baseline else init
            if init in uninformative:
                label += " (uninformative)"
            ax.plot(x, s["mean"], label=label, markersize=5,
                    markevery=[int(i) for i in np.flatnonzero(~hollow)], **style)  # fmt: skip
            if hollow.any():
                any_hollow = True
                ax.plot(x[hollow], s["mean"].to_numpy(float)[hollow], linestyle="none",
                        marker=style["marker"], markersize=6, markerfacecolor="none",
                        markeredgecolor=UNINFORMATIVE_COLOUR, markeredgewidth=1.4)  # fmt: skip
            ax.fill_between(
                x, s["ci_low"], s["ci_high"], color=style["color"], alpha=0.15, linewidth=0
            )
            if init == baseline or comp.empty or init in uninformative:
                continue
            c = comp[(comp["protocol"] == protocol) & (comp["init"] == init)]
            marks = c[flags(c, "significant", False) & flags(c, "informative", True)]
            for fraction in marks["fraction"].astype(float):
                row = s[np.isclose(x, fraction)]
                if not row.empty:
                    ax.annotate(
                        SIGNIFICANCE_MARK,
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
    if any_hollow:
        axes[-1].plot(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            markeredgecolor=UNINFORMATIVE_COLOUR,
            label="at chance: uninformative",
        )
    level = 100 * (1 - float(sub["alpha"].iloc[0])) if "alpha" in sub else 95.0
    axes[0].set_ylabel(f"{metric} (mean over seeds, {level:g} % patient-bootstrap CI)")
    axes[-1].legend(
        loc="best",
        fontsize=8,
        title=f"{SIGNIFICANCE_MARK} Holm-significant vs baseline" if baseline else None,
        title_fontsize=7,
    )
    return fig
