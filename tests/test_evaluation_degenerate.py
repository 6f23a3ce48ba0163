"""Degenerate results (issue 15.5): a condition at chance and a comparison of two conditions
at chance are labelled as such in the tables, drawn hollow in the plot, and never marked
significant. Predictions are built so that every number is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainxai.evaluation.aggregate import (
    CHANCE_AUROC,
    chance_level,
    compare,
    flags,
    is_at_chance,
    summarise,
)
from brainxai.evaluation.plots import (
    SIGNIFICANCE_MARK,
    UNINFORMATIVE_COLOUR,
    draw_label_efficiency,
)
from brainxai.evaluation.results_md import AT_CHANCE, BOTH_AT_CHANCE, results_markdown

NAMES = list("abcd")  # K = 4: chance macro-F1 / accuracy 0.25
K = len(NAMES)
N_PATIENTS, PER = 20, 2  # 5 patients per class, 2 images each
FRACTIONS = (0.5, 1.0)
#: init -> prediction rule: "right" (always the true class) or a constant class
RULES = {"random": 0, "byol": 1, "simclr": "right"}


def predictions() -> pd.DataFrame:
    y = np.repeat(np.arange(N_PATIENTS) % K, PER)
    subjects = np.repeat([f"p{i:02d}" for i in range(N_PATIENTS)], PER)
    rows = []
    for init, rule in RULES.items():
        pred = y if rule == "right" else np.full_like(y, rule)
        for fraction in FRACTIONS:
            for seed in (0, 1):
                for i in range(y.size):
                    p = np.full(K, 0.1 / (K - 1))
                    p[pred[i]] = 0.9
                    rows.append(
                        {
                            "run": f"{init}-{fraction}-{seed}",
                            "init": init,
                            "protocol": "finetune",
                            "fraction": fraction,
                            "seed": seed,
                            "record_id": f"r{i:03d}",
                            "subject": subjects[i],
                            "y_true": int(y[i]),
                            "y_pred": int(pred[i]),
                            "probs": p.tolist(),
                        }
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    preds = predictions()
    summary = summarise(preds, NAMES, n_boot=200, seed=0)
    comp = compare(preds, NAMES, metric="macro_f1", n_boot=200, seed=0)
    return summary, comp


def _row(table: pd.DataFrame, init: str, metric: str, fraction: float = 1.0) -> pd.Series:
    hit = table[
        (table["init"] == init) & (table["metric"] == metric) & (table["fraction"] == fraction)
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def test_chance_levels_and_the_rule():
    assert chance_level("macro_f1", 17) == pytest.approx(1 / 17)
    assert chance_level("balanced_accuracy", 4) == chance_level("accuracy", 4) == 0.25
    assert chance_level("macro_auroc", 17) == CHANCE_AUROC == 0.5
    assert np.isnan(chance_level("ece", 4))
    assert is_at_chance(0.25, 0.25)  # the CI touches chance: not above it
    assert is_at_chance(0.01, 0.25)  # below chance (a constant classifier's macro-F1)
    assert not is_at_chance(0.2501, 0.25)
    assert is_at_chance(float("nan"), 0.25)  # an undefined CI proves nothing
    assert not is_at_chance(0.0, float("nan"))  # no chance level (ECE): never at chance
    read_back = pd.DataFrame({"f": ["True", "False", np.nan]})
    assert flags(read_back, "f", True).tolist() == [True, False, True]
    assert flags(read_back, "absent", False).tolist() == [False] * 3


def test_summary_rows_carry_chance_and_at_chance(tables):
    summary, _ = tables
    # always class 0 on 4 balanced classes: F1 of class 0 = 2 * 0.25 / 1.25 = 0.4, others 0
    rnd = _row(summary, "random", "macro_f1")
    assert rnd["mean"] == pytest.approx(0.1) and rnd["chance"] == 0.25
    assert rnd["ci_high"] < 0.25 and bool(rnd["at_chance"])
    right = _row(summary, "simclr", "macro_f1")
    assert (right["mean"], right["ci_low"]) == (1.0, 1.0) and not bool(right["at_chance"])
    # a constant score ranks nothing: macro AUROC exactly 0.5 on every resample
    auroc = _row(summary, "random", "macro_auroc")
    assert (auroc["mean"], auroc["ci_low"], auroc["chance"]) == (0.5, 0.5, 0.5)
    assert bool(auroc["at_chance"])
    ece = summary[summary["metric"] == "ece"]
    assert ece["chance"].isna().all() and not ece["at_chance"].any()


def test_a_comparison_of_two_models_at_chance_is_uninformative(tables):
    summary, comp = tables
    byol = comp[comp["init"] == "byol"]
    assert len(byol) == len(FRACTIONS)
    assert byol["at_chance"].all() and byol["baseline_at_chance"].all()
    assert not byol["informative"].any()
    simclr = comp[comp["init"] == "simclr"]
    assert simclr["informative"].all() and simclr["significant"].all()
    assert not simclr["at_chance"].any() and simclr["baseline_at_chance"].all()
    # compare's per-condition verdict equals summarise's (same patients resampled)
    for r in comp.itertuples():
        assert r.at_chance == bool(_row(summary, r.init, "macro_f1", r.fraction)["at_chance"])


def test_results_markdown_labels_at_chance_cells_and_uninformative_comparisons(tables):
    summary, comp = tables
    md = results_markdown(summary, comp, metric="macro_f1")
    random_line = next(ln for ln in md.splitlines() if ln.startswith("| random (baseline)"))
    assert random_line.count(AT_CHANCE) == len(FRACTIONS)
    simclr_line = next(ln for ln in md.splitlines() if ln.startswith("| simclr |"))
    assert AT_CHANCE not in simclr_line and "1.000 ± 0.000 [1.000, 1.000]" in simclr_line
    byol_rows = [ln for ln in md.splitlines() if ln.startswith("| finetune |") and "| byol |" in ln]
    assert len(byol_rows) == len(FRACTIONS)
    assert all(BOTH_AT_CHANCE in ln and " *" not in ln for ln in byol_rows)
    simclr_rows = [ln for ln in md.splitlines() if "| simclr |" in ln and ln.startswith("| fine")]
    assert len(simclr_rows) == len(FRACTIONS)  # 1.0 - 0.1, Holm-significant
    assert all("| 0.900 * [" in ln and "uninformative" not in ln for ln in simclr_rows)


def _marks(fig) -> list[tuple[float, str]]:
    return [
        (t.xy[0], t.get_color())
        for ax in fig.axes
        for t in ax.texts
        if t.get_text() == SIGNIFICANCE_MARK
    ]


def _hollow_x(fig) -> list[float]:
    return sorted(
        float(x)
        for ax in fig.axes
        for ln in ax.get_lines()
        if ln.get_markerfacecolor() == "none" and ln.get_label() != "at chance: uninformative"
        for x in ln.get_xdata()
    )


def test_plot_draws_at_chance_points_hollow_and_marks_only_informative_differences(tables):
    summary, comp = tables
    fig = draw_label_efficiency(summary, comp, "macro_f1")
    # simclr beats random at both fractions (informative); byol vs random is not drawn
    assert [x for x, _ in _marks(fig)] == list(FRACTIONS)
    # random and byol at chance at both fractions: 4 hollow grey points; simclr none
    assert _hollow_x(fig) == sorted(FRACTIONS * 2)
    hollow = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_markerfacecolor() == "none"]
    assert all(ln.get_markeredgecolor() == UNINFORMATIVE_COLOUR for ln in hollow)
    chance = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("chance")]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [0.25, 0.25]


def test_a_significant_but_uninformative_comparison_gets_no_mark(tables):
    """By hand: byol's comparisons flagged significant (as a test could find between two
    different models at chance) stay unmarked because they are uninformative; an init named
    uninformative (its pretraining did not beat random features) loses its marks too."""
    summary, comp = tables
    forced = comp.assign(significant=True)
    fig = draw_label_efficiency(summary, forced, "macro_f1")
    assert len(_marks(fig)) == len(FRACTIONS)  # simclr's only
    assert not _marks(draw_label_efficiency(summary, forced, "macro_f1", {"simclr": "24 steps"}))
    # simclr's points, uninformative as an init, are hollow too
    fig = draw_label_efficiency(summary, comp, "macro_f1", {"simclr": "24 steps"})
    assert _hollow_x(fig) == sorted(FRACTIONS * 3)
    labels = [ln.get_label() for ln in fig.axes[-1].get_lines()]
    assert "simclr (uninformative)" in labels
    md = results_markdown(summary, forced, metric="macro_f1")
    assert not any(" *" in ln for ln in md.splitlines() if "| byol |" in ln)
