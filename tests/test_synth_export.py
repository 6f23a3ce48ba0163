"""Synthetic exports: BIDS-like 3D cohort and Kaggle-layout 2D slices (files on disk)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainxai.labels import (
    DIAGNOSES_3D,
    KAGGLE_GROUPS,
    SEQUENCES_3D,
    kaggle_classes,
    kaggle_folder,
    parse_kaggle_folder,
)
from brainxai.synth import (
    SynthConfig,
    generate_cohort3d,
    generate_kaggle2d,
    plan_cohort3d,
    subject_files,
    synthesize_subject,
    write_subject3d,
)

nib = pytest.importorskip("nibabel")

CFG = SynthConfig(
    n_subjects_3d_per_class=1,
    n_subjects_2d_per_group=1,
    slices_per_subject=2,
    spacing_choices=((1.5, 1.5, 1.5), (1.25, 1.25, 2.0)),
    image_size_min=96,
    image_size_max=200,
)
SEED = 20261123


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("cohort3d")
    return out, generate_cohort3d(out, CFG, SEED)


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    base = tmp_path_factory.mktemp("kaggle")
    out, meta = base / "images", base / "meta"
    return out, meta, generate_kaggle2d(out, meta, CFG, SEED)


# --- 3D cohort ---------------------------------------------------------------------------


def test_cohort_layout_and_participants(cohort):
    out, summaries = cohort
    assert len(summaries) == len(DIAGNOSES_3D) * CFG.n_subjects_3d_per_class
    with open(out / "participants.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["participant_id"] for r in rows] == sorted(s["subject"] for s in summaries)
    assert {
        "participant_id",
        "diagnosis",
        "age",
        "sex",
        "lesion_contrast",
        "lesion_size",
        "noise",
    } <= set(rows[0])
    assert sorted(r["diagnosis"] for r in rows) == sorted(DIAGNOSES_3D)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["BIDSVersion"] and desc["DatasetType"] == "raw"
    assert SynthConfig.from_dict(desc["GeneratorConfig"]) == CFG
    assert (out / "derivatives" / "truth" / "dataset_description.json").is_file()
    for s in summaries:
        sid = s["subject"]
        names = {p.name for p in (out / sid / "anat").iterdir()}
        assert names == {
            f"{sid}_T1w.nii.gz",
            f"{sid}_ce-gd_T1w.nii.gz",
            f"{sid}_T2w.nii.gz",
            f"{sid}_FLAIR.nii.gz",
        }
        for path in subject_files(out, sid).values():
            assert path.is_file(), path


def test_cohort_files_share_grid_and_encode_orientation(cohort):
    out, summaries = cohort
    for s in summaries:
        files = subject_files(out, s["subject"])
        xfm = json.loads(files["xfm"].read_text())
        affine = np.asarray(xfm["grid"]["affine"])
        assert "".join(nib.aff2axcodes(affine)) == s["orientation"]
        assert s["orientation"] in CFG.orientation_choices
        for key, path in files.items():
            if key == "xfm":
                continue
            img = nib.load(path)
            assert np.allclose(img.affine, affine, atol=1e-4), (key, s["subject"])
            assert list(img.shape) == xfm["grid"]["shape"]
            assert np.allclose(img.header.get_zooms(), s["spacing_mm"], atol=1e-4)
            expected = {
                "bias": np.float32,
                "lesion_mask": np.uint8,
                "lesion_dseg": np.uint8,
                "brain_mask": np.uint8,
                "tissue_dseg": np.uint8,
            }.get(key, np.int16)
            assert img.get_data_dtype() == expected, key
        mask = np.asarray(nib.load(files["lesion_mask"]).dataobj)
        assert set(np.unique(mask)) == {0, 1}  # every 3D diagnosis has a lesion
        assert s["lesion_ml"] == pytest.approx(mask.sum() * np.prod(s["spacing_mm"]) / 1000)


def test_cohort_is_byte_identical_per_subject_and_seed_sensitive(cohort, tmp_path):
    out, _ = cohort
    spec = plan_cohort3d(CFG, SEED)[-1]  # generated alone, out of order
    write_subject3d(spec, tmp_path, CFG)
    for key, path in subject_files(tmp_path, spec.subject_id).items():
        ref = subject_files(out, spec.subject_id)[key]
        assert path.read_bytes() == ref.read_bytes(), key
    # in memory: the same arrays as on disk
    vol = synthesize_subject(spec, CFG)
    files = subject_files(out, spec.subject_id)
    for seq in SEQUENCES_3D:
        assert np.array_equal(np.asarray(nib.load(files[seq]).dataobj), vol.images[seq])
    assert np.array_equal(np.asarray(nib.load(files["bias"]).dataobj), vol.bias)
    assert np.array_equal(np.asarray(nib.load(files["lesion_dseg"]).dataobj), vol.lesion_dseg)
    # another seed: another subject
    other = plan_cohort3d(CFG, SEED + 1)[-1]
    vol2 = synthesize_subject(other, CFG)
    assert vol2.images["T1"].shape != vol.images["T1"].shape or not np.array_equal(
        vol2.images["T1"], vol.images["T1"]
    )


# --- 2D Kaggle-layout set ----------------------------------------------------------------


def _rows(meta: Path) -> list[dict]:
    with open(meta / "subjects.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_kaggle_layout_has_the_17_public_folders(kaggle):
    out, meta, rows = kaggle
    folders = {p.name for p in out.iterdir()}
    expected = {kaggle_folder(*c.split(" ", 1)) for c in kaggle_classes()}
    assert len(expected) == 17 and folders == expected
    assert "NORMAL T1C+" not in folders
    assert all(parse_kaggle_folder(f) is not None for f in folders)
    assert not (out / "subjects.csv").exists() and not (out / "masks").exists()
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == len(rows) == len(_rows(meta))
    assert {p.suffix for p in files} == {".jpg", ".png"}
    for p in files:  # names reveal nothing about the subject
        assert re.fullmatch(r"[0-9a-f]{16}\.(jpg|png)", p.name)


def test_kaggle_csv_images_and_masks(kaggle):
    out, meta, _ = kaggle
    rows = _rows(meta)
    assert list(rows[0]) == ["path", "subject", "group", "sequence", "slice_index", "mask_path"]
    assert rows == sorted(rows, key=lambda r: r["path"])
    per_subject: dict[str, set] = {}
    for r in rows:
        image = Image.open(out / r["path"])
        mask = np.asarray(Image.open(meta / r["mask_path"]))
        assert image.mode == "L"
        w, h = image.size
        assert CFG.image_size_min <= min(w, h) and max(w, h) <= CFG.image_size_max
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert parse_kaggle_folder(Path(r["path"]).parent.name) == (r["group"], r["sequence"])
        if r["group"] == "normal":
            assert mask.max() == 0
        else:  # the slice goes through the lesion
            assert (mask > 0).sum() > 10, r
            pixels = np.asarray(image, dtype=float)
            assert pixels[mask > 0].std() >= 0 and pixels.max() > 50
        per_subject.setdefault(r["subject"], set()).add((r["sequence"], r["slice_index"]))
    assert len(per_subject) == len(KAGGLE_GROUPS) * CFG.n_subjects_2d_per_group
    for subject_slices in per_subject.values():  # several slices per subject and sequence
        assert len(subject_slices) >= 2 * CFG.slices_per_subject


def test_kaggle_export_is_deterministic(kaggle, tmp_path):
    out, meta, _ = kaggle
    out2, meta2 = tmp_path / "images", tmp_path / "meta"
    generate_kaggle2d(out2, meta2, CFG, SEED)
    assert _tree(out2) == _tree(out)
    assert _tree(meta2) == _tree(meta)


def test_kaggle_meta_dir_must_be_outside_the_image_tree(tmp_path):
    with pytest.raises(ValueError, match="meta_dir"):
        generate_kaggle2d(tmp_path, tmp_path / "meta", CFG, SEED)
