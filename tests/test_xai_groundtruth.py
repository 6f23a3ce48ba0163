"""Ground-truth localisation metrics, baselines and the randomisation check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from brainxai.xai.baselines import (
    centre_gaussian_baseline,
    edge_baseline,
    laplace_baseline,
    random_baseline,
)
from brainxai.xai.groundtruth import (
    auprc,
    count_empty,
    localisation_scores,
    outside_false_positive_rate,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from brainxai.xai.randomisation import flag, randomisation_similarity


def _masks(spatial: tuple[int, ...]) -> np.ndarray:
    g = np.zeros((3, *spatial), bool)
    g[0][tuple(slice(2, 5) for _ in spatial)] = True
    g[1][tuple(slice(0, 3) for _ in spatial)] = True
    g[2][tuple(slice(s // 2, s // 2 + 2) for s in spatial)] = True
    return g


@pytest.mark.parametrize("spatial", [(12, 10), (8, 9, 7)])
def test_map_equal_to_mask_is_perfect_and_inverted_is_zero(spatial: tuple[int, ...]) -> None:
    g = _masks(spatial)
    good = localisation_scores(g.astype(np.float32), g)
    for name in ("pointing", "mass_accuracy", "rank_accuracy", "auprc"):
        np.testing.assert_allclose(getattr(good, name), 1.0)
    np.testing.assert_allclose(good.outside_fpr, 0.0)
    inv = (~g).astype(np.float32)
    np.testing.assert_allclose(pointing_game(inv, g), 0.0)
    np.testing.assert_allclose(relevance_mass_accuracy(inv, g), 0.0)
    np.testing.assert_allclose(relevance_rank_accuracy(inv, g), 0.0)
    np.testing.assert_allclose(outside_false_positive_rate(inv, g), 1.0)
    # AP of an inverted mask = chance level at the single threshold: |GT| / P
    frac = g.reshape(3, -1).mean(1)
    np.testing.assert_allclose(auprc(inv, g), frac)


def test_empty_masks_give_nan_and_are_counted() -> None:
    g = _masks((10, 10))
    g[1] = False
    maps = random_baseline(g.shape, seed=1)
    s = localisation_scores(maps, g)
    assert s.n_empty == 1 == count_empty(g)
    for name in ("pointing", "mass_accuracy", "rank_accuracy", "auprc", "outside_fpr"):
        vals = getattr(s, name)
        assert np.isnan(vals[1]) and not np.isnan(vals[[0, 2]]).any()
    assert s.summary()["n_valid"] == 2.0


def test_pointing_tolerance() -> None:
    g = np.zeros((1, 20, 20), bool)
    g[0, 5:8, 5:8] = True
    m = np.zeros((1, 20, 20))
    m[0, 6, 10] = 1.0  # peak 3 px right of the mask edge (column 7)
    assert pointing_game(m, g)[0] == 0.0
    assert pointing_game(m, g, tolerance=2)[0] == 0.0
    assert pointing_game(m, g, tolerance=3)[0] == 1.0
    m3 = np.zeros((2, 9, 9, 9))
    g3 = np.zeros((2, 9, 9, 9), bool)
    g3[:, 4, 4, 4] = True
    m3[0, 4, 4, 6] = 1.0  # 2 voxels away
    m3[1, 4, 6, 6] = 1.0  # sqrt(8) ≈ 2.83 away
    np.testing.assert_array_equal(pointing_game(m3, g3, tolerance=2), [1.0, 0.0])


def test_mass_and_rank_accuracy_by_hand() -> None:
    g = np.zeros((1, 2, 3), bool)
    g[0, 0, :2] = True  # |GT| = 2
    m = np.array([[[3.0, -1.0, 1.0], [2.0, 0.0, 0.0]]])
    # R⁺ = 3, 0, 1, 2, 0, 0 ; inside = 3 + 0 -> 3 / 6
    assert relevance_mass_accuracy(m, g)[0] == pytest.approx(0.5)
    # top-2 = {3 (in), 2 (out)} -> 1/2
    assert relevance_rank_accuracy(m, g)[0] == pytest.approx(0.5)
    # constant map: ties split in expectation -> chance level |GT| / P = 2/6
    assert relevance_rank_accuracy(np.ones((1, 2, 3)), g)[0] == pytest.approx(1 / 3)


def test_auprc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    g = rng.random((6, 9, 11)) < 0.2
    maps = np.round(rng.random((6, 9, 11)) + 0.4 * g, 1)  # quantised -> many ties
    got = auprc(maps, g)
    want = [average_precision_score(g[i].ravel(), maps[i].ravel()) for i in range(6)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_baselines() -> None:
    shape = (2, 9, 11)
    r = random_baseline(shape, seed=3)
    assert r.shape == shape and r.min() >= 0 and r.max() < 1
    c = centre_gaussian_baseline((2, 9, 11, 7))
    assert c.shape == (2, 9, 11, 7) and c[1, 4, 5, 3] == pytest.approx(1.0)
    assert c[0].argmax() == np.ravel_multi_index((4, 5, 3), (9, 11, 7))
    img = np.zeros((2, 8, 8, 8))
    img[0, :, :, 4:] = 1.0  # a step edge in sample 0 only
    e = edge_baseline(img)
    assert e[1].max() == 0.0  # filters never mix samples
    assert e[0, 4, 4, 3] > 0 and e[0, 4, 4, 0] == 0.0
    lap = laplace_baseline(img)
    assert lap[1].max() == 0.0 and lap[0, 4, 4, 4] > 0
    assert edge_baseline(np.ones((1, 5, 5))).max() == 0.0


def test_randomisation_similarity_and_flag() -> None:
    rng = np.random.default_rng(0)
    trained = rng.random((5, 12, 13))
    same = randomisation_similarity(trained, 2.0 * trained + 1.0)
    np.testing.assert_allclose(same.spearman, 1.0)
    np.testing.assert_allclose(same.soft_iou, 1.0)
    assert flag(same)
    other = rng.random((5, 12, 13))
    diff = randomisation_similarity(trained, other)
    want = [spearmanr(trained[i].ravel(), other[i].ravel())[0] for i in range(5)]
    np.testing.assert_allclose(diff.spearman, want, atol=1e-12)
    assert not flag(diff) and not flag(diff, on="soft_iou", threshold=0.9)
    assert flag(np.array([0.9, 0.8, np.nan]), threshold=0.5)
    const = randomisation_similarity(np.ones((1, 3, 3)), trained[:1, :3, :3])
    assert np.isnan(const.spearman[0]) and not flag(const)
