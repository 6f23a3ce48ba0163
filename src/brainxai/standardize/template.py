"""The MNI152 2009 template from nilearn (offline), on the stage's target grid.

A skull-stripped subject must be registered to a brain-extracted template (Clinica's
t1-linear warns about the mismatch): nilearn's MNI152 T1 is brain-extracted. Tissue
maps: nilearn's GM and WM probabilities, CSF = brain - GM - WM (nilearn ships no CSF
map); the hard tissue labels are the argmax over (CSF, GM, WM) inside the brain mask.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import ants
import numpy as np
from scipy import ndimage

#: Tissue label codes of :func:`Template.tissue` (same as ``labels.TISSUE_LABELS``).
CSF, GM, WM = 1, 2, 3


@dataclass(frozen=True, eq=False)
class Template:
    t1: ants.ANTsImage  # brain-extracted T1
    brain: ants.ANTsImage  # 0/1 brain mask
    envelope: ants.ANTsImage  # 0/1 intracranial envelope (brain mask closed)
    tissue: ants.ANTsImage  # 0 background, 1 CSF, 2 GM, 3 WM
    spacing_mm: float


def _nilearn(resolution: int) -> tuple:
    from nilearn import datasets  # slow import, only when needed

    return (
        datasets.load_mni152_template(resolution=resolution),
        datasets.load_mni152_brain_mask(resolution=resolution),
        datasets.load_mni152_gm_template(resolution=resolution),
        datasets.load_mni152_wm_template(resolution=resolution),
    )


@functools.lru_cache(maxsize=4)
def load_template(spacing_mm: float, envelope_closing_mm: float = 6.0) -> Template:
    """MNI152 maps at ``spacing_mm`` (nilearn's 1 or 2 mm grids, else resampled from 1 mm)."""
    native = int(spacing_mm) if float(spacing_mm) in (1.0, 2.0) else 1
    t1, brain, gm, wm = (ants.from_nibabel_nifti(i) for i in _nilearn(native))
    if float(spacing_mm) != native:
        sp = (float(spacing_mm),) * 3
        t1, gm, wm = (
            ants.resample_image(i, sp, use_voxels=False, interp_type=0) for i in (t1, gm, wm)
        )
        brain = ants.resample_image(brain, sp, use_voxels=False, interp_type=0)
    b = brain.numpy() >= 0.5
    g, w = gm.numpy(), wm.numpy()
    c = np.clip(b.astype(np.float32) - g - w, 0.0, 1.0)
    tissue = np.where(b, 1 + np.argmax(np.stack([c, g, w]), axis=0), 0).astype(np.float32)
    # intracranial envelope: close the brain mask (fills sulci, extra-axial CSF)
    r = max(1, round(envelope_closing_mm / float(spacing_mm)))
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), r)
    padded = np.pad(b, r + 1)
    closed = ndimage.binary_closing(padded, structure=ball)[
        r + 1 : -(r + 1), r + 1 : -(r + 1), r + 1 : -(r + 1)
    ]
    closed = ndimage.binary_fill_holes(closed | b)
    t1 = t1 * brain.new_image_like(b.astype(np.float32))
    return Template(
        t1=t1,
        brain=brain.new_image_like(b.astype(np.float32)),
        envelope=brain.new_image_like(closed.astype(np.float32)),
        tissue=brain.new_image_like(tissue),
        spacing_mm=float(spacing_mm),
    )
