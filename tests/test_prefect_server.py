"""The pinned fastapi lets Prefect's server import and serve on 127.0.0.1."""

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ONE_TASK_FLOW, free_port, wait_healthy

BIN = Path(sys.executable).parent


def test_pins_are_the_proven_ones():
    assert md.version("prefect") == "3.8.8"
    assert md.version("fastapi") == "0.150.0"
    import prefect.server.api.server  # noqa: F401  (fails with fastapi >= 0.159)


@pytest.mark.server
def test_prefect_server_starts_on_loopback_and_records_a_flow_run(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_healthy(f"{api}/health", proc, 150, tmp_path / "server.log")
        client_env = {**env, "PREFECT_API_URL": api}
        out = subprocess.run(
            [sys.executable, "-c", ONE_TASK_FLOW],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "RESULT 42" in out.stdout
        runs = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()
        states = {r["state_type"] for r in runs}
        assert len(runs) == 1 and states == {"COMPLETED"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert "min_items" not in (tmp_path / "server.log").read_text()
