"""Stratified patient-level k-fold cross-validation and the inner validation split.

One row per patient (the unit: a patient's sessions and sequences never straddle folds).
Outer folds: scikit-learn ``StratifiedKFold`` over patients (shuffled with the seed), so
each fold holds ``n_c / k`` (±1) patients of every class ``c``. Inner split: within the
training folds, ``StratifiedShuffleSplit`` holds out ``max(K, round(f · n))`` patients (at
least one per class) for early stopping and epoch selection; the outer fold only scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit


def assign_folds(
    patients: pd.DataFrame, n_folds: int, seed: int, label: str = "label"
) -> pd.Series:
    """Outer fold ``0 .. k-1`` per patient row (stratified by ``label``)."""
    if patients["subject"].duplicated().any():
        raise ValueError("assign_folds expects one row per patient")
    counts = patients[label].value_counts()
    if counts.min() < n_folds:
        raise ValueError(
            f"stratified {n_folds}-fold CV needs >= {n_folds} patients per class, got "
            f"{counts.to_dict()}"
        )
    order = patients.sort_values("subject")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = pd.Series(-1, index=order.index, dtype="int64")
    for k, (_, test_idx) in enumerate(skf.split(np.zeros(len(order)), order[label])):
        fold.iloc[test_idx] = k
    return fold.reindex(patients.index)


def inner_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions: a stratified hold-out of ``max(K, round(fraction · n))``."""
    labels = np.asarray(labels)
    n_classes = len(np.unique(labels))
    n_val = max(n_classes, round(fraction * len(labels)))
    if len(labels) - n_val < n_classes:
        raise ValueError(f"too few patients ({len(labels)}) for an inner validation split")
    sss = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    train, val = next(sss.split(np.zeros(len(labels)), labels))
    return np.sort(train), np.sort(val)


def check_patient_disjoint(patients: pd.DataFrame, fold_col: str = "fold") -> None:
    """Raise ``ValueError`` when a subject appears in two folds."""
    spread = patients.groupby("subject")[fold_col].nunique()
    bad = spread[spread > 1]
    if len(bad):
        raise ValueError(f"patients in several folds: {list(bad.index)[:10]}")
