"""Optimizer and learning-rate schedule of a framework.

LARS (You et al. 2017; lightly's implementation, trust ratio on weight-decayed tensors
only), AdamW or SGD with momentum. Norm and bias parameters get no weight decay
(``lightly.models.utils.get_weight_decay_parameters``). Peak LR scales linearly with the
batch, ``base_lr * B / 256`` (Goyal et al. 2017); the LR warms up linearly, then decays
along a cosine to ``final_lr_fraction`` of the peak (SGDR, Loshchilov & Hutter 2017;
``lightly.utils.scheduler.cosine_warmup_schedule``). The schedule is a pure function of
the global step, so resuming needs only the step.
"""

from __future__ import annotations

import torch
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_warmup_schedule
from torch import nn

from brainxai.ssl.config import OptimConfig


def peak_lr(cfg: OptimConfig, batch_size: int) -> float:
    return cfg.base_lr * batch_size / 256


def build_optimizer(modules: list[nn.Module], cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """Two parameter groups (decayed, not decayed) under the configured optimizer."""
    decay, no_decay = get_weight_decay_parameters(modules)
    groups = [
        {"params": [p for p in decay if p.requires_grad], "weight_decay": cfg.weight_decay},
        {"params": [p for p in no_decay if p.requires_grad], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    raise ValueError(f"optimizer must be lars | adamw | sgd, not {cfg.optimizer!r}")


def lr_at(step: int, total: int, warmup: int, peak: float, final_fraction: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``final_fraction * peak``."""
    return cosine_warmup_schedule(
        step=step,
        max_steps=total,
        start_value=peak,
        end_value=peak * final_fraction,
        warmup_steps=warmup,
        warmup_start_value=0.0,
    )


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
