"""Patient-level bootstrap: coverage on a known distribution, resampling by patient."""

import numpy as np
import pytest

from brainxai.evaluation.bootstrap import (
    CI,
    patient_bootstrap,
    patient_bootstrap_seeds,
    patient_codes,
    patient_draws,
    replicate_values,
)
from brainxai.evaluation.metrics import SCALAR_METRICS, classification_metrics


def outcome_probs(correct: np.ndarray, y: np.ndarray, k: int = 2) -> np.ndarray:
    """Probabilities whose argmax is y where ``correct`` and another class elsewhere."""
    pred = np.where(correct, y, (y + 1) % k)
    probs = np.full((y.size, k), 0.2 / (k - 1))
    probs[np.arange(y.size), pred] = 0.8
    return probs


def clustered_accuracy_sample(rng, n_patients=30, per_patient=6, mean=0.7, concentration=2.0):
    """Patients with accuracy p_j ~ Beta (mean 0.7): images of a patient are correlated."""
    a, b = mean * concentration, (1 - mean) * concentration
    p = rng.beta(a, b, n_patients)
    patients = np.repeat(np.arange(n_patients), per_patient)
    correct = rng.random(patients.size) < p[patients]
    y = rng.integers(0, 2, patients.size)
    return y, outcome_probs(correct, y), patients


def coverage(patient_level: bool, reps: int = 200) -> float:
    rng = np.random.default_rng(2024)
    hits = 0
    for r in range(reps):
        y, probs, patients = clustered_accuracy_sample(rng)
        groups = patients if patient_level else np.arange(y.size)
        ci = patient_bootstrap(y, probs, groups, "accuracy", n_boot=400, seed=r)
        hits += ci.low <= 0.7 <= ci.high
    return hits / reps


def test_patient_bootstrap_covers_the_true_accuracy():
    cov = coverage(patient_level=True)
    assert 0.90 <= cov <= 0.99, cov


def test_image_level_resampling_undercovers_clustered_data():
    # the reason for resampling patients: images of one patient are not independent
    assert coverage(patient_level=False) < 0.85


def test_replicates_resample_whole_patients():
    rng = np.random.default_rng(3)
    n_pat = 15
    y1 = rng.integers(0, 2, n_pat)
    correct1 = rng.random(n_pat) < 0.6
    probs1 = outcome_probs(correct1, y1)
    one = patient_bootstrap(y1, probs1, np.arange(n_pat), "accuracy", n_boot=500, seed=11)
    # every patient now has 10 identical images: the CI must not shrink (same patient draws)
    rep = np.repeat(np.arange(n_pat), 10)
    ten = patient_bootstrap(y1[rep], probs1[rep], rep, "accuracy", n_boot=500, seed=11)
    assert (ten.point, ten.low, ten.high) == pytest.approx((one.point, one.low, one.high))
    # treated as independent images instead, the (wrong) interval is far narrower
    naive = patient_bootstrap(y1[rep], probs1[rep], np.arange(rep.size), "accuracy", 500, 11)
    assert naive.high - naive.low < 0.5 * (one.high - one.low)
    # a metric constant within each draw's patient set: one patient, all replicates equal
    solo = patient_bootstrap(y1[:1].repeat(5), probs1[:1].repeat(5, 0), ["p"] * 5, "accuracy")
    assert solo.low == solo.high == solo.point


def test_draws_count_patients():
    draws = patient_draws(7, 50, seed=0)
    assert draws.shape == (50, 7)
    assert (draws.sum(axis=1) == 7).all()
    assert np.array_equal(draws, patient_draws(7, 50, seed=0))
    assert list(patient_codes(["b", "a", "b", "c"])) == [1, 0, 1, 2]


def test_bad_patient_lists_raise():
    y, probs = np.array([0, 1]), np.eye(2)
    with pytest.raises(ValueError, match="entries"):
        patient_bootstrap(y, probs, ["a", "b", "c"], "accuracy", n_boot=10)
    with pytest.raises(ValueError, match="missing"):
        patient_bootstrap(y, probs, ["a", None], "accuracy", n_boot=10)


def test_vectorised_metrics_equal_recomputation_on_resampled_lists():
    rng = np.random.default_rng(5)
    n, k = 48, 4
    y = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    patients = rng.integers(0, 10, n)
    codes = patient_codes(patients)
    draws = patient_draws(int(codes.max()) + 1, 40, seed=9)
    for metric in SCALAR_METRICS:
        point, fast = replicate_values(y, probs, draws, codes, metric)

        def slow_metric(yy, pp, metric=metric):
            return classification_metrics(yy, pp, list("abcd"))[metric]

        point_slow, slow = replicate_values(y, probs, draws, codes, slow_metric)
        assert point == pytest.approx(point_slow), metric
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12, err_msg=metric)


def test_seed_variant_averages_seeds_per_replicate():
    rng = np.random.default_rng(8)
    n = 40
    y = rng.integers(0, 3, n)
    patients = np.repeat(np.arange(10), 4)
    runs = rng.dirichlet(np.ones(3), (3, n))
    ci = patient_bootstrap_seeds(y, runs, patients, "macro_f1", n_boot=300, seed=1)
    singles = [patient_bootstrap(y, r, patients, "macro_f1", n_boot=300, seed=1) for r in runs]
    assert isinstance(ci, CI) and ci.n_boot == 300 and ci.alpha == 0.05
    assert ci.point == pytest.approx(np.mean([s.point for s in singles]))
    # identical seeds: the pooled interval is the single-run interval
    same = patient_bootstrap_seeds(y, [runs[0], runs[0]], patients, "macro_f1", 300, 1)
    assert (same.low, same.high) == pytest.approx((singles[0].low, singles[0].high))
    # averaging over seeds narrows the interval compared with the widest single seed
    assert ci.high - ci.low <= max(s.high - s.low for s in singles)
