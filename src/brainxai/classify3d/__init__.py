"""3D classifier of paper 003 (Virtual Biopsy, Adaptive-Diagnoser): MONAI backbones with
mask-guided channel attention, trained with stratified patient-level cross-validation.

Modules: :mod:`.config` (every knob), :mod:`.model` (attention, fusion head, backbones,
checkpoints), :mod:`.transforms` (MONAI dictionary transforms, image and mask together),
:mod:`.data` (cohort selection, pseudo-label join, cached datasets), :mod:`.folds`,
:mod:`.train` (the loop), :mod:`.report` (CV summaries, ablation tests, tables).
"""

from brainxai.classify3d.config import Classify3DConfig, VariantConfig
from brainxai.classify3d.model import (
    Classify3DModel,
    MaskGuidedAttention,
    build_model,
    load_checkpoint,
    masked_average_pool,
    save_model,
)
from brainxai.classify3d.train import FoldResult, train_fold

__all__ = [
    "Classify3DConfig",
    "Classify3DModel",
    "FoldResult",
    "MaskGuidedAttention",
    "VariantConfig",
    "build_model",
    "load_checkpoint",
    "masked_average_pool",
    "save_model",
    "train_fold",
]
