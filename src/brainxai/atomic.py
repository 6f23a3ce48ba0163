"""Atomic file writes: a reader sees the complete new file or the old one, never a part.

Every stage output goes through :func:`atomic_path`: the writer writes a temporary
file in the *same directory* (so the rename never crosses a file system), the file is
flushed and ``fsync``-ed, then ``os.replace``-d over the target and the directory is
``fsync``-ed (POSIX). An exception inside the block removes the temporary file and
leaves the old target untouched; a killed process (SIGKILL, OOM, power loss) leaves at
most a stray temporary file, never a truncated target.

The temporary name keeps the target's ending last, because many writers choose the
format from it (``nib.save``, ``sitk.WriteImage``, ``fig.savefig``, ``np.save``)::

    sub-01_T1w.nii.gz -> .sub-01_T1w.nii.gz.3f9c2a1b7d4e.tmp.nii.gz

It starts with a dot (hidden; the ingest walkers skip dot files) and contains
``.tmp.``; :func:`is_temp` recognises it and :func:`remove_stale_temps` removes the
leftovers of killed runs.

``BRAINXAI_FSYNC=0`` skips the ``fsync`` calls (the rename stays atomic with respect to
crashed *processes*, not to a crashed machine) - for throw-away test trees only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Compression endings kept together with the ending before them (``.nii.gz``).
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4")
_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[^/]*)?$")
_MAX_NAME = 255


def _fsync_enabled() -> bool:
    return os.environ.get("BRAINXAI_FSYNC", "1").strip().lower() not in ("0", "false", "no")


def ending(name: str) -> str:
    """The part of ``name`` that selects a file format: ``.nii.gz``, ``.parquet``, ``""``."""
    suffixes = Path(name).suffixes
    if not suffixes:
        return ""
    if suffixes[-1].lower() in COMPRESSED and len(suffixes) >= 2:
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1]


def temp_path(path: str | Path) -> Path:
    """A fresh temporary sibling of ``path`` that keeps its ending last."""
    path = Path(path)
    end = ending(path.name)
    token = secrets.token_hex(6)
    tail = f".{token}.tmp{end}"
    stem = path.name[: max(1, _MAX_NAME - len(tail) - 1)]
    return path.with_name(f".{stem}{tail}")


def is_temp(path: str | Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_path` (e.g. left by a kill)."""
    return bool(_TEMP.match(Path(path).name))


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s data to stable storage."""
    if not _fsync_enabled():
        return
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where unsupported)."""
    if not _fsync_enabled() or os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path, synced: bool = False) -> None:
    if not tmp.exists():
        raise FileNotFoundError(f"the writer did not create {tmp} (for {path})")
    if not synced:
        fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # pragma: no cover - best effort
        pass


@contextmanager
def atomic_path(path: str | Path, *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; commit it on a clean exit.

    The block must create the file at the yielded path (any writer, any format). On a
    clean exit the file is fsync-ed and renamed over ``path``; on an exception it is
    removed and ``path`` keeps its old content (or stays absent).
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", *, encoding: str | None = None, **kwargs: Any
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, committed atomically when the block ends."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes new files only (mode 'w'/'wb'), not {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode.replace("w", "x", 1), encoding=encoding, **kwargs) as fh:
            yield fh
            fh.flush()
            if _fsync_enabled():
                os.fsync(fh.fileno())
        _commit(tmp, path, synced=True)
    except BaseException:
        _discard(tmp)
        raise


def write_atomic(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` and commit ``tmp`` to ``path``; returns ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def save_json_atomic(
    obj: Any, path: str | Path, *, indent: int | None = 2, sort_keys: bool = True, **kwargs: Any
) -> Path:
    """``json.dumps(obj)`` + newline, written atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, **kwargs)
    return write_text_atomic(path, text + "\n")


def save_nifti_atomic(img: Any, path: str | Path) -> Path:
    """``nib.save(img, path)`` atomically (the ending picks ``.nii``/``.nii.gz``)."""
    import nibabel as nib

    return write_atomic(path, lambda tmp: nib.save(img, str(tmp)))


def to_parquet_atomic(df: Any, path: str | Path, **kwargs: Any) -> Path:
    return write_atomic(path, lambda tmp: df.to_parquet(tmp, **kwargs))


def to_csv_atomic(df: Any, path: str | Path, **kwargs: Any) -> Path:
    return write_atomic(path, lambda tmp: df.to_csv(tmp, **kwargs))


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    import torch

    return write_atomic(path, lambda tmp: torch.save(obj, tmp))


def savefig_atomic(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig(path)``; the format comes from ``path``'s ending unless given."""
    fmt = ending(Path(path).name).lstrip(".").lower()
    if not fmt:  # the temporary name ends in ".tmp": name matplotlib's default format
        import matplotlib

        fmt = str(matplotlib.rcParams["savefig.format"])
    kwargs.setdefault("format", fmt)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """``shutil.copyfile(src, dst)`` atomically."""
    return write_atomic(dst, lambda tmp: shutil.copyfile(src, tmp))


def remove_stale_temps(root: str | Path) -> list[Path]:
    """Delete temporary files under ``root`` (recursively) left by killed writers.

    Only call this when no writer is running under ``root``; returns what was removed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    gone = []
    for p in sorted(root.rglob(".*.tmp*")):
        if p.is_file() and is_temp(p):
            _discard(p)
            gone.append(p)
    return gone


def remove_stale_temps_of(*targets: str | Path) -> list[Path]:
    """Delete the temporary files of these target files (``.<name>.<token>.tmp<ending>``
    beside each) left by killed writers; call it only when no writer of them is running."""
    gone = []
    for target in map(Path, targets):
        if not target.parent.is_dir():
            continue
        for p in sorted(target.parent.glob(f".{target.name}.*.tmp*")):
            if p.is_file() and is_temp(p):
                _discard(p)
                gone.append(p)
    return gone
