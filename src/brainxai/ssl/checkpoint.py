"""Checkpoints that resume training exactly, and the exported backbone.

A checkpoint holds the framework's ``state_dict`` (backbone, heads, momentum encoders,
DINO's centre), the optimizer state, the epoch/step reached, the metric history, the RNG
states and a digest of the configuration; it is written atomically with ``torch.save``
(:mod:`brainxai.atomic`: temporary file, fsync, rename) and read back with
``torch.load(weights_only=True)`` (no pickled code).
The LR/momentum schedules are pure functions of the step, so the step is their state.
The final backbone is exported as ``safetensors``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from brainxai.atomic import torch_save_atomic, write_atomic

_NAME = re.compile(r"^epoch-(\d{4,})\.pt$")


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"epoch-{epoch:04d}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    return torch_save_atomic(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files of ``directory``, oldest epoch first."""
    d = Path(directory)
    found = [(int(m.group(1)), p) for p in d.glob("epoch-*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_matching(directory: Path, digest: str) -> dict[str, Any] | None:
    """The newest checkpoint written under the same configuration digest, if any."""
    for path in reversed(checkpoints(directory)):
        try:
            state = load_checkpoint(path)
        except Exception:
            continue
        if state.get("digest") == digest:
            return state
    return None


def prune(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for path in checkpoints(directory)[: -max(1, keep)]:
        path.unlink(missing_ok=True)


def save_backbone(module: nn.Module, path: Path) -> Path:
    """Backbone weights as safetensors (contiguous CPU tensors)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return write_atomic(path, lambda tmp: save_file(state, str(tmp)))


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_backbone(path: Path) -> dict[str, torch.Tensor]:
    """Backbone weights written by :func:`save_backbone`."""
    return load_file(str(path))
