"""Benchmark all-pairs soft-IoU paths (brainxai.xai.softiou) on 2-D maps and 3-D volumes.

    PYTHONPATH=src python benchmarks/bench_softiou.py            # 1,000 × 224², 200 × 64³
    PYTHONPATH=src python benchmarks/bench_softiou.py --quick    # 300 × 128², 80 × 48³

Times (end to end, row sums and the sIoU division included; best of 3 except the
single cdist run): the numpy pairwise loop (timed on a random subset of pairs and
extrapolated to all N(N−1)/2 pairs — stated in the output), blocked
``torch.cdist(p=1)``, the plain numba ``prange`` kernel and the cache-blocked numba
kernel; speed-ups against the loop; max |Δ| of every path against the loop on the
timed pairs (float32 and float64 loops); GFLOP/s (one min + one add per pair and
pixel) against the machine's min+add rate measured by two in-cache numba kernels on
every thread: a streaming one (two loads per min+add) and a register-resident one
(one load per eight).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange

from brainxai.xai.softiou import minsum_numba, pairwise_soft_iou


@njit(cache=True, fastmath=True, parallel=True)
def _stream_minadd(x, y, reps):  # pragma: no cover - compiled
    out = np.zeros(x.shape[0], np.float64)
    for t in prange(x.shape[0]):
        a = x[t]
        b = y[t]
        s = np.float32(0.0)
        for _ in range(reps):
            for k in range(a.shape[0]):
                u = a[k]
                v = b[k]
                s += u if u < v else v
        out[t] = s
    return out


@njit(cache=True, fastmath=True, parallel=True)
def _register_minadd(x, c, reps):  # pragma: no cover - compiled
    out = np.zeros(x.shape[0], np.float64)
    for t in prange(x.shape[0]):
        a = x[t]
        c0, c1, c2, c3, c4, c5, c6, c7 = c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        z = np.float32(0.0)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = z
        for _ in range(reps):
            for k in range(a.shape[0]):
                u = a[k]
                s0 += u if u < c0 else c0
                s1 += u if u < c1 else c1
                s2 += u if u < c2 else c2
                s3 += u if u < c3 else c3
                s4 += u if u < c4 else c4
                s5 += u if u < c5 else c5
                s6 += u if u < c6 else c6
                s7 += u if u < c7 else c7
        out[t] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
    return out


def machine_peak(n: int = 2048, seconds: float = 1.0) -> tuple[float, float]:
    """(streaming, register-resident) min+add GFLOP/s on all threads, data in L1."""
    nt = numba.get_num_threads()
    rng = np.random.default_rng(0)
    x = rng.random((nt, n), dtype=np.float32)
    y = rng.random((nt, n), dtype=np.float32)
    c = rng.random(8, dtype=np.float32)
    _stream_minadd(x, y, 1)
    _register_minadd(x, c, 1)
    res = []
    for fn, arg, flops_per_elem in ((_stream_minadd, y, 2), (_register_minadd, c, 16)):
        reps = 64
        while True:
            t = time.perf_counter()
            fn(x, arg, reps)
            dt = time.perf_counter() - t
            if dt > seconds / 4:
                break
            reps *= 4
        best = min(_timed(lambda fn=fn, arg=arg, r=reps: fn(x, arg, r)) for _ in range(7))
        res.append(nt * n * reps * flops_per_elem / best / 1e9)
    return res[0], res[1]


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def loop_subset(x: np.ndarray, pairs: np.ndarray) -> tuple[float, np.ndarray]:
    """The reference loop (Eq. 2 per pair, numpy, input dtype) on given pairs."""
    out = np.empty(len(pairs))
    t = time.perf_counter()
    for n, (i, j) in enumerate(pairs):
        out[n] = np.minimum(x[i], x[j]).sum() / np.maximum(x[i], x[j]).sum()
    return time.perf_counter() - t, out


def bench(name: str, shape: tuple[int, ...], n_pairs: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n = shape[0]
    maps = rng.random(shape, dtype=np.float32) ** 2
    x = maps.reshape(n, -1)
    p = x.shape[1]
    total_pairs = n * (n - 1) // 2
    flops = 2.0 * total_pairs * p
    pairs = np.array([(i, j) for i, j in rng.integers(0, n, (4 * n_pairs, 2)) if i < j])
    pairs = pairs[:n_pairs]
    t_sub, ref32 = min((loop_subset(x, pairs) for _ in range(3)), key=lambda r: r[0])
    _, ref64 = loop_subset(x.astype(np.float64), pairs)
    t_loop = t_sub / len(pairs) * total_pairs
    print(f"\n== {name}: {n} maps of {shape[1:]} (P = {p}), {total_pairs} pairs, float32 ==")
    print(
        f"numpy pairwise loop   {t_loop:9.2f} s  (timed on {len(pairs)} random pairs: "
        f"{t_sub:.2f} s, extrapolated to all pairs)"
    )
    pairwise_soft_iou(maps[:4], method="numba")  # compile / load cache
    pairwise_soft_iou(maps[:4], method="numba-simple")
    row = {"loop": t_loop}
    for label, method, repeats in (
        ("torch.cdist blocked", "torch", 1),
        ("numba simple prange", "numba-simple", 3),
        ("numba blocked", "numba", 3),
    ):
        dt = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            sim = pairwise_soft_iou(maps, method=method)
            dt = min(dt, time.perf_counter() - t)
        got = sim[pairs[:, 0], pairs[:, 1]]
        d32 = np.abs(got - ref32).max()
        d64 = np.abs(got - ref64).max()
        print(
            f"{label:21s} {dt:9.2f} s  {t_loop / dt:6.1f}× vs loop  {flops / dt / 1e9:6.1f} GFLOP/s"
            f"  max|Δ| vs loop f32 {d32:.1e}, f64 {d64:.1e}"
        )
        row[method] = dt
    return row | {"flops": flops}


def sweep(shape: tuple[int, ...], blocks: list[tuple[int, int, int]]) -> None:
    """Time the numba kernel for several (rows, cols, pixels) tilings."""
    maps = np.random.default_rng(0).random(shape, dtype=np.float32)
    n = shape[0]
    flops = float(n * (n - 1) * np.prod(shape[1:]))
    minsum_numba(maps[:4], None, blocks[0])
    for blk in blocks:
        dt = min(_timed(lambda blk=blk: minsum_numba(maps, None, blk)) for _ in range(2))
        print(f"block {blk}: {dt:.2f} s, {flops / dt / 1e9:.1f} GFLOP/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds, for CI)")
    ap.add_argument("--pairs", type=int, default=2000, help="pairs timed for the loop")
    ap.add_argument("--sweep", action="store_true", help="also sweep numba block sizes")
    args = ap.parse_args()
    threads = numba.get_num_threads()
    print(f"threads: numba {threads}, torch {torch.get_num_threads()}")
    peak_start = machine_peak()
    sizes = (
        [("2-D", (300, 128, 128)), ("3-D", (80, 48, 48, 48))]
        if args.quick
        else [("2-D", (1000, 224, 224)), ("3-D", (200, 64, 64, 64))]
    )
    pairs = min(args.pairs, 500) if args.quick else args.pairs
    rows = [(name, bench(name, shape, pairs)) for name, shape in sizes]
    peak_end = machine_peak()
    s_peak, r_peak = max(peak_start[0], peak_end[0]), max(peak_start[1], peak_end[1])
    print(
        f"\nmachine min+add rate, in-cache numba kernels, {threads} threads, best of a run "
        f"before and after the benchmark: streaming (2 loads per min+add) {s_peak:.1f} "
        f"GFLOP/s [{peak_start[0]:.1f} / {peak_end[0]:.1f}]; register-resident (1 load per "
        f"8 min+add) {r_peak:.1f} GFLOP/s [{peak_start[1]:.1f} / {peak_end[1]:.1f}]"
    )
    for name, row in rows:
        gf = row["flops"] / row["numba"] / 1e9
        print(
            f"{name} numba blocked: {row['loop'] / row['numba']:.1f}× the loop, "
            f"{row['torch'] / row['numba']:.1f}× torch.cdist, "
            f"{row['numba-simple'] / row['numba']:.1f}× the simple prange kernel; "
            f"{gf:.1f} GFLOP/s = {gf / s_peak:.2f} × streaming rate, "
            f"{gf / r_peak:.2f} × register-resident rate"
        )
    if args.sweep:
        for _, shape in sizes:
            sweep(shape, [(24, 24, 1024), (24, 24, 2048), (48, 48, 2048), (24, 24, 4096)])


if __name__ == "__main__":
    main()
