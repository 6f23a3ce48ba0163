"""All-pairs soft-IoU between heatmaps (C-Score paper 004, Eq. 2).

``sIoU(A, B) = Σ min(A, B) / Σ max(A, B)`` element-wise over all pixels/voxels, and
0 when both maps are all-zero. Because ``min + max = A + B``,
``Σ max = S_A + S_B − M`` with ``M = Σ min(A, B)`` and ``S = Σ A``, so one all-pairs
*min-sum* matrix ``M`` gives every pair: ``sIoU = M / (S_A + S_B − M)``.

Paths (all return float64 matrices; maps are assumed non-negative):

* ``loop`` — the reference: a numpy loop over pairs (Eq. 2 taken literally).
* ``numba`` — fused, cache-blocked CPU kernel: tasks are (row-block, column-block)
  tiles of the output run in parallel; inside a task the pixel axis is cut into
  chunks of ``block[2]`` pixels so the task's rows stay in L2, and a 3 × 3 register
  micro-tile reads 6 pixel vectors for 9 min+add pairs. Sums are float32 inside a
  pixel chunk and float64 across chunks (max error vs a float64 loop ≈ 1e-7).
* ``numba-simple`` — a plain ``prange`` min-sum (one pair at a time), kept as the
  comparison point of the benchmark.
* ``torch`` — blocked ``torch.cdist(p=1)`` (``Σ|a − b| = S_a + S_b − 2M``), chunked
  over rows and pixels (float32 cdist per 1,024-pixel chunk keeps the cancellation
  small, float64 across chunks); the GPU path, and its CPU twin (same code, tested on
  CPU; slow there). No Triton kernel yet.

``method="auto"`` takes ``numba`` on CPU and ``torch`` on any other device.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numba import njit, prange

from brainxai.xai._arrays import flatten_maps, is_torch, to_numpy

#: Default numba tiling: (rows per task, columns per task, pixels per chunk).
DEFAULT_BLOCK: tuple[int, int, int] = (24, 24, 2048)
#: Default torch tiling: (rows per cdist call, pixels per chunk).
DEFAULT_TORCH_BLOCK: tuple[int, int] = (256, 1024)

METHODS = ("auto", "loop", "numba", "numba-simple", "torch")

#: Serialises the parallel numba kernels: numba's fallback "workqueue" threading layer
#: aborts on concurrent launches from several Python threads (e.g. a thread task runner).
_KERNEL_LOCK = threading.Lock()


def minsum_to_soft_iou(m: np.ndarray, s_a: np.ndarray, s_b: np.ndarray) -> np.ndarray:
    """sIoU = M / (S_a + S_b − M); 0 where the union is 0 (both maps all-zero)."""
    union = s_a[:, None] + s_b[None, :] - m
    out = np.zeros_like(m, dtype=np.float64)
    np.divide(m, union, out=out, where=union > 0)
    return np.clip(out, 0.0, 1.0, out=out)


def soft_iou(a: Any, b: Any) -> float:
    """Soft-IoU of two maps of equal shape (Eq. 2); 0 when both are all-zero."""
    x = to_numpy(a, dtype=np.float64).ravel()
    y = to_numpy(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
    den = float(np.maximum(x, y).sum())
    return float(np.minimum(x, y).sum()) / den if den > 0 else 0.0


def paired_soft_iou(maps_a: Any, maps_b: Any) -> np.ndarray:
    """Soft-IoU of ``maps_a[i]`` with ``maps_b[i]`` for every i -> (N,)."""
    a = flatten_maps(maps_a, np.float64)
    b = flatten_maps(maps_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    num = np.minimum(a, b).sum(axis=1)
    den = np.maximum(a, b).sum(axis=1)
    out = np.zeros(len(a))
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- loop


def soft_iou_loop(maps_a: Any, maps_b: Any | None = None) -> np.ndarray:
    """Reference pairwise numpy loop (Eq. 2 literally), in the inputs' float dtype."""
    a = to_float_2d(maps_a)
    sym = maps_b is None
    b = a if sym else to_float_2d(maps_b)
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    for i in range(len(a)):
        for j in range(i if sym else 0, len(b)):
            den = np.maximum(a[i], b[j]).sum()
            val = float(np.minimum(a[i], b[j]).sum() / den) if den > 0 else 0.0
            out[i, j] = val
            if sym:
                out[j, i] = val
    return out


def to_float_2d(maps: Any) -> np.ndarray:
    """Flatten to (N, P), keeping float64 inputs float64 and making all else float32."""
    arr = np.asarray(maps.detach().cpu().numpy() if is_torch(maps) else maps)
    return flatten_maps(arr, np.float64 if arr.dtype == np.float64 else np.float32)


# --------------------------------------------------------------------------- numba


@njit(cache=True, fastmath=True, parallel=True)
def _minsum_simple(a: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Plain prange min-sum: one pair at a time, float32 accumulation (baseline)."""
    n, p = a.shape
    m = np.zeros((n, n), np.float64)
    for i in prange(n):
        x = a[i]
        for j in range(i, n):
            y = a[j]
            s = np.float32(0.0)
            for k in range(p):
                u = x[k]
                v = y[k]
                s += u if u < v else v
            m[i, j] = s
            m[j, i] = s
    return m


@njit(cache=True, fastmath=True, inline="always")
def _micro_3x3(a, b, i, j, ihi, jhi, k0, k1):  # pragma: no cover - compiled
    """9 float32 min-sums of rows i..i+2 of ``a`` with rows j..j+2 of ``b`` over [k0, k1).

    Rows past the tile edge are clamped to the last row (results discarded by the
    caller), so no remainder code path is needed. Row slices start at 0 so LLVM
    sees non-negative indices and vectorises the pixel loop without gathers.
    """
    a0 = a[min(i, ihi - 1), k0:k1]
    a1 = a[min(i + 1, ihi - 1), k0:k1]
    a2 = a[min(i + 2, ihi - 1), k0:k1]
    b0 = b[min(j, jhi - 1), k0:k1]
    b1 = b[min(j + 1, jhi - 1), k0:k1]
    b2 = b[min(j + 2, jhi - 1), k0:k1]
    z = np.float32(0.0)
    s00 = z
    s01 = z
    s02 = z
    s10 = z
    s11 = z
    s12 = z
    s20 = z
    s21 = z
    s22 = z
    for k in range(k1 - k0):
        x0 = a0[k]
        x1 = a1[k]
        x2 = a2[k]
        y = b0[k]
        s00 += x0 if x0 < y else y
        s10 += x1 if x1 < y else y
        s20 += x2 if x2 < y else y
        y = b1[k]
        s01 += x0 if x0 < y else y
        s11 += x1 if x1 < y else y
        s21 += x2 if x2 < y else y
        y = b2[k]
        s02 += x0 if x0 < y else y
        s12 += x1 if x1 < y else y
        s22 += x2 if x2 < y else y
    return (s00, s01, s02, s10, s11, s12, s20, s21, s22)


@njit(cache=True, fastmath=True, parallel=True)
def _minsum_blocked(a, b, sym, bi, bj, bk):  # pragma: no cover - compiled
    """M[i, j] = Σ_k min(a[i, k], b[j, k]); with ``sym`` only tiles touching j ≥ i."""
    na, p = a.shape
    nb = b.shape[0]
    m = np.zeros((na, nb), np.float64)
    nti = (na + bi - 1) // bi
    ntj = (nb + bj - 1) // bj
    tasks = np.empty((nti * ntj, 2), np.int64)
    ntask = 0
    for ti in range(nti):
        for tj in range(ntj):
            if sym and tj * bj + bj <= ti * bi:
                continue
            tasks[ntask, 0] = ti
            tasks[ntask, 1] = tj
            ntask += 1
    for t in prange(ntask):
        ilo = tasks[t, 0] * bi
        ihi = min(ilo + bi, na)
        jlo = tasks[t, 1] * bj
        jhi = min(jlo + bj, nb)
        for k0 in range(0, p, bk):
            k1 = min(k0 + bk, p)
            for i in range(ilo, ihi, 3):
                jstart = jlo
                if sym:
                    while jstart + 3 <= i:
                        jstart += 3
                for j in range(jstart, jhi, 3):
                    r = _micro_3x3(a, b, i, j, ihi, jhi, k0, k1)
                    for u in range(3):
                        if i + u < ihi:
                            for v in range(3):
                                if j + v < jhi:
                                    m[i + u, j + v] += r[u * 3 + v]
    if sym:
        for i in range(na):
            for j in range(i):
                m[i, j] = m[j, i]
    return m


@njit(cache=True, fastmath=True, parallel=True)
def _row_sums_f32(a, bk):  # pragma: no cover - compiled
    """Σ_k a[i, k] per row: float32 within chunks of ``bk`` pixels, float64 across."""
    n, p = a.shape
    out = np.zeros(n, np.float64)
    for i in prange(n):
        tot = 0.0
        for k0 in range(0, p, bk):
            x = a[i, k0 : min(k0 + bk, p)]
            s = np.float32(0.0)
            for k in range(x.shape[0]):
                s += x[k]
            tot += s
        out[i] = tot
    return out


def minsum_numba(
    maps_a: Any, maps_b: Any | None = None, block: tuple[int, int, int] | None = None
) -> np.ndarray:
    """All-pairs min-sum matrix with the cache-blocked numba kernel (float32 inputs)."""
    bi, bj, bk = block or DEFAULT_BLOCK
    if min(bi, bj, bk) < 1:
        raise ValueError(f"block sizes must be positive, got {(bi, bj, bk)}")
    a = flatten_maps(maps_a, np.float32)
    b = a if maps_b is None else flatten_maps(maps_b, np.float32)
    _check_same_p(a, b)
    with _KERNEL_LOCK:
        if maps_b is None:
            return _minsum_blocked(a, a, True, int(bi), int(bi), int(bk))
        return _minsum_blocked(a, b, False, int(bi), int(bj), int(bk))


def minsum_numba_simple(maps: Any) -> np.ndarray:
    """All-pairs min-sum with the plain one-pair-at-a-time prange kernel (baseline)."""
    a = flatten_maps(maps, np.float32)
    with _KERNEL_LOCK:
        return _minsum_simple(a)


# --------------------------------------------------------------------------- torch


def minsum_torch(
    maps_a: Any,
    maps_b: Any | None = None,
    device: Any = None,
    block: tuple[int, int] | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """All-pairs min-sum via blocked ``torch.cdist(p=1)``: M = (S_a + S_b − L1) / 2.

    Rows are processed ``block[0]`` at a time and pixels ``block[1]`` at a time; the
    per-chunk result is added in float64 so cancellation stays within one chunk.
    ``dtype`` (default float32) is the cdist precision. Runs on CPU or GPU.
    """
    import torch

    rows, pix = block or DEFAULT_TORCH_BLOCK
    dev = torch.device(device) if device is not None else _torch_device(maps_a)
    dt = dtype or torch.float32
    a = _as_torch_2d(maps_a, dev, dt)
    sym = maps_b is None
    b = a if sym else _as_torch_2d(maps_b, dev, dt)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"maps differ in size: {a.shape[1]} vs {b.shape[1]} pixels")
    na, p = a.shape
    acc = torch.zeros((na, b.shape[0]), dtype=torch.float64, device=dev)
    for k0 in range(0, p, pix):
        ak = a[:, k0 : k0 + pix].contiguous()
        bk = ak if sym else b[:, k0 : k0 + pix].contiguous()
        sa = ak.sum(dim=1, dtype=torch.float64)
        sb = sa if sym else bk.sum(dim=1, dtype=torch.float64)
        for i0 in range(0, na, rows):
            i1 = min(i0 + rows, na)
            j0 = i0 if sym else 0  # symmetric: only column blocks j ≥ i0
            l1 = torch.cdist(ak[i0:i1], bk[j0:], p=1).to(torch.float64)
            acc[i0:i1, j0:] += 0.5 * (sa[i0:i1, None] + sb[None, j0:] - l1)
    if sym:
        acc = torch.triu(acc) + torch.triu(acc, diagonal=1).T
    return acc.cpu().numpy()


def _torch_device(x: Any) -> Any:
    import torch

    return x.device if is_torch(x) else torch.device("cpu")


def _as_torch_2d(x: Any, device: Any, dtype: Any) -> Any:
    import torch

    t = x if is_torch(x) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    return t.reshape(t.shape[0], -1).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- dispatch


def _check_same_p(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"maps differ in size: {a.shape[1]} vs {b.shape[1]} pixels")


def _resolve_method(maps: Any, device: Any, method: str) -> tuple[str, Any]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if device is None:
        device = str(maps.device) if is_torch(maps) else "cpu"
    if method == "auto":
        method = "numba" if str(device).startswith("cpu") else "torch"
    return method, device


def _row_sums(maps: Any, method: str) -> np.ndarray:
    if method == "loop":
        return to_float_2d(maps).sum(axis=1, dtype=np.float64)
    a = flatten_maps(maps, np.float32)
    with _KERNEL_LOCK:
        return _row_sums_f32(a, 256)


def pairwise_soft_iou(
    maps: Any,
    device: Any = None,
    block: tuple[int, ...] | None = None,
    method: str = "auto",
) -> np.ndarray:
    """(N, N) soft-IoU matrix of a batch of maps (N, H, W) or (N, D, H, W) (Eq. 2).

    ``method="auto"`` picks the numba kernel on CPU and blocked cdist on a GPU
    (``device`` defaults to the tensor's device, else CPU). ``block`` is
    (rows, cols, pixels) for numba and (rows, pixels) for torch. The diagonal is 1
    (0 for an all-zero map). Returns float64 numpy.
    """
    method, device = _resolve_method(maps, device, method)
    if method == "loop":
        return soft_iou_loop(maps)
    if method == "numba":
        m = minsum_numba(maps, None, block)  # type: ignore[arg-type]
    elif method == "numba-simple":
        m = minsum_numba_simple(maps)
    else:
        m = minsum_torch(maps, None, device, block)  # type: ignore[arg-type]
    s = _row_sums(maps, method)
    out = minsum_to_soft_iou(m, s, s)
    np.fill_diagonal(out, (s > 0).astype(np.float64))  # sIoU(A, A) = 1 exactly
    return out


def cross_soft_iou(
    maps_a: Any,
    maps_b: Any,
    device: Any = None,
    block: tuple[int, ...] | None = None,
    method: str = "auto",
) -> np.ndarray:
    """(N_a, N_b) soft-IoU of every map of ``maps_a`` with every map of ``maps_b``."""
    method, device = _resolve_method(maps_a, device, method)
    if method == "loop":
        return soft_iou_loop(maps_a, maps_b)
    if method == "numba":
        m = minsum_numba(maps_a, maps_b, block)  # type: ignore[arg-type]
    elif method == "torch":
        m = minsum_torch(maps_a, maps_b, device, block)  # type: ignore[arg-type]
    else:
        raise ValueError("numba-simple has no cross-set variant")
    return minsum_to_soft_iou(m, _row_sums(maps_a, method), _row_sums(maps_b, method))
