"""One standardized session in memory: template-space volumes, brain mask, grid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainxai.atomic import save_nifti_atomic


@dataclass(frozen=True)
class SubjectVolumes:
    """Intensity-normalised volumes by sequence (float32), brain mask, affine, spacing (mm)."""

    volumes: dict[str, np.ndarray]
    brain: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.brain.shape  # type: ignore[return-value]

    def axial_slices(self, min_brain_fraction: float) -> list[int]:
        """Axial slices whose brain area is at least that fraction of the largest one's."""
        area = self.brain.sum(axis=(0, 1))
        if area.max() == 0:
            return []
        return [int(k) for k in np.flatnonzero(area >= max(1.0, min_brain_fraction * area.max()))]


def load_mask(path: str | Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj) > 0.5


def load_subject(images: Mapping[str, str | Path], brain_mask: str | Path) -> SubjectVolumes:
    """Read a session's standardized volumes (same grid) and its brain mask."""
    ref = nib.load(str(brain_mask))
    vols = {}
    for seq, p in images.items():
        img = nib.load(str(p))
        if img.shape != ref.shape or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise ValueError(f"{seq} ({p}) is not on the brain mask's grid")
        vols[seq] = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in ref.header.get_zooms()[:3])
    return SubjectVolumes(vols, np.asarray(ref.dataobj) > 0.5, ref.affine.copy(), zooms)  # type: ignore[arg-type]


def save_mask(mask: np.ndarray, affine: np.ndarray, path: str | Path) -> str:
    """A uint8 NIfTI mask on the given grid."""
    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    save_nifti_atomic(img, path)
    return str(path)
