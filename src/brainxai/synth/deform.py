"""Subject geometry: head pose (affine), smooth non-linear warp and the output voxel grid.

The generative model maps each output voxel ``v`` to template (MNI) space in one chain,
so that every channel is interpolated exactly once:

    y = G v                    (G: NIfTI affine of the output grid, scanner mm)
    p0 = A^-1 y                (A: head pose, template mm -> scanner mm)
    p = p0 + u(p0)             (u: smooth random displacement, template mm)

``u`` is a Gaussian random field on a coarse control grid (white noise smoothed to the
correlation length ``deform_smoothness_mm``, scaled to ``deform_amplitude_mm``),
interpolated trilinearly; with amplitude << smoothness the warp is diffeomorphic.
The output grid realises the acquisition: voxel-axis codes (RAS, LPS, a permuted
sagittal PSR, ...), anisotropic spacing and a jittered field of view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial.transform import Rotation

from brainxai.synth.anatomy import Anatomy
from brainxai.synth.config import SynthConfig

#: Head centre in MNI space (rotations and scalings pivot here).
HEAD_CENTRE_MM = np.array([0.0, -18.0, 10.0])
#: Control-grid spacing of the displacement field, as a fraction of its smoothing width.
CONTROL_SPACING_FRACTION = 1.0 / 3.0
_AXIS_OF = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def sample_volume(volume: torch.Tensor, idx: np.ndarray, padding: str = "zeros") -> np.ndarray:
    """Trilinear interpolation of a (1, C, I, J, K) tensor at fractional voxel indices.

    ``idx`` has shape (N, 3) in (i, j, k) order; returns (C, N) float32. One call samples
    all C channels (``torch.nn.functional.grid_sample``, ``align_corners=True``).
    """
    size = np.asarray(volume.shape[2:], dtype=np.float32)
    norm = 2.0 * idx.astype(np.float32) / (size - 1.0) - 1.0
    grid = torch.from_numpy(np.ascontiguousarray(norm[:, ::-1])).view(1, 1, 1, -1, 3)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    return out.view(volume.shape[1], -1).numpy()


@dataclass(frozen=True, eq=False)
class OutputGrid:
    """Voxel grid of the exported image (NIfTI affine maps voxel -> scanner RAS mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    axcodes: str
    spacing: tuple[float, float, float]

    def world(self, ks: np.ndarray | None = None) -> np.ndarray:
        """Scanner coordinates (N, 3) of all voxels whose last index is in ``ks``."""
        ks = np.arange(self.shape[2]) if ks is None else np.asarray(ks)
        i, j, k = np.meshgrid(
            np.arange(self.shape[0], dtype=np.float32),
            np.arange(self.shape[1], dtype=np.float32),
            ks.astype(np.float32),
            indexing="ij",
        )
        ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
        return ijk @ self.affine[:3, :3].T.astype(np.float32) + self.affine[:3, 3].astype(
            np.float32
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "affine": np.round(self.affine, 6).tolist(),
            "axcodes": self.axcodes,
            "spacing_mm": [round(s, 6) for s in self.spacing],
        }


def make_grid(
    lo: np.ndarray, hi: np.ndarray, axcodes: str, spacing: tuple[float, float, float]
) -> OutputGrid:
    """Grid covering the scanner-space box [lo, hi] with the given axis codes and spacing."""
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    shape = []
    for v, code in enumerate(axcodes):
        w, sign = _AXIS_OF[code]
        n = int(np.ceil((hi[w] - lo[w]) / spacing[v])) + 1
        shape.append(n)
        affine[w, v] = sign * spacing[v]
        affine[w, 3] = lo[w] if sign > 0 else lo[w] + (n - 1) * spacing[v]
    return OutputGrid(tuple(shape), affine, axcodes, tuple(float(s) for s in spacing))


@dataclass(frozen=True, eq=False)
class Geometry:
    """Head pose, warp and output grid of one subject."""

    head_affine: np.ndarray  # A: template mm -> scanner mm
    pose: dict[str, Any]
    disp: torch.Tensor  # (1, 3, a, b, c) displacement (mm) on the control grid
    disp_origin: np.ndarray  # MNI mm of control voxel (0, 0, 0)
    disp_spacing: float
    grid: OutputGrid

    def template_coords(self, world: np.ndarray) -> np.ndarray:
        """Scanner mm (N, 3) -> template mm (N, 3): ``p = A^-1 y + u(A^-1 y)``."""
        inv = np.linalg.inv(self.head_affine).astype(np.float32)
        p0 = world @ inv[:3, :3].T + inv[:3, 3]
        idx = (p0 - self.disp_origin.astype(np.float32)) / np.float32(self.disp_spacing)
        u = sample_volume(self.disp, idx, "border")
        p0 += u.T
        return p0

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to recompute the mapping (the xfm sidecar)."""
        return {
            "mapping": "p_template = inv(head_affine) @ y + u(inv(head_affine) @ y), "
            "y = grid.affine @ ijk; u trilinear on the control grid",
            "head_affine": np.round(self.head_affine, 8).tolist(),
            "pose": self.pose,
            "control_grid": {
                "origin_mm": np.round(self.disp_origin, 6).tolist(),
                "spacing_mm": self.disp_spacing,
                "shape": list(self.disp.shape[2:]),
                "displacement_mm": np.round(self.disp[0].numpy(), 4).tolist(),
            },
            "grid": self.grid.to_dict(),
        }


def head_affine(
    rotation_deg: np.ndarray, scale: np.ndarray, shear: np.ndarray, translation: np.ndarray
) -> np.ndarray:
    """``A = T(c + t) R H S T(-c)``: scale, shear and rotate about the head centre."""
    rot = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix()
    sh = np.eye(3)
    sh[0, 1], sh[0, 2], sh[1, 2] = shear
    lin = rot @ sh @ np.diag(scale)
    out = np.eye(4)
    out[:3, :3] = lin
    out[:3, 3] = HEAD_CENTRE_MM + translation - lin @ HEAD_CENTRE_MM
    return out


def random_displacement(
    rng: np.random.Generator, anat: Anatomy, amplitude: float, smoothness: float
) -> tuple[torch.Tensor, np.ndarray, float]:
    """Smooth Gaussian random displacement field over the template box (control grid).

    White noise smoothed by a Gaussian kernel of width ``smoothness`` (mm) and scaled to
    a per-component std of ``amplitude``; its derivatives have a std of about
    ``amplitude / (sqrt(2) smoothness)``, so the warp stays close to volume-preserving.
    """
    spacing = smoothness * CONTROL_SPACING_FRACTION
    lo = anat.mm(np.zeros(3)) - 2 * spacing
    hi = anat.mm(np.asarray(anat.shape, float) - 1) + 2 * spacing
    shape = tuple(int(np.ceil((h - lo_) / spacing)) + 1 for lo_, h in zip(lo, hi, strict=True))
    noise = rng.standard_normal((3, *shape))
    sigma = smoothness / spacing
    field = np.stack([ndimage.gaussian_filter(c, sigma, mode="reflect") for c in noise])
    field *= amplitude / max(float(field.std()), 1e-12)
    return torch.from_numpy(field.astype(np.float32)[None]), lo, float(spacing)


def draw_geometry(
    rng: np.random.Generator,
    anat: Anatomy,
    cfg: SynthConfig,
    head_thickness_mm: float,
    axcodes: str | None = None,
) -> Geometry:
    """Draw pose, warp, spacing, orientation and field of view for one subject."""
    rotation = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, 3)
    scale = 1.0 + rng.uniform(-cfg.scale_range, cfg.scale_range, 3)
    shear = rng.uniform(-cfg.shear, cfg.shear, 3)
    translation = rng.uniform(-cfg.translation_mm, cfg.translation_mm, 3)
    affine = head_affine(rotation, scale, shear, translation)
    disp, origin, spacing = random_displacement(
        rng, anat, cfg.deform_amplitude_mm, cfg.deform_smoothness_mm
    )
    factors = cfg.spacing_choices[rng.integers(len(cfg.spacing_choices))]
    vox = tuple(float(f) * cfg.resolution_mm for f in factors)
    code = axcodes or cfg.orientation_choices[rng.integers(len(cfg.orientation_choices))]
    margins = rng.uniform(*cfg.fov_margin_mm, size=(2, 3))

    lo, hi = anat.head_bbox_mm(head_thickness_mm)
    corners = np.array(
        [[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    world = (affine @ corners.T).T[:, :3]
    slack = 2.0 * cfg.deform_amplitude_mm
    grid = make_grid(
        world.min(0) - slack - margins[0], world.max(0) + slack + margins[1], code, vox
    )
    pose = {
        "rotation_deg": np.round(rotation, 6).tolist(),
        "scale": np.round(scale, 6).tolist(),
        "shear": np.round(shear, 6).tolist(),
        "translation_mm": np.round(translation, 6).tolist(),
        "centre_mm": HEAD_CENTRE_MM.tolist(),
        "determinant": round(float(np.linalg.det(affine[:3, :3])), 8),
    }
    return Geometry(affine, pose, disp, origin, spacing, grid)
