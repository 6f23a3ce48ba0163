"""The linear probe's embedding cache: the backbone runs once per image, not once per epoch,
and a probe run on cached embeddings is >= 20x faster than re-embedding every epoch
(issue 6; the full measurement is benchmarks/bench_finetune.py)."""

from __future__ import annotations

import time

import numpy as np
import torch

from brainxai.finetune.config import ProbeConfig
from brainxai.finetune.probe import embed_images, train_linear_probe
from brainxai.ssl import build_backbone

EPOCHS = 10


def test_backbone_runs_once_per_image_and_cached_probe_is_20x_faster():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (96, 56, 56), dtype=np.uint8)
    y = np.arange(96) % 4
    backbone = build_backbone("resnet18", 0.45, 0.23).eval()
    seen = []
    backbone.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    cpu = torch.device("cpu")
    cfg = ProbeConfig(epochs=EPOCHS, batch_size=32, checkpoint_epochs=(EPOCHS,))

    feats = embed_images(backbone, images, 48, 32, cpu)  # once per initialisation
    assert sum(seen) == len(images)

    def head_only() -> None:
        train_linear_probe(feats[:64], y[:64], feats[64:], y[64:], 4, cfg, seed=0)

    def reembed_every_epoch() -> None:
        one = ProbeConfig(epochs=1, batch_size=32, checkpoint_epochs=(1,))
        for _ in range(EPOCHS):
            f = embed_images(backbone, images, 48, 32, cpu)
            train_linear_probe(f[:64], y[:64], f[64:], y[64:], 4, one, seed=0)

    seen.clear()
    head_only()
    assert seen == [], "a probe run on cached embeddings must not call the backbone"

    def best_of(fn, n=3) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    cached, baseline = best_of(head_only), best_of(reembed_every_epoch, 1)
    assert sum(seen) >= EPOCHS * len(images)
    assert baseline / cached >= 20, (baseline, cached)
