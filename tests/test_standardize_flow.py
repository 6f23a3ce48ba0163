"""The standardize stage end to end: quarantine with reasons, no row dropped, cache skips.

The default test uses only broken volumes (fast): every one is quarantined with its
reason, the stage completes, the manifest keeps every row, and a re-run with one new
subject processes only that subject (the others are cache hits). The slow test standardizes a real
synthetic subject through the flow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.manifest import COLUMNS, empty_manifest, read_table, write_table
from brainxai.standardize import pipeline
from tests.conftest import REPO


def _row(subject: str, seq: str, path: Path, root: Path, ndim: int = 3, mask: str = "") -> dict:
    rel = path.relative_to(root).as_posix()
    return {
        "record_id": hashlib.sha256(rel.encode()).hexdigest()[:16],
        "dataset": "bids",
        "subject": subject,
        "subject_source": "bids",
        "session": "",
        "series": "",
        "modality": "MR",
        "sequence": seq,
        "ndim": ndim,
        "path": rel,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "shape": "",
        "spacing": "",
        "label": "glioma",
        "group": "glioma",
        "mask_path": mask,
        "phash": "",
        "dup_group": "",
        "source_split": "",
        "split": "train",
        "fold": 0,
    }


def _nifti(path: Path, data: np.ndarray, zero_spacing: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    if zero_spacing:
        img.header["pixdim"][3] = 0.0
    nib.save(img, path)
    return path


def _study(root: Path, overrides: dict | None = None) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    smoke = params["profiles"]["smoke"].setdefault("standardize", {})
    smoke["runner"] = {"kind": "thread", "workers": 1}
    smoke.setdefault("config", {})["qc"] = {"montage": True}
    for k, v in (overrides or {}).items():
        smoke["config"][k] = {**smoke["config"].get(k, {}), **v}
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _write_manifest(root: Path, rows: list[dict]) -> None:
    df = pd.concat([empty_manifest(), pd.DataFrame(rows)], ignore_index=True)
    write_table(df.astype(COLUMNS), root / "data/processed/manifest.parquet")


def test_bad_inputs_quarantined_rows_kept_and_cache_skips(tmp_path, monkeypatch):
    from flows.standardize import standardize_flow

    root = _study(tmp_path / "study")
    raw = root / "data/raw"
    rng = np.random.default_rng(0)
    good = rng.random((12, 12, 12)).astype(np.float32) + 1
    nan = good.copy()
    nan[3, 3, 3] = np.nan
    rows = [
        _row("s/nan", "T1C+", _nifti(raw / "nan/t1c.nii.gz", nan), root),
        _row("s/nan", "T2", _nifti(raw / "nan/t2.nii.gz", good), root),
        _row("s/flat", "T1C+", _nifti(raw / "flat/t1c.nii.gz", good[:, :, :1]), root),
        _row("s/zero", "T1C+", _nifti(raw / "zero/t1c.nii.gz", good, zero_spacing=True), root),
        _row("s/img2d", "T1", _nifti(raw / "img2d/a.nii.gz", good), root, ndim=2),
    ]
    _write_manifest(root, rows)
    calls: list[str] = []
    real_load = pipeline.load_volume

    def counting_load(path, kind="intensity"):
        calls.append(str(path))
        return real_load(path, kind)

    monkeypatch.setattr(pipeline, "load_volume", counting_load)
    out = standardize_flow(profile="smoke", root=str(root))
    assert out["sessions"] == 3 and out["quarantined"] == 3 and out["standardized"] == 0
    assert out["quarantine_reasons"] == {"non_finite": 1, "not_3d": 1, "zero_spacing": 1}
    man = read_table(root / "data/processed/manifest_std.parquet")
    assert len(man) == len(rows), "no row may be dropped"
    assert (man["std_status"] == ["quarantined"] * 4 + [""]).all()
    assert man["qc_pass"].isna().tolist() == [False] * 4 + [True]  # NA for the 2D row
    quarantine = read_table(root / "data/processed/standardize_quarantine.parquet")
    assert len(quarantine) == 4 and set(quarantine["subject"]) == {"s/nan", "s/flat", "s/zero"}
    qc = read_table(root / "data/processed/standardize_qc.parquet")
    assert qc.set_index("subject")["reason"].to_dict() == {
        "s/flat": "not_3d",
        "s/nan": "non_finite",
        "s/zero": "zero_spacing",
    }
    n_first = len(calls)
    assert n_first >= 3

    rows.append(_row("s/noref", "T2", _nifti(raw / "noref/t2.nii.gz", good), root))
    _write_manifest(root, rows)
    out = standardize_flow(profile="smoke", root=str(root))
    assert out["quarantine_reasons"]["missing_reference"] == 1 and out["sessions"] == 4
    # the three unchanged subjects are cache hits (no load); the new one fails before loading
    assert len(calls) == n_first, "a re-run must only process the new subject"


@pytest.mark.slow
def test_flow_standardizes_a_synthetic_subject(tmp_path):
    from brainxai.synth import SynthConfig, plan_cohort3d, write_subject3d
    from flows.standardize import standardize_flow

    root = _study(tmp_path / "study")
    cfg = SynthConfig.from_dict(
        {"n_subjects_3d_per_class": 1, "spacing_choices": [[1.0, 1.0, 1.5]],
         "orientation_choices": ["PSR"], "image_size_min": 96, "image_size_max": 200}
    )  # fmt: skip
    spec = plan_cohort3d(cfg, 5)[0]
    cohort = root / "data/raw/cohort3d"
    summary = write_subject3d(spec, cohort, cfg)
    files = {k: cohort / v for k, v in summary["files"].items()}
    mask = files["lesion_mask"].relative_to(root).as_posix()
    rows = [_row("c/" + spec.subject_id, seq, files[seq], root, mask=mask)
            for seq in ("T1C+", "T1", "T2", "FLAIR")]  # fmt: skip
    rows.append(_row("c/bad", "T1C+", _nifti(root / "data/raw/bad.nii.gz",
                                             np.zeros((9, 9, 9))), root))  # fmt: skip
    _write_manifest(root, rows)
    out = standardize_flow(profile="smoke", root=str(root))
    assert out["standardized"] == 1 and out["quarantined"] == 1
    assert out["quarantine_reasons"] == {"empty_image": 1}
    man = read_table(root / "data/processed/manifest_std.parquet")
    ok = man[man["std_status"] == "ok"]
    assert len(ok) == 4 and ok["qc_pass"].all()
    for col in ("std_path", "std_mask_path", "std_lesion_path", "native_mask_path"):
        assert all((root / p).is_file() for p in ok[col])
    assert all((root / f).is_file() for p in ok["xfm_inv"] for f in p.split(";"))
    mask_img = np.asarray(nib.load(root / ok["std_mask_path"].iloc[0]).dataobj)
    assert set(np.unique(mask_img)) <= {0, 1} and mask_img.shape == (99, 117, 95)
    lesion = np.asarray(nib.load(root / ok["std_lesion_path"].iloc[0]).dataobj)
    assert 0 < lesion.sum() and set(np.unique(lesion)) <= {0, 1}
