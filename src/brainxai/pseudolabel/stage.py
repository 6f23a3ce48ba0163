"""Stage ``pseudolabel`` without the orchestrator: the typed stage section
(:class:`StageConfig`), the fan-out (:func:`session_table`, :func:`plan`: one call per
standardized 3D session) and what the results make (:func:`summarise`: the
``pseudolabels.parquet`` contract, the per-slice box IoU, the headline numbers).
``flows/pseudolabel.py`` runs the calls as cached tasks and logs the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.hashing import file_sha256
from brainxai.manifest import write_table
from brainxai.paths import StudyPaths
from brainxai.pseudolabel.config import PseudolabelConfig
from brainxai.pseudolabel.pipeline import MASKS
from brainxai.pseudolabel.provenance import proposer_label, vlm_answers
from brainxai.standardize.manifest import session_key

#: ``pseudolabels.parquet``: the contract read by the 3D classifier stage.
COLUMNS: tuple[str, ...] = (
    "subject", "session", "label", "split", "proposer", "proposer_model", "status",
    "coarse_path", "refined_path", "union_path", "native_union_path",
    "n_answers", "n_boxes", "empty", "flag",
    *(f"{q}_{m}" for q in ("dice", "hd95", "detected") for m in MASKS),
    "box_iou", "voxels_truth", "voxels_coarse", "voxels_refined", "voxels_union",
    "n_malformed", "n_cached", "seconds_total",
)  # fmt: skip
SLICE_COLUMNS = ["subject", "session", "k", "box_iou"]
TABLES = ("pseudolabels", "pseudolabel_slices")


@dataclass(frozen=True)
class StageConfig:
    """params.yaml ``pseudolabel`` (its ``runner`` is the flow's business)."""

    out_dir: Path  # per-session masks
    cache_dir: Path  # VLM answers, kept across runs
    config: PseudolabelConfig
    params: dict[str, Any]  # ``config`` as given: the tasks' input (and cache key)

    @classmethod
    def from_params(cls, root: Path, section: Mapping[str, Any]) -> StageConfig:
        return cls(
            root / section["out_dir"],
            root / section["cache_dir"],
            PseudolabelConfig.from_dict(section["config"]),
            dict(section["config"]),
        )


def session_table(manifest: pd.DataFrame, root: Path) -> list[dict[str, Any]]:
    """One entry per 3D (subject, session) with its standardized files (if any)."""
    out = []
    three_d = manifest[manifest["ndim"] == 3]
    for (subject, session), rows in three_d.groupby(["subject", "session"], sort=True):
        first = rows.iloc[0]
        ok = rows[rows["std_status"].astype(str) == "ok"]
        entry: dict[str, Any] = {
            "subject": str(subject),
            "session": str(session),
            "key": session_key(str(subject), str(session)),
            "label": str(first["label"]),
            "split": str(first["split"]),
            "ok": len(ok) > 0,
            "reason": "" if len(ok) else f"standardize: {first['std_reason'] or 'not ok'}",
        }
        if len(ok):
            r0 = ok.iloc[0]
            entry["images"] = {str(r["sequence"]): str(root / r["std_path"])
                               for _, r in ok.iterrows() if r["std_path"]}  # fmt: skip
            entry["brain_mask"] = str(root / r0["std_mask_path"])
            entry["lesion_mask"] = (
                str(root / r0["std_lesion_path"]) if r0["std_lesion_path"] else None
            )
            entry["native_ref"] = (
                str(root / r0["native_mask_path"]) if r0["native_mask_path"] else None
            )
            entry["xfm_inv"] = [str(root / p) for p in str(r0["xfm_inv"]).split(";") if p]
        out.append(entry)
    return out


def plan(cfg: StageConfig, sessions: list[dict[str, Any]], threads: int) -> list[dict[str, Any]]:
    """One call per standardized session (``threads``: each worker's thread cap)."""
    return [
        {
            "subject": s["key"],
            "images": s["images"],
            "sha256": {k: file_sha256(Path(p)) for k, p in s["images"].items()},
            "brain_mask": s["brain_mask"],
            "cfg": cfg.params,
            "out_dir": str(cfg.out_dir / s["key"]),
            "cache_dir": str(cfg.cache_dir),
            "threads": threads,
            "lesion_mask": s["lesion_mask"],
            "native_ref": s["native_ref"],
            "xfm_inv": s["xfm_inv"],
        }
        for s in sessions
        if s["ok"]
    ]


def _row(
    sess: dict[str, Any],
    res: dict[str, Any] | None,
    proposer: str,
    paths: StudyPaths,
    model: str = "",
) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(subject=sess["subject"], session=sess["session"], label=sess["label"],
               split=sess["split"], proposer=proposer, proposer_model=model)  # fmt: skip
    if res is None or res["status"] != "ok":
        reason = sess["reason"] if res is None else res["reason"]
        row.update(status="failed" if res else "not_standardized", empty=True, n_boxes=0,
                   flag=reason)  # fmt: skip
        for c in ("coarse_path", "refined_path", "union_path", "native_union_path"):
            row[c] = ""
        return row
    out = res["outputs"]
    row.update({c: res[c] for c in COLUMNS if c in res and c != "subject"})
    row.update(
        status="ok",
        **{f"{m}_path": paths.rel(Path(out[m])) for m in MASKS},
        native_union_path=paths.rel(Path(out["native_union"])) if "native_union" in out else "",
    )
    return row


def quality(table: pd.DataFrame) -> dict[str, Any]:
    """Means of the quality columns overall and per class (sessions with a truth mask)."""
    ok = table[(table["status"] == "ok") & table["voxels_truth"].notna()]
    columns = [f"{q}_{m}" for q in ("dice", "hd95", "detected") for m in MASKS] + ["box_iou"]

    def means(df: pd.DataFrame) -> dict[str, float]:
        return {c: round(float(df[c].astype(float).mean()), 4) for c in columns if len(df)}

    return {
        "overall": means(ok),
        "per_class": {str(k): {**means(g), "n": len(g)} for k, g in ok.groupby("label")},
    }


@dataclass
class Outputs:
    summary: dict[str, Any]
    metrics: dict[str, float]  # finite numbers, for MLflow
    artifacts: list[Path]


def summarise(
    cfg: StageConfig,
    paths: StudyPaths,
    sessions: list[dict[str, Any]],
    results: list[dict[str, Any]],
) -> Outputs:
    """Write ``pseudolabels.parquet`` (every session, contract :data:`COLUMNS`) and
    ``pseudolabel_slices.parquet``; return the headline summary. ``results`` are the
    tasks' results in the order of :func:`plan`'s calls."""
    conf = cfg.config
    todo = [s for s in sessions if s["ok"]]
    by_key = {s["key"]: r for s, r in zip(todo, results, strict=True)}
    model = conf.proposer_model
    rows = [_row(s, by_key.get(s["key"]), conf.proposer, paths, model) for s in sessions]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    slices = pd.DataFrame(
        [{"subject": s["subject"], "session": s["session"], "k": int(k), "box_iou": v}
         for s in todo if by_key[s["key"]]["status"] == "ok"
         for k, v in by_key[s["key"]].get("box_iou_slices", {}).items()],
        columns=SLICE_COLUMNS,
    )  # fmt: skip
    artifacts = [paths.processed / f"{name}.parquet" for name in TABLES]
    write_table(table, artifacts[0])
    write_table(slices, artifacts[1])
    n_ok = int((table["status"] == "ok").sum())
    n_failed = int((table["status"] == "failed").sum())
    n_skipped = int((table["status"] == "not_standardized").sum())
    assert n_ok + n_failed + n_skipped == len(sessions), "counts do not add up"
    summary = {
        "proposer": conf.proposer,
        "proposer_model": model,
        "proposer_label": proposer_label(table),
        "prompt_set": conf.prompts.set if conf.proposer != "classical" else None,
        "vlm_answers": vlm_answers(table),
        "sessions": len(sessions),
        "labelled": n_ok,
        "failed": n_failed,
        "not_standardized": n_skipped,
        "empty": int(table["empty"].astype(bool).sum()),
        "flagged": int((table["flag"].fillna("") != "").sum()),
        "vlm_queries": int(sum(r.get("queried", 0) for r in results)),
        "vlm_cached_answers": int(
            sum(r.get("n_cached", 0) or 0 for r in results if r["status"] == "ok")
        ),
        "mean_seconds_per_session": round(float(table["seconds_total"].astype(float).mean()), 2)
        if n_ok
        else None,
        **quality(table),
    }
    flat = {f"pseudolabel.{k}": float(v) for k, v in summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    flat.update({f"pseudolabel.{k}": v for k, v in summary["overall"].items()})
    for cls, vals in summary["per_class"].items():
        flat.update({f"pseudolabel.{cls}.{k}": float(v) for k, v in vals.items()})
    metrics = {k: v for k, v in flat.items() if np.isfinite(v)}
    return Outputs(summary, metrics, artifacts)
