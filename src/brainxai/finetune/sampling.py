"""Label-fraction subsets of the training split: by patient, stratified, nested.

A patient's images carry several classes (one tumour group, several sequences), so the
unit sampled is the patient and the stratum is the patient's tumour ``group``. For seed
``s`` each group's training patients are put in one random order (seeded by ``(s,
group)``, independent of the fraction); the subset at fraction ``f`` takes, per group,
the first

    k_g(f) = max(ceil(f * n_g), c_g)

patients, where ``n_g`` is the group's number of training patients and ``c_g`` the
shortest prefix of that order whose images cover every class of the group present in the
training split (at least one image per class, hence at least one patient per group).
Because ``k_g`` grows with ``f`` and the order does not depend on ``f``, the subsets are
nested (the 5 % subset contains the 1 % subset of the same seed), and because nothing
depends on the initialisation, every method sees the same subset at a given (f, s).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _mode(values: pd.Series) -> str:
    counts = values.astype(str).value_counts()
    return str(sorted(counts[counts == counts.max()].index)[0])


def patient_orders(train: pd.DataFrame, seed: int) -> dict[str, list[str]]:
    """Per group, the training patients in the seed's random order."""
    groups = train.groupby("subject")["group"].agg(_mode)
    orders: dict[str, list[str]] = {}
    for g in sorted(set(groups)):
        patients = sorted(groups[groups == g].index.astype(str))
        orders[g] = [patients[i] for i in _rng(seed, g).permutation(len(patients))]
    return orders


def _cover_length(order: list[str], classes_of: dict[str, set[str]], needed: set[str]) -> int:
    seen: set[str] = set()
    for k, patient in enumerate(order, start=1):
        seen |= classes_of[patient]
        if needed <= seen:
            return k
    return len(order)


def patients_per_group(train: pd.DataFrame, fraction: float, seed: int) -> dict[str, list[str]]:
    """The chosen patients of each group at ``fraction`` (see module doc for the rule)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    classes_of = train.groupby("subject")["label"].agg(lambda s: set(s.astype(str))).to_dict()
    chosen: dict[str, list[str]] = {}
    for g, order in patient_orders(train, seed).items():
        needed = set().union(*(classes_of[p] for p in order))
        k = max(math.ceil(fraction * len(order) - 1e-9), _cover_length(order, classes_of, needed))
        chosen[g] = order[:k]
    return chosen


def label_fraction_subset(items: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Training rows of ``items`` (columns ``record_id, subject, group, label, split``) kept
    at ``fraction`` for ``seed``: whole patients, every class present, nested in ``fraction``.
    """
    train = items[items["split"] == "train"]
    if train.empty:
        raise ValueError("no training rows to sample from")
    keep = {p for ps in patients_per_group(train, fraction, seed).values() for p in ps}
    return train[train["subject"].astype(str).isin(keep)].sort_values("record_id")


def subsets_table(
    items: pd.DataFrame, fractions: tuple[float, ...], seeds: tuple[int, ...]
) -> pd.DataFrame:
    """Long table ``fraction, seed, record_id, subject, group, label`` of every subset."""
    parts = []
    for seed in seeds:
        for f in fractions:
            sub = label_fraction_subset(items, f, seed)
            parts.append(
                sub[["record_id", "subject", "group", "label"]].assign(
                    fraction=float(f), seed=int(seed)
                )
            )
    cols = ["fraction", "seed", "record_id", "subject", "group", "label"]
    return pd.concat(parts, ignore_index=True)[cols]


#: Columns of :func:`effective_fractions` (one row per drawn subset).
EFFECTIVE_COLUMNS = (
    "fraction", "seed", "n_patients", "n_images", "train_patients", "train_images",
    "effective_patients", "effective_images",
)  # fmt: skip


def effective_fractions(items: pd.DataFrame, subsets: pd.DataFrame) -> pd.DataFrame:
    """What each nominal fraction really is: per drawn ``(fraction, seed)`` subset (the
    :func:`subsets_table` rows), its patients and images and their share of the training
    split of ``items`` (``effective_patients``, ``effective_images``). The rule's rounding
    up per group and its "every class at least once" make a small nominal fraction larger.
    """
    train = items[items["split"] == "train"]
    n_pat, n_img = int(train["subject"].astype(str).nunique()), len(train)
    if n_img == 0:
        raise ValueError("no training rows: no fraction of them")
    rows = []
    for (fraction, seed), sub in subsets.groupby(["fraction", "seed"], sort=True):
        p, i = int(sub["subject"].astype(str).nunique()), int(sub["record_id"].nunique())
        rows.append(
            {"fraction": float(fraction), "seed": int(seed), "n_patients": p, "n_images": i,
             "train_patients": n_pat, "train_images": n_img,
             "effective_patients": p / n_pat, "effective_images": i / n_img}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(EFFECTIVE_COLUMNS))


def effective_by_fraction(per_subset: pd.DataFrame) -> pd.DataFrame:
    """Per nominal fraction, the mean over seeds of :func:`effective_fractions`: shares
    ``effective_patients``, ``effective_images`` and counts ``labelled_patients``,
    ``labelled_images`` (named apart from the test-set counts of the summary tables)."""
    cols = ["n_patients", "n_images", "effective_patients", "effective_images"]
    out = per_subset.groupby("fraction", sort=True)[cols].mean().reset_index()
    return out.rename(columns={"n_patients": "labelled_patients", "n_images": "labelled_images"})
