"""Prefect tasks around :mod:`brainxai.ingest` and :mod:`brainxai.splits`.

Per-source ingestion is cached on a content fingerprint of the source tree
(relative path + sha256 of every file) plus config and code; its tables (and the 2D
images' grouping embeddings, :mod:`brainxai.ingest.grouping`) go to
``data/interim/ingest``. The split task is cached on the sha256 of those tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from brainxai import ingest as ing
from brainxai.ingest.datacard import data_card, write_data_card
from brainxai.ingest.grouping import grouping_report, load_embeddings, save_embeddings
from brainxai.manifest import read_table, write_table
from brainxai.splits import SplitConfig, assign_splits, check_leakage, check_split_sizes
from tasks.caching import code_policy, hashed_outputs


@task(
    name="ingest-source",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="ingest-{name}",
)
@hashed_outputs
def ingest_source(
    name: str,
    layout: str,
    root: str,
    cfg: dict[str, Any],
    base_dir: str,
    out_dir: str,
    fingerprint: str,
    sidecar: str | None = None,
    labels_csv: str | None = None,
    salt_id: str = "",
) -> dict[str, Any]:
    """Ingest one source; write its manifest + quarantine parquet; return paths and counts.

    ``fingerprint`` (see :func:`tree_fingerprint`) and ``salt_id`` (a one-way id of the
    DICOM salt, :func:`brainxai.ingest.dicom.salt_id`) are only there for the cache key;
    the salt itself is read here, inside the task, never passed in.
    """
    conf = ing.IngestConfig.from_dict(cfg)
    work = Path(out_dir) / f"{name}_nifti"
    res = ing.ingest(
        Path(root),
        layout,
        conf,
        base_dir=Path(base_dir),
        sidecar=Path(sidecar) if sidecar else None,
        work_dir=work,
        **({"labels_csv": Path(labels_csv)} if labels_csv else {}),
    )
    man = res.manifest.copy()
    # subjects are qualified by source so two sources never merge patients by accident
    man["subject"] = name + "/" + man["subject"].astype(str)
    m_path = write_table(man, Path(out_dir) / f"{name}.manifest.parquet")
    q_path = write_table(res.quarantine, Path(out_dir) / f"{name}.quarantine.parquet")
    e_path = save_embeddings(Path(out_dir) / f"{name}.embeddings.npz", res.embeddings)
    return {
        "name": name,
        "manifest": str(m_path),
        "quarantine": str(q_path),
        "embeddings": str(e_path),
        "found": int(res.found),
        "ignored": int(res.ignored),
        "ingested": len(man),
        "quarantined": len(res.quarantine),
        "notes": [f"{name}: {n}" for n in res.notes],
        "files": [str(m_path), str(q_path), str(e_path)],
    }


@task(name="split-and-card", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def split_and_card(
    sources: list[dict[str, Any]],
    ingest_cfg: dict[str, Any],
    split_cfg: dict[str, Any],
    manifest_path: str,
    quarantine_path: str,
    card_md: str,
    card_json: str,
    table_hashes: list[str],
) -> dict[str, Any]:
    """Combine sources, split by patient, check leakage and split sizes, write manifest +
    data card.

    A data set left without val/test patients raises
    :class:`brainxai.splits.EmptySplitError` before anything is written, unless
    ``split_cfg["allow_empty_splits"]``: then it is a warning in the data card and in the
    result. ``table_hashes`` (sha256 of the per-source tables) is only there for the cache
    key.
    """
    results = [
        ing.IngestResult(
            manifest=read_table(s["manifest"]),
            quarantine=read_table(s["quarantine"]),
            found=s["found"],
            ignored=s["ignored"],
            notes=list(s["notes"]),
        )
        for s in sources
    ]
    combined = ing.combine(results, ing.IngestConfig.from_dict(ingest_cfg))
    split_conf = SplitConfig.from_dict(split_cfg)
    manifest = assign_splits(combined.manifest, split_conf)
    check_leakage(manifest)
    grouping = grouping_report(
        manifest,
        load_embeddings([s["embeddings"] for s in sources if s.get("embeddings")]),
        ing.IngestConfig.from_dict(ingest_cfg).subject_grouping,
    )
    split_warnings = check_split_sizes(manifest, split_conf)
    assert len(manifest) + len(combined.quarantine) == combined.found, "counts do not add up"
    write_table(manifest, manifest_path)
    write_table(combined.quarantine, quarantine_path)
    card, md = data_card(
        manifest,
        combined.quarantine,
        combined.found,
        combined.ignored,
        notes=combined.notes,
        split_warnings=split_warnings,
        grouping=grouping,
    )
    write_data_card(card, md, card_md, card_json)
    per_split = manifest.groupby("split").size().to_dict()
    return {
        "found": int(combined.found),
        "ingested": len(manifest),
        "quarantined": len(combined.quarantine),
        "ignored": int(combined.ignored),
        "subjects": int(manifest["subject"].nunique()),
        "per_split": {k: int(v) for k, v in per_split.items()},
        "images_without_ids": grouping["images_without_ids"],
        "subject_policy": grouping["policy"],
        "split_warnings": split_warnings,
        "quarantine_reasons": {
            k: int(v) for k, v in combined.quarantine.groupby("reason").size().to_dict().items()
        }
        if len(combined.quarantine)
        else {},
        "files": [manifest_path, quarantine_path, card_md, card_json],
    }
