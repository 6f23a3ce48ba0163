"""Intensity normalisation inside the brain mask (z-score or percentile clipping)."""

from __future__ import annotations

import numpy as np

from brainxai.standardize.config import NormalizeConfig


def normalize(x: np.ndarray, mask: np.ndarray, cfg: NormalizeConfig) -> np.ndarray:
    """z-score: ``(x - mu_brain) / sigma_brain``; percentile: clip to [p_lo, p_hi] -> [0, 1].

    Voxels outside the mask are set to 0 (the background of a skull-stripped image).
    """
    inside = mask > 0
    vals = x[inside]
    if vals.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    if cfg.method == "zscore":
        sd = float(vals.std())
        out = (x - float(vals.mean())) / (sd if sd > 0 else 1.0)
    else:
        lo, hi = np.percentile(vals, [cfg.percentile_low, cfg.percentile_high])
        out = (np.clip(x, lo, hi) - lo) / (hi - lo if hi > lo else 1.0)
    return np.where(inside, out, 0.0).astype(np.float32)
