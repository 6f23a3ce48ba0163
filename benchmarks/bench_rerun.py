"""Repeat-run cost: a study re-run with nothing changed vs the cold run, as ratios.

Three ways users re-run the study, each measured cold then warm in one script,
in a fresh temporary study root (smoke profile):

1. ``dvc repro`` (what ``make study`` runs): the warm run only checks hashes.
2. The Prefect study flow in a long-lived process (a worker, a scheduled run):
   every task is a cache hit.
3. ``brainxai study run`` as a new process: cache hits, plus interpreter start-up
   and Prefect's ephemeral API start.

Usage: ``python benchmarks/bench_rerun.py [--skip-dvc] [--skip-cli] [--stages synth ingest]``
(``dvc repro`` gets the last stage as its target, so its upstream stages run too.)
Target (issue 3): warm / cold < 5 % for (1) and (2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def make_root(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / f, dest / f)
    for d in ("src", "tasks", "flows"):
        shutil.copytree(REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode})")
    return time.perf_counter() - t0


def env_for(root: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "BRAINXAI_ROOT": str(root),
        "PREFECT_HOME": str(root / ".prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns.db'}",
        "BRAINXAI_ARTIFACTS": str(root / "mlartifacts"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    env.pop("PREFECT_API_URL", None)
    return env


def bench_dvc(tmp: Path, stages: list[str]) -> tuple[float, float]:
    root = make_root(tmp / "dvc")
    env = env_for(root)
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    repro = [str(BIN / "dvc"), "repro", *stages]
    cold = timed(repro, root, env)
    warm = timed(repro, root, env)
    return cold, warm


#: The study flow run twice in one interpreter (a long-lived process: a worker, a scheduled
#: run); prints the two wall times. A script, not an import: benchmarks import the library
#: and the tasks, never the flows (tests/test_architecture.py).
SAME_PROCESS = """
import sys, time
import tasks  # embedded defaults before prefect
from flows.study import study_flow
stages = sys.argv[2:] or None
times = []
for _ in range(2):
    t0 = time.perf_counter()
    study_flow(root=sys.argv[1], stages=stages)
    times.append(time.perf_counter() - t0)
print("times", *times)
"""


def bench_flow(tmp: Path, stages: list[str]) -> tuple[float, float]:
    root = make_root(tmp / "flow")
    cmd = [sys.executable, "-c", SAME_PROCESS, str(root), *stages]
    out = subprocess.run(cmd, cwd=REPO, env=env_for(root), capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"the study flow failed ({out.returncode})")
    line = next(x for x in out.stdout.splitlines()[::-1] if x.startswith("times "))
    cold, warm = (float(v) for v in line.split()[1:])
    return cold, warm


def bench_cli(tmp: Path, stages: list[str]) -> tuple[float, float]:
    root = make_root(tmp / "cli")
    env = env_for(root)
    cmd = [str(BIN / "brainxai"), "study", "run", *[a for s in stages for a in ("--stage", s)]]
    return timed(cmd, root, env), timed(cmd, root, env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-dvc", action="store_true")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument(
        "--stages", nargs="*", default=[], help="stages to run (default: the whole study)"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    rows = []
    try:
        if not args.skip_dvc:
            rows.append(("dvc repro", *bench_dvc(tmp, args.stages)))
        if not args.skip_cli:
            rows.append(("brainxai study run (new process)", *bench_cli(tmp, args.stages)))
        rows.append(("Prefect study flow (same process)", *bench_flow(tmp, args.stages)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'mode':<36} {'cold s':>8} {'warm s':>8} {'warm/cold':>10}")
    for name, cold, warm in rows:
        print(f"{name:<36} {cold:8.1f} {warm:8.2f} {100 * warm / cold:9.1f}%")


if __name__ == "__main__":
    main()
