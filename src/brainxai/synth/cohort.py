"""3D export: a BIDS-like cohort of synthetic subjects with ground truth derivatives.

Layout under ``out_dir``::

    dataset_description.json
    participants.tsv
    sub-001/anat/sub-001_T1w.nii.gz  (_ce-gd_T1w, _T2w, _FLAIR)
    derivatives/truth/dataset_description.json
    derivatives/truth/sub-001/anat/sub-001_label-lesion_mask.nii.gz
                                   sub-001_label-lesion_dseg.nii.gz
                                   sub-001_label-brain_mask.nii.gz
                                   sub-001_dseg.nii.gz
                                   sub-001_biasfield.nii.gz
                                   sub-001_xfm.json

All files of a subject share its native grid and affine; gzip headers carry no time
stamp, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainxai import __version__
from brainxai.atomic import atomic_open, save_nifti_atomic, write_text_atomic
from brainxai.labels import BIDS_SUFFIX, DIAGNOSES_3D, LESION_REGIONS, SEQUENCES_3D, TISSUE_LABELS
from brainxai.synth.config import SynthConfig, json_ready
from brainxai.synth.spec import SubjectSpec, make_specs
from brainxai.synth.synthesis import synthesize_subject

BIDS_VERSION = "1.9.0"
TRUTH_DIR = Path("derivatives") / "truth"
PARTICIPANT_COLUMNS: tuple[str, ...] = (
    "participant_id",
    "diagnosis",
    "age",
    "sex",
    "variant",
    "lesion_ml",
    "orientation",
    "spacing_mm",
    "lesion_contrast",
    "lesion_size",
    "noise",
    "seed",
)


def plan_cohort3d(cfg: SynthConfig, seed: int) -> list[SubjectSpec]:
    """``n_subjects_3d_per_class`` subjects per diagnosis of ``labels.DIAGNOSES_3D``."""
    phenotypes = [d for d in DIAGNOSES_3D for _ in range(cfg.n_subjects_3d_per_class)]
    return make_specs(seed, "3d", phenotypes, "sub-")


def subject_files(out_dir: Path | str, subject_id: str) -> dict[str, Path]:
    """Paths of every file of a subject (keys: sequences, then ground-truth names)."""
    out_dir = Path(out_dir)
    anat = out_dir / subject_id / "anat"
    truth = out_dir / TRUTH_DIR / subject_id / "anat"
    files = {seq: anat / f"{subject_id}_{BIDS_SUFFIX[seq]}.nii.gz" for seq in SEQUENCES_3D}
    files.update(
        {
            "lesion_mask": truth / f"{subject_id}_label-lesion_mask.nii.gz",
            "lesion_dseg": truth / f"{subject_id}_label-lesion_dseg.nii.gz",
            "brain_mask": truth / f"{subject_id}_label-brain_mask.nii.gz",
            "tissue_dseg": truth / f"{subject_id}_dseg.nii.gz",
            "bias": truth / f"{subject_id}_biasfield.nii.gz",
            "xfm": truth / f"{subject_id}_xfm.json",
        }
    )
    return files


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a NIfTI-1 volume with qform = sform = ``affine`` (scanner space, mm)."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    save_nifti_atomic(img, path)


def write_json(obj: Any, path: Path) -> None:
    write_text_atomic(path, json.dumps(json_ready(obj), indent=1, sort_keys=True) + "\n")


def write_subject3d(spec: SubjectSpec, out_dir: Path | str, cfg: SynthConfig) -> dict[str, Any]:
    """Synthesize one subject and write its images and ground truth; return a summary."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    vol = synthesize_subject(spec, cfg)
    files = subject_files(out_dir, spec.subject_id)
    for seq in SEQUENCES_3D:
        save_nifti(vol.images[seq], vol.affine, files[seq])
    for key in ("lesion_mask", "lesion_dseg", "brain_mask", "tissue_dseg", "bias"):
        save_nifti(getattr(vol, key), vol.affine, files[key])
    write_json(vol.xfm, files["xfm"])
    grid = vol.model.geometry.grid
    return {
        "subject": spec.subject_id,
        "diagnosis": spec.diagnosis,
        "variant": vol.model.lesion.variant,
        "n_foci": len(vol.model.lesion.foci),
        "lesion_ml": round(vol.lesion_ml, 3),
        "shape": list(grid.shape),
        "spacing_mm": [round(s, 4) for s in grid.spacing],
        "orientation": grid.axcodes,
        "files": {k: p.relative_to(out_dir).as_posix() for k, p in files.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }


def finalize_cohort3d(
    out_dir: Path | str,
    specs: Sequence[SubjectSpec],
    summaries: Sequence[dict[str, Any]],
    cfg: SynthConfig,
    seed: int,
) -> None:
    """Write ``participants.tsv`` and the dataset descriptions (raw and truth)."""
    out_dir = Path(out_dir)
    by_subject = {s["subject"]: s for s in summaries}
    missing = sorted({sp.subject_id for sp in specs} - set(by_subject))
    if missing:
        raise ValueError(f"no summary for subject(s) {missing}")
    rows = []
    for spec in sorted(specs, key=lambda s: s.subject_id):
        summ = by_subject[spec.subject_id]
        rows.append(
            {
                "participant_id": spec.subject_id,
                "diagnosis": spec.diagnosis,
                "age": spec.age,
                "sex": spec.sex,
                "variant": summ["variant"],
                "lesion_ml": f"{summ['lesion_ml']:.3f}",
                "orientation": summ["orientation"],
                "spacing_mm": "x".join(f"{s:g}" for s in summ["spacing_mm"]),
                "lesion_contrast": f"{cfg.lesion_contrast:g}",
                "lesion_size": f"{cfg.lesion_size:g}",
                "noise": f"{cfg.noise:g}",
                "seed": seed,
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "participants.tsv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, PARTICIPANT_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    generated_by = [
        {
            "Name": "brainxai.synth",
            "Version": __version__,
            "Description": "MNI152 2009 (nilearn) anatomy, random pose and smooth warp, "
            "phenotype lesions, T1/T1C+/T2/FLAIR contrast, bias field, "
            "Rician noise",
        }
    ]
    write_json(
        {
            "Name": "brainxai synthetic brain-tumour MRI cohort",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": generated_by,
            "GeneratorConfig": cfg.to_dict(),
            "Seed": seed,
        },
        out_dir / "dataset_description.json",
    )
    write_json(
        {
            "Name": "brainxai synthetic cohort ground truth",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": generated_by,
            "TissueLabels": {str(k): v for k, v in TISSUE_LABELS.items()},
            "LesionLabels": {str(k): v for k, v in LESION_REGIONS.items()},
        },
        out_dir / TRUTH_DIR / "dataset_description.json",
    )


def generate_cohort3d(out_dir: Path | str, cfg: SynthConfig, seed: int) -> list[dict[str, Any]]:
    """Plan, write every subject (serially) and finalize; returns the summaries."""
    specs = plan_cohort3d(cfg, seed)
    summaries = [write_subject3d(spec, out_dir, cfg) for spec in specs]
    finalize_cohort3d(out_dir, specs, summaries, cfg, seed)
    return summaries
