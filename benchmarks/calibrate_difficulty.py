"""Difficulty calibration: supervised baselines vs the generator's lesion-contrast knob.

Generates a larger cohort than the smoke profile (so test sets are not tiny), ingests
it, splits by patient and runs the `difficulty` stage's baselines, for each value of
``--contrast`` (``synth.lesion_contrast``). Prints one row per (contrast, task, model).

Usage: ``python benchmarks/calibrate_difficulty.py [--per-group 20] [--per-class 15]
[--contrast 1.0 0.5] [--workers 2]``
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from brainxai import synth
from brainxai.baseline import BaselineConfig, run_baselines
from brainxai.config import load_params
from brainxai.ingest import IngestConfig, combine, ingest
from brainxai.splits import SplitConfig, assign_splits

REPO = Path(__file__).resolve().parents[1]


def _write3d(args: tuple) -> dict:
    spec, out, cfg = args
    return synth.write_subject3d(spec, out, cfg)


def _write2d(args: tuple) -> list[dict]:
    spec, out, meta, cfg = args
    return synth.write_subject2d(spec, out, meta, cfg)


def make_cohort2d(root: Path, cfg: synth.SynthConfig, seed: int, workers: int) -> None:
    """The Kaggle-layout 2D set under ``root/kaggle2d`` (+ ``kaggle2d_meta``)."""
    c2, meta = root / "kaggle2d", root / "kaggle2d_meta"
    s2 = synth.plan_kaggle2d(cfg, seed)
    with ProcessPoolExecutor(workers) as pool:
        rows = [r for rs in pool.map(_write2d, [(s, c2, meta, cfg) for s in s2]) for r in rs]
    synth.finalize_kaggle2d(meta, rows)


def make_cohort(root: Path, cfg: synth.SynthConfig, seed: int, workers: int) -> None:
    c3 = root / "cohort3d"
    s3 = synth.plan_cohort3d(cfg, seed)
    with ProcessPoolExecutor(workers) as pool:
        sums = list(pool.map(_write3d, [(s, c3, cfg) for s in s3]))
    synth.finalize_cohort3d(c3, s3, sums, cfg, seed)
    make_cohort2d(root, cfg, seed, workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-group", type=int, default=20)
    ap.add_argument("--per-class", type=int, default=15)
    ap.add_argument("--contrast", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml", profile="smoke")
    base = synth.SynthConfig.from_dict(params["synth"])
    icfg = IngestConfig.from_dict(params["ingest"]["config"])
    scfg = SplitConfig.from_dict(params["split"])
    bcfg = BaselineConfig.from_dict({**params["difficulty"], "seed": params["seed"]})
    print(f"{'contrast':>8} {'task':<9} {'model':<7} {'n_test':>6} {'acc':>6} {'bal_acc':>7} "
          f"{'group':>6} {'chance':>6}  seconds")  # fmt: skip
    for contrast in args.contrast:
        cfg = dataclasses.replace(
            base,
            lesion_contrast=contrast,
            n_subjects_2d_per_group=args.per_group,
            n_subjects_3d_per_class=args.per_class,
        )
        tmp = Path(tempfile.mkdtemp(prefix="calib-"))
        try:
            t0 = time.perf_counter()
            make_cohort(tmp, cfg, int(params["seed"]), args.workers)
            res = combine(
                [
                    ingest(tmp / "cohort3d", "bids", icfg, base_dir=tmp),
                    ingest(tmp / "kaggle2d", "kaggle17", icfg, base_dir=tmp,
                           sidecar=tmp / "kaggle2d_meta" / "subjects.csv"),
                ],
                icfg,
            )  # fmt: skip
            manifest = assign_splits(res.manifest, scfg)
            out = run_baselines(manifest, tmp, bcfg)
            secs = time.perf_counter() - t0
            for task, r in out.items():
                for model in ("logreg", "cnn"):
                    if model not in r:
                        continue
                    m = r[model]
                    print(f"{contrast:8.2f} {task:<9} {model:<7} {m['n_test']:6d} "
                          f"{m['accuracy']:6.3f} {m['balanced_accuracy']:7.3f} "
                          f"{m.get('group_accuracy', float('nan')):6.3f} {m['chance']:6.3f}  "
                          f"{secs:.0f}")  # fmt: skip
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
