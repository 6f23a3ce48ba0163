"""Prefect tasks around :mod:`brainxai.ssl`: the decoded cache and one pretraining run per
framework.

* ``pretrain-cache`` decodes the selected images once (keyed by the manifest's sha256, the
  data/monitor params and the cache code).
* ``pretrain-framework`` trains one framework. Its cache key holds only that framework's
  params (its own section + the shared loop/augmentation/monitor sections), the cache
  fingerprint and the ``brainxai.ssl`` code, so changing BYOL's momentum re-runs BYOL only.
  The MLflow run id it streams metrics to is excluded from the key. It retries once: a
  run that crashed (killed worker, preempted GPU) resumes from its newest checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from brainxai.atomic import save_json_atomic
from brainxai.manifest import read_table
from brainxai.ssl import (
    AugmentConfig,
    Cache,
    DataConfig,
    KnnConfig,
    PretrainSpec,
    TrainConfig,
    build_cache,
    fingerprint,
    framework_config,
    pretrain,
    select_items,
)
from brainxai.ssl.cache import IMAGES, INDEX
from tasks.caching import code_policy, hashed_outputs
from tasks.gpu import GPU_TAG, on_gpu_slot
from tasks.mlflow_log import log_steps
from tasks.progress import Progress

STEP_KEYS = ("loss", "lr", "images_per_s", "gpu_mem_gb", "grad_norm")


def spec_of(framework: str, cfg: dict[str, Any], data_id: str) -> PretrainSpec:
    return PretrainSpec(
        framework=framework,
        optim=framework_config(framework, cfg["framework"]),
        train=TrainConfig.from_dict(cfg["train"]),
        augment=AugmentConfig.from_dict(cfg["augment"]),
        knn=KnnConfig.from_dict(cfg["knn"]),
        data_id=data_id,
    )


@task(name="pretrain-cache", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def pretrain_cache(
    manifest_path: str,
    manifest_sha256: str,
    base_dir: str,
    data_cfg: dict[str, Any],
    knn_cfg: dict[str, Any],
    out_dir: str,
) -> dict[str, Any]:
    """Select the pretraining/monitor images and decode them once into ``out_dir/<id>/``."""
    data = DataConfig.from_dict(data_cfg)
    items = select_items(read_table(manifest_path), data, KnnConfig.from_dict(knn_cfg))
    fp = fingerprint(items, data.cache_size)
    cache_dir = Path(out_dir) / fp
    t0 = time.perf_counter()
    stats = build_cache(
        items,
        base_dir,
        cache_dir,
        data.cache_size,
        data.decode_workers,
        (data.volume_slab, data.volume_window_percentile),
    )
    used = items.loc[items["pretrain"], "record_id"]
    return {
        "cache_dir": str(cache_dir),
        "fingerprint": fp,
        "files": [str(cache_dir / IMAGES), str(cache_dir / INDEX)],
        "pretrain_record_ids": sorted(set(used.astype(str))),
        "n_pretrain": int(items["pretrain"].sum()),
        "n_pretrain_3d_slices": int((items["pretrain"] & (items["kind"] == "3d")).sum()),
        "n_bank": int(items["bank"].sum()),
        "n_query": int(items["query"].sum()),
        "decode_seconds": time.perf_counter() - t0,
        **{k: stats[k] for k in ("n", "ok", "failed", "failures", "bytes")},
    }


class MlflowStream:
    """``on_metrics`` callback writing step/epoch metrics to one MLflow run (by id)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __call__(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        if kind == "step":
            items = {k: v for k, v in metrics.items() if k in STEP_KEYS}
        else:
            items = {f"epoch_{k}" if k in STEP_KEYS else k: v for k, v in metrics.items()}
        log_steps([(k, v, step) for k, v in items.items()], self.run_id)


def with_progress(
    stream: MlflowStream | None, bar: Progress
) -> Callable[[str, int, dict[str, float]], None]:
    """``on_metrics`` callback: ``stream``'s MLflow logging plus the run's progress line
    (one unit per finished epoch; a resumed run counts from its checkpoint's epoch)."""

    def on_metrics(kind: str, step: int, metrics: dict[str, float]) -> None:
        if stream is not None:
            stream(kind, step, metrics)
        if kind == "epoch":
            epoch = int(metrics["epoch"])
            if bar.done == 0 and epoch > 1:
                bar.resume_from(epoch - 1)
            bar.update(epoch)

    return on_metrics


@task(
    name="pretrain-framework",
    cache_policy=code_policy(__name__) - "mlflow_run_id",
    persist_result=True,
    retries=1,
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def pretrain_framework(
    framework: str,
    cache_dir: str,
    cache_fingerprint: str,
    cfg: dict[str, Any],
    out_dir: str,
    resident_max_bytes: int,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Pretrain one framework (resuming from its newest matching checkpoint, if any)."""
    spec = spec_of(framework, cfg, cache_fingerprint)
    stream = MlflowStream(mlflow_run_id) if mlflow_run_id else None
    with Progress(f"pretrain · {framework}", spec.train.epochs, unit="epochs") as bar:
        result = pretrain(
            spec,
            Cache.open(cache_dir),
            out_dir,
            on_metrics=with_progress(stream, bar),
            resume=True,
            resident_max_bytes=resident_max_bytes,
        )
        bar.update(bar.total)  # also when it resumed from its last epoch's checkpoint
    ckpts = sorted((Path(out_dir) / "checkpoints").glob("epoch-*.pt"))
    result["checkpoint"] = str(ckpts[-1]) if ckpts else ""
    result["files"] = [result["backbone"], *([result["checkpoint"]] if ckpts else [])]
    result["mlflow_run_id"] = mlflow_run_id
    save_json_atomic(
        {k: v for k, v in result.items() if k != "files"}, Path(out_dir) / "summary.json"
    )
    return result
