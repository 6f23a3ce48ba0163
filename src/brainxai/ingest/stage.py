"""Stage ``ingest`` without the orchestrator: the checks before any work
(:func:`prepare`, :func:`dicom_salt_id`), the fan-out (:func:`plan`: one call per source,
keyed on a content fingerprint of its tree; then :func:`split_call`) and the headline
numbers (:func:`metrics`). ``flows/ingest.py`` runs the calls as cached tasks and logs them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainxai.atomic import remove_stale_temps, remove_stale_temps_of
from brainxai.hashing import file_sha256
from brainxai.ingest.config import IngestConfig
from brainxai.ingest.dicom import dicom_salt, salt_id
from brainxai.ingest.sources import SourceError, check_sources, dvc_uncovered
from brainxai.paths import StudyPaths


def tree_fingerprint(*roots: str | Path | None) -> str:
    """sha256 over (relative path, sha256 of the bytes) of every file under the roots (a
    root that is a file: its name and content); a dangling link or a symlink loop is
    recorded as ``broken-link`` (ingestion quarantines it)."""
    h = hashlib.sha256()
    for root in roots:
        if root is None:
            continue
        root = Path(root)
        if root.is_file():
            h.update(f"{root.name}|{_content_id(root)}\n".encode())
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                f = Path(dirpath) / name
                h.update(f"{f.relative_to(root).as_posix()}|{_content_id(f)}\n".encode())
    return h.hexdigest()[:16]


def _content_id(f: Path) -> str:
    """sha256 of a file's bytes; ``broken-link`` for a dangling link or a symlink loop,
    ``special`` for a FIFO/socket/device, ``unreadable|size|mtime`` when it cannot be read."""
    try:
        st = f.stat()
    except OSError:  # a symlink loop or dangling link: ingestion quarantines it
        return "broken-link"
    if not stat.S_ISREG(st.st_mode):
        return "special"
    try:
        return file_sha256(f)
    except OSError:
        return f"unreadable|{st.st_size}|{st.st_mtime_ns}"


def outputs(paths: StudyPaths) -> tuple[Path, ...]:
    """The stage's tables and data card (also its MLflow artifacts)."""
    return (paths.manifest, paths.quarantine, paths.datacard_md, paths.datacard_json)


def prepare(section: Mapping[str, Any], paths: StudyPaths) -> list[Path]:
    """Before any work: check every source's layout, root and name; remove the partial
    files a killed run left in the outputs (they would change DVC's hash of the outs) and
    return them."""
    check_sources(section["sources"], paths.root)
    return remove_stale_temps(paths.interim / "ingest") + remove_stale_temps_of(
        *outputs(paths), paths.metrics / "ingest.json"
    )


def dicom_salt_id(section: Mapping[str, Any], paths: StudyPaths) -> str:
    """Every source path must be a dep of the DVC ingest stage (else :class:`SourceError`);
    the id of the DICOM pseudonym salt when a source is DICOM (refuses without a salt),
    else ``""``."""
    root = paths.root
    dvc_yaml = root / "dvc.yaml"
    uncovered = dvc_uncovered(section["sources"], dvc_yaml) if dvc_yaml.is_file() else []
    if uncovered:
        raise SourceError(
            f"add these source paths to the ingest stage deps of {dvc_yaml}: "
            f"{uncovered} (else DVC does not re-run ingestion when they change)"
        )
    conf = IngestConfig.from_dict(section["config"])
    has_dicom = any(src["layout"] == "dicom" for src in section["sources"])
    return salt_id(dicom_salt(conf, root)) if has_dicom else ""


def plan(section: Mapping[str, Any], paths: StudyPaths, sid: str) -> list[dict[str, Any]]:
    """One call per source (``sid``: the DICOM salt's id, for DICOM sources)."""
    root = paths.root
    calls = []
    for src in section["sources"]:
        src_root = root / src["root"]
        sidecar = root / src["sidecar"] if src.get("sidecar") else None
        labels_csv = root / src["labels_csv"] if src.get("labels_csv") else None
        calls.append(
            {
                "name": src["name"],
                "layout": src["layout"],
                "root": str(src_root),
                "cfg": section["config"],
                "base_dir": str(root),
                "out_dir": str(paths.interim / "ingest"),
                "fingerprint": tree_fingerprint(src_root, sidecar, labels_csv),
                "sidecar": str(sidecar) if sidecar else None,
                "labels_csv": str(labels_csv) if labels_csv else None,
                "salt_id": sid if src["layout"] == "dicom" else "",
            }
        )
    return calls


def split_call(
    section: Mapping[str, Any],
    split: Mapping[str, Any],
    paths: StudyPaths,
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    """The split-and-data-card call over every source's tables (keyed on their sha256)."""
    return {
        "sources": sources,
        "ingest_cfg": section["config"],
        "split_cfg": split,
        "manifest_path": str(paths.manifest),
        "quarantine_path": str(paths.quarantine),
        "card_md": str(paths.datacard_md),
        "card_json": str(paths.datacard_json),
        "table_hashes": [file_sha256(s["manifest"]) for s in sources]
        + [file_sha256(s["quarantine"]) for s in sources],
    }


def metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ingest.datasets_with_empty_splits": len(result["split_warnings"]),
        "ingest.found": result["found"],
        "ingest.ingested": result["ingested"],
        "ingest.quarantined": result["quarantined"],
        "ingest.subjects": result["subjects"],
        **{f"ingest.split.{k}": v for k, v in result["per_split"].items()},
        **{f"ingest.quarantine.{k}": v for k, v in result["quarantine_reasons"].items()},
    }
