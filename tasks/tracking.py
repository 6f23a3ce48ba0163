"""MLflow tracking for stage flows: one run per flow run, params flattened, tags for lineage.

Backend: ``$MLFLOW_TRACKING_URI`` (default: sqlite in the study root, set by
:mod:`tasks.env`); artifacts of the experiment go to ``$BRAINXAI_ARTIFACTS``
when the experiment is created here. A study flow passes its run id down through
``BRAINXAI_PARENT_RUN_ID`` so stage runs nest under it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

EXPERIMENT = os.environ.get("BRAINXAI_EXPERIMENT", "brainxai")
PARENT_ENV = "BRAINXAI_PARENT_RUN_ID"
_MAX_PARAM_LEN = 500
_BATCH = 100


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` with values as (truncated) strings."""
    flat: dict[str, str] = {}
    for key, val in params.items():
        name = f"{prefix}{key}"
        if isinstance(val, Mapping):
            flat.update(flatten(val, f"{name}."))
        else:
            flat[name] = str(val)[:_MAX_PARAM_LEN]
    return flat


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Create the experiment once (before any fan-out, to avoid sqlite races)."""
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = os.environ.get("BRAINXAI_ARTIFACTS")
    location = Path(artifacts).resolve().as_uri() if artifacts else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently
        return mlflow.get_experiment_by_name(name).experiment_id


def _prefect_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:  # outside a flow run
        return None


@contextmanager
def stage_run(
    stage: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage flow run, nested under the study run when there is one."""
    experiment_id = ensure_experiment()
    parent = os.environ.get(PARENT_ENV)
    all_tags = {
        "brainxai.stage": stage,
        "brainxai.profile": str(params.get("profile", "")),
        "git.commit": git_commit(),
        **({"prefect.flow_run_id": str(rid)} if (rid := _prefect_flow_run_id()) else {}),
        **(dict(tags) if tags else {}),
    }
    nested = mlflow.active_run() is not None  # a study run in this process
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=stage,
        tags=all_tags,
        nested=nested,
        parent_run_id=None if nested else parent,
    ) as run:
        flat = flatten(params)
        items = sorted(flat.items())
        for i in range(0, len(items), _BATCH):
            mlflow.log_params(dict(items[i : i + _BATCH]))
        yield run
