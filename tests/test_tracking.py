"""MLflow tracking: embedded sqlite store by default, and a real `mlflow server` on loopback."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

import tasks  # noqa: F401
from brainxai.registry.config import FamilyConfig
from tasks.mlflow_log import PARENT_ENV, ensure_experiment, flatten, stage_run, study_run
from tasks.registry import Loaded, register_family
from tests.conftest import REPO, free_port, wait_healthy

BIN = Path(sys.executable).parent


def test_flatten_nested_params():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {
        "a.b": "1",
        "a.c.d": "x",
        "e": "[1, 2]",
    }
    # keys MLflow would refuse (a sequence name such as T1C+) are spelt validly
    assert flatten({"seq": {"T1C+": "T1", "a b/c:d": 1, "x*y": 2}}) == {
        "seq.T1Cplus": "T1", "seq.a b/c:d": "1", "seq.x_y": "2"}  # fmt: skip


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


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 (sqlite backend, proxied artifacts in ``art/``), the
    tracking URI pointed at it for the module's tests."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(tmp / "mlflow.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp / 'srv.db'}", "--serve-artifacts",
         "--artifacts-destination", str(tmp / "art"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    original_uri = mlflow.get_tracking_uri()
    try:
        wait_healthy(f"{url}/health", proc, 120, tmp / "mlflow.log")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", url)
            mp.delenv("BRAINXAI_ARTIFACTS")
            mp.delenv(PARENT_ENV, raising=False)
            mlflow.set_tracking_uri(url)
            yield {"url": url, "dir": tmp}
    finally:
        mlflow.set_tracking_uri(original_uri)
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.server
def test_mlflow_server_on_loopback(mlflow_server, tmp_path):
    run_id = _log_one_stage()
    assert mlflow.get_run(run_id).data.metrics["m"] == 1.5
    art = tmp_path / "a.txt"
    art.write_text("hello")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(art))
    assert list((mlflow_server["dir"] / "art").rglob("a.txt")), "artifact must land in its store"


@pytest.mark.server
def test_study_stage_registry_and_champion_through_the_server(mlflow_server, tmp_path):
    """Nested study -> stage -> cell runs, a registered model with ``champion`` and loading
    ``models:/...@champion`` back, all through the server (artifacts proxied)."""
    with study_run("smoke", REPO, entry="test") as study:
        with stage_run("register", {"profile": "smoke"}) as stage:
            with mlflow.start_run(run_name="cell", nested=True) as cell:
                mlflow.log_metric("m", 1.0)
            torch.manual_seed(0)
            module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
            f = tmp_path / "w.bin"
            f.write_bytes(b"weights")
            fam = FamilyConfig("srv-classifier", "val_macro_f1", ("init",))
            table = pd.DataFrame([{"run": "r1", "init": "simclr", "val_macro_f1": 0.5}])
            s = register_family(
                fam, "classifier-2d", table, "run", lambda r: f,
                lambda r: Loaded(module, np.zeros((1, 1, 2, 2), dtype=np.float32)),
            )  # fmt: skip
    assert mlflow.get_run(stage.info.run_id).data.tags["mlflow.parentRunId"] == study.info.run_id
    assert mlflow.get_run(cell.info.run_id).data.tags["mlflow.parentRunId"] == stage.info.run_id
    assert mlflow.get_run(study.info.run_id).info.status == "FINISHED"
    assert s["champion"]["version"] == s["versions"]["simclr"] == 1
    x = torch.rand(4, 1, 2, 2)
    got = mlflow.pyfunc.load_model("models:/srv-classifier@champion").predict(x.numpy())
    np.testing.assert_array_equal(np.asarray(got), module(x).detach().numpy())
    # the model's files went through the server's proxy into its artifact destination
    assert list((mlflow_server["dir"] / "art").rglob("MLmodel")), "model not in the server store"
