"""prefect.yaml deployments, work pools and workers, against a real Prefect server on loopback.

One server, one deployed study copy and two process workers are shared by the module
(starting each costs seconds of imports on a 2-core machine). The stage run by the
workers is the real, cheapest one: ``synth`` on the tests' tiny smoke profile (fewer 2D
subjects). The fault/crash/resume and two-worker tests run two flow runs each: ``-m slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from flows.orchestrate import ensure_pools, pool_specs, read_prefect_yaml, routing
from tests.conftest import REPO, free_port, make_study, wait_healthy

BIN = Path(sys.executable).parent
GPU_STAGES = {"pretrain", "finetune", "pseudolabel", "classify3d", "xai"}
CPU_STAGES = {"synth", "ingest", "standardize", "difficulty", "register", "report"}
WORKERS = ("worker-a", "worker-b")
#: the worker tests' study: tiny_smoke with 6 2D subjects (one 2D shard) at 3 mm
WORKER_SYNTH = {"n_subjects_2d_per_group": 1, "slices_per_subject": 1,
                "spacing_choices": [[3.0, 3.0, 3.0]]}  # fmt: skip
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# ---------------------------------------------------------------- static: prefect.yaml ---


@pytest.fixture(scope="module")
def config() -> dict:
    return read_prefect_yaml(REPO / "prefect.yaml")


def test_every_stage_has_a_deployment_routed_by_device(config):
    from flows.study import STAGES

    route = routing(config)
    assert set(STAGES) <= set(route), set(STAGES) - set(route)
    assert {s for s in STAGES if route[s] == "gpu"} == GPU_STAGES & set(STAGES)
    assert {s for s in CPU_STAGES if route[s] == "cpu"} == CPU_STAGES
    assert route["study"] == "cpu" and route["study-full"] == "gpu"
    assert {p.name: p.type for p in pool_specs(config)} == {"cpu": "process", "gpu": "process"}
    for d in config["deployments"]:
        device = "device-gpu" if d["work_pool"]["name"] == "gpu" else "device-cpu"
        assert device in d["tags"], d["name"]


def test_study_is_scheduled_nightly_and_pulls_the_workers_checkout(config):
    (study,) = [d for d in config["deployments"] if d["name"] == "study"]
    assert study["parameters"] == {"profile": "smoke"}
    assert study["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    (step,) = config["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $BRAINXAI_ROOT }}"}
    }


def test_pool_declarations_are_checked(config):
    import copy

    bad = copy.deepcopy(config)
    bad["deployments"][0]["work_pool"] = {"name": "tpu"}
    with pytest.raises(ValueError, match="undeclared pools"):
        pool_specs(bad)
    bad = copy.deepcopy(config)
    bad["definitions"]["pool_specs"][0]["gpus"] = 8
    with pytest.raises(ValueError, match="unknown work pool keys"):
        pool_specs(bad)


def _expected_properties(name: str) -> dict[str, str]:
    """Deployment -> {parameter: JSON type of its non-null branch}."""
    props = {"profile": "string", "root": "string", "overrides": "array"}
    extra = {
        "study": {"stages": "array"},
        "study-full": {"stages": "array"},
        "pretrain": {"frameworks": "array", "log_model": "boolean"},
        "classify3d": {"log_model": "boolean"},
        "finetune": {"step": "string", "init": "string"},
        "report": {"out": "string"},
    }
    return {**props, **extra.get(name, {})}


def _json_type(prop: dict) -> str:
    types = [b["type"] for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    (t,) = types
    return t


def _check_schema(name: str, schema: dict) -> None:
    props = schema["properties"]
    assert {k: _json_type(v) for k, v in props.items()} == _expected_properties(name), name
    for key, prop in props.items():
        assert len(prop.get("description", "")) > 10, (name, key)
    assert not schema.get("required")  # every parameter has a default: the UI form may be empty


def test_each_entrypoint_gives_typed_described_parameters(config):
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    for d in config["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        _check_schema(d["name"], parameter_schema(flow.fn).model_dump())


# ----------------------------------------------------------- fault hook / retry condition ---


def test_transient_errors_are_retried_and_bad_data_is_not():
    import errno

    from prefect.states import Completed, Failed

    from tasks.transient import TransientIOError, is_transient, retry_on_transient_io

    assert is_transient(OSError(errno.EIO, "io")) and is_transient(TimeoutError())
    assert is_transient(ConnectionResetError()) and is_transient(OSError(errno.ESTALE, "nfs"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "gone"))
    assert not is_transient(PermissionError(errno.EACCES, "no")) and not is_transient(ValueError())
    assert retry_on_transient_io(None, None, Failed(data=TransientIOError(errno.EIO, "x")))
    assert not retry_on_transient_io(None, None, Failed(data=ValueError("bad data")))
    assert not retry_on_transient_io(None, None, Completed(data=1))


def test_fault_hook_is_off_by_default_and_counts_down(tmp_path, monkeypatch):
    from tasks.transient import FAULTS_ENV, TransientIOError, inject_fault

    monkeypatch.delenv(FAULTS_ENV, raising=False)
    inject_fault("synth-shard", "cohort3d-0")  # no spec: nothing happens
    spec = tmp_path / "faults.json"
    spec.write_text(json.dumps({"synth-shard/cohort3d-*": {"mode": "oserror", "times": 2}}))
    monkeypatch.setenv(FAULTS_ENV, str(spec))
    inject_fault("synth-shard", "kaggle2d-0")  # no match
    for _ in range(2):
        with pytest.raises(TransientIOError):
            inject_fault("synth-shard", "cohort3d-0")
    inject_fault("synth-shard", "cohort3d-0")  # spent
    left = json.loads(spec.read_text())["synth-shard/cohort3d-*"]
    assert left["times"] == 0 and left["fired"] == ["synth-shard/cohort3d-0"] * 2
    crash = subprocess.run(
        [sys.executable, "-c", "from tasks.transient import inject_fault; inject_fault('p', 'k')"],
        env={**os.environ, FAULTS_ENV: str(spec)},
        cwd=REPO,
    )
    assert crash.returncode == 0  # no pattern matches p/k
    spec.write_text(json.dumps({"p/*": {"mode": "crash", "times": 1}}))
    crash = subprocess.run(
        [sys.executable, "-c", "from tasks.transient import inject_fault; inject_fault('p', 'k')"],
        env={**os.environ, FAULTS_ENV: str(spec)},
        cwd=REPO,
    )
    assert crash.returncode == 137


# ------------------------------------------------------------------ server + workers ---


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(what)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def orchestra(tmp_path_factory):
    """Server on 127.0.0.1, pools, every deployment of prefect.yaml, two process workers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from typer.testing import CliRunner

    from flows.cli import app as cli

    tmp = tmp_path_factory.mktemp("orchestra")
    study = make_study(tmp / "study", WORKER_SYNTH, copy_code=True)
    shutil.copy(REPO / "prefect.yaml", study / "prefect.yaml")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_URL": api,
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns.db'}",
        "BRAINXAI_ARTIFACTS": str(tmp / "mlartifacts"),
        "BRAINXAI_FAULTS": str(tmp / "faults.json"),
    }
    env.pop("BRAINXAI_ROOT", None)  # deploy time: the pull step keeps its placeholder
    (tmp / "faults.json").write_text("{}")
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, cmd: list[str], extra_env: dict | None = None) -> subprocess.Popen:
        log = open(tmp / f"{name}.log", "w")
        logs.append(log)
        proc = subprocess.Popen(
            cmd, env={**env, **(extra_env or {})}, cwd=study, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        return proc

    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(what: str) -> None:
        nonlocal clock
        timings[what] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    server = start("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                              "--port", str(port)])  # fmt: skip
    try:
        wait_healthy(f"{api}/health", server, 150, tmp / "server.log")
        lap("server")
        with temporary_settings({PREFECT_API_URL: api}):  # `brainxai orchestrate pools`
            first = CliRunner().invoke(
                cli, ["orchestrate", "pools", "-f", str(study / "prefect.yaml")]
            )
        assert first.exit_code == 0, first.output[-3000:]
        lap("pools")
        worker_env = {"BRAINXAI_ROOT": str(study)}  # workers start while the deploy runs
        for name in WORKERS:
            start(name, [str(BIN / "prefect"), "worker", "start", "--pool", "cpu", "--type",
                         "process", "--name", name, "--limit", "1"], worker_env)  # fmt: skip
        deploy = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
            env=env, cwd=study, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-4000:]
        lap("deploy")
        yield {
            "api": api, "env": env, "study": study, "tmp": tmp,
            "pools_first": json.loads(first.output), "procs": procs, "timings": timings,
        }  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def _call(method: str, url: str, tries: int = 8, **kw) -> httpx.Response:
    """A request, retrying 503 (sqlite busy under load) with back-off as Prefect's client does."""
    for i in range(tries):
        r = httpx.request(method, url, timeout=30, **kw)
        if r.status_code != 503:
            break
        time.sleep(2**i / 4)
    r.raise_for_status()
    return r


def _post(url: str, body: dict) -> httpx.Response:
    return _call("POST", url, json=body)


def _trigger(api: str, deployment: dict, parameters: dict) -> str:
    """What the UI's "Run > Custom run" form does: POST create_flow_run with parameters."""
    body = {"parameters": parameters, "state": {"type": "SCHEDULED"}}
    return _post(f"{api}/deployments/{deployment['id']}/create_flow_run", body).json()["id"]


def _deployments(api: str) -> dict[str, dict]:
    return {d["name"]: d for d in _post(f"{api}/deployments/filter", {}).json()}


def _flow_run(api: str, run_id: str) -> dict:
    return _call("GET", f"{api}/flow_runs/{run_id}").json()


def _finish(api: str, run_id: str, timeout: float = 240) -> dict:
    return _wait(
        lambda: (r := _flow_run(api, run_id))["state_type"] in TERMINAL and r, timeout, run_id
    )


def _task_runs(api: str, run_id: str) -> list[dict]:
    return _post(
        f"{api}/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [run_id]}}}
    ).json()


def _by_name(task_runs: list[dict]) -> dict[str, dict]:
    return {t["name"]: t for t in task_runs}


def _count(task_runs: list[dict], state: str) -> Counter:
    """Task -> how many of its runs ended in ``state`` (a state type or name)."""
    return Counter(
        t["task_key"].rsplit("-", 1)[0]
        for t in task_runs
        if state in (t["state_type"], t["state_name"])
    )


@pytest.mark.server
def test_pools_and_deployments_through_the_api(orchestra):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = orchestra["api"]
    print("set-up seconds:", orchestra["timings"])  # server, pools, deploy (shown with -s)
    assert {p["pool"]: p["action"] for p in orchestra["pools_first"]} == {
        "cpu": "created",
        "gpu": "created",
    }
    config = yaml.safe_load((orchestra["study"] / "prefect.yaml").read_text())
    with temporary_settings({PREFECT_API_URL: api}):
        again = ensure_pools(pool_specs(config))
    assert {p["action"] for p in again} == {"unchanged"}  # idempotent
    pools = _post(f"{api}/work_pools/filter", {}).json()
    assert {p["name"]: p["type"] for p in pools} == {"cpu": "process", "gpu": "process"}
    deployed = _deployments(api)
    assert set(deployed) == {d["name"] for d in config["deployments"]}
    for name, pool in routing(config).items():
        d = deployed[name]
        assert d["work_pool_name"] == pool, name
        _check_schema(name, d["parameter_openapi_schema"])
        assert d["pull_steps"] == config["pull"]  # resolved on the worker, at run time
    (sched,) = deployed["study"]["schedules"]
    assert sched["schedule"]["cron"] == "0 2 * * *" and sched["schedule"]["timezone"] == "UTC"
    assert sched["active"] and deployed["study"]["parameters"] == {"profile": "smoke"}
    assert deployed["study-full"]["parameters"] == {"profile": "full"}


@pytest.mark.server
def test_the_nightly_schedule_creates_runs(orchestra):
    # Prefect 3.8.8's scheduler bulk-inserts FlowRun.state, a hybrid property SQLAlchemy 2.1
    # rejects ("Can't evaluate bulk DML statement": no scheduled run is ever created);
    # pyproject pins sqlalchemy<2.1 (the lock has 2.0.58) for that reason.
    import sqlalchemy

    assert tuple(int(x) for x in sqlalchemy.__version__.split(".")[:2]) < (2, 1)
    api = orchestra["api"]
    study = _deployments(api)["study"]
    body = {"deployments": {"id": {"any_": [study["id"]]}}}
    log = orchestra["tmp"] / "server.log"

    def scheduled() -> list[dict] | None:
        if "Can't evaluate bulk DML" in log.read_text():  # the scheduler failed: stop waiting
            return [{"auto_scheduled": False}]
        return _post(f"{api}/flow_runs/filter", body).json()

    runs = _wait(scheduled, 90, "scheduled runs")
    assert all(r["auto_scheduled"] and r["state_type"] == "SCHEDULED" for r in runs)
    assert all(r["expected_start_time"].endswith("T02:00:00Z") for r in runs)
    assert {json.dumps(r["parameters"]) for r in runs} == {json.dumps({"profile": "smoke"})}


@pytest.mark.server
def test_a_run_triggered_like_the_ui_completes_on_a_worker(orchestra):
    api, study = orchestra["api"], orchestra["study"]
    run_id = _trigger(api, _deployments(api)["synth"], {"profile": "smoke"})
    run = _finish(api, run_id)
    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["parameters"] == {"profile": "smoke"}
    assert run["work_pool_name"] == "cpu"
    assert run["labels"]["prefect.worker.name"] in WORKERS
    metrics = json.loads((study / "reports/metrics/synth.json").read_text())
    assert metrics["cohort3d"]["subjects"] == 4 and metrics["kaggle2d"]["subjects"] == 6
    participants = (study / "data/raw/synth/cohort3d/participants.tsv").read_text()
    assert len(participants.strip().splitlines()) == 1 + 4
    tasks_ = _task_runs(api, run_id)
    assert {t["state_type"] for t in tasks_} == {"COMPLETED"}
    assert {"synth-cohort3d-0", "synth-kaggle2d-0"} <= set(_by_name(tasks_))


@pytest.mark.server
@pytest.mark.slow  # two flow runs: ~40-140 s on 2 cores
def test_transient_fault_is_retried_and_a_crashed_run_resumes_from_cache(orchestra, tmp_path):
    api, tmp = orchestra["api"], orchestra["tmp"]
    other = make_study(tmp_path / "study2", WORKER_SYNTH)  # fresh: nothing of it is cached
    (tmp / "faults.json").write_text(
        json.dumps(
            {
                "synth-shard/cohort3d-0": {"mode": "oserror", "times": 1},
                "synth-shard/kaggle2d-0": {"mode": "crash", "times": 1},
            }
        )
    )
    synth = _deployments(api)["synth"]
    crashed = _finish(api, _trigger(api, synth, {"root": str(other)}))
    fired = json.loads((tmp / "faults.json").read_text())
    assert fired["synth-shard/cohort3d-0"]["fired"] == ["synth-shard/cohort3d-0"]
    assert fired["synth-shard/kaggle2d-0"]["fired"] == ["synth-shard/kaggle2d-0"]
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    first = _task_runs(api, crashed["id"])
    retried = _by_name(first)["synth-cohort3d-0"]
    assert retried["state_type"] == "COMPLETED" and retried["run_count"] == 2
    states = _call("GET", f"{api}/task_run_states/", params={"task_run_id": retried["id"]}).json()
    names = [s["name"] for s in sorted(states, key=lambda s: s["timestamp"])]
    assert "AwaitingRetry" in names and names[-1] == "Completed", names
    # done before the 2D shard crashed: the 3D plan, shard and finalize, the 2D plan
    done_before = _count(first, "COMPLETED")  # Completed or Cached
    assert done_before == {"plan_subjects": 2, "write_shard": 1, "finalize": 1}, done_before
    vols = other / "data/raw/synth/cohort3d"
    before = {p: p.stat().st_mtime_ns for p in vols.rglob("*.nii.gz")}
    assert len(before) >= 4 * 4

    resumed = _finish(api, _trigger(api, synth, {"root": str(other)}))
    assert resumed["state_type"] == "COMPLETED", resumed["state"]
    second = _task_runs(api, resumed["id"])
    # what finished before the crash is not computed again; the crashed shard is
    assert _count(second, "Cached") == done_before, _count(second, "Cached")
    assert _by_name(second)["synth-kaggle2d-0"]["state_name"] == "Completed"
    assert {p: p.stat().st_mtime_ns for p in vols.rglob("*.nii.gz")} == before
    assert json.loads((other / "reports/metrics/synth.json").read_text())["kaggle2d"]["images"]


@pytest.mark.server
@pytest.mark.slow  # two flow runs: ~40-140 s on 2 cores
def test_two_workers_share_one_study(orchestra, tmp_path):
    """Runs queued at once are spread over both workers; outputs equal a one-worker run."""
    api, study = orchestra["api"], orchestra["study"]
    reference = study / "data/raw/synth"
    if not (reference / "cohort3d/participants.tsv").exists():  # run alone: make the reference
        ref = _finish(api, _trigger(api, _deployments(api)["synth"], {}))
        assert ref["state_type"] == "COMPLETED"
    roots = [make_study(tmp_path / f"study-{i}", WORKER_SYNTH) for i in range(2)]
    synth = _deployments(api)["synth"]
    ids = [_trigger(api, synth, {"root": str(r)}) for r in roots]
    runs = [_finish(api, i) for i in ids]
    assert [r["state_type"] for r in runs] == ["COMPLETED"] * 2, [r["state"] for r in runs]
    assert {r["labels"]["prefect.worker.name"] for r in runs} == set(WORKERS)
    want = _tree_digest(reference)
    for r in roots:
        assert _tree_digest(r / "data/raw/synth") == want
