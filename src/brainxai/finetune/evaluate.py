"""Predictions of a classifier on cached images, and the model-selection score.

The evaluation view is the whole image resized to the training size
(:func:`brainxai.ssl.augment.center_view`), as in the pretraining kNN monitor.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from brainxai.ssl.augment import center_view


@torch.no_grad()
def forward_batches(
    module: nn.Module, images: np.ndarray, size: int, batch_size: int, device: torch.device
) -> torch.Tensor:
    """``module`` (in eval mode) on the centre views of uint8 ``(N, H, W)`` images, batched;
    float32 outputs on the CPU. bf16 autocast on CUDA."""
    was_training = module.training
    module.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[i : i + batch_size])).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out.append(module(center_view(x, size)).float().cpu())
    finally:
        module.train(was_training)
    if not out:
        raise ValueError("no images to run the model on")
    return torch.cat(out)


def softmax_np(logits: torch.Tensor) -> np.ndarray:
    """Class probabilities (float64, rows sum to 1)."""
    return torch.softmax(logits.double(), dim=1).numpy()


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true`` (the val-set model-selection score)."""
    labels = np.unique(y_true)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
