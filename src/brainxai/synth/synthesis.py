"""One subject, in memory: draw the model, then render it in a single fused pass.

Rendering follows the forward model of an MR acquisition:

1. every output voxel is mapped to template space through one composed chain
   (grid affine -> head pose -> smooth warp; :mod:`brainxai.synth.deform`);
2. grey/white matter and the envelope distance are interpolated in one multi-channel
   ``grid_sample`` pass (GM/WM once more only where the lesion displaces the brain);
   head shells and the lesion are evaluated analytically at the same coordinates, so
   masks deform exactly with the anatomy;
3. the lesion replaces tissue (partial-volume fractions stay a partition of unity);
4. intensities are one matrix product of fractions and class intensities, then bias
   field, Rician noise and scanner gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainxai.labels import LESION_REGIONS, SEQUENCES_3D, TISSUE_LABELS
from brainxai.synth.anatomy import Anatomy, HeadShells, load_anatomy
from brainxai.synth.config import SynthConfig
from brainxai.synth.contrast import CHANNELS, Contrast, draw_contrast, rician
from brainxai.synth.deform import Geometry, draw_geometry, sample_volume
from brainxai.synth.lesions import (
    GM_OEDEMA_WEIGHT,
    MAX_NOISE_SD,
    LesionModel,
    draw_lesion,
)
from brainxai.synth.spec import SubjectSpec

#: Integer range of the stored images (int16, non-negative magnitudes).
INT16_MAX = 32767
#: Tissue dseg: fraction channels merged into each label (argmax over labels).
_DSEG_GROUPS: dict[str, tuple[str, ...]] = {
    "background": ("background",),
    "csf": ("csf",),
    "gm": ("gm",),
    "wm": ("wm", "oedema"),
    "skull": ("bone", "marrow"),
    "scalp": ("scalp",),
    "lesion": ("enhancing", "necrosis", "solid"),
}


@dataclass(frozen=True, eq=False)
class SubjectModel:
    """Everything drawn for a subject; nothing rendered yet."""

    spec: SubjectSpec
    cfg: SynthConfig
    anatomy: Anatomy
    shells: HeadShells
    geometry: Geometry
    lesion: LesionModel
    contrast: Contrast

    @property
    def edge_mm(self) -> float:
        """Partial-volume edge width: the mean output voxel size."""
        return float(np.mean(self.geometry.grid.spacing))

    def xfm(self) -> dict[str, Any]:
        """JSON-able description of the subject's generative parameters."""
        anat = self.anatomy
        return {
            "subject": self.spec.subject_id,
            "phenotype": self.spec.phenotype,
            "template": {
                "name": "MNI152NLin2009 (nilearn)",
                "resolution_mm": anat.resolution_mm,
                "shape": list(anat.shape),
                "affine": anat.affine.tolist(),
            },
            **self.geometry.to_dict(),
            "head_shells_mm": {k: round(v, 6) for k, v in vars(self.shells).items()},
            "lesion": self.lesion.to_dict(),
            "mass_effect_scale": self.cfg.mass_effect,
            "contrast": self.contrast.to_dict(),
        }


@dataclass(eq=False)
class SubjectVolumes:
    """Rendered volumes on the subject's native grid (``[..., ks]`` slabs if partial)."""

    spec: SubjectSpec
    affine: np.ndarray
    images: dict[str, np.ndarray]  # int16, as written
    lesion_mask: np.ndarray  # uint8 0/1: tumour core (enhancing + necrosis + solid)
    lesion_dseg: np.ndarray  # uint8, codes of labels.LESION_REGIONS
    brain_mask: np.ndarray  # uint8: intracranial volume
    tissue_dseg: np.ndarray  # uint8, codes of labels.TISSUE_LABELS
    bias: np.ndarray  # float32 multiplicative field applied to every sequence
    lesion_fraction: np.ndarray  # float32 soft tumour-core fraction
    model: SubjectModel
    ks: np.ndarray  # rendered indices along the last voxel axis
    clean: dict[str, np.ndarray] | None = None  # float32 before bias, noise and gain
    xfm: dict[str, Any] = field(default_factory=dict)

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.model.geometry.grid.spacing)) / 1000.0

    @property
    def lesion_ml(self) -> float:
        return float(self.lesion_mask.sum()) * self.voxel_ml


def build_model(spec: SubjectSpec, cfg: SynthConfig, axcodes: str | None = None) -> SubjectModel:
    """Draw shells, pose/warp/grid, lesion and contrast of a subject (cheap)."""
    anat = load_anatomy(cfg.resolution_mm, cfg.head_pad_mm, cfg.tissue_sharpness)
    rngs = spec.rngs()
    shells = HeadShells.draw(rngs["geometry"], cfg)
    geometry = draw_geometry(rngs["geometry"], anat, cfg, shells.thickness, axcodes)
    lesion = draw_lesion(rngs["lesion"], anat, spec.phenotype, cfg.lesion_size, shells.csf_rim)
    contrast = draw_contrast(rngs["contrast"], lesion.variant, cfg)
    return SubjectModel(spec, cfg, anat, shells, geometry, lesion, contrast)


def _fractions(model: SubjectModel, p: np.ndarray) -> np.ndarray:
    """Partial-volume fractions (len(CHANNELS), N) at template points ``p``."""
    anat, edge = model.anatomy, model.edge_mm
    # One trilinear pass over (GM, WM, distance); the padded template is zero-GM/WM and
    # far-outside at its border, so border padding is exact for all three channels.
    gm, wm, dist = sample_volume(anat.fused_t, anat.voxel(p), padding="border")
    moved, source = model.lesion.push(p, model.cfg.mass_effect)
    if moved.size:  # brain displaced by the lesion (mass effect)
        gm[moved], wm[moved] = sample_volume(anat.tissue_t, anat.voxel(source), "border")
    icv, bone, marrow, scalp = model.shells.fractions(dist, edge)
    # The brain fills the intracranial volume; the rest of it is CSF.
    scale = np.minimum(1.0, icv / np.maximum(gm + wm, 1e-6))
    gm, wm = gm * scale, wm * scale
    csf = np.clip(icv - gm - wm, 0.0, None)
    # The lesion core replaces tissue; oedema turns parenchyma (mostly WM) oedematous.
    enh, nec, solid, zone = model.lesion.evaluate(p, edge)
    keep = 1.0 - (enh + nec + solid)
    gm, wm, csf = gm * keep, wm * keep, csf * keep
    oed_wm, oed_gm = zone * wm, zone * GM_OEDEMA_WEIGHT * gm
    out = np.empty((len(CHANNELS), len(p)), np.float32)
    channels = {
        "background": np.clip(1.0 - icv - bone - marrow - scalp, 0.0, None),
        "csf": csf,
        "gm": gm - oed_gm,
        "wm": wm - oed_wm,
        "bone": bone,
        "marrow": marrow,
        "scalp": scalp,
        "oedema": oed_wm + oed_gm,
        "enhancing": enh * icv,
        "necrosis": nec * icv,
        "solid": solid * icv,
    }
    for i, c in enumerate(CHANNELS):
        out[i] = channels[c]
    return out


def render(
    model: SubjectModel, ks: np.ndarray | None = None, *, keep_clean: bool = False
) -> SubjectVolumes:
    """Render the whole grid, or only the slabs ``ks`` along the last voxel axis."""
    grid, cfg = model.geometry.grid, model.cfg
    ks = np.arange(grid.shape[2]) if ks is None else np.asarray(ks, dtype=int)
    ni, nj = grid.shape[:2]
    shape = (ni, nj, len(ks))
    n_seq = len(SEQUENCES_3D)
    clean = np.empty((n_seq, *shape), np.float32)
    lesion_parts = np.empty((4, *shape), np.float32)
    icv = np.empty(shape, np.float32)
    tissue = np.empty(shape, np.uint8)
    groups = [[CHANNELS.index(c) for c in _DSEG_GROUPS[name]] for name in TISSUE_LABELS.values()]
    step = max(1, cfg.chunk_voxels // (ni * nj))
    for start in range(0, len(ks), step):
        sl = slice(start, start + step)
        p = model.geometry.template_coords(grid.world(ks[sl]))
        frac = _fractions(model, p)
        n = frac.shape[1] // (ni * nj)
        clean[:, :, :, sl] = model.contrast.mix(frac).reshape(n_seq, ni, nj, n)
        lesion_parts[:, :, :, sl] = frac[
            [CHANNELS.index(c) for c in ("enhancing", "necrosis", "solid", "oedema")]
        ].reshape(4, ni, nj, n)
        icv[:, :, sl] = (
            1.0
            - frac[CHANNELS.index("background")]
            - frac[[CHANNELS.index(c) for c in ("bone", "marrow", "scalp")]].sum(0)
        ).reshape(ni, nj, n)
        merged = np.stack([frac[g].sum(0) for g in groups])
        tissue[:, :, sl] = np.argmax(merged, axis=0).astype(np.uint8).reshape(ni, nj, n)

    bias = model.contrast.bias_field(grid)[:, :, ks]
    noise_rng = model.spec.rngs()["noise"]
    images = {}
    for s, seq in enumerate(SEQUENCES_3D):
        magnitude = rician(clean[s] * bias, model.contrast.noise_sigma, noise_rng)
        scaled = np.rint(magnitude * model.contrast.gain[s])
        images[seq] = np.clip(scaled, 0, INT16_MAX).astype(np.int16)

    core = lesion_parts[:3].sum(0)
    lesion_mask = core >= 0.5
    dseg = np.where(lesion_mask, 1 + np.argmax(lesion_parts[:3], axis=0), 0)
    dseg = np.where(~lesion_mask & (lesion_parts[3] >= 0.5), 4, dseg).astype(np.uint8)
    assert set(LESION_REGIONS) == {1, 2, 3, 4}
    return SubjectVolumes(
        spec=model.spec,
        affine=grid.affine.copy(),
        images=images,
        lesion_mask=lesion_mask.astype(np.uint8),
        lesion_dseg=dseg,
        brain_mask=(icv >= 0.5).astype(np.uint8),
        tissue_dseg=tissue,
        bias=bias.astype(np.float32),
        lesion_fraction=core.astype(np.float32),
        model=model,
        ks=ks,
        clean={seq: clean[s] for s, seq in enumerate(SEQUENCES_3D)} if keep_clean else None,
        xfm=model.xfm(),
    )


def synthesize_subject(
    spec: SubjectSpec, cfg: SynthConfig, *, keep_clean: bool = False
) -> SubjectVolumes:
    """Generate one subject's full volumes in memory (same arrays as written to disk)."""
    return render(build_model(spec, cfg), keep_clean=keep_clean)


def template_lesion(model: SubjectModel) -> np.ndarray:
    """The subject's lesion sub-region fractions on the template grid, (4, I, J, K).

    Template (MNI) space, before pose and warp: used to check placement and volumes.
    Rows: enhancing, necrosis, solid (fractions of the voxel) and the oedema zone.
    """
    anat = model.anatomy
    res = anat.resolution_mm
    maps = model.lesion.evaluate(anat.grid_mm().reshape(-1, 3), res)
    icv = model.shells.fractions(anat.dist.ravel(), res)[0]
    maps[:3] *= icv
    return maps.reshape(4, *anat.shape)


def lesion_slab_range(model: SubjectModel) -> np.ndarray:
    """Indices along the last voxel axis that may contain the tumour core."""
    grid, geom = model.geometry.grid, model.geometry
    inv = np.linalg.inv(grid.affine)
    ks: list[float] = []
    for f in model.lesion.foci:
        reach = float(f.radii.max() * (1 + f.rim) * (1 + MAX_NOISE_SD * f.irregularity))
        corners = (
            np.array(
                [
                    [x, y, z, 1.0]
                    for x in (-reach, reach)
                    for y in (-reach, reach)
                    for z in (-reach, reach)
                ]
            )
            + np.r_[f.centre, 0.0]
        )
        vox = (inv @ geom.head_affine @ corners.T)[2]
        ks += [vox.min(), vox.max()]
    if not ks:
        return np.arange(0)
    slack = 3.0 * model.cfg.deform_amplitude_mm / grid.spacing[2]
    lo = max(0, int(np.floor(min(ks) - slack)))
    hi = min(grid.shape[2] - 1, int(np.ceil(max(ks) + slack)))
    return np.arange(lo, hi + 1)


def lesion_area_per_slab(model: SubjectModel, ks: np.ndarray) -> np.ndarray:
    """Tumour-core voxel count of each slab in ``ks`` (a cheap lesion-only pass)."""
    grid = model.geometry.grid
    if len(ks) == 0:
        return np.zeros(0, int)
    p = model.geometry.template_coords(grid.world(ks))
    core = model.lesion.evaluate(p, model.edge_mm)[:3].sum(0)
    return (core.reshape(grid.shape[0], grid.shape[1], len(ks)) >= 0.5).sum(axis=(0, 1))
