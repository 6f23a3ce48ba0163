"""Cache keys = task inputs + task source + the library code the task calls.

Prefect's ``TASK_SOURCE`` hashes only the task function's own lines, not the
``brainxai`` code it calls (prefect #16925): after a change in ``src/brainxai``
a plain policy would return stale results. :class:`CodeVersion` adds a hash of
the source files of the packages a task depends on. Tasks receive paths,
content hashes and JSON-able parameter mappings, never arrays, so INPUTS hashes
cheaply and stably.

Results are persisted so a re-run in a new process hits the cache. Because the
files a task wrote can vanish while its cached result survives (``dvc repro``
deletes stage outputs before running the stage), :func:`run_cached` re-runs a
task with ``refresh_cache=True`` when a cached result points at missing files.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext


@cache
def package_hash(*modules: str) -> str:
    """sha256 over the sorted ``*.py`` sources of the given modules/packages."""
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(name)
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for f in files:
            digest.update(str(f.relative_to(origin.parent)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class CodeVersion(CachePolicy):
    """Cache-key component: the hash of the library code a task depends on."""

    modules: tuple[str, ...] = field(default_factory=lambda: ("brainxai",))

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return package_hash(*self.modules)


def code_policy(*modules: str) -> CachePolicy:
    """INPUTS + TASK_SOURCE + CodeVersion(modules): the project's task cache policy."""
    return INPUTS + TASK_SOURCE + CodeVersion(modules=tuple(modules) or ("brainxai",))


def run_cached(
    task: Any,
    files_of: Callable[[Any], Iterable[str | Path]],
    calls: list[dict[str, Any]],
) -> list[Any]:
    """Submit ``task(**kw)`` for every ``kw`` in ``calls`` and gather the results.

    A cached result that names files which no longer exist is recomputed with
    ``refresh_cache=True``, so a cache hit never leaves a stage's outputs missing.
    """
    futures = [task.submit(**kw) for kw in calls]
    results = [f.result() for f in futures]
    stale = [i for i, r in enumerate(results) if not all(Path(p).exists() for p in files_of(r))]
    if stale:
        fresh = task.with_options(refresh_cache=True)
        refutures = {i: fresh.submit(**calls[i]) for i in stale}
        for i, fut in refutures.items():
            results[i] = fut.result()
            missing = [str(p) for p in files_of(results[i]) if not Path(p).exists()]
            if missing:
                raise FileNotFoundError(f"{task.name} did not write {missing[:5]}")
    return results
