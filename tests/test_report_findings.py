"""brainxai.report.findings: the first screen's sentences, from hand-made tables whose
numbers give each sentence exactly (issue 15.5)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import norm

from brainxai.report.findings import (
    FINDING,
    INFO,
    NO_DIFFERENCE,
    UNINFORMATIVE,
    classify3d_findings,
    finetune_findings,
    ssl_findings,
    uninformative_inits,
    xai_findings,
)
from brainxai.targets import TargetsConfig

CFG = TargetsConfig()  # ssl_knn_gain_min 0.10, ssl_steps_min 200
LABEL = "10 % (effective 24.0 % of patients, 15.6 % of images)"


def _comparison(init: str, protocol: str = "finetune", **kw) -> dict:
    row = {
        "init": init,
        "protocol": protocol,
        "fraction": 0.1,
        "metric": "macro_f1",
        "baseline": "random",
        "alpha": 0.05,
        "power": 0.8,
        "chance": 1 / 17,
        "effective_patients": 0.24,
        "effective_images": 0.156,
        "significant": False,
        "informative": True,
    }
    return row | kw


def comparisons() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _comparison(
                "simclr",
                mean=0.6,
                baseline_mean=0.4,
                diff=0.2,
                ci_low=0.1,
                ci_high=0.3,
                p_bootstrap_holm=0.004,
                mde=0.15,
                significant=True,
            ),
            _comparison(
                "byol",
                mean=0.38,
                baseline_mean=0.4,
                diff=-0.02,
                ci_low=-0.1,
                ci_high=0.06,
                p_bootstrap_holm=0.9,
                mde=0.123,
            ),
            # a test that rejects between two models at chance: no finding
            _comparison(
                "dino",
                mean=0.05,
                baseline_mean=0.03,
                diff=0.02,
                ci_low=0.01,
                ci_high=0.03,
                p_bootstrap_holm=0.02,
                mde=0.01,
                significant=True,
                informative=False,
            ),
            _comparison(
                "mocov3",
                mean=0.7,
                baseline_mean=0.4,
                diff=0.3,
                ci_low=0.2,
                ci_high=0.4,
                p_bootstrap_holm=0.002,
                mde=0.15,
                significant=True,
            ),
            _comparison(
                "simclr",
                protocol="linear",
                mean=0.3,
                baseline_mean=0.4,
                diff=-0.1,
                ci_low=-0.15,
                ci_high=-0.05,
                p_bootstrap_holm=0.0004,
                mde=0.05,
                significant=True,
            ),
            _comparison(
                "simclr",
                metric="accuracy",
                mean=0.3,
                baseline_mean=0.3,
                diff=0.0,
                ci_low=0.0,
                ci_high=0.0,
                p_bootstrap_holm=1.0,
                mde=0.05,
            ),  # other metric
        ]
    )


EXPECTED_FINETUNE = [
    (
        NO_DIFFERENCE,
        f"byol vs random at finetune, {LABEL} labels: no difference detected; "
        "MDE = 0.123 at 80 % power (macro_f1 0.380 vs 0.400, difference -0.020 [95 % CI -0.100, "
        "0.060], Holm-adjusted p = 0.900).",
    ),
    (
        UNINFORMATIVE,
        f"dino vs random at finetune, {LABEL} labels: uninformative (both at "
        "chance 0.059: macro_f1 0.050 vs 0.030); no claim.",
    ),
    (
        UNINFORMATIVE,
        f"mocov3 vs random at finetune, {LABEL} labels: uninformative (mocov3: its "
        "pretraining ran 24 steps (< 200: not a pretraining)); difference +0.300 [95 % CI 0.200, "
        "0.400], Holm-adjusted p = 0.002 is no evidence about SSL.",
    ),
    (
        FINDING,
        f"simclr beats random at finetune, {LABEL} labels: macro_f1 0.600 vs 0.400, "
        "difference +0.200 [95 % CI 0.100, 0.300], Holm-adjusted p = 0.004.",
    ),
    (
        FINDING,
        f"simclr trails random at linear, {LABEL} labels: macro_f1 0.300 vs 0.400, "
        "difference -0.100 [95 % CI -0.150, -0.050], Holm-adjusted p < 0.001.",
    ),
]


def test_finetune_sentences(tmp_path: Path):
    why = {"mocov3": "its pretraining ran 24 steps (< 200: not a pretraining)"}
    got = finetune_findings(comparisons(), "macro_f1", why)
    assert [(f.status, f.sentence) for f in got] == EXPECTED_FINETUNE
    assert {f.topic for f in got} == {"fine-tuning"}
    # the same sentences from the table read back from CSV (booleans as the stage writes them)
    comparisons().to_csv(tmp_path / "comparisons.csv", index=False)
    again = finetune_findings(pd.read_csv(tmp_path / "comparisons.csv"), "macro_f1", why)
    assert again == got
    assert finetune_findings(None, "macro_f1") == finetune_findings(pd.DataFrame(), "x") == []


def _pretrain() -> dict:
    def doc(knn: float, ref: float, steps: int) -> dict:
        return {"final": {"knn_accuracy": knn}, "knn_random_init": ref, "steps": steps}

    return {
        "simclr": doc(0.55, 0.40, 312),
        "byol": doc(0.45, 0.40, 312),
        "dino": doc(0.9, 0.4, 24),
        "supervised": doc(0.9, 0.4, 312),
        "mocov3": None,
    }


def test_ssl_sentences_and_the_inits_they_make_uninformative():
    got = [(f.status, f.sentence) for f in ssl_findings(_pretrain(), CFG)]
    assert got == [
        (
            UNINFORMATIVE,
            "byol did not beat random features: val kNN top-1 0.450 vs 0.400 for "
            "the same backbone untrained (gain +0.050 < +0.10, 312 steps); its fine-tuning "
            "comparisons are uninformative.",
        ),
        (
            UNINFORMATIVE,
            "dino is not a pretraining: 24 steps < 200 (val kNN top-1 0.900 vs "
            "0.400 for the same backbone untrained, gain +0.500); its fine-tuning comparisons "
            "are uninformative.",
        ),
        (INFO, "mocov3: not judged (no kNN monitor or random-init reference)."),
        (
            FINDING,
            "simclr learned features: val kNN top-1 0.550 vs 0.400 for the same backbone "
            "untrained (gain +0.150 >= +0.10, 312 steps).",
        ),
    ]  # supervised: trained with labels, not judged as SSL
    assert uninformative_inits(_pretrain(), CFG) == {
        "byol": "its pretraining did not beat random features (kNN gain +0.050 < +0.10)",
        "dino": "its pretraining ran 24 steps (< 200: not a pretraining)",
    }


def _classify3d(base_above: bool, row_above: bool) -> dict:
    ablation = [
        {"run": "base/densenet", "paper_row": "①", "variant": "base", "macro_f1": 0.30},
        {
            "run": "coarse/densenet",
            "paper_row": "②",
            "variant": "coarse",
            "macro_f1": 0.55,
            "delta_macro_f1": 0.25,
            "ci_low": 0.1,
            "ci_high": 0.4,
            "p_holm": 0.01,
        },
        {
            "run": "oracle/densenet",
            "paper_row": "extension",
            "variant": "oracle",
            "macro_f1": 0.35,
            "delta_macro_f1": 0.05,
            "ci_low": -0.1,
            "ci_high": 0.2,
            "p_holm": 0.6,
        },
    ]
    runs = {
        "base/densenet": {
            "above_chance": base_above,
            "chance_macro_f1": 0.25,
            "pooled_macro_f1_ci": {"alpha": 0.05},
        },
        "coarse/densenet": {"above_chance": row_above},
        "oracle/densenet": {"above_chance": True},
    }
    return {"ablation": ablation, "runs": runs}


def test_classify3d_sentences_with_the_mde_from_the_ci_width():
    got = classify3d_findings(_classify3d(True, True), power=0.8, alpha=0.1)
    # oracle: se = 0.3 / (2 z_0.975); Holm family of 2 tested rows: alpha' = 0.025
    se = 0.3 / (2 * norm.ppf(0.975))
    mde = (norm.ppf(1 - 0.025 / 2) + norm.ppf(0.8)) * se
    assert mde == pytest.approx(0.2359, abs=1e-4)
    assert [(f.status, f.sentence) for f in got] == [
        (
            FINDING,
            "3D row ② (coarse) beats row ① (base): pooled out-of-fold macro-F1 0.550 vs "
            "0.300, difference +0.250 [95 % CI 0.100, 0.400], Holm-adjusted p = 0.010.",
        ),
        (
            NO_DIFFERENCE,
            "3D row oracle vs row ① (base): no difference detected; MDE = 0.236 at "
            "80 % power, from the CI width (pooled out-of-fold macro-F1 0.350 vs 0.300, difference "
            "+0.050 [95 % CI -0.100, 0.200], Holm-adjusted p = 0.600).",
        ),
    ]
    # base and row ② both at chance: no finding, whatever the test says
    first = classify3d_findings(_classify3d(False, False), power=0.8, alpha=0.05)[0]
    assert (first.status, first.sentence) == (
        UNINFORMATIVE,
        "3D row ② (coarse) vs row ① (base): uninformative (both at chance "
        "0.250: pooled out-of-fold macro-F1 0.550 vs 0.300); no claim.",
    )
    assert classify3d_findings(None, 0.8, 0.05) == []


def _trajectory() -> pd.DataFrame:
    """finetune/gradcam: models A, B, C; final epoch 2 gold sizes A [3, 2, 0], B [1, 0, 5],
    C [0, 1, 0] (C has no class of >= 2: left out); epoch 1 must not count. classify3d: one
    model with no gold pair at all."""
    rows = []
    final = {"A": ([3, 2, 0], 0.6, 0.5), "B": ([1, 0, 5], 0.3, 0.7), "C": ([0, 1, 0], 0.0, 0.3)}
    for model, (gold, cs, pg) in final.items():
        for epoch, sizes, c in ((1, [9, 9, 9], 0.9), (2, gold, cs)):
            rows += [
                {
                    "family": "finetune",
                    "model": model,
                    "method": "gradcam",
                    "epoch": epoch,
                    "klass": k,
                    "gold_size": g,
                    "cscore": 0.5,
                    "pointing": pg,
                }
                for k, g in enumerate(sizes)
            ]
            rows.append(
                {
                    "family": "finetune",
                    "model": model,
                    "method": "gradcam",
                    "epoch": epoch,
                    "klass": -1,
                    "gold_size": sum(sizes),
                    "cscore": c,
                    "pointing": pg,
                }
            )
    rows += [
        {
            "family": "classify3d",
            "model": "D",
            "method": "gradcam",
            "epoch": 3,
            "klass": k,
            "gold_size": g,
            "cscore": 0.0,
            "pointing": float("nan"),
        }
        for k, g in enumerate([1, 0, 0, 1])
    ]
    rows.append(
        {
            "family": "classify3d",
            "model": "D",
            "method": "gradcam",
            "epoch": 3,
            "klass": -1,
            "gold_size": 2,
            "cscore": 0.0,
            "pointing": float("nan"),
        }
    )
    return pd.DataFrame(rows)


def test_xai_sentences_leave_out_cscores_over_fewer_than_two_gold_images():
    got = [(f.status, f.sentence) for f in xai_findings(_trajectory(), min_gold=2)]
    assert got == [
        (
            UNINFORMATIVE,
            "gradcam on classify3d (final checkpoint of 1 model): C-Score "
            "uninformative - no class has a gold list of >= 2 images.",
        ),
        # A and B: mean (0.6 + 0.3) / 2; short classes 1 and 2 of 3; pointing over all three
        (
            INFO,
            "gradcam on finetune (final checkpoint of 3 models): global C-Score 0.450 "
            "(range 0.300-0.600; 1.5 of 3 classes with < 2 gold images, counted as 0), pointing "
            "game 0.500; 1 model left out: no class with >= 2 gold images (uninformative).",
        ),
    ]
    assert xai_findings(None, 2) == []
