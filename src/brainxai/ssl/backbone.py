"""Backbone: a torchvision ResNet for one-channel MRI, optionally ImageNet-initialised.

The first convolution takes one channel; with ImageNet weights its kernel is the sum of the
RGB kernels, which equals feeding the grey image replicated to three channels (at a third
of the cost). The classifier ``fc`` is dropped: the backbone returns the pooled features
(512 for ResNet-18, 2048 for ResNet-50). Weights come from a local file only (no download).

``arch`` may carry a base width, ``"resnet18-w32"``: the same blocks and strides with
stage widths ``(w, 2w, 4w, 8w)`` instead of ``(64, 128, 256, 512)`` (He et al. 2016,
Table 1, scaled); the module names (``net.layer1`` ... ``net.layer4``) stay those of
torchvision's ResNet, so CAM target layers and checkpoints keep their names. Width 32 is
~4x cheaper per step than 64 on a CPU (``shared/MEASURED.md``); ImageNet weights exist
only for the standard width.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file
from torch import Tensor, nn

ARCHS: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
#: torchvision's base width (channels of ``layer1``'s blocks).
BASE_WIDTH = 64


def parse_arch(arch: str) -> tuple[str, int]:
    """``"resnet18-w32"`` -> ``("resnet18", 32)``; a plain name has the base width 64."""
    name, sep, width = arch.partition("-w")
    if name not in ARCHS or (sep and not width.isdigit()) or (sep and int(width) < 4):
        raise ValueError(
            f"unknown arch {arch!r}; known: {sorted(ARCHS)}, optionally with a base width "
            "'-w<int >= 4>' (e.g. 'resnet18-w32')"
        )
    return name, int(width) if sep else BASE_WIDTH


def feature_dim(arch: str) -> int:
    """Pooled feature size: ``ARCHS[name] * width / 64``."""
    name, width = parse_arch(arch)
    return ARCHS[name] * width // BASE_WIDTH


def _resnet(name: str, width: int) -> torchvision.models.ResNet:
    """torchvision's ResNet ``name`` with one input channel and base ``width``."""
    net = getattr(torchvision.models, name)(weights=None)
    if width != BASE_WIDTH:
        block = type(net.layer1[0])
        depths = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
        net.inplanes = width
        net.bn1 = nn.BatchNorm2d(width)
        for i, depth in enumerate(depths):
            layer = net._make_layer(block, width * 2**i, depth, stride=1 if i == 0 else 2)
            setattr(net, f"layer{i + 1}", layer)
        for m in net.modules():  # torchvision's own initialisation of the new modules
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    net.conv1 = nn.Conv2d(1, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


class Backbone(nn.Module):
    """Normalise ``[0, 1]`` grey images, ResNet trunk, global-average-pooled features."""

    def __init__(self, arch: str, mean: float, std: float) -> None:
        super().__init__()
        name, width = parse_arch(arch)
        self.net = _resnet(name, width)
        self.arch = arch
        self.width = width
        self.feature_dim = feature_dim(arch)
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
        if bb.width != BASE_WIDTH:
            raise ValueError(f"ImageNet weights need the standard width, not {arch!r}")
        if not Path(weights_path).is_file():
            raise FileNotFoundError(f"weights file {weights_path} not found (no download)")
        load_imagenet(bb, weights_path)
    return bb
