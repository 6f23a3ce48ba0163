"""Embedded defaults for the orchestration stack, set before Prefect/MLflow import.

Everything lives inside the study root unless the environment says otherwise:
Prefect's ephemeral API and result store under ``.prefect/``, MLflow on sqlite
(``mlruns.db``) with artifacts in ``mlartifacts/``, DVC's local cache in
``.dvc/cache``. A real server is used by setting ``PREFECT_API_URL`` /
``MLFLOW_TRACKING_URI`` as usual. No telemetry: this machine has no network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brainxai.config import load_params, project_root
from tasks.progress import configure as configure_progress


def study_root() -> Path:
    try:
        return project_root()
    except FileNotFoundError:
        return Path.cwd().resolve()


def study_params(
    profile: str | None, root: str | None, overrides: Sequence[str] | None = None
) -> tuple[Path, dict[str, Any]]:
    """A stage flow's study root (``root``, else :func:`study_root`) and its resolved params:
    the profile, then params.yaml's ``overrides``, then ``overrides`` (``key.path=value``
    strings, a flow's ``overrides`` parameter / the CLI's ``--set``), each checked against
    the typed stage configs. Also applies the ``progress`` section (:mod:`tasks.progress`)."""
    root_path = Path(root) if root else study_root()
    params = load_params(root_path / "params.yaml", profile=profile, overrides=overrides)
    configure_progress(params.get("progress"))
    return root_path, params


def configure_environment(root: Path | None = None) -> Path:
    """Set default env vars (never overriding the caller's); return the study root."""
    root = (root or study_root()).resolve()
    defaults = {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, val in defaults.items():
        os.environ.setdefault(key, val)
    os.environ.setdefault("BRAINXAI_ARTIFACTS", str(root / "mlartifacts"))
    return root
