"""Template anatomy: the MNI152 2009 template of nilearn turned into generator inputs.

Models (all in MNI space, on the template grid padded by ``head_pad_mm``):

* partial-volume fractions of grey and white matter, from nilearn's tissue probability
  maps sharpened by an exponent (CSF is what the brain mask leaves: ``mask - GM - WM``);
* a closed, smooth *intracranial envelope* (the brain mask closed and smoothed) and its
  signed distance map (mm, negative inside). Head shells (extra-axial CSF, skull
  tables, diploe, scalp) are drawn per subject as distance bands of this map;
* the ventricles (deep CSF in the ventricular region), and depth maps used to place
  lesions where each phenotype arises.

Everything is cached per (resolution, padding, sharpness) with ``functools.lru_cache``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from brainxai.synth.config import SynthConfig

#: Closing radius and smoothing of the brain mask that give the intracranial envelope.
ENVELOPE_CLOSING_MM = 6.0
ENVELOPE_SMOOTH_MM = 2.0
#: Ventricles: deep CSF (this far inside the envelope) within an MNI box (mm).
VENTRICLE_MIN_DEPTH_MM = 12.0
VENTRICLE_BOX_MM = ((-30.0, 30.0), (-50.0, 30.0), (-10.0, 35.0))
#: Deep-CSF components smaller than this are sulci, not ventricles.
VENTRICLE_MIN_ML = 0.5


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Padded template-space maps (arrays indexed ``[i, j, k]`` along MNI x, y, z)."""

    resolution_mm: float
    affine: np.ndarray  # voxel -> MNI mm (RAS, diagonal)
    t1: np.ndarray  # template T1 (for display / registration tests)
    gm: np.ndarray  # grey-matter fraction
    wm: np.ndarray  # white-matter fraction
    csf: np.ndarray  # CSF fraction inside the brain mask
    brain: np.ndarray  # nilearn brain mask (bool)
    dist: np.ndarray  # signed distance to the intracranial envelope (mm, <0 inside)
    ventricles: np.ndarray  # bool
    ventricle_dist: np.ndarray  # distance to the ventricles (mm)
    fused_t: torch.Tensor  # (1, 3, I, J, K): GM, WM, signed distance, for grid_sample
    tissue_t: torch.Tensor  # (1, 2, I, J, K): GM, WM (re-sampled where the brain moved)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape  # type: ignore[return-value]

    def mm(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (..., 3) -> MNI mm."""
        return ijk * self.resolution_mm + self.affine[:3, 3]

    def voxel(self, xyz: np.ndarray) -> np.ndarray:
        """MNI mm (..., 3) -> fractional voxel indices (dtype of ``xyz``)."""
        origin = self.affine[:3, 3].astype(xyz.dtype)
        return (xyz - origin) / xyz.dtype.type(self.resolution_mm)

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MNI x, y, z of the template voxels as broadcastable (I,1,1), (1,J,1), (1,1,K)."""
        out = []
        for a, n in enumerate(self.shape):
            v = self.affine[a, 3] + self.resolution_mm * np.arange(n, dtype=np.float32)
            shape = [1, 1, 1]
            shape[a] = n
            out.append(v.reshape(shape).astype(np.float32))
        return out[0], out[1], out[2]

    def grid_mm(self) -> np.ndarray:
        """MNI coordinates of every template voxel, shape (I, J, K, 3), float32."""
        x, y, z = np.broadcast_arrays(*self.axes_mm())
        return np.stack([x, y, z], axis=-1)

    def head_bbox_mm(self, thickness_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """MNI bounding box of the head when the shells extend ``thickness_mm`` outside."""
        lo, hi = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            idx = np.flatnonzero(self.dist.min(axis=other) <= thickness_mm)
            lo.append(idx[0])
            hi.append(idx[-1])
        return self.mm(np.array(lo, float)), self.mm(np.array(hi, float))


def _load_nilearn(resolution_mm: int) -> tuple[np.ndarray, ...]:
    """Template, GM, WM and brain mask at 1 mm, block-averaged to ``resolution_mm``.

    Averaging 1 mm voxels (area weights) gives true partial-volume fractions on
    nilearn's own coarser grid (same origin, spacing ``resolution_mm``) and is much
    faster than nilearn's spline resampling.
    """
    from nilearn import datasets  # local import: nilearn is slow to import

    imgs = (
        datasets.load_mni152_template(resolution=1),
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_wm_template(resolution=1),
        datasets.load_mni152_brain_mask(resolution=1),
    )
    affine = np.asarray(imgs[0].affine, dtype=np.float64).copy()
    vols = [np.asarray(i.get_fdata(), dtype=np.float32) for i in imgs]
    if resolution_mm != 1:
        step = int(resolution_mm)
        weights = np.ones(step + 1, np.float32)
        if step % 2 == 0:
            weights[[0, -1]] = 0.5
        else:
            weights = np.ones(step, np.float32)
        weights /= weights.sum()
        for i, v in enumerate(vols):
            for axis in range(3):
                v = ndimage.convolve1d(v, weights, axis=axis, mode="constant")
            vols[i] = np.ascontiguousarray(v[::step, ::step, ::step])
        affine[:3, :3] *= step
    return (affine, *vols)


def _signed_distance(mask: np.ndarray, res: float) -> np.ndarray:
    """Signed Euclidean distance to the mask surface (mm, negative inside)."""
    outside = ndimage.distance_transform_edt(~mask, sampling=res)
    inside = ndimage.distance_transform_edt(mask, sampling=res)
    return (outside - inside + np.where(mask, 0.5, -0.5) * res).astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_anatomy(
    resolution_mm: int = 2, head_pad_mm: float = 24.0, tissue_sharpness: float = 2.0
) -> Anatomy:
    """Load, pad and derive the template maps (cached per argument tuple)."""
    affine, t1, gm, wm, mask = _load_nilearn(resolution_mm)
    res = float(resolution_mm)
    pad = int(np.ceil(head_pad_mm / res))
    t1, gm, wm, mask = (np.pad(a, pad) for a in (t1, gm, wm, mask))
    affine = affine.copy()
    affine[:3, 3] -= pad * res
    brain = mask > 0.5

    # Partial-volume fractions: sharpen the (CSF, GM, WM) probabilities within the brain.
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    total = np.clip(gm + wm + csf, 0.0, 1.0)
    probs = np.stack([csf, gm, wm]) ** tissue_sharpness
    norm = probs.sum(axis=0)
    frac = np.divide(probs * total, norm, out=np.zeros_like(probs), where=norm > 1e-6)
    csf, gm, wm = frac.astype(np.float32)

    # Intracranial envelope: the brain mask closed (fills sulci and fissures) and smoothed.
    closing = ENVELOPE_CLOSING_MM
    dilated = ndimage.distance_transform_edt(~brain, sampling=res) <= closing
    closed = ndimage.distance_transform_edt(dilated, sampling=res) > closing
    envelope = ndimage.gaussian_filter(closed.astype(np.float32), ENVELOPE_SMOOTH_MM / res) > 0.5
    envelope |= brain
    dist = _signed_distance(envelope, res)

    # Ventricles: large deep-CSF components inside the ventricular box.
    ijk = np.indices(brain.shape, dtype=np.float32)
    in_box = np.ones(brain.shape, bool)
    for a, (lo, hi) in enumerate(VENTRICLE_BOX_MM):
        xyz = ijk[a] * res + affine[a, 3]
        in_box &= (xyz >= lo) & (xyz <= hi)
    deep_csf = (csf > 0.5) & (dist < -VENTRICLE_MIN_DEPTH_MM) & in_box
    labels, n = ndimage.label(deep_csf)
    sizes = ndimage.sum_labels(deep_csf, labels, index=np.arange(1, n + 1)) * res**3 / 1000.0
    keep = 1 + np.flatnonzero(sizes >= VENTRICLE_MIN_ML)
    ventricles = np.isin(labels, keep)
    ventricle_dist = ndimage.distance_transform_edt(~ventricles, sampling=res).astype(np.float32)

    fused_t = torch.from_numpy(np.ascontiguousarray(np.stack([gm, wm, dist])[None]))
    tissue_t = fused_t[:, :2].contiguous()
    return Anatomy(
        resolution_mm=res,
        affine=affine,
        t1=t1.astype(np.float32),
        gm=gm,
        wm=wm,
        csf=csf,
        brain=brain,
        dist=dist,
        ventricles=ventricles,
        ventricle_dist=ventricle_dist,
        fused_t=fused_t,
        tissue_t=tissue_t,
    )


@dataclass(frozen=True)
class HeadShells:
    """Per-subject thicknesses (mm) of the layers outside the intracranial envelope.

    From the envelope outwards: extra-axial CSF (part of the intracranial volume), inner
    skull table (cortical bone), diploe (fatty marrow), outer table, scalp.
    """

    csf_rim: float
    inner_table: float
    marrow: float
    outer_table: float
    scalp: float

    @classmethod
    def draw(cls, rng: np.random.Generator, cfg: SynthConfig) -> HeadShells:
        return cls(
            csf_rim=float(rng.uniform(*cfg.csf_rim_mm)),
            inner_table=float(rng.uniform(*cfg.skull_table_mm)),
            marrow=float(rng.uniform(*cfg.marrow_mm)),
            outer_table=float(rng.uniform(*cfg.skull_table_mm)),
            scalp=float(rng.uniform(*cfg.scalp_mm)),
        )

    @property
    def boundaries(self) -> np.ndarray:
        """Envelope distances (mm) of the outer surface of each layer."""
        return np.cumsum(
            [self.csf_rim, self.inner_table, self.marrow, self.outer_table, self.scalp]
        )

    @property
    def thickness(self) -> float:
        return float(self.boundaries[-1])

    def fractions(self, dist: np.ndarray, edge_mm: float) -> np.ndarray:
        """Partial-volume fractions (4, N): intracranial, bone, marrow, scalp."""
        inside = [np.clip(0.5 + (b - dist) / edge_mm, 0.0, 1.0) for b in self.boundaries]
        icv = inside[0]
        bone = (inside[1] - inside[0]) + (inside[3] - inside[2])
        return np.stack([icv, bone, inside[2] - inside[1], inside[4] - inside[3]])
