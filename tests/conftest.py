"""Shared test set-up: Prefect and MLflow state in a temp dir, never the project's.

The environment is set at import time, before anything imports prefect/mlflow,
and the whole suite shares one interpreter (the stack's cold import is ~20 s).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_STATE = Path(tempfile.mkdtemp(prefix="brainxai-test-state-"))
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)  # ephemeral API unless a test starts a server
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STATE / 'mlruns.db'}"
os.environ["BRAINXAI_ARTIFACTS"] = str(_STATE / "mlartifacts")
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("OMP_NUM_THREADS", "2")

#: Overrides that make the smoke profile tiny enough for unit-level end-to-end tests.
TINY_SYNTH: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_study(dest: Path, synth_overrides: dict | None = None, copy_code: bool = False) -> Path:
    """A throw-away study root: params.yaml (smoke, tiny synth) and dvc.yaml, optionally code."""
    dest.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    smoke = params["profiles"]["smoke"]
    smoke["synth"] = {**smoke.get("synth", {}), **TINY_SYNTH, **(synth_overrides or {})}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    if copy_code:
        for d in ("src", "tasks", "flows"):
            shutil.copytree(
                REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
    return dest


@pytest.fixture(scope="session")
def state_dir() -> Path:
    return _STATE
