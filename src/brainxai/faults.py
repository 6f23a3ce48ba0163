"""Planted bad input: known faults added to a generated Kaggle-layout tree.

Real data sets contain broken files; the embedded one should too, so that every
study run exercises quarantine end to end and the data card shows that
``ingested + quarantined == found`` with non-zero quarantine. Each fault is
planted from an existing good image, deterministically from the seed, and
recorded in ``faults.csv`` (kept beside, not inside, the image tree) with the
quarantine reason ingestion must give it.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from brainxai.atomic import atomic_open, atomic_path, copy_atomic, is_temp, write_bytes_atomic

#: fault kind -> quarantine reason expected from ingestion
EXPECTED_REASON: dict[str, str] = {
    "truncated": "truncated",
    "corrupt": "decode_error",
    "empty": "empty_file",
    "unknown_label": "unknown_label",
    "duplicate": "duplicate",
    "conflicting_duplicate": "conflicting_labels",
}

#: A class folder that is not one of the 17 (the public set has no pituitary class).
UNKNOWN_FOLDER = "Pituitary T1"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Fault:
    kind: str
    path: str  # posix, relative to the image root
    source: str  # the good image it was made from
    expected_reason: str


def _images(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and not is_temp(p)
    )


def plant_faults(root: Path, counts: Mapping[str, int], seed: int) -> list[Fault]:
    """Add ``counts[kind]`` faulty files of each kind under ``root``; return what was planted.

    ``conflicting_duplicate`` copies an image into a different class folder, so
    both copies (the original and the copy) end up quarantined; the fault list
    records the copy.
    """
    unknown = set(counts) - set(EXPECTED_REASON)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    images = _images(root)
    folders = sorted({p.parent for p in images})
    if not images:
        raise FileNotFoundError(f"no images under {root} to plant faults from")
    planted: list[Fault] = []
    used: set[Path] = set()
    for kind in sorted(counts):
        for i in range(int(counts[kind])):
            candidates = [p for p in images if p not in used]
            src = candidates[int(rng.integers(len(candidates)))]
            used.add(src)
            data = src.read_bytes()
            name = f"fault-{kind}-{i}{src.suffix}"
            if kind == "truncated":
                dest = src.parent / name
                write_bytes_atomic(dest, data[: len(data) // 2])
            elif kind == "corrupt":
                dest = src.parent / name
                write_bytes_atomic(
                    dest, rng.integers(0, 256, size=len(data), dtype=np.uint8).tobytes()
                )
            elif kind == "empty":
                dest = src.parent / name
                write_bytes_atomic(dest, b"")
            elif kind == "unknown_label":
                dest = root / UNKNOWN_FOLDER / name
                dest.parent.mkdir(exist_ok=True)
                # mirrored, so it is a new image rather than a duplicate of its source
                with Image.open(src) as im, atomic_path(dest) as tmp:
                    im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp)
            elif kind == "duplicate":
                dest = src.parent / name
                copy_atomic(src, dest)
            else:  # conflicting_duplicate
                others = [f for f in folders if f != src.parent]
                dest = others[int(rng.integers(len(others)))] / name
                copy_atomic(src, dest)
            planted.append(
                Fault(kind, dest.relative_to(root).as_posix(), src.relative_to(root).as_posix(),
                      EXPECTED_REASON[kind])
            )  # fmt: skip
    return planted


def write_faults(faults: list[Fault], path: Path) -> Path:
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "path", "source", "expected_reason"])
        for f in faults:
            w.writerow([f.kind, f.path, f.source, f.expected_reason])
    return path


def raw_nifti(
    path: Path, srow: np.ndarray, shape: tuple[int, ...] = (12, 12, 12), data: bytes | None = None
) -> Path:
    """A NIfTI-1 file written field by field (sform rows ``srow``, no qform), so any affine -
    singular, NaN - can be stored; ``data`` overrides the voxel bytes (e.g. fewer than the
    header declares). Gzipped when ``path`` ends in ``.gz``."""
    import nibabel as nib

    h = nib.Nifti1Header()
    h.set_data_shape(shape)
    h.set_data_dtype(np.float32)
    h["pixdim"][1:4] = 1.0
    h["qform_code"], h["sform_code"] = 0, 1
    h["srow_x"], h["srow_y"], h["srow_z"] = srow[0], srow[1], srow[2]
    h["vox_offset"] = 352
    if data is None:
        data = (np.random.default_rng(0).random(shape) * 100).astype(np.float32).tobytes()
    blob = h.binaryblock + b"\0" * (352 - len(h.binaryblock)) + data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
    return path
