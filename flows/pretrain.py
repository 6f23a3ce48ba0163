"""Stage ``pretrain``: SSL pretraining per framework (SimCLR, BYOL, DINO, MoCo v3) and a
supervised baseline, on TRAINING-split patients only (see :mod:`brainxai.ssl`).

Run: ``brainxai ssl pretrain [--framework simclr ...]`` (all of ``pretrain.frameworks`` by
default); DVC runs one stage per framework (``pretrain@<framework>`` in ``dvc.yaml``) after
``pretrain_cache``. Writes ``models/ssl/<framework>/`` (``backbone.safetensors``,
checkpoints, ``summary.json``) and ``reports/metrics/pretrain_<framework>.json``; logs one
nested MLflow run per framework (params, per-step and per-epoch metrics with their step,
the last checkpoint, the backbone as an MLflow model with its input signature).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.finetune.config import BackboneSpec
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.registry.candidates import backbone_model
from brainxai.splits import check_subset_leakage
from brainxai.ssl import stage
from tasks import mlflow_log
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import child_run, log_stage, stage_run
from tasks.pretrain import pretrain_cache, pretrain_framework


def _log_backbone(result: dict[str, Any], cfg: dict[str, Any], name: str) -> None:
    """The final backbone as an MLflow model (input: (N, 1, S, S) float32 in [0, 1])."""
    spec = BackboneSpec.from_pretrain(cfg["train"])
    backbone = backbone_model(spec.arch, spec.input_mean, spec.input_std,
                              Path(result["backbone"]), int(result["image_size"]))  # fmt: skip
    mlflow_log.log_model(*backbone, name, input_example=True)


def _pretrain(call: dict[str, Any], run_id: str, root: Path, log_model: bool) -> dict[str, Any]:
    """One framework's cached run, logged in its MLflow run ``run_id``."""
    (res,) = run_cached(pretrain_framework, lambda r: r["files"], [call], root=root)
    if res["mlflow_run_id"] != run_id:  # cache hit: log the history
        for step, metrics in stage.history(res):
            log_stage(metrics, step=step)
    log_stage(
        stage.final_metrics(res),
        artifacts=[res["checkpoint"]] if res["checkpoint"] else [],
        artifact_path="checkpoints",
    )
    if log_model:
        _log_backbone(res, call["cfg"], f"backbone-{call['framework']}")
    return res


@flow(name="pretrain", log_prints=True)
def pretrain_flow(
    profile: str | None = None,
    root: str | None = None,
    frameworks: list[str] | None = None,
    log_model: bool = True,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Decode the cache once, check leakage, pretrain each framework in turn.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        frameworks: only these SSL frameworks (simclr, byol, dino, mocov3, supervised);
            null: every one in params.pretrain.frameworks; [] only builds the image cache.
        log_model: log each backbone to MLflow as a model with its signature.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    section = params["pretrain"]
    chosen = stage.frameworks(section, frameworks)
    logger = get_run_logger()
    manifest = read_table(paths.manifest)
    summary: dict[str, Any] = {}
    shared = {k: section[k] for k in stage.SHARED}
    with stage_run("pretrain", {"pretrain": {**shared, "frameworks": chosen}}):
        call = stage.cache_call(section, paths)
        (cache,) = run_cached(pretrain_cache, lambda r: r["files"], [call], root=root_path)
        check_subset_leakage(manifest, cache["pretrain_record_ids"], allowed_splits=("train",))
        log_stage(stage.cache_counts(cache))
        for reason in cache["failures"]:
            logger.warning("not cached: %s (%s)", reason["key"], reason["reason"])
        for fw in chosen:
            cfg = stage.framework_params(section, fw, params["seed"])
            tags = {"brainxai.framework": fw, "brainxai.stage": "pretrain"}
            with child_run(f"pretrain-{fw}", tags=tags, params=cfg) as child:
                rid = child.info.run_id
                call = stage.framework_call(section, paths, fw, params["seed"], cache, rid)
                res = _pretrain(call, rid, root_path, log_model)
            summary[fw] = stage.summarise(res, paths)
            paths.metrics.mkdir(parents=True, exist_ok=True)
            save_json_atomic(summary[fw], paths.metrics / f"pretrain_{fw}.json")
            logger.info("%s: %s", fw, res["final"])
    publish_stage("pretrain", [paths.metrics / f"pretrain_{fw}.json" for fw in summary])
    return {"cache": {k: v for k, v in cache.items() if k != "pretrain_record_ids"}, **summary}


if __name__ == "__main__":
    import typer

    typer.run(pretrain_flow)
