"""Benchmark the synthetic MRI generator (brainxai.synth).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_synth.py            # smoke cohort
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_synth.py --quick    # no cohort
    PYTHONPATH=src python benchmarks/bench_synth.py --workers 2                  # 2 processes

Measures, in one run and on the same subjects:

1. the sampling stage: the fused one-pass sampler (composed grid -> pose -> warp chain,
   then one multi-channel ``grid_sample`` of GM/WM/distance) against two baselines on
   the *same* coordinates: per-channel ``scipy.ndimage.map_coordinates`` (order 1), and
   the naive two-stage pipeline (warp each channel in template space, then resample it
   to the output grid, both with ``map_coordinates``); max |difference| to the fused
   result is printed;
2. end to end: 3D volumes/s (in memory, and with NIfTI writing) and 2D slices/s;
3. unless ``--quick``: the whole smoke-profile generation (3D cohort + 2D set).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from brainxai.synth import (
    SynthConfig,
    build_model,
    finalize_cohort3d,
    finalize_kaggle2d,
    plan_cohort3d,
    plan_kaggle2d,
    synthesize_subject,
    write_subject2d,
    write_subject3d,
)
from brainxai.synth.anatomy import load_anatomy
from brainxai.synth.deform import sample_volume


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_sampler(cfg: SynthConfig, n_subjects: int, repeats: int) -> None:
    """Fused one-pass sampling vs per-channel and two-stage scipy resampling."""
    anat = load_anatomy(cfg.resolution_mm, cfg.head_pad_mm, cfg.tissue_sharpness)
    channels = [anat.gm, anat.wm, anat.dist]
    fused_t = naive_t = twostage_t = 0.0
    n_vox = 0
    max_diff = 0.0
    for spec in plan_cohort3d(cfg, 1)[:n_subjects]:
        model = build_model(spec, cfg)
        geom = model.geometry
        world = geom.grid.world()
        n_vox += len(world)

        def fused(geom=geom, world=world):
            p = geom.template_coords(world)
            return sample_volume(anat.fused_t, anat.voxel(p), padding="border")

        def per_channel(geom=geom, world=world):
            idx = anat.voxel(geom.template_coords(world)).T
            return np.stack(
                [ndimage.map_coordinates(c, idx, order=1, mode="nearest") for c in channels]
            )

        def two_stage(geom=geom, world=world):
            # (a) warp every channel in template space, (b) resample it to the output grid.
            grid = np.indices(anat.shape, dtype=np.float32).reshape(3, -1).T
            tmpl = anat.mm(grid).astype(np.float32)
            disp_idx = (tmpl - geom.disp_origin.astype(np.float32)) / np.float32(geom.disp_spacing)
            u = sample_volume(geom.disp, disp_idx, "border")
            warped_idx = anat.voxel(tmpl + u.T).T
            inv = np.linalg.inv(geom.head_affine).astype(np.float32)
            idx = anat.voxel(world @ inv[:3, :3].T + inv[:3, 3]).T
            out = []
            for c in channels:
                warped = ndimage.map_coordinates(c, warped_idx, order=1, mode="nearest")
                out.append(
                    ndimage.map_coordinates(
                        warped.reshape(anat.shape), idx, order=1, mode="nearest"
                    )
                )
            return np.stack(out)

        max_diff = max(max_diff, float(np.abs(fused() - per_channel()).max()))
        fused_t += _best(fused, repeats)
        naive_t += _best(per_channel, repeats)
        twostage_t += _best(two_stage, max(1, repeats - 1))
    mvox = n_vox / 1e6
    print(f"sampling stage, {n_subjects} subjects, {mvox:.1f} M output voxels, 3 channels")
    print(f"  fused one-pass grid_sample : {fused_t:7.3f} s  {mvox / fused_t:6.2f} Mvox/s")
    print(f"  per-channel map_coordinates: {naive_t:7.3f} s  {mvox / naive_t:6.2f} Mvox/s")
    print(f"  two-stage map_coordinates  : {twostage_t:7.3f} s  {mvox / twostage_t:6.2f} Mvox/s")
    print(
        f"  speed-up fused vs per-channel: {naive_t / fused_t:.2f}x, "
        f"vs two-stage: {twostage_t / fused_t:.2f}x; max |fused - per-channel| = "
        f"{max_diff:.2e}"
    )


def bench_end_to_end(cfg: SynthConfig, n3d: int, n2d: int) -> None:
    specs = plan_cohort3d(cfg, 2)[:n3d]
    t0 = time.perf_counter()
    for spec in specs:
        synthesize_subject(spec, cfg)
    mem = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for spec in specs:
            write_subject3d(spec, tmp, cfg)
        disk = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_slices = sum(
            len(write_subject2d(spec, Path(tmp) / "k", Path(tmp) / "m", cfg))
            for spec in plan_kaggle2d(cfg, 2)[:n2d]
        )
        slices = time.perf_counter() - t0
    print(f"3D in memory : {n3d / mem:6.2f} volumes/s (subjects of 4 sequences + truth)")
    print(f"3D to NIfTI  : {n3d / disk:6.2f} volumes/s ({disk / n3d:.2f} s/subject)")
    print(f"2D to images : {n_slices / slices:6.2f} slices/s ({n_slices} slices, {n2d} subjects)")


def _init_worker(threads: int, cfg: SynthConfig) -> None:
    torch.set_num_threads(threads)
    load_anatomy(cfg.resolution_mm, cfg.head_pad_mm, cfg.tissue_sharpness)


def bench_smoke_generation(cfg: SynthConfig, workers: int, threads: int) -> None:
    """The smoke profile end to end: plan -> write all -> finalize, per export."""
    with tempfile.TemporaryDirectory() as tmp:
        out3, out2, meta = Path(tmp) / "c3", Path(tmp) / "k2", Path(tmp) / "meta"
        specs3, specs2 = plan_cohort3d(cfg, 7), plan_kaggle2d(cfg, 7)
        pool = (
            ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(threads, cfg))
            if workers > 1
            else None
        )
        t0 = time.perf_counter()
        if pool:
            summaries = list(
                pool.map(write_subject3d, specs3, [out3] * len(specs3), [cfg] * len(specs3))
            )
        else:
            summaries = [write_subject3d(s, out3, cfg) for s in specs3]
        finalize_cohort3d(out3, specs3, summaries, cfg, 7)
        t3 = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = len(specs2)
        if pool:
            parts = list(pool.map(write_subject2d, specs2, [out2] * n, [meta] * n, [cfg] * n))
        else:
            parts = [write_subject2d(s, out2, meta, cfg) for s in specs2]
        rows = [r for part in parts for r in part]
        finalize_kaggle2d(meta, rows)
        t2 = time.perf_counter() - t0
        if pool:
            pool.shutdown()
        size3 = sum(p.stat().st_size for p in out3.rglob("*") if p.is_file()) / 1e6
    print(f"smoke profile, {workers} worker(s) x {threads} thread(s):")
    print(f"  3D cohort : {len(specs3)} subjects in {t3:6.1f} s ({size3:.0f} MB)")
    print(f"  2D set    : {len(specs2)} subjects, {len(rows)} slices in {t2:6.1f} s")
    print(f"  total     : {t3 + t2:6.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the whole-cohort timing")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--workers", type=int, default=1, help="processes for the cohort timing")
    ap.add_argument("--subjects", type=int, default=4, help="subjects per micro-benchmark")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SynthConfig()
    t0 = time.perf_counter()
    load_anatomy(cfg.resolution_mm, cfg.head_pad_mm, cfg.tissue_sharpness)
    print(f"template anatomy (2 mm, once per process): {time.perf_counter() - t0:.2f} s")
    bench_sampler(cfg, args.subjects, repeats=3)
    bench_end_to_end(cfg, args.subjects, 2 * args.subjects)
    if not args.quick:
        bench_smoke_generation(cfg, args.workers, args.threads)


if __name__ == "__main__":
    main()
