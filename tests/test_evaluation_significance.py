"""Paired tests detect a planted difference and not a null one; Holm vs a hand example."""

import numpy as np
import pytest
from scipy.stats import binomtest

from brainxai.evaluation.significance import (
    bootstrap_p,
    holm,
    mcnemar,
    paired_bootstrap,
    wilcoxon_seeds,
)


def paired_sample(rng, acc_a, acc_b, n_patients=40, per_patient=5, k=3):
    patients = np.repeat(np.arange(n_patients), per_patient)
    y = rng.integers(0, k, patients.size)

    def probs(acc):
        correct = rng.random(y.size) < acc
        pred = np.where(correct, y, (y + rng.integers(1, k, y.size)) % k)
        p = rng.dirichlet(np.ones(k), y.size) * 0.4
        p[np.arange(y.size), pred] += 0.6
        return p / p.sum(axis=1, keepdims=True)

    return y, probs(acc_a), probs(acc_b), patients


def test_planted_difference_is_detected():
    y, pa, pb, patients = paired_sample(np.random.default_rng(0), 0.85, 0.55)
    res = paired_bootstrap(y, pa, pb, patients, "accuracy", n_boot=1000, seed=0)
    acc = (pa.argmax(1) == y).mean() - (pb.argmax(1) == y).mean()
    assert res["diff"] == pytest.approx(acc)
    assert res["low"] > 0 and res["p"] < 0.01
    mc = mcnemar(y, pa.argmax(1), pb.argmax(1))
    assert mc["p"] < 0.01 and mc["b"] > mc["c"]
    # a planted macro-F1 difference too, in the other direction
    res_f1 = paired_bootstrap(y, pb, pa, patients, "macro_f1", n_boot=1000, seed=0)
    assert res_f1["high"] < 0 and res_f1["p"] < 0.01


def test_null_difference_is_not_detected():
    y, pa, pb, patients = paired_sample(np.random.default_rng(1), 0.7, 0.7)
    assert paired_bootstrap(y, pa, pb, patients, "accuracy", n_boot=1000, seed=0)["p"] > 0.05
    assert mcnemar(y, pa.argmax(1), pb.argmax(1))["p"] > 0.05
    # identical predictions: difference exactly 0, p = 1
    same = paired_bootstrap(y, pa, pa, patients, "macro_f1", n_boot=200, seed=0)
    assert same["diff"] == 0.0 and same["p"] == 1.0


def test_null_rejection_rates_are_near_alpha():
    rng = np.random.default_rng(12)
    boot, mc = [], []
    for r in range(60):
        y, pa, pb, patients = paired_sample(rng, 0.6, 0.6, n_patients=25, per_patient=4)
        boot.append(paired_bootstrap(y, pa, pb, patients, "accuracy", n_boot=300, seed=r)["p"])
        mc.append(mcnemar(y, pa.argmax(1), pb.argmax(1))["p"])
    assert np.mean(np.array(boot) < 0.05) <= 0.12
    assert np.mean(np.array(mc) < 0.05) <= 0.12


def test_paired_bootstrap_accepts_seeds():
    y, pa, pb, patients = paired_sample(np.random.default_rng(2), 0.8, 0.6)
    _, pa2, _, _ = paired_sample(np.random.default_rng(3), 0.8, 0.6)
    res = paired_bootstrap(y, np.stack([pa, pa2]), pb[None], patients, "accuracy", 500, 0)
    acc = lambda p: (p.argmax(1) == y).mean()  # noqa: E731
    assert res["diff"] == pytest.approx((acc(pa) + acc(pa2)) / 2 - acc(pb))


def test_bootstrap_p_from_tails():
    # 9 of 99 differences ≤ 0: p = 2 · (1 + 9) / 100
    d = np.r_[np.full(9, -0.1), np.full(90, 0.2)]
    assert bootstrap_p(d) == pytest.approx(0.2)
    assert bootstrap_p(np.full(999, 0.3)) == pytest.approx(2 / 1000)


def test_mcnemar_exact_and_chi2_by_hand():
    y = np.zeros(40, dtype=int)
    # 10 pairs only a correct, 2 only b correct, 20 both correct, 8 both wrong
    a = np.r_[np.zeros(10), np.ones(2), np.zeros(20), np.ones(8)]
    b = np.r_[np.ones(10), np.zeros(2), np.zeros(20), np.ones(8)]
    res = mcnemar(y, a, b)
    assert (res["b"], res["c"]) == (10, 2)
    assert res["p"] == pytest.approx(binomtest(2, 12, 0.5).pvalue)  # exact: b + c < 25
    # b + c = 30: χ² with continuity correction, (|b − c| − 1)² / (b + c)
    y2 = np.zeros(30, dtype=int)
    a2 = np.r_[np.zeros(20), np.ones(10)]
    b2 = np.r_[np.ones(20), np.zeros(10)]
    res2 = mcnemar(y2, a2, b2)
    assert res2["statistic"] == pytest.approx((20 - 10 - 1) ** 2 / 30)
    assert mcnemar(y, a, a) == {"statistic": 0.0, "p": 1.0, "b": 0, "c": 0}


def test_wilcoxon_reports_small_n_limits():
    five = wilcoxon_seeds([0.6, 0.62, 0.64, 0.61, 0.63], [0.5, 0.51, 0.52, 0.53, 0.54])
    assert five["p"] == pytest.approx(0.0625) and five["min_p"] == pytest.approx(0.0625)
    assert not five["can_reject"] and five["method"] == "exact" and five["n"] == 5
    six = wilcoxon_seeds(np.arange(6) + 1.0, np.zeros(6))
    assert six["p"] == pytest.approx(0.03125) and six["can_reject"]
    # tied |Δ| (3 seeds, the same gain): exact sign-flip enumeration, not the normal
    # approximation (which would give 0.083 < min_p)
    tied = wilcoxon_seeds([0.2, 0.3, 0.4], [0.1, 0.2, 0.3])
    assert tied["method"] == "permutation" and tied["p"] == pytest.approx(0.25)
    tied7 = wilcoxon_seeds([0.04, 0.04, 0.04, 0.01, -0.02, 0.03, 0.05], np.zeros(7))
    # mid-ranks 1,2,3,5,5,5,7; W− = 2; sign sets with W− ≤ 2: {}, {1}, {2} → 2 · 3 / 2⁷
    assert tied7["p"] == pytest.approx(6 / 128)
    zeros = wilcoxon_seeds([0.5, 0.6], [0.5, 0.6])
    assert zeros["p"] == 1.0 and zeros["n_nonzero"] == 0
    with pytest.raises(ValueError):
        wilcoxon_seeds([1, 2], [1])


def test_holm_hand_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    out = holm([0.01, np.nan, 0.04])  # nan is not in the family
    np.testing.assert_allclose(out, [0.02, np.nan, 0.04])
