"""Markdown results tables for the label-fraction study (issue 6).

Per protocol, a method × fraction table of ``mean ± sd [CI]`` (mean and sd over seeds,
patient-bootstrap CI of the seed-averaged metric), then the paired comparisons against the
baseline with raw and Holm-adjusted p-values of the three tests. Each nominal fraction is
shown with its effective share of the training patients and images beside it when the
tables carry them (:mod:`brainxai.evaluation.fractions`). A condition at chance (its CI does
not lie above the chance level) says :data:`AT_CHANCE`, a comparison of two conditions at
chance :data:`BOTH_AT_CHANCE`, and never carries the significance mark (issue 15.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainxai.evaluation.aggregate import flag, flags
from brainxai.evaluation.fractions import fraction_labels

#: Label of a result whose CI does not lie above the metric's chance level.
AT_CHANCE = "uninformative (at chance)"
#: Label of a comparison between two conditions at chance.
BOTH_AT_CHANCE = "uninformative (both at chance)"


def _num(x: float, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def cell(row: pd.Series) -> str:
    """``mean ± sd [low, high]`` (sd left out for a single seed), then :data:`AT_CHANCE`
    when the row is at chance."""
    sd = f" ± {_num(row['sd'])}" if np.isfinite(row["sd"]) else ""
    at = flag(row.get("at_chance"), False)
    return f"{_num(row['mean'])}{sd} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]" + (
        f" {AT_CHANCE}" if at else ""
    )


def results_markdown(
    summary: pd.DataFrame, comparisons: pd.DataFrame, metric: str = "macro_f1"
) -> str:
    """Method × fraction tables per protocol and the comparisons table, as Markdown."""
    sub = summary[summary["metric"] == metric]
    if sub.empty:
        raise ValueError(f"summary has no rows for metric {metric!r}")
    comp = comparisons[comparisons["metric"] == metric] if not comparisons.empty else comparisons
    baseline = str(comp["baseline"].iloc[0]) if not comp.empty else None
    level = 100 * (1 - float(sub["alpha"].iloc[0])) if "alpha" in sub else 95.0
    lines = [f"## {metric}: label efficiency", ""]
    lines.append(
        f"Mean ± sd over seeds [{level:g} % patient-bootstrap CI of the seed mean]; "
        f"seeds per cell: {_range(sub['n_seeds'])}, test patients: {_range(sub['n_patients'])}, "
        f"test images: {_range(sub['n_images'])}."
    )
    labels = fraction_labels(sub)
    if "effective_patients" in sub:
        lines.append(
            "Fractions: nominal (effective share of the training split's patients and images, "
            "mean over the seeds' subsets: rounding up per tumour group and at least one image "
            "per class make a small nominal fraction larger)."
        )
    for protocol in sorted(sub["protocol"].unique()):
        s = sub[sub["protocol"] == protocol]
        fractions = sorted(s["fraction"].unique())
        inits = sorted(s["init"].unique(), key=lambda i: (i != baseline, i))
        rows = []
        for init in inits:
            r = [f"{init} (baseline)" if init == baseline else init]
            for f in fractions:
                hit = s[(s["init"] == init) & (s["fraction"] == f)]
                r.append(cell(hit.iloc[0]) if not hit.empty else "–")
            rows.append(r)
        lines += ["", f"### protocol: {protocol}", ""]
        lines += _table(["init", *[labels[float(f)] for f in fractions]], rows)
    if comp.empty:
        lines += ["", "No comparisons (no baseline runs)."]
        return "\n".join(lines) + "\n"
    lines += ["", f"### {metric}: paired comparisons with the {baseline} baseline", ""]
    rows = []
    comp = comp.sort_values(["protocol", "fraction", "init"])
    informative = flags(comp, "informative", True)
    significant = flags(comp, "significant", False)
    for i, (_, c) in enumerate(comp.iterrows()):
        mark = " *" if significant[i] and informative[i] else ""
        label = "" if informative[i] else f" {BOTH_AT_CHANCE}"
        rows.append(
            [
                str(c["protocol"]),
                labels[float(c["fraction"])],
                str(c["init"]),
                f"{_num(c['diff'], 3)}{mark} [{_num(c['ci_low'])}, {_num(c['ci_high'])}]{label}",
                f"{_p(c['p_bootstrap'])} ({_p(c['p_bootstrap_holm'])})",
                f"{_p(c['p_mcnemar'])} ({_p(c['p_mcnemar_holm'])})",
                f"{_p(c['p_wilcoxon'])} ({_p(c['p_wilcoxon_holm'])})",
            ]
        )
    lines += _table(
        [
            "protocol",
            "fraction",
            "init",
            "Δ vs baseline [CI]",
            "p bootstrap (Holm)",
            "p McNemar (Holm)",
            "p Wilcoxon seeds (Holm)",
        ],
        rows,
    )
    alpha = float(comp["alpha"].iloc[0]) if "alpha" in comp else 0.05
    n_boot = int(comp["n_boot"].iloc[0]) if "n_boot" in comp else None
    seeds = int(comp["n_paired_seeds"].min())
    notes = [
        "",
        f"- `*`: Holm-adjusted paired-bootstrap p < {alpha:g}. Holm families: each test "
        f"separately, over {_family(comp)} comparisons.",
    ]
    if "at_chance" in sub or "informative" in comp:
        notes.append(
            f"- {AT_CHANCE}: the CI does not lie above the metric's chance level (1/K for "
            "macro-F1 and (balanced) accuracy, 0.5 for macro AUROC); "
            f"{BOTH_AT_CHANCE}: neither model is above chance, so the comparison is no "
            "finding whatever its p, and carries no `*`."
        )
    if n_boot:
        notes.append(
            f"- Bootstrap: {n_boot} patient resamples; smallest attainable p = "
            f"{2 / (n_boot + 1):.4f}."
        )
    if seeds < 6:
        notes.append(
            f"- Wilcoxon over {seeds} paired seeds: the exact test cannot give p < 0.05 with fewer "
            f"than 6 seeds (smallest p = {2 / 2**seeds:.4f}); read it as not informative here."
        )
    notes.append("- McNemar pools the seeds' paired predictions (not independent across seeds).")
    return "\n".join(lines + notes) + "\n"


def _range(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _family(comp: pd.DataFrame) -> str:
    if "holm_family_size" not in comp:
        return f"all {len(comp)}"
    sizes = comp["holm_family_size"]
    if int(sizes.iloc[0]) == len(comp) and sizes.nunique() == 1:
        return f"all {len(comp)}"
    return f"groups of {_range(sizes)}"
