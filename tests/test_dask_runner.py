"""Dask fan-out (``runner.kind: dask``): same bytes as the thread runner, local or remote.

The flow is built from the real ``synth-shard`` task (three 2D subjects, one per task), so
what is compared is a stage's actual output files. Starting Dask workers imports the
stack in fresh processes (tens of seconds on 2 loaded cores): the cluster tests are slow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect import flow
from prefect_dask import DaskTaskRunner

import tasks  # noqa: F401  (embedded defaults first)
from tasks.caching import run_cached
from tasks.runners import DASK_ADDRESS_ENV, task_runner
from tasks.synth import write_shard
from tests.conftest import REPO, TINY_SYNTH, free_port

BIN = Path(sys.executable).parent


def _synth_cfg() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return {**params["synth"], **params["profiles"]["smoke"]["synth"], **TINY_SYNTH}


@flow(name="dask-shards")
def shards_flow(out: str, n: int = 3) -> list[dict]:
    """Three ``synth-shard`` tasks (one 2D subject each), fanned out by the flow's runner."""
    calls = [
        {"kind": "kaggle2d", "cfg": _synth_cfg(), "seed": 0, "indices": [i],
         "out_dir": f"{out}/img", "meta_dir": f"{out}/meta"}
        for i in range(n)
    ]  # fmt: skip
    return run_cached(write_shard, lambda r: r["files"], calls)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_dask_kind_uses_the_address_from_params_or_env(monkeypatch):
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    local = task_runner({"runner": {"kind": "dask", "workers": 3}})
    assert isinstance(local, DaskTaskRunner)
    assert local.address is None and local.cluster_kwargs["n_workers"] == 3
    given = task_runner({"runner": {"kind": "dask", "address": "tcp://10.0.0.5:8786"}})
    assert given.address == "tcp://10.0.0.5:8786"
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://127.0.0.1:9999")
    assert task_runner({"runner": {"kind": "dask"}}).address == "tcp://127.0.0.1:9999"
    with pytest.raises(ValueError, match=r"runner\.kind"):
        task_runner({"runner": {"kind": "ray"}})


@pytest.fixture(scope="module")
def thread_outputs(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("thread")
    shards_flow.with_options(task_runner=task_runner({"runner": {"kind": "thread"}}))(str(out))
    return _digest(out)


@pytest.mark.slow
def test_local_cluster_gives_the_thread_runner_bytes(tmp_path, thread_outputs):
    runner = task_runner({"runner": {"kind": "dask", "workers": 2}})
    results = shards_flow.with_options(task_runner=runner)(str(tmp_path))
    assert len(results) == 3 and len(thread_outputs) > 3
    assert _digest(tmp_path) == thread_outputs


@pytest.mark.slow
def test_remote_scheduler_and_worker_on_loopback(tmp_path, thread_outputs, monkeypatch):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    logs = tmp_path / "logs"
    logs.mkdir()
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        env=env, stdout=(logs / "s.out").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
         "--no-dashboard", "--host", "127.0.0.1"],
        env=env, cwd=tmp_path, stdout=(logs / "w.out").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        from distributed import Client

        with Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=240)
            pids = set(client.run(os.getpid).values())
        monkeypatch.setenv(DASK_ADDRESS_ENV, address)
        runner = task_runner({"runner": {"kind": "dask"}})
        out = tmp_path / "out"
        results = shards_flow.with_options(task_runner=runner)(str(out))
        assert len(results) == 3
        assert _digest(out) == thread_outputs
        assert os.getpid() not in pids and len(pids) == 2  # the work ran in the workers
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
        deadline = time.time() + 30
        for proc in (worker, scheduler):
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
