"""Weight-free box proposer: robust-z abnormality on the standardized volumes.

Per channel (a sequence's hyperintensity, a subtraction such as ``T1C+ - T1`` for
enhancement, or contralateral asymmetry ``x - x(mirror)`` in MNI space) a robust z-score
inside the brain, ``z = (x - median) / (1.4826 MAD)``; the abnormality map is the
channels' maximum, Gaussian-smoothed, thresholded inside the eroded brain. Small 3D
components are noise; every remaining 2D component of an axial slice gives one box —
the same answer format a VLM gives (:class:`SliceAnswer`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainxai.pseudolabel.boxes import VoxelBox
from brainxai.pseudolabel.config import ClassicalConfig, SliceConfig
from brainxai.pseudolabel.proposers.base import SliceAnswer
from brainxai.pseudolabel.volumes import SubjectVolumes

MAD_TO_SIGMA = 1.4826


def robust_z(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 MAD)`` with the statistics taken inside ``mask``."""
    vals = x[mask]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) * MAD_TO_SIGMA
    return ((x - med) / max(mad, 1e-6)).astype(np.float32)


def channel(subject: SubjectVolumes, spec: str) -> np.ndarray:
    """``SEQ``, ``A-B`` (sequence names may contain '+', not '-') or ``asym:SEQ``."""
    vols = subject.volumes
    if spec.startswith("asym:"):
        x = vols[spec[5:]]
        return x - x[::-1, :, :]  # RAS+ MNI grid: axis 0 is left-right, midline centred
    if spec in vols:
        return vols[spec]
    a, sep, b = spec.partition("-")
    if sep and a in vols and b in vols:
        return vols[a] - vols[b]
    raise KeyError(f"classical channel {spec!r}: sequences available {sorted(vols)}")


def abnormality(subject: SubjectVolumes, cfg: ClassicalConfig) -> np.ndarray:
    """Max over channels of the smoothed robust z (Sec. 'classical proposer')."""
    sigma = [cfg.smooth_mm / s for s in subject.spacing]
    brain = subject.brain
    maps = []
    for spec in cfg.channels:
        x = channel(subject, spec).astype(np.float32)
        if cfg.smooth_mm > 0:
            x = ndimage.gaussian_filter(x, sigma)
        maps.append(robust_z(x, brain))
    return np.max(maps, axis=0)


def abnormal_mask(subject: SubjectVolumes, cfg: ClassicalConfig) -> np.ndarray:
    """Thresholded abnormality inside the eroded brain, 3D components >= min_component_ml."""
    radius = [max(0, round(cfg.brain_erode_mm / s)) for s in subject.spacing]
    inner = subject.brain
    if max(radius) > 0:
        struct = ndimage.generate_binary_structure(3, 1)
        inner = ndimage.binary_erosion(inner, struct, iterations=max(radius))
    mask = (abnormality(subject, cfg) > cfg.z_threshold) & inner
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    voxel_ml = float(np.prod(subject.spacing)) / 1000.0
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1)) * voxel_ml
    keep = np.flatnonzero(sizes >= cfg.min_component_ml) + 1
    return np.isin(labels, keep)


def boxes_of_slice(sl: np.ndarray, k: int, min_area: int, max_boxes: int) -> list[VoxelBox]:
    """One box per 2D connected component (largest first) of an axial slice mask."""
    labels, n = ndimage.label(sl)
    if n == 0:
        return []
    areas = ndimage.sum_labels(sl, labels, index=np.arange(1, n + 1))
    objs = ndimage.find_objects(labels)
    order = np.argsort(-areas, kind="stable")
    out = []
    for idx in order[:max_boxes]:
        if areas[idx] < min_area:
            break
        si, sj = objs[idx]
        out.append(VoxelBox(k, si.start, si.stop, sj.start, sj.stop))
    return out


class ClassicalProposer:
    """Boxes from :func:`abnormal_mask` on every axial slice of the brain."""

    name = "classical"

    def __init__(self, cfg: ClassicalConfig, slices: SliceConfig) -> None:
        self.cfg = cfg
        self.slices = slices

    def propose(self, subject: SubjectVolumes) -> list[SliceAnswer]:
        mask = abnormal_mask(subject, self.cfg)
        answers = []
        for k in subject.axial_slices(self.slices.min_brain_fraction):
            boxes = boxes_of_slice(
                mask[:, :, k], k, self.cfg.min_area_px, self.cfg.max_boxes_per_slice
            )
            answers.append(
                SliceAnswer(k, "+".join(self.cfg.channels), boxes, "ok" if boxes else "no_box")
            )
        return answers
