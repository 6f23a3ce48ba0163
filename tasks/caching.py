"""Cache keys = task inputs + task source + the project code the task imports; a cached
result counts only while the files it wrote still hold what it wrote.

Prefect's ``TASK_SOURCE`` hashes only the task function's own lines, not the
``brainxai`` code it calls (prefect #16925): after a change in ``src/brainxai`` a plain
policy would return stale results. :class:`CodeVersion` adds a hash of the sources of
the task module and of every project module (``brainxai.*``, ``tasks.*``) it imports,
directly or transitively (:func:`code_closure`, read from the import statements with
:mod:`ast`, so no hand-kept module list can miss one). Tasks receive paths, content
hashes and JSON-able parameter mappings, never arrays, so INPUTS hashes cheaply and
stably.

Results are persisted so a re-run in a new process hits the cache. The files a task
wrote can vanish or change while its cached result survives (``dvc repro`` deletes
stage outputs before running the stage; a run with other params overwrites them; a
disk truncates one), so every task that :func:`run_cached` gathers is wrapped in
:func:`hashed_outputs`, which records the sha256 of each file the result names, and
:func:`run_cached` re-runs a call with ``refresh_cache=True`` when a file is missing,
its content changed, or the result recorded no hashes.

A study directory can be moved (or checked out at another path on another host):
:func:`run_cached` with ``root=`` sends every path inside the study root to the task as
``${STUDY_ROOT}/...`` (:func:`relativize`), so the cache key holds no absolute location,
plus the root itself in the parameter ``study_root``, which the key leaves out. Inside the
task, :func:`hashed_outputs` expands the paths back before the task body runs and stores
the result (recorded hashes included) relative to the root again; :func:`run_cached`
expands it against the current root. A cached result stays valid after a move as long as
the files it names still hold what the task wrote.

Secrets never enter a cache key: the inputs are hashed with the user info of any URL
(``https://user:password@host``) replaced (:func:`brainxai.redact.redact`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from prefect.cache_policies import TASK_SOURCE, CachePolicy, Inputs
from prefect.context import TaskRunContext

from brainxai.hashing import file_sha256
from brainxai.redact import redact
from tasks.progress import track

#: Top-level packages whose modules count as project code in a cache key.
PROJECT_PACKAGES = ("brainxai", "tasks")
#: Result key holding ``{path: sha256}`` of the files the result names.
OUTPUT_HASHES = "output_sha256"
#: Task parameter carrying the study root (added by :func:`run_cached`; not in the key).
ROOT_PARAM = "study_root"
#: How task inputs and stored results name the study root.
ROOT_TOKEN = "${STUDY_ROOT}"
_PATH_CHAR = r"[\w.~/-]"

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- code keys


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


@cache
def _top_dirs(top: str) -> tuple[Path, ...]:
    """Directories of a top-level package (or the one holding a top-level module)."""
    spec = importlib.util.find_spec(top)  # a top-level name: imports nothing
    if spec is None:
        return ()
    if spec.submodule_search_locations is not None:
        return tuple(Path(p) for p in spec.submodule_search_locations)
    if spec.origin and spec.origin.endswith(".py"):
        return (Path(spec.origin),)
    return ()


def module_file(name: str) -> Path | None:
    """The ``.py`` source of module ``name`` (a package: its ``__init__.py``), found on
    the file system without importing anything; ``None`` when there is none."""
    top, *rest = name.split(".")
    candidates = list(_top_dirs(top))
    if not rest:
        for c in candidates:
            if c.is_file():
                return c
            if (c / "__init__.py").is_file():
                return c / "__init__.py"
        return None
    for part in rest[:-1]:
        candidates = [c / part for c in candidates if (c / part).is_dir()]
    for c in candidates:
        if (c / rest[-1] / "__init__.py").is_file():
            return c / rest[-1] / "__init__.py"
        if (c / f"{rest[-1]}.py").is_file():
            return c / f"{rest[-1]}.py"
    return None


#: ``ast.parse`` from several threads at once can fail in CPython 3.11 ("SystemError: AST
#: constructor recursion depth mismatch", seen when task runner threads computed cache keys
#: together): parses are serialised (each file is parsed once per process anyway).
_PARSE_LOCK = threading.Lock()


@cache
def _imported(name: str, path: Path, packages: tuple[str, ...]) -> set[str]:
    """Absolute names of the modules of ``packages`` that ``name`` (source ``path``)
    imports: ``import a.b`` is ``a.b``; ``from a import b`` is ``a``, and also ``a.b`` when
    ``b`` is a module; relative imports are resolved against ``name``'s package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    with _PARSE_LOCK:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in packages)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 >= len(parts):
                    continue  # beyond the top-level package: not importable anyway
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                mod = f"{base}.{mod}" if mod else base
            if not mod or mod.split(".")[0] not in packages:
                continue
            found.add(mod)
            for alias in node.names:
                if alias.name != "*" and module_file(f"{mod}.{alias.name}") is not None:
                    found.add(f"{mod}.{alias.name}")
    return found


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def code_closure(module: str, packages: tuple[str, ...] = PROJECT_PACKAGES) -> tuple[str, ...]:
    """Sorted names of ``module`` and every module of ``packages`` it imports, directly or
    transitively (with the packages whose ``__init__`` such an import runs)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            if name == module:
                raise ModuleNotFoundError(f"no Python source for module {module!r}")
            continue  # a name that is not a module of ours (a class, a missing optional)
        seen.add(name)
        for dep in _imported(name, path, packages):
            todo.extend(sub for sub in _with_parents(dep) if sub not in seen)
        for parent in _with_parents(name)[:-1]:
            if parent not in seen:
                todo.append(parent)
    return tuple(sorted(seen))


@cache
def code_hash(module: str, packages: tuple[str, ...] = PROJECT_PACKAGES) -> str:
    """sha256 over (module name, path relative to its top-level package, source) of every
    module in :func:`code_closure`; cached per process."""
    digest = hashlib.sha256()
    for name in code_closure(module, packages):
        path = module_file(name)
        assert path is not None
        parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        rel = "/".join([*parts, path.name])  # relative to the top-level package's parent
        digest.update(f"{rel}\n".encode())
        digest.update(path.read_bytes())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def clear_code_caches() -> None:
    """Forget the per-process closures and hashes (after editing sources in-process)."""
    for f in (_top_dirs, _imported, code_closure, code_hash, package_hash):
        f.cache_clear()


@dataclass
class CodeVersion(CachePolicy):
    """Cache-key component: the hash of the project code the task module imports."""

    modules: tuple[str, ...] = field(default_factory=tuple)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return ",".join(code_hash(m) for m in self.modules)


@dataclass
class RedactedInputs(Inputs):
    """Prefect's INPUTS with the user info of URLs redacted before hashing (a password in
    a URL must not end up in a cache key, nor invalidate the cache when it rotates)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        clean = {k: _map_strings(v, redact) for k, v in (inputs or {}).items()}
        return super().compute_key(task_ctx, clean, flow_parameters, **kwargs)


def code_policy(*modules: str) -> CachePolicy:
    """Inputs (URL credentials redacted, the study root left out) + TASK_SOURCE + the code
    closure of ``modules`` (a task module passes its ``__name__``): the project's task
    cache policy."""
    if not modules:
        raise TypeError("code_policy() needs the task's module, e.g. code_policy(__name__)")
    inputs = RedactedInputs(exclude=[ROOT_PARAM])
    return inputs + TASK_SOURCE + CodeVersion(modules=tuple(sorted(set(modules))))


# --------------------------------------------------------------- study-relative paths


def _map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    """``obj`` with ``fn`` applied to every string in it (dict keys too), through dicts,
    lists and tuples; other values are returned as they are."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {_map_strings(k, fn): _map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_strings(v, fn) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_map_strings(v, fn) for v in obj)
    return obj


def _root_pattern(text: str) -> re.Pattern[str]:
    """``text`` as a whole path component: not preceded by a path character, followed by
    ``/`` or the end of the string."""
    return re.compile(rf"(?<!{_PATH_CHAR}){re.escape(text)}(?=/|$)")


def _root_forms(root: str | Path) -> list[str]:
    """The absolute spellings of ``root`` (as given and with links resolved), longest
    first; the file-system root itself is never one (every path would match)."""
    p = Path(root)
    forms = {str(p.absolute()), str(p.resolve())}
    return sorted((f for f in forms if f != p.anchor), key=len, reverse=True)


def relativize(obj: Any, root: str | Path) -> Any:
    """Every absolute path inside ``root`` in ``obj`` (whole strings and paths inside
    text) written as ``${STUDY_ROOT}/rel/path``; see :func:`expand`."""
    patterns = [_root_pattern(f) for f in _root_forms(root)]

    def sub(text: str) -> str:
        for pat in patterns:
            text = pat.sub(lambda _m: ROOT_TOKEN, text)
        return text

    return _map_strings(obj, sub)


def expand(obj: Any, root: str | Path) -> Any:
    """Inverse of :func:`relativize`: ``${STUDY_ROOT}`` becomes ``root`` (resolved)."""
    target = str(Path(root).resolve())
    pattern = _root_pattern(ROOT_TOKEN)
    return _map_strings(obj, lambda text: pattern.sub(lambda _m: target, text))


# ------------------------------------------------------------------------ output hashes


def _hashes(paths: Iterable[str]) -> dict[str, str]:
    """``{path: sha256}`` (hashlib drops the GIL on large reads: a few threads help)."""
    paths = sorted(set(paths))
    if len(paths) < 4:
        return {p: file_sha256(p) for p in paths}
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(paths, pool.map(file_sha256, paths), strict=True))


def _default_files(result: Any) -> list[str]:
    return list(result.get("files", [])) if isinstance(result, dict) else []


def _with_root_param(sig: inspect.Signature) -> inspect.Signature:
    """``sig`` plus a keyword-only ``study_root=None`` (before any ``**kwargs``)."""
    extra = inspect.Parameter(ROOT_PARAM, inspect.Parameter.KEYWORD_ONLY, default=None)
    params = list(sig.parameters.values())
    if ROOT_PARAM in sig.parameters:
        raise TypeError(f"a task wrapped in hashed_outputs may not have a {ROOT_PARAM!r} param")
    at = next(
        (i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD),
        len(params),
    )
    return sig.replace(parameters=[*params[:at], extra, *params[at:]])


def hashed_outputs(
    fn: F | None = None, *, files_of: Callable[[Any], Iterable[str | Path]] = _default_files
) -> Any:
    """Decorator (put under ``@task``): a dict result gets ``result["output_sha256"] =
    {path: sha256}`` for every file in ``files_of(result)`` (default: ``result["files"]``),
    so :func:`run_cached` can tell a cached result from the files now on disk.

    The wrapped task also takes ``study_root`` (given by :func:`run_cached`): when set, the
    ``${STUDY_ROOT}`` paths of the inputs are expanded before the body runs and the
    result's paths are stored relative to the root (:func:`relativize`)."""

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            root = kwargs.pop(ROOT_PARAM, None)
            if root:
                args, kwargs = expand(args, root), expand(kwargs, root)
            result = func(*args, **kwargs)
            if isinstance(result, dict):
                result[OUTPUT_HASHES] = _hashes(str(p) for p in files_of(result))
            return relativize(result, root) if root else result

        wrapper.__signature__ = _with_root_param(inspect.signature(func))  # type: ignore[attr-defined]
        wrapper.hashes_outputs = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap


def output_problems(result: Any, files_of: Callable[[Any], Iterable[str | Path]]) -> list[str]:
    """Why ``result`` does not match the files on disk (empty: it does): ``"<path>:
    missing"``, ``"<path>: content changed"``, ``"<path>: no recorded hash"``."""
    recorded = result.get(OUTPUT_HASHES) if isinstance(result, dict) else None
    paths = sorted({str(p) for p in files_of(result)})
    if recorded is None:
        return [f"{p}: no recorded hash" for p in paths] or ["result records no output hashes"]
    problems = [f"{p}: missing" for p in paths if not Path(p).is_file()]
    problems += [f"{p}: no recorded hash" for p in paths if Path(p).is_file() and p not in recorded]
    present = [p for p in paths if p in recorded and Path(p).is_file()]
    problems += [f"{p}: content changed" for p, h in _hashes(present).items() if h != recorded[p]]
    return problems


def strip_hashes(result: Any) -> Any:
    """``result`` without the recorded output hashes (what a flow goes on with)."""
    if isinstance(result, dict) and OUTPUT_HASHES in result:
        return {k: v for k, v in result.items() if k != OUTPUT_HASHES}
    return result


def _logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("brainxai.caching")


def log_stale(task: Any, problems: list[str]) -> None:
    """Warn (Prefect run logger, or a plain one outside a run) which files failed, why."""
    shown = "; ".join(problems[:5]) + (
        f"; ... ({len(problems)} in all)" if len(problems) > 5 else ""
    )
    _logger().warning("%s: cached result does not match its outputs, re-running: %s",
                      getattr(task, "name", task), shown)  # fmt: skip


def root_calls(
    task: Any, calls: list[dict[str, Any]], root: str | Path | None
) -> list[dict[str, Any]]:
    """``calls`` as sent to ``task``: without ``root`` unchanged; with it, paths inside the
    study root relative to it (:func:`relativize`) and ``study_root`` set, so the cache
    key does not depend on where the study lies."""
    if root is None:
        return calls
    if not getattr(getattr(task, "fn", task), "hashes_outputs", False):
        raise TypeError(f"{getattr(task, 'name', task)}: root= needs a @hashed_outputs task")
    here = str(Path(root).resolve())
    return [{**relativize(kw, root), ROOT_PARAM: here} for kw in calls]


def from_root(result: Any, root: str | Path | None) -> Any:
    """A result as stored (study-relative paths) with the paths of the current root."""
    return result if root is None else expand(result, root)


def run_cached(
    task: Any,
    files_of: Callable[[Any], Iterable[str | Path]],
    calls: list[dict[str, Any]],
    root: str | Path | None = None,
) -> list[Any]:
    """Submit ``task(**kw)`` for every ``kw`` in ``calls`` and gather the results.

    Every result (cached or not) is checked against the sha256 its task recorded for the
    files ``files_of(result)`` (``task`` must be wrapped in :func:`hashed_outputs`); a
    result with a missing file, a file whose content changed or no recorded hashes is
    recomputed with ``refresh_cache=True`` (logged with the file and the reason), then
    checked again: still inconsistent raises. The results come back without the hashes.
    While the calls run, one progress line reports how many are done
    (:func:`tasks.progress.track`).
    ``root`` (the study root): inputs and stored results name paths relative to it, so
    the cache survives moving the study (module docstring).
    """
    sent = root_calls(task, calls, root)
    futures = [task.submit(**kw) for kw in sent]
    track(futures, task.name, stop_on_failure=True)  # the stage's progress line
    results = [from_root(f.result(), root) for f in futures]
    stale = {i: p for i, r in enumerate(results) if (p := output_problems(r, files_of))}
    if stale:
        for problems in stale.values():
            log_stale(task, problems)
        fresh = task.with_options(refresh_cache=True)
        refutures = {i: fresh.submit(**sent[i]) for i in stale}
        track(refutures.values(), f"{task.name} (re-run)", stop_on_failure=True)
        for i, fut in refutures.items():
            results[i] = from_root(fut.result(), root)
            problems = output_problems(results[i], files_of)
            if problems:
                raise RuntimeError(
                    f"{task.name} outputs inconsistent after a re-run: {problems[:5]}"
                )
    return [strip_hashes(r) for r in results]
