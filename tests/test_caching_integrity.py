"""Cache integrity (issue 16): a cached result counts only while its outputs hold what the
task wrote, and its key holds every project module the task imports."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import flow, task

import tasks  # noqa: F401  (embedded defaults before prefect)
from tasks.caching import (
    OUTPUT_HASHES,
    clear_code_caches,
    code_closure,
    code_hash,
    code_policy,
    hashed_outputs,
    output_problems,
    run_cached,
)
from tests.conftest import REPO, make_study

CALLS: list[str] = []


@task(cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def _param_file(x: str, out: str) -> dict:
    CALLS.append(x)
    Path(out).write_text(f"written with {x}\n")
    return {"files": [out], "value": x}


@task(cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def _blob(seed: int, out: str) -> dict:
    """3 MiB + a bit (several hash chunks), deterministic in ``seed``."""
    CALLS.append(f"blob{seed}")
    data = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(100_000))
    Path(out).write_bytes(data)
    return {"files": [out]}


@task(cache_policy=code_policy(__name__), persist_result=True)
def _unhashed(out: str) -> dict:
    Path(out).write_text("x")
    return {"files": [out]}


@flow
def _run(t, calls: list[dict]) -> list[dict]:
    return run_cached(t, lambda r: r["files"], calls)


def test_x_then_y_then_x_returns_x_and_rewrites_xs_file(tmp_path):
    out = str(tmp_path / "o.txt")
    CALLS.clear()
    (a,) = _run(_param_file, [{"x": "X", "out": out}])
    (b,) = _run(_param_file, [{"x": "Y", "out": out}])
    assert (a["value"], b["value"]) == ("X", "Y")
    assert Path(out).read_text() == "written with Y\n"
    (c,) = _run(_param_file, [{"x": "X", "out": out}])
    assert c == {"files": [out], "value": "X"}, "results come back without the hashes"
    assert Path(out).read_text() == "written with X\n", "X's cache hit must rewrite X's file"
    assert CALLS == ["X", "Y", "X"], "the third call re-ran: the recorded hash did not match"
    _run(_param_file, [{"x": "X", "out": out}])
    assert CALLS == ["X", "Y", "X"], "files matching their hashes: a plain cache hit"


def test_truncated_output_is_detected_and_rebuilt(tmp_path):
    out = tmp_path / "blob.bin"
    CALLS.clear()
    _run(_blob, [{"seed": 1, "out": str(out)}])
    original = out.read_bytes()
    assert len(original) > 3 * (1 << 20)
    out.write_bytes(original[: len(original) // 2])
    _run(_blob, [{"seed": 1, "out": str(out)}])
    assert CALLS == ["blob1", "blob1"]
    assert out.read_bytes() == original


def test_output_problems_name_the_file_and_the_reason(tmp_path):
    f, g = tmp_path / "f.txt", tmp_path / "g.txt"
    res = hashed_outputs(lambda: (f.write_text("a"), g.write_text("b"), {"files": [f, g]})[-1])()
    assert set(res[OUTPUT_HASHES]) == {str(f), str(g)}
    files = lambda r: r["files"]  # noqa: E731
    assert output_problems(res, files) == []
    f.write_text("A")
    g.unlink()
    assert output_problems(res, files) == [f"{g}: missing", f"{f}: content changed"]
    assert output_problems({"files": [str(f)]}, files) == [f"{f}: no recorded hash"]
    assert output_problems({"files": []}, files) == ["result records no output hashes"]


def test_a_task_without_recorded_hashes_is_rerun_then_refused(tmp_path):
    with pytest.raises(RuntimeError, match="inconsistent after a re-run"):
        _run(_unhashed, [{"out": str(tmp_path / "u.txt")}])


def _write_pkg(root: Path) -> Path:
    pkg = root / "ctpkg_closure"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\n\nfrom . import b\n")
    (pkg / "b.py").write_text(
        "from ctpkg_closure.sub.e import E\n\n\ndef f():\n    from ctpkg_closure import c\n"
        "    return c.C + E\n"
    )
    (pkg / "c.py").write_text("C = 1\n")
    (pkg / "d.py").write_text("import ctpkg_closure.a\n\nD = 4\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "e.py").write_text("E = 5\n")
    return pkg


def test_code_closure_follows_imports_and_hash_follows_closure(tmp_path, monkeypatch):
    pkg = _write_pkg(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    clear_code_caches()
    try:
        top = ("ctpkg_closure",)
        got = set(code_closure("ctpkg_closure.a", top))
        n = "ctpkg_closure"
        assert got == {n, f"{n}.a", f"{n}.b", f"{n}.c", f"{n}.sub", f"{n}.sub.e"}
        h1 = code_hash("ctpkg_closure.a", top)
        clear_code_caches()
        assert code_hash("ctpkg_closure.a", top) == h1
        (pkg / "c.py").write_text("C = 2\n")
        clear_code_caches()
        h2 = code_hash("ctpkg_closure.a", top)
        assert h2 != h1, "an edit in a transitive import must change the key"
        (pkg / "d.py").write_text("import ctpkg_closure.a\n\nD = 40\n")
        clear_code_caches()
        assert code_hash("ctpkg_closure.a", top) == h2, "an unrelated module must not"
        assert "ctpkg_closure.a" in code_closure("ctpkg_closure.d", top)
    finally:
        clear_code_caches()


def test_real_closures_hold_the_imported_library_modules():
    # hand-read: tasks.standardize -> brainxai.standardize -> .config -> brainxai.config;
    # tasks.synth -> brainxai.synth -> .cohort / .lesions -> brainxai.labels
    std = set(code_closure("tasks.standardize"))
    assert {"tasks.standardize", "tasks.caching", "brainxai.standardize",
            "brainxai.standardize.pipeline", "brainxai.config"} <= std  # fmt: skip
    assert "brainxai.standardize.accuracy" not in std, "not imported by the task"
    assert {"brainxai.synth.cohort", "brainxai.labels", "brainxai.config"} <= set(
        code_closure("tasks.synth")
    )
    assert {"brainxai.labels", "brainxai.manifest", "brainxai.splits"} <= set(
        code_closure("tasks.ingest")
    )


def test_closure_covers_every_project_module_an_import_loads():
    """Oracle: what a fresh interpreter actually loads is inside the static closure."""
    code = (
        "import json, sys, tasks.synth; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('brainxai', 'tasks'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded - set(code_closure("tasks.synth")) == set()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_synth_flow_rebuilds_a_truncated_output(tmp_path, monkeypatch):
    from flows.synth import synth_flow

    root = make_study(tmp_path / "study")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    synth_flow(root=str(root))
    data = root / "data"
    first = _tree(data)
    victim = sorted(p for p in data.rglob("*.nii.gz"))[0]
    victim.write_bytes(first[str(victim.relative_to(data))][:100])
    t0 = time.perf_counter()
    synth_flow(root=str(root))
    assert time.perf_counter() - t0 < 60
    assert _tree(data) == first, "rebuilt byte for byte, nothing else changed"
