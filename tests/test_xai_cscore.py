"""C-Score (paper 004, Eqs. 1–6) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainxai.xai.cscore import cscore, gold_mask
from brainxai.xai.minmax import minmax_normalise

# Three 2×2 class-0 maps, already min-max normalised (min 0, max 1).
H1 = [[1.0, 0.0], [0.0, 0.0]]
H2 = [[1.0, 0.5], [0.0, 0.0]]
H3 = [[0.0, 1.0], [0.0, 0.5]]
# γ = 2: Ĥ1 = H1, Ĥ2 = [[1, .25], [0, 0]], Ĥ3 = [[0, 1], [0, .25]]
#   sIoU(1,2) = (1 + 0) / (1 + .25)           = 0.8
#   sIoU(1,3) = 0 / (1 + 1 + .25)              = 0
#   sIoU(2,3) = (0 + .25 + 0 + 0) / (1+1+0+.25) = 1/9
# probs p = .9, .6, .8; w ∝ p so C_0 = Σ p_i p_j s_ij / Σ p_i p_j:
#   pair weights .54 (1,2), .72 (1,3), .48 (2,3)
C0 = (0.54 * 0.8 + 0.72 * 0.0 + 0.48 / 9) / (0.54 + 0.72 + 0.48)
# γ = 1: sIoU(1,2) = 1/1.5 = 2/3, sIoU(1,3) = 0, sIoU(2,3) = .5/2.5 = .2
C0_GAMMA1 = (0.54 * 2 / 3 + 0.48 * 0.2) / 1.74


def _example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    maps = np.stack([H1, H2, H3, H1, rng.random((2, 2)), rng.random((2, 2)), H2]).astype(np.float32)
    labels = np.array([0, 0, 0, 0, 0, 1, 1])
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # i0 gold 0
            [0.6, 0.3, 0.1],  # i1 gold 0
            [0.8, 0.1, 0.1],  # i2 gold 0
            [0.45, 0.3, 0.25],  # i3 correct argmax but p < τ
            [0.2, 0.7, 0.1],  # i4 misclassified
            [0.1, 0.8, 0.1],  # i5 gold 1 (alone -> class 1 flagged empty)
            [0.6, 0.3, 0.1],  # i6 misclassified
        ]
    )  # class 2: no samples at all
    return maps, labels, probs


def test_hand_example_gold_weighting() -> None:
    maps, labels, probs = _example()
    r = cscore(maps, labels, probs, tau=0.5, gamma=2.0)
    assert r.gold_size == {0: 3, 1: 1, 2: 0}
    assert r.support == {0: 5, 1: 2, 2: 0}
    assert r.per_class[0] == pytest.approx(C0, abs=1e-6)
    assert r.per_class[1] == 0.0 and r.per_class[2] == 0.0
    assert r.empty == {1, 2}
    # n_k = |G_k| = 3, 1, 0 -> C = 3 C_0 / 4
    assert r.global_score == pytest.approx(3 * C0 / 4, abs=1e-6)


def test_support_weighting_differs_by_hand() -> None:
    maps, labels, probs = _example()
    r = cscore(maps, labels, probs, weighting="support")
    # n_k = support = 5, 2, 0 -> C = 5 C_0 / 7
    assert r.global_score == pytest.approx(5 * C0 / 7, abs=1e-6)
    assert r.global_score != pytest.approx(cscore(maps, labels, probs).global_score)
    ex = cscore(maps, labels, probs, weighting="support", exclude_empty=True)
    assert ex.global_score == pytest.approx(C0, abs=1e-6)


def test_gamma_one_by_hand() -> None:
    maps, labels, probs = _example()
    assert cscore(maps, labels, probs, gamma=1.0).per_class[0] == pytest.approx(C0_GAMMA1, abs=1e-6)


def test_gold_list_anchored_to_reference() -> None:
    maps, labels, probs = _example()
    ref = probs.copy()
    ref[0] = [0.3, 0.6, 0.1]  # i0 leaves the gold list at the reference checkpoint
    ref[3] = [0.9, 0.05, 0.05]  # i3 (map H1) joins it
    # G_0 = {i1, i2, i3}; weights from the *current* probs .6, .8, .45:
    #   (1,2): .48 * 1/9 ; (1,3): .27 * sIoU(Ĥ2, Ĥ1) = .27 * .8 ; (2,3): .36 * 0
    expected = (0.48 / 9 + 0.27 * 0.8) / (0.48 + 0.27 + 0.36)
    r = cscore(maps, labels, probs, reference_probs=ref)
    assert r.gold_size[0] == 3
    assert r.per_class[0] == pytest.approx(expected, abs=1e-6)
    r2 = cscore(maps, labels, probs, gold=gold_mask(labels, ref, 0.5))
    assert r2 == r


def test_all_identical_class_scores_one() -> None:
    rng = np.random.default_rng(1)
    one = rng.random((9, 11))
    maps = np.stack([one] * 5 + [rng.random((9, 11)) for _ in range(3)])
    labels = np.array([0] * 5 + [1] * 3)
    probs = np.tile([[0.9, 0.1]], (8, 1))
    probs[5:] = [0.2, 0.8]
    probs[2] = [0.55, 0.45]  # unequal weights change nothing
    r = cscore(maps, labels, probs)
    assert r.per_class[0] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < r.per_class[1] < 1.0
    assert r.empty == frozenset()


def test_permutation_invariance_and_torch_inputs() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((20, 6, 5, 4)).astype(np.float32)  # 3-D maps
    labels = rng.integers(0, 3, 20)
    probs = rng.dirichlet(np.ones(3), 20)
    probs[np.arange(20), labels] += 1.0
    probs /= probs.sum(1, keepdims=True)
    r = cscore(maps, labels, probs, tau=0.4)
    perm = rng.permutation(20)
    rp = cscore(maps[perm], labels[perm], probs[perm], tau=0.4)
    for k in range(3):
        assert rp.per_class[k] == pytest.approx(r.per_class[k], abs=1e-9)
    rt = cscore(torch.from_numpy(maps), torch.from_numpy(labels), torch.from_numpy(probs), tau=0.4)
    assert rt == r


def test_constant_maps_normalise_to_zero_and_score_zero() -> None:
    maps = np.stack([np.full((3, 3), 7.0), np.full((3, 3), 2.0)])
    np.testing.assert_array_equal(minmax_normalise(maps), 0.0)
    r = cscore(maps, np.array([0, 0]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    assert r.per_class[0] == 0.0 and 0 not in r.empty  # both-all-zero pair -> sIoU 0


def test_minmax_normalise_numpy_and_torch() -> None:
    x = np.array([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]])
    want = np.array([[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(minmax_normalise(x), want)
    np.testing.assert_allclose(minmax_normalise(torch.from_numpy(x)).numpy(), want)


def test_validation() -> None:
    maps, labels, probs = _example()
    with pytest.raises(ValueError, match="weighting"):
        cscore(maps, labels, probs, weighting="mean")
    with pytest.raises(ValueError, match="labels"):
        cscore(maps, labels + 5, probs)
    with pytest.raises(ValueError, match="not both"):
        cscore(maps, labels, probs, reference_probs=probs, gold=np.ones(7, bool))
