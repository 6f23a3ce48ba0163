"""Layout ``bids``: ``sub-*/[ses-*/]anat/sub-*_[ses-*_][ce-gd_]T1w|T2w|FLAIR.nii[.gz]``.

Labels come from ``participants.tsv`` (column ``cfg.bids_label_column``);
``derivatives/``, ``sourcedata/`` and ``code/`` are not scanned for images, but
lesion masks ``<bids_mask_dir>/sub-X/[ses-Y/]anat/sub-X_[ses-Y_]label-lesion_mask.nii[.gz]``
fill ``mask_path``. Sequence: ``T1w`` with any ``ce-`` entity is ``T1C+``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from brainxai.ingest.common import EXT_NIFTI, Candidate, Discovery, Reject, walk
from brainxai.ingest.config import IngestConfig
from brainxai.labels import DIAGNOSES_3D

_EXPECTED = "not sub-*/[ses-*/]anat/sub-*_[ses-*_][ce-*_]T1w|T2w|FLAIR.nii[.gz]"
SKIP_DIRS: tuple[str, ...] = ("derivatives", "sourcedata", "code")
_NAME = re.compile(
    r"^(?P<sub>sub-[A-Za-z0-9]+)(?P<ents>(?:_[a-z]+-[A-Za-z0-9]+)*)_(?P<suffix>T1w|T2w|FLAIR)"
    r"\.nii(?:\.gz)?$"
)
_MASK = re.compile(
    r"^(?P<sub>sub-[A-Za-z0-9]+)(?:_(?P<ses>ses-[A-Za-z0-9]+))?(?:_[a-z]+-[A-Za-z0-9]+)*"
    r"_label-lesion_mask\.nii(?:\.gz)?$"
)


def parse_name(name: str) -> dict[str, str] | None:
    """``{sub, ses, sequence, series}`` of a supported anatomical file name, else None."""
    m = _NAME.match(name)
    if not m:
        return None
    ents = dict(e.split("-", 1) for e in m.group("ents").split("_") if e)
    suffix = m.group("suffix")
    seq = {"T1w": "T1", "T2w": "T2", "FLAIR": "FLAIR"}[suffix]
    if suffix == "T1w" and "ce" in ents:
        seq = "T1C+"
    series = "_".join(f"{k}-{ents[k]}" for k in ("acq", "rec", "run") if k in ents)
    return {
        "sub": m.group("sub"),
        "ses": f"ses-{ents['ses']}" if "ses" in ents else "",
        "sequence": seq,
        "series": series,
    }


def read_participants(path: Path, column: str) -> dict[str, str]:
    """participant_id -> label (lower-case; ``n/a`` and blanks dropped)."""
    if not path.is_file():
        return {}
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "participant_id" not in df.columns or column not in df.columns:
        raise ValueError(f"{path} needs columns 'participant_id' and {column!r}")
    out = {}
    for pid, lab in zip(df["participant_id"], df[column], strict=True):
        lab = str(lab).strip().lower()
        if lab and lab != "n/a":
            pid = str(pid).strip()
            out[pid if pid.startswith("sub-") else f"sub-{pid}"] = lab
    return out


def find_masks(mask_root: Path) -> dict[tuple[str, str], Path]:
    """(sub, ses or "") -> lesion mask file."""
    out: dict[tuple[str, str], Path] = {}
    if mask_root.is_dir():
        for f in sorted(mask_root.rglob("*_mask.nii*")):
            m = _MASK.match(f.name)
            if m:
                out.setdefault((m.group("sub"), m.group("ses") or ""), f)
    return out


def discover(root: Path, cfg: IngestConfig, sidecar: Path | None = None) -> Discovery:
    participants = sidecar or root / "participants.tsv"
    labels = read_participants(participants, cfg.bids_label_column)
    allowed = set(cfg.allowed_labels or DIAGNOSES_3D)
    masks = find_masks(root / cfg.bids_mask_dir)
    disc = Discovery()
    files, disc.ignored = walk(
        root, EXT_NIFTI, skip_dirs=SKIP_DIRS, consumed=[participants], rejects=disc.rejects,
        follow_outside=cfg.follow_symlinks_outside_root,
    )  # fmt: skip
    for f in files:
        parts = f.relative_to(root).parts
        info = parse_name(f.name)
        ok_dirs = (
            info is not None
            and parts[0] == info["sub"]
            and parts[-2] == "anat"
            and len(parts) == (4 if info["ses"] else 3)
            and (not info["ses"] or parts[1] == info["ses"])
        )
        if not ok_dirs or info is None:
            disc.rejects.append(Reject(f, "bad_layout", _EXPECTED))
            continue
        label = labels.get(info["sub"], "")
        if (label or cfg.require_label) and label not in allowed:
            why = f"diagnosis {label!r} not allowed" if label else "no diagnosis given"
            disc.rejects.append(Reject(f, "unknown_label", why))
            continue
        disc.candidates.append(
            Candidate(
                path=f,
                ndim=3,
                label=label,
                group=label,
                sequence=info["sequence"],
                subject=info["sub"],
                subject_source="bids",
                session=info["ses"],
                series=info["series"],
                mask=masks.get((info["sub"], info["ses"])) or masks.get((info["sub"], "")),
            )
        )
    return disc
