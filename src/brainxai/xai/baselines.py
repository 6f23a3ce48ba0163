"""Baseline "explanations" to compare XAI maps against (paper 002 style: random,
Sobel edge magnitude, Laplace, plus a centre Gaussian prior). Batched over (N, ...)
with 2-D or 3-D spatial axes; filters never mix samples (axis 0 is left alone)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from brainxai.xai._arrays import to_numpy


def _images(images: Any) -> np.ndarray:
    x = to_numpy(images, dtype=np.float64)
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, D, H, W), got {x.shape}")
    return x


def random_baseline(shape: Sequence[int], seed: int | None = 0) -> np.ndarray:
    """Uniform [0, 1) maps of ``shape`` = (N, H, W) or (N, D, H, W), float32."""
    return np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)


def edge_baseline(images: Any) -> np.ndarray:
    """Sobel gradient magnitude over the spatial axes (derivative ⊗ [1, 2, 1] smoothing)."""
    x = _images(images)
    axes = range(1, x.ndim)
    sq = np.zeros_like(x)
    for a in axes:
        g = ndimage.correlate1d(x, [-1.0, 0.0, 1.0], axis=a, mode="nearest")
        for b in axes:
            if b != a:
                g = ndimage.correlate1d(g, [1.0, 2.0, 1.0], axis=b, mode="nearest")
        sq += g * g
    return np.sqrt(sq)


def laplace_baseline(images: Any) -> np.ndarray:
    """Absolute discrete Laplacian over the spatial axes."""
    x = _images(images)
    lap = np.zeros_like(x)
    for a in range(1, x.ndim):
        lap += ndimage.correlate1d(x, [1.0, -2.0, 1.0], axis=a, mode="nearest")
    return np.abs(lap)


def centre_gaussian_baseline(shape: Sequence[int], sigma: float = 0.25) -> np.ndarray:
    """Isotropic Gaussian centred in the volume, σ as a fraction of each axis length.

    ``shape`` = (N, H, W) or (N, D, H, W); peak 1 at the centre; float32.
    """
    n, *spatial = shape
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in spatial], indexing="ij")
    r2 = sum(((g - (s - 1) / 2) / (sigma * s)) ** 2 for g, s in zip(grids, spatial, strict=True))
    prior = np.exp(-0.5 * r2).astype(np.float32)
    return np.broadcast_to(prior, (n, *spatial)).copy()
