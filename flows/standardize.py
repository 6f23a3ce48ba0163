"""Stage ``standardize``: every 3D session of the manifest → MNI152 space, with QC.

Run: ``brainxai data standardize [--profile smoke]`` or ``python -m flows.standardize``.
Reads ``data/processed/manifest.parquet``; writes per subject under
``data/interim/standardized/<subject>/`` (volumes, brain/lesion masks, transforms,
qc.json, montage.png), then ``data/processed/manifest_std.parquet`` (the manifest with
the stage's columns, no row dropped), ``standardize_qc.parquet`` (one row per session)
and ``standardize_quarantine.parquet``. Subjects run in a process pool (ANTsPy holds
the GIL) with ``cores // workers`` ITK threads each.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.manifest import read_table, write_table
from brainxai.paths import StudyPaths
from brainxai.splits import check_leakage
from brainxai.standardize import StandardizeConfig, extend_manifest, subject_table
from brainxai.standardize.manifest import NEW_COLUMNS
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.runners import task_runner
from tasks.standardize import standardize_one

QC_COLUMNS = ("subject", "session", "status", "reason", "detail", "backend", "qc_pass",
              "qc_reason", "brain_dice", "mutual_information", "brain_ml_native",
              "seconds_total", "montage")  # fmt: skip


def _rel(paths: StudyPaths, p: str) -> str:
    return paths.rel(Path(p))


def _qc_row(sess: dict[str, Any], res: dict[str, Any], paths: StudyPaths) -> dict[str, Any]:
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


def run_standardize(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Body of the stage (inside a flow whose task runner comes from params)."""
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    scfg = params["standardize"]
    conf = StandardizeConfig.from_dict(scfg["config"])
    workers = int(scfg["runner"]["workers"])
    threads = conf.threads or max(1, (os.cpu_count() or 1) // workers)
    out_root = root_path / scfg["out_dir"]
    logger = get_run_logger()
    manifest = read_table(paths.manifest)
    sessions = subject_table(manifest)
    with stage_run("standardize", {"standardize": scfg}, tags={"standardize.backend":
                   conf.skullstrip.backend}):  # fmt: skip
        calls = [
            {
                "subject": s["subject"] + (f"_{s['session']}" if s["session"] else ""),
                "images": {k: str(root_path / p) for k, p in s["images"].items()},
                "sha256": s["sha256"],
                "cfg": scfg["config"],
                "out_dir": str(out_root / s["key"]),
                "threads": threads,
                "lesion_mask": str(root_path / s["lesion_mask"]) if s["lesion_mask"] else None,
            }
            for s in sessions
        ]
        results = run_cached(standardize_one, lambda r: r["files"], calls, root=root_path)
        for res in results:
            if res["status"] == "ok":
                res["files_rel"] = {k: _rel(paths, v) for k, v in res["outputs"].items()}
                res["xfm_fwd_rel"] = [_rel(paths, v) for v in res["xfm_fwd"]]
                res["xfm_inv_rel"] = [_rel(paths, v) for v in res["xfm_inv"]]
            else:
                logger.warning("quarantined %s: %s (%s)", res["subject"], res["reason"],
                               res["detail"])  # fmt: skip
        extended = extend_manifest(manifest, sessions, results)
        assert len(extended) == len(manifest), "the stage must never drop manifest rows"
        check_leakage(extended)
        qc = pd.DataFrame([_qc_row(s, r, paths) for s, r in zip(sessions, results, strict=True)])
        quarantine = pd.DataFrame(
            [
                {
                    "dataset": "standardize",
                    "path": p,
                    "reason": r["reason"],
                    "detail": r["detail"],
                    "subject": s["subject"],
                }
                for s, r in zip(sessions, results, strict=True)
                if r["status"] != "ok"
                for p in s["images"].values()
            ],
            columns=["dataset", "path", "reason", "detail", "subject"],
        )
        processed = paths.processed
        write_table(extended, processed / "manifest_std.parquet")
        write_table(qc, processed / "standardize_qc.parquet")
        write_table(quarantine, processed / "standardize_quarantine.parquet")
        ok = qc[qc["status"] == "ok"]
        n_q = int((qc["status"] != "ok").sum())
        assert len(ok) + n_q == len(sessions), "counts do not add up"
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
        log_stage(
            {
                f"standardize.{k}": float(v)
                for k, v in summary.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            },
            artifacts=[processed / f"{name}.parquet"
                       for name in ("manifest_std", "standardize_qc", "standardize_quarantine")],
            artifact_path="standardize",
        )  # fmt: skip
    paths.metrics.mkdir(parents=True, exist_ok=True)
    save_json_atomic(summary, paths.metrics / "standardize.json")
    logger.info("standardize: %s", summary)
    publish_stage("standardize", paths.metrics / "standardize.json", out_root.glob("*/montage.png"))
    return summary


@flow(name="standardize", log_prints=True)
def _standardize(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    return run_standardize(profile=profile, root=root, overrides=overrides)


def standardize_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Run the stage as a Prefect flow with the task runner of ``standardize.runner``."""
    root_path, params = study_params(profile, root, overrides)
    runner = task_runner({"runner": params["standardize"]["runner"]})
    return _standardize.with_options(task_runner=runner)(
        profile=profile, root=str(root_path), overrides=overrides
    )


__all__ = ["NEW_COLUMNS", "standardize_flow"]

if __name__ == "__main__":
    import typer

    typer.run(standardize_flow)
