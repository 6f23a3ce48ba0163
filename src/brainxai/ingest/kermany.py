"""Layout ``kermany``: ``<root>/<train|val|test>/<CLASS>/<image>``.

The class is the folder name (allowed: ``cfg.kermany_classes`` or
``cfg.allowed_labels``, compared case-insensitively); the source split is the top
folder; the subject comes from ``cfg.kermany_subject_regex`` applied to the file
stem (Kermany: ``CNV-1016042-1.jpeg`` -> ``CNV-1016042``), else it is left to the
near-duplicate grouping.
"""

from __future__ import annotations

import re
from pathlib import Path

from brainxai.ingest.common import EXT_2D, Candidate, Discovery, Reject, nfc, walk
from brainxai.ingest.config import IngestConfig

SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def subject_from_name(stem: str, pattern: re.Pattern[str]) -> str:
    m = pattern.match(stem)
    if not m:
        return ""
    return m.group("subject") if "subject" in pattern.groupindex else m.group(m.lastindex or 0)


def discover(root: Path, cfg: IngestConfig, sidecar: Path | None = None) -> Discovery:
    disc = Discovery()
    files, disc.ignored = walk(
        root, EXT_2D, consumed=[sidecar] if sidecar else [], rejects=disc.rejects,
        follow_outside=cfg.follow_symlinks_outside_root,
    )  # fmt: skip
    classes = {nfc(c).upper(): c for c in (cfg.allowed_labels or cfg.kermany_classes)}
    pattern = re.compile(cfg.kermany_subject_regex)
    n_no_subject = 0
    for f in files:
        parts = f.relative_to(root).parts
        if len(parts) != 3 or parts[0].lower() not in SPLIT_NAMES:
            disc.rejects.append(Reject(f, "bad_layout", "expected <train|val|test>/<CLASS>/<file>"))
            continue
        label = classes.get(nfc(parts[1]).upper())
        if label is None:
            disc.rejects.append(Reject(f, "unknown_label", f"class {parts[1]!r} is not allowed"))
            continue
        subject = subject_from_name(f.name.split(".")[0], pattern)
        n_no_subject += not subject
        disc.candidates.append(
            Candidate(
                path=f,
                ndim=2,
                label=label,
                group=label,
                subject=subject,
                subject_source="filename" if subject else "",
                source_split=SPLIT_NAMES[parts[0].lower()],
            )
        )
    if n_no_subject:
        disc.notes.append(f"{n_no_subject} file names did not match the subject pattern")
    return disc
