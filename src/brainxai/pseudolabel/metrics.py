"""Quality of a pseudo-label against the generator's lesion mask.

Dice ``2|A n B| / (|A| + |B|)`` (1 when both are empty); HD95, the 95th percentile of the
symmetric surface distances in mm (Euclidean distance transforms with the voxel
spacing; 0 when both are empty, ``empty_value`` when exactly one is); detection: the
mask overlaps the lesion by at least one voxel; box IoU per axial slice: the union of
the proposed boxes against the union of the truth's 2D component boxes, on every slice
where either has one (a missed or spurious slice counts 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    a, b = pred.astype(bool), truth.astype(bool)
    denom = int(a.sum()) + int(b.sum())
    return 1.0 if denom == 0 else 2.0 * int((a & b).sum()) / denom


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1))


def hd95(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...], empty_value: float
) -> float:
    a, b = pred.astype(bool), truth.astype(bool)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float(empty_value)
    sa, sb = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(np.percentile(np.concatenate([to_b, to_a]), 95))


def detected(pred: np.ndarray, truth: np.ndarray) -> bool:
    return bool((pred.astype(bool) & truth.astype(bool)).any())


def truth_box_stack(truth: np.ndarray) -> np.ndarray:
    """Per axial slice, the union of the bounding boxes of the truth's 2D components."""
    out = np.zeros(truth.shape, dtype=bool)
    for k in np.flatnonzero(truth.any(axis=(0, 1))):
        labels, _ = ndimage.label(truth[:, :, k])
        for si, sj in ndimage.find_objects(labels):
            out[si, sj, k] = True
    return out


def box_iou_per_slice(stack: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """``{k: IoU}`` of proposed boxes (``stack > 0``) and truth boxes on each slice."""
    pred, tb = stack > 0, truth_box_stack(truth.astype(bool))
    inter = (pred & tb).sum(axis=(0, 1))
    union = (pred | tb).sum(axis=(0, 1))
    return {int(k): float(inter[k] / union[k]) for k in np.flatnonzero(union)}


def mask_quality(
    masks: dict[str, np.ndarray], truth: np.ndarray, spacing: tuple[float, ...], empty_hd: float
) -> dict[str, float | bool]:
    """``dice_<name>``, ``hd95_<name>``, ``detected_<name>`` for every mask."""
    out: dict[str, float | bool] = {}
    for name, m in masks.items():
        out[f"dice_{name}"] = dice(m, truth)
        out[f"hd95_{name}"] = hd95(m, truth, spacing, empty_hd)
        out[f"detected_{name}"] = detected(m, truth)
    return out
