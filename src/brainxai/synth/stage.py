"""Stage ``synth`` without the orchestrator: the fan-out (:func:`shards`,
:func:`shard_calls`: one call per shard of subjects, then :func:`finalize_call` and, for the
2D export, :func:`faults_call`) and the clean-up of what an older config left
(:func:`prune_stale`). ``flows/synth.py`` runs the calls as cached tasks and logs them;
``brainxai study plan`` counts the shards with :func:`shards`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brainxai.config import params_digest

#: The two exports, in the order they are written.
KINDS = ("cohort3d", "kaggle2d")
#: Cohort-level files ``finalize`` writes beside the subjects (kept by :func:`keep`).
COHORT_SUFFIXES = {".tsv", ".json", ".csv"}


def shards(n: int, size: int) -> list[list[int]]:
    """Subject indices ``0..n-1`` in shards of ``size``."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def _dirs(out_dir: Path, meta_dir: Path | None) -> dict[str, Any]:
    return {"out_dir": str(out_dir), "meta_dir": str(meta_dir) if meta_dir else None}


def shard_calls(
    kind: str, cfg: Mapping[str, Any], seed: int, n: int, size: int, out_dir: Path,
    meta_dir: Path | None,
) -> list[dict[str, Any]]:  # fmt: skip
    """One call per shard of the export ``kind`` (``n`` subjects)."""
    return [
        {"kind": kind, "cfg": cfg, "seed": seed, "indices": idx, **_dirs(out_dir, meta_dir)}
        for idx in shards(n, size)
    ]


def finalize_call(
    kind: str, cfg: Mapping[str, Any], seed: int, results: list[dict[str, Any]],
    out_dir: Path, meta_dir: Path | None,
) -> dict[str, Any]:  # fmt: skip
    """The export's cohort-level files from its shards' results."""
    return {"kind": kind, "cfg": cfg, "seed": seed, "shards": results,
            **_dirs(out_dir, meta_dir)}  # fmt: skip


def faults_call(
    cfg: Mapping[str, Any], seed: int, counts: Mapping[str, int], image_root: Path,
    meta_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    """The planted faults of the 2D export (after generation, before pruning)."""
    return {
        "image_root": str(image_root),
        "counts": counts,
        "seed": seed,
        "faults_csv": str(meta_dir / "faults.csv"),
        "synth_key": params_digest({"synth": cfg, "seed": seed}),
    }


def keep(directory: Path, written: Iterable[Path]) -> set[Path]:
    """The files of ``directory`` this run wrote, and its cohort-level files."""
    return set(written) | {
        f.resolve() for f in directory.glob("*") if f.is_file() and f.suffix in COHORT_SUFFIXES
    }


def prune_stale(directory: Path, keep: set[Path]) -> list[Path]:
    """Delete files under ``directory`` not written by this run (left by an older config)."""
    removed: list[Path] = []
    if not directory.exists():
        return removed
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f.resolve() not in keep:
            f.unlink()
            removed.append(f)
    for d in sorted((d for d in directory.rglob("*") if d.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return removed


def metrics(summary: Mapping[str, Any], seconds: float) -> dict[str, float]:
    return {
        "synth.subjects_3d": summary["cohort3d"]["subjects"],
        "synth.subjects_2d": summary["kaggle2d"]["subjects"],
        "synth.images_2d": summary["kaggle2d"]["images"],
        "synth.seconds": seconds,
    }
