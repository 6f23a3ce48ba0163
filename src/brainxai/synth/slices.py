"""2D export in the layout of the public 17-class Kaggle brain-MRI set.

``out_dir/<kaggle folder>/<hex>.jpg|png``: 8-bit grayscale axial slices in radiological
display (image top = anterior, image left = patient right) of varied sizes and formats,
several per subject and sequence (so patient leakage across splits is a real risk, as
in the public set). File names are seeded random hex and reveal nothing. The side
directory ``meta_dir`` (outside ``out_dir``) holds ``subjects.csv`` and the lesion mask
of every exported slice (``masks/<hex>.png``, 0/255, the image's size).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from brainxai.atomic import atomic_open, atomic_path
from brainxai.labels import KAGGLE_GROUPS, SEQUENCES_2D, kaggle_folder
from brainxai.synth.config import SynthConfig
from brainxai.synth.spec import SubjectSpec, make_specs
from brainxai.synth.synthesis import (
    SubjectModel,
    build_model,
    lesion_area_per_slab,
    lesion_slab_range,
    render,
)

#: Voxel-axis codes of the 2D grid: rows go anterior -> posterior, columns patient
#: right -> left (radiological convention), slices inferior -> superior.
AXIAL_DISPLAY = "PLS"
SUBJECT_COLUMNS: tuple[str, ...] = (
    "path",
    "subject",
    "group",
    "sequence",
    "slice_index",
    "mask_path",
)
MASK_DIR = "masks"
#: zlib level of the PNGs (speed over size; the pixels are identical at any level).
PNG_COMPRESS_LEVEL = 3


def plan_kaggle2d(cfg: SynthConfig, seed: int) -> list[SubjectSpec]:
    """``n_subjects_2d_per_group`` subjects per group of ``labels.KAGGLE_GROUPS``."""
    groups = [g for g in KAGGLE_GROUPS for _ in range(cfg.n_subjects_2d_per_group)]
    return make_specs(seed, "2d", groups, "kg")


def sequences_of(group: str) -> list[str]:
    """Sequences exported for a group (there is no ``NORMAL T1C+`` class)."""
    return [s for s in SEQUENCES_2D if not (group == "normal" and s == "T1C+")]


def candidate_slices(model: SubjectModel) -> np.ndarray:
    """Axial slice indices to draw from: through the lesion, or mid-brain if normal."""
    cfg, grid = model.cfg, model.geometry.grid
    if model.lesion.foci:
        ks = lesion_slab_range(model)
        area = lesion_area_per_slab(model, ks)
        if area.max(initial=0) == 0:
            raise RuntimeError(f"{model.spec.subject_id}: lesion not found on the grid")
        return ks[area >= max(1.0, cfg.slice_min_area_fraction * area.max())]
    z_lo, z_hi = cfg.normal_slice_z_mm
    centre = np.array([[0.0, -18.0, z, 1.0] for z in (z_lo, z_hi)])
    world = model.geometry.head_affine @ centre.T
    k = (np.linalg.inv(grid.affine) @ world)[2]
    lo, hi = max(0, int(np.ceil(k.min()))), min(grid.shape[2] - 1, int(np.floor(k.max())))
    return np.arange(lo, hi + 1)


def to_uint8(img: np.ndarray, size: tuple[int, int], hi: float) -> Image.Image:
    """Window ``[0, hi]`` to 8 bits after resizing to ``size`` = (width, height)."""
    f = Image.fromarray(img.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)
    arr = np.clip(np.asarray(f) / max(hi, 1e-6) * 255.0, 0, 255)
    return Image.fromarray(np.rint(arr).astype(np.uint8))


def write_subject2d(
    spec: SubjectSpec, out_dir: Path | str, meta_dir: Path | str, cfg: SynthConfig
) -> list[dict[str, Any]]:
    """Render and save one subject's slices and masks; return its ``subjects.csv`` rows."""
    out_dir, meta_dir = Path(out_dir), Path(meta_dir)
    model = build_model(spec, cfg, axcodes=AXIAL_DISPLAY)
    rng = spec.rngs()["export"]
    candidates = candidate_slices(model)
    plan: list[tuple[str, int]] = []
    for seq in sequences_of(spec.phenotype):
        n = min(cfg.slices_per_subject, len(candidates))
        plan += [(seq, int(k)) for k in sorted(rng.choice(candidates, n, replace=False))]
    ks = np.unique([k for _, k in plan])
    vol = render(model, ks)
    position = {int(k): i for i, k in enumerate(ks)}
    rows = []
    for seq, k in plan:
        img = vol.images[seq][:, :, position[k]].astype(np.float32)
        mask = vol.lesion_mask[:, :, position[k]]
        width = int(rng.integers(cfg.image_size_min, cfg.image_size_max + 1))
        aspect = 1.0 + rng.uniform(-cfg.image_aspect_jitter, cfg.image_aspect_jitter)
        height = int(np.clip(round(width * aspect), cfg.image_size_min, cfg.image_size_max))
        hi = float(np.percentile(img, cfg.window_percentile)) * rng.uniform(*cfg.window_jitter)
        name = rng.bytes(8).hex()
        is_jpeg = rng.random() < cfg.jpeg_fraction
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        rel = Path(kaggle_folder(spec.phenotype, seq)) / f"{name}.{'jpg' if is_jpeg else 'png'}"
        image = to_uint8(img, (width, height), hi)
        with atomic_path(out_dir / rel) as tmp:
            if is_jpeg:
                image.save(tmp, format="JPEG", quality=quality)
            else:
                image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        mask_rel = Path(MASK_DIR) / f"{name}.png"
        mask_img = Image.fromarray((mask * 255).astype(np.uint8))
        with atomic_path(meta_dir / mask_rel) as tmp:
            mask_img.resize((width, height), Image.Resampling.NEAREST).save(
                tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL
            )
        rows.append(
            {
                "path": rel.as_posix(),
                "subject": spec.subject_id,
                "group": spec.phenotype,
                "sequence": seq,
                "slice_index": k,
                "mask_path": mask_rel.as_posix(),
            }
        )
    return rows


def finalize_kaggle2d(meta_dir: Path | str, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``meta_dir/subjects.csv`` (rows sorted by path); returns its path."""
    meta_dir = Path(meta_dir)
    meta_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: (r["path"], r["subject"]))
    path = meta_dir / "subjects.csv"
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, SUBJECT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r[c] for c in SUBJECT_COLUMNS} for r in ordered)
    return path


def generate_kaggle2d(
    out_dir: Path | str, meta_dir: Path | str, cfg: SynthConfig, seed: int
) -> list[dict[str, Any]]:
    """Plan, write every subject (serially) and finalize; returns the csv rows."""
    if Path(meta_dir).resolve().is_relative_to(Path(out_dir).resolve()):
        raise ValueError(
            "meta_dir must not be inside out_dir (the image tree must look "
            "exactly like the public set)"
        )
    rows: list[dict[str, Any]] = []
    for spec in plan_kaggle2d(cfg, seed):
        rows += write_subject2d(spec, out_dir, meta_dir, cfg)
    finalize_kaggle2d(meta_dir, rows)
    return rows
