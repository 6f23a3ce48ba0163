"""The 3D classifier of paper 003 (Virtual Biopsy): a MONAI backbone, mask-guided channel
attention and a fusion head.

Equations (paper 003 §"Adaptive-Diagnoser"), with backbone features ``F`` (B, C, d, h, w)
and the tumour mask ``M`` resampled to ``F``'s grid (area interpolation, so a small
lesion keeps its fractional occupancy):

* masked average pooling  ``z_c = Σ F_c · M / (Σ M + eps)``
* channel weights         ``w = σ(W2 · ReLU(W1 · z))``  (two FC layers)
* attended features       ``F_att = F ⊗ w``
* prediction              ``y = Softmax(Linear(Dropout(Concat(GAP(F), GAP(F_att)))))``

With the attention branch disabled the head is ``Linear(Dropout(GAP(F)))``: for the
DenseNet backbone exactly MONAI ``DenseNet121``'s own classifier. The model returns
logits; the softmax is applied by :func:`predict_proba` (and inside the loss).

How a variant uses its mask (:class:`~brainxai.classify3d.config.VariantConfig`): through
the attention only (paper 003 rows ③ and ⑤: the backbone sees the whole brain, one input
channel), as background removal (``roi``, rows ② and ④: the backbone sees ``x ⊗ M``, one
channel) or — this project's extension — as a second input channel (``mask_input``).

Backbones (:data:`BACKBONES`): MONAI ``DenseNet`` (121 by default; ``features`` is kept as
a sub-module so :mod:`brainxai.xai.layers` finds ``features.denseblock4`` for CAMs), the
SwinUNETR encoder (``SwinTransformer``), ``ViT`` (patch tokens folded back to a grid) and
``EfficientNet`` (3D, MONAI's configurable EfficientNet-B*).

Mask at inference (the checkpoint contract): ``forward(x)`` takes ONE tensor.
``x`` (B, 1, D, H, W) is the image; a mask-using model then needs its mask stored first
with :meth:`Classify3DModel.set_mask` (a clear error otherwise). ``x`` (B, 2, D, H, W)
carries the mask as its second channel. A batch-1 stored mask broadcasts over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainxai.atomic import torch_save_atomic
from brainxai.classify3d.config import ModelConfig, VariantConfig

CHECKPOINT_FORMAT = "brainxai.classify3d/1"


def resample_mask(mask: Tensor, size: tuple[int, ...]) -> Tensor:
    """``M`` on the feature grid: area (average) interpolation keeps fractional occupancy."""
    if tuple(mask.shape[2:]) == tuple(size):
        return mask
    return F.interpolate(mask.float(), size=size, mode="area")


def masked_average_pool(feat: Tensor, mask: Tensor, eps: float) -> Tensor:
    """``z_c = Σ_x F_c(x) M(x) / (Σ_x M(x) + eps)`` for (B, C, ...) features, (B, 1, ...) mask."""
    m = resample_mask(mask, tuple(feat.shape[2:])).to(feat.dtype)
    num = (feat * m).flatten(2).sum(-1)
    return num / (m.flatten(2).sum(-1) + eps)


def global_average_pool(feat: Tensor) -> Tensor:
    return feat.flatten(2).mean(-1)


class MaskGuidedAttention(nn.Module):
    """Channel weights from the masked average: ``w = σ(W2 ReLU(W1 z))``; ``F_att = F ⊗ w``."""

    def __init__(self, channels: int, reduction: int, eps: float) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.eps = eps

    def weights(self, feat: Tensor, mask: Tensor) -> Tensor:
        z = masked_average_pool(feat, mask, self.eps)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(z))))

    def forward(self, feat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights(feat, mask)
        return feat * w.view(*w.shape, *([1] * (feat.dim() - 2))), w


class FusionHead(nn.Module):
    """``Linear(Dropout(Concat(GAP(F), GAP(F_att))))``, or ``Linear(Dropout(GAP(F)))``."""

    def __init__(self, channels: int, num_classes: int, attention: bool, cfg: ModelConfig):
        super().__init__()
        self.attention = (
            MaskGuidedAttention(channels, cfg.reduction, cfg.eps) if attention else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(channels * (2 if attention else 1), num_classes)

    def forward(self, feat: Tensor, mask: Tensor | None) -> Tensor:
        pooled = global_average_pool(feat)
        if self.attention is not None:
            if mask is None:
                raise ValueError("the attention head needs a mask")
            f_att, _ = self.attention(feat, mask)
            pooled = torch.cat([pooled, global_average_pool(f_att)], dim=1)
        return self.out(self.dropout(pooled))


# --------------------------------------------------------------------------- backbones


class DenseNetFeatures(nn.Module):
    """MONAI ``DenseNet`` (121: 64/32/(6, 12, 24, 16)); ``F = ReLU(features(x))``."""

    def __init__(self, in_channels: int, **kw: Any) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet

        kw.setdefault("init_features", 64)
        kw.setdefault("growth_rate", 32)
        kw["block_config"] = tuple(kw.get("block_config", (6, 12, 24, 16)))
        self.net = DenseNet(spatial_dims=3, in_channels=in_channels, out_channels=1, **kw)
        self.net.class_layers = nn.Identity()  # the fusion head replaces MONAI's classifier
        self.out_channels = int(self.net.features.norm5.num_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.net.features(x))


class SwinEncoderFeatures(nn.Module):
    """The SwinUNETR encoder (MONAI ``SwinTransformer``); ``F`` = its deepest stage, normalised."""

    def __init__(self, in_channels: int, **kw: Any) -> None:
        super().__init__()
        from monai.networks.nets.swin_unetr import SwinTransformer

        fs = int(kw.pop("feature_size", 48))
        depths = tuple(kw.pop("depths", (2, 2, 2, 2)))
        self.net = SwinTransformer(
            in_chans=in_channels,
            embed_dim=fs,
            window_size=tuple(kw.pop("window_size", (7, 7, 7))),
            patch_size=(2, 2, 2),
            depths=depths,
            num_heads=tuple(kw.pop("num_heads", (3, 6, 12, 24))),
            spatial_dims=3,
            **kw,
        )
        self.out_channels = fs * 2 ** len(depths)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, normalize=True)[-1]


class ViTFeatures(nn.Module):
    """MONAI ``ViT``: the final patch tokens folded back to their (D/p, H/p, W/p) grid."""

    def __init__(self, in_channels: int, input_size: tuple[int, int, int], **kw: Any) -> None:
        super().__init__()
        from monai.networks.nets import ViT

        self.patch = int(kw.pop("patch_size", 16))
        self.grid = tuple(s // self.patch for s in input_size)
        if any(g * self.patch != s for g, s in zip(self.grid, input_size, strict=True)):
            raise ValueError(f"ViT: input size {input_size} not divisible by patch {self.patch}")
        self.net = ViT(
            in_channels=in_channels,
            img_size=tuple(input_size),
            patch_size=self.patch,
            spatial_dims=3,
            classification=False,
            **kw,
        )
        self.out_channels = int(kw.get("hidden_size", 768))

    def forward(self, x: Tensor) -> Tensor:
        tokens, _ = self.net(x)
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, *self.grid)


class EfficientNetFeatures(nn.Module):
    """MONAI 3D ``EfficientNetBN`` (B0 by default): stem → MBConv blocks → 1×1 conv head."""

    def __init__(self, in_channels: int, **kw: Any) -> None:
        super().__init__()
        from monai.networks.nets import EfficientNetBN

        name = str(kw.pop("model_name", "efficientnet-b0"))
        self.net = EfficientNetBN(
            name, pretrained=False, spatial_dims=3, in_channels=in_channels, num_classes=1, **kw
        )
        self.net._fc = nn.Identity()
        self.out_channels = int(self.net._bn1.num_features)

    def forward(self, x: Tensor) -> Tensor:
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(n._conv_stem_padding(x))))
        x = n._blocks(x)
        return n._swish(n._bn1(n._conv_head(n._conv_head_padding(x))))


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "densenet": DenseNetFeatures,
    "swin": SwinEncoderFeatures,
    "vit": ViTFeatures,
    "efficientnet": EfficientNetFeatures,
}


def build_backbone(
    spec: dict[str, Any], in_channels: int, input_size: tuple[int, ...]
) -> nn.Module:
    """A feature extractor from ``{"kind": ..., **kwargs}`` (see :data:`BACKBONES`)."""
    kw = dict(spec)
    kind = kw.pop("kind", None)
    if kind not in BACKBONES:
        raise ValueError(f"backbone kind must be one of {sorted(BACKBONES)}, got {kind!r}")
    if kind == "vit":
        return BACKBONES[kind](in_channels, tuple(input_size), **kw)
    return BACKBONES[kind](in_channels, **kw)


# --------------------------------------------------------------------------- the model


class Classify3DModel(nn.Module):
    """Backbone features → fusion head; the mask gates the image (``roi``), feeds the
    attention, and/or is a 2nd input channel (``mask_input``)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        variant: VariantConfig,
        cfg: ModelConfig,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = FusionHead(backbone.out_channels, num_classes, variant.attention, cfg)
        self.mask_input = variant.mask_input
        self.roi = variant.roi
        self.needs_mask = variant.needs_mask
        self._mask: Tensor | None = None

    def set_mask(self, mask: Tensor | None) -> None:
        """Store the mask used when ``forward`` gets a 1-channel image (None clears it)."""
        self._mask = mask

    def _split(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if x.shape[1] == 2:
            return x[:, :1], x[:, 1:]
        if x.shape[1] != 1:
            raise ValueError(f"expected 1 or 2 input channels, got {x.shape[1]}")
        mask = mask if mask is not None else self._mask
        if mask is None:
            if self.needs_mask:
                raise ValueError(
                    "this model uses a tumour mask: pass (B, 2, D, H, W) input or call "
                    "set_mask(mask) first"
                )
            return x, None
        mask = mask.to(device=x.device, dtype=x.dtype)
        if mask.shape[0] != x.shape[0]:
            mask = mask.expand(x.shape[0], *mask.shape[1:])
        return x, mask

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        image, mask = self._split(x, mask)
        if self.roi and mask is not None:
            image = image * mask  # background removal: only the masked region is seen
        inp = torch.cat([image, mask], dim=1) if self.mask_input else image
        return self.head(self.backbone(inp), mask if self.head.attention is not None else None)


def build_model(
    backbone_spec: dict[str, Any],
    variant: VariantConfig,
    cfg: ModelConfig,
    num_classes: int,
    input_size: tuple[int, int, int],
    seed: int,
) -> Classify3DModel:
    """A seeded model (same seed → same initial weights, on every device)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_backbone(backbone_spec, variant.in_channels, input_size)
        return Classify3DModel(backbone, num_classes, variant, cfg)


@torch.no_grad()
def predict_proba(model: nn.Module, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """``Softmax(logits)`` in float32."""
    return torch.softmax(model(x, mask).float(), dim=1)


# --------------------------------------------------------------------------- checkpoints


def save_model(path: str | Path, model: Classify3DModel, meta: dict[str, Any]) -> Path:
    """Write ``{"format", "state_dict", "meta"}`` atomically (``meta`` rebuilds the model)."""
    for key in ("backbone_spec", "variant", "model_cfg", "class_names", "input_size"):
        if key not in meta:
            raise ValueError(f"checkpoint meta lacks {key!r}")
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch_save_atomic({"format": CHECKPOINT_FORMAT, "state_dict": state, "meta": dict(meta)}, path)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[Classify3DModel, dict]:
    """Rebuild a model from :func:`save_model`'s file; returns ``(model.eval(), meta)``.

    ``meta``: ``class_names``, ``input_size``, ``spacing_mm``, ``mask_source`` (manifest or
    pseudo-label column, or None), ``needs_mask``, ``variant``, ``backbone``, ``epoch``, …
    """
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    meta = ckpt["meta"]
    model = build_model(
        dict(meta["backbone_spec"]),
        VariantConfig.from_dict(meta["variant"]),
        ModelConfig.from_dict(meta["model_cfg"]),
        len(meta["class_names"]),
        tuple(meta["input_size"]),
        seed=0,
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), meta
