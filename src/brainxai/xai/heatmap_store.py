"""Heatmaps on disk: one ``.npz`` per (checkpoint, method), float16 maps.

Arrays in the file (``np.load(..., allow_pickle=False)`` reads them):

* ``maps`` (N, *spatial) float16, per-map min-max normalised to [0, 1];
* ``record_ids`` (N,) unicode — the manifest rows the maps belong to;
* ``labels`` (N,) int64 (−1 when unknown), ``targets`` (N,) int64 explained class,
  ``probs`` (N, K) float32 of the checkpoint;
* ``meta`` — a JSON string: checkpoint id, method, epoch, target layers, free extras.

float16 keeps 11 significant bits: ≤ 2⁻¹¹ relative error on [0, 1] maps, far below the
differences the C-Score or the localisation metrics resolve.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.atomic import atomic_open

FORMAT_VERSION = 1


@dataclass(frozen=True)
class HeatmapRecord:
    """One (checkpoint, method) set of heatmaps with what is needed to score them."""

    checkpoint_id: str
    method: str
    maps: np.ndarray
    record_ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    epoch: int | None = None
    layers: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.maps)
        if self.maps.ndim not in (3, 4):
            raise ValueError(f"maps must be (N, H, W) or (N, D, H, W), got {self.maps.shape}")
        for name in ("record_ids", "labels", "targets"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")
        if self.probs.ndim != 2 or len(self.probs) != n:
            raise ValueError(f"probs must be ({n}, K), got {self.probs.shape}")


def heatmap_filename(checkpoint_id: str, method: str) -> str:
    """File name for a (checkpoint, method): ``<checkpoint>__<method>.npz`` (``+`` → ``pp``)."""
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", s.replace("+", "p")) for s in (checkpoint_id, method)]
    return f"{safe[0]}__{safe[1]}.npz"


def save_heatmaps(path: str | Path, record: HeatmapRecord, compress: bool = False) -> Path:
    """Write ``record`` to ``path`` atomically (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "checkpoint_id": record.checkpoint_id,
        "method": record.method,
        "epoch": record.epoch,
        "layers": list(record.layers),
        "extra": record.extra,
    }
    arrays = {
        "maps": np.asarray(record.maps, dtype=np.float16),
        "record_ids": np.asarray(record.record_ids).astype(str),
        "labels": np.asarray(record.labels, dtype=np.int64),
        "targets": np.asarray(record.targets, dtype=np.int64),
        "probs": np.asarray(record.probs, dtype=np.float32),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    with atomic_open(path, "wb") as fh:
        _write_npz(fh, arrays, compress)
    return path


def _write_npz(fh: Any, arrays: dict[str, np.ndarray], compress: bool) -> None:
    """``np.savez`` with a fixed member timestamp: the same maps give the same bytes (and
    sha256), so a recomputed heatmap file leaves the tasks keyed on it cached."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fh, "w", compression=method, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def load_heatmaps(path: str | Path) -> HeatmapRecord:
    """Read a file written by :func:`save_heatmaps` (maps stay float16)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown heatmap format {meta.get('format_version')}")
        return HeatmapRecord(
            checkpoint_id=meta["checkpoint_id"],
            method=meta["method"],
            maps=z["maps"],
            record_ids=z["record_ids"],
            labels=z["labels"],
            probs=z["probs"],
            targets=z["targets"],
            epoch=meta["epoch"],
            layers=tuple(meta["layers"]),
            extra=meta["extra"],
        )
