"""Predictions table → per-run metrics, summaries, comparisons, plot and Markdown."""

import numpy as np
import pandas as pd
import pytest

from brainxai.evaluation.aggregate import compare, per_class_table, run_metrics, summarise
from brainxai.evaluation.plots import label_efficiency
from brainxai.evaluation.results_md import results_markdown

NAMES = ["neg", "pos"]
Y = [0, 1, 0, 1]
SUBJECTS = ["A", "A", "B", "B"]
PREDS = {  # (init, seed) -> predictions on records r0..r3
    ("random", 0): [0, 0, 0, 0],  # accuracy 0.50 (A 1/2, B 1/2)
    ("random", 1): [0, 1, 1, 1],  # accuracy 0.75 (A 2/2, B 1/2)
    ("ssl", 0): [0, 1, 0, 1],  # accuracy 1.00
    ("ssl", 1): [0, 1, 0, 0],  # accuracy 0.75 (A 2/2, B 1/2)
}


def hand_table(fractions=(0.1,)) -> pd.DataFrame:
    rows = []
    for fraction in fractions:
        for (init, seed), preds in PREDS.items():
            for i, (y, s, p) in enumerate(zip(Y, SUBJECTS, preds, strict=True)):
                probs = [0.3, 0.7] if p == 1 else [0.8, 0.2]
                rows.append(
                    {
                        "run": f"{init}-{fraction}-{seed}",
                        "init": init,
                        "protocol": "finetune",
                        "fraction": fraction,
                        "seed": seed,
                        "record_id": f"r{i}",
                        "subject": s,
                        "y_true": y,
                        "y_pred": p,
                        "probs": probs,
                    }
                )
    return pd.DataFrame(rows)


def test_run_metrics_one_row_per_run():
    rm = run_metrics(hand_table(), NAMES)
    assert len(rm) == 4
    acc = rm.set_index(["init", "seed"])["accuracy"]
    assert acc[("random", 0)] == 0.5 and acc[("random", 1)] == 0.75
    assert acc[("ssl", 0)] == 1.0 and acc[("ssl", 1)] == 0.75
    assert set(rm.columns) >= {
        "run",
        "init",
        "protocol",
        "fraction",
        "seed",
        "n",
        "macro_f1",
        "ece",
    }


def test_summarise_mean_sd_and_patient_ci_by_hand():
    s = summarise(hand_table(fractions=(0.1, 1.0)), NAMES, n_boot=1000, seed=0)
    assert len(s) == 2 * 2 * 5  # inits × fractions × metrics
    row = s[(s["init"] == "random") & (s["metric"] == "accuracy") & (s["fraction"] == 0.1)]
    row = row.iloc[0]
    assert row["mean"] == pytest.approx(0.625)
    assert row["sd"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert row["n_seeds"] == 2 and row["n_patients"] == 2 and row["n_images"] == 4
    # replicates: {A,A} → (0.5 + 1)/2, {A,B} → 0.625, {B,B} → 0.5 (each drawn ~¼, ½, ¼)
    assert (row["ci_low"], row["ci_high"]) == (0.5, 0.75)


def test_summary_means_equal_run_metric_means():
    df = hand_table(fractions=(0.1, 1.0))
    s = summarise(df, NAMES, n_boot=50, n_bins=2)
    rm = run_metrics(df, NAMES, n_bins=2).groupby(["init", "fraction"]).mean(numeric_only=True)
    for _, row in s.iterrows():
        assert row["mean"] == pytest.approx(rm.loc[(row["init"], row["fraction"]), row["metric"]])
    # ECE, 2 bins, random: seed 0 conf 0.8 × 4, acc 0.5 → 0.3; seed 1 conf 0.725, acc 0.75
    assert rm.loc[("random", 0.1), "ece"] == pytest.approx((0.3 + abs(0.75 - 0.725)) / 2)


def test_compare_values_by_hand():
    c = compare(hand_table(fractions=(0.1, 1.0)), NAMES, metric="accuracy", n_boot=1000)
    assert len(c) == 2 and set(c["init"]) == {"ssl"}
    row = c.iloc[0]
    assert row["diff"] == pytest.approx(0.875 - 0.625)
    # McNemar pooled over seeds: only-ssl-correct b = 3, only-random-correct c = 1 → exact p
    assert (row["mcnemar_b"], row["mcnemar_c"]) == (3, 1)
    assert row["p_mcnemar"] == pytest.approx(0.625)
    # Wilcoxon over seeds: differences (0.5, 0.0) → one non-zero pair, p = 1
    assert row["p_wilcoxon"] == 1.0 and row["wilcoxon_min_p"] == 1.0
    # Holm over the 2 identical comparisons: p_holm = min(1, 2 p)
    assert row["p_mcnemar_holm"] == pytest.approx(1.0)
    # every patient resample gives Δ = 0.25 (A: 1 − 0.75, B: 0.75 − 0.5): degenerate CI,
    # bootstrap p at its floor 2/(B+1) — with 2 patients the bootstrap sees no variation
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.25, 0.25))
    assert row["p_bootstrap"] == pytest.approx(2 / 1001)
    assert row["p_bootstrap_holm"] == pytest.approx(4 / 1001)
    assert row["significant"] and row["holm_family_size"] == 2
    # no variation over resamples: se 0, so any difference is detectable (mde 0)
    assert row["se_diff"] == pytest.approx(0.0) and row["mde"] == pytest.approx(0.0)


def test_mde_is_the_normal_power_formula():
    """(z_{1-a/2} + z_power) · se: at a = 0.05, power 0.8 the factor is 1.95996 + 0.84162
    = 2.80158; a Holm family of 4 uses a = 0.0125 (z 2.49771): factor 3.33933."""
    from brainxai.evaluation.aggregate import mde

    assert mde(0.1, 0.05, 0.8) == pytest.approx(0.280158, abs=1e-6)
    assert mde([0.1, 0.2], 0.05 / 4, 0.8) == pytest.approx([0.333933, 0.667866], abs=1e-6)
    # compare(): mde per row = formula(se_diff, alpha / family size, power)
    c = compare(hand_table(fractions=(0.1, 1.0)), NAMES, metric="accuracy", n_boot=200,
                power=0.9)  # fmt: skip
    expect = mde(c["se_diff"], 0.05 / c["holm_family_size"], 0.9)
    assert c["mde"].to_numpy() == pytest.approx(expect) and (c["power"] == 0.9).all()


def test_compare_without_baseline_gives_an_empty_table_with_header():
    df = hand_table()
    c = compare(df[df["init"] == "ssl"], NAMES, n_boot=10)
    assert c.empty and "p_bootstrap_holm" in c.columns
    full = compare(df, NAMES, metric="accuracy", n_boot=100)
    assert list(full.columns) == list(c.columns)


def test_per_class_table():
    t = per_class_table(hand_table(), NAMES)
    assert len(t) == 2 * 2
    pos = t[(t["init"] == "random") & (t["class"] == "pos")].iloc[0]
    # seed 0: pos never predicted → F1 0; seed 1: P = 2/3, R = 1 → F1 0.8
    assert pos["f1_mean"] == pytest.approx(0.4)
    assert pos["f1_sd"] == pytest.approx(np.std([0.0, 0.8], ddof=1))
    assert pos["support"] == 2 and pos["f1"] == "0.400 ± 0.566"
    assert list(t["class"][:2]) == NAMES


def test_bad_tables_raise():
    df = hand_table()
    bad = df.copy()
    bad.loc[0, "y_pred"] = 1
    with pytest.raises(ValueError, match="argmax"):
        run_metrics(bad, NAMES)
    shifted = df.copy()
    shifted.loc[(shifted["init"] == "ssl") & (shifted["seed"] == 1), "record_id"] = "other"
    shifted = shifted.drop_duplicates(["run", "record_id"])
    with pytest.raises(ValueError, match="different test images"):
        summarise(shifted, NAMES, n_boot=10)
    with pytest.raises(ValueError, match="lack columns"):
        run_metrics(df.drop(columns="subject"), NAMES)


def synthetic_study(rng, boost: float, n_patients=24, per=3, k=4) -> pd.DataFrame:
    subjects = np.repeat([f"p{i:02d}" for i in range(n_patients)], per)
    y = np.repeat(rng.integers(0, k, n_patients), per)
    rows = []
    for init, extra in (("random", 0.0), ("simclr", boost), ("byol", 0.0)):
        for protocol in ("finetune", "linear"):
            for fraction in (0.01, 0.05, 0.1, 0.5, 1.0):
                for seed in range(3):
                    acc = 0.3 + 0.4 * fraction + extra
                    correct = rng.random(y.size) < acc
                    pred = np.where(correct, y, (y + rng.integers(1, k, y.size)) % k)
                    p = rng.dirichlet(np.ones(k), y.size) * 0.5
                    p[np.arange(y.size), pred] += 0.6
                    p /= p.sum(axis=1, keepdims=True)
                    for i in range(y.size):
                        rows.append(
                            {
                                "run": f"{init}-{protocol}-{fraction}-{seed}",
                                "init": init,
                                "protocol": protocol,
                                "fraction": fraction,
                                "seed": seed,
                                "record_id": f"r{i:03d}",
                                "subject": subjects[i],
                                "y_true": int(y[i]),
                                "y_pred": int(p[i].argmax()),
                                "probs": p[i].tolist(),
                            }
                        )
    return pd.DataFrame(rows)


def test_planted_ssl_gain_is_significant_and_plotted(tmp_path):
    df = synthetic_study(np.random.default_rng(0), boost=0.25)
    names = list("abcd")
    summary = summarise(df, names, metrics=("macro_f1", "accuracy"), n_boot=400)
    with pytest.warns(UserWarning, match="n_boot"):  # 20 comparisons: 400 replicates too few
        weak = compare(df, names, n_boot=400)
    assert not weak["significant"].any()
    comp = compare(df, names, n_boot=1000, holm_by=("protocol",))
    assert len(comp) == 2 * 2 * 5 and (comp["holm_family_size"] == 10).all()
    simclr = comp[comp["init"] == "simclr"]
    byol = comp[comp["init"] == "byol"]
    assert (simclr["diff"] > 0).all() and simclr["significant"].mean() >= 0.8
    assert byol["significant"].mean() <= 0.2

    png = label_efficiency(summary, comp, "macro_f1", tmp_path / "fig" / "le.png")
    assert png.exists() and png.stat().st_size > 30_000

    md = results_markdown(summary, comp, metric="macro_f1")
    cell = summary[
        (summary["init"] == "simclr")
        & (summary["protocol"] == "linear")
        & (summary["fraction"] == 0.05)
        & (summary["metric"] == "macro_f1")
    ].iloc[0]
    assert (
        f"{cell['mean']:.3f} ± {cell['sd']:.3f} [{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]" in md
    )
    first = comp.sort_values(["protocol", "fraction", "init"]).iloc[0]
    assert f"{first['diff']:.3f}" in md
    assert "### protocol: finetune" in md and "### protocol: linear" in md
    assert "random (baseline)" in md and "| 5 % |" in md
    assert "fewer than 6 seeds" in md
