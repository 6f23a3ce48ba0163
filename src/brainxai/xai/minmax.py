"""Per-map min-max normalisation to [0, 1] (C-Score paper 004, Table 1: H ∈ [0, 1])."""

from __future__ import annotations

from typing import Any

import numpy as np

from brainxai.xai._arrays import is_torch


def minmax_normalise(maps: Any) -> Any:
    """Rescale each map of a batch (N, ...) to [0, 1] by its own min and max.

    A constant map (max == min) becomes all zeros. numpy in -> numpy out (float32
    unless the input is float64); torch in -> torch out on the same device.
    """
    if is_torch(maps):
        x = maps if maps.is_floating_point() else maps.float()
        flat = x.reshape(x.shape[0], -1)
        lo = flat.amin(dim=1, keepdim=True)
        rng = flat.amax(dim=1, keepdim=True) - lo
        safe = rng.clamp_min(1e-30)
        out = (flat - lo) / safe * (rng > 0)
        return out.reshape(x.shape)
    x = np.asarray(maps)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    flat = x.reshape(x.shape[0], -1).astype(dtype, copy=False)
    lo = flat.min(axis=1, keepdims=True)
    rng = flat.max(axis=1, keepdims=True) - lo
    out = np.zeros_like(flat)
    np.divide(flat - lo, rng, out=out, where=np.broadcast_to(rng > 0, flat.shape))
    return out.reshape(x.shape)
