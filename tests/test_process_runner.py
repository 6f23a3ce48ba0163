"""``runner.kind: process``: worker processes use the flow's Prefect API, start none of their own.

Prefect 3.8's process pool hands workers the parent's settings with ``PREFECT_API_URL``
unset when the API is the embedded one, so each worker used to start a temporary server
on the same database. The task below reports, from inside the worker, which API its
settings name and whether a server was started in that process.
"""

from __future__ import annotations

import os
import sys

from prefect import flow, task

import tasks  # noqa: F401  (embedded defaults first)
from tasks.runners import SharedAPIProcessPoolTaskRunner, _embedded_api_url, task_runner


@task
def where() -> dict:
    from prefect.settings import PREFECT_API_URL

    server = sys.modules.get("prefect.server.api.server")
    started = bool(server and server.SubprocessASGIServer._instances)
    return {"pid": os.getpid(), "api": PREFECT_API_URL.value(), "started_server": started}


@flow(name="process-fan-out")
def fan(n: int = 2) -> list[dict]:
    return [f.result() for f in [where.submit() for _ in range(n)]]


def test_process_workers_share_the_flows_embedded_api():
    runner = task_runner({"runner": {"kind": "process", "workers": 2}})
    assert isinstance(runner, SharedAPIProcessPoolTaskRunner)
    out = fan.with_options(task_runner=runner)()
    url = _embedded_api_url()
    assert url is not None  # this session runs on the embedded API
    assert all(o["pid"] != os.getpid() for o in out)  # ran in worker processes
    assert [o["api"] for o in out] == [url, url]
    assert not any(o["started_server"] for o in out)
    # the pin is released with the runner: the parent's settings are untouched
    from prefect.settings import PREFECT_API_URL

    assert not PREFECT_API_URL.value()
