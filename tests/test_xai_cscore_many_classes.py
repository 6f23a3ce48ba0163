"""C-Score with classes whose gold list is empty or a single image (issue 17.7): paper 004's
global score stays the default; beside it the global score without those classes and
their counts, over a τ sweep — all against a hand computation.

Four classes, binary 1x4 heatmaps (min-max normalisation and γ leave them unchanged), every
gold image with confidence 0.8 except class 2's two images (correct, but p = 0.4):

* class 0: maps A = 1100, B = 1100, C = 1000 — sIoU(A,B) = 1, sIoU(A,C) = sIoU(B,C) = 1/2;
  equal weights -> C_0 = (1 + 1/2 + 1/2) / 3 = 2/3;
* class 1: one image -> singleton gold list, C_1 = 0 (flagged);
* class 2: F = G = 1010 -> C_2 = 1 when in the gold list (τ ≤ 0.4), else empty;
* class 3: D = 0011, E = 0010 -> C_3 = 1/2.

Gold weighting (n_k = |G_k|). τ = 0.5: n = (3, 1, 0, 2), C = (3·2/3 + 2·1/2) / 6 = 1/2;
without the flagged classes C* = 3 / 5. τ = 0.3: n = (3, 1, 2, 2), C = (2 + 2 + 1) / 8 =
5/8, C* = 5/7. τ = 0.9: every gold list empty, C = 0, C* undefined (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainxai.report.tables import tau_sweep_table
from brainxai.xai.cscore import cscore
from brainxai.xai.trajectory import GLOBAL, TrackingConfig, checkpoint_rows, sensitivity

K = 4
MAPS = {
    0: ["1100", "1100", "1000"],
    1: ["0100"],
    2: ["1010", "1010"],
    3: ["0011", "0010"],
}


def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    maps, labels, probs = [], [], []
    for k, codes in MAPS.items():
        for code in codes:
            maps.append([[float(c) for c in code]])
            labels.append(k)
            p = np.full(K, 0.2 / (K - 1))
            p[k] = 0.8
            if k == 2:
                p = np.array([0.2, 0.2, 0.4, 0.2])
            probs.append(p)
    return np.array(maps, np.float32), np.array(labels), np.array(probs)


def test_global_score_with_and_without_empty_and_singleton_classes():
    maps, labels, probs = case()
    res = cscore(maps, labels, probs, tau=0.5, gamma=2.0)
    assert res.per_class[0] == pytest.approx(2 / 3)
    assert res.per_class[3] == pytest.approx(0.5)
    assert res.gold_size == {0: 3, 1: 1, 2: 0, 3: 2}
    assert res.empty == frozenset({1, 2})
    assert res.global_score == pytest.approx(0.5)  # paper 004, the default
    assert res.global_nonempty == pytest.approx(3 / 5)
    assert (res.n_empty, res.n_singleton) == (1, 1)
    # exclude_empty (the existing switch) gives the same number as global_nonempty
    assert cscore(maps, labels, probs, tau=0.5, exclude_empty=True).global_score == (
        pytest.approx(3 / 5)
    )


def test_trajectory_rows_carry_both_global_scores_and_the_counts():
    maps, labels, probs = case()
    rows = pd.DataFrame(checkpoint_rows(maps, labels, probs, config=TrackingConfig(tau=0.5)))
    glob = rows[rows["klass"] == GLOBAL].iloc[0]
    assert glob["cscore"] == pytest.approx(0.5)
    assert glob["cscore_nonempty"] == pytest.approx(0.6)
    assert (glob["n_empty_classes"], glob["n_singleton_classes"]) == (1, 1)
    cls = rows[rows["klass"] != GLOBAL].set_index("klass")
    assert cls.loc[[1, 2], "cscore_nonempty"].isna().all()  # flagged: no score of their own
    assert cls.loc[0, "cscore_nonempty"] == pytest.approx(2 / 3)
    assert cls["n_empty_classes"].sum() == 1 and cls["n_singleton_classes"].sum() == 1


def test_tau_sweep_by_hand():
    maps, labels, probs = case()
    cfg = TrackingConfig(tau=0.5, taus=(0.3, 0.5, 0.9))
    s = sensitivity(maps, labels, probs, cfg)
    glob = s[(s["sweep"] == "tau") & (s["klass"] == GLOBAL)].set_index("tau")
    assert glob["cscore"].tolist() == pytest.approx([5 / 8, 1 / 2, 0.0])
    assert glob.loc[0.3, "cscore_nonempty"] == pytest.approx(5 / 7)
    assert glob.loc[0.5, "cscore_nonempty"] == pytest.approx(3 / 5)
    assert np.isnan(glob.loc[0.9, "cscore_nonempty"])
    assert glob["n_empty_classes"].tolist() == [0, 1, 4]
    assert glob["n_singleton_classes"].tolist() == [1, 1, 0]
    table = tau_sweep_table(s.assign(family="finetune", model="m", method="gradcam"), 0.5)
    assert list(table.columns) == ["family", "method", "τ = 0.3", "τ = 0.5 (default)", "τ = 0.9"]
    row = table.iloc[0]
    assert row["τ = 0.3"] == "0.625 | 0.714 | 1/4"  # class 1 singleton
    assert row["τ = 0.5 (default)"] == "0.500 | 0.600 | 2/4"  # + class 2 empty
    assert row["τ = 0.9"] == "0.000 | — | 4/4"
