"""Prefect tasks around :mod:`brainxai.xai.per_checkpoint`: the heatmaps of one checkpoint's
methods, their deletion/insertion faithfulness on that checkpoint (one task, the random
control scored once for its methods), and the
parameter-randomisation check on a run's final checkpoint.

One explain task per checkpoint, its methods together: the CAMs share one forward/backward
pass and the model and images are loaded once (3x faster than one task per method,
``benchmarks/bench_cam_shared_pass.py``; adding a method recomputes that checkpoint's maps,
the same bytes). The cache key is the task's inputs — checkpoint fingerprint (file hash,
plus the backbone file's for head-only checkpoints), evaluation-set fingerprint, methods,
CAM params, device, a hash of the loader's module — plus the task source and the
``brainxai`` code it calls.
A checkpoint that cannot be loaded, or cannot take the evaluation images (a mask-using
model whose mask is unavailable), is quarantined with its reason and the stage goes on;
no retries: a bad checkpoint stays bad. So is a method the model cannot take (LRP on a
layer without a relevance rule, e.g. a ViT's LayerNorm): that (checkpoint, method) only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from brainxai.xai.cams import CamConfig, pass_groups
from brainxai.xai.evalset import EvalInputError
from brainxai.xai.faithfulness import FaithfulnessConfig
from brainxai.xai.gradients import LRPUnsupportedError
from brainxai.xai.per_checkpoint import (
    explain_methods,
    faithfulness_against_stored,
    load_model,
    randomisation_against_stored,
)
from brainxai.xai.stage_config import RandomisationConfig
from tasks.caching import code_policy, hashed_outputs
from tasks.gpu import GPU_TAG, on_gpu_slot


def _load(checkpoint_path: str, loader: str) -> tuple[Any, dict[str, Any], str]:
    """(model, meta, "") or (None, {}, reason) for a checkpoint that does not load."""
    try:
        model, meta = load_model(checkpoint_path, loader)
        return model, meta, ""
    except Exception as exc:
        return None, {}, f"checkpoint unreadable: {type(exc).__name__}: {exc}"[:400]


@task(
    name="xai-explain",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="explain-{run}-e{epoch}",
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def explain_task(
    family: str,
    run: str,
    epoch: int,
    methods: list[str],
    checkpoint_path: str,
    checkpoint_fingerprint: str,
    loader: str,
    loader_code: str,
    kind: str,
    data: str,
    evalset_path: str,
    evalset_fingerprint: str,
    root: str,
    cam_cfg: dict[str, Any],
    explain: str,
    device: str,
    out_dir: str,
) -> dict[str, Any]:
    """Heatmaps of every method in ``methods`` for one checkpoint, under ``out_dir/<run>/``;
    ``rows``: one result per method (ok with its file, or quarantined with the reason)."""
    base = {"family": family, "run": run, "epoch": int(epoch)}
    rows: dict[str, dict[str, Any]] = {}
    model, meta, reason = _load(checkpoint_path, loader)
    if reason:
        rows = {m: {"method": m, "status": "quarantined", "reason": reason} for m in methods}
    else:
        table = pd.read_parquet(evalset_path)
        names = [str(c) for c in meta["class_names"]]
        for group in pass_groups(methods):  # the CAMs in one pass; LRP etc. alone
            try:
                res = explain_methods(model, meta, kind, data, table, root, run, int(epoch),
                                      group, Path(out_dir) / run, CamConfig.from_dict(cam_cfg),
                                      explain, device)  # fmt: skip
            except (EvalInputError, LRPUnsupportedError) as exc:
                why = str(exc) if isinstance(exc, EvalInputError) else f"{group[0]}: {exc}"
                rows |= {m: {"method": m, "status": "quarantined", "reason": why[:400]}
                         for m in group}  # fmt: skip
                continue
            paths = res.pop("heatmaps")
            share = res | {"seconds": res["seconds"] / len(group)}  # each method's share
            rows |= {m: share | {"method": m, "status": "ok", "reason": "", "path": paths[m],
                                 "class_names": names} for m in group}  # fmt: skip
    ordered = [base | rows[m] for m in methods]
    return base | {"rows": ordered, "files": [r["path"] for r in ordered if r["status"] == "ok"]}


@task(
    name="xai-faithfulness",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="faithful-{run}-e{epoch}",
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def faithfulness_task(
    family: str,
    run: str,
    epoch: int,
    methods: list[str],
    checkpoint_path: str,
    checkpoint_fingerprint: str,
    loader: str,
    loader_code: str,
    kind: str,
    data: str,
    evalset_path: str,
    evalset_fingerprint: str,
    root: str,
    heatmap_paths: list[str],
    heatmap_sha256s: list[str],
    faith_cfg: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """Deletion/insertion AUC of the stored maps of one checkpoint's ``methods`` (and of the
    random control, scored once for them); cached on the heatmap files' hashes and the
    faithfulness params. ``rows``: one result per method."""
    base = {"family": family, "run": run, "epoch": int(epoch)}
    model, meta, reason = _load(checkpoint_path, loader)
    if reason:
        rows = [{"method": m, "status": "quarantined", "reason": reason} for m in methods]
    else:
        scores = faithfulness_against_stored(
            model,
            meta,
            kind,
            data,
            pd.read_parquet(evalset_path),
            root,
            heatmap_paths,
            FaithfulnessConfig.from_dict(faith_cfg),
            device,
        )
        rows = [res | {"method": m, "status": "ok", "reason": ""}
                for m, res in zip(methods, scores, strict=True)]  # fmt: skip
    return base | {"rows": [base | r for r in rows]}


@task(
    name="xai-randomisation",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="randomise-{run}-e{epoch}-{method}",
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def randomisation_task(
    family: str,
    run: str,
    epoch: int,
    method: str,
    checkpoint_path: str,
    checkpoint_fingerprint: str,
    loader: str,
    loader_code: str,
    kind: str,
    data: str,
    evalset_path: str,
    evalset_fingerprint: str,
    root: str,
    heatmap_path: str,
    heatmap_sha256: str,
    cam_cfg: dict[str, Any],
    rand_cfg: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """Trained (stored) vs randomised-weights maps of ``method`` on a final checkpoint."""
    base = {"family": family, "run": run, "epoch": int(epoch), "method": method}
    model, meta, reason = _load(checkpoint_path, loader)
    if reason:
        return base | {"status": "quarantined", "reason": reason}
    res = randomisation_against_stored(
        model,
        meta,
        kind,
        data,
        pd.read_parquet(evalset_path),
        root,
        heatmap_path,
        CamConfig.from_dict(cam_cfg),
        RandomisationConfig.from_dict(rand_cfg),
        device,
    )
    return base | res | {"status": "ok", "reason": ""}
