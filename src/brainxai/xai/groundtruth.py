"""Explanation correctness against ground-truth lesion masks (papers 001 and 002).

Every metric takes ``maps`` and binary ``masks`` of equal shape (N, H, W) or
(N, D, H, W), is vectorised over the batch and returns a float (N,) array. A sample
with an empty mask gets NaN (count them with :func:`count_empty`).

* pointing game — is the map's argmax inside the mask (dilated by ``tolerance``
  pixels, Euclidean ball)? Ties: the first maximum in C order.
* relevance mass accuracy — ``Σ_mask R⁺ / Σ R⁺`` with ``R⁺ = max(R, 0)``; 0 for a map
  without positive attribution.
* relevance rank accuracy (= top-|GT| precision) — share of the ``K = |GT|`` highest
  ranked pixels that lie in the mask; ties at the K-th value are split in
  expectation (a constant map scores the chance level ``K / P``).
* AUPRC — average precision of the map as a score for the mask pixels; equal to
  ``sklearn.metrics.average_precision_score`` (ties handled the same way).
* outside-mask false-positive rate — share of outside-mask pixels whose min-max
  normalised attribution exceeds ``threshold`` (NaN also when nothing is outside).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from brainxai.xai._arrays import check_maps_masks
from brainxai.xai.baselines import (
    centre_gaussian_baseline,
    edge_baseline,
    laplace_baseline,
    random_baseline,
)
from brainxai.xai.minmax import minmax_normalise

__all__ = [
    "LocalisationScores",
    "auprc",
    "centre_gaussian_baseline",
    "count_empty",
    "edge_baseline",
    "laplace_baseline",
    "localisation_scores",
    "outside_false_positive_rate",
    "pointing_game",
    "random_baseline",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_gt_precision",
]

#: Elements per processing chunk for the sort-based metrics (bounds peak memory).
_CHUNK_ELEMS = 1 << 23


def count_empty(masks: Any) -> int:
    """Number of samples whose mask has no foreground voxel."""
    g = np.asarray(masks).astype(bool)
    return int((~g.reshape(len(g), -1).any(axis=1)).sum())


def _flat(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, g = check_maps_masks(maps, masks)
    x = m.reshape(len(m), -1)
    gf = g.reshape(len(g), -1)
    return x, gf, gf.sum(axis=1)


def _chunks(n: int, p: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMS // max(p, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def pointing_game(maps: Any, masks: Any, tolerance: float = 0) -> np.ndarray:
    """1.0 where the map's maximum falls in the mask (grown by ``tolerance`` px), else 0."""
    m, g = check_maps_masks(maps, masks)
    if tolerance > 0:
        r = int(np.floor(tolerance))
        grid = np.indices((2 * r + 1,) * (g.ndim - 1)) - r
        ball = (grid**2).sum(axis=0) <= tolerance**2
        g = ndimage.binary_dilation(g, structure=ball[None])  # never mixes samples
    x = m.reshape(len(m), -1)
    gf = g.reshape(len(g), -1)
    hit = gf[np.arange(len(x)), x.argmax(axis=1)].astype(np.float64)
    hit[gf.sum(axis=1) == 0] = np.nan
    return hit


def relevance_mass_accuracy(maps: Any, masks: Any) -> np.ndarray:
    """Share of positive attribution inside the mask: ``Σ_mask R⁺ / Σ R⁺``."""
    x, g, k = _flat(maps, masks)
    pos = np.clip(x, 0.0, None)
    inside = (pos * g).sum(axis=1)
    total = pos.sum(axis=1)
    out = np.zeros(len(x))
    np.divide(inside, total, out=out, where=total > 0)
    out[k == 0] = np.nan
    return out


def relevance_rank_accuracy(maps: Any, masks: Any) -> np.ndarray:
    """Fraction of the top-|GT| ranked pixels inside the mask (tie-aware, expected)."""
    x, g, k = _flat(maps, masks)
    out = np.full(len(x), np.nan)
    for sl in _chunks(len(x), x.shape[1]):
        xs, gs, ks = x[sl], g[sl], k[sl]
        srt = -np.sort(-xs, axis=1)
        kth = srt[np.arange(len(xs)), np.maximum(ks, 1) - 1][:, None]
        above = xs > kth
        tied = xs == kth
        n_above = above.sum(axis=1)
        in_above = (above & gs).sum(axis=1)
        n_tied = tied.sum(axis=1)
        in_tied = (tied & gs).sum(axis=1)
        expected = in_above + (ks - n_above) * in_tied / np.maximum(n_tied, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[sl] = np.where(ks > 0, expected / ks, np.nan)
    return out


#: Relevance rank accuracy is precision at the top-|GT| pixels.
top_gt_precision = relevance_rank_accuracy


def auprc(maps: Any, masks: Any) -> np.ndarray:
    """Average precision of the map against the mask (sklearn's definition, vectorised).

    ``AP = Σ_n (R_n − R_{n−1}) P_n`` over distinct score thresholds, highest first.
    """
    x, g, k = _flat(maps, masks)
    out = np.full(len(x), np.nan)
    p = x.shape[1]
    pos = np.arange(p)
    for sl in _chunks(len(x), p):
        xs, gs = x[sl], g[sl]
        order = np.argsort(-xs, axis=1, kind="stable")
        v = np.take_along_axis(xs, order, axis=1)
        y = np.take_along_axis(gs, order, axis=1)
        precision = np.cumsum(y, axis=1) / (pos + 1.0)
        last = np.ones_like(y)
        last[:, :-1] = v[:, :-1] != v[:, 1:]  # last index of each run of equal scores
        end = np.where(last, pos, p)
        end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]  # run end of every index
        prec_at_end = np.take_along_axis(precision, end, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[sl] = (y * prec_at_end).sum(axis=1) / k[sl]
    out[k == 0] = np.nan
    return out


def outside_false_positive_rate(maps: Any, masks: Any, threshold: float = 0.5) -> np.ndarray:
    """Share of outside-mask pixels with min-max normalised attribution > ``threshold``."""
    m, g = check_maps_masks(maps, masks)
    x = minmax_normalise(m).reshape(len(m), -1)
    outside = ~g.reshape(len(g), -1)
    n_out = outside.sum(axis=1)
    fp = ((x > threshold) & outside).sum(axis=1)
    out = np.full(len(x), np.nan)
    np.divide(fp, n_out, out=out, where=n_out > 0)
    out[n_out == x.shape[1]] = np.nan  # empty mask
    return out


@dataclass(frozen=True)
class LocalisationScores:
    """All ground-truth metrics for one batch, per sample (NaN for empty masks)."""

    pointing: np.ndarray
    mass_accuracy: np.ndarray
    rank_accuracy: np.ndarray
    auprc: np.ndarray
    outside_fpr: np.ndarray
    n_empty: int

    def summary(self) -> dict[str, float]:
        """NaN-aware mean of every metric plus the number of valid and empty samples."""
        out: dict[str, float] = {}
        for name in ("pointing", "mass_accuracy", "rank_accuracy", "auprc", "outside_fpr"):
            vals = getattr(self, name)
            valid = vals[~np.isnan(vals)]
            out[name] = float(valid.mean()) if len(valid) else float("nan")
        out["n_valid"] = float(len(self.pointing) - self.n_empty)
        out["n_empty"] = float(self.n_empty)
        return out


def localisation_scores(
    maps: Any, masks: Any, tolerance: float = 0, fp_threshold: float = 0.5
) -> LocalisationScores:
    """Compute every ground-truth metric of this module for a batch."""
    return LocalisationScores(
        pointing=pointing_game(maps, masks, tolerance),
        mass_accuracy=relevance_mass_accuracy(maps, masks),
        rank_accuracy=relevance_rank_accuracy(maps, masks),
        auprc=auprc(maps, masks),
        outside_fpr=outside_false_positive_rate(maps, masks, fp_threshold),
        n_empty=count_empty(masks),
    )
