"""Task runner from params: threads (default) or processes for CPU-bound fan-out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner


def task_runner(params: Mapping[str, Any]) -> TaskRunner:
    """``params["runner"] = {"kind": "thread"|"process", "workers": N}``."""
    cfg = params.get("runner", {})
    kind = cfg.get("kind", "thread")
    workers = int(cfg.get("workers", 2))
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    raise ValueError(f"runner.kind must be 'thread' or 'process', not {kind!r}")
