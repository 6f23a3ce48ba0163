"""SimCLR (Chen et al. 2020): contrast two views of each image against the batch.

``z = g(f(x))`` with the 2-layer projection MLP (hidden 2048, output 128, BN), NT-Xent
loss (eq. 1) with temperature ``tau`` over the 2N views; LARS, lr 0.3 x B/256, wd 1e-6,
10 warm-up epochs, cosine decay. Head and loss are lightly's.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.config import OptimConfig
from brainxai.ssl.framework import Framework, Progress


@dataclass(frozen=True)
class SimCLRConfig(OptimConfig):
    temperature: float = 0.1
    hidden_dim: int = 2048
    output_dim: int = 128
    num_layers: int = 2


class SimCLR(Framework):
    name = "simclr"

    def __init__(self, backbone: Backbone, cfg: SimCLRConfig) -> None:
        super().__init__(backbone, cfg)
        self.projection_head = SimCLRProjectionHead(
            backbone.feature_dim, cfg.hidden_dim, cfg.output_dim, cfg.num_layers
        )
        self.criterion = NTXentLoss(temperature=cfg.temperature)

    def loss(self, views: list[Tensor], labels: Tensor, progress: Progress) -> Tensor:
        z0, z1 = (self.projection_head(self.backbone(v)) for v in views[:2])
        return self.criterion(z0.float(), z1.float())
