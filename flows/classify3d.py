"""Stage ``classify3d``: the Virtual-Biopsy 3D classifier (paper 003) on the standardized
T1C+ volumes — patient-level stratified CV, the mask ablation and the backbone comparison.

Run: ``brainxai classify3d run [--profile smoke]``. Reads ``data/processed/manifest_std.parquet``
and, when present, ``data/processed/pseudolabels.parquet`` (mask variants are skipped with a
note when it is absent — never replaced by the true lesion; the ``oracle`` row uses the true
lesion on purpose, as an upper bound). Protocol: the CV pool (``classify3d.cv.pool``,
default train + val patients) is split into stratified patient folds; each fold's model is
trained on the other folds minus an inner validation hold-out (early stopping and epoch
selection), scored on its fold, and predicts the held-out test patients. Every ablation row
and backbone uses the same folds and seeds. Writes:

* ``models/classify3d/<variant>/<backbone>/fold<k>/`` checkpoints (``epoch-*.pt`` at
  ``train.checkpoint_epochs``, ``best.pt``), ``predictions.parquet``, ``history.json``;
* ``models/classify3d/index.parquet``: one row per checkpoint of the ablation backbone's
  runs (the explanation-tracking stage's input; loader
  ``brainxai.classify3d.model:load_checkpoint``);
* ``data/interim/classify3d/patients.parquet`` (patients, folds, mask paths),
  ``data/processed/classify3d_excluded.parquet`` (sessions not used, with the reason);
* ``reports/classify3d/`` (``runs.md``, ``ablation.md``, ``backbones.md``,
  ``predictions.parquet``, confusion matrices) and ``reports/metrics/classify3d.json``.

MLflow: a stage run with one nested run per (variant, backbone): params, per-epoch metrics
(``fold<k>.train_loss`` … with ``step = epoch``), per-fold and mean ± sd test metrics; the
best model of each fold logged as an MLflow model with its signature (logits) as
``classify3d.register`` says; the ``register`` stage registers the champion per task.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, get_run_logger

from brainxai.classify3d import stage
from brainxai.classify3d.config import Classify3DConfig
from brainxai.jsonio import write_json
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.registry.candidates import checkpoint_model
from brainxai.splits import check_subset_leakage
from tasks import mlflow_log
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.classify3d import LOADER, train_run
from tasks.env import study_params
from tasks.mlflow_log import child_run, log_stage, stage_run


@flow(name="classify3d", log_prints=True)
def classify3d_flow(
    profile: str | None = None,
    root: str | None = None,
    log_model: bool = True,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Patient CV of every runnable ablation row and compared backbone; tables; index.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        log_model: log the best model of each fold to MLflow (as classify3d.register says).
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    section = params["classify3d"]
    cfg = Classify3DConfig.from_dict(section)
    logger = get_run_logger()
    manifest = read_table(paths.processed / "manifest_std.parquet")
    cohort = stage.prepare(cfg, paths, manifest)
    for n in cohort.notes:
        logger.warning(n)
    spacing = params.get("standardize", {}).get("config", {}).get("spacing_mm")
    runs = stage.plan(cfg, paths, cohort, spacing)
    results: dict[str, list[dict[str, Any]]] = {}
    with stage_run("classify3d", {"classify3d": section}):
        log_stage(cohort.counts())
        for run in runs:
            tags, run_params = stage.run_tags(run), stage.run_params(cfg, run)
            with child_run(f"classify3d-{run.variant}-{run.backbone}", tags, run_params):
                results[run.name] = []
                for k, call in enumerate(run.calls):  # one fold at a time
                    (res,) = run_cached(train_run, lambda r: r["files"], [call], root=root_path)
                    results[run.name].append(res)
                    for epoch, history in stage.fold_history(k, res):
                        log_stage(history, step=epoch)
                    log_stage(stage.fold_test(k, res))
                    check_subset_leakage(
                        manifest, res["train_record_ids"], allowed_splits=cfg.cv.pool
                    )
                    if log_model and stage.logs_model(cfg, cohort, run):
                        model = checkpoint_model(LOADER, stage.selected_checkpoint(res), "3d")
                        mlflow_log.log_model(*model, f"fold{k}")
                log_stage(stage.run_cv(run, results[run.name], cohort.class_names))
        out = stage.summarise(cfg, paths, cohort, runs, results, LOADER)
        log_stage(artifacts=[out.reports], artifact_path="classify3d")
        write_json(paths.metrics / "classify3d.json", out.metrics)
    publish_stage(
        "classify3d", paths.metrics / "classify3d.json", out.reports.glob("confusion_*.png")
    )
    return out.result


if __name__ == "__main__":
    import typer

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    typer.run(classify3d_flow)
