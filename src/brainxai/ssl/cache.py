"""Decode once: every pretraining/monitor image as one uint8 memory-mapped array.

JPEG/PNG decoding and resizing dominate a naive SSL input pipeline (lightly-train #271:
25-35 % of training time). Here each image is decoded exactly once - JPEGs in PIL's draft
mode (DCT-domain down-scaling), zero-padded to a square, resized to ``cache_size`` - and
written to ``images.npy`` (``(N, S, S)`` uint8, opened with ``mmap_mode="r"``); the item
table ``index.parquet`` says which row is which image. A file that fails to decode is kept
in the index with ``ok = False`` and its reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from brainxai.atomic import atomic_path, to_parquet_atomic
from brainxai.ssl.volumes import axial_slices

IMAGES = "images.npy"
INDEX = "index.parquet"


def square(im: Image.Image, size: int) -> np.ndarray:
    """Zero-pad a grey image to a centred square, resize to ``size``; uint8 ``(S, S)``."""
    side = max(im.size)
    canvas = Image.new("L", (side, side), 0)
    canvas.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    return np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def decode_2d(path: Path, size: int) -> np.ndarray:
    """Decode a JPEG/PNG (JPEG: draft mode, decoding at >= ``size``) into the cache format."""
    with Image.open(path) as im:
        im.draft("L", (size, size))
        return square(im.convert("L"), size)


@dataclass(frozen=True)
class Cache:
    """An opened cache: ``images`` (memmap, (N, S, S) uint8) and its ``index`` table."""

    images: np.ndarray
    index: pd.DataFrame

    @classmethod
    def open(cls, directory: str | Path) -> Cache:
        d = Path(directory)
        return cls(np.load(d / IMAGES, mmap_mode="r"), pd.read_parquet(d / INDEX))


def fingerprint(items: pd.DataFrame, size: int) -> str:
    """Content id of a cache: the source files' hashes, the slice picks and the size."""
    blob = json.dumps(
        {"size": size, "items": items[["key", "sha256", "slice", "n_slices"]].values.tolist()},
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fill(
    arr: np.ndarray,
    items: pd.DataFrame,
    base: Path,
    size: int,
    workers: int,
    volume_opts: tuple[float, float],
    reasons: list[str],
) -> None:
    """Decode every row of ``items`` into ``arr[row]``; failures go to ``reasons[row]``."""

    def run_2d(i: int) -> None:
        try:
            arr[i] = decode_2d(base / items.at[i, "path"], size)
        except Exception as exc:
            reasons[i] = f"decode_error: {type(exc).__name__}: {exc}"[:300]

    def run_3d(rows: list[int]) -> None:
        first = rows[0]
        try:
            slab, pct = volume_opts
            ims = axial_slices(base / items.at[first, "path"], len(rows), slab, pct)
            for i, im in zip(rows, ims, strict=True):
                arr[i] = square(im, size)
        except Exception as exc:
            for i in rows:
                reasons[i] = f"volume_error: {type(exc).__name__}: {exc}"[:300]

    two_d = [i for i in range(len(items)) if items.at[i, "kind"] == "2d"]
    vols = items[items["kind"] == "3d"].groupby("record_id", sort=True).groups
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run_2d, two_d))
        list(pool.map(run_3d, [sorted(v.tolist()) for v in vols.values()]))


def build_cache(
    items: pd.DataFrame,
    base_dir: str | Path,
    out_dir: str | Path,
    size: int,
    workers: int = 2,
    volume_opts: tuple[float, float] = (0.6, 99.5),
) -> dict[str, object]:
    """Decode ``items`` (columns ``key, path, kind, slice, n_slices``) into ``out_dir``.

    2D rows are decoded one file each; 3D rows of one volume share one volume load.
    Returns counts: ``n`` = ``ok`` + ``failed`` and the failures' reasons.
    """
    base = Path(base_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = items.reset_index(drop=True)
    reasons: list[str] = [""] * len(items)
    # The memmap is filled under a temporary name and renamed once flushed and fsync-ed:
    # a killed build never leaves a half-filled images.npy behind.
    with atomic_path(out / IMAGES) as tmp:
        arr = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(items), size, size)
        )
        _fill(arr, items, base, size, workers, volume_opts, reasons)
        arr.flush()
        del arr
    index = items.assign(row=np.arange(len(items)), ok=[r == "" for r in reasons], reason=reasons)
    to_parquet_atomic(index, out / INDEX, index=False)
    failed = index[~index["ok"]]
    return {
        "n": len(index),
        "ok": int(index["ok"].sum()),
        "failed": len(failed),
        "failures": failed[["key", "reason"]].to_dict("records"),
        "bytes": int(len(items) * size * size),
    }
