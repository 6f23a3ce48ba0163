"""Layout ``kaggle17``: ``<root>/<tumour group> <sequence>/<image>`` (+ optional sidecar).

The sidecar CSV (``subjects.csv``; columns ``path`` posix relative to the root,
``subject``, ``group``, ``sequence``, ``slice_index``, ``mask_path`` relative to
the sidecar's folder) gives subject ids and lesion masks. Without one, or for
files it does not list, ``subject`` stays empty and is later set by the policy for
images without patient ids (:mod:`brainxai.ingest.grouping`: an embedding cluster,
``subject_source = "embedding_group"``, or the perceptual-hash group,
``"phash_group"``). Folder and sidecar names are compared after Unicode NFC
normalisation.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from brainxai.ingest.common import EXT_2D, Candidate, Discovery, Reject, nfc, walk
from brainxai.ingest.config import IngestConfig
from brainxai.labels import kaggle_classes, parse_kaggle_folder


def _text(v: object) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).strip()


def read_sidecar(sidecar: Path) -> dict[str, dict[str, str]]:
    """Sidecar rows keyed by NFC-normalised relative path."""
    df = pd.read_csv(sidecar, dtype=str, keep_default_na=False)
    if "path" not in df.columns:
        raise ValueError(f"sidecar {sidecar} has no 'path' column")
    return {
        nfc(str(r["path"]).strip().lstrip("./")): {k: _text(v) for k, v in r.items()}
        for r in df.to_dict("records")
    }


def discover(root: Path, cfg: IngestConfig, sidecar: Path | None = None) -> Discovery:
    """Classify every file under ``root``; label from the class folder."""
    if sidecar is None and (root / "subjects.csv").is_file():
        sidecar = root / "subjects.csv"
    side = read_sidecar(sidecar) if sidecar is not None else {}
    masks = (
        {sidecar.parent / r["mask_path"] for r in side.values() if r.get("mask_path")}
        if sidecar is not None
        else set()
    )
    disc = Discovery()
    files, disc.ignored = walk(
        root, EXT_2D, consumed=[*masks, *([sidecar] if sidecar else [])], rejects=disc.rejects,
        follow_outside=cfg.follow_symlinks_outside_root,
    )  # fmt: skip
    allowed = set(cfg.allowed_labels or kaggle_classes())
    n_missing_mask = 0
    for f in files:
        rel = f.relative_to(root)
        if len(rel.parts) < 2:
            disc.rejects.append(Reject(f, "bad_layout", "image outside any class folder"))
            continue
        parsed = parse_kaggle_folder(rel.parts[0])
        label = f"{parsed[0]} {parsed[1]}" if parsed else ""
        if parsed is None or label not in allowed:
            why = f"class folder {nfc(rel.parts[0])!r} is not a known class"
            disc.rejects.append(Reject(f, "unknown_label", why))
            continue
        group, seq = parsed
        cand = Candidate(path=f, ndim=2, label=label, group=group, sequence=seq)
        row = side.get(nfc(rel.as_posix()))
        if row is not None:
            s_group, s_seq = row.get("group", ""), row.get("sequence", "")
            if s_group or s_seq:
                s_parsed = parse_kaggle_folder(f"{s_group or group} {s_seq or seq}")
                if s_parsed != parsed:
                    disc.rejects.append(
                        Reject(
                            f,
                            "mislabelled",
                            f"sidecar says {s_group!r} {s_seq!r}, folder says {label!r}",
                        )
                    )
                    continue
            if row.get("subject"):
                cand.subject, cand.subject_source = row["subject"], "sidecar"
            if row.get("mask_path") and sidecar is not None:
                mask = sidecar.parent / row["mask_path"]
                if mask.is_file():
                    cand.mask = mask
                else:
                    n_missing_mask += 1
        disc.candidates.append(cand)
    if sidecar is not None:
        listed = {nfc(f.relative_to(root).as_posix()) for f in files}
        n_orphan = len(set(side) - listed)
        if n_orphan:
            disc.notes.append(f"{n_orphan} sidecar rows name files that do not exist")
    if n_missing_mask:
        disc.notes.append(f"{n_missing_mask} sidecar mask files are missing (mask_path left empty)")
    return disc
