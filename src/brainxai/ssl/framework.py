"""What every pretraining framework provides to the training loop.

A framework is an ``nn.Module`` holding the backbone (``self.backbone``, the part that is
kept), its heads, momentum copies and loss. The loop calls, per step,
``loss(views, labels, progress)`` -> backward -> ``before_step`` (e.g. DINO's frozen last
layer) -> optimizer step -> ``after_step`` (momentum/EMA updates). Everything stateful -
momentum encoders, DINO's centre - lives in the module's ``state_dict`` so checkpoints
capture it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.config import OptimConfig


@dataclass(frozen=True)
class Progress:
    """Where training stands: global ``step`` of ``total_steps``, current ``epoch``."""

    step: int
    total_steps: int
    epoch: int
    epochs: int


class Framework(nn.Module):
    """Base class; subclasses set ``name``, ``n_global_views`` and implement ``loss``."""

    name = "base"
    n_global_views = 2
    uses_local_views = False

    def __init__(self, backbone: Backbone, cfg: OptimConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg

    def loss(self, views: list[Tensor], labels: Tensor, progress: Progress) -> Tensor:
        raise NotImplementedError

    def before_step(self, progress: Progress) -> None:
        """Hook between backward and the optimizer step (no-op by default)."""

    def after_step(self, progress: Progress) -> None:
        """Hook after the optimizer step, e.g. momentum updates (no-op by default)."""

    def trainable(self) -> list[nn.Module]:
        """Modules whose parameters the optimizer updates (momentum copies excluded)."""
        return [m for name, m in self.named_children() if not name.endswith("_momentum")]
