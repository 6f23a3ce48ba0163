"""MLflow tracking for stage flows, in one place: one run per flow run, params flattened,
tags for lineage; what a stage logs in it (:func:`log_stage`: metrics, tags, files), nested
runs per framework / model / row (:func:`child_run`; written in one go:
:func:`record_run`), step histories (:func:`log_steps`) and models (:func:`log_model`).
Flows and tasks call these, never ``mlflow`` directly.

Backend: ``$MLFLOW_TRACKING_URI`` (default: sqlite in the study root, set by
:mod:`tasks.env`); artifacts of the experiment go to ``$BRAINXAI_ARTIFACTS``
when the experiment is created here. A study passes its run id down through
``BRAINXAI_PARENT_RUN_ID`` so stage runs nest under it: ``brainxai study run`` (and a
Prefect deployment of the study flow) opens the parent in-process (:func:`study_run`);
``brainxai study track -- dvc repro`` opens it around any command and exports the id to
every stage process (:func:`track_command`). A stage run without a parent (a bare
``dvc repro``) is top-level, tagged ``brainxai.study_id`` (:func:`study_id`) so the runs of
one study are found together, and says so in a warning.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
import yaml
from mlflow.entities import Metric, Param

from brainxai.redact import redact
from tasks.env import study_root

EXPERIMENT = os.environ.get("BRAINXAI_EXPERIMENT", "brainxai")
PARENT_ENV = "BRAINXAI_PARENT_RUN_ID"
STUDY_ID_TAG = "brainxai.study_id"
#: files of the study root logged as artifacts of a tracked study run
STUDY_FILES = ("params.yaml", "dvc.yaml", "dvc.lock")
log = logging.getLogger(__name__)
_MAX_PARAM_LEN = 500
_BATCH = 100
#: Metrics per ``log_batch`` request (MLflow accepts up to 1000).
_METRIC_BATCH = 1000


#: Characters an MLflow param name may not hold (it allows alphanumerics, ``_ - . : /`` and
#: spaces); a params key such as the sequence ``T1C+`` is spelt with words instead.
_BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")
_KEY_WORDS = {"+": "plus"}


def param_key(key: str) -> str:
    """``key`` as a valid MLflow param name: ``+`` -> ``plus``, other invalid chars -> ``_``."""
    return _BAD_KEY_CHARS.sub(lambda m: _KEY_WORDS.get(m.group(), "_"), key)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` with values as (truncated) strings; the
    credentials of any URL in a value are masked (:func:`brainxai.redact.redact`); keys
    are valid MLflow names (:func:`param_key`)."""
    flat: dict[str, str] = {}
    for key, val in params.items():
        name = f"{prefix}{param_key(str(key))}"
        if isinstance(val, Mapping):
            flat.update(flatten(val, f"{name}."))
        else:
            flat[name] = redact(str(val))[:_MAX_PARAM_LEN]
    return flat


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def study_id(root: Path, profile: str | None) -> str:
    """Which study a run belongs to: hash of git commit + profile + ``params.yaml``
    (16 hex). The same code, profile and parameters give the same id."""
    params = root / "params.yaml"
    blob = params.read_bytes() if params.is_file() else b""
    if not profile:  # the profile the stages will use
        profile = os.environ.get("BRAINXAI_PROFILE") or str(
            (yaml.safe_load(blob) or {}).get("profile", "")
        )
    key = f"{git_commit(root)}\0{profile}\0".encode() + blob
    return hashlib.sha256(key).hexdigest()[:16]


def _profile_of(params: Mapping[str, Any]) -> str:
    return str(params.get("profile") or os.environ.get("BRAINXAI_PROFILE", ""))


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Create the experiment once (before any fan-out, to avoid sqlite races)."""
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        _warn_if_artifacts_elsewhere(exp.name, exp.artifact_location)
        return exp.experiment_id
    artifacts = os.environ.get("BRAINXAI_ARTIFACTS")
    location = Path(artifacts).resolve().as_uri() if artifacts else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently
        return mlflow.get_experiment_by_name(name).experiment_id


def _warn_if_artifacts_elsewhere(name: str, location: str) -> None:
    """MLflow fixes an experiment's artifact location (an absolute ``file:`` URI) when it is
    created: after the study is moved, or ``$BRAINXAI_ARTIFACTS`` changed, new runs still
    write there. Say so (it cannot be changed through MLflow's API)."""
    artifacts = os.environ.get("BRAINXAI_ARTIFACTS")
    if not artifacts or not location.startswith("file:"):
        return
    there = Path(unquote(urlparse(location).path))
    here = Path(artifacts).resolve()
    if there != here:
        log.warning(
            "MLflow experiment %r stores artifacts in %s, not in $BRAINXAI_ARTIFACTS=%s (the "
            "study was moved, or the variable changed): new runs write there. To keep them in "
            "the study, start a new tracking store (move mlruns.db aside) or serve artifacts "
            "through `mlflow server --serve-artifacts` (location-free mlflow-artifacts: URIs)",
            name, there, here,
        )  # fmt: skip


def _prefect_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run

        return flow_run.id
    except Exception:  # outside a flow run
        return None


def _prefect_deployment_id() -> str | None:
    try:
        from prefect.runtime import deployment

        return deployment.id
    except Exception:  # not a deployment run
        return None


def _existing_run(run_id: str | None) -> str | None:
    """``run_id`` if this tracking store has that run; else None, with a warning (a stale
    ``BRAINXAI_PARENT_RUN_ID`` from another store must not crash a stage)."""
    if not run_id:
        return None
    try:
        mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        log.warning(
            "%s=%s is not a run of %s: ignored", PARENT_ENV, run_id, mlflow.get_tracking_uri()
        )
        return None
    return run_id


@contextmanager
def stage_run(
    stage: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage flow run, nested under the study run when there is one."""
    experiment_id = ensure_experiment()
    parent = _existing_run(os.environ.get(PARENT_ENV))
    profile = _profile_of(params)
    all_tags = {
        "brainxai.stage": stage,
        "brainxai.profile": profile,
        "git.commit": git_commit(),
        STUDY_ID_TAG: study_id(study_root(), profile),
        **({"prefect.flow_run_id": str(rid)} if (rid := _prefect_flow_run_id()) else {}),
        **(dict(tags) if tags else {}),
    }
    nested = mlflow.active_run() is not None  # a study run in this process
    if not nested and not parent:
        all_tags["brainxai.parent"] = "none"
        log.warning(
            "stage %r: no study run to nest under (top-level run, tag %s); run the study "
            "with `brainxai study run` or `brainxai study track -- dvc repro`",
            stage, STUDY_ID_TAG,
        )  # fmt: skip
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=stage,
        tags=all_tags,
        nested=nested,
        parent_run_id=None if nested else parent,
    ) as run:
        _log_params(flatten(params))
        yield run


def _log_params(flat: Mapping[str, str]) -> None:
    items = sorted(flat.items())
    for i in range(0, len(items), _BATCH):
        mlflow.log_params(dict(items[i : i + _BATCH]))


@contextmanager
def child_run(
    name: str, tags: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A run nested under the active stage run (one per framework, ablation row, model),
    with ``params`` flattened (:func:`flatten`)."""
    parent = mlflow.active_run()
    experiment_id = parent.info.experiment_id if parent is not None else ensure_experiment()
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=name, nested=True, tags=dict(tags or {})
    ) as run:
        if params:
            _log_params(flatten(params))
        yield run


def log_stage(
    metrics: Mapping[str, Any] | None = None,
    *,
    step: int | None = None,
    tags: Mapping[str, str] | None = None,
    artifacts: Iterable[str | Path] = (),
    artifact_path: str | None = None,
) -> None:
    """Log in the active run: ``metrics`` (at ``step``), ``tags``, and each of ``artifacts``
    (a file, or a folder's contents) under ``artifact_path``."""
    if metrics:
        mlflow.log_metrics(dict(metrics), step=step)
    for key, value in (tags or {}).items():
        mlflow.set_tag(key, value)
    for item in artifacts:
        if Path(item).is_dir():
            mlflow.log_artifacts(str(item), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(item), artifact_path=artifact_path)


def log_steps(rows: Iterable[tuple[str, float, int]], run_id: str | None = None) -> None:
    """Metric histories as ``(name, value, step)`` rows, in batched requests, to ``run_id``
    (default: the active run); e.g. a trajectory per epoch, a training curve per step."""
    rid = run_id or mlflow.active_run().info.run_id
    ts = int(time.time() * 1000)
    metrics = [Metric(k, float(v), ts, int(s)) for k, v, s in rows]
    client = mlflow.MlflowClient()
    for i in range(0, len(metrics), _METRIC_BATCH):
        client.log_batch(rid, metrics=metrics[i : i + _METRIC_BATCH])


def record_run(
    name: str,
    *,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    steps: Iterable[tuple[str, float, int]] = (),
    artifacts: Iterable[str | Path] = (),
    artifact_path: str | None = None,
    failed: bool = False,
) -> str:
    """A finished run nested under the active stage run, written through the client in one
    go (the active run stays the stage's): ``tags``, ``params`` flattened
    (:func:`flatten`), ``steps`` as metric histories (:func:`log_steps`), ``artifacts``
    (files) under ``artifact_path``; it ends FAILED when ``failed``. E.g. one fine-tuning
    cell. Returns its id."""
    parent = mlflow.active_run()
    client = mlflow.MlflowClient()
    run = client.create_run(
        parent.info.experiment_id,
        run_name=name,
        tags={"mlflow.parentRunId": parent.info.run_id, **dict(tags or {})},
    )
    rid = run.info.run_id
    items = sorted(flatten(params or {}).items())
    for i in range(0, len(items), _BATCH):
        client.log_batch(rid, params=[Param(k, v) for k, v in items[i : i + _BATCH]])
    if failed:
        client.set_terminated(rid, status="FAILED")
        return rid
    log_steps(steps, run_id=rid)
    for item in artifacts:
        client.log_artifact(rid, str(item), artifact_path=artifact_path)
    client.set_terminated(rid)
    return rid


def pip_requirements() -> list[str]:
    """Pinned torch/torchvision as pip sees them (``2.x.y``, no local ``+cu`` suffix)."""
    return [f"{p}=={importlib.metadata.version(p)}" for p in ("torch", "torchvision")]


def log_model(model: Any, example: Any, name: str, input_example: bool = False) -> str:
    """Log the torch module ``model`` (eval mode) in the active run as an MLflow model named
    ``name``, its signature from ``example`` (one numpy input, batch 1) and the module's
    output, the example itself too when ``input_example``; return the model URI.

    Pickle format: the batch dimension stays free (MLflow 3's default ``pt2`` export traces
    the example and fixes the batch size at 1, so a batch of 5 fails a guard)."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = model(torch.from_numpy(example)).float().numpy()
    info = mlflow.pytorch.log_model(
        model,
        name=name,
        signature=infer_signature(example, out),
        input_example=example if input_example else None,
        serialization_format="pickle",
        pip_requirements=pip_requirements(),
    )
    return info.model_uri


@contextmanager
def study_run(
    profile: str | None, root: Path, entry: str, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """The parent run of one study run, active in this process, its id exported in
    ``BRAINXAI_PARENT_RUN_ID`` for stage runs (restored on exit). Under an outer tracked
    run (``brainxai study track -- brainxai study run``) it nests under that one."""
    outer = os.environ.get(PARENT_ENV)
    all_tags = {
        "brainxai.stage": "study",
        "brainxai.entry": entry,
        "brainxai.profile": profile or "",
        "git.commit": git_commit(root),
        STUDY_ID_TAG: study_id(root, profile),
        **({"prefect.flow_run_id": str(rid)} if (rid := _prefect_flow_run_id()) else {}),
        **({"prefect.deployment_id": str(did)} if (did := _prefect_deployment_id()) else {}),
        **(dict(tags) if tags else {}),
    }
    nested = mlflow.active_run() is not None
    with mlflow.start_run(
        experiment_id=ensure_experiment(),
        run_name="study",
        tags=all_tags,
        nested=nested,
        parent_run_id=None if nested else _existing_run(outer),
    ) as run:
        os.environ[PARENT_ENV] = run.info.run_id
        try:
            yield run
        finally:
            if outer is None:
                os.environ.pop(PARENT_ENV, None)
            else:
                os.environ[PARENT_ENV] = outer


def track_command(
    argv: Sequence[str], profile: str | None, root: Path, extra_env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``argv`` (e.g. ``dvc repro``) under a new study parent run.

    The run id goes to the child in ``BRAINXAI_PARENT_RUN_ID`` so every stage process
    nests its run under it; the parent ends FINISHED on exit code 0, FAILED otherwise
    (KILLED on Ctrl-C), with ``params.yaml``/``dvc.yaml``/``dvc.lock`` as artifacts and
    the exit code and wall time as metrics. ``extra_env`` joins the command's environment
    (the shared Prefect API, :mod:`tasks.prefect_api`). Returns ``(exit code, run id)``.
    """
    if not argv:
        raise ValueError("nothing to run: give a command after `--`")
    client = mlflow.MlflowClient()
    tags = {
        "brainxai.stage": "study",
        "brainxai.entry": "track",
        "brainxai.command": " ".join(argv)[:_MAX_PARAM_LEN],
        "brainxai.profile": profile or "",
        "git.commit": git_commit(root),
        STUDY_ID_TAG: study_id(root, profile),
        "mlflow.runName": "study",
    }
    if outer := os.environ.get(PARENT_ENV):
        tags["mlflow.parentRunId"] = outer
    run = client.create_run(ensure_experiment(), run_name="study", tags=tags)
    rid = run.info.run_id
    env = {**os.environ, **(extra_env or {}), PARENT_ENV: rid}
    if profile:
        env["BRAINXAI_PROFILE"] = profile
    t0 = time.perf_counter()
    status, code = "FAILED", 1
    try:
        code = subprocess.run(list(argv), cwd=root, env=env, check=False).returncode
        status = "FINISHED" if code == 0 else "FAILED"
    except KeyboardInterrupt:
        status, code = "KILLED", 130
        raise
    except OSError as err:  # command not found / not executable
        client.set_tag(rid, "error", f"{type(err).__name__}: {err}"[:5000])
        code = 127
    finally:
        client.log_metric(rid, "study.exit_code", float(code))
        client.log_metric(rid, "study.seconds", time.perf_counter() - t0)
        for name in STUDY_FILES:
            if (root / name).is_file():
                client.log_artifact(rid, str(root / name), artifact_path="study")
        client.set_terminated(rid, status=status)
    return code, rid
