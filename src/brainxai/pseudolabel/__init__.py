"""VLM pseudo-labelling (paper 003, Virtual Biopsy / Tumor-Localizer): 2D boxes -> 3D mask.

A box proposer answers per axial slice of the standardized volumes — ``classical``
(weight-free abnormality maps), ``transformers`` (a local Qwen3-VL) or ``openai`` (an
OpenAI-compatible endpoint), VLM answers cached per (image, prompt, model); the boxes are
stacked into a coarse prior (:mod:`.stack`), refined by a voxel-wise MLP (:mod:`.refine`)
and united with it; :mod:`.metrics` measures every mask against the truth.
Public API: :class:`PseudolabelConfig`, :func:`make_proposer`, :func:`pseudolabel_subject`,
:func:`parse_boxes`, :class:`SliceGeometry`, :class:`ResponseCache`.
"""

from brainxai.pseudolabel.boxes import (
    Box,
    MalformedAnswer,
    SliceGeometry,
    VoxelBox,
    parse_boxes,
)
from brainxai.pseudolabel.cache import ResponseCache, cache_key
from brainxai.pseudolabel.config import PseudolabelConfig
from brainxai.pseudolabel.pipeline import MASKS, output_files, pseudolabel_subject
from brainxai.pseudolabel.proposers import make_proposer

__all__ = [
    "MASKS",
    "Box",
    "MalformedAnswer",
    "PseudolabelConfig",
    "ResponseCache",
    "SliceGeometry",
    "VoxelBox",
    "cache_key",
    "make_proposer",
    "output_files",
    "parse_boxes",
    "pseudolabel_subject",
]
