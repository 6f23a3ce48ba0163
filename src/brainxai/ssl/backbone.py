"""Backbone: a torchvision ResNet for one-channel MRI, optionally ImageNet-initialised.

The first convolution takes one channel; with ImageNet weights its kernel is the sum of the
RGB kernels, which equals feeding the grey image replicated to three channels (at a third
of the cost). The classifier ``fc`` is dropped: the backbone returns the pooled features
(512 for ResNet-18, 2048 for ResNet-50). Weights come from a local file only (no download).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file
from torch import Tensor, nn

ARCHS: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class Backbone(nn.Module):
    """Normalise ``[0, 1]`` grey images, ResNet trunk, global-average-pooled features."""

    def __init__(self, arch: str, mean: float, std: float) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; known: {sorted(ARCHS)}")
        net = getattr(torchvision.models, arch)(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.arch = arch
        self.feature_dim = ARCHS[arch]
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_imagenet(backbone: Backbone, path: str | Path) -> Backbone:
    """Copy torchvision ImageNet weights from a local file; RGB ``conv1`` is summed to grey."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    w = state.get("conv1.weight")
    if w is not None and w.shape[1] == 3:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)
    missing, unexpected = backbone.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return backbone


def build_backbone(
    arch: str, mean: float, std: float, weights_path: str | Path | None = None
) -> Backbone:
    """ResNet backbone; ImageNet-initialised when ``weights_path`` names a local file."""
    bb = Backbone(arch, mean, std)
    if weights_path:
        if not Path(weights_path).is_file():
            raise FileNotFoundError(f"weights file {weights_path} not found (no download)")
        load_imagenet(bb, weights_path)
    return bb
