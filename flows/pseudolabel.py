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
from typing import Any

from prefect import flow, get_run_logger

from brainxai.jsonio import write_json
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.pseudolabel import stage
from brainxai.splits import check_leakage
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.pseudolabel import pseudolabel_one
from tasks.runners import task_runner


def run_pseudolabel(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Body of the stage (inside a flow whose task runner comes from params)."""
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    section = params["pseudolabel"]
    cfg = stage.StageConfig.from_params(root_path, section)
    if cfg.config.proposer == "openai":
        cfg.config.openai.endpoint()  # refuses plain http:// off this machine before any work
    threads = max(1, (os.cpu_count() or 1) // int(section["runner"]["workers"]))
    # A declared DVC output: it exists even when the proposer (classical) asks no VLM.
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    logger = get_run_logger()
    manifest = read_table(paths.processed / "manifest_std.parquet")
    check_leakage(manifest)
    sessions = stage.session_table(manifest, root_path)
    with stage_run("pseudolabel", {"pseudolabel": section},
                   tags={"pseudolabel.proposer": cfg.config.proposer}):  # fmt: skip
        calls = stage.plan(cfg, sessions, threads)
        results = run_cached(pseudolabel_one, lambda r: r["files"], calls, root=root_path)
        for r in results:
            if r["status"] != "ok":
                logger.warning("pseudolabel failed for %s: %s", r["subject"], r["reason"])
        out = stage.summarise(cfg, paths, sessions, results)
        log_stage(out.metrics, artifacts=out.artifacts, artifact_path="pseudolabel")
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics / "pseudolabel.json", out.summary)
    logger.info("pseudolabel: %s", out.summary)
    publish_stage("pseudolabel", paths.metrics / "pseudolabel.json")
    return out.summary


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
