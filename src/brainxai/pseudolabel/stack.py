"""2D boxes -> coarse 3D prior (paper 003, Tumor-Localizer, Sec. 3.2).

``B(i, j, k)`` = 1 inside a box of axial slice ``k`` (per sequence; sequences combined by
max = union, or mean = votes); the prior is ``P = dilate_r(G_sigma * B)`` (Gaussian
smoothing, then grey dilation with a ball of radius ``r``), clipped to [0, 1]. The
coarse mask is ``P >= level``; voxels with ``P > tau`` are the refinement's positives.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from brainxai.pseudolabel.config import PriorConfig
from brainxai.pseudolabel.proposers.base import SliceAnswer


def box_stack(
    answers: Iterable[SliceAnswer], shape: tuple[int, int, int], combine: str = "max"
) -> np.ndarray:
    """``B``: the slices' boxes rasterised per sequence, combined (``max`` | ``mean``)."""
    per_seq: dict[str, np.ndarray] = {}
    for ans in answers:
        vol = per_seq.setdefault(ans.sequence, np.zeros(shape, dtype=np.float32))
        for b in ans.boxes:
            vol[b.i0 : b.i1, b.j0 : b.j1, b.k] = 1.0
    if not per_seq:
        return np.zeros(shape, dtype=np.float32)
    stacked = np.stack(list(per_seq.values()))
    return stacked.max(axis=0) if combine == "max" else stacked.mean(axis=0)


def ball(radius_vox: tuple[float, ...]) -> np.ndarray:
    """Ellipsoidal footprint with the given per-axis radii (voxels)."""
    r = [int(np.floor(x)) for x in radius_vox]
    grids = np.ogrid[tuple(slice(-n, n + 1) for n in r)]
    dist = sum((g / max(rad, 1e-9)) ** 2 for g, rad in zip(grids, radius_vox, strict=True))
    return np.asarray(dist <= 1.0 + 1e-9)


def smooth_dilate(
    stack: np.ndarray, spacing: tuple[float, ...], sigma_mm: float, dilate_mm: float
) -> np.ndarray:
    """``dilate_r(G_sigma * B)`` clipped to [0, 1]; sigma and radius in mm."""
    prior = stack.astype(np.float32)
    if sigma_mm > 0:
        prior = ndimage.gaussian_filter(prior, [sigma_mm / s for s in spacing], mode="constant")
    radius = tuple(dilate_mm / s for s in spacing)
    if dilate_mm > 0 and max(radius) >= 1.0:
        prior = ndimage.grey_dilation(prior, footprint=ball(radius), mode="constant")
    return np.clip(prior, 0.0, 1.0)


def coarse_prior(
    answers: Iterable[SliceAnswer],
    shape: tuple[int, int, int],
    spacing: tuple[float, ...],
    cfg: PriorConfig,
    combine: str = "max",
) -> tuple[np.ndarray, np.ndarray]:
    """``(B, P)``: the box stack and the smoothed, dilated prior."""
    stack = box_stack(answers, shape, combine)
    return stack, smooth_dilate(stack, spacing, cfg.sigma_mm, cfg.dilate_mm)
