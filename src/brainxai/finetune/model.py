"""The fine-tuned 2D classifier and its per-epoch checkpoint: the contract between the
fine-tuning stage and the explanation-tracking stage.

A :class:`Classifier` is the pretraining :class:`~brainxai.ssl.backbone.Backbone` (one
grey channel in ``[0, 1]``, normalised inside) followed by one linear layer. A checkpoint
is a ``torch.save`` dict read back with ``weights_only=True``:

``state_dict``
    the whole classifier's weights, or - for linear-probe runs, whose backbone is frozen -
    only the head's (``head.weight``, ``head.bias``), the backbone then being read from
    ``backbone_path`` (the pretraining stage's ``backbone.safetensors``; ``""`` = random
    init with ``backbone_seed``).
``meta``
    ``arch``, ``num_classes``, ``class_names``, ``input_mean``, ``input_std``,
    ``image_size``, ``epoch``, ``run`` (the run's name), ``init``, ``protocol``,
    ``fraction``, ``seed``, ``backbone_path``, ``backbone_seed``.

``backbone_path`` is stored relative to the checkpoint's directory (an absolute path given
to :func:`save_classifier` is rewritten), so a study tree can be moved, cloned or pulled
from a DVC remote elsewhere; :func:`resolve_backbone` reads it back (also accepting
a path relative to any ancestor of the checkpoint, e.g. the study root).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brainxai.ssl.backbone import Backbone, build_backbone
from brainxai.ssl.checkpoint import read_backbone, save_checkpoint

META_KEYS = (
    "arch", "num_classes", "class_names", "input_mean", "input_std", "image_size", "epoch",
    "run", "init", "protocol", "fraction", "seed", "backbone_path", "backbone_seed",
)  # fmt: skip


class Classifier(nn.Module):
    """``head(backbone(x))``: logits of ``num_classes`` classes for ``(B, 1, H, W)`` input."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


def build_classifier(
    arch: str,
    num_classes: int,
    mean: float,
    std: float,
    backbone_path: str | Path = "",
    backbone_seed: int = 0,
    imagenet_path: str | Path = "",
) -> Classifier:
    """A classifier whose backbone is random (seeded), ImageNet (local file) or pretrained.

    ``backbone_path`` names a pretraining stage's ``backbone.safetensors``; it wins over
    ``imagenet_path``. The head is initialised after the backbone, from the same seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(backbone_seed)
        backbone = build_backbone(arch, mean, std, imagenet_path or None)
        if backbone_path:
            backbone.load_state_dict(read_backbone(Path(backbone_path)))
        model = Classifier(backbone, num_classes)
    return model


def head_only(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The head's entries of a classifier state dict."""
    return {k: v for k, v in state.items() if k.startswith("head.")}


def save_classifier(
    path: str | Path, model: Classifier, meta: dict[str, Any], head_only_state: bool = False
) -> Path:
    """Write a checkpoint (atomically); ``head_only_state`` for frozen-backbone runs."""
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    meta = dict(meta)
    if meta["backbone_path"] and Path(meta["backbone_path"]).is_absolute():
        meta["backbone_path"] = os.path.relpath(meta["backbone_path"], Path(path).parent.absolute())
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if head_only_state:
        state = head_only(state)
    return save_checkpoint(Path(path), {"state_dict": state, "meta": dict(meta)})


def resolve_backbone(checkpoint: str | Path, backbone_path: str) -> str:
    """The backbone file a checkpoint names: absolute, else relative to the checkpoint's
    directory or one of its ancestors (``""`` stays ``""``: random init)."""
    if not backbone_path or Path(backbone_path).is_absolute():
        return backbone_path
    ckpt = Path(checkpoint).absolute()
    for base in ckpt.parents:
        if (base / backbone_path).is_file():
            return str((base / backbone_path).resolve())
    raise FileNotFoundError(f"{checkpoint}: backbone {backbone_path!r} not found")


def load_classifier(path: str | Path, map_location: str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild a :class:`Classifier` from a checkpoint; returns ``(model.eval(), meta)``."""
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=True)
    meta = ckpt["meta"]
    model = build_classifier(
        meta["arch"],
        int(meta["num_classes"]),
        float(meta["input_mean"]),
        float(meta["input_std"]),
        backbone_path=resolve_backbone(path, meta["backbone_path"]),
        backbone_seed=int(meta["backbone_seed"]),
    )
    state = ckpt["state_dict"]
    strict = any(not k.startswith("head.") for k in state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or (strict and missing):
        raise ValueError(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), meta
