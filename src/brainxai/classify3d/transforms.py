"""MONAI dictionary transforms: decode/resize once (cached), then augment image and mask
together (paper 003 §"Training").

Deterministic part (cached by :mod:`brainxai.classify3d.data`): load the NIfTI with its
channel first, reorient to RAS (a no-op for the standardized volumes), resize to the
network's input size — the image with area (average) interpolation, the mask likewise, so
it keeps its fractional occupancy instead of losing a small lesion to nearest-neighbour
sampling. Random part: rot90 in the axial plane and a sagittal (left-right) flip move the
image and the mask together (one draw for both keys); Gaussian noise and gamma change
intensities, so they touch the image only. In RAS voxel order the axes after the channel
are x (left→right), y (posterior→anterior), z (inferior→superior): the axial plane is
(x, y) and the sagittal flip mirrors x.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    Resized,
)

from brainxai.classify3d.config import AugmentConfig

IMAGE = "image"
MASK = "mask"
AXIAL_PLANE = (0, 1)  # (x, y) spatial axes of a RAS volume
SAGITTAL_AXIS = 0  # flipping x mirrors left and right


def keys_for(with_mask: bool) -> list[str]:
    return [IMAGE, MASK] if with_mask else [IMAGE]


def load_transforms(input_size: Sequence[int], with_mask: bool) -> Compose:
    """Decode, channel-first, RAS, float32, resize to ``input_size`` (area interpolation)."""
    keys = keys_for(with_mask)
    return Compose(
        [
            LoadImaged(keys=keys, image_only=True, ensure_channel_first=True),
            Orientationd(keys=keys, axcodes="RAS"),
            EnsureTyped(keys=keys, dtype="float32", track_meta=False),
            Resized(keys=keys, spatial_size=tuple(input_size), mode="area"),
        ]
    )


def augment_transforms(cfg: AugmentConfig, with_mask: bool, input_size: Sequence[int]) -> Compose:
    """The paper's augmentations; spatial ones act on image and mask with one random draw."""
    keys = keys_for(with_mask)
    if cfg.rot90_prob > 0 and input_size[0] != input_size[1]:
        raise ValueError(f"axial rot90 needs a square axial plane, input size is {input_size}")
    return Compose(
        [
            RandRotate90d(keys=keys, prob=cfg.rot90_prob, max_k=3, spatial_axes=AXIAL_PLANE),
            RandFlipd(keys=keys, prob=cfg.flip_prob, spatial_axis=SAGITTAL_AXIS),
            RandGaussianNoised(keys=[IMAGE], prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std),
            RandAdjustContrastd(keys=[IMAGE], prob=cfg.gamma_prob, gamma=tuple(cfg.gamma)),
            EnsureTyped(keys=keys, dtype="float32", track_meta=False),
        ]
    )
