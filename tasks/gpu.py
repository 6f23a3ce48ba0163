"""GPU routing for Prefect tasks: the ``gpu`` tag, its concurrency limit, one device per task.

GPU stages' tasks carry the tag :data:`GPU_TAG` and run inside :func:`on_gpu_slot`, which
holds one device of the host for the task's duration (:func:`brainxai.devices.device_slot`:
``CUDA_VISIBLE_DEVICES`` for process-isolated tasks, the thread's current CUDA device
otherwise, the CPU without waiting when there is no GPU). Across hosts and flow runs the
Prefect tag concurrency limit ``gpu`` (= the GPUs of the pool; :func:`ensure_gpu_limit`,
``brainxai orchestrate limits``) keeps the number of running GPU tasks at the number of
devices; the host-local slot lock makes sure two of them never get the same device.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from brainxai.devices import DeviceSlot, device_slot, gpu_count

GPU_TAG = "gpu"
F = TypeVar("F", bound=Callable[..., Any])


def _log_slot(fn_name: str, slot: DeviceSlot) -> None:
    try:
        from prefect import get_run_logger

        get_run_logger().info("%s on %s (slot %s)", fn_name, slot.device, slot.slot)
    except Exception:  # outside a run context (plain call in a test)
        pass


def on_gpu_slot(fn: F) -> F:
    """Run ``fn`` while holding one GPU slot (put under ``@task(..., tags=[GPU_TAG])``).

    ``functools.wraps`` keeps the signature and source Prefect uses for parameters and
    the cache key (``inspect`` follows ``__wrapped__``).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with device_slot() as slot:
            _log_slot(fn.__name__, slot)
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def ensure_gpu_limit(gpus: int | None = None, tag: str = GPU_TAG) -> dict[str, Any]:
    """Create or update the tag concurrency limit ``tag`` = ``gpus`` (idempotent).

    ``gpus`` defaults to this host's device count (none: no limit is created, so GPU-tagged
    tasks run on the CPU unthrottled); returns ``{"tag", "limit", "changed"}``.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    limit = gpu_count() if gpus is None else int(gpus)
    if limit < 1:  # a limit of 0 would park every GPU-tagged task (they run on CPU here)
        if gpus is None:
            return {"tag": tag, "limit": None, "changed": False}
        raise ValueError(f"a GPU concurrency limit must be >= 1, not {limit}")
    with get_client(sync_client=True) as client:
        try:
            current = client.read_concurrency_limit_by_tag(tag).concurrency_limit
        except ObjectNotFound:
            current = None
        if current != limit:
            if current is not None:
                client.delete_concurrency_limit_by_tag(tag)
            client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
        return {"tag": tag, "limit": limit, "changed": current != limit}
