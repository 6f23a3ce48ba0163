"""2D axial slices sampled from 3D volumes (the 3D cohort feeding 2D SSL pretraining).

The volume is reoriented to RAS; ``n`` slices are taken evenly inside the central
``slab`` fraction of the brain's axial extent (slices with signal above 10 % of the
window), displayed radiologically upright (anterior up) and windowed to uint8 with the
volume's ``window_percentile``. In-plane voxel spacing is honoured (physical aspect).
Today the raw cohort volumes are sliced; once the standardization stage writes
skull-stripped, MNI-registered volumes, point ``DataConfig.volume_column`` at them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

_SIGNAL_FRACTION = 0.1  # a slice "has brain" when some voxel exceeds this fraction of the window


def axial_slices(
    path: str | Path, n: int, slab: float, window_percentile: float
) -> list[Image.Image]:
    """``n`` grey PIL images of axial slices of the volume at ``path`` (see module doc)."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    vol = np.asarray(img.dataobj, dtype=np.float32)
    if vol.ndim == 4:
        vol = vol[..., 0]
    sx, sy = (float(z) for z in img.header.get_zooms()[:2])
    hi = float(np.percentile(vol, window_percentile))
    if not np.isfinite(hi) or hi <= 0:
        raise ValueError(f"{path}: empty volume (window {hi})")
    has = np.flatnonzero((vol > _SIGNAL_FRACTION * hi).any(axis=(0, 1)))
    lo_z, hi_z = (int(has[0]), int(has[-1])) if has.size else (0, vol.shape[2] - 1)
    margin = (1 - slab) / 2 * (hi_z - lo_z)
    zs = np.linspace(lo_z + margin, hi_z - margin, n).round().astype(int)
    out = []
    for z in zs:
        sl = np.clip(vol[:, :, z] / hi * 255.0, 0, 255).astype(np.uint8)
        im = Image.fromarray(np.ascontiguousarray(np.flipud(sl.T)))  # rows = A->P, cols = R->L
        base = min(sx, sy)
        im = im.resize(
            (max(1, round(sl.shape[0] * sx / base)), max(1, round(sl.shape[1] * sy / base))),
            Image.BILINEAR,
        )
        out.append(im)
    return out
