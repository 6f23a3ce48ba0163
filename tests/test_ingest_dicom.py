"""dicom layout: series grouping, slice sorting, compressed/broken slices, de-identification."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless, generate_uid

from brainxai.ingest import IngestConfig, ingest
from brainxai.ingest.datacard import data_card
from brainxai.ingest.dicom import sequence_from_text

SALT = "test-salt"
CFG = IngestConfig(min_dim_3d=4)
PHI = {"PatientName": "Doe^Jane", "PatientID": "PID-777123", "PatientBirthDate": "19600101"}
PHI2 = {"PatientName": "Roe^Richard", "PatientID": "PID-555999", "PatientBirthDate": "19711231"}


def write_series(
    folder: Path, phi: dict, desc: str, n: int = 5, compress: int | None = None, blob: bool = False
) -> list[Path]:
    """n slices of MR_small (64x64) 2.5 mm apart, written in shuffled order.

    Slice k (in z order) holds the value 100*(k+1); file names and InstanceNumbers
    are scrambled so only ImagePositionPatient gives the right order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmpl = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    uid, study = generate_uid(), generate_uid()
    order = np.random.default_rng(len(desc)).permutation(n)
    paths = []
    for i, k in enumerate(order):
        ds = copy.deepcopy(tmpl)
        for key, val in phi.items():
            setattr(ds, key, val)
        ds.SeriesInstanceUID, ds.StudyInstanceUID = uid, study
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = desc
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * float(k)]
        ds.InstanceNumber = int(n - i)
        arr = np.full((64, 64), 100 * (k + 1), dtype=np.int16)
        arr[:8, :8] += np.arange(8, dtype=np.int16)  # not constant
        if blob:
            arr[20:60, 4:30] += 250
        ds.PixelData = arr.tobytes()
        if compress is not None and k == compress:
            ds.compress(RLELossless)
        p = folder / f"im{i:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


@pytest.fixture(autouse=True)
def salt_env(monkeypatch):
    """The salt comes from the environment (never from a config)."""
    monkeypatch.setenv("BRAINXAI_DICOM_SALT", SALT)


@pytest.fixture
def dicom_tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "dicom"
    write_series(root / "a", PHI, "AX T1 POST GD", compress=2)
    broken = write_series(root / "b", PHI, "AX T2 FSE")
    raw = broken[1].read_bytes()
    broken[1].write_bytes(raw[: len(raw) - 3000])  # pixel data cut short
    write_series(root / "c", PHI2, "FLAIR AX", blob=True)  # patient without label
    (root / "garbage.dcm").write_bytes(np.random.default_rng(1).bytes(1000))
    (root / "README.txt").write_text("export notes")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"PatientID": [PHI["PatientID"]], "diagnosis": ["Glioma"]}).to_csv(
        labels, index=False
    )
    return root, labels


def test_dicom_series(dicom_tree, tmp_path, caplog):
    root, labels = dicom_tree
    caplog.set_level(logging.DEBUG)
    work = tmp_path / "work"
    res = ingest(root, "dicom", CFG, base_dir=tmp_path, work_dir=work, labels_csv=labels)
    man, q = res.manifest, res.quarantine
    assert (res.found, len(man), len(q), res.ignored) == (4, 1, 3, 1)
    assert sorted(q["reason"]) == ["decode_error", "truncated", "unknown_label"]
    assert set(q.loc[q["reason"] == "truncated", "path"].str[:12]) == {"dicom/b/im00"}
    row = man.iloc[0]
    expected = "dcm-" + hashlib.sha256(f"{SALT}\0{PHI['PatientID']}".encode()).hexdigest()[:16]
    assert row["subject"] == expected and row["subject_source"] == "dicom"
    assert (row["label"], row["group"], row["sequence"]) == ("glioma", "glioma", "T1C+")
    assert (row["shape"], row["spacing"], row["ndim"]) == ("64x64x5", "0.3125x0.3125x2.5", 3)
    assert row["path"].startswith("work/" + expected + "/") and row["path"].endswith(".nii.gz")
    vol = np.asanyarray(nib.load(tmp_path / row["path"]).dataobj)
    assert [int(vol[40, 40, z]) for z in range(5)] == [100, 200, 300, 400, 500]
    # de-identification: nothing that leaves ingestion carries PHI
    card, md = data_card(man, q, res.found, res.ignored, res.notes)
    texts = [
        man.to_csv(),
        q.to_csv(),
        json.dumps(card),
        md,
        caplog.text,
        gzip.decompress((tmp_path / row["path"]).read_bytes()).decode("latin-1"),
        " ".join(p.as_posix() for p in work.rglob("*")),
    ]
    for secret in [*PHI.values(), *PHI2.values(), "Doe", "Jane", "777123", "1960"]:
        for text in texts:
            assert secret not in text


def test_dicom_salt_changes_subject_and_is_required(dicom_tree, tmp_path, monkeypatch):
    root, labels = dicom_tree
    monkeypatch.setenv("BRAINXAI_DICOM_SALT", "other")
    other = ingest(
        root, "dicom", CFG, base_dir=tmp_path, work_dir=tmp_path / "w2", labels_csv=labels
    )
    monkeypatch.setenv("BRAINXAI_DICOM_SALT", SALT)
    assert other.manifest["subject"].iloc[0].startswith("dcm-")
    first = ingest(
        root, "dicom", CFG, base_dir=tmp_path, work_dir=tmp_path / "w1", labels_csv=labels
    )
    assert other.manifest["subject"].iloc[0] != first.manifest["subject"].iloc[0]
    monkeypatch.delenv("BRAINXAI_DICOM_SALT")
    with pytest.raises(ValueError, match="salt"):
        ingest(root, "dicom", CFG, tmp_path, work_dir=tmp_path / "w3")
    # ... or from the salt file under the study root (outside git), never from params
    (tmp_path / ".brainxai").mkdir()
    (tmp_path / ".brainxai" / "dicom_salt").write_text(SALT + "\n")
    from_file = ingest(root, "dicom", CFG, tmp_path, work_dir=tmp_path / "w4", labels_csv=labels)
    assert from_file.manifest["subject"].iloc[0] == first.manifest["subject"].iloc[0]
    with pytest.raises(ValueError, match="BRAINXAI_DICOM_SALT"):
        IngestConfig.from_dict({"dicom_salt": SALT})


def test_dicom_without_labels_keeps_unlabelled_when_allowed(dicom_tree, tmp_path):
    root, _ = dicom_tree
    cfg = IngestConfig(min_dim_3d=4, require_label=False)
    res = ingest(root, "dicom", cfg, base_dir=tmp_path, work_dir=tmp_path / "w")
    assert (res.found, len(res.manifest)) == (4, 2), res.quarantine
    assert sorted(res.manifest["sequence"]) == ["FLAIR", "T1C+"]
    assert (res.manifest["label"] == "").all()


@pytest.mark.parametrize(
    ("desc", "seq"),
    [
        ("AX T1 POST GD", "T1C+"),
        ("t1_mprage_sag", "T1"),
        ("T1+C AX", "T1C+"),
        ("T2 FLAIR AX", "FLAIR"),
        ("t2_tse_tra", "T2"),
        ("T1W_SE CE", "T1C+"),
        ("DWI", ""),
    ],
)
def test_sequence_heuristics(desc, seq):
    assert sequence_from_text(desc) == seq
