"""bids layout: participants.tsv labels, sequences from suffixes, masks from derivatives."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brainxai.ingest import IngestConfig, ingest
from brainxai.ingest.bids import parse_name

CFG = IngestConfig(min_dim_3d=8)
SHAPE = (20, 22, 24)


def volume(seed: int, shape=SHAPE) -> np.ndarray:
    small = np.random.default_rng(seed).random((4, 4, 4))
    idx = [np.linspace(0, 3, n).round().astype(int) for n in shape[:3]]
    return small[np.ix_(*idx)].astype(np.float32) * 100


def save_nii(data: np.ndarray, path: Path, zooms=(1.0, 1.0, 2.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(tuple(zooms) + (1.0,) * (data.ndim - 3))
    nib.save(img, path)
    return path


def bids_tree(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "participants.tsv").write_text(
        "participant_id\tage\tdiagnosis\nsub-01\t40\tglioma\nsub-02\t50\tPCNSL\n"
        "sub-03\t60\tunicorn\nsub-04\t70\tn/a\nsub-05\t30\tglioma\n"
    )
    (root / "dataset_description.json").write_text("{}")
    a = root / "sub-01" / "anat"
    save_nii(volume(1), a / "sub-01_ce-gd_T1w.nii.gz")
    save_nii(volume(2), a / "sub-01_T2w.nii.gz")
    save_nii(volume(3), a / "sub-01_FLAIR.nii.gz")
    (a / "sub-01_T2w.json").write_text("{}")
    save_nii(np.stack([volume(4), volume(5)], -1), a / "sub-01_T1w.nii.gz")  # 4D
    save_nii(volume(6), root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz")
    b = root / "sub-02" / "ses-01" / "anat"
    save_nii(volume(7), b / "sub-02_ses-01_run-1_T1w.nii")
    full = save_nii(volume(8), b / "sub-02_ses-01_ce-gd_T1w.nii.gz").read_bytes()
    (b / "sub-02_ses-01_ce-gd_T1w.nii.gz").write_bytes(full[: len(full) // 2])
    save_nii(volume(9), root / "sub-03" / "anat" / "sub-03_T1w.nii.gz")
    save_nii(volume(10), root / "sub-04" / "anat" / "sub-04_T1w.nii.gz")
    c = root / "sub-05" / "anat"
    nan = volume(11)
    nan[3, 3, 3] = np.nan
    save_nii(nan, c / "sub-05_T1w.nii.gz")
    save_nii(np.zeros(SHAPE, np.float32), c / "sub-05_T2w.nii.gz")
    bad = nib.Nifti1Image(volume(12), np.eye(4))
    bad.header["pixdim"][1:4] = (1.0, 0.0, 1.0)
    nib.save(bad, c / "sub-05_FLAIR.nii.gz")
    d = root / "derivatives" / "truth" / "sub-01" / "anat"
    save_nii((volume(1) > 50).astype(np.uint8), d / "sub-01_label-lesion_mask.nii.gz")
    save_nii(volume(13), root / "derivatives" / "other" / "sub-01_T1w.nii.gz")
    return root


def test_parse_name():
    assert parse_name("sub-01_ses-2_acq-fast_ce-gd_run-1_T1w.nii.gz") == {
        "sub": "sub-01",
        "ses": "ses-2",
        "sequence": "T1C+",
        "series": "acq-fast_run-1",
    }
    assert parse_name("sub-01_FLAIR.nii")["sequence"] == "FLAIR"
    assert parse_name("sub-01_dwi.nii.gz") is None


def test_bids_rows_and_reasons(tmp_path):
    root = bids_tree(tmp_path / "bids")
    res = ingest(root, "bids", CFG, base_dir=root)
    man, q = res.manifest, res.quarantine
    assert (res.found, len(man), len(q), res.ignored) == (12, 4, 8, 2)
    assert dict(zip(q["path"], q["reason"], strict=True)) == {
        "sub-01/anat/sub-01_T1w.nii.gz": "bad_shape",
        "sub-01/dwi/sub-01_dwi.nii.gz": "bad_layout",
        "sub-02/ses-01/anat/sub-02_ses-01_ce-gd_T1w.nii.gz": "truncated",
        "sub-03/anat/sub-03_T1w.nii.gz": "unknown_label",
        "sub-04/anat/sub-04_T1w.nii.gz": "unknown_label",
        "sub-05/anat/sub-05_FLAIR.nii.gz": "bad_spacing",
        "sub-05/anat/sub-05_T1w.nii.gz": "nonfinite",
        "sub-05/anat/sub-05_T2w.nii.gz": "constant_image",
    }
    by = man.set_index("path")
    assert list(by.index) == [
        "sub-01/anat/sub-01_FLAIR.nii.gz",
        "sub-01/anat/sub-01_T2w.nii.gz",
        "sub-01/anat/sub-01_ce-gd_T1w.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_run-1_T1w.nii",
    ]
    assert list(by["sequence"]) == ["FLAIR", "T2", "T1C+", "T1"]
    assert list(by["label"]) == ["glioma", "glioma", "glioma", "pcnsl"]
    assert list(by["subject"]) == ["sub-01"] * 3 + ["sub-02"]
    assert (by["subject_source"] == "bids").all() and (by["ndim"] == 3).all()
    assert list(by["session"]) == ["", "", "", "ses-01"]
    assert by["series"].iloc[3] == "run-1"
    assert (by["shape"] == "20x22x24").all() and (by["spacing"] == "1x1x2").all()
    mask = "derivatives/truth/sub-01/anat/sub-01_label-lesion_mask.nii.gz"
    assert list(by["mask_path"]) == [mask] * 3 + [""]
    assert by["phash"].str.fullmatch(r"[0-9a-f]{48}").all()
    assert (by["dup_group"] == "").all()


def test_bids_allowed_labels_override(tmp_path):
    root = bids_tree(tmp_path / "bids")
    cfg = IngestConfig(min_dim_3d=8, allowed_labels=("glioma", "pcnsl", "unicorn"))
    res = ingest(root, "bids", cfg, base_dir=root)
    assert len(res.manifest) == 5 and "sub-03" in set(res.manifest["subject"])
