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
from brainxai.hashing import file_sha256
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.registry.candidates import backbone_model
from brainxai.splits import check_subset_leakage
from tasks import mlflow_log
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import child_run, log_stage, stage_run
from tasks.pretrain import framework_params, pretrain_cache, pretrain_framework

SUMMARY_KEYS = (
    "framework", "arch", "epochs", "steps", "n_pretrain_images", "n_knn_bank", "n_knn_query",
    "knn_classes", "resumed_from_epoch", "device", "final", "knn_random_init",
    "knn_gain_over_random",
)  # fmt: skip


def _cache_call(params: dict[str, Any], paths: StudyPaths) -> dict[str, Any]:
    pcfg = params["pretrain"]
    return {
        "manifest_path": str(paths.manifest),
        "manifest_sha256": file_sha256(paths.manifest),
        "base_dir": str(paths.root),
        "data_cfg": pcfg["data"],
        "knn_cfg": pcfg["knn"],
        "out_dir": str(paths.interim / "pretrain"),
    }


def _log_backbone(result: dict[str, Any], cfg: dict[str, Any], name: str) -> None:
    """The final backbone as an MLflow model (input: (N, 1, S, S) float32 in [0, 1])."""
    spec = BackboneSpec.from_pretrain(cfg["train"])
    backbone = backbone_model(spec.arch, spec.input_mean, spec.input_std,
                              Path(result["backbone"]), int(result["image_size"]))  # fmt: skip
    mlflow_log.log_model(*backbone, name, input_example=True)


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
        profile: params.yaml profile (smoke | full); empty: the file's ``profile`` key.
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
    pcfg = params["pretrain"]
    chosen = list(pcfg["frameworks"] if frameworks is None else frameworks)
    unknown = [f for f in chosen if f not in pcfg["frameworks"]]
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; known: {pcfg['frameworks']}")
    logger = get_run_logger()
    manifest = read_table(paths.manifest)
    summary: dict[str, Any] = {}
    shared = {k: pcfg[k] for k in ("data", "train", "augment", "knn")}
    with stage_run("pretrain", {"pretrain": {**shared, "frameworks": chosen}}):
        (cache,) = run_cached(
            pretrain_cache, lambda r: r["files"], [_cache_call(params, paths)], root=root_path
        )
        check_subset_leakage(manifest, cache["pretrain_record_ids"], allowed_splits=("train",))
        log_stage(
            {
                f"pretrain.cache.{k}": float(cache[k])
                for k in ("n", "ok", "failed", "n_pretrain", "n_pretrain_3d_slices", "n_query")
            }
        )
        for reason in cache["failures"]:
            logger.warning("not cached: %s (%s)", reason["key"], reason["reason"])
        for fw in chosen:
            cfg = framework_params(pcfg, fw, params["seed"])
            out_dir = paths.root / pcfg["out_dir"] / fw
            with child_run(
                f"pretrain-{fw}",
                tags={"brainxai.framework": fw, "brainxai.stage": "pretrain"},
                params=cfg,
            ) as child:
                call = {
                    "framework": fw,
                    "cache_dir": cache["cache_dir"],
                    "cache_fingerprint": cache["fingerprint"],
                    "cfg": cfg,
                    "out_dir": str(out_dir),
                    "resident_max_bytes": int(pcfg["data"]["resident_max_bytes"]),
                    "mlflow_run_id": child.info.run_id,
                }
                (res,) = run_cached(
                    pretrain_framework, lambda r: r["files"], [call], root=root_path
                )
                if res["mlflow_run_id"] != child.info.run_id:  # cache hit: log the history
                    for rec in res["history"]:
                        step = int(rec["epoch"]) * int(res["steps_per_epoch"])
                        log_stage(
                            {f"epoch_{k}" if k in ("loss", "lr", "images_per_s") else k: v
                             for k, v in rec.items()},
                            step=step,
                        )  # fmt: skip
                final = {f"final.{k}": float(v) for k, v in res["final"].items()}
                if res.get("knn_random_init") is not None:
                    final["knn_random_init"] = float(res["knn_random_init"])
                log_stage(
                    final,
                    artifacts=[res["checkpoint"]] if res["checkpoint"] else [],
                    artifact_path="checkpoints",
                )
                if log_model:
                    _log_backbone(res, cfg, f"backbone-{fw}")
            summary[fw] = {k: res.get(k) for k in SUMMARY_KEYS} | {
                "backbone": paths.rel(Path(res["backbone"]))
            }
            paths.metrics.mkdir(parents=True, exist_ok=True)
            save_json_atomic(summary[fw], paths.metrics / f"pretrain_{fw}.json")
            logger.info("%s: %s", fw, res["final"])
    publish_stage("pretrain", [paths.metrics / f"pretrain_{fw}.json" for fw in summary])
    return {"cache": {k: v for k, v in cache.items() if k != "pretrain_record_ids"}, **summary}


if __name__ == "__main__":
    import typer

    typer.run(pretrain_flow)
