"""Toy data for the SSL tests: a tiny two-class image cache built in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainxai.ssl.cache import Cache


def toy_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a dim disc; class 1: a bright bar; random position and noise (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs = np.zeros((n, size, size), np.float32)
    labels = np.arange(n) % 2
    for i, c in enumerate(labels):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        if c == 0:
            imgs[i] = 90 * (((yy - cy) ** 2 + (xx - cx) ** 2) < (0.25 * size) ** 2)
        else:
            imgs[i] = 230 * ((abs(yy - cy) < 0.08 * size) & (abs(xx - cx) < 0.35 * size))
        imgs[i] += rng.normal(0, 8, (size, size))
    return np.clip(imgs, 0, 255).astype(np.uint8), labels


def toy_cache(n_train: int = 32, n_val: int = 16, size: int = 40, seed: int = 0) -> Cache:
    images, labels = toy_images(n_train + n_val, size, seed)
    split = ["train"] * n_train + ["val"] * n_val
    index = pd.DataFrame(
        {
            "key": [f"r{i}" for i in range(len(split))],
            "record_id": [f"r{i}" for i in range(len(split))],
            "kind": "2d",
            "split": split,
            "label": [f"class{c}" for c in labels],
            "ok": True,
            "pretrain": [s == "train" for s in split],
            "bank": [s == "train" for s in split],
            "query": [s == "val" for s in split],
        }
    )
    return Cache(images, index)
