"""BYOL (Grill et al. 2020): predict the target network's projection of the other view.

Online: backbone -> projection (4096 hidden, 256 out, BN) -> prediction (4096, 256);
target: EMA copy of backbone + projection with momentum 0.996 -> 1 (cosine). Loss: the
symmetrised negative cosine similarity (eq. 2, up to the constant 2). LARS, lr 0.2 x B/256,
wd 1.5e-6. Heads, loss and EMA utilities are lightly's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import Tensor

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.config import OptimConfig
from brainxai.ssl.framework import Framework, Progress
from brainxai.ssl.momentum import ema_update, momentum_at, momentum_copy


@dataclass(frozen=True)
class BYOLConfig(OptimConfig):
    base_lr: float = 0.2
    weight_decay: float = 1.5e-6
    hidden_dim: int = 4096
    output_dim: int = 256
    momentum_base: float = 0.996


class BYOL(Framework):
    name = "byol"

    def __init__(self, backbone: Backbone, cfg: BYOLConfig) -> None:
        super().__init__(backbone, cfg)
        self.projection_head = BYOLProjectionHead(
            backbone.feature_dim, cfg.hidden_dim, cfg.output_dim
        )
        self.prediction_head = BYOLPredictionHead(cfg.output_dim, cfg.hidden_dim, cfg.output_dim)
        self.backbone_momentum = momentum_copy(self.backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)
        self.criterion = NegativeCosineSimilarity()

    def _online(self, x: Tensor) -> Tensor:
        return self.prediction_head(self.projection_head(self.backbone(x)))

    @torch.no_grad()
    def _target(self, x: Tensor) -> Tensor:
        return self.projection_head_momentum(self.backbone_momentum(x))

    def loss(self, views: list[Tensor], labels: Tensor, progress: Progress) -> Tensor:
        x0, x1 = views[:2]
        p0, p1 = self._online(x0).float(), self._online(x1).float()
        z0, z1 = self._target(x0).float(), self._target(x1).float()
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def after_step(self, progress: Progress) -> None:
        m = momentum_at(progress, self.cfg.momentum_base)
        ema_update(
            [
                (self.backbone, self.backbone_momentum),
                (self.projection_head, self.projection_head_momentum),
            ],
            m,
        )
