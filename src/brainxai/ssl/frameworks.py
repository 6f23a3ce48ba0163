"""Framework name -> (config class, constructor): the frameworks the stage can fan out over."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from brainxai.ssl.backbone import Backbone
from brainxai.ssl.byol import BYOL, BYOLConfig
from brainxai.ssl.config import OptimConfig
from brainxai.ssl.dino import DINO, DINOConfig
from brainxai.ssl.framework import Framework
from brainxai.ssl.mocov3 import MoCoV3, MoCoV3Config
from brainxai.ssl.simclr import SimCLR, SimCLRConfig
from brainxai.ssl.supervised import Supervised, SupervisedConfig

FRAMEWORKS: dict[str, tuple[type[OptimConfig], type[Framework]]] = {
    "simclr": (SimCLRConfig, SimCLR),
    "byol": (BYOLConfig, BYOL),
    "dino": (DINOConfig, DINO),
    "mocov3": (MoCoV3Config, MoCoV3),
    "supervised": (SupervisedConfig, Supervised),
}


def framework_config(name: str, d: Mapping[str, Any] | None) -> OptimConfig:
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework {name!r}; known: {sorted(FRAMEWORKS)}")
    return FRAMEWORKS[name][0].from_dict(d)


def build_framework(
    name: str, backbone: Backbone, cfg: OptimConfig, n_classes: int = 0
) -> Framework:
    """Instantiate framework ``name`` around ``backbone``."""
    cls = FRAMEWORKS[name][1]
    if cls is Supervised:
        return Supervised(backbone, cfg, n_classes)  # type: ignore[arg-type]
    return cls(backbone, cfg)  # type: ignore[call-arg]
