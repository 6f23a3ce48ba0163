"""Prefect task around :mod:`brainxai.finetune.control_cell`: one cached task per planted
control (positive / pasted / shortcut / random_labels).

Key: the control's name, the decoded cache's fingerprint, the lesion masks' fingerprint
(:func:`brainxai.finetune.stage.masks_fingerprint`), the reused study cell's files'
sha256 (positive control), its training record ids, the
``tune`` and ``controls`` params, the backbone spec and the CAM layers, plus the code the
task imports (:func:`tasks.caching.code_policy`). Retried once (a crashed worker), never
for bad data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from brainxai.atomic import to_parquet_atomic
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.control_cell import run_control
from brainxai.jsonio import write_json
from brainxai.ssl.cache import Cache
from tasks.caching import code_policy, hashed_outputs
from tasks.gpu import GPU_TAG, on_gpu_slot


@task(
    name="finetune-control",
    cache_policy=code_policy(__name__),
    persist_result=True,
    retries=1,
    task_run_name="control-{control}",
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def finetune_control(
    control: str,
    cache_dir: str,
    cache_fingerprint: str,
    masks_fingerprint: str,
    train_record_ids: list[str],
    finetune_cfg: dict[str, Any],
    backbone: dict[str, Any],
    cam_layers: list[str],
    root: str,
    run_dir: str,
    report_dir: str,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and measure one control; writes ``run_dir/epoch-XXXX.pt`` and
    ``report_dir/{measured.json, predictions.parquet}``.

    ``finetune_cfg`` holds only the ``tune`` and ``controls`` sections (the other knobs
    never enter this task's key); ``cache_fingerprint`` and ``masks_fingerprint`` are there
    for the key (the masks on disk under ``root`` are read, not passed). ``source``: the
    study cell the positive control is (:func:`brainxai.finetune.stage.positive_source`;
    its checkpoint and predictions enter the key by sha256), measured, not trained again.
    """
    cfg = FinetuneConfig.from_dict(finetune_cfg)
    out, rep = Path(run_dir), Path(report_dir)
    for stale in out.glob("epoch-*.pt"):  # a re-run (new params or code) starts clean
        stale.unlink()
    res = run_control(
        control, Cache.open(cache_dir), train_record_ids, cfg, cfg.controls,
        BackboneSpec.from_dict(backbone), Path(root), out, tuple(cam_layers), source,
    )  # fmt: skip
    rep.mkdir(parents=True, exist_ok=True)
    pred_path = rep / "predictions.parquet"
    to_parquet_atomic(res["predictions"], pred_path, index=False)
    measured_path = write_json(rep / "measured.json", {**res["measured"],
                                                       "history": res["history"]})  # fmt: skip
    ckpts = [c["path"] for c in res["checkpoints"]]
    return {
        "control": control,
        "measured": res["measured"],
        "checkpoints": res["checkpoints"],
        "predictions": str(pred_path),
        "files": [*ckpts, str(pred_path), str(measured_path)],
    }
