"""Prefect task around :mod:`brainxai.classify3d`: one (variant, backbone, fold) training run.

Inputs are the patient table's path and sha256 (written by the flow: one row per patient
with its outer fold, image and mask paths), the run's JSON params and the output folder;
the cache key adds the task source and the ``brainxai.classify3d`` / ``brainxai.evaluation``
code. No retries: a failure here is a bug or bad data, not transient I/O. Writes
``<out_dir>/epoch-*.pt``, ``best.pt``, ``predictions.parquet`` and ``history.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import task

from brainxai.atomic import save_json_atomic, to_parquet_atomic
from brainxai.classify3d.config import (
    AugmentConfig,
    CVConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
    VariantConfig,
)
from brainxai.classify3d.data import records
from brainxai.classify3d.folds import inner_split
from brainxai.classify3d.train import scores, train_fold
from tasks.caching import code_policy, hashed_outputs
from tasks.gpu import GPU_TAG, on_gpu_slot

LOADER = "brainxai.classify3d.model:load_checkpoint"


def _predictions_frame(preds: dict[str, list[dict]], class_names: list[str]) -> pd.DataFrame:
    rows = [{"set": name, **p} for name, ps in preds.items() for p in ps]
    df = pd.DataFrame(rows, columns=["set", "subject", "record_id", "y", "probs"])
    df["y_pred"] = [int(max(range(len(p)), key=p.__getitem__)) for p in df["probs"]]
    return df


@task(
    name="classify3d-fold",
    cache_policy=code_policy(__name__),
    persist_result=True,
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def train_run(
    patients_path: str,
    patients_sha256: str,
    root: str,
    run: str,
    variant: dict[str, Any],
    backbone_spec: dict[str, Any],
    cfg: dict[str, Any],
    class_names: list[str],
    fold: int,
    out_dir: str,
    threads: int = 0,
) -> dict[str, Any]:
    """Train fold ``fold`` (outer test = that fold; holdout = patients with ``fold = -1``)."""
    if threads:
        torch.set_num_threads(threads)
    v = VariantConfig.from_dict(variant)
    cv = CVConfig.from_dict(cfg["cv"])
    data_cfg = DataConfig.from_dict(cfg["data"])
    train_cfg = TrainConfig.from_dict(cfg["train"])
    patients = pd.read_parquet(patients_path)
    dev = patients[(patients["fold"] >= 0) & (patients["fold"] != fold)].reset_index(drop=True)
    tr, va = inner_split(dev["y"].to_numpy(), cv.inner_val_fraction, seed=cv.seed + fold)
    mask = v.mask
    data = {
        "train": records(dev.iloc[tr], root, mask),
        "val": records(dev.iloc[va], root, mask),
        "cv": records(patients[patients["fold"] == fold], root, mask),
        "holdout": records(patients[patients["fold"] < 0], root, mask),
    }
    meta = {
        "format": "brainxai.classify3d",
        "run": run,
        "init": run.split("/")[0],
        "protocol": "cv",
        "fraction": 1.0,
        "seed": train_cfg.seed,
        "fold": fold,
        "backbone_spec": backbone_spec,
        "backbone": run.split("/")[1] if "/" in run else "",
        "variant": v.model_fields(),
        "model_cfg": dict(cfg["model"]),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_size": list(data_cfg.input_size),
        "image_size": list(data_cfg.input_size),
        "sequence": data_cfg.sequence,
        "spacing_mm": cfg.get("spacing_mm"),
        "space": "MNI152NLin2009 (standardized), resized to input_size",
        "mask_source": v.mask,
        "needs_mask": v.needs_mask,
    }
    res = train_fold(
        data["train"],
        data["val"],
        {"cv": data["cv"], "holdout": data["holdout"]},
        backbone_spec=backbone_spec,
        variant=v,
        model_cfg=ModelConfig.from_dict(cfg["model"]),
        train_cfg=train_cfg,
        data_cfg=data_cfg,
        augment_cfg=AugmentConfig.from_dict(cfg["augment"]),
        class_names=list(class_names),
        out_dir=out_dir,
        root=root,
        meta=meta,
    )
    out = Path(out_dir)
    preds = _predictions_frame(res.predictions, list(class_names))
    to_parquet_atomic(preds, out / "predictions.parquet", index=False)
    summary = {
        "run": run,
        "fold": fold,
        "history": res.history,
        "best_epoch": res.best_epoch,
        "best_val_macro_f1": res.best_val_macro_f1,
        "checkpoints": res.checkpoints,
        "device": res.device,
        "seconds": res.seconds,
        "volumes_per_s": res.volumes_per_s,
        "stopped_early": res.stopped_early,
        "n_train": len(data["train"]),
        "n_val": len(data["val"]),
        "n_cv": len(data["cv"]),
        "n_holdout": len(data["holdout"]),
        "train_record_ids": [d["record_id"] for d in data["train"] + data["val"]],
        "cv_metrics": scores(res.predictions["cv"], list(class_names)),
    }
    save_json_atomic(summary, out / "history.json")
    summary["predictions"] = str(out / "predictions.parquet")
    summary["files"] = [summary["predictions"], *(c["path"] for c in res.checkpoints)]
    return summary
