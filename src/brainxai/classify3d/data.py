"""The cohort of the 3D classifier: one volume per patient, masks per variant, MONAI datasets.

:func:`select_patients` reads the standardized manifest (``manifest_std.parquet``) and keeps
one row per (subject, session) — the unit of the folds — of ``data.sequence`` (T1C+)
whose standardization passed QC and whose label is a class; every other session is listed
in the exclusion table with its
reason (nothing dropped silently: ``n_sessions = n_used + n_excluded``).
:func:`attach_pseudolabels` joins the pseudo-labelling stage's mask paths; a patient without
a pseudo-label row gets no mask path and is reported (never replaced by the true lesion).
:func:`make_dataset` builds MONAI ``CacheDataset`` (memory) or ``PersistentDataset`` (disk):
volumes are decoded and resized once, only the random augmentations run every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

from brainxai.classify3d.config import PSEUDO_MASKS, TRUE_MASK, DataConfig
from brainxai.classify3d.transforms import IMAGE, MASK

PATIENT_COLUMNS = (
    "record_id", "subject", "session", "label", "y", "split", "image_path", TRUE_MASK,
)  # fmt: skip


def select_patients(
    manifest: pd.DataFrame, cfg: DataConfig, class_names: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(patients, excluded)``: usable sessions (one row each) and the rest with a reason."""
    three_d = manifest[manifest["ndim"] == 3]
    rows: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    for (subject, session), grp in three_d.groupby(["subject", "session"], sort=True):
        seq = grp[grp["sequence"].astype(str) == cfg.sequence]
        base = {"subject": str(subject), "session": str(session)}
        label = str(grp[cfg.label_column].iloc[0])
        split = str(grp["split"].iloc[0])
        reason = ""
        if seq.empty:
            reason = f"no {cfg.sequence} volume"
        else:
            r = seq.iloc[0]
            status = str(r.get("std_status", "") or "")
            qc = r.get("qc_pass", pd.NA)
            if status != "ok":
                reason = f"standardization {status or 'missing'}: {r.get('std_reason', '')}"
            elif qc is pd.NA or not bool(qc):
                reason = f"standardization QC failed: {r.get('std_reason', '')}"
            elif not str(r.get("std_path", "") or ""):
                reason = f"no standardized {cfg.sequence} path"
            elif label not in class_names:
                reason = f"label {label!r} is not one of {list(class_names)}"
        if reason:
            excluded.append({**base, "label": label, "split": split, "reason": reason})
            continue
        rows.append(
            {
                **base,
                "record_id": str(r["record_id"]),
                "label": label,
                "y": int(list(class_names).index(label)),
                "split": split,
                "image_path": str(r["std_path"]),
                TRUE_MASK: str(r.get(TRUE_MASK, "") or ""),
            }
        )
    patients = pd.DataFrame(rows, columns=list(PATIENT_COLUMNS))
    return patients.reset_index(drop=True), pd.DataFrame(
        excluded, columns=["subject", "session", "label", "split", "reason"]
    )


def attach_pseudolabels(
    patients: pd.DataFrame, pseudolabels: pd.DataFrame | None
) -> tuple[pd.DataFrame, list[str]]:
    """Add ``coarse_path``/``refined_path``/``union_path`` (``""`` when absent) + notes."""
    out = patients.copy()
    notes: list[str] = []
    if pseudolabels is None:
        for col in PSEUDO_MASKS:
            out[col] = ""
        out["pseudo_empty"] = False
        return out, ["pseudolabels.parquet absent: mask variants skipped"]
    keep = ["subject", "session", *PSEUDO_MASKS]
    pl = pseudolabels.copy()
    pl["subject"] = pl["subject"].astype(str)
    pl["session"] = pl["session"].fillna("").astype(str)
    pl["pseudo_empty"] = pl.get("empty", pd.Series(False, index=pl.index)).fillna(False)
    out = out.merge(pl[[*keep, "pseudo_empty"]], on=["subject", "session"], how="left")
    for col in PSEUDO_MASKS:
        out[col] = out[col].fillna("").astype(str)
    out["pseudo_empty"] = out["pseudo_empty"].fillna(False).astype(bool)
    missing = out.loc[out["union_path"] == "", "subject"].tolist()
    if missing:
        notes.append(f"{len(missing)} patients without a pseudo-label: {missing[:10]}")
    if int(out["pseudo_empty"].sum()):
        notes.append(f"{int(out['pseudo_empty'].sum())} patients with an empty pseudo-label")
    return out, notes


def records(patients: pd.DataFrame, root: str | Path, mask_column: str | None) -> list[dict]:
    """MONAI data dicts: absolute image (and mask) paths, label index, patient ids."""
    root = Path(root)
    out = []
    for r in patients.itertuples(index=False):
        d: dict[str, Any] = {
            IMAGE: str(root / r.image_path),
            "label": int(r.y),
            "subject": str(r.subject),
            "record_id": str(r.record_id),
        }
        if mask_column:
            path = str(getattr(r, mask_column))
            if not path:
                raise ValueError(f"{r.subject}: no {mask_column} mask")
            d[MASK] = str(root / path)
        out.append(d)
    return out


def make_dataset(
    data: list[dict], transform: Compose, cfg: DataConfig, root: str | Path, cache: bool = True
) -> Dataset:
    """``CacheDataset`` (``cache: memory``) or ``PersistentDataset`` (``cache: disk``)."""
    if not cache:
        return Dataset(data, transform)
    if cfg.cache == "disk":
        cache_dir = Path(root) / cfg.cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        return PersistentDataset(data, transform, cache_dir=cache_dir)
    return CacheDataset(data, transform, cache_rate=1.0, num_workers=0, progress=False)
