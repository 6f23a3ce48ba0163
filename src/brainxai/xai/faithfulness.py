"""Faithfulness of a heatmap to the model it explains: deletion and insertion curves
(Petsiuk et al. 2018, RISE §4.1), the perturbation metrics paper 001's benchmark and
paper 004 (§2.2) name beside localisation ("correct") and consistency (C-Score).

For an image ``x``, its explained class ``k`` and a map ``m`` (N, *spatial), pixels are
ranked by ``m`` (largest first; ties by position). With ``P`` pixels and ``steps`` steps, at
step ``s`` the top ``n_s = round(s P / steps)`` pixels are

* **deletion**: replaced by ``baseline`` in ``x`` (every channel) - a faithful map makes the
  class probability ``p_k`` fall fast: **lower area = more faithful**;
* **insertion**: copied from ``x`` into a ``baseline`` image - ``p_k`` rises fast:
  **higher area = more faithful**.

The area under ``p_k`` against the fraction ``n_s / P`` is the trapezoid rule over the
``steps + 1`` points. ``p_k`` is the softmax probability (``[1 − σ, σ]`` for a single
logit). A **control** map - independent of the model - gives the reference a faithful map
must beat: a seeded uniform random ranking (:func:`random_maps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from brainxai.config import MappingConfig
from brainxai.xai.gradients import probs_from_logits


@dataclass(frozen=True)
class FaithfulnessConfig(MappingConfig):
    """Settings of the per-checkpoint deletion/insertion scores (``xai.faithfulness``)."""

    enabled: bool = True
    #: Perturbation steps (the curve has ``steps + 1`` points, from 0 to every pixel).
    steps: int = 16
    #: Value a deleted pixel takes, and the canvas insertion starts from.
    baseline: float = 0.0
    #: Images scored per checkpoint and method (the first ones of the stored maps); 0 = all.
    max_images: int = 64
    #: Perturbed images per forward pass (deleted and inserted copies together).
    batch_size: int = 32
    #: Also score a seeded random ranking (the control a faithful map must beat).
    random_control: bool = True
    seed: int = 0
    #: Which checkpoints are scored: ``all`` tracked ones, or each model's ``last`` (the
    #: report's faithfulness table reads the final checkpoint; ``last`` saves the rest).
    checkpoints: str = "all"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.max_images < 0:
            raise ValueError("faithfulness: steps, batch_size >= 1 and max_images >= 0")
        if self.checkpoints not in ("all", "last"):
            raise ValueError(f"faithfulness.checkpoints: 'all' or 'last', not {self.checkpoints!r}")


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """(N, P) int: each pixel's position in its map's descending order (0 = most
    relevant); ties keep the pixel order (stable)."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(len(flat))[:, None]
    ranks[rows, order] = np.arange(flat.shape[1])[None, :]
    return ranks


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """Pixels perturbed at each of the ``steps + 1`` points: ``round(s P / steps)``."""
    return np.rint(np.arange(steps + 1) * n_pixels / steps).astype(np.int64)


def perturbation_curves(
    model: nn.Module,
    images: torch.Tensor,
    classes: np.ndarray,
    maps: np.ndarray,
    steps: int,
    baseline: float = 0.0,
    batch_size: int = 32,
    device: Any = None,
) -> dict[str, np.ndarray]:
    """``{"fractions": (steps+1,), "deletion": (N, steps+1), "insertion": (N, steps+1)}``:
    ``p_k`` of every image at every step (``model`` in eval mode; ``images`` (N, C, *s))."""
    x = torch.as_tensor(images, dtype=torch.float32)
    n, spatial = len(x), tuple(x.shape[2:])
    if tuple(np.asarray(maps).shape) != (n, *spatial):
        raise ValueError(f"maps {np.asarray(maps).shape} do not match images {tuple(x.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n_pix = int(np.prod(spatial))
    ranks = torch.from_numpy(pixel_ranks(maps)).reshape(n, 1, *spatial)
    counts = step_counts(n_pix, steps)
    k = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    out = {"deletion": np.zeros((n, steps + 1)), "insertion": np.zeros((n, steps + 1))}
    # every (image, step) pair gives a deleted and an inserted input; batched over the pairs
    pairs = [(i, s) for i in range(n) for s in range(steps + 1)]
    per_pass = max(1, batch_size // 2)
    with torch.no_grad():
        for start in range(0, len(pairs), per_pass):
            chunk = pairs[start : start + per_pass]
            idx = torch.tensor([i for i, _ in chunk])
            top = torch.stack([ranks[i] < int(counts[s]) for i, s in chunk])  # (B, 1, *s)
            xi = x[idx]
            base = torch.full_like(xi, float(baseline))
            deleted = torch.where(top, base, xi)
            inserted = torch.where(top, xi, base)
            batch = torch.cat([deleted, inserted]).to(device)
            p = probs_from_logits(model(batch)).float().cpu()
            pk = p[torch.arange(len(batch)), k[idx].repeat(2)].numpy()
            for j, (i, s) in enumerate(chunk):
                out["deletion"][i, s] = pk[j]
                out["insertion"][i, s] = pk[len(chunk) + j]
    return {"fractions": counts / n_pix, **out}


def curve_auc(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Area under each curve (rows) over ``fractions`` (trapezoid rule)."""
    return np.trapezoid(np.asarray(curves, dtype=np.float64), np.asarray(fractions), axis=-1)


def random_maps(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Control maps: uniform noise, seeded (a ranking that knows nothing of the model)."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def faithfulness_scores(
    model: nn.Module,
    images: torch.Tensor,
    classes: np.ndarray,
    maps: np.ndarray,
    config: FaithfulnessConfig,
    device: Any = None,
) -> dict[str, Any]:
    """Mean deletion and insertion AUC of ``maps`` (and of the random control when
    configured) over the images; ``n`` images scored."""
    return faithfulness_scores_many(model, images, classes, {"": maps}, config, device)[""]


def faithfulness_scores_many(
    model: nn.Module,
    images: torch.Tensor,
    classes: np.ndarray,
    maps: dict[str, np.ndarray],
    config: FaithfulnessConfig,
    device: Any = None,
) -> dict[str, dict[str, Any]]:
    """:func:`faithfulness_scores` of several maps of the same images and classes (the
    methods of one checkpoint): the random control, which depends only on the images, the
    classes and the seed, is scored once and shared - the same numbers as one at a time."""
    if not maps:
        return {}
    sizes = {len(m) for m in maps.values()}
    if len(sizes) != 1:
        raise ValueError(f"maps of one set of images differ in length: {sorted(sizes)}")
    size = sizes.pop()
    n = size if config.max_images == 0 else min(config.max_images, size)
    x, k = images[:n], np.asarray(classes)[:n]
    head: dict[str, Any] = {"n": int(n), "steps": config.steps, "baseline": config.baseline}

    def aucs(mm: np.ndarray, suffix: str) -> dict[str, float]:
        c = perturbation_curves(
            model, x, k, mm, config.steps, config.baseline, config.batch_size, device
        )
        return {
            f"deletion_auc{suffix}": float(curve_auc(c["fractions"], c["deletion"]).mean()),
            f"insertion_auc{suffix}": float(curve_auc(c["fractions"], c["insertion"]).mean()),
        }

    own = {key: aucs(np.asarray(m, dtype=np.float32)[:n], "") for key, m in maps.items()}
    shape = np.asarray(next(iter(maps.values())))[:n].shape
    control = aucs(random_maps(shape, config.seed), "_random") if config.random_control else {}
    return {key: head | own[key] | control for key in maps}


#: Per-checkpoint columns of the faithfulness table (and of the trajectory's global rows).
SCORE_COLUMNS = ("deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random")


def faithfulness_summary(table: Any) -> dict[str, Any]:
    """Per family and method, at each run's final checkpoint: mean deletion / insertion AUC
    of the method and of the random control, and how many runs beat the control on both
    (``table``: one row per family, run, epoch, method with :data:`SCORE_COLUMNS`)."""
    if table is None or len(table) == 0:
        return {}
    last = table[table["epoch"] == table.groupby("run")["epoch"].transform("max")]
    out: dict[str, Any] = {}
    for (family, method), g in last.groupby(["family", "method"], sort=True):
        row: dict[str, Any] = {"runs": len(g)}
        for c in SCORE_COLUMNS:
            if c in g and g[c].notna().any():
                row[c] = round(float(g[c].mean()), 4)
        if {"deletion_auc_random", "insertion_auc_random"} <= set(g.columns):
            beats = (g["deletion_auc"] < g["deletion_auc_random"]) & (
                g["insertion_auc"] > g["insertion_auc_random"]
            )
            row["runs_beating_random"] = int(beats.sum())
        out.setdefault(str(family), {})[str(method)] = row
    return out
