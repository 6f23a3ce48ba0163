"""DINO (Caron et al. 2021) with a ResNet backbone: self-distillation without labels.

Student: backbone -> 3-layer head (2048 hidden, 256 bottleneck, l2-norm, weight-normed
``output_dim`` prototypes, BN in the head for ResNets). Teacher: EMA copy, momentum 0.996 ->
1 (cosine), sees the global views only. Loss: cross-entropy between the centred, sharpened
teacher softmax (temperature 0.04 after a linear warm-up from ``warmup_teacher_temp``) and
the student softmax (0.1) over all pairs of different views; centre momentum 0.9
(lightly's ``DINOLoss``). The last layer stays frozen during the first epoch; gradients are
clipped at norm 3. ResNet-50 recipe of the DINO repository: SGD, lr 0.03 x B/256, wd 1e-4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from torch import Tensor

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.config import OptimConfig
from brainxai.ssl.framework import Framework, Progress
from brainxai.ssl.momentum import ema_update, momentum_at, momentum_copy


@dataclass(frozen=True)
class DINOConfig(OptimConfig):
    optimizer: str = "sgd"
    base_lr: float = 0.03
    weight_decay: float = 1e-4
    clip_grad_norm: float = 3.0
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    output_dim: int = 65536
    batch_norm_head: bool = True
    freeze_last_layer_epochs: int = 1
    momentum_base: float = 0.996
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9


class DINO(Framework):
    name = "dino"
    uses_local_views = True

    def __init__(self, backbone: Backbone, cfg: DINOConfig) -> None:
        super().__init__(backbone, cfg)

        def make_head() -> DINOProjectionHead:
            return DINOProjectionHead(
                backbone.feature_dim,
                cfg.hidden_dim,
                cfg.bottleneck_dim,
                cfg.output_dim,
                batch_norm=cfg.batch_norm_head,
                freeze_last_layer=cfg.freeze_last_layer_epochs,
            )

        self.head = make_head()
        self.backbone_momentum = momentum_copy(self.backbone)
        self.head_momentum = momentum_copy(self.head, make_head)
        self.criterion = DINOLoss(
            output_dim=cfg.output_dim,
            warmup_teacher_temp=cfg.warmup_teacher_temp,
            teacher_temp=cfg.teacher_temp,
            warmup_teacher_temp_epochs=cfg.warmup_teacher_temp_epochs,
            student_temp=cfg.student_temp,
            center_momentum=cfg.center_momentum,
        )

    def loss(self, views: list[Tensor], labels: Tensor, progress: Progress) -> Tensor:
        with torch.no_grad():
            teacher = [self.head_momentum(self.backbone_momentum(v)).float() for v in views[:2]]
        student = [self.head(self.backbone(v)).float() for v in views]
        return self.criterion(teacher, student, epoch=progress.epoch)

    def before_step(self, progress: Progress) -> None:
        self.head.cancel_last_layer_gradients(progress.epoch)

    def after_step(self, progress: Progress) -> None:
        m = momentum_at(progress, self.cfg.momentum_base)
        ema_update([(self.backbone, self.backbone_momentum), (self.head, self.head_momentum)], m)
