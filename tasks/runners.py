"""Task runner from params: threads (default), processes, or a Dask cluster for fan-out.

``params["runner"] = {"kind": "thread"|"process"|"dask", "workers": N, "address": ...}``.
``kind: dask`` uses :class:`prefect_dask.DaskTaskRunner`: with an address (``runner.address``
or ``$BRAINXAI_DASK_ADDRESS``, e.g. ``tcp://scheduler:8786``) the flow submits its tasks to
that existing scheduler and its workers (other machines); without one it starts a
``distributed.LocalCluster`` of ``workers`` single-threaded processes for the flow run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

DASK_ADDRESS_ENV = "BRAINXAI_DASK_ADDRESS"
KINDS = ("thread", "process", "dask")


def dask_address(cfg: Mapping[str, Any]) -> str | None:
    """The scheduler to connect to: ``runner.address``, else ``$BRAINXAI_DASK_ADDRESS``."""
    return cfg.get("address") or os.environ.get(DASK_ADDRESS_ENV) or None


def _embedded_api_url() -> str | None:
    """URL of this process's embedded Prefect API (None with a real ``PREFECT_API_URL``)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    return server.api_url if server.running else None


class SharedAPIProcessPoolTaskRunner(ProcessPoolTaskRunner):
    """Prefect's process pool, its workers pointed at the flow's own Prefect API.

    With the embedded API, Prefect 3.8 serialises the parent's settings with
    ``PREFECT_API_URL`` unset, so every worker process started its own temporary server
    on the same database (~20 s each, concurrent writers). Entering the runner pins the
    embedded server's URL in the settings context that ``submit`` hands to the workers;
    with a real server nothing changes.
    """

    _pinned: Any = None

    def __enter__(self) -> SharedAPIProcessPoolTaskRunner:
        url = _embedded_api_url()
        if url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            self._pinned = temporary_settings(updates={PREFECT_API_URL: url})
            self._pinned.__enter__()
        return super().__enter__()

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            pinned, self._pinned = self._pinned, None
            if pinned is not None:
                pinned.__exit__(None, None, None)


def dask_runner(cfg: Mapping[str, Any]) -> TaskRunner:
    """A Dask task runner on an existing scheduler, or on a LocalCluster of processes.

    Remote workers must have ``PREFECT_API_URL`` set (a real Prefect server). LocalCluster
    workers get the flow's API URL, the embedded one included: otherwise each worker process
    would start its own embedded server on the same database (locks, hangs).
    """
    from prefect_dask import DaskTaskRunner

    class LocalDaskTaskRunner(DaskTaskRunner):
        def __enter__(self) -> LocalDaskTaskRunner:
            url = _embedded_api_url()
            if url:
                env = dict(self.cluster_kwargs.get("env") or {})
                self.cluster_kwargs["env"] = {"PREFECT_API_URL": url, **env}
            return super().__enter__()

    address = dask_address(cfg)
    if address:
        return DaskTaskRunner(address=address)
    return LocalDaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": int(cfg.get("workers", 2)),
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,  # no web UI port on shared CI machines
        },
    )


def task_runner(params: Mapping[str, Any]) -> TaskRunner:
    """The task runner named by ``params["runner"]`` (see the module docstring)."""
    cfg = params.get("runner", {})
    kind = cfg.get("kind", "thread")
    workers = int(cfg.get("workers", 2))
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "process":
        return SharedAPIProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        return dask_runner(cfg)
    raise ValueError(f"runner.kind must be one of {KINDS}, not {kind!r}")
