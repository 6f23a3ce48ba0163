"""Box proposers behind one interface (:class:`Proposer`), chosen by ``pseudolabel.proposer``."""

from __future__ import annotations

from pathlib import Path

from brainxai.pseudolabel.cache import ResponseCache
from brainxai.pseudolabel.config import PseudolabelConfig
from brainxai.pseudolabel.proposers.base import Proposer, SliceAnswer
from brainxai.pseudolabel.proposers.classical import ClassicalProposer
from brainxai.pseudolabel.proposers.vlm import TextBackend, VLMProposer


def make_proposer(cfg: PseudolabelConfig, cache_dir: str | Path | None = None) -> Proposer:
    """The configured proposer; VLM answers are cached under ``cache_dir`` when given."""
    if cfg.proposer == "classical":
        return ClassicalProposer(cfg.classical, cfg.slices)
    cache = ResponseCache(cache_dir) if cache_dir else None
    backend: TextBackend
    if cfg.proposer == "transformers":
        from brainxai.pseudolabel.proposers.transformers_vlm import TransformersBackend

        backend = TransformersBackend(cfg.transformers)
    else:
        from brainxai.pseudolabel.proposers.openai_client import OpenAIBackend

        backend = OpenAIBackend(cfg.openai)
    return VLMProposer(
        cfg.proposer, backend, cfg.slices, cfg.prompts, cache, model=cfg.proposer_model
    )


__all__ = ["ClassicalProposer", "Proposer", "SliceAnswer", "VLMProposer", "make_proposer"]
