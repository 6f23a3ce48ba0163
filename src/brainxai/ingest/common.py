"""Shared pieces of the layout scanners: candidates, rejects, file walking, pools."""

from __future__ import annotations

import errno
import hashlib
import math
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

#: File endings that count as 2D images (lower-case).
EXT_2D: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
#: File endings that count as NIfTI volumes.
EXT_NIFTI: tuple[str, ...] = (".nii", ".nii.gz")

#: Quarantine reasons (``quarantine.reason``), short and machine readable.
REASONS: dict[str, str] = {
    "empty_file": "0-byte file",
    "decode_error": "not decodable as an image of its kind",
    "truncated": "file ends before the image data does",
    "bad_shape": "too small, wrong number of dimensions or multi-frame",
    "bad_spacing": "voxel spacing not finite/positive, or DICOM slices not evenly spaced",
    "nonfinite": "NaN or infinite intensities",
    "constant_image": "every pixel/voxel has the same value (blank image)",
    "unknown_label": "label missing or not in the allowed vocabulary",
    "mislabelled": "metadata (sidecar) contradicts the folder label",
    "bad_layout": "file is not where/named as the layout expects",
    "duplicate": "byte-identical copy of a kept file with the same label",
    "conflicting_labels": "byte-identical copies carry different labels (all removed)",
    "source_leakage": "duplicate/subject of a file in a more held-out source split",
    "bad_affine": "voxel-to-world affine not finite, singular or inconsistent with the voxel size",
    "too_large": "declared image size (header shape x dtype) exceeds the configured cap",
    "symlink_loop": "symbolic link that resolves to itself (loop); not followed",
    "dangling_symlink": "symbolic link whose target does not exist",
    "symlink_outside_root": "symbolic link to a file outside the source root (not followed)",
}

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Candidate:
    """A file that passed the layout checks and still has to be validated."""

    path: Path
    ndim: int  # expected: 2 (image) or 3 (volume)
    label: str
    group: str
    sequence: str = ""
    subject: str = ""
    subject_source: str = ""
    session: str = ""
    series: str = ""
    source_split: str = ""
    mask: Path | None = None


@dataclass
class Reject:
    """A found file that goes to quarantine."""

    path: Path
    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {self.reason!r}")


@dataclass
class Discovery:
    """What a layout scanner found: ``len(candidates) + len(rejects) == found``."""

    candidates: list[Candidate] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    ignored: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.candidates) + len(self.rejects)


class Rejected(Exception):
    """Raised by validators; carries a quarantine reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def has_ext(name: str, exts: Sequence[str]) -> bool:
    low = name.lower()
    return any(low.endswith(e) for e in exts)


def _link_problem(p: Path, real_root: str, follow_outside: bool) -> tuple[str, str] | None:
    """Why a symbolic link ``p`` must not be read, or None when it may be."""
    try:
        target = os.path.realpath(p, strict=True)
    except OSError as exc:  # ELOOP (loop) or ENOENT (dangling)
        if getattr(exc, "errno", None) == errno.ELOOP:  # not the message: paths hold words
            return "symlink_loop", "link loop"
        return "dangling_symlink", "target does not exist"
    except RuntimeError:  # older Pythons report loops this way
        return "symlink_loop", "link loop"
    if not follow_outside and os.path.commonpath([real_root, target]) != real_root:
        return "symlink_outside_root", "target outside the source root"
    return None


def walk(
    root: Path,
    exts: Sequence[str],
    skip_dirs: Iterable[str] = (),
    consumed: Iterable[Path] = (),
    rejects: list[Reject] | None = None,
    follow_outside: bool = False,
) -> tuple[list[Path], int]:
    """Image files under ``root`` (sorted) and the number of ignored files.

    Hidden directories and ``skip_dirs`` (posix paths relative to root) are not
    entered and count for nothing. Hidden files (``.DS_Store``, AppleDouble ``._x``)
    and files without an image ending count as ignored; ``consumed`` files
    (sidecars, masks) count as neither. Symbolic links with an image ending that
    loop, dangle or (unless ``follow_outside``) point outside ``root`` are appended
    to ``rejects`` (they count as found); without ``rejects`` they are ignored.
    Symlinked directories are never entered (each counts as one ignored entry).
    """
    skip = {s.strip("/") for s in skip_dirs}
    used = {os.path.normcase(os.path.abspath(p)) for p in consumed}
    real_root = os.path.realpath(root)
    images: list[Path] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        keep = []
        for d in sorted(dirnames):
            rel = d if rel_dir == "." else f"{rel_dir}/{d}"
            if (Path(dirpath) / d).is_symlink():
                ignored += 1
            elif not d.startswith(".") and rel not in skip:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if os.path.normcase(os.path.abspath(p)) in used:
                continue
            if name.startswith(".") or not has_ext(name, exts):
                ignored += 1
                continue
            if p.is_symlink():
                problem = _link_problem(p, real_root, follow_outside)
                if problem is not None:
                    if rejects is None:
                        ignored += 1
                    else:
                        rejects.append(Reject(p, *problem))
                    continue
            if not p.is_file():
                ignored += 1
            else:
                images.append(p)
    return sorted(images, key=lambda p: p.as_posix()), ignored


def rel_posix(path: Path, base_dir: Path) -> str:
    """``path`` relative to ``base_dir`` as posix text (``..`` if outside)."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base_dir))).as_posix()


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def record_id(dataset: str, rel_path: str) -> str:
    """Stable id of a manifest row: ``sha256("<dataset>:<relative path>")[:16]``."""
    return hashlib.sha256(f"{dataset}:{rel_path}".encode()).hexdigest()[:16]


def salted_hash(salt: str, value: str, n: int = 16) -> str:
    return hashlib.sha256(f"{salt}\0{value}".encode()).hexdigest()[:n]


def fmt_num(v: float) -> str:
    """Compact number: at most 4 decimals, no trailing zeros (``1``, ``0.9375``)."""
    r = round(float(v), 4)
    return f"{r:.4f}".rstrip("0").rstrip(".") if not r.is_integer() else str(int(r))


def fmt_spacing(zooms: Sequence[float]) -> str:
    return "x".join(fmt_num(z) for z in zooms)


def fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def spacing_ok(zooms: Sequence[float]) -> bool:
    return all(math.isfinite(float(z)) and float(z) > 0 for z in zooms)


def pmap(fn: Callable[[T], R], items: Sequence[T], workers: int, pool: str) -> Iterator[R]:
    """``map`` in order, serially or on a thread/process pool (one file per task)."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    ex_cls = ProcessPoolExecutor if pool == "process" else ThreadPoolExecutor
    with ex_cls(max_workers=workers) as ex:
        yield from ex.map(fn, items, chunksize=8 if pool == "process" else 1)
