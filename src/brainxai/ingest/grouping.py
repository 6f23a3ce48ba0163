"""Images without patient ids (issue 17.4): the policy, the grouping and the optimism.

The public 17-class Kaggle set has no patient ids. Perceptual-hash groups only join near
copies of one image, so a patient's T1/T2/T1C+ images and neighbouring slices can land on
both sides of a split. ``ingest.config.subject_grouping.policy`` decides what happens to
images whose source gives no patient id:

``fail``
    stop ingestion (:class:`~brainxai.splits.LeakageError` naming the files): supply a
    sidecar with patient ids, or choose another policy;
``group`` (default)
    patient = a near-duplicate cluster of image embeddings (below), joined with the
    perceptual-hash groups and with the sidecar ids of the cluster's other images;
``allow``
    the perceptual-hash groups as patients (the behaviour before issue 17): leakage is
    possible and the data card and the report say so.

The embedding is the head silhouette (foreground above ``foreground_level`` of the image's
maximum, holes filled) of the image padded to a square and area-downsampled to
``embedding_size``², centred and l2-normalised. Why not pixels or a network: a patient's
T1, T2 and T1C+ images differ in contrast (CSF dark or bright) while their outline - head
shape, pose, field of view - is the same; intensity embeddings put two patients' T1 images
closer than one patient's T1 and T2. Measured on a synthetic replica (48 subjects, 408
images, ``tests/test_ingest_grouping.py`` builds a smaller one): ROC AUC of cosine
similarity for same- vs different-patient pairs 0.967 (silhouette), 0.951 (gradient
magnitude), 0.909 (32² pixels), 0.888 (random-weight ResNet-18 features, whose cosines are
all > 0.95). No weights are downloaded.

Clusters: within each (dataset, tumour group, source split) - a patient has one diagnosis
and the source's own split is kept - each image is linked to its ``neighbours`` most similar
images whose cosine similarity is at least ``min_similarity``; clusters are the connected
components (:func:`scipy.sparse.csgraph.connected_components`) of those links together
with the perceptual-hash links. A k-nearest-neighbour graph rather than one global
threshold: on the replica a threshold either chained whole groups into one cluster or split
most patients; k = 3 left 0.9 % of the patients on both sides of a random split by cluster
(vs 56 % for 1 neighbour) at the price of merging some patients (25 clusters for 48).
Over-merging is the safe direction, but a merged cluster is one unit of the split: the data
card shows the cluster sizes.

The expected optimism of a split (:func:`split_optimism`) compares, per dataset, each test
image's most similar training image (cross-split nearest neighbour) with its most similar
other test image (within-split): when the cross-split similarities reach the within-split
ones, a test image has a training "twin" - the signature of patient leakage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from brainxai.atomic import write_atomic
from brainxai.config import MappingConfig
from brainxai.ingest.dedup import INFERRED_SUBJECT_SOURCES, components
from brainxai.splits import LeakageError

POLICIES = ("fail", "group", "allow")
#: ``subject_source`` of subjects inferred from the images (not given by the source).
PHASH_SOURCE, EMBEDDING_SOURCE = INFERRED_SUBJECT_SOURCES
#: Quantiles of the nearest-neighbour similarity distributions in the data card.
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}
#: Rows of the similarity matrix computed at once (memory: rows x candidates floats).
BLOCK_ROWS = 512


@dataclass(frozen=True)
class SubjectGroupingConfig(MappingConfig):
    """``ingest.config.subject_grouping`` (see the module doc)."""

    policy: str = "group"
    embedding_size: int = 32
    foreground_level: float = 0.1
    neighbours: int = 3
    min_similarity: float = 0.9

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"subject_grouping.policy must be one of {POLICIES}")
        if self.embedding_size < 2 or self.neighbours < 1:
            raise ValueError("subject_grouping: embedding_size >= 2 and neighbours >= 1")
        if not 0 <= self.foreground_level < 1 or not -1 <= self.min_similarity <= 1:
            raise ValueError(
                "subject_grouping: foreground_level in [0, 1), min_similarity in [-1, 1]"
            )


# ------------------------------------------------------------------------- embedding


def silhouette(gray: np.ndarray, level: float) -> np.ndarray:
    """Foreground (``> level × max``) with its holes filled, bool."""
    g = np.asarray(gray, dtype=np.float32)
    return ndimage.binary_fill_holes(g > level * float(g.max()))


def square_pad(a: np.ndarray) -> np.ndarray:
    """``a`` centred on a zero square canvas of side ``max(h, w)``."""
    h, w = a.shape
    s = max(h, w)
    out = np.zeros((s, s), dtype=np.float32)
    out[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = a
    return out


def embed_gray(gray: np.ndarray, cfg: SubjectGroupingConfig) -> np.ndarray:
    """The silhouette embedding of a grey image: ``(embedding_size², )`` float32, centred,
    unit norm (all zeros for an image without a foreground)."""
    sil = square_pad(silhouette(gray, cfg.foreground_level).astype(np.float32))
    size = (cfg.embedding_size, cfg.embedding_size)
    v = np.asarray(Image.fromarray(sil).resize(size, Image.Resampling.BOX), np.float32).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def embed_file(path: str | Path, cfg: SubjectGroupingConfig) -> np.ndarray:
    """:func:`embed_gray` of a 2D image file (converted to 8-bit grey)."""
    with Image.open(path) as im:
        return embed_gray(np.asarray(im.convert("L"), dtype=np.float32), cfg)


def save_embeddings(path: str | Path, emb: dict[str, np.ndarray]) -> Path:
    """Write ``{record_id: embedding}`` as ``.npz`` (arrays ``record_id``, ``embedding``)."""
    ids = np.array(sorted(emb), dtype=str)
    mat = np.stack([emb[r] for r in ids]).astype(np.float32) if len(ids) else np.zeros((0, 0))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, record_id=ids, embedding=mat)

    return write_atomic(path, write)


def load_embeddings(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """The union of :func:`save_embeddings` files."""
    out: dict[str, np.ndarray] = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as z:
            out.update(zip(z["record_id"].tolist(), z["embedding"], strict=True))
    return out


# ------------------------------------------------------------------------- clusters


def knn_pairs(emb: np.ndarray, neighbours: int, min_similarity: float) -> np.ndarray:
    """Pairs ``(i, j)``: ``j`` is one of the ``neighbours`` most similar other rows of ``i``
    (cosine; ties by row order) and their similarity is at least ``min_similarity``."""
    n = len(emb)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    k = min(neighbours, n - 1)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(n), k)
    cols = order.ravel()
    keep = sim[rows, cols] >= min_similarity
    return np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)


def key_pairs(keys: Sequence[str]) -> np.ndarray:
    """Pairs linking the rows that share a non-empty key (each to the key's first row)."""
    first: dict[str, int] = {}
    out = []
    for i, k in enumerate(keys):
        if not k:
            continue
        if k in first:
            out.append((first[k], i))
        else:
            first[k] = i
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def embedding_clusters(
    emb: np.ndarray, strata: Sequence[str], links: Sequence[str], cfg: SubjectGroupingConfig
) -> np.ndarray:
    """Cluster label per row: components of the kNN links within each stratum plus the
    rows sharing a non-empty ``links`` key (e.g. a perceptual-hash group)."""
    strata = np.asarray(strata, dtype=object)
    pairs = [key_pairs([str(v) for v in links])]
    for s in pd.unique(strata):
        idx = np.flatnonzero(strata == s)
        p = knn_pairs(emb[idx], cfg.neighbours, cfg.min_similarity)
        pairs.append(idx[p])
    return components(len(emb), np.concatenate(pairs))


def apply_policy(
    df: pd.DataFrame, emb: dict[str, np.ndarray], cfg: SubjectGroupingConfig
) -> tuple[pd.DataFrame, list[str]]:
    """Subjects of the rows whose source gave none (``subject_source == "phash_group"``
    after :func:`brainxai.ingest.core.deduplicate`), by ``cfg.policy``; ``emb`` maps
    record ids of 2D rows to embeddings. Returns (rows, notes).

    ``group``: an image without id whose cluster holds images with ids takes the id of the
    most similar of them (on a replica with ids for one sequence of three, 98 % of the
    borrowed ids were the true patient's; the cluster's most frequent id: 82 %); a cluster
    without ids becomes the patient ``eg-<record id of its first image by path>``."""
    missing = (df["subject_source"].astype(str) == PHASH_SOURCE).to_numpy()
    if not missing.any() or cfg.policy == "allow":
        return df, []
    if cfg.policy == "fail":
        bad = df.loc[missing, "path"].astype(str).tolist()
        raise LeakageError(
            f"{len(bad)} images have no patient id (e.g. {bad[:3]}) and "
            "ingest.config.subject_grouping.policy is 'fail': supply a sidecar with patient "
            "ids, or set the policy to 'group' (embedding clusters) or 'allow'",
            offenders=bad,
        )
    rid = df["record_id"].astype(str).to_numpy()
    has = np.array([r in emb for r in rid])
    rows = np.flatnonzero(has)
    notes = []
    if (missing & ~has).any():
        notes.append(
            f"{int((missing & ~has).sum())} images without patient id and without an "
            "embedding (not 2D) keep their perceptual-hash groups"
        )
    if not (missing & has).any():
        return df, notes
    sub = df.iloc[rows]
    strata = (
        sub["dataset"].astype(str) + "|" + sub["group"].astype(str) + "|"
        + sub["source_split"].fillna("").astype(str)
    ).to_numpy()  # fmt: skip
    vecs = np.stack([emb[r] for r in rid[rows]])
    labels = embedding_clusters(vecs, strata, sub["dup_group"].fillna("").astype(str), cfg)
    out = df.copy()
    known = ~missing[rows]
    subj_col, src_col = out.columns.get_loc("subject"), out.columns.get_loc("subject_source")
    for c in np.unique(labels[~known]):
        in_c = labels == c
        todo, given = np.flatnonzero(in_c & ~known), np.flatnonzero(in_c & known)
        if len(given):  # each takes the id of its most similar image with an id (ties: first)
            nearest = given[np.argmax(vecs[todo] @ vecs[given].T, axis=1)]
            subjects = out.iloc[rows[nearest], subj_col].astype(str).to_numpy()
        else:  # the record id of the cluster's first image by path
            first = out.iloc[rows[in_c]].sort_values("path")["record_id"].iloc[0]
            subjects = np.full(len(todo), f"eg-{first}", dtype=object)
        out.iloc[rows[todo], subj_col] = subjects
        out.iloc[rows[todo], src_col] = EMBEDDING_SOURCE
    n = int((missing & has).sum())
    n_clusters = len(np.unique(labels[~known]))
    notes.append(
        f"{n} images without patient id grouped into {n_clusters} embedding clusters "
        f"(policy 'group': {cfg.neighbours} nearest neighbours, cosine >= {cfg.min_similarity})"
    )
    return out, notes


# -------------------------------------------------------------------------- optimism


def nearest_similarity(queries: np.ndarray, pool: np.ndarray, exclude_self: bool) -> np.ndarray:
    """Largest cosine similarity of each query row to a ``pool`` row (blocks of rows);
    ``exclude_self``: queries are the pool itself, the diagonal is left out."""
    if len(queries) == 0 or len(pool) == 0 or (exclude_self and len(pool) < 2):
        return np.full(len(queries), np.nan)
    out = np.empty(len(queries))
    for s in range(0, len(queries), BLOCK_ROWS):
        sim = queries[s : s + BLOCK_ROWS] @ pool.T
        if exclude_self:
            i = np.arange(sim.shape[0])
            sim[i, s + i] = -np.inf
        out[s : s + BLOCK_ROWS] = sim.max(axis=1)
    return out


def _quantiles(x: np.ndarray) -> dict[str, float | None]:
    x = x[~np.isnan(x)]
    if not len(x):
        return dict.fromkeys([*QUANTILES, "max"])
    return {k: round(float(np.quantile(x, q)), 4) for k, q in QUANTILES.items()} | {
        "max": round(float(x.max()), 4)
    }


def split_optimism(
    manifest: pd.DataFrame, emb: dict[str, np.ndarray], cfg: SubjectGroupingConfig
) -> dict[str, Any]:
    """Per dataset with embeddings: the distribution of each test image's most similar
    training image (``test_to_train``) beside its most similar other test image
    (``within_test``); the gap of their medians (within − cross: patients kept apart leave
    the training images less similar than a test image's own split-mates; near 0 or below,
    a test image has a training twin as often as a split-mate - the signature of leakage);
    and the share of test images whose most similar image is a training image
    (``test_nearest_in_train``) beside what it would be if similarity said nothing about
    the split (``chance``: ``n_train / (n_train + n_test − 1)``, an image-level split).
    ``cfg`` is the grouping configuration (kept for the report)."""
    out: dict[str, Any] = {}
    rid = manifest["record_id"].astype(str)
    for dataset, part in manifest[rid.isin(emb)].groupby("dataset", sort=True):
        split = part["split"].astype(str)
        test_ids = part.loc[split == "test", "record_id"].astype(str)
        train_ids = part.loc[split == "train", "record_id"].astype(str)
        test = np.stack([emb[r] for r in test_ids]) if len(test_ids) else np.zeros((0, 1))
        train = np.stack([emb[r] for r in train_ids]) if len(train_ids) else np.zeros((0, 1))
        cross = nearest_similarity(test, train, exclude_self=False)
        within = nearest_similarity(test, test, exclude_self=True)
        q_cross, q_within = _quantiles(cross), _quantiles(within)
        gap = (
            None
            if q_cross["median"] is None or q_within["median"] is None
            else round(q_within["median"] - q_cross["median"], 4)
        )
        both = ~np.isnan(cross) & ~np.isnan(within)
        n_test, n_train = len(test_ids), len(train_ids)
        inferred = part["subject_source"].astype(str).isin(INFERRED_SUBJECT_SOURCES)
        out[str(dataset)] = {
            "n_test": n_test,
            "n_train": n_train,
            "images_without_ids": int(inferred.sum()),
            "test_to_train": q_cross,
            "within_test": q_within,
            "median_gap": gap,
            "test_nearest_in_train": round(float(np.mean(cross[both] > within[both])), 4)
            if both.any()
            else None,
            "chance": round(n_train / (n_train + n_test - 1), 4) if n_test > 1 else None,
        }
    return out


def grouping_report(
    manifest: pd.DataFrame, emb: dict[str, np.ndarray], cfg: SubjectGroupingConfig
) -> dict[str, Any]:
    """The data card's ``subject_grouping`` section: the policy and its settings, how many
    images had no patient id and how they were grouped (cluster count and largest
    cluster), and the expected optimism of the split (:func:`split_optimism`)."""
    src = manifest["subject_source"].astype(str)
    inferred = manifest[src.isin(INFERRED_SUBJECT_SOURCES)]
    sizes = inferred.groupby("subject").size()
    return {
        "policy": cfg.policy,
        "settings": {
            "embedding": f"head silhouette, {cfg.embedding_size}x{cfg.embedding_size}, "
            f"foreground > {cfg.foreground_level} x max",
            "neighbours": cfg.neighbours,
            "min_similarity": cfg.min_similarity,
        },
        "images_without_ids": len(inferred),
        "datasets_without_ids": sorted(set(inferred["dataset"].astype(str))),
        "grouped_by": {
            str(k): int(v) for k, v in inferred.groupby("subject_source").size().items()
        },
        "inferred_patients": len(sizes),
        "largest_inferred_patient": int(sizes.max()) if len(sizes) else 0,
        "optimism": split_optimism(manifest, emb, cfg),
    }
