"""Per-checkpoint explanation runs: heatmaps of every method written to disk, and the
model-parameter randomisation check (Adebayo et al. 2018, cited in paper 004 §1.2).

:func:`explain_checkpoint` is what the tracking stage calls once per checkpoint; the
maps land in ``out_dir/<checkpoint>__<method>.npz`` (:mod:`brainxai.xai.heatmap_store`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from brainxai.xai.cams import CamConfig, Explainer, Heatmaps, frozen_copy
from brainxai.xai.heatmap_store import HeatmapRecord, heatmap_filename, save_heatmaps
from brainxai.xai.randomisation import RandomisationSimilarity, flag, randomisation_similarity


def explain_checkpoint(
    model: nn.Module,
    images: Any,
    labels: Any,
    record_ids: Sequence[str],
    checkpoint_id: str,
    methods: Sequence[str],
    out_dir: str | Path,
    config: CamConfig | None = None,
    device: Any = None,
    epoch: int | None = None,
    explain: str = "label",
) -> dict[str, Path]:
    """Heatmaps of ``methods`` for one checkpoint; returns {method: npz path}. The CAMs
    among them share one forward/backward pass (:meth:`Explainer.heatmaps_many`).

    ``explain="label"`` explains each image's true class (what the C-Score's gold list
    and the ground-truth masks need); ``"predicted"`` its predicted class.
    """
    if explain not in ("label", "predicted"):
        raise ValueError("explain must be 'label' or 'predicted'")
    y = np.asarray(labels, dtype=np.int64)
    ids = np.asarray(record_ids).astype(str)
    out: dict[str, Path] = {}
    with Explainer(model, config, device) as ex:
        maps = ex.heatmaps_many(images, methods, y if explain == "label" else None)
        for method, hm in maps.items():
            record = HeatmapRecord(
                checkpoint_id=checkpoint_id,
                method=method,
                maps=hm.maps,
                record_ids=ids,
                labels=y,
                probs=hm.probs,
                targets=hm.targets,
                epoch=epoch,
                layers=hm.layers,
                extra={"explain": explain, "config": ex.config.to_dict()},
            )
            out[method] = save_heatmaps(
                Path(out_dir) / heatmap_filename(checkpoint_id, method), record
            )
    return out


def randomised_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """Copy of ``model`` with every parameter re-initialised from a private generator seeded
    with ``seed``: convolutions and linear layers as their ``reset_parameters`` draws them
    (Kaiming-uniform, a = √5; bias U(±1/√fan_in)), normalisation layers to weight 1, bias
    0 and fresh running statistics, any other parameter from N(0, std of its trained
    values). The same values as ``reset_parameters`` after ``torch.manual_seed(seed)`` for
    such networks, without touching the global RNG: copies made in concurrent threads
    (the thread task runner) cannot interleave their draws.
    """
    clone = frozen_copy(model, next(model.parameters()).device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for m in clone.modules():
            own = dict(m.named_parameters(recurse=False))
            if own:
                _reinitialise(m, own, gen)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()


def _reinitialise(m: nn.Module, own: dict[str, nn.Parameter], gen: torch.Generator) -> None:
    """Draw ``m``'s own parameters again from ``gen`` (see :func:`randomised_copy`)."""
    if isinstance(m, nn.modules.conv._ConvNd | nn.Linear) and set(own) <= {"weight", "bias"}:
        w = torch.empty_like(m.weight, device="cpu", memory_format=torch.contiguous_format)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
        m.weight.copy_(w)
        if m.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            b = torch.empty_like(m.bias, device="cpu").uniform_(-bound, bound, generator=gen)
            m.bias.copy_(b)
        return
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    if isinstance(m, norms) and set(own) <= {"weight", "bias"}:
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.reset_running_stats()
        for name, p in own.items():
            p.fill_(1.0 if name == "weight" else 0.0)
        return
    for p in own.values():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        p.copy_(noise * p.detach().float().std().clamp_min(1e-3).cpu())


def randomisation_check(
    model: nn.Module,
    images: Any,
    method: str,
    targets: Any = None,
    config: CamConfig | None = None,
    device: Any = None,
    seed: int = 0,
    threshold: float = 0.5,
    on: str = "spearman",
) -> tuple[RandomisationSimilarity, bool, Heatmaps, Heatmaps]:
    """Maps of the trained and of a randomised copy, their similarity, and the flag
    (True = the method fails the sanity check: maps barely change with the weights).

    The randomised model explains the same ``targets`` (default: the trained model's
    predicted classes).
    """
    with Explainer(model, config, device) as ex:
        trained = ex.heatmaps(images, method, targets)
    with Explainer(randomised_copy(model, seed), config, device) as ex:
        random = ex.heatmaps(images, method, trained.targets)
    sim = randomisation_similarity(trained.maps, random.maps)
    return sim, flag(sim, threshold, on), trained, random
