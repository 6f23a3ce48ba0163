"""Axial slices as images for a VLM: windowed, oriented, scaled (see :class:`SliceGeometry`)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from brainxai.pseudolabel.boxes import SliceGeometry


def window(volume: np.ndarray, brain: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Intensities to uint8 with the brain's percentile window (one window per volume)."""
    vals = volume[brain] if brain.any() else volume.ravel()
    lo, hi = np.percentile(vals, percentiles)
    scaled = (volume - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_slice(volume_u8: np.ndarray, geom: SliceGeometry) -> Image.Image:
    """Slice ``geom.k`` as an RGB image: anterior at the top, right on the left if radiological."""
    sl = volume_u8[:, :, geom.k]  # (nx, ny), RAS+
    disp = sl.T[::-1, :]  # rows: anterior -> posterior, columns: i ascending
    if geom.radiological:
        disp = disp[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(disp), mode="L")
    img = img.resize((geom.width, geom.height), Image.Resampling.BILINEAR)
    return img.convert("RGB")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def image_sha256(img: Image.Image) -> str:
    """Content hash of the pixels (mode, size, bytes): the response cache's image key."""
    h = hashlib.sha256(f"{img.mode}{img.size}".encode())
    h.update(img.tobytes())
    return h.hexdigest()
