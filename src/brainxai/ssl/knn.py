"""kNN monitor: how well frozen backbone features separate labelled held-out images.

Features of the whole (centre-resized) images are l2-normalised; each query is classified
by the similarity-weighted vote of its ``k`` nearest bank images, weights
``exp(sim / t)`` (Wu et al. 2018, eq. 9; ``lightly.utils.benchmarking.knn_predict``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import Tensor, nn

from brainxai.ssl.augment import center_view


@torch.no_grad()
def embed(
    backbone: nn.Module,
    images: np.ndarray,
    size: int,
    batch_size: int,
    device: torch.device,
    autocast: bool = False,
    channels_last: bool = False,
) -> Tensor:
    """l2-normalised features ``(N, D)`` (float32, on ``device``) of uint8 images (N, H, W)."""
    was_training = backbone.training
    backbone.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device)
            v = center_view(x, size)
            if channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out.append(backbone(v).float())
    finally:
        backbone.train(was_training)
    return F.normalize(torch.cat(out), dim=1)


def knn_accuracy(
    bank: Tensor,
    bank_labels: Tensor,
    query: Tensor,
    query_labels: Tensor,
    n_classes: int,
    k: int,
    temperature: float,
) -> float:
    """Top-1 accuracy of weighted kNN (features already l2-normalised)."""
    k = min(k, len(bank))
    pred = knn_predict(query, bank.T.contiguous(), bank_labels, n_classes, k, temperature)
    return float((pred[:, 0] == query_labels).float().mean())
