"""Supervised baseline: the same backbone, loop and augmentation, trained on labels.

Backbone -> linear classifier, cross-entropy on the training images' labels (one view per
image); images without a label in the monitor's label column (e.g. 3D slices) are ignored.
SGD with momentum 0.9, lr 0.1 x B/256, wd 1e-4 (Goyal et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.config import OptimConfig
from brainxai.ssl.framework import Framework, Progress


@dataclass(frozen=True)
class SupervisedConfig(OptimConfig):
    optimizer: str = "sgd"
    base_lr: float = 0.1
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0


class Supervised(Framework):
    name = "supervised"
    n_global_views = 1

    def __init__(self, backbone: Backbone, cfg: SupervisedConfig, n_classes: int) -> None:
        super().__init__(backbone, cfg)
        if n_classes < 2:
            raise ValueError(f"supervised baseline needs >= 2 classes, got {n_classes}")
        self.classifier = nn.Linear(backbone.feature_dim, n_classes)

    def loss(self, views: list[Tensor], labels: Tensor, progress: Progress) -> Tensor:
        logits = self.classifier(self.backbone(views[0])).float()
        if not bool((labels >= 0).any()):
            return logits.sum() * 0.0  # a batch without labelled images: no signal
        return F.cross_entropy(
            logits, labels, ignore_index=-1, label_smoothing=self.cfg.label_smoothing
        )
