"""Shared test set-up: Prefect and MLflow state in a temp dir, never the project's.

The environment is set at import time, before anything imports prefect/mlflow,
and the whole suite shares one interpreter (the stack's cold import is ~20 s).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
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
os.environ["PREFECT_LOGGING_TO_API_ENABLED"] = "false"  # run logs stay local in tests
# the ephemeral API imports the whole server: give it time on a loaded 2-core machine
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("OMP_NUM_THREADS", "2")

from tasks.prefect_api import free_port  # noqa: E402,F401  (after the environment above)

#: A one-task Prefect flow run as a new process (``python -c``), the shape of a stage: it
#: prints ``RESULT 42`` and ``RUN <flow run id>``.
ONE_TASK_FLOW = """
from prefect import flow, task
from prefect.runtime import flow_run

@task
def double(x):
    return 2 * x

@flow(name="one-task-stage")
def stage():
    return double(21), flow_run.id

result, run_id = stage()
print("RESULT", result)
print("RUN", run_id)
"""

#: Overrides that make the smoke profile tiny enough for end-to-end tests: 4 volumes
#: (one per diagnosis) and 18 2D subjects (3 per group, so every split gets one).
TINY_SYNTH: dict = {
    "n_subjects_3d_per_class": 1,
    "n_subjects_2d_per_group": 3,
    "slices_per_subject": 2,
    "spacing_choices": [[1.5, 1.5, 1.5]],
    "image_size_min": 96,
    "image_size_max": 200,
}


def wait_healthy(url: str, proc, timeout: float, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early (with the log's tail) if ``proc`` exits."""
    import httpx

    tail = (lambda: log.read_text()[-2000:]) if log is not None else (lambda: "")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}\n{tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not healthy after {timeout} s\n{tail()}")


def make_study(
    dest: Path,
    synth_overrides: dict | None = None,
    copy_code: bool = False,
    allow_empty_splits: bool = True,
) -> Path:
    """A throw-away study root: params.yaml (smoke, tiny synth) and dvc.yaml, optionally code.

    The tiny cohort has one 3D subject per diagnosis, so its 3D data set has no val/test
    patients: ``allow_empty_splits`` (default here, not in params.yaml) lets ingestion go on
    with a warning instead of stopping (issue 16.8)."""
    dest.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    smoke = params["profiles"]["smoke"]
    smoke["synth"] = {**smoke.get("synth", {}), **TINY_SYNTH, **(synth_overrides or {})}
    params["split"]["allow_empty_splits"] = allow_empty_splits
    params["profile"] = "smoke"  # the tests' scale, whatever make study runs
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


def pytest_sessionfinish(session, exitstatus):
    """Stop Prefect's ephemeral API while pytest's streams are still open.

    Otherwise its atexit hook logs "Stopping temporary server" into a closed
    capture stream and prints a spurious logging traceback after the summary.
    """
    server = sys.modules.get("prefect.server.api.server")
    if server is not None:
        server.subprocess_server_logger.disabled = True
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()


def pytest_unconfigure(config):
    """Remove the session's Prefect/MLflow state (tens of MB per run); keep it on request."""
    if not os.environ.get("BRAINXAI_KEEP_TEST_STATE"):
        shutil.rmtree(_STATE, ignore_errors=True)
