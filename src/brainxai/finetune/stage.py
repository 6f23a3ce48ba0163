"""Stage ``finetune`` without the orchestrator: what the stage fans out over (the part
``brainxai study plan`` shares with the flow, so the two cannot drift)."""

from __future__ import annotations

from brainxai.finetune.config import FinetuneConfig


def all_inits(cfg: FinetuneConfig) -> list[str]:
    """The inits of the stage: ``finetune.inits`` (+ ``imagenet`` when ``imagenet_path`` is
    set and the list does not name it)."""
    extra = ["imagenet"] if cfg.imagenet_path and "imagenet" not in cfg.inits else []
    return [*cfg.inits, *extra]
