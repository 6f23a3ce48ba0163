"""Ingestion driver: discover -> validate (pool) -> de-duplicate -> manifest + quarantine.

Counting rule: ``found`` is the number of image files of the layout's kind under
the root (2D image endings for kaggle17/kermany, ``.nii[.gz]`` outside
derivatives/sourcedata/code for bids; for dicom one per series plus one per
DICOM-looking file whose header is unreadable). Every found unit ends up either
in the manifest or in the quarantine: ``len(manifest) + len(quarantine) ==
found`` is checked on every call. Other files (hidden, ``.DS_Store``,
``Thumbs.db``, text, JSON sidecars...) are counted in ``ignored``; the sidecar /
participants.tsv / labels CSV and the lesion masks it names count as neither.

Images whose source gives no patient id follow ``subject_grouping.policy``
(:mod:`brainxai.ingest.grouping`): fail, group by embedding clusters (default), or allow
the perceptual-hash groups; every ingested 2D image's embedding is returned
(``IngestResult.embeddings``) for the optimism report of the data card.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainxai.ingest import bids, dicom, kaggle, kermany
from brainxai.ingest.common import (
    Candidate,
    Discovery,
    Reject,
    Rejected,
    pmap,
    record_id,
    rel_posix,
)
from brainxai.ingest.config import LAYOUTS, IngestConfig, Layout
from brainxai.ingest.dedup import (
    conflicting_labels,
    exact_duplicates,
    near_groups,
    raise_leaks,
    source_leaks,
)
from brainxai.ingest.grouping import SubjectGroupingConfig, apply_policy, embed_file
from brainxai.ingest.validate import FileInfo, examine_2d, examine_nifti, mask_shape
from brainxai.manifest import COLUMNS, QUARANTINE_COLUMNS, conform, empty_manifest, empty_quarantine

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    """Manifest rows, quarantine rows and the file counts of one (or several) sources."""

    manifest: pd.DataFrame
    quarantine: pd.DataFrame
    found: int
    ignored: int = 0
    notes: list[str] = field(default_factory=list)
    #: Silhouette embedding of every ingested 2D image, by record id (:mod:`.grouping`).
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ``RuntimeError`` unless ``len(manifest) + len(quarantine) == found``."""
        if len(self.manifest) + len(self.quarantine) != self.found:
            raise RuntimeError(
                f"ingestion lost files: {len(self.manifest)} ingested + "
                f"{len(self.quarantine)} quarantined != {self.found} found"
            )


def _examine(job: tuple[Path, int, Path | None, IngestConfig]) -> tuple[FileInfo | Reject, bool]:
    """Validate one file; also whether its mask (if any) matches its shape."""
    path, ndim, mask, cfg = job
    try:
        info = (
            examine_2d(path, cfg.min_side_2d, cfg.max_pixels_2d)
            if ndim == 2
            else examine_nifti(path, cfg.min_dim_3d, cfg.max_bytes_3d)
        )
    except Rejected as r:
        return Reject(path, r.reason, r.detail), False
    except Exception as exc:  # a decoder bug must not stop the run
        return Reject(path, "decode_error", f"{type(exc).__name__}: {str(exc)[:160]}"), False
    mask_ok = mask is not None and mask_shape(mask) == tuple(int(s) for s in info.shape.split("x"))
    return info, mask_ok


def _embed(job: tuple[Path, SubjectGroupingConfig]) -> np.ndarray | None:
    """The grouping embedding of one validated 2D file (None if it no longer decodes)."""
    path, cfg = job
    try:
        return embed_file(path, cfg)
    except (OSError, ValueError) as exc:
        log.warning("%s: no embedding (%s)", path, exc)
        return None


def embeddings_of(df: pd.DataFrame, base: Path, cfg: IngestConfig) -> dict[str, np.ndarray]:
    """Record id -> embedding of the 2D rows of ``df`` (paths relative to ``base``)."""
    two = df[df["ndim"].astype(int) == 2]
    jobs = [(base / p, cfg.subject_grouping) for p in two["path"].astype(str)]
    vecs = pmap(_embed, jobs, cfg.workers, cfg.pool)
    return {str(r): v for r, v in zip(two["record_id"], vecs, strict=True) if v is not None}


def _discover(
    root: Path,
    layout: str,
    cfg: IngestConfig,
    sidecar: Path | None,
    work_dir: Path | None,
    labels_csv: Path | None,
    base_dir: Path,
) -> Discovery:
    if not root.is_dir():
        raise ValueError(f"source root {root} is not a directory")
    if layout == "kaggle17":
        return kaggle.discover(root, cfg, sidecar)
    if layout == "kermany":
        return kermany.discover(root, cfg, sidecar)
    if layout == "bids":
        return bids.discover(root, cfg, sidecar)
    if work_dir is None:
        raise ValueError("the dicom layout needs work_dir for its NIfTI conversions")
    salt = dicom.dicom_salt(cfg, base_dir)
    return dicom.discover(root, cfg, labels_csv or sidecar, Path(work_dir), salt)


def _row(dataset: str, c: Candidate, info: FileInfo, mask_ok: bool, base: Path, cfg) -> dict:
    rel = rel_posix(c.path, base)
    return {
        "record_id": record_id(dataset, rel),
        "dataset": dataset,
        "subject": c.subject,
        "subject_source": c.subject_source,
        "session": c.session,
        "series": c.series,
        "modality": cfg.modality,
        "sequence": c.sequence,
        "ndim": info.ndim,
        "path": rel,
        "sha256": info.sha256,
        "shape": info.shape,
        "spacing": info.spacing,
        "label": c.label,
        "group": c.group,
        "mask_path": rel_posix(c.mask, base) if (c.mask is not None and mask_ok) else "",
        "phash": info.phash,
        "dup_group": "",
        "source_split": c.source_split,
        "split": "",
        "fold": -1,
    }


def _q(df: pd.DataFrame, reason: str, details: pd.Series | str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": df["dataset"].to_numpy(),
            "path": df["path"].to_numpy(),
            "reason": reason,
            "detail": details.to_numpy() if isinstance(details, pd.Series) else details,
        }
    )


def deduplicate(
    df: pd.DataFrame, cfg: IngestConfig, fill_subjects: bool = True
) -> tuple[pd.DataFrame, list[pd.DataFrame], list[str]]:
    """Apply the duplicate rules; returns (kept rows, quarantine frames, notes).

    1. identical bytes under different labels -> all copies ``conflicting_labels``;
    2. near/exact duplicates or one subject across *source* splits -> LeakageError
       (policy ``error``) or quarantine outside the most held-out split;
    3. identical bytes, same label -> keep one (most metadata, then first by path),
       the others ``duplicate``;
    4. near-duplicate groups (>= 2 members) share ``dup_group = "dg-<record_id>"``;
    5. rows without subject get ``pg-<record_id of their group root>``.
    """
    qs: list[pd.DataFrame] = []
    notes: list[str] = []
    df = df.sort_values(["path", "dataset"]).reset_index(drop=True)
    conf = conflicting_labels(df)
    if conf.any():
        bad = df[conf]
        labs = bad.groupby("sha256")["label"].transform(lambda s: ", ".join(sorted(set(s))))
        qs.append(_q(bad, "conflicting_labels", "identical bytes labelled " + labs))
        df = df[~conf].reset_index(drop=True)
    best = source_leaks(df, cfg.phash_threshold)
    if (best != "").any():
        if cfg.leakage_policy == "error":
            raise_leaks(df, best)
        out = (best != "") & (df["source_split"] != best)
        qs.append(
            _q(df[out], "source_leakage", "duplicate or subject also in source split " + best[out])
        )
        notes.append(f"{int(out.sum())} files removed for source-split leakage")
        df = df[~out].reset_index(drop=True)
    kept = exact_duplicates(df)
    dup = kept != ""
    if dup.any():
        qs.append(_q(df[dup], "duplicate", "byte-identical copy of " + kept[dup]))
        df = df[~dup].reset_index(drop=True)
    roots = near_groups(df, cfg.phash_threshold)
    size = roots.map(roots.value_counts())
    df["dup_group"] = ("dg-" + roots).where(size > 1, "")
    if fill_subjects:
        missing = df["subject"].fillna("").astype(str) == ""
        df.loc[missing, "subject"] = "pg-" + roots[missing]
        df.loc[missing, "subject_source"] = "phash_group"
    return df, qs, notes


def _finish(df: pd.DataFrame, q: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    man = conform(df if len(df) else empty_manifest(), COLUMNS)
    man = man.sort_values(["path", "dataset"], kind="stable").reset_index(drop=True)
    quar = conform(q if len(q) else empty_quarantine(), QUARANTINE_COLUMNS)
    quar = quar.sort_values(["path", "dataset"], kind="stable").reset_index(drop=True)
    return man, quar


def ingest(
    root: Path,
    layout: Layout | None,
    cfg: IngestConfig,
    base_dir: Path,
    sidecar: Path | None = None,
    work_dir: Path | None = None,
    labels_csv: Path | None = None,
) -> IngestResult:
    """Scan ``root`` as ``layout``; validate, de-duplicate, return manifest + quarantine.

    ``sidecar``: kaggle17 subjects.csv (default ``root/subjects.csv`` if present),
    bids participants.tsv (default ``root/participants.tsv``), dicom labels CSV
    (same as ``labels_csv``). ``work_dir`` receives the DICOM->NIfTI conversions.
    Paths in the tables are posix and relative to ``base_dir``.
    """
    layout = layout or cfg.layout
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if cfg.layout is not None and cfg.layout != layout:
        raise ValueError(f"layout {layout!r} contradicts IngestConfig.layout {cfg.layout!r}")
    root, base = Path(root), Path(base_dir)
    disc = _discover(root, layout, cfg, sidecar, work_dir, labels_csv, base)
    jobs = [(c.path, c.ndim, c.mask, cfg) for c in disc.candidates]
    rows: list[dict] = []
    rejects = list(disc.rejects)
    n_mask_mismatch = 0
    for cand, (res, mask_ok) in zip(
        disc.candidates, pmap(_examine, jobs, cfg.workers, cfg.pool), strict=True
    ):
        if isinstance(res, Reject):
            rejects.append(res)
            continue
        n_mask_mismatch += cand.mask is not None and not mask_ok
        rows.append(_row(layout, cand, res, mask_ok, base, cfg))
    notes = list(disc.notes)
    if n_mask_mismatch:
        notes.append(f"{n_mask_mismatch} lesion masks do not match their image shape (not used)")
    q0 = pd.DataFrame(
        [
            {
                "dataset": layout,
                "path": rel_posix(r.path, base),
                "reason": r.reason,
                "detail": r.detail,
            }
            for r in rejects
        ],
        columns=list(QUARANTINE_COLUMNS),
    )
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    emb: dict[str, np.ndarray] = {}
    if len(df):
        df, qs, more = deduplicate(df, cfg)
        notes += more
        q0 = pd.concat([q0, *qs], ignore_index=True)
        emb = embeddings_of(df, base, cfg)
        df, more = apply_policy(df, emb, cfg.subject_grouping)
        notes += more
    man, quar = _finish(df, q0)
    res = IngestResult(man, quar, disc.found, disc.ignored, notes, emb)
    res.check()
    log.info(
        "%s: found %d, ingested %d, quarantined %d, ignored %d",
        layout,
        res.found,
        len(man),
        len(quar),
        res.ignored,
    )
    return res


def combine(results: list[IngestResult], cfg: IngestConfig | None = None) -> IngestResult:
    """Concatenate sources; cross-source duplicates follow the within-source rules.

    Near-duplicate groups are recomputed over all sources (threshold and leakage
    policy from ``cfg``, default :class:`IngestConfig`); subjects are kept.
    """
    cfg = cfg or IngestConfig()
    mans = [r.manifest for r in results if len(r.manifest)]
    quars = [r.quarantine for r in results if len(r.quarantine)]
    found = sum(r.found for r in results)
    ignored = sum(r.ignored for r in results)
    notes = [n for r in results for n in r.notes]
    df = pd.concat(mans, ignore_index=True) if mans else empty_manifest()
    q = pd.concat(quars, ignore_index=True) if quars else empty_quarantine()
    if len(df):
        df = df.astype({c: "object" for c in ("dup_group", "subject", "subject_source")})
        df, qs, more = deduplicate(df, cfg, fill_subjects=False)
        notes += more
        q = pd.concat([q.astype(object), *qs], ignore_index=True)
    man, quar = _finish(df, q)
    res = IngestResult(man, quar, found, ignored, notes)
    res.check()
    return res
