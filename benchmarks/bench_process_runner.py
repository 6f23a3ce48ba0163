"""Process-pool fan-out overhead: Prefect's stock runner vs ours (workers share the API).

Both runners spawn fresh worker processes per flow run (cold imports in both); with the
embedded API the stock runner's workers each start their own temporary Prefect server.
A warm-up flow starts the parent's embedded server first, then each runner runs the
same trivial two-task flow ``--repeats`` times, alternating, in one interpreter.

  python benchmarks/bench_process_runner.py [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bench-process-runner-")
    os.environ.setdefault("PREFECT_HOME", home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")

    from prefect import flow, task
    from prefect.task_runners import ProcessPoolTaskRunner

    from tasks.runners import SharedAPIProcessPoolTaskRunner

    @task
    def pid() -> int:
        return os.getpid()

    @flow(name="bench-process-fan-out")
    def fan(n: int) -> list[int]:
        return [f.result() for f in [pid.submit() for _ in range(n)]]

    fan.with_options(task_runner=SharedAPIProcessPoolTaskRunner(max_workers=1))(1)  # warm-up
    runners = (("stock", ProcessPoolTaskRunner), ("shared_api", SharedAPIProcessPoolTaskRunner))
    times: dict[str, list[float]] = {"stock": [], "shared_api": []}
    for _ in range(args.repeats):
        for name, cls in runners:
            t0 = time.perf_counter()
            fan.with_options(task_runner=cls(max_workers=args.workers))(args.workers)
            times[name].append(time.perf_counter() - t0)
            print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    stock, ours = (statistics.median(times[k]) for k in ("stock", "shared_api"))
    print(
        f"{args.workers} workers, median of {args.repeats}: stock {stock:.1f} s, "
        f"shared API {ours:.1f} s -> {stock / ours:.2f}x"
    )


if __name__ == "__main__":
    main()
