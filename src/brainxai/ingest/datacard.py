"""Data card: what was ingested, what was quarantined, how subjects were known - and, for
images whose source gives no patient id, the policy applied and the expected optimism of
the split (:mod:`brainxai.ingest.grouping`), under a banner at the top."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from brainxai.atomic import write_text_atomic
from brainxai.ingest.common import REASONS
from brainxai.manifest import SPLITS
from brainxai.splits import split_sizes

_SUBJECT_SOURCES = {
    "sidecar": "sidecar CSV",
    "filename": "file-name pattern",
    "bids": "BIDS participant id",
    "dicom": "salted hash of DICOM PatientID",
    "phash_group": "UNKNOWN - approximated by near-duplicate (perceptual-hash) groups",
    "embedding_group": "UNKNOWN - approximated by near-duplicate clusters of image embeddings "
    "(head silhouettes; ingest.config.subject_grouping)",
}
#: What each ``subject_grouping.policy`` does with images without patient ids.
_POLICY_MEANING = {
    "group": "grouped by near-duplicate clusters of head-silhouette embeddings, joined with "
    "the perceptual-hash groups and the sidecar ids of the same clusters; patient-level "
    "separation is approximate",
    "allow": "only perceptual-hash near copies are kept together; one patient's sequences "
    "and adjacent slices CAN be on both sides of the split",
    "fail": "ingestion stops",
}


def grouping_banner(grouping: Mapping[str, Any] | None) -> str | None:
    """The data card's (and the report's) banner when images have no patient id."""
    if not grouping or not grouping.get("images_without_ids"):
        return None
    policy = str(grouping.get("policy"))
    ds = ", ".join(grouping.get("datasets_without_ids", []))
    return (
        f"PATIENT IDS UNKNOWN for {grouping['images_without_ids']} images ({ds}): policy "
        f"'{policy}' (ingest.config.subject_grouping.policy) - "
        f"{_POLICY_MEANING.get(policy, policy)}. Expected optimism: see 'Patients without ids'."
    )


def _grouping_markdown(grouping: Mapping[str, Any]) -> list[str]:
    """Section 'Patients without ids': policy, clusters and the optimism table."""
    s = grouping.get("settings", {})
    out = [
        f"## Patients without ids (policy `{grouping.get('policy')}`)",
        "",
        f"- images without a patient id: {grouping.get('images_without_ids', 0)} "
        f"({', '.join(grouping.get('datasets_without_ids', [])) or 'none'}); grouped by: "
        f"{grouping.get('grouped_by') or '-'}",
        f"- inferred patients: {grouping.get('inferred_patients', 0)} (largest: "
        f"{grouping.get('largest_inferred_patient', 0)} images)",
        f"- embedding: {s.get('embedding')}; {s.get('neighbours')} nearest neighbours with "
        f"cosine >= {s.get('min_similarity')} (within dataset x tumour group)",
        "",
        "Expected optimism: each test image's most similar training image (cross-split "
        "nearest neighbour, cosine of the embeddings) beside its most similar other test "
        "image (within-split). Patients kept apart leave a positive median gap (within - "
        "cross) and a share of test images whose nearest image is a training image well "
        "below chance (an image-level split); a gap near 0 or below and a share at chance "
        "are the signature of patient leakage: expect optimistic test scores.",
        "",
    ]
    rows = []
    for ds, o in sorted(grouping.get("optimism", {}).items()):
        c, w = o.get("test_to_train", {}), o.get("within_test", {})
        rows.append({
            "dataset": ds, "test images": o.get("n_test"), "train images": o.get("n_train"),
            "images without ids": o.get("images_without_ids"),
            "test→train NN q05 / median / q95": _three(c),
            "within-test NN q05 / median / q95": _three(w),
            "median gap": o.get("median_gap"),
            "test images nearest to a train image": o.get("test_nearest_in_train"),
            "chance": o.get("chance"),
        })  # fmt: skip
    return [*out, _md_table(pd.DataFrame(rows))]


def _three(q: Mapping[str, Any]) -> str:
    return f"{q.get('q05')} / {q.get('median')} / {q.get('q95')}"


def _split_col(df: pd.DataFrame) -> pd.Series:
    s = df["split"].fillna("").astype(str) if "split" in df.columns else pd.Series("", df.index)
    return s.replace("", "unassigned")


def _pivot(
    df: pd.DataFrame, index: list[str], value: str | None
) -> tuple[list[dict], pd.DataFrame]:
    if df.empty:
        return [], pd.DataFrame()
    d = df.assign(split=_split_col(df))
    g = d.groupby([*index, "split"], dropna=False)
    counts = (g[value].nunique() if value else g.size()).rename("n").reset_index()
    records = [
        {k: (int(v) if k == "n" else str(v)) for k, v in r.items()}
        for r in counts.to_dict("records")
    ]
    cols = [s for s in (*SPLITS, "unassigned") if s in set(counts["split"])]
    table = counts.pivot_table(index=index, columns="split", values="n", fill_value=0)
    table = table.reindex(columns=cols).astype(int)
    if value:
        table["total"] = d.groupby(index)[value].nunique()
    else:
        table["total"] = table.sum(axis=1)
    return records, table.reset_index()


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def data_card(
    manifest: pd.DataFrame,
    quarantine: pd.DataFrame,
    found: int,
    ignored: int,
    notes: Sequence[str] = (),
    max_groups: int = 20,
    split_warnings: Sequence[str] = (),
    grouping: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """Summarise a (split) manifest and its quarantine as a JSON-able dict and Markdown.

    ``split_warnings``: :func:`brainxai.splits.check_split_sizes`'s messages (data sets
    without val/test patients), listed first among the warnings."""
    n_in, n_q = len(manifest), len(quarantine)
    ok = n_in + n_q == found
    img_rec, img_tab = _pivot(manifest, ["dataset", "label", "sequence"], None)
    sub_rec, sub_tab = _pivot(manifest, ["dataset", "group"], "subject")
    reasons = (
        {str(k): int(v) for k, v in quarantine.groupby("reason").size().items()} if n_q else {}
    )
    sources = (
        {str(k): int(v) for k, v in manifest.groupby("subject_source").size().items()}
        if n_in
        else {}
    )
    dup = manifest[manifest["dup_group"].fillna("").astype(str) != ""] if n_in else manifest
    groups = (
        dup.groupby("dup_group")
        .agg(
            size=("path", "size"),
            labels=("label", lambda s: sorted(set(map(str, s)))),
            splits=("split", lambda s: sorted(set(map(str, s)))),
        )
        .sort_values("size", ascending=False, kind="stable")
        if len(dup)
        else pd.DataFrame(columns=["size", "labels", "splits"])
    )
    mixed = int((groups["labels"].map(len) > 1).sum()) if len(groups) else 0
    warnings: list[str] = [f"SPLIT TOO SMALL: {w}" for w in split_warnings]
    if not ok:
        warnings.append(f"COUNTS DO NOT ADD UP: {n_in} ingested + {n_q} quarantined != {found}")
    n_pg = sources.get("phash_group", 0)
    if n_pg:
        ds = sorted(set(manifest.loc[manifest["subject_source"] == "phash_group", "dataset"]))
        warnings.append(
            f"Subject ids are unknown for {n_pg} of {n_in} images (datasets: {', '.join(ds)}); "
            "subjects were approximated by near-duplicate (perceptual-hash) groups. "
            "Patient-level separation of splits is NOT guaranteed for these images."
        )
    if mixed:
        warnings.append(f"{mixed} near-duplicate groups mix different labels")
    banner = grouping_banner(grouping)
    if banner and grouping and grouping.get("policy") != "allow":  # allow: the warning above
        warnings.insert(0, banner)
    card: dict[str, Any] = {
        "totals": {
            "found": int(found),
            "ingested": n_in,
            "quarantined": n_q,
            "ignored": int(ignored),
            "invariant_holds": ok,
        },
        "datasets": sorted(set(map(str, manifest["dataset"]))) if n_in else [],
        "images_per_class_sequence_split": img_rec,
        "subjects_per_group_split": sub_rec,
        "n_subjects": int(manifest["subject"].nunique()) if n_in else 0,
        "patients_per_dataset_split": split_sizes(manifest)
        if n_in and "split" in manifest.columns
        else {},
        "quarantine_by_reason": reasons,
        "subject_sources": sources,
        "subject_grouping": {**(grouping or {}), "banner": banner},
        "near_duplicates": {
            "n_groups": len(groups),
            "n_images": int(groups["size"].sum()) if len(groups) else 0,
            "largest": int(groups["size"].max()) if len(groups) else 0,
            "mixed_label_groups": mixed,
            "groups": [
                {
                    "dup_group": str(k),
                    "size": int(r["size"]),
                    "labels": r["labels"],
                    "splits": r["splits"],
                }
                for k, r in groups.head(max_groups).iterrows()
            ],
        },
        "warnings": warnings,
        "notes": list(notes),
    }
    return card, _markdown(card, img_tab, sub_tab)


def _markdown(card: dict[str, Any], img_tab: pd.DataFrame, sub_tab: pd.DataFrame) -> str:
    t = card["totals"]
    out = ["# Data card", ""]
    grouping = card.get("subject_grouping") or {}
    if grouping.get("banner"):
        out += [f"> **{grouping['banner']}**", ""]
    out += [
        f"- **found** {t['found']} = **ingested** {t['ingested']} + **quarantined** "
        f"{t['quarantined']} ({'holds' if t['invariant_holds'] else 'DOES NOT HOLD'})",
        f"- ignored non-image files: {t['ignored']}",
        f"- subjects: {card['n_subjects']}",
        "",
    ]
    if card["warnings"]:
        out += ["## Warnings", ""] + [f"- **{w}**" for w in card["warnings"]] + [""]
    out += ["## Where subject ids come from", ""]
    out += [
        f"- {k}: {v} images ({_SUBJECT_SOURCES.get(k, k)})"
        for k, v in card["subject_sources"].items()
    ] or ["_no images_"]
    out += ["", "## Images per class x sequence x split", "", _md_table(img_tab)]
    out += ["## Subjects per group x split", "", _md_table(sub_tab)]
    q = pd.DataFrame(
        [(k, v, REASONS.get(k, "")) for k, v in sorted(card["quarantine_by_reason"].items())],
        columns=["reason", "files", "meaning"],
    )
    out += ["## Quarantine by reason", "", _md_table(q)]
    nd = card["near_duplicates"]
    out += [
        "## Near-duplicate groups",
        "",
        f"{nd['n_groups']} groups, {nd['n_images']} images, largest {nd['largest']}, "
        f"{nd['mixed_label_groups']} with mixed labels.",
        "",
    ]
    if nd["groups"]:
        g = pd.DataFrame(nd["groups"]).assign(
            labels=lambda d: d["labels"].map(", ".join), splits=lambda d: d["splits"].map(", ".join)
        )
        out += [_md_table(g)]
    if grouping.get("policy"):
        out += _grouping_markdown(grouping)
    if card["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in card["notes"]] + [""]
    return "\n".join(out)


def write_data_card(
    card: dict[str, Any], markdown: str, md_path: str | Path, json_path: str | Path
) -> tuple[Path, Path]:
    """Write :func:`data_card`'s two outputs atomically (JSON: sorted keys, indent 2)."""
    text = json.dumps(card, indent=2, sort_keys=True, default=str) + "\n"
    return write_text_atomic(md_path, markdown), write_text_atomic(json_path, text)
