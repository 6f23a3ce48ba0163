"""kermany layout: source splits, file-name subjects, cross-split leakage."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainxai.ingest import IngestConfig, LeakageError, ingest
from brainxai.splits import SplitConfig, assign_splits, check_leakage
from tests.test_ingest_kaggle import save, smooth

CFG = IngestConfig(min_side_2d=32)


def kermany_tree(root: Path) -> Path:
    seeds = iter(range(100, 200))
    for rel in (
        "train/CNV/CNV-100-1.jpeg",
        "train/CNV/CNV-100-2.jpeg",
        "train/CNV/CNV-101-1.jpeg",
        "train/CNV/CNV-102-1.jpeg",
        "train/NORMAL/NORMAL-200-1.jpeg",
        "train/NORMAL/NORMAL-201-1.jpeg",
        "train/NORMAL/NORMAL-202-1.jpeg",
        "test/CNV/CNV-300-1.jpeg",
        "test/NORMAL/NORMAL-400-1.jpeg",
        "train/FOO/FOO-1-1.jpeg",
        "extra/x.jpeg",
    ):
        save(smooth(next(seeds)), root / rel, quality=95)
    (root / "train" / "CNV" / "Thumbs.db").write_bytes(b"x")
    return root


def test_kermany_rows(tmp_path):
    root = kermany_tree(tmp_path / "oct")
    res = ingest(root, "kermany", CFG, base_dir=tmp_path)
    man, q = res.manifest, res.quarantine
    assert (res.found, len(man), len(q), res.ignored) == (11, 9, 2, 1)
    assert dict(zip(q["path"], q["reason"], strict=True)) == {
        "oct/extra/x.jpeg": "bad_layout",
        "oct/train/FOO/FOO-1-1.jpeg": "unknown_label",
    }
    by = man.set_index("path")
    assert by.loc["oct/train/CNV/CNV-100-2.jpeg", "subject"] == "CNV-100"
    assert (by["subject_source"] == "filename").all()
    assert by.loc["oct/test/NORMAL/NORMAL-400-1.jpeg", "source_split"] == "test"
    assert by.loc["oct/test/NORMAL/NORMAL-400-1.jpeg", "label"] == "NORMAL"
    assert sorted(man["source_split"].value_counts().items()) == [("test", 2), ("train", 7)]
    split = assign_splits(man, SplitConfig(n_folds=2, seed=1))
    check_leakage(split)
    s = split.set_index("path")["split"]
    assert s[s.index.str.contains("/test/")].eq("test").all()
    assert set(s[s.index.str.contains("/train/")]) == {"train", "val"}
    # 4 CNV train subjects -> 15/85 of 4 = 0.7 -> 1 val; 3 NORMAL -> 0.53 -> 1 val
    val = split[split["split"] == "val"]
    assert val.groupby("label")["subject"].nunique().to_dict() == {"CNV": 1, "NORMAL": 1}


@pytest.mark.parametrize("kind", ["exact", "near", "subject"])
def test_kermany_cross_split_leak(tmp_path, kind):
    root = kermany_tree(tmp_path / "oct")
    src = root / "test/CNV/CNV-300-1.jpeg"
    if kind == "exact":
        leak = root / "train/CNV/CNV-999-1.jpeg"
        leak.write_bytes(src.read_bytes())
    elif kind == "near":
        leak = save(smooth(107, 90), root / "train/CNV/CNV-999-1.png")  # resized re-encode
    else:
        leak = save(smooth(150), root / "test/CNV/CNV-100-7.jpeg")  # train patient in test
    with pytest.raises(LeakageError) as err:
        ingest(root, "kermany", CFG, base_dir=tmp_path)
    rel = leak.relative_to(tmp_path).as_posix()
    assert rel in err.value.offenders and rel in str(err.value)
    res = ingest(
        root,
        "kermany",
        IngestConfig(min_side_2d=32, leakage_policy="quarantine"),
        base_dir=tmp_path,
    )
    assert len(res.manifest) + len(res.quarantine) == res.found == 12
    leaked = res.quarantine[res.quarantine["reason"] == "source_leakage"]
    if kind == "subject":
        assert len(leaked) == 2 and leaked["path"].str.contains("/train/CNV/CNV-100-").all()
    else:
        assert list(leaked["path"]) == [rel]
    check_leakage(assign_splits(res.manifest, SplitConfig(n_folds=2)))
