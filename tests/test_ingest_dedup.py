"""Duplicate search (vectorised popcount) and combining sources."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from brainxai.ingest import IngestConfig, combine, ingest
from brainxai.ingest.dedup import components, hash_words, near_pairs
from brainxai.labels import kaggle_folder
from brainxai.manifest import read_table, write_table
from tests.test_ingest_kaggle import save, smooth


def _brute(words: np.ndarray, thr: int) -> set[tuple[int, int]]:
    out = set()
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            pairs = zip(words[i], words[j], strict=True)
            d = max(bin(int(a) ^ int(b)).count("1") for a, b in pairs)
            if d <= thr:
                out.add((i, j))
    return out


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    for w in (1, 3):
        words = rng.integers(0, 2**63, size=(150, w), dtype=np.uint64)
        for i in range(0, 40, 4):  # plant near copies: flip <= 3 bits per word
            words[i + 1] = words[i]
            for k in range(w):
                for b in rng.choice(64, size=3, replace=False):
                    words[i + 1, k] ^= np.uint64(1) << np.uint64(b)
        got = {tuple(p) for p in near_pairs(words, 3, block_elems=1000).tolist()}
        assert got == _brute(words, 3) and len(got) >= 10


def test_hash_words_and_components():
    w = hash_words(["00000000000000ff", "ffffffffffffffff"])
    assert w.dtype == np.uint64 and w.tolist() == [[255], [2**64 - 1]]
    assert components(4, np.array([[0, 2]])).tolist() == [0, 1, 0, 2]


def test_near_pairs_10k_is_fast():
    words = np.random.default_rng(1).integers(0, 2**63, size=(10_000, 1), dtype=np.uint64)
    words[5000] = words[17]
    t0 = time.perf_counter()
    pairs = near_pairs(words, 4)
    assert time.perf_counter() - t0 < 10
    assert [17, 5000] in pairs.tolist()


def test_combine_cross_source_duplicates(tmp_path):
    cfg = IngestConfig(min_side_2d=32)
    a, b = tmp_path / "a", tmp_path / "b"
    g1, n2 = kaggle_folder("glioma", "T1"), kaggle_folder("normal", "T2")
    save(smooth(1), a / g1 / "one.png")
    save(smooth(2), a / g1 / "two.png")
    save(smooth(3), a / n2 / "three.png")
    (b / g1).mkdir(parents=True)
    (b / n2).mkdir(parents=True)
    (b / g1 / "one_again.png").write_bytes((a / g1 / "one.png").read_bytes())  # same label
    (b / n2 / "two_as_normal.png").write_bytes((a / g1 / "two.png").read_bytes())  # other label
    save(smooth(3), b / n2 / "three_re.jpg", quality=90)  # near duplicate across sources
    save(smooth(4), b / n2 / "four.png")
    ra = ingest(a, "kaggle17", cfg, base_dir=tmp_path)
    rb = ingest(b, "kaggle17", cfg, base_dir=tmp_path)
    assert (len(ra.manifest), len(rb.manifest)) == (3, 4)
    for r in (ra, rb):  # as the pipeline does: through parquet and back
        r.manifest = read_table(write_table(r.manifest, tmp_path / f"m{id(r)}.parquet"))
        r.quarantine = read_table(write_table(r.quarantine, tmp_path / f"q{id(r)}.parquet"))
    res = combine([ra, rb])
    assert res.found == 7 and len(res.manifest) + len(res.quarantine) == 7
    q = dict(
        zip(
            res.quarantine["path"].str.rsplit("/", n=1).str[-1],
            res.quarantine["reason"],
            strict=True,
        )
    )
    assert q == {
        "one_again.png": "duplicate",
        "two.png": "conflicting_labels",
        "two_as_normal.png": "conflicting_labels",
    }
    man = res.manifest.set_index(res.manifest["path"].str.rsplit("/", n=1).str[-1])
    assert sorted(man.index) == ["four.png", "one.png", "three.png", "three_re.jpg"]
    assert man.loc["three.png", "dup_group"] == man.loc["three_re.jpg", "dup_group"] != ""
    assert man["path"].is_monotonic_increasing


def test_exact_duplicate_keeps_the_documented_copy(tmp_path):
    root = tmp_path / "k"
    folder = root / kaggle_folder("glioma", "T1")
    save(smooth(1), folder / "sub-1_slice-3.png")
    (folder / "fault-duplicate-0.png").write_bytes((folder / "sub-1_slice-3.png").read_bytes())
    side = tmp_path / "subjects.csv"
    pd.DataFrame({"path": [f"{folder.name}/sub-1_slice-3.png"], "subject": ["sub-1"]}).to_csv(
        side, index=False
    )
    res = ingest(root, "kaggle17", IngestConfig(min_side_2d=32), tmp_path, sidecar=side)
    assert res.manifest["path"].str.endswith("sub-1_slice-3.png").tolist() == [True]
    assert res.quarantine["path"].str.endswith("fault-duplicate-0.png").tolist() == [True]
    assert res.quarantine["reason"].tolist() == ["duplicate"]
