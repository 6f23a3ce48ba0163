"""Leakage checks run before any training: no test patient and no near-duplicate of a test
image among the images a run trains on; a violation raises :class:`LeakageError`.

Near duplicates are found on the decoded cache: each image is area-downsampled to
``size`` x ``size``, centred and l2-normalised, so the cosine similarity of two images is
their Pearson correlation at that resolution; a train/test pair above ``threshold`` is a
near duplicate (a re-encoded, re-scaled or lightly edited copy of the same slice).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from brainxai.splits import LeakageError, check_subset_leakage


def signatures(images: np.ndarray, size: int, batch: int = 512) -> np.ndarray:
    """Centred, l2-normalised ``size``^2 thumbnails (float32 ``(N, size*size)``)."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).float()[:, None]
        t = F.adaptive_avg_pool2d(x, size).flatten(1)
        t = t - t.mean(dim=1, keepdim=True)
        out.append(F.normalize(t, dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, size * size), np.float32)


def cross_similarity(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """Cosine similarity of every image of ``a`` with every image of ``b``, ``(len(a), len(b))``."""
    return signatures(a, size) @ signatures(b, size).T


def near_duplicates(sim: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, similarity)`` of a similarity matrix above ``threshold``."""
    ii, jj = np.nonzero(sim > threshold)
    return [(int(i), int(j), float(sim[i, j])) for i, j in zip(ii, jj, strict=True)]


def check_training_leakage(
    manifest: pd.DataFrame,
    index: pd.DataFrame,
    images: np.ndarray,
    train_record_ids: Iterable[str],
    size: int,
    threshold: float,
) -> dict[str, float]:
    """Fail loudly if a training record is linked to a non-training patient/duplicate group
    (:func:`~brainxai.splits.check_subset_leakage`) or near-duplicates a test image.

    ``index`` is the cache index (``record_id, split, row, ok``); returns what was checked.
    """
    used = sorted(set(map(str, train_record_ids)))
    check_subset_leakage(manifest, used, allowed_splits=("train",))
    ok = index[index["ok"]]
    train = ok[ok["record_id"].astype(str).isin(used)]
    test = ok[ok["split"] == "test"]
    sim = cross_similarity(images[train["row"].to_numpy()], images[test["row"].to_numpy()], size)
    pairs = near_duplicates(sim, threshold)
    if pairs:
        offenders = [
            f"{train['record_id'].iloc[i]}~{test['record_id'].iloc[j]} ({s:.4f})"
            for i, j, s in pairs
        ]
        raise LeakageError(
            f"{len(pairs)} training images are near duplicates (cosine > {threshold}) of test "
            f"images: {offenders[:10]}",
            offenders=offenders,
        )
    return {
        "n_train_checked": len(train),
        "n_test_checked": len(test),
        "max_train_test_similarity": float(sim.max()) if sim.size else float("nan"),
    }
