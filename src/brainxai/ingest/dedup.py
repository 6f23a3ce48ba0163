"""Exact (sha256) and near (perceptual-hash) duplicates, and source-split leakage.

Near-duplicate search packs each hash into uint64 words and compares blocks of
rows against all later rows with vectorised XOR + popcount, so 10k images are
~5e7 word comparisons in numpy instead of a Python double loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from brainxai.splits import LeakageError

#: Most held-out first: which copy survives a source-split leak.
_HELD_OUT = {"test": 0, "val": 1, "train": 2}
#: ``subject_source`` values of subjects inferred from the images, not given by the source
#: (perceptual-hash groups; embedding clusters, :mod:`brainxai.ingest.grouping`).
INFERRED_SUBJECT_SOURCES = ("phash_group", "embedding_group")

if hasattr(np, "bitwise_count"):

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)

else:  # numpy < 2.0
    _LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        b = x.view(np.uint8).reshape(*x.shape, 8)
        return _LUT[b].sum(axis=-1, dtype=np.uint8)


def hash_words(hexes: Sequence[str]) -> np.ndarray:
    """Hex hashes of equal length (multiple of 16) -> ``(n, words)`` uint64 array."""
    if not len(hexes):
        return np.zeros((0, 1), dtype=np.uint64)
    width = len(hexes[0])
    if width % 16 or any(len(h) != width for h in hexes):
        raise ValueError("hashes must share a length that is a multiple of 16 hex digits")
    raw = b"".join(bytes.fromhex(h) for h in hexes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hexes), width // 16)


def near_pairs(words: np.ndarray, threshold: int, block_elems: int = 1 << 22) -> np.ndarray:
    """Pairs ``(i, j)``, ``i < j``, whose hashes differ by <= ``threshold`` bits in every word."""
    n, w = words.shape
    out: list[np.ndarray] = []
    step = max(1, block_elems // max(1, n * w))
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        diff = _popcount(words[i0:i1, None, :] ^ words[None, i0:, :]).max(axis=-1)
        r, c = np.nonzero(diff <= threshold)
        keep = c > r  # columns start at i0; keep the strict upper triangle
        out.append(np.stack([r[keep] + i0, c[keep] + i0], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component label per node of an undirected graph given as pairs."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _phash_pairs(df: pd.DataFrame, threshold: int) -> np.ndarray:
    """Near-duplicate pairs (row positions) among rows whose hashes have the same length."""
    ph = df["phash"].astype(str).to_numpy()
    lens = np.array([len(h) for h in ph])
    out = [np.zeros((0, 2), dtype=np.int64)]
    for length in sorted(set(lens.tolist()) - {0}):
        idx = np.flatnonzero(lens == length)
        p = near_pairs(hash_words(list(ph[idx])), threshold)
        out.append(idx[p])
    return np.concatenate(out)


def _key_pairs(values: pd.Series) -> np.ndarray:
    """Pairs linking rows that share a non-empty key (chain: each to the first)."""
    v = values.fillna("").astype(str)
    v = v[v != ""]
    codes = pd.Series(np.arange(len(values)), index=values.index)[v.index]
    first = codes.groupby(v).transform("first")
    sel = first != codes
    return np.stack([first[sel].to_numpy(), codes[sel].to_numpy()], axis=1).astype(np.int64)


def conflicting_labels(df: pd.DataFrame) -> pd.Series:
    """Boolean mask of rows whose bytes (sha256) also occur with another label."""
    return df.groupby("sha256")["label"].transform("nunique") > 1


def exact_duplicates(df: pd.DataFrame) -> pd.Series:
    """Path of the kept copy for every redundant exact duplicate ("" for kept rows).

    The kept copy is the one with the most metadata (a subject id the source gave, not
    an inferred group, then a lesion mask), ties broken by the first path; call after
    removing conflicting labels. (A planted/accidental copy without sidecar entry
    thus never displaces the documented original.)
    """
    given = ~df["subject_source"].fillna("").astype(str).isin(["", *INFERRED_SUBJECT_SOURCES])
    meta = -(given.astype(int) * 2 + (df["mask_path"].fillna("").astype(str) != "").astype(int))
    order = df.assign(_meta=meta).sort_values(["_meta", "path"], kind="stable")
    first = order.groupby("sha256")["path"].transform("first")
    kept = pd.Series("", index=df.index, dtype=object)
    dup = first != order["path"]
    kept[order.index[dup]] = first[dup]
    return kept


def near_groups(df: pd.DataFrame, threshold: int) -> pd.Series:
    """Component root per row (record_id of its first member by path), same index."""
    if df.empty:
        return pd.Series([], dtype=object, index=df.index)
    d = df.reset_index(drop=True)
    lab = components(len(d), _phash_pairs(d, threshold))
    roots = d.assign(_c=lab).sort_values("path").groupby("_c")["record_id"].first()
    return pd.Series(roots.loc[lab].to_numpy(), index=df.index, dtype=object)


def source_leaks(df: pd.DataFrame, threshold: int) -> pd.Series:
    """Rows that share near-duplicate images or a subject with a *different* source split.

    Returns, for every row of such a cross-split component, the most held-out
    split in the component ("" for rows of clean components). Rows without a
    source split do not take part.
    """
    res = pd.Series("", index=df.index, dtype=object)
    has = df["source_split"].fillna("").astype(str) != ""
    d = df[has].reset_index()
    if d.empty:
        return res
    subj = d["subject"].where(~d["subject_source"].isin(INFERRED_SUBJECT_SOURCES), "")
    pairs = np.concatenate([_phash_pairs(d, threshold), _key_pairs(subj)])
    lab = components(len(d), pairs)
    d["_c"] = lab
    n_splits = d.groupby("_c")["source_split"].transform("nunique")
    best = d.groupby("_c")["source_split"].transform(
        lambda s: min(s, key=lambda x: _HELD_OUT.get(x, 9))
    )
    bad = n_splits > 1
    res.loc[d.loc[bad, "index"].to_numpy()] = best[bad].to_numpy()
    return res


def raise_leaks(df: pd.DataFrame, best: pd.Series) -> None:
    """Raise :class:`LeakageError` naming every file of a cross-split component."""
    bad = df[best != ""].sort_values("path")
    if len(bad):
        lines = [f"{r.source_split}: {r.path}" for r in bad.itertuples()]
        raise LeakageError(
            f"the source puts duplicates/subjects into several of its splits ({len(bad)} files):\n"
            + "\n".join(lines[:50]),
            offenders=list(bad["path"]),
        )
