"""Stage ``pseudolabel``: VLM/classical boxes -> 3D tumour masks on the standardized cohort.

Run: ``brainxai data pseudolabel [--profile smoke]`` or ``python -m flows.pseudolabel``.
Reads ``data/processed/manifest_std.parquet``; per standardized session (cached task,
sessions in parallel) writes under ``data/interim/pseudolabel/<session>/`` the coarse,
refined and union masks (template space, the std_path grid), the prior, the union in
native space and ``answers.json`` (every slice's boxes and the model's raw text); VLM
answers are cached under ``pseudolabel.cache_dir`` (kept by DVC across runs). Then
``data/processed/pseudolabels.parquet`` (one row per 3D session, contract below),
``pseudolabel_slices.parquet`` (box IoU per slice) and ``reports/metrics/pseudolabel.json``
(Dice, HD95, detection of coarse / refined / union per class, box IoU).

No label and no other subject is used to make a session's mask (the MLP is fitted per
session on its own prior), so the stage runs on every split; the truth masks are read
only to measure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from brainxai.hashing import file_sha256
from brainxai.jsonio import write_json
from brainxai.manifest import read_table, write_table
from brainxai.paths import StudyPaths
from brainxai.pseudolabel import MASKS, PseudolabelConfig
from brainxai.pseudolabel.provenance import proposer_label, vlm_answers
from brainxai.splits import check_leakage
from brainxai.standardize.manifest import session_key
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.pseudolabel import pseudolabel_one
from tasks.runners import task_runner

#: ``pseudolabels.parquet``: the contract read by the 3D classifier stage.
COLUMNS: tuple[str, ...] = (
    "subject", "session", "label", "split", "proposer", "proposer_model", "status",
    "coarse_path", "refined_path", "union_path", "native_union_path",
    "n_answers", "n_boxes", "empty", "flag",
    *(f"{q}_{m}" for q in ("dice", "hd95", "detected") for m in MASKS),
    "box_iou", "voxels_truth", "voxels_coarse", "voxels_refined", "voxels_union",
    "n_malformed", "n_cached", "seconds_total",
)  # fmt: skip


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


def summarise(table: pd.DataFrame) -> dict[str, Any]:
    """Means of the quality columns overall and per class (sessions with a truth mask)."""
    ok = table[(table["status"] == "ok") & table["voxels_truth"].notna()]
    quality = [f"{q}_{m}" for q in ("dice", "hd95", "detected") for m in MASKS] + ["box_iou"]

    def means(df: pd.DataFrame) -> dict[str, float]:
        return {c: round(float(df[c].astype(float).mean()), 4) for c in quality if len(df)}

    return {
        "overall": means(ok),
        "per_class": {str(k): {**means(g), "n": len(g)} for k, g in ok.groupby("label")},
    }


def run_pseudolabel(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Body of the stage (inside a flow whose task runner comes from params)."""
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    pcfg = params["pseudolabel"]
    conf = PseudolabelConfig.from_dict(pcfg["config"])
    if conf.proposer == "openai":
        conf.openai.endpoint()  # refuses plain http:// off this machine before any work
    workers = int(pcfg["runner"]["workers"])
    threads = max(1, (os.cpu_count() or 1) // workers)
    out_root = root_path / pcfg["out_dir"]
    cache_dir = root_path / pcfg["cache_dir"]
    # A declared DVC output: it exists even when the proposer (classical) asks no VLM.
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger = get_run_logger()
    manifest = read_table(paths.processed / "manifest_std.parquet")
    check_leakage(manifest)
    sessions = session_table(manifest, root_path)
    todo = [s for s in sessions if s["ok"]]
    with stage_run("pseudolabel", {"pseudolabel": pcfg},
                   tags={"pseudolabel.proposer": conf.proposer}):  # fmt: skip
        calls = [
            {
                "subject": s["key"],
                "images": s["images"],
                "sha256": {k: file_sha256(Path(p)) for k, p in s["images"].items()},
                "brain_mask": s["brain_mask"],
                "cfg": pcfg["config"],
                "out_dir": str(out_root / s["key"]),
                "cache_dir": str(cache_dir),
                "threads": threads,
                "lesion_mask": s["lesion_mask"],
                "native_ref": s["native_ref"],
                "xfm_inv": s["xfm_inv"],
            }
            for s in todo
        ]
        results = run_cached(pseudolabel_one, lambda r: r["files"], calls, root=root_path)
        by_key = {s["key"]: r for s, r in zip(todo, results, strict=True)}
        model = conf.proposer_model
        rows = [_row(s, by_key.get(s["key"]), conf.proposer, paths, model) for s in sessions]
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        for r in results:
            if r["status"] != "ok":
                logger.warning("pseudolabel failed for %s: %s", r["subject"], r["reason"])
        slices = pd.DataFrame(
            [{"subject": s["subject"], "session": s["session"], "k": int(k), "box_iou": v}
             for s in todo if by_key[s["key"]]["status"] == "ok"
             for k, v in by_key[s["key"]].get("box_iou_slices", {}).items()],
            columns=["subject", "session", "k", "box_iou"],
        )  # fmt: skip
        write_table(table, paths.processed / "pseudolabels.parquet")
        write_table(slices, paths.processed / "pseudolabel_slices.parquet")
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
            **summarise(table),
        }
        flat = {f"pseudolabel.{k}": float(v) for k, v in summary.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
        flat.update({f"pseudolabel.{k}": v for k, v in summary["overall"].items()})
        for cls, vals in summary["per_class"].items():
            flat.update({f"pseudolabel.{cls}.{k}": float(v) for k, v in vals.items()})
        tables = [paths.processed / f"{n}.parquet" for n in ("pseudolabels", "pseudolabel_slices")]
        log_stage(
            {k: v for k, v in flat.items() if np.isfinite(v)},
            artifacts=tables,
            artifact_path="pseudolabel",
        )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics / "pseudolabel.json", summary)
    logger.info("pseudolabel: %s", summary)
    publish_stage("pseudolabel", paths.metrics / "pseudolabel.json")
    return summary


@flow(name="pseudolabel", log_prints=True)
def _pseudolabel(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    return run_pseudolabel(profile=profile, root=root, overrides=overrides)


def pseudolabel_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Run the stage as a Prefect flow with the task runner of ``pseudolabel.runner``."""
    root_path, params = study_params(profile, root, overrides)
    runner = task_runner({"runner": params["pseudolabel"]["runner"]})
    return _pseudolabel.with_options(task_runner=runner)(
        profile=profile, root=str(root_path), overrides=overrides
    )


if __name__ == "__main__":
    import typer

    typer.run(pseudolabel_flow)
