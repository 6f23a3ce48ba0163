"""Patient-level stratified splits, folds and leakage checks on hand-built manifests."""

from __future__ import annotations

import pandas as pd
import pytest

from brainxai.manifest import COLUMNS, conform
from brainxai.splits import (
    LeakageError,
    SplitConfig,
    allocate,
    assign_splits,
    check_leakage,
    check_subset_leakage,
)


def manifest(groups: dict[str, int], rows_per_subject: int = 2, **extra) -> pd.DataFrame:
    """``groups``: subjects per group; each subject gets ``rows_per_subject`` rows."""
    rows = []
    for g, n in groups.items():
        for s in range(n):
            for r in range(rows_per_subject):
                path = f"{g}/{g}{s:02d}_{r}.png"
                row = dict.fromkeys(COLUMNS, "")
                row.update(
                    record_id=path,
                    dataset="toy",
                    subject=f"{g}{s:02d}",
                    group=g,
                    label=g,
                    path=path,
                    ndim=2,
                    fold=-1,
                    **extra,
                )
                rows.append(row)
    return conform(pd.DataFrame(rows))


def per_group(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    n = df.groupby(["group", "split"])["subject"].nunique().unstack(fill_value=0)
    return {g: {s: int(n.loc[g].get(s, 0)) for s in ("train", "val", "test")} for g in n.index}


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (20, (14, 3, 3)),
        (10, (7, 2, 1)),
        (7, (5, 1, 1)),
        (3, (1, 1, 1)),
        (2, (2, 0, 0)),
        (1, (1, 0, 0)),
        (0, (0, 0, 0)),
        (100, (70, 15, 15)),
        (11, (8, 2, 1)),
    ],
)
def test_allocate_rounding(n, expected):
    got = allocate(n, {"train": 0.7, "val": 0.15, "test": 0.15})
    assert tuple(got.values()) == expected and sum(got.values()) == n


def test_stratified_exact_counts_and_no_leakage():
    df = manifest({"a": 20, "b": 10, "c": 3, "d": 2})
    out = assign_splits(df, SplitConfig(seed=3))
    assert per_group(out) == {
        "a": {"train": 14, "val": 3, "test": 3},
        "b": {"train": 7, "val": 2, "test": 1},
        "c": {"train": 1, "val": 1, "test": 1},
        "d": {"train": 2, "val": 0, "test": 0},
    }
    check_leakage(out)
    assert out.groupby("subject")["split"].nunique().max() == 1
    assert len(out) == len(df) and list(out.columns) == list(df.columns)
    assert out["split"].dtype == "string" and out["fold"].dtype == "int64"


def test_seeded_determinism():
    df = manifest({"a": 20, "b": 10})
    one, two = (assign_splits(df, SplitConfig(seed=7)) for _ in range(2))
    pd.testing.assert_frame_equal(one, two)
    shuffled = assign_splits(df.sample(frac=1, random_state=0), SplitConfig(seed=7))
    pd.testing.assert_frame_equal(shuffled.sort_index(), one)
    other = assign_splits(df, SplitConfig(seed=8))
    assert not one["split"].equals(other["split"])


def test_folds_patient_disjoint_and_balanced():
    df = manifest({"a": 20, "b": 10, "c": 3})
    out = assign_splits(df, SplitConfig(n_folds=5, seed=1))
    assert (out.loc[out["split"] == "test", "fold"] == -1).all()
    dev = out[out["split"] != "test"]
    assert set(dev["fold"]) == {0, 1, 2, 3, 4}
    assert dev.groupby("subject")["fold"].nunique().max() == 1
    sizes = dev.groupby("fold")["subject"].nunique()
    assert sizes.max() - sizes.min() <= 1
    a = dev[dev["group"] == "a"].groupby("fold")["subject"].nunique()  # 17 dev subjects
    assert sorted(a.tolist()) == [3, 3, 3, 4, 4]
    no_folds = assign_splits(df, SplitConfig(n_folds=0))
    assert (no_folds["fold"] == -1).all()


def test_dup_group_kept_together():
    df = manifest({"a": 12, "b": 12}, rows_per_subject=1)
    linked = ["a00", "a05", "b03", "b09"]
    df.loc[df["subject"].isin(linked), "dup_group"] = "dg-x"
    for seed in range(6):
        out = assign_splits(df, SplitConfig(seed=seed, n_folds=3))
        sub = out[out["dup_group"] == "dg-x"]
        assert sub["split"].nunique() == 1 and sub["fold"].nunique() == 1
        check_leakage(out)


def test_source_split_respected_and_val_carved_by_patient():
    df = manifest({"a": 10, "b": 6})
    test_subj = {"a00", "a01", "b00"}
    df["source_split"] = df["subject"].map(lambda s: "test" if s in test_subj else "train")
    out = assign_splits(df, SplitConfig(seed=0, n_folds=2))
    assert set(out.loc[out["source_split"] == "test", "split"]) == {"test"}
    # train a: 8 subjects -> 8*70/85 = 6.59, 8*15/85 = 1.41 -> 7 train / 1 val; b: 5 -> 4/1
    assert per_group(out) == {
        "a": {"train": 7, "val": 1, "test": 2},
        "b": {"train": 4, "val": 1, "test": 1},
    }
    check_leakage(out)
    df.loc[df["path"] == "a/a05_0.png", "source_split"] = "test"  # one patient in both
    with pytest.raises(LeakageError) as err:
        assign_splits(df, SplitConfig())
    assert "a/a05_1.png" in err.value.offenders


def test_source_val_kept_and_not_recarved():
    df = manifest({"a": 6}, rows_per_subject=1)
    df["source_split"] = ["train", "train", "train", "train", "val", "test"]
    out = assign_splits(df, SplitConfig())
    assert list(out["split"]) == ["train", "train", "train", "train", "val", "test"]


def test_check_leakage_detects_subject_and_dup_group():
    out = assign_splits(manifest({"a": 10}), SplitConfig(seed=0))
    bad = out.copy()
    i = bad.index[bad["split"] == "train"][0]
    bad.loc[i, "split"] = "test"
    with pytest.raises(LeakageError) as err:
        check_leakage(bad)
    assert bad.loc[i, "path"] in err.value.offenders
    bad = out.copy()
    tr, te = bad.index[bad["split"] == "train"][0], bad.index[bad["split"] == "test"][0]
    bad.loc[[tr, te], "dup_group"] = "dg-1"
    with pytest.raises(LeakageError, match="dup_group"):
        check_leakage(bad)
    with pytest.raises(ValueError):
        check_leakage(manifest({"a": 2}))  # no split yet


def test_check_subset_leakage():
    out = assign_splits(manifest({"a": 10, "b": 10}), SplitConfig(seed=0))
    train_ids = out.loc[out["split"] == "train", "record_id"]
    check_subset_leakage(out, train_ids)
    val_id = out.loc[out["split"] == "val", "record_id"].iloc[0]
    with pytest.raises(LeakageError):
        check_subset_leakage(out, [*train_ids, val_id])
    check_subset_leakage(out, [*train_ids, val_id], allowed_splits=("train", "val"))
    linked = out.copy()
    linked.loc[linked["record_id"].isin([train_ids.iloc[0], val_id]), "dup_group"] = "dg-1"
    with pytest.raises(LeakageError):
        check_subset_leakage(linked, [train_ids.iloc[0]])
    with pytest.raises(KeyError):
        check_subset_leakage(out, ["nope"])


def test_split_config_from_dict():
    assert SplitConfig.from_dict({"n_folds": 3}).n_folds == 3
    with pytest.raises(ValueError, match="unknown"):
        SplitConfig.from_dict({"folds": 3})
    with pytest.raises(ValueError):
        SplitConfig(train=0.7, val=0.2, test=0.2)
