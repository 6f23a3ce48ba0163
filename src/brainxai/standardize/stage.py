"""Stage ``standardize`` without the orchestrator: the fan-out (:func:`plan`: one call per
3D session of the manifest) and what the results make (:func:`summarise`:
``manifest_std.parquet``, the QC and quarantine tables, the headline numbers).
``flows/standardize.py`` runs the calls as cached tasks and logs the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from brainxai.manifest import write_table
from brainxai.paths import StudyPaths
from brainxai.splits import check_leakage
from brainxai.standardize.config import StandardizeConfig
from brainxai.standardize.manifest import extend_manifest

QC_COLUMNS = ("subject", "session", "status", "reason", "detail", "backend", "qc_pass",
              "qc_reason", "brain_dice", "mutual_information", "brain_ml_native",
              "seconds_total", "montage")  # fmt: skip
QUARANTINE_COLUMNS = ["dataset", "path", "reason", "detail", "subject"]
TABLES = ("manifest_std", "standardize_qc", "standardize_quarantine")


@dataclass(frozen=True)
class StageConfig:
    """params.yaml ``standardize`` (its ``runner`` is the flow's business)."""

    out_dir: Path  # per-session volumes, masks, transforms, QC
    config: StandardizeConfig
    params: dict[str, Any]  # ``config`` as given: the tasks' input (and cache key)

    @classmethod
    def from_params(cls, root: Path, section: Mapping[str, Any]) -> StageConfig:
        return cls(
            root / section["out_dir"],
            StandardizeConfig.from_dict(section["config"]),
            dict(section["config"]),
        )


def plan(
    cfg: StageConfig, sessions: list[dict[str, Any]], root: Path, threads: int
) -> list[dict[str, Any]]:
    """One call per session of :func:`brainxai.standardize.subject_table` (``threads``:
    each worker's ITK/torch thread cap)."""
    return [
        {
            "subject": s["subject"] + (f"_{s['session']}" if s["session"] else ""),
            "images": {k: str(root / p) for k, p in s["images"].items()},
            "sha256": s["sha256"],
            "cfg": cfg.params,
            "out_dir": str(cfg.out_dir / s["key"]),
            "threads": threads,
            "lesion_mask": str(root / s["lesion_mask"]) if s["lesion_mask"] else None,
        }
        for s in sessions
    ]


def with_relative_paths(res: dict[str, Any], paths: StudyPaths) -> dict[str, Any]:
    """A standardized session's result with its outputs relative to the study root (in
    place: ``files_rel``, ``xfm_fwd_rel``, ``xfm_inv_rel``); a quarantined one as it is."""
    if res["status"] == "ok":
        res["files_rel"] = {k: paths.rel(Path(v)) for k, v in res["outputs"].items()}
        res["xfm_fwd_rel"] = [paths.rel(Path(v)) for v in res["xfm_fwd"]]
        res["xfm_inv_rel"] = [paths.rel(Path(v)) for v in res["xfm_inv"]]
    return res


def qc_row(sess: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """One row of ``standardize_qc.parquet`` (``res`` after :func:`with_relative_paths`)."""
    row: dict[str, Any] = {c: None for c in QC_COLUMNS}
    row.update(subject=sess["subject"], session=sess["session"], status=res["status"])
    if res["status"] != "ok":
        row.update(reason=res["reason"], detail=res["detail"], qc_pass=False)
        return row
    qc = res["qc"]
    row.update(
        reason="",
        detail="",
        backend=qc["backend"],
        qc_pass=bool(qc["qc_pass"]),
        qc_reason=qc["qc_reason"],
        brain_dice=qc["brain_dice"],
        mutual_information=qc["mutual_information"],
        brain_ml_native=qc["brain_ml_native"],
        seconds_total=qc["seconds_total"],
        montage=res["files_rel"].get("montage", ""),
        **{f"seconds_{k}": v for k, v in qc["seconds"].items()},
    )
    return row


@dataclass
class Outputs:
    summary: dict[str, Any]
    metrics: dict[str, float]
    artifacts: list[Path]


def summarise(
    cfg: StageConfig,
    paths: StudyPaths,
    manifest: pd.DataFrame,
    sessions: list[dict[str, Any]],
    results: list[dict[str, Any]],
) -> Outputs:
    """Write ``manifest_std.parquet`` (the manifest with the stage's columns, no row
    dropped, leakage re-checked), ``standardize_qc.parquet`` and
    ``standardize_quarantine.parquet``; return the headline numbers. ``results[i]`` (after
    :func:`with_relative_paths`) is for ``sessions[i]``."""
    extended = extend_manifest(manifest, sessions, results)
    assert len(extended) == len(manifest), "the stage must never drop manifest rows"
    check_leakage(extended)
    pairs = list(zip(sessions, results, strict=True))
    qc = pd.DataFrame([qc_row(s, r) for s, r in pairs])
    quarantine = pd.DataFrame(
        [
            {
                "dataset": "standardize",
                "path": p,
                "reason": r["reason"],
                "detail": r["detail"],
                "subject": s["subject"],
            }
            for s, r in pairs
            if r["status"] != "ok"
            for p in s["images"].values()
        ],
        columns=QUARANTINE_COLUMNS,
    )
    artifacts = [paths.processed / f"{name}.parquet" for name in TABLES]
    for table, path in zip((extended, qc, quarantine), artifacts, strict=True):
        write_table(table, path)
    ok = qc[qc["status"] == "ok"]
    n_q = int((qc["status"] != "ok").sum())
    assert len(ok) + n_q == len(sessions), "counts do not add up"
    conf = cfg.config
    summary = {
        "sessions": len(sessions),
        "standardized": len(ok),
        "quarantined": n_q,
        "qc_pass": int(ok["qc_pass"].astype(bool).sum()),
        "qc_flagged": int((~ok["qc_pass"].astype(bool)).sum()),
        "volumes_3d": int((manifest["ndim"] == 3).sum()),
        "rows": len(extended),
        "backend": conf.skullstrip.backend,
        "spacing_mm": conf.spacing_mm,
        "mean_brain_dice": round(float(ok["brain_dice"].mean()), 4) if len(ok) else None,
        "min_brain_dice": round(float(ok["brain_dice"].min()), 4) if len(ok) else None,
        "mean_mutual_information": round(float(ok["mutual_information"].mean()), 4)
        if len(ok)
        else None,
        "mean_seconds_per_subject": round(float(ok["seconds_total"].mean()), 2)
        if len(ok)
        else None,
        "quarantine_reasons": {str(k): int(v) for k, v in
                               qc[qc["status"] != "ok"].groupby("reason").size().items()},
    }  # fmt: skip
    metrics = {
        f"standardize.{k}": float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return Outputs(summary, metrics, artifacts)
