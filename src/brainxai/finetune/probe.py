"""Linear probe: a linear softmax head trained on cached frozen-backbone embeddings.

The backbone (eval mode) embeds every image once (:func:`embed_images`); the features are
cached on disk and shared by every fraction and seed of an initialisation. The head is a
multinomial logistic regression trained with AdamW (cross-entropy + weight decay) on
features standardised with the training subset's mean ``mu`` and sd ``sigma``. Because
standardisation is affine, the trained head ``(W, b)`` on ``z = (h - mu) / sigma`` is folded
into an equivalent head on the raw features ``h``:

    W' = W / sigma,    b' = b - W' mu,

so the saved :class:`~brainxai.finetune.model.Classifier` is ``head(backbone(x))`` exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainxai.finetune.config import ProbeConfig
from brainxai.finetune.evaluate import forward_batches, macro_f1
from brainxai.ssl.batchnorm import recalibrate_batchnorm


def embed_images(
    backbone: nn.Module,
    images: np.ndarray,
    size: int,
    batch_size: int,
    device: torch.device,
    bn_rows: np.ndarray | None = None,
    bn_max_images: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Raw pooled features ``(N, D)`` float32 of the frozen backbone (eval mode).

    With ``bn_rows`` (the training-split rows of ``images``), the BatchNorm statistics are
    first re-estimated on at most ``bn_max_images`` of them (precise BN); the backbone
    passed in is left untouched (a copy is recalibrated).
    """
    backbone = backbone.to(device)
    if bn_rows is not None and len(bn_rows):
        backbone = copy.deepcopy(backbone)
        recalibrate_batchnorm(
            backbone, images, size, batch_size, device, bn_max_images, seed, rows=bn_rows
        )
    return forward_batches(backbone, images, size, batch_size, device).numpy()


@dataclass(frozen=True)
class EpochHead:
    """The head after one epoch, folded onto raw features, with its scores."""

    epoch: int
    weight: Tensor
    bias: Tensor
    train_loss: float
    val_macro_f1: float


def fold_standardisation(
    weight: Tensor, bias: Tensor, mu: Tensor, sigma: Tensor
) -> tuple[Tensor, Tensor]:
    """``(W / sigma, b - (W / sigma) mu)``: the same logits on raw features."""
    w = weight / sigma[None, :]
    return w, bias - w @ mu


def train_linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    cfg: ProbeConfig,
    seed: int,
    on_epoch: Callable[[EpochHead], None] | None = None,
) -> list[EpochHead]:
    """Train the head for ``cfg.epochs`` epochs (zero init, seeded mini-batch order).

    Returns every epoch's folded head; ``on_epoch`` sees each as it is made.
    """
    xt = torch.as_tensor(x_train, dtype=torch.float64)
    mu = xt.mean(dim=0)
    sigma = xt.std(dim=0, unbiased=False).clamp_min(1e-6)
    z = ((xt - mu) / sigma).float()
    zv = ((torch.as_tensor(x_val, dtype=torch.float64) - mu) / sigma).float()
    y = torch.as_tensor(y_train, dtype=torch.long)
    head = nn.Linear(z.shape[1], num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    out: list[EpochHead] = []
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(len(z), generator=gen)
        total = 0.0
        for i in range(0, len(z), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = F.cross_entropy(head(z[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        with torch.no_grad():
            val_pred = head(zv).argmax(dim=1).numpy()
            w, b = fold_standardisation(head.weight.double(), head.bias.double(), mu, sigma)
        rec = EpochHead(
            epoch, w.float(), b.float(), total / len(z), macro_f1(np.asarray(y_val), val_pred)
        )
        out.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
    return out
