"""C-Score: confidence-weighted intra-class explanation consistency (paper 004, §3.2.2).

Definition implemented (the project's issue text, paper 004 Eqs. 1–6). For class k at
checkpoint t, with heatmaps min-max normalised to [0, 1]:

* gold list (Eq. 1) ``G_k = {i : y_i = k, argmax_c p_ic = k, p_ik ≥ τ}``; it can be
  anchored to a reference checkpoint instead (paper 004 §3.4 anchors it to the final
  epoch) by passing ``reference_probs`` (gold list computed from them) or a
  precomputed boolean ``gold`` mask (then ``G_k = {i : gold_i, y_i = k}``);
* intensity emphasis (Eq. 3) ``Ĥ = H^γ``;
* soft-IoU (Eq. 2) ``sIoU(A, B) = Σ min(A, B) / Σ max(A, B)`` over all pixels/voxels,
  0 when both maps are all-zero;
* confidence weights (Eq. 4) ``w_i = p_ik / Σ_{j∈G_k} p_jk`` — ``p`` is always the
  evaluated checkpoint's ``probs``, also when the gold list is anchored;
* per class (Eq. 5) ``C_k = Σ_{i<j} w_i w_j sIoU(Ĥ_i, Ĥ_j) / Σ_{i<j} w_i w_j`` over
  pairs in ``G_k``; ``C_k = 0`` and k is flagged ``empty`` when ``|G_k| < 2`` (or when
  every pair weight is 0, possible only with ``τ = 0``);
* global (Eq. 6) ``C = Σ_k n_k C_k / Σ_k n_k`` with ``n_k = |G_k|`` (``weighting="gold"``,
  default) or the class's test support ``n_k = |{i : y_i = k}|`` (``"support"``); 0 when
  ``Σ_k n_k = 0``. Flagged classes enter with ``C_k = 0`` and their ``n_k`` (so a
  singleton gold list weighs 1 under "gold"); ``exclude_empty=True`` drops them.

With many classes a high ``τ`` empties gold lists early in training (17 classes: few
images per class pass ``p ≥ 0.5``), and the paper's global score then counts those classes
as ``C_k = 0``. The paper's definition stays the score (``global_score``); every result
also carries the global score without the flagged (empty or singleton-gold) classes,
``global_nonempty`` (this project's addition, NaN when no class has a gold pair), and how
many classes have an empty (``n_empty``) and a singleton (``n_singleton``) gold list.

Classes are ``0 .. K−1`` with ``K = probs.shape[1]`` (a sigmoid binary model: pass
``[1 − p, p]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from brainxai.xai._arrays import is_torch, to_numpy
from brainxai.xai.minmax import minmax_normalise
from brainxai.xai.softiou import pairwise_soft_iou

WEIGHTINGS = ("gold", "support")


@dataclass(frozen=True)
class CScoreResult:
    """C-Score of one checkpoint: per class (Eq. 5), global (Eq. 6) and gold-list sizes."""

    per_class: dict[int, float]
    global_score: float
    gold_size: dict[int, int]
    empty: frozenset[int]
    support: dict[int, int]
    weighting: str
    tau: float
    gamma: float
    #: Eq. 6 over the classes with a gold pair only (NaN when there is none).
    global_nonempty: float = float("nan")

    @property
    def n_empty(self) -> int:
        """Classes whose gold list is empty."""
        return sum(1 for n in self.gold_size.values() if n == 0)

    @property
    def n_singleton(self) -> int:
        """Classes whose gold list holds one image (no pair: ``C_k`` undefined)."""
        return sum(1 for n in self.gold_size.values() if n == 1)


def gold_mask(labels: Any, probs: Any, tau: float = 0.5) -> np.ndarray:
    """Eq. 1 membership for every sample: ``argmax p_i = y_i`` and ``p_{i, y_i} ≥ τ``."""
    y = to_numpy(labels).astype(np.int64)
    p = to_numpy(probs, dtype=np.float64)
    _check_labels_probs(y, p)
    conf = p[np.arange(len(y)), y]
    return (p.argmax(axis=1) == y) & (conf >= tau)


def class_cscore(sim: np.ndarray, conf: np.ndarray) -> float | None:
    """Eq. 5 from a gold list's (n, n) soft-IoU matrix and its confidences p_ik.

    Returns None when fewer than 2 members or all pair weights are 0 (flag empty).
    """
    n = len(conf)
    if n < 2:
        return None
    w = conf / conf.sum() if conf.sum() > 0 else conf
    iu, ju = np.triu_indices(n, k=1)
    pw = w[iu] * w[ju]
    den = float(pw.sum())
    if den <= 0:
        return None
    return float((pw * sim[iu, ju]).sum() / den)


def cscore(
    maps: Any,
    labels: Any,
    probs: Any,
    tau: float = 0.5,
    gamma: float = 2.0,
    weighting: str = "gold",
    *,
    reference_probs: Any = None,
    gold: Any = None,
    normalise: bool = True,
    exclude_empty: bool = False,
    device: Any = None,
    method: str = "auto",
) -> CScoreResult:
    """C-Score of heatmaps ``maps`` (N, H, W) or (N, D, H, W) at one checkpoint.

    ``labels`` (N,) ints, ``probs`` (N, K) class probabilities of this checkpoint.
    ``reference_probs`` (N, K) or ``gold`` (N,) bool anchor the gold list (Eq. 1) to a
    reference checkpoint; at most one may be given. ``normalise`` applies per-map
    min-max first (skip only for maps already in [0, 1]). ``device``/``method`` are
    passed to :func:`brainxai.xai.softiou.pairwise_soft_iou`. numpy or torch inputs.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if reference_probs is not None and gold is not None:
        raise ValueError("give reference_probs or gold, not both")
    y = to_numpy(labels).astype(np.int64)
    p = to_numpy(probs, dtype=np.float64)
    _check_labels_probs(y, p)
    if len(maps) != len(y):
        raise ValueError(f"{len(maps)} maps but {len(y)} labels")
    if gold is not None:
        member = to_numpy(gold).astype(bool)
        if member.shape != y.shape:
            raise ValueError(f"gold must be ({len(y)},) bool, got {member.shape}")
    else:
        member = gold_mask(y, p if reference_probs is None else reference_probs, tau)

    per_class: dict[int, float] = {}
    gold_size: dict[int, int] = {}
    support: dict[int, int] = {}
    empty: set[int] = set()
    for k in range(p.shape[1]):
        idx = np.flatnonzero(member & (y == k))
        gold_size[k] = len(idx)
        support[k] = int((y == k).sum())
        value = None
        if len(idx) >= 2:
            sim = pairwise_soft_iou(_emphasised(maps, idx, gamma, normalise), device, None, method)
            value = class_cscore(sim, p[idx, k])
        if value is None:
            empty.add(k)
        per_class[k] = 0.0 if value is None else value

    n = gold_size if weighting == "gold" else support
    glob = _global(per_class, n, [k for k in per_class if not (exclude_empty and k in empty)])
    kept = [k for k in per_class if k not in empty]
    nonempty = _global(per_class, n, kept) if kept else float("nan")
    return CScoreResult(
        per_class=per_class,
        global_score=float(glob),
        gold_size=gold_size,
        empty=frozenset(empty),
        support=support,
        weighting=weighting,
        tau=float(tau),
        gamma=float(gamma),
        global_nonempty=float(nonempty),
    )


def _global(per_class: dict[int, float], n: dict[int, int], keys: list[int]) -> float:
    """Eq. 6 over ``keys``: ``Σ n_k C_k / Σ n_k`` (0 when the weights sum to 0)."""
    total = sum(n[k] for k in keys)
    return sum(n[k] * per_class[k] for k in keys) / total if total > 0 else 0.0


def _emphasised(maps: Any, idx: np.ndarray, gamma: float, normalise: bool) -> Any:
    """Select gold maps, min-max normalise (optional) and apply Ĥ = H^γ (Eq. 3)."""
    if is_torch(maps):
        import torch

        sub = maps[torch.as_tensor(idx, device=maps.device)]
        sub = sub if sub.is_floating_point() else sub.float()
    else:
        sub = np.asarray(maps)[idx]
        sub = sub if np.issubdtype(sub.dtype, np.floating) else sub.astype(np.float32)
    if normalise:
        sub = minmax_normalise(sub)
    return sub if gamma == 1 else sub**gamma


def _check_labels_probs(y: np.ndarray, p: np.ndarray) -> None:
    if y.ndim != 1 or p.ndim != 2 or len(y) != len(p):
        raise ValueError(f"labels must be (N,) and probs (N, K); got {y.shape}, {p.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got [{y.min()}, {y.max()}]")
