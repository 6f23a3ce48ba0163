"""Manifest in and out: 3D sessions to standardize, and the columns the stage adds.

Input rows are the manifest's 3D volumes grouped by (subject, session); 2D rows are
kept untouched (their new columns are empty / NA). Columns added (never a row dropped):

``std_status`` ok | quarantined | "" (2D) · ``std_reason`` · ``std_path`` the row's
volume in MNI space · ``std_mask_path`` brain mask in MNI space · ``std_lesion_path``
· ``native_mask_path`` · ``xfm_fwd`` / ``xfm_inv`` (';'-separated ANTs transform lists,
``apply_transforms`` order; inverse with affines inverted) · ``qc_pass`` (boolean, NA
for 2D rows) · ``qc_brain_dice``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

NEW_COLUMNS: dict[str, str] = {
    "std_status": "string",
    "std_reason": "string",
    "std_path": "string",
    "std_mask_path": "string",
    "std_lesion_path": "string",
    "native_mask_path": "string",
    "xfm_fwd": "string",
    "xfm_inv": "string",
    "qc_pass": "boolean",
    "qc_brain_dice": "float64",
}


def session_key(subject: str, session: str) -> str:
    """File-name-safe id of a session: ``synth3d/sub-001`` -> ``synth3d_sub-001``."""
    key = subject if not session else f"{subject}_{session}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


def subject_table(manifest: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per 3D (subject, session): images/sha256 by sequence, lesion mask, rows."""
    three_d = manifest[manifest["ndim"] == 3]
    out = []
    for (subject, session), rows in three_d.groupby(["subject", "session"], sort=True):
        images: dict[str, str] = {}
        sha: dict[str, str] = {}
        record_of: dict[str, str] = {}
        for _, r in rows.sort_values(["sequence", "series", "path"]).iterrows():
            name = str(r["sequence"])
            if name in images:  # a second series of the same sequence
                name = f"{name}#{r['series'] or r['record_id']}"
            images[name], sha[name] = str(r["path"]), str(r["sha256"])
            record_of[name] = str(r["record_id"])
        masks = [m for m in rows["mask_path"].astype(str) if m]
        out.append(
            {
                "subject": str(subject),
                "session": str(session),
                "key": session_key(str(subject), str(session)),
                "images": images,
                "sha256": sha,
                "record_of": record_of,
                "lesion_mask": masks[0] if masks else None,
            }
        )
    return out


def extend_manifest(
    manifest: pd.DataFrame, sessions: Iterable[dict[str, Any]], results: Iterable[dict[str, Any]]
) -> pd.DataFrame:
    """Add :data:`NEW_COLUMNS`; ``results[i]`` (paths already relative) is for ``sessions[i]``."""
    out = manifest.copy()
    for col, dtype in NEW_COLUMNS.items():
        empty = float("nan") if dtype == "float64" else pd.NA
        out[col] = pd.Series(empty, index=out.index, dtype=dtype)
    for col in ("std_status", "std_reason", "std_path", "std_mask_path", "std_lesion_path",
                "native_mask_path", "xfm_fwd", "xfm_inv"):  # fmt: skip
        out[col] = out[col].fillna("")
    index_of = {rid: i for i, rid in zip(out.index, out["record_id"], strict=True)}
    for sess, res in zip(sessions, results, strict=True):
        for name, rid in sess["record_of"].items():
            i = index_of[rid]
            out.at[i, "std_status"] = res["status"]
            if res["status"] != "ok":
                out.at[i, "std_reason"] = res["reason"]
                out.at[i, "qc_pass"] = False
                continue
            files, qc = res["files_rel"], res["qc"]
            out.at[i, "std_path"] = files.get(f"std:{name}", "")
            out.at[i, "std_mask_path"] = files["mask"]
            out.at[i, "std_lesion_path"] = files.get("lesion", "")
            out.at[i, "native_mask_path"] = files["native_mask"]
            out.at[i, "xfm_fwd"] = ";".join(res["xfm_fwd_rel"])
            out.at[i, "xfm_inv"] = ";".join(res["xfm_inv_rel"])
            out.at[i, "qc_pass"] = bool(qc["qc_pass"])
            out.at[i, "std_reason"] = qc["qc_reason"]
            out.at[i, "qc_brain_dice"] = float(qc["brain_dice"])
    return out
