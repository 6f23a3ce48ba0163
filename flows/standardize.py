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
from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.standardize import stage, subject_table
from brainxai.standardize.manifest import NEW_COLUMNS
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.runners import task_runner
from tasks.standardize import standardize_one


def run_standardize(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Body of the stage (inside a flow whose task runner comes from params)."""
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    section = params["standardize"]
    cfg = stage.StageConfig.from_params(root_path, section)
    workers = int(section["runner"]["workers"])
    threads = cfg.config.threads or max(1, (os.cpu_count() or 1) // workers)
    logger = get_run_logger()
    manifest = read_table(paths.manifest)
    sessions = subject_table(manifest)
    with stage_run("standardize", {"standardize": section}, tags={"standardize.backend":
                   cfg.config.skullstrip.backend}):  # fmt: skip
        calls = stage.plan(cfg, sessions, root_path, threads)
        results = run_cached(standardize_one, lambda r: r["files"], calls, root=root_path)
        for res in results:
            stage.with_relative_paths(res, paths)
            if res["status"] != "ok":
                logger.warning("quarantined %s: %s (%s)", res["subject"], res["reason"],
                               res["detail"])  # fmt: skip
        out = stage.summarise(cfg, paths, manifest, sessions, results)
        log_stage(out.metrics, artifacts=out.artifacts, artifact_path="standardize")
    paths.metrics.mkdir(parents=True, exist_ok=True)
    save_json_atomic(out.summary, paths.metrics / "standardize.json")
    logger.info("standardize: %s", out.summary)
    publish_stage(
        "standardize", paths.metrics / "standardize.json", cfg.out_dir.glob("*/montage.png")
    )
    return out.summary


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
