"""Transient I/O: the only failures a task retries, and a hook that injects them (tests).

Retries are for transient I/O (a network file system hiccup, a busy device, a dropped
connection), never for bad data or bugs: :func:`retry_on_transient_io` is the
``retry_condition_fn`` of tasks that declare retries, and it answers yes only for an
``OSError`` whose errno says "try again" (a missing file, a permission error or a
``ValueError`` fail at once).

Fault injection is OFF unless ``$BRAINXAI_FAULTS`` names a JSON file mapping glob patterns
over ``"<point>/<key>"`` to ``{"mode": "oserror" | "crash", "times": n}``. The first ``n``
matching :func:`inject_fault` calls either raise :class:`TransientIOError` (``EIO``: the task
retries) or end the process with ``os._exit`` (a crash mid-run: the worker marks the flow
run Crashed, and a re-run must continue from the cached results). The counts live in the
file, under a file lock, so they hold across retries, processes and flow runs.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from filelock import FileLock

FAULTS_ENV = "BRAINXAI_FAULTS"
#: retries of a task that does transient I/O, and the waits before them (seconds)
TRANSIENT_RETRIES = 2
TRANSIENT_RETRY_DELAYS_S = [1, 5]
#: exit status of an injected crash (as if the process was killed)
CRASH_EXIT_CODE = 137
#: errno values of I/O errors worth retrying
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    }
)


class TransientIOError(OSError):
    """An injected transient I/O failure (errno ``EIO``)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is transient I/O: a timeout/connection error or a retryable errno."""
    if isinstance(exc, TimeoutError | ConnectionError | BlockingIOError | InterruptedError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def retry_on_transient_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only for transient I/O."""
    try:
        state.result()
    except BaseException as exc:  # the task's own exception is re-raised here
        return is_transient(exc)
    return False


def inject_fault(point: str, key: str = "") -> None:
    """Fail here if ``$BRAINXAI_FAULTS`` asks for it (see module docstring); else no-op."""
    spec_path = os.environ.get(FAULTS_ENV)
    if not spec_path:
        return
    target = f"{point}/{key}"
    path = Path(spec_path)
    with FileLock(str(path) + ".lock"):
        spec: dict[str, dict[str, Any]] = json.loads(path.read_text())
        pattern = next(
            (p for p, f in spec.items() if fnmatch.fnmatch(target, p) and f.get("times", 0) > 0),
            None,
        )
        if pattern is None:
            return
        fault = spec[pattern]
        fault["times"] -= 1
        fault.setdefault("fired", []).append(target)
        path.write_text(json.dumps(spec, indent=2))
    if fault.get("mode", "oserror") == "crash":
        os._exit(CRASH_EXIT_CODE)
    raise TransientIOError(errno.EIO, f"injected transient I/O fault at {target}")
