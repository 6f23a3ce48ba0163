"""Explanation-tracking stage: what a re-run costs, as ratios measured in one process.

On the tiny study of ``tests/test_xai_stage.py`` (12 images at 32 px, three ResNet-18
checkpoints, one head-only), after a warm-up flow (Prefect's ephemeral API and the MLflow
database are started once):

1. cold run with methods A = [gradcam, eigencam] vs the same run again (every heatmap
   task a cache hit, no plot redrawn): ``warm / cold``;
2. adding one method (A + layercam) to the cached study vs a cold run of A + layercam in a
   fresh root: ``incremental / cold``; only the new method's heatmaps are computed.

Usage: ``python benchmarks/bench_xai_stage.py [--repeats 1]``. CPU only here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STATE = Path(tempfile.mkdtemp(prefix="bench-xai-"))
os.environ.setdefault("PREFECT_HOME", str(STATE / "prefect"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{STATE / 'mlruns.db'}")
os.environ.setdefault("BRAINXAI_ARTIFACTS", str(STATE / "mlartifacts"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")

import tasks  # noqa: E402,F401  (embedded defaults before prefect)
from tests.test_xai_stage import (  # noqa: E402
    run_stage,
    write_cache,
    write_checkpoints,
    write_params,
    xai_section,
)

BASE = ["gradcam", "eigencam"]
PLUS = [*BASE, "layercam"]


def study(name: str, methods: list[str]) -> Path:
    root = STATE / name
    root.mkdir()
    write_cache(root)
    write_checkpoints(root)
    write_params(root, xai_section(methods=methods, max_images=0))
    return root


def timed(root: Path) -> float:
    t0 = time.perf_counter()
    run_stage(root)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    timed(study("warmup", ["gradcam"]))  # ephemeral API, MLflow tables, imports
    for r in range(args.repeats):
        a = study(f"a{r}", BASE)
        cold = timed(a)
        warm = timed(a)
        write_params(a, xai_section(methods=PLUS, max_images=0))
        incremental = timed(a)
        cold_plus = timed(study(f"b{r}", PLUS))
        print(f"repeat {r}: cold {cold:.2f} s, warm {warm:.2f} s, warm/cold {warm / cold:.3f}")
        print(
            f"repeat {r}: +1 method {incremental:.2f} s vs cold with it {cold_plus:.2f} s, "
            f"ratio {incremental / cold_plus:.3f}"
        )


if __name__ == "__main__":
    main()
