"""The configured source list (``params.ingest.sources``), checked before any work.

:func:`check_sources` rejects what would otherwise fail late or silently: an unknown
layout, a root that does not exist (it used to ingest 0 files with exit code 0), two
sources with one name (their per-source tables overwrite each other), a name that is
not a safe file name, a sidecar/labels file that does not exist, unknown keys.
:func:`dvc_uncovered` lists the source paths that the DVC ``ingest`` stage does not
depend on (a user-added source must re-run the stage when it changes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from brainxai.ingest.config import LAYOUTS

SOURCE_KEYS: frozenset[str] = frozenset({"name", "layout", "root", "sidecar", "labels_csv"})
PATH_KEYS: tuple[str, ...] = ("root", "sidecar", "labels_csv")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SourceError(ValueError):
    """The source list is not usable; the message lists every problem."""


def check_sources(sources: Sequence[Mapping[str, Any]], base_dir: Path | str) -> None:
    """Raise :class:`SourceError` naming every problem of ``sources`` (paths relative
    to ``base_dir``); return quietly when they can be ingested."""
    base = Path(base_dir)
    problems: list[str] = []
    if not sources:
        problems.append("no sources configured (params.ingest.sources is empty)")
    seen: dict[str, int] = {}
    for i, src in enumerate(sources):
        where = f"source #{i + 1}"
        if not isinstance(src, Mapping):
            problems.append(f"{where}: not a mapping")
            continue
        name = str(src.get("name", "") or "")
        where = f"source #{i + 1} ({name or 'no name'})"
        unknown = sorted(set(src) - SOURCE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {unknown}; valid: {sorted(SOURCE_KEYS)}")
        if not _NAME.match(name):
            problems.append(f"{where}: name must match {_NAME.pattern}")
        elif name in seen:
            problems.append(f"{where}: duplicate name (also source #{seen[name] + 1})")
        else:
            seen[name] = i
        layout = src.get("layout")
        if layout not in LAYOUTS:
            problems.append(f"{where}: layout {layout!r} is not one of {list(LAYOUTS)}")
        root = src.get("root")
        if not root:
            problems.append(f"{where}: no root")
        elif not (base / str(root)).is_dir():
            problems.append(f"{where}: root {root} is not an existing directory")
        for key in ("sidecar", "labels_csv"):
            if src.get(key) and not (base / str(src[key])).is_file():
                problems.append(f"{where}: {key} {src[key]} is not an existing file")
    if problems:
        raise SourceError("invalid params.ingest.sources:\n  - " + "\n  - ".join(problems))


def _norm(p: str) -> str:
    return os.path.normpath(str(p)).replace(os.sep, "/").strip("/")


def _covered(path: str, deps: Sequence[str]) -> bool:
    p = _norm(path)
    return any(p == d or p.startswith(d + "/") for d in map(_norm, deps))


def dvc_uncovered(
    sources: Sequence[Mapping[str, Any]], dvc_yaml: Path | str, stage: str = "ingest"
) -> list[str]:
    """Source paths (root, sidecar, labels_csv) not at or under a dep of ``stage``.

    A dep written with DVC's ``${...}`` templating cannot be resolved here and covers
    nothing; an absolute source path must be listed as it is.
    """
    spec = yaml.safe_load(Path(dvc_yaml).read_text()) or {}
    st = (spec.get("stages") or {}).get(stage)
    if st is None:
        raise KeyError(f"{dvc_yaml} has no stage {stage!r}")
    deps = [str(d) for d in st.get("deps", []) if isinstance(d, str) and "${" not in d]
    return [
        str(src[k])
        for src in sources
        for k in PATH_KEYS
        if src.get(k) and not _covered(str(src[k]), deps)
    ]


__all__ = ["PATH_KEYS", "SOURCE_KEYS", "SourceError", "check_sources", "dvc_uncovered"]
