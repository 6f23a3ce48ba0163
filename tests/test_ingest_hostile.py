"""Issue 16, items 3-7: hostile inputs are quarantined with a reason, never fatal.

Every file here is built so its fault is known: a singular affine (zero ``srow_y``,
written byte by byte because nibabel refuses to save one), a header declaring 512^3
float32 in a few kB, symbolic-link loops / dangling links / links out of the root,
a source list with a missing root and a duplicate name, a 0-byte ``.dcm`` and a DICOM
export whose folder is named after the patient.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from brainxai.faults import raw_nifti
from brainxai.ingest import IngestConfig, ingest
from brainxai.ingest.sources import SourceError, check_sources, dvc_uncovered
from tests.test_ingest_dicom import PHI, SALT, write_series
from tests.test_ingest_kaggle import save, smooth

CFG = IngestConfig(min_dim_3d=8, min_side_2d=32)


def bids_root(tmp_path: Path, subjects: list[str]) -> Path:
    root = tmp_path / "bids"
    root.mkdir()
    rows = "".join(f"{s}\tglioma\n" for s in subjects)
    (root / "participants.tsv").write_text("participant_id\tdiagnosis\n" + rows)
    return root


def reasons(res) -> dict[str, str]:
    names = res.quarantine["path"].map(lambda p: Path(p).name)
    return dict(zip(names, res.quarantine["reason"], strict=True))


def test_singular_affine_and_oversized_header_are_quarantined_before_reading(tmp_path):
    root = bids_root(tmp_path, ["sub-01", "sub-02", "sub-03"])
    eye = np.eye(4)[:3]
    good = raw_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", eye)
    singular = eye.copy()
    singular[1] = 0.0  # zero srow_y: the failure measured in standardize (issue 16.3)
    raw_nifti(root / "sub-02" / "anat" / "sub-02_T1w.nii.gz", singular)
    # 512^3 float32 = 512 MiB declared, a few kB on disk (16 kB of data, then EOF)
    huge = raw_nifti(
        root / "sub-03" / "anat" / "sub-03_T1w.nii.gz", eye, shape=(512,) * 3, data=bytes(16384)
    )
    assert huge.stat().st_size < 10_000
    res = ingest(root, "bids", CFG, base_dir=tmp_path, work_dir=tmp_path / "w")
    assert reasons(res) == {"sub-02_T1w.nii.gz": "bad_affine", "sub-03_T1w.nii.gz": "too_large"}
    assert list(res.manifest["path"].map(lambda p: Path(p).name)) == [good.name]
    detail = res.quarantine.set_index("reason")["detail"]
    assert "singular" in detail["bad_affine"] and "512" in detail["too_large"]
    # the cap is a knob: raise it and the same file fails later, on its truncated data
    big = IngestConfig(min_dim_3d=8, max_bytes_3d=1 << 30)
    again = ingest(root, "bids", big, base_dir=tmp_path, work_dir=tmp_path / "w2")
    assert reasons(again)["sub-03_T1w.nii.gz"] == "truncated"


def test_symlink_loop_dangling_and_outside_root_are_skipped_with_a_reason(tmp_path):
    root = tmp_path / "kaggle"
    folder = root / "Glioma T1"
    for i in range(3):
        save(smooth(i), folder / f"g{i}.png")
    outside = save(smooth(9), tmp_path / "elsewhere" / "secret.png")
    os.symlink(folder / "loop.png", folder / "loop.png")
    os.symlink(folder / "gone.png", folder / "dangling.png")
    os.symlink(outside, folder / "outside.png")
    os.symlink(folder / "g0.png", folder / "inside_link.png")  # inside the root: read
    res = ingest(root, "kaggle17", CFG, base_dir=tmp_path)
    r = reasons(res)
    assert r["loop.png"] == "symlink_loop"
    assert r["dangling.png"] == "dangling_symlink"
    assert r["outside.png"] == "symlink_outside_root"
    assert r["inside_link.png"] == "duplicate"  # followed, then found to be a copy of g0
    assert len(res.manifest) == 3 and res.found == len(res.manifest) + len(res.quarantine)
    followed = ingest(
        root, "kaggle17", IngestConfig(min_side_2d=32, follow_symlinks_outside_root=True), tmp_path
    )
    assert "outside.png" not in reasons(followed) and len(followed.manifest) == 4


def test_2d_pixel_cap_is_read_from_the_header(tmp_path):
    root = tmp_path / "kaggle"
    save(smooth(1, 96), root / "Glioma T1" / "big.png")
    save(smooth(2, 40), root / "Glioma T1" / "small.png")
    cfg = IngestConfig(min_side_2d=32, max_pixels_2d=50 * 50)
    res = ingest(root, "kaggle17", cfg, base_dir=tmp_path)
    assert reasons(res) == {"big.png": "too_large"}
    assert len(res.manifest) == 1


def test_source_list_is_rejected_before_any_work(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    ok = {"name": "a", "layout": "kaggle17", "root": "data/a"}
    check_sources([ok], tmp_path)
    bad = [
        ok,
        {"name": "a", "layout": "kaggle17", "root": "data/a"},
        {"name": "b", "layout": "kaggle17", "root": "data/missing"},
        {"name": "c", "layout": "nifti-zoo", "root": "data/a", "colour": "red"},
        {"name": "../d", "layout": "bids", "root": "data/a", "sidecar": "data/a/none.tsv"},
    ]
    with pytest.raises(SourceError) as err:
        check_sources(bad, tmp_path)
    msg = str(err.value)
    for needle in (
        "duplicate name",
        "data/missing is not an existing directory",
        "layout 'nifti-zoo'",
        "unknown keys ['colour']",
        "name must match",
        "sidecar data/a/none.tsv is not an existing file",
    ):
        assert needle in msg, (needle, msg)
    with pytest.raises(SourceError, match="no sources"):
        check_sources([], tmp_path)


def test_every_source_must_be_a_dvc_dependency_of_ingest(tmp_path):
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text(yaml.safe_dump({"stages": {"ingest": {"cmd": "x", "deps": ["data/raw"]}}}))
    sources = [
        {"name": "a", "layout": "kaggle17", "root": "data/raw/a"},
        {"name": "b", "layout": "bids", "root": "data/user/b", "sidecar": "data/raw/b.tsv"},
        {"name": "c", "layout": "kaggle17", "root": "data/rawish"},  # a prefix is not a parent
    ]
    assert dvc_uncovered(sources, dvc) == ["data/user/b", "data/rawish"]
    repo = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert dvc_uncovered(params["ingest"]["sources"], repo / "dvc.yaml") == []


def test_empty_dcm_and_patient_named_folders_leave_no_phi(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINXAI_DICOM_SALT", SALT)
    root = tmp_path / "export"
    folder = root / f"Doe_Jane_{PHI['PatientID']}" / "series1"
    paths = write_series(folder, PHI, "AX T1 POST GD")
    raw = paths[0].read_bytes()
    paths[0].write_bytes(raw[: len(raw) - 3000])  # quarantined: its path is stored
    (folder / "zero.dcm").write_bytes(b"")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"PatientID": [PHI["PatientID"]], "diagnosis": ["Glioma"]}).to_csv(
        labels, index=False
    )
    res = ingest(
        root,
        "dicom",
        IngestConfig(min_dim_3d=4),
        tmp_path,
        work_dir=tmp_path / "w",
        labels_csv=labels,
    )
    q = res.quarantine
    assert sorted(q["reason"]) == ["empty_file", "truncated"]
    assert all(not Path(p).is_absolute() for p in q["path"])
    assert all(p.startswith("export/phi-") for p in q["path"]), list(q["path"])
    assert q.loc[q["reason"] == "truncated", "path"].iloc[0].endswith("/series1/im000.dcm")
    text = q.to_csv() + res.manifest.to_csv()
    for secret in ("Doe", "Jane", PHI["PatientID"], "777123"):
        assert secret not in text


def test_standardize_quarantines_a_bad_affine_and_one_subjects_error(tmp_path, monkeypatch):
    """Issue 16.3: ANTs' plain error on a singular direction becomes ``bad_affine``; any
    unexpected error of one subject is that subject's quarantine, not the stage's crash."""
    import tasks.standardize as ts
    from brainxai.standardize import BadInput
    from brainxai.standardize.orient import load_volume

    singular = np.eye(4)[:3].copy()
    singular[1] = 0.0
    path = raw_nifti(tmp_path / "s.nii", singular)
    with pytest.raises(BadInput) as err:
        load_volume(path)
    assert err.value.reason == "bad_affine"

    def explode(images, out_dir, conf, lesion_mask=None):
        raise KeyError("no such sequence")

    monkeypatch.setattr(ts, "standardize_subject", explode)
    cfg = ts.StandardizeConfig().to_dict()
    rec = ts.standardize_one.fn("sub-x", {"T1": str(path)}, {"T1": "0"}, cfg, str(tmp_path), 1)
    assert (rec["status"], rec["reason"], rec["files"]) == ("quarantined", "processing_error", [])
    assert "KeyError" in rec["detail"]

    def disk_error(images, out_dir, conf, lesion_mask=None):
        raise OSError("share went away")

    monkeypatch.setattr(ts, "standardize_subject", disk_error)
    with pytest.raises(OSError):  # transient: raised so Prefect retries it
        ts.standardize_one.fn("sub-x", {"T1": str(path)}, {"T1": "0"}, cfg, str(tmp_path), 1)
