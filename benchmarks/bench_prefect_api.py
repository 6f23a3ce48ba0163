"""Benchmark a stage process's Prefect start-up: its own temporary API server (each DVC
stage of ``make study`` without ``study_track.shared_prefect_api``) vs one shared server
(:func:`tasks.prefect_api.shared_api`, what ``brainxai study track`` starts).

    python benchmarks/bench_prefect_api.py            # 5 processes each way
    python benchmarks/bench_prefect_api.py --n 10

Each process is a fresh Python that imports Prefect and runs a one-task flow, as a stage
does (with the study's embedded defaults: ``PREFECT_HOME`` in a temporary directory, no
analytics). Baseline, measured in the same run: ``PREFECT_API_URL`` unset, so the flow
starts, migrates and stops a temporary server of its own. Shared: one server started once
through :func:`shared_api` (its start-up time is printed and counted against the shared
total). Prints the median wall time per process of each way and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tasks.prefect_api import API_ENV, SharedApiConfig, shared_api

FLOW = """
from prefect import flow, task

@task
def double(x):
    return 2 * x

@flow(name="stage-startup")
def stage():
    return double(21)

assert stage() == 42
"""


def _run(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOW], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="stage-like processes each way")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"PREFECT_HOME": str(Path(tmp) / "home"),
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})  # fmt: skip
        os.environ.pop(API_ENV, None)
        base_env = dict(os.environ)
        _run(base_env)  # create the database once (a study's first stage does too)
        own = [_run(base_env) for _ in range(args.n)]
        t0 = time.perf_counter()
        with shared_api(SharedApiConfig()) as extra:
            started = time.perf_counter() - t0
            if not extra:
                raise SystemExit("the shared server did not start")
            shared = [_run({**base_env, **extra}) for _ in range(args.n)]
    m_own, m_shared = statistics.median(own), statistics.median(shared)
    print(f"own temporary server per process: median {m_own:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in own)})")  # fmt: skip
    times = ", ".join(f"{t:.2f}" for t in shared)
    print(f"one shared server:                median {m_shared:.2f} s "
          f"({times}); server start {started:.2f} s once")  # fmt: skip
    print(f"ratio (own / shared, per process): {m_own / m_shared:.2f}x; "
          f"{args.n} processes: {sum(own):.1f} s vs {sum(shared) + started:.1f} s "
          f"with the server's start")  # fmt: skip


if __name__ == "__main__":
    main()
