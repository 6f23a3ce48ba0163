"""Array plumbing shared by the XAI modules: numpy/torch in, flat (N, P) numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch)."""
    return type(x).__module__.split(".")[0] == "torch"


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to CPU)."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def flatten_maps(maps: Any, dtype: Any = np.float32) -> np.ndarray:
    """(N, H, W) or (N, D, H, W) maps -> C-contiguous (N, P) array of ``dtype``."""
    arr = to_numpy(maps)
    if arr.ndim < 2:
        raise ValueError(f"maps must be (N, ...) with at least one spatial axis, got {arr.shape}")
    return np.ascontiguousarray(arr.reshape(arr.shape[0], -1), dtype=dtype)


def check_maps_masks(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch of 2-D/3-D maps and binary masks; return (float64 maps, bool masks)."""
    m = to_numpy(maps, dtype=np.float64)
    g = to_numpy(masks)
    if m.ndim not in (3, 4):
        raise ValueError(f"maps must be (N, H, W) or (N, D, H, W), got {m.shape}")
    if m.shape != g.shape:
        raise ValueError(f"maps {m.shape} and masks {g.shape} differ in shape")
    return m, g.astype(bool)
