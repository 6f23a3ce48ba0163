"""One Prefect API for every stage process of a tracked study (``brainxai study track``).

``make study`` runs ``dvc repro``: one new process per DVC stage, and each stage's flow
starts Prefect's temporary API server of its own (``SubprocessASGIServer``: uvicorn in a
subprocess, migrations checked, then stopped when the flow ends) - 8.8 s per process
against 2.5 s for the same flow on a running server (``benchmarks/bench_prefect_api.py``;
23 stages in the demo study). :func:`shared_api` starts that same server once - Prefect's
own class, in its ephemeral mode, on 127.0.0.1 with the study's ``PREFECT_HOME`` - and
hands its URL to the tracked command in ``PREFECT_API_URL``; every stage then talks to it
exactly as to its own temporary server. A ``PREFECT_API_URL`` already set (a real server)
is left alone; a server that does not come up falls back to the per-stage servers, with a
warning, never to a failed study.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from brainxai.config import MappingConfig

log = logging.getLogger(__name__)
API_ENV = "PREFECT_API_URL"


@dataclass(frozen=True)
class SharedApiConfig(MappingConfig):
    """``params.study_track``: whether to share one API server and how long to wait for it."""

    shared_prefect_api: bool = True
    prefect_api_timeout_s: int = 300

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SharedApiConfig:
        """From the ``study_track`` section (unknown keys rejected, as every config)."""
        return cls.from_dict(params.get("study_track"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def shared_api(cfg: SharedApiConfig) -> Iterator[dict[str, str]]:
    """Environment for the tracked command: ``{PREFECT_API_URL: <the shared server>}``
    while the server runs, or ``{}`` (off, a server already configured, or it failed to
    start: each stage then starts its own). Stops the server on exit."""
    if not cfg.shared_prefect_api or os.environ.get(API_ENV):
        yield {}
        return
    from prefect.server.api.server import SubprocessASGIServer

    # Prefect keeps one instance per port: the port-less one is this process's own
    # ephemeral API (stopping it here would cut off a flow running in this process)
    server = SubprocessASGIServer(port=free_port())
    try:
        server.start(timeout=cfg.prefect_api_timeout_s)
    except Exception as err:  # fall back to per-stage servers, saying why
        log.warning("shared Prefect API did not start (%s); each stage starts its own", err)
        server.stop()
        yield {}
        return
    try:
        yield {API_ENV: server.api_url}
    finally:
        server.stop()


__all__ = ["API_ENV", "SharedApiConfig", "free_port", "shared_api"]
