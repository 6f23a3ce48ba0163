"""Label-fraction subsets: by patient, stratified per group, every class, exact counts, nested."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from brainxai.finetune.data import CLASS_NAMES
from brainxai.finetune.sampling import label_fraction_subset, patients_per_group, subsets_table
from tests.test_finetune_toydata import toy_table

FRACTIONS = (0.01, 0.05, 0.1, 0.5, 1.0)


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    # 20 patients per group, 18 of them in the training split (patients 0-3 and 6-19)
    return toy_table(patients_per_group=20, size=8)[0]


def test_exact_patient_counts_per_group(items):
    n_train = 18  # per group: patients 0-3 and 6-19
    for f in FRACTIONS:
        chosen = patients_per_group(items[items["split"] == "train"], f, seed=3)
        assert set(chosen) == set(items["group"])
        # every patient has every class of its group, so one patient covers them all
        assert {len(v) for v in chosen.values()} == {max(1, math.ceil(f * n_train))}, f
        sub = label_fraction_subset(items, f, seed=3)
        assert set(sub["label"]) == set(CLASS_NAMES)  # >= 1 image per class
        assert (sub["split"] == "train").all()
        # by patient: a chosen patient's every training image is in
        whole = items[items["subject"].isin(set(sub["subject"]))]
        assert len(whole) == len(sub)


def test_subsets_nest_across_fractions_and_differ_across_seeds(items):
    for seed in (0, 1):
        prev: set[str] = set()
        for f in FRACTIONS:
            ids = set(label_fraction_subset(items, f, seed)["record_id"])
            assert prev <= ids, (seed, f)
            prev = ids
    a = set(label_fraction_subset(items, 0.1, 0)["subject"])
    b = set(label_fraction_subset(items, 0.1, 1)["subject"])
    assert a != b
    assert len(a) == len(b) == 6 * 2  # ceil(0.1 * 18) = 2 patients per group


def test_class_coverage_adds_patients_in_order():
    """A group whose first patient lacks a class gets the next patient too (c_g rule)."""
    items, _ = toy_table(patients_per_group=6, size=8)
    train = items[items["split"] == "train"]
    order = patients_per_group(train, 1.0, seed=5)["glioma"]
    first = order[0]
    drop = train[(train["subject"] == first) & (train["label"] == "glioma T2")].index
    reduced = items.drop(index=drop)
    chosen = patients_per_group(reduced[reduced["split"] == "train"], 0.01, seed=5)
    assert chosen["glioma"][:1] == [first]
    assert len(chosen["glioma"]) == 2  # the first patient alone misses glioma T2
    assert {len(v) for g, v in chosen.items() if g != "glioma"} == {1}


def test_table_is_deterministic_and_independent_of_anything_but_fraction_and_seed(items):
    a = subsets_table(items, FRACTIONS, (0, 1))
    b = subsets_table(items.sample(frac=1.0, random_state=7), FRACTIONS, (0, 1))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    with pytest.raises(ValueError, match="fraction"):
        label_fraction_subset(items, 0.0, 0)
