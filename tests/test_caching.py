"""Prefect caching: a re-run with nothing changed does not recompute; code changes do."""

import importlib
import sys
from pathlib import Path

from prefect import flow, task

import tasks  # noqa: F401  (embedded defaults before prefect)
from tasks.caching import code_policy, hashed_outputs, package_hash, run_cached

CALLS: list[int] = []


@task(cache_policy=code_policy("brainxai.labels"), persist_result=True)
@hashed_outputs
def _write(x: int, out: str) -> dict:
    CALLS.append(x)
    Path(out).write_text(str(x * 2))
    return {"files": [out], "value": x * 2}


@flow
def _flow(x: int, out: str) -> list[dict]:
    return run_cached(_write, lambda r: r["files"], [{"x": x, "out": out}])


def test_rerun_hits_cache_and_missing_outputs_are_recomputed(tmp_path):
    out = str(tmp_path / "o.txt")
    CALLS.clear()
    assert _flow(3, out)[0]["value"] == 6
    assert _flow(3, out)[0]["value"] == 6
    assert CALLS == [3], "second run must be a cache hit"
    _flow(4, out)
    assert CALLS == [3, 4], "changed input must recompute"
    Path(out).unlink()
    _flow(4, out)
    assert CALLS == [3, 4, 4], "a cached result whose file vanished must be refreshed"
    assert Path(out).read_text() == "8"


def test_package_hash_follows_library_source(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg_cache_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("A = 1\n")
    (pkg / "mod.py").write_text("B = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    h1 = package_hash("fakepkg_cache_test")
    package_hash.cache_clear()
    assert package_hash("fakepkg_cache_test") == h1
    (pkg / "mod.py").write_text("B = 3\n")
    package_hash.cache_clear()
    assert package_hash("fakepkg_cache_test") != h1
    sys.modules.pop("fakepkg_cache_test", None)
