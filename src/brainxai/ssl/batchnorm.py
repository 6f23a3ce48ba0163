"""Precise BatchNorm statistics: re-estimate every BN layer's running mean and variance.

A network trained for few steps (or never, a random init) is evaluated with running
statistics that are still largely their initial values (mean 0, variance 1, momentum 0.1
per step): predictions collapse onto a few classes although the weights are sound
(``shared/PITFALLS.md``). "Precise BN" (Wu & Johnson 2021, *Rethinking "Batch" in
BatchNorm*, §3) fixes the weights and recomputes the statistics as the average over
batches of the data the model is evaluated like:

    mu = (1/B) sum_b mean_b(x),    sigma^2 = (1/B) sum_b var_b(x)   (unbiased per batch)

which PyTorch computes when a layer's ``momentum`` is ``None`` (cumulative average) after
``reset_running_stats()``. Here the images are the *training* images seen through the
evaluation (centre) view, never validation or test images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from brainxai.ssl.augment import center_view


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``module`` (1-, 2- and 3-D)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(
    module: nn.Module,
    images: np.ndarray,
    size: int,
    batch_size: int,
    device: torch.device,
    max_images: int = 0,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> int:
    """Recompute the BN statistics of ``module`` on uint8 ``images`` (N, H, W).

    ``rows`` restricts them to those rows (e.g. the training split of a memmapped cache,
    read batch by batch, never copied whole). Uses at most ``max_images`` of them (a
    seeded subset; 0 = all), in batches of
    ``batch_size`` of near-equal size (so the cumulative average equals the mean over
    batches). Weights are untouched; the module's mode and each layer's momentum are
    restored. Returns the number of images used (0 when the module has no BN layer).
    """
    layers = batchnorm_layers(module)
    idx = np.arange(len(images)) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
    if not layers or len(idx) == 0:
        return 0
    if max_images and len(idx) > max_images:
        pick = np.random.default_rng(seed).choice(len(idx), size=max_images, replace=False)
        idx = idx[np.sort(pick)]
    # near-equal batches, none of a single image (BN needs two values per channel)
    batches = np.array_split(idx, max(1, -(-len(idx) // batch_size)))
    batches = [b for b in batches if len(b) >= 2] or [idx]
    was_training = module.training
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    try:
        for b in batches:
            x = torch.from_numpy(np.ascontiguousarray(images[b])).to(device)
            module(center_view(x, size))
    finally:
        for m, mom in zip(layers, momenta, strict=True):
            m.momentum = mom
        module.train(was_training)
    return int(sum(len(b) for b in batches))
