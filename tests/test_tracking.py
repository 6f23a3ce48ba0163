"""MLflow tracking: embedded sqlite store by default, and a real `mlflow server` on loopback."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

import tasks  # noqa: F401
from tasks.tracking import ensure_experiment, flatten, stage_run
from tests.conftest import free_port

BIN = Path(sys.executable).parent


def test_flatten_nested_params():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {
        "a.b": "1",
        "a.c.d": "x",
        "e": "[1, 2]",
    }


def _log_one_stage() -> str:
    with stage_run("unit", {"profile": "smoke", "synth": {"n": 3}}) as run:
        mlflow.log_metric("m", 1.5)
        return run.info.run_id


def test_stage_run_logs_to_the_embedded_store():
    run_id = _log_one_stage()
    run = mlflow.get_run(run_id)
    assert run.data.params["synth.n"] == "3"
    assert run.data.metrics["m"] == 1.5
    assert run.data.tags["brainxai.stage"] == "unit"
    assert mlflow.get_tracking_uri().startswith("sqlite:")


def test_stage_runs_nest_under_an_active_study_run():
    exp = ensure_experiment()
    with mlflow.start_run(experiment_id=exp, run_name="study") as parent:
        child = _log_one_stage()
    assert mlflow.get_run(child).data.tags["mlflow.parentRunId"] == parent.info.run_id


@pytest.mark.server
def test_mlflow_server_on_loopback(tmp_path, monkeypatch):
    port = free_port()
    log = open(tmp_path / "mlflow.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
         "--artifacts-destination", str(tmp_path / "art"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    original_uri = mlflow.get_tracking_uri()
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-2000:]
            assert time.monotonic() - t0 < 120, "mlflow server did not start"
            time.sleep(1)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.delenv("BRAINXAI_ARTIFACTS")
        mlflow.set_tracking_uri(url)
        run_id = _log_one_stage()
        assert mlflow.get_run(run_id).data.metrics["m"] == 1.5
        art = tmp_path / "a.txt"
        art.write_text("hello")
        with mlflow.start_run(run_id=run_id):
            mlflow.log_artifact(str(art))
        assert list((tmp_path / "art").rglob("a.txt")), "artifact must land in the server's store"
    finally:
        mlflow.set_tracking_uri(original_uri)
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
