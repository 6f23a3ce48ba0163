"""MLflow model registry: register each task's models, move the aliases.

Three registered models, one per task (``params.registry``): the SSL backbones
(``brainxai-ssl-backbone``, a version per framework, alias ``<framework>``), the
fine-tuned 2D classifiers (``brainxai-classifier-2d``, the best run per init x protocol,
alias ``<init>-<protocol>``) and the 3D classifiers (``brainxai-classifier-3d``, the best
fold per ablation row x backbone, alias ``<variant>-<backbone>``). ``champion`` points at
the best version on a VALIDATION metric (:mod:`brainxai.registry.champion`).

Every version is a PyTorch MLflow model with its tensor signature, loadable with
``mlflow.pyfunc.load_model("models:/<name>@champion").predict(x.numpy())`` (the same
numbers as the checkpoint's ``model(x)``) or ``mlflow.pytorch.load_model(...)(x)``.
Registering is idempotent: a file already registered (tag ``brainxai.sha256``) keeps its
version and only the aliases move. A 3D fold model the classify3d stage already logged is
registered from that logged model instead of being logged again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.entities import LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from brainxai.hashing import file_sha256
from brainxai.registry.champion import best_per_group, select_champion
from brainxai.registry.config import FamilyConfig, alias_for
from tasks.mlflow_log import PARENT_ENV, log_model

SHA_TAG = "brainxai.sha256"
_TAG_MAX = 5000


@dataclass(frozen=True)
class Loaded:
    """A model ready to log: the module (eval mode) and one input example (batch 1)."""

    model: torch.nn.Module
    example: np.ndarray


def _tag_value(v: Any) -> str:
    return str(v)[:_TAG_MAX]


def row_tags(row: Mapping[str, Any], skip: tuple[str, ...] = ("selection",)) -> dict[str, str]:
    """Scalar columns of a candidate row as ``brainxai.<column>`` tags."""
    return {
        f"brainxai.{k}": _tag_value(v)
        for k, v in row.items()
        if k not in skip and (isinstance(v, str | int | float | bool | np.generic))
    }


def _find_version(client: MlflowClient, name: str, sha: str) -> ModelVersion | None:
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get(SHA_TAG) == sha and mv.status == "READY":
            return mv
    return None


def _ensure_registered_model(client: MlflowClient, fam: FamilyConfig, task: str) -> None:
    try:
        client.get_registered_model(fam.name)
    except MlflowException:
        try:
            client.create_registered_model(
                fam.name,
                tags={"brainxai.task": task, "brainxai.champion_metric": fam.metric},
                description=(
                    f"brainxai {task}: champion = best {fam.metric} "
                    f"({'max' if fam.maximize else 'min'}, validation split only)"
                ),
            )
        except MlflowException:  # created concurrently
            client.get_registered_model(fam.name)


def _set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


def _drop_alias(client: MlflowClient, name: str, alias: str) -> bool:
    try:
        client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return False
    client.delete_registered_model_alias(name, alias)
    return True


def _register_row(
    client: MlflowClient,
    fam: FamilyConfig,
    task: str,
    row: pd.Series,
    alias: str,
    file_of: Callable[[pd.Series], Path],
    load: Callable[[pd.Series], Loaded],
    existing_uri: Callable[[pd.Series], str | None] | None,
    extra_tags: Mapping[str, str] | None,
) -> tuple[ModelVersion, str]:
    """The version holding this row's file: found by content hash, else registered from
    an earlier logged model, else logged now. Returns ``(version, how)``."""
    path = file_of(row)
    sha = file_sha256(path)
    mv = _find_version(client, fam.name, sha)
    if mv is not None:
        return mv, "already_registered"
    uri = existing_uri(row) if existing_uri else None
    how = "reused_logged"
    if uri is None:
        loaded = load(row)
        uri = log_model(loaded.model, loaded.example, f"{fam.name}-{alias}")
        how = "logged"
    tags = {**row_tags(row), **(extra_tags or {}), SHA_TAG: sha,
            "brainxai.file": str(path), "brainxai.task": task}  # fmt: skip
    return mlflow.register_model(uri, fam.name, tags=tags), how


def register_family(
    fam: FamilyConfig,
    task: str,
    candidates: pd.DataFrame,
    key: str,
    file_of: Callable[[pd.Series], Path],
    load: Callable[[pd.Series], Loaded],
    existing_uri: Callable[[pd.Series], str | None] | None = None,
    champion_alias: str = "champion",
    extra_tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Register the best row of each group, alias it ``<group values>``, move ``champion``.

    Returns a JSON-able summary: versions by alias, the champion (row key, version,
    metric, why), how many models were logged, reused from an earlier log, or already
    registered.
    """
    client = MlflowClient()
    summary: dict[str, Any] = {"name": fam.name, "metric": fam.metric, "versions": {},
                               "logged": 0, "reused_logged": 0, "already_registered": 0,
                               "champion": None}  # fmt: skip
    if candidates.empty:
        summary["note"] = "no candidates"
        return summary
    best = best_per_group(candidates, fam.metric, fam.group_by, key, fam.maximize, fam.tie_break)
    _ensure_registered_model(client, fam, task)
    version_of: dict[str, str] = {}
    summary["failed"] = {}
    for _, row in best.iterrows():
        alias = alias_for(*(row[g] for g in fam.group_by)) if fam.group_by else alias_for(row[key])
        try:
            mv, how = _register_row(
                client, fam, task, row, alias, file_of, load, existing_uri, extra_tags
            )
        except (OSError, ValueError, KeyError, RuntimeError, MlflowException) as err:
            summary["failed"][str(row[key])] = f"{type(err).__name__}: {err}"[:_TAG_MAX]
            continue
        summary[how] += 1
        _set_alias(client, fam.name, alias, mv.version)
        version_of[str(row[key])] = mv.version
        summary["versions"][alias] = int(mv.version)
    registered = best[best[key].astype(str).isin(version_of)]
    champ = select_champion(registered, fam.metric, key, fam.maximize, fam.exclude, fam.tie_break)
    if champ.row is None:
        dropped = _drop_alias(client, fam.name, champion_alias)
        summary["champion"] = {"reason": champ.reason, "alias_removed": dropped}
    else:
        version = version_of[str(champ.row[key])]
        _set_alias(client, fam.name, champion_alias, version)
        client.set_model_version_tag(fam.name, version, "brainxai.champion_reason", champ.reason)
        summary["champion"] = {
            "key": str(champ.row[key]),
            "version": int(version),
            fam.metric: float(champ.row[fam.metric]),
            "reason": champ.reason,
            "eligible": champ.n_eligible,
        }
    return summary


def common_tags(profile: str, commit: str) -> dict[str, str]:
    """Lineage tags on every registered version: profile, git commit, study run."""
    tags = {"brainxai.profile": profile, "git.commit": commit}
    if parent := os.environ.get(PARENT_ENV):
        tags["brainxai.study_run_id"] = parent
    if (run := mlflow.active_run()) is not None:
        tags["brainxai.register_run_id"] = run.info.run_id
    return tags


def logged_fold_model(experiment_id: str, row: pd.Series, checkpoint: Path) -> str | None:
    """The model the classify3d stage logged for this (variant, backbone, fold), if it was
    logged after the checkpoint file was last written (so it holds these weights)."""
    client = MlflowClient()
    filt = (
        "tags.`brainxai.stage` = 'classify3d' AND "
        f"tags.`brainxai.variant` = '{row['init']}' AND "
        f"tags.`brainxai.backbone` = '{row['backbone']}'"
    )
    runs = client.search_runs(
        [experiment_id], filt, order_by=["attributes.start_time DESC"], max_results=5
    )
    written_ms = checkpoint.stat().st_mtime * 1000
    name = f"fold{int(row['fold'])}"
    for run in runs:
        models = mlflow.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"name = '{name}' AND source_run_id = '{run.info.run_id}'",
            output_format="list",
        )
        for m in models:
            if m.status == LoggedModelStatus.READY and m.creation_timestamp >= written_ms:
                return m.model_uri
    return None
