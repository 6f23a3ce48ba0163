"""Model-parameter randomisation sanity check (Adebayo et al. 2018, cited in paper 004 §1.2).

Compare each explanation of the trained model with the same method's explanation
after the weights were randomised: a method whose maps barely change is not
explaining what the model learned. Needs only the two batches of maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from brainxai.xai._arrays import flatten_maps
from brainxai.xai.minmax import minmax_normalise
from brainxai.xai.softiou import paired_soft_iou


@dataclass(frozen=True)
class RandomisationSimilarity:
    """Per-sample similarity of trained-model vs randomised-model maps."""

    spearman: np.ndarray  # rank correlation, NaN when a map is constant
    soft_iou: np.ndarray  # soft-IoU of the min-max normalised maps (SSIM-free)


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of ``a[i]`` with ``b[i]`` (average ranks for ties)."""
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    out = np.full(len(a), np.nan)
    np.divide((ra * rb).sum(axis=1), den, out=out, where=den > 0)
    return out


def randomisation_similarity(
    maps_trained: Any, maps_random: Any, absolute: bool = False
) -> RandomisationSimilarity:
    """Spearman rank correlation and soft-IoU between trained and randomised maps.

    ``absolute`` ranks |attribution| (Adebayo et al.'s absolute-value variant).
    """
    a = flatten_maps(maps_trained, np.float64)
    b = flatten_maps(maps_random, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if absolute:
        a, b = np.abs(a), np.abs(b)
    return RandomisationSimilarity(
        spearman=rowwise_spearman(a, b),
        soft_iou=paired_soft_iou(minmax_normalise(a), minmax_normalise(b)),
    )


def flag(
    similarity: RandomisationSimilarity | Any, threshold: float = 0.5, on: str = "spearman"
) -> bool:
    """True (method fails the check) when the median similarity exceeds ``threshold``.

    ``similarity`` is a :class:`RandomisationSimilarity` (``on`` picks the field) or a
    plain array of per-sample similarities. NaNs are ignored; all-NaN -> False.
    """
    vals = (
        getattr(similarity, on) if isinstance(similarity, RandomisationSimilarity) else similarity
    )
    vals = np.asarray(vals, dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    return bool(len(vals) and np.median(vals) > threshold)
