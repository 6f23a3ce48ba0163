"""benchmarks/gpu_acceptance.py: the dry run (CPU, tiny sizes) and check isolation."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_acceptance.py"
DRY_RUN_BUDGET_S = 60.0


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve string annotations via sys.modules
    spec.loader.exec_module(mod)
    return mod


def _md_checks(md: str) -> dict[str, str]:
    """check -> status from the Markdown table."""
    rows = [line.split("|") for line in md.splitlines() if line.startswith("| ")]
    return {r[1].strip(): r[2].strip() for r in rows[1:]}  # rows[0] is the header


def test_dry_run_every_check_runs_none_fails_under_a_minute(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "ga.json", tmp_path / "ga.md"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out-json", str(out_json),
         "--out-md", str(out_md)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out_json.read_text())
    rows = {r["check"]: r for r in data["checks"]}
    mod = _module()
    assert set(rows) == {n for n, _ in mod.CHECKS} | {"total_wall_time"}
    assert all(r["status"] in mod.STATUSES for r in rows.values())
    failed = {n: r["error"] for n, r in rows.items() if r["status"] == "fail"}
    assert not failed, failed
    # every CUDA-vs-CPU comparison ran (CPU vs CPU); every GPU target is "not measured"
    targets = {n for n, r in rows.items() if r["status"] == "not measured"}
    assert {"ssl_pipeline_vs_ceiling", "ssl_pipeline_vs_lightly",
            "classify3d_pipeline_vs_ceiling", "total_wall_time"} <= targets  # fmt: skip
    assert all(r["note"].startswith("dry run") for n, r in rows.items() if n in targets)
    assert _md_checks(out_md.read_text()) == {n: r["status"] for n, r in rows.items()}
    assert data["meta"]["dry_run"] is True
    assert wall < DRY_RUN_BUDGET_S, f"dry run took {wall:.1f} s"


def test_a_raising_check_is_recorded_as_fail_and_the_others_still_run(tmp_path: Path) -> None:
    mod = _module()

    def boom(ctx, row):
        raise ZeroDivisionError("injected")

    def fine(ctx, row):
        row.measured, row.target = "1", "1"
        return row

    checks = [("boom", boom), ("cscore_blocked_cdist", mod.check_cscore_cdist), ("fine", fine)]
    out_json, out_md = tmp_path / "ga.json", tmp_path / "ga.md"
    rc = mod.main(["--dry-run", "--out-json", str(out_json), "--out-md", str(out_md)], checks)
    assert rc == 1
    rows = {r["check"]: r for r in json.loads(out_json.read_text())["checks"]}
    assert rows["boom"]["status"] == "fail"
    assert rows["boom"]["error"] == "ZeroDivisionError: injected"
    assert rows["cscore_blocked_cdist"]["status"] == "pass"
    assert rows["fine"]["status"] == "pass"
    assert list(_md_checks(out_md.read_text())) == ["boom", "cscore_blocked_cdist", "fine",
                                                     "total_wall_time"]  # fmt: skip


def test_a_check_past_its_time_limit_is_stopped_and_recorded_as_fail(tmp_path: Path) -> None:
    mod = _module()
    mod.CHECK_LIMIT_S["dry"] = 0.5  # this test's module copy only

    def hangs(ctx, row):
        time.sleep(30)
        return row

    def fine(ctx, row):
        row.measured, row.target = "1", "1"
        return row

    out_json, out_md = tmp_path / "ga.json", tmp_path / "ga.md"
    t0 = time.perf_counter()
    rc = mod.main(["--dry-run", "--out-json", str(out_json), "--out-md", str(out_md)],
                  [("hangs", hangs), ("fine", fine)])  # fmt: skip
    assert time.perf_counter() - t0 < 10
    assert rc == 1
    data = json.loads(out_json.read_text())
    rows = {r["check"]: r for r in data["checks"]}
    assert rows["hangs"]["status"] == "fail"
    assert rows["hangs"]["error"].startswith("CheckTimeout")
    assert rows["fine"]["status"] == "pass"
    assert data["meta"]["complete"] is True
