"""Stage ``xai``: per-checkpoint explanation tracking (paper 004) on the checkpoints the
training stages log (fine-tuning: ``models/finetune/index.parquet``; 3D classifier:
``models/classify3d/index.parquet``; a missing index skips that family and says so).

Run: ``brainxai xai track [--profile smoke]``. For every selected checkpoint
(``xai.select``) one cached task writes float16 heatmaps of each method (``xai.methods``) of
the evaluation images (``xai.eval_split``, at most ``xai.max_images`` per family, classes
taking turns) to ``data/interim/xai/heatmaps/<run>/``. Then, from those files:

* ``reports/xai/trajectory.parquet`` (+ ``.csv``): one row per (run, method, epoch, class)
  and a global row (``klass = -1``): C-Score, gold-list size, support, AUC, accuracy and
  correctness against the lesion masks (:mod:`brainxai.xai.trajectory`);
* ``reports/xai/dissociations.md``: paper 004's three AUC–consistency dissociations;
* ``reports/xai/sensitivity.csv``: τ and γ sweeps at each run's final checkpoint;
* ``reports/xai/randomisation.csv``: model-parameter randomisation check, final checkpoints;
* ``reports/xai/faithfulness.csv``: deletion / insertion AUC per checkpoint and method, and
  of a random-ranking control (:mod:`brainxai.xai.faithfulness`; also on the trajectory's
  global rows) - "faithful" beside "consistent" (C-Score) and "correct" (localisation);
* ``reports/xai/plots/<run>__<method>.png``: C-Score and AUC per class vs epoch, gold sizes,
  and the transfer → fine-tuning boundary of a two-phase run (paper 004);
* ``reports/xai/quarantine.csv``: checkpoints that are missing or do not load;
* ``reports/metrics/xai.json``: the headline numbers.

MLflow: a stage run with a nested run per model (``xai-<run>``): metrics with
``step = epoch``, the randomisation results and the model's plots as artifacts.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from brainxai.jsonio import write_json
from brainxai.paths import StudyPaths
from brainxai.xai import stage
from brainxai.xai.stage_config import XaiConfig
from tasks.artifacts import publish_stage
from tasks.caching import package_hash, run_cached
from tasks.env import study_params
from tasks.mlflow_log import child_run, log_stage, log_steps, stage_run
from tasks.runners import task_runner
from tasks.xai import explain_task, faithfulness_task, randomisation_task


def _run(task: Any, calls: list[dict[str, Any]], root: Any, files: bool = False) -> list[dict]:
    """The cached task over ``calls`` (none: no task run)."""
    return (
        run_cached(task, lambda r: r["files"] if files else [], calls, root=root) if calls else []
    )


def run_xai(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Body of the stage (inside a flow whose task runner comes from ``xai.runner``)."""
    t0 = time.perf_counter()
    root_path, params = study_params(profile, root, overrides)
    root_path = root_path.resolve()
    paths = StudyPaths.from_params(root_path, params)
    xparams = {k: v for k, v in params["xai"].items() if k != "runner"}
    cfg = XaiConfig.from_dict(xparams)
    logger = get_run_logger()
    with stage_run("xai", {"xai": xparams}):
        plan = stage.plan(cfg, root_path, package_hash)
        for name, rep in plan.families.items():
            if rep["status"] != "ok":
                logger.warning("xai: family %s skipped (%s)", name, rep["reason"])
        explained = _run(explain_task, stage.explain_calls(plan), root_path, files=True)
        ex = stage.Explained(plan, stage.method_results(explained))
        for q in ex.failed:
            logger.warning("xai: quarantined %s epoch %s: %s", q["run"], q["epoch"], q["reason"])
        rand = _run(randomisation_task, stage.randomisation_calls(cfg, plan, ex), root_path)
        faith = stage.method_results(
            _run(faithfulness_task, stage.faithfulness_calls(cfg, plan, ex), root_path)
        )
        out = stage.summarise(cfg, root_path, plan, ex, rand, faith, params["profile"])
        for model in stage.model_runs(out, plan):  # one nested MLflow run per model
            with child_run(model["name"], tags=model["tags"], params=model["params"]):
                log_steps(model["metrics"])
                log_stage(artifacts=model["plots"], artifact_path="plots")
        summary = out.summary | {"seconds": round(time.perf_counter() - t0, 2)}
        log_stage(out.metrics, artifacts=out.artifacts, artifact_path="xai")
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics / "xai.json", summary)
    logger.info("xai: %s", {k: summary[k] for k in ("dissociations", "randomisation")})
    reports = root_path / cfg.reports_dir
    publish_stage("xai", paths.metrics / "xai.json", (reports / "plots").glob("*.png"))
    return summary


@flow(name="xai", log_prints=True)
def _xai(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    return run_xai(profile=profile, root=root, overrides=overrides)


def xai_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Run the stage as a Prefect flow with the task runner of ``xai.runner``."""
    root_path, params = study_params(profile, root, overrides)
    runner = task_runner({"runner": params["xai"].get("runner", params["runner"])})
    return _xai.with_options(task_runner=runner)(
        profile=profile, root=str(root_path), overrides=overrides
    )


if __name__ == "__main__":
    import typer

    typer.run(xai_flow)
