"""MoCo v3 (Chen, Xie & He 2021), ResNet variant: contrast queries against momentum keys.

Query encoder: backbone -> projector (2-layer MLP, 4096 hidden, 256 out, BN, as in the
ResNet branch of the official code) -> predictor (2-layer, 4096, 256); key encoder: EMA
copy of backbone + projector, momentum 0.99 -> 1 (cosine). Loss (Alg. 1):
``ctr(q, k) = 2 tau * CE(q k^T / tau, diag)`` on l2-normalised vectors, symmetrised over
the two views, with tau = 1.0 for ResNets. LARS, lr 0.6 x B/256, wd 1e-6, 10 warm-up
epochs. Heads and EMA utilities are lightly's; lightly has no loss of this N-way form, so
``ctr`` is the paper's three lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightly.models.modules import BYOLPredictionHead, MoCoProjectionHead
from torch import Tensor

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.config import OptimConfig
from brainxai.ssl.framework import Framework, Progress
from brainxai.ssl.momentum import ema_update, momentum_at, momentum_copy


@dataclass(frozen=True)
class MoCoV3Config(OptimConfig):
    base_lr: float = 0.6
    weight_decay: float = 1e-6
    hidden_dim: int = 4096
    output_dim: int = 256
    projector_layers: int = 2
    temperature: float = 1.0
    momentum_base: float = 0.99


def ctr(q: Tensor, k: Tensor, tau: float) -> Tensor:
    """MoCo v3 contrastive loss: InfoNCE of each query against all keys, scaled by 2 tau."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T / tau
    return 2 * tau * F.cross_entropy(logits, torch.arange(len(q), device=q.device))


class MoCoV3(Framework):
    name = "mocov3"

    def __init__(self, backbone: Backbone, cfg: MoCoV3Config) -> None:
        super().__init__(backbone, cfg)
        self.projection_head = MoCoProjectionHead(
            backbone.feature_dim,
            cfg.hidden_dim,
            cfg.output_dim,
            num_layers=cfg.projector_layers,
            batch_norm=True,
        )
        # predictor Linear-BN-ReLU-Linear (``_build_mlp(2, dim, mlp_dim, dim, last_bn=False)``)
        self.prediction_head = BYOLPredictionHead(cfg.output_dim, cfg.hidden_dim, cfg.output_dim)
        self.backbone_momentum = momentum_copy(self.backbone)
        self.projection_head_momentum = momentum_copy(self.projection_head)

    def loss(self, views: list[Tensor], labels: Tensor, progress: Progress) -> Tensor:
        x0, x1 = views[:2]
        q0 = self.prediction_head(self.projection_head(self.backbone(x0))).float()
        q1 = self.prediction_head(self.projection_head(self.backbone(x1))).float()
        with torch.no_grad():
            k0 = self.projection_head_momentum(self.backbone_momentum(x0)).float()
            k1 = self.projection_head_momentum(self.backbone_momentum(x1)).float()
        tau = self.cfg.temperature
        return ctr(q0, k1, tau) + ctr(q1, k0, tau)

    def after_step(self, progress: Progress) -> None:
        m = momentum_at(progress, self.cfg.momentum_base)
        ema_update(
            [
                (self.backbone, self.backbone_momentum),
                (self.projection_head, self.projection_head_momentum),
            ],
            m,
        )
