"""The manifest: one table every stage reads and extends.

One row per image file (a 2D slice image or a 3D volume). Ingestion writes the
columns in :data:`COLUMNS`; the split step fills ``split`` and ``fold``; later
stages add their own columns (e.g. ``std_path`` after standardization) and must
never drop rows. Files that fail validation are not in the manifest but in the
quarantine table (:data:`QUARANTINE_COLUMNS`), so that ``ingested + quarantined
== found`` can always be checked.

No patient name, ID or birth date is ever stored: ``subject`` is the data set's
own pseudonymous id, or a salted hash for DICOM.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from brainxai.atomic import to_parquet_atomic

#: Column name -> pandas dtype of the manifest written by ingestion.
COLUMNS: dict[str, str] = {
    "record_id": "string",  # stable id: sha256 of (dataset, relative path)[:16]
    "dataset": "string",  # source layout: kaggle17 | kermany | bids | dicom
    "subject": "string",  # patient id (pseudonymous); near-dup group id if unknown
    "subject_source": "string",  # sidecar | filename | bids | dicom | phash_group | embedding_group
    "session": "string",
    "series": "string",  # series id (BIDS run/acq or DICOM SeriesInstanceUID hash)
    "modality": "string",  # MR
    "sequence": "string",  # T1 | T1C+ | T2 | FLAIR
    "ndim": "int64",  # 2 or 3
    "path": "string",  # path relative to the ingestion root (posix)
    "sha256": "string",
    "shape": "string",  # e.g. "256x256" or "99x117x95"
    "spacing": "string",  # mm, e.g. "1x1x2" or "0.3125x0.3125x2.5" ("" for 2D images without one)
    "label": "string",  # canonical class (``brainxai.labels``)
    "group": "string",  # tumour group / diagnosis, used for stratification
    "mask_path": "string",  # ground-truth lesion mask when known, else ""
    "phash": "string",  # perceptual hash (hex)
    "dup_group": "string",  # id shared by exact/near duplicates ("" if none)
    "source_split": "string",  # split given by the source layout (e.g. Kermany train/test)
    "split": "string",  # train | val | test (filled by the split step)
    "fold": "int64",  # stratified patient-level k-fold index (-1 before the split step)
}

QUARANTINE_COLUMNS: dict[str, str] = {
    "dataset": "string",
    "path": "string",
    "reason": "string",  # short machine-readable reason (see ingestion)
    "detail": "string",  # human-readable explanation
}

SPLITS: tuple[str, ...] = ("train", "val", "test")


def empty_manifest() -> pd.DataFrame:
    """An empty manifest with the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in QUARANTINE_COLUMNS.items()})


def conform(df: pd.DataFrame, columns: dict[str, str] = COLUMNS) -> pd.DataFrame:
    """Order and type the contract columns; extra columns are kept after them."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}")
    extra = [c for c in df.columns if c not in columns]
    out = df[list(columns) + extra].copy()
    return out.astype({c: t for c, t in columns.items()})


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest/quarantine table as parquet, atomically (row order kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_parquet_atomic(df.reset_index(drop=True), path, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)
