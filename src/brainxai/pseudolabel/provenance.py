"""Who made the pseudo-label masks, in the words every table uses.

Paper 003's ablation calls its coarse masks "VLM-C": boxes a vision-language model drew.
This project's default proposer is not a VLM (a T1C+ − T1 subtraction detector), and a VLM
proposer may fail to answer on every slice; so a table names the mask source from what the
pseudo-label table records (``proposer``, ``proposer_model``, ``n_answers``,
``n_malformed`` per session of ``pseudolabels.parquet``), never from the paper:

* ``classical proposer`` — the weight-free detector made the boxes;
* ``VLM (<model>)`` — only when a VLM gave at least one readable answer;
* ``VLM (<model>) gave no readable answer`` — a VLM was asked, nothing usable came back
  (its masks are empty), so no row may be read as a VLM's.
"""

from __future__ import annotations

import pandas as pd

CLASSICAL = "classical"
CLASSICAL_LABEL = "classical proposer"
NO_PSEUDOLABELS = "no pseudo-labels"


def vlm_answers(table: pd.DataFrame) -> int:
    """Readable VLM answers over the sessions labelled by a VLM (cached answers count)."""
    vlm = table[(table["proposer"].astype(str) != CLASSICAL) & (table["status"] == "ok")]
    if vlm.empty or "n_answers" not in vlm:
        return 0
    answers = pd.to_numeric(vlm["n_answers"], errors="coerce").fillna(0)
    malformed = pd.to_numeric(vlm["n_malformed"], errors="coerce").fillna(0)
    return int((answers - malformed).clip(lower=0).sum())


def proposer_label(table: pd.DataFrame | None) -> str:
    """The mask source as tables and the report name it (see the module docstring)."""
    if table is None or table.empty or "proposer" not in table:
        return NO_PSEUDOLABELS
    kinds = sorted(set(table["proposer"].dropna().astype(str)))
    if kinds == [CLASSICAL]:
        return CLASSICAL_LABEL
    models = (
        sorted({str(m) for m in table["proposer_model"].dropna() if str(m)})
        if "proposer_model" in table
        else []
    )
    model = ", ".join(models) or ", ".join(k for k in kinds if k != CLASSICAL)
    label = f"VLM ({model})"
    if vlm_answers(table) == 0:
        label += " gave no readable answer"
    if CLASSICAL in kinds:
        label = f"{CLASSICAL_LABEL} + {label}"
    return label


def is_vlm(label: str) -> bool:
    """The label names masks a VLM actually answered for."""
    return label.startswith("VLM (") and not label.endswith("gave no readable answer")
