"""One Prefect API for every stage of a tracked study (tasks.prefect_api): off / a real
server already set / a failed start leave each stage its own; on, one server answers, a
stage process runs its flow against it, and it is gone afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tasks import prefect_api
from tasks.prefect_api import API_ENV, SharedApiConfig, shared_api
from tests.conftest import ONE_TASK_FLOW


def test_config_from_params():
    assert SharedApiConfig.from_params({}) == SharedApiConfig(True, 300)
    got = SharedApiConfig.from_params({"study_track": {"shared_prefect_api": False}})
    assert got.shared_prefect_api is False
    with pytest.raises(ValueError, match="unknown SharedApiConfig keys"):
        SharedApiConfig.from_params({"study_track": {"shared_api": True}})


def test_off_or_a_configured_server_starts_nothing(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("no server may start")

    monkeypatch.setattr("prefect.server.api.server.SubprocessASGIServer.start", boom)
    with shared_api(SharedApiConfig(shared_prefect_api=False)) as env:
        assert env == {}
    monkeypatch.setenv(API_ENV, "http://127.0.0.1:4200/api")  # a real server: it wins
    with shared_api(SharedApiConfig()) as env:
        assert env == {}


def test_a_server_that_does_not_start_falls_back_to_per_stage_servers(monkeypatch, caplog):
    monkeypatch.delenv(API_ENV, raising=False)

    def fail(self, timeout=None):
        raise RuntimeError("port trouble")

    monkeypatch.setattr("prefect.server.api.server.SubprocessASGIServer.start", fail)
    with (
        caplog.at_level("WARNING", logger=prefect_api.__name__),
        shared_api(SharedApiConfig()) as env,
    ):
        assert env == {}
    assert "port trouble" in caplog.text


@pytest.mark.server
def test_one_server_serves_a_stage_process_and_stops(tmp_path, monkeypatch):
    monkeypatch.delenv(API_ENV, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    from prefect.server.api.server import SubprocessASGIServer

    own = SubprocessASGIServer()  # this process's ephemeral API (port-less instance)
    running, process = own.running, own.server_process
    with shared_api(SharedApiConfig(prefect_api_timeout_s=120)) as env:
        url = env[API_ENV]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        out = subprocess.run([sys.executable, "-c", ONE_TASK_FLOW], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=180)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert "RESULT 42" in out.stdout
        # the stage used this server, not a temporary one of its own
        assert "Starting temporary server" not in out.stdout + out.stderr
        run_id = out.stdout.split("RUN ")[1].split()[0]
        run = httpx.get(f"{url}/flow_runs/{run_id}", timeout=10).json()
        assert run["state_type"] == "COMPLETED"  # recorded on the shared server
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
    # a flow running in this process keeps its own API: the shared one was another server
    assert SubprocessASGIServer() is own
    assert (own.running, own.server_process) == (running, process)
