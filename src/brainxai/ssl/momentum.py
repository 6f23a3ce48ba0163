"""Momentum (EMA) encoders shared by BYOL, DINO and MoCo v3.

The target/teacher/key network is a frozen copy updated as ``xi <- m xi + (1 - m) theta``
(BYOL eq. 1) with ``m`` following a cosine schedule from ``m_base`` to 1 over training
(BYOL sec. 3.2; ``lightly.utils.scheduler.cosine_schedule``, ``lightly.models.utils``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from brainxai.ssl.framework import Progress


def momentum_copy(module: nn.Module, factory: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A frozen copy of ``module`` (no gradients).

    ``factory`` builds a fresh twin that then receives ``module``'s weights, for modules
    that cannot be deep-copied (weight-normed layers, e.g. the DINO head).
    """
    if factory is None:
        twin = copy.deepcopy(module)
    else:
        twin = factory()
        twin.load_state_dict(module.state_dict())
    deactivate_requires_grad(twin)
    return twin


def momentum_at(progress: Progress, base: float, end: float = 1.0) -> float:
    """Cosine-increased EMA momentum at this step."""
    return cosine_schedule(progress.step, progress.total_steps, base, end)


def ema_update(pairs: list[tuple[nn.Module, nn.Module]], m: float) -> None:
    """``twin <- m twin + (1 - m) online`` for every (online, twin) pair."""
    for online, twin in pairs:
        update_momentum(online, twin, m)
