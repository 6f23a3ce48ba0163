"""Soft-IoU kernels (paper 004, Eq. 2): hand values and agreement of every path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainxai.xai.softiou import (
    cross_soft_iou,
    minsum_torch,
    paired_soft_iou,
    pairwise_soft_iou,
    soft_iou,
    soft_iou_loop,
)

TOL = 1e-6


def _maps(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random(shape, dtype=np.float32) ** 2
    x[1] = 0.0  # an all-zero map
    x[2] *= rng.random(shape[1:]) < 0.1  # a sparse one
    x[3] = x[4]  # a duplicate
    return x


def test_soft_iou_by_hand() -> None:
    a = np.array([[0.0, 1.0], [0.5, 0.5]])
    b = np.array([[1.0, 1.0], [0.0, 0.25]])
    # Σmin = 0 + 1 + 0 + 0.25 = 1.25 ; Σmax = 1 + 1 + 0.5 + 0.5 = 3
    assert soft_iou(a, b) == pytest.approx(1.25 / 3)
    m = pairwise_soft_iou(np.stack([a, b]).astype(np.float32))
    assert m[0, 1] == pytest.approx(1.25 / 3, abs=TOL)
    assert m[1, 0] == m[0, 1]
    np.testing.assert_allclose(np.diag(m), [1.0, 1.0])


def test_both_all_zero_is_zero() -> None:
    z = np.zeros((3, 4, 5), np.float32)
    assert soft_iou(z[0], z[1]) == 0.0
    for method in ("loop", "numba", "numba-simple", "torch"):
        np.testing.assert_array_equal(pairwise_soft_iou(z, method=method), 0.0)


@pytest.mark.parametrize("shape", [(14, 17, 19), (11, 7, 9, 5)])
@pytest.mark.parametrize(
    ("method", "block"),
    [
        ("numba", None),
        ("numba", (4, 4, 37)),  # tiles and chunks that do not divide N or P
        ("numba", (5, 5, 1)),
        ("numba-simple", None),
        ("torch", None),
        ("torch", (3, 50)),
    ],
)
def test_paths_match_loop(shape: tuple[int, ...], method: str, block: tuple | None) -> None:
    x = _maps(shape)
    ref = soft_iou_loop(x.astype(np.float64))
    got = pairwise_soft_iou(x, method=method, block=block)
    assert got.shape == (shape[0], shape[0])
    assert np.abs(got - ref).max() <= TOL
    np.testing.assert_array_equal(got, got.T)
    assert np.abs(soft_iou_loop(x) - ref).max() <= TOL  # the float32 loop too


def test_larger_maps_match_loop() -> None:
    x = _maps((7, 91, 93), seed=3)  # P = 8463: several default pixel chunks
    ref = soft_iou_loop(x.astype(np.float64))
    for method in ("numba", "torch"):
        assert np.abs(pairwise_soft_iou(x, method=method) - ref).max() <= TOL


def test_torch_float64_twin_and_device_dispatch() -> None:
    x = _maps((9, 6, 7))
    ref = soft_iou_loop(x.astype(np.float64))
    m = minsum_torch(x, dtype=torch.float64, block=(4, 11))
    s = x.reshape(9, -1).astype(np.float64).sum(1)
    union = s[:, None] + s[None, :] - m
    got = np.divide(m, union, out=np.zeros_like(m), where=union > 0)
    np.fill_diagonal(got, ref.diagonal())
    assert np.abs(got - ref).max() <= 1e-12
    t = torch.from_numpy(x)
    assert np.abs(pairwise_soft_iou(t) - ref).max() <= TOL  # torch CPU -> numba
    assert np.abs(pairwise_soft_iou(t, device="cpu", method="torch") - ref).max() <= TOL


def test_cross_variant() -> None:
    x = _maps((10, 13, 11))
    a, b = x[:4], x[4:]
    ref = soft_iou_loop(a.astype(np.float64), b.astype(np.float64))
    for method, block in [("numba", (3, 2, 29)), ("torch", (2, 40)), ("loop", None)]:
        got = cross_soft_iou(a, b, method=method, block=block)
        assert got.shape == (4, 6)
        assert np.abs(got - ref).max() <= TOL
    np.testing.assert_allclose(paired_soft_iou(a, b[:4]), np.diag(ref[:, :4]), atol=1e-12)


def test_permutation_invariance() -> None:
    x = _maps((12, 8, 9))
    perm = np.random.default_rng(1).permutation(12)
    m = pairwise_soft_iou(x)
    mp = pairwise_soft_iou(x[perm])
    assert np.abs(mp - m[np.ix_(perm, perm)]).max() <= TOL


def test_numpy_and_torch_inputs_equal() -> None:
    x = _maps((8, 3, 4, 5))
    np.testing.assert_array_equal(pairwise_soft_iou(x), pairwise_soft_iou(torch.from_numpy(x)))


def test_bad_method() -> None:
    with pytest.raises(ValueError, match="method"):
        pairwise_soft_iou(np.zeros((2, 2, 2)), method="cuda-magic")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_path_matches_loop() -> None:  # pragma: no cover - needs a GPU
    x = _maps((21, 33, 35))
    ref = soft_iou_loop(x.astype(np.float64))
    t = torch.from_numpy(x).cuda()
    assert np.abs(pairwise_soft_iou(t) - ref).max() <= TOL  # auto -> blocked cdist on GPU
    assert np.abs(cross_soft_iou(t[:5], t[5:]) - ref[:5, 5:]).max() <= TOL
