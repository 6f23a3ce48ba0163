"""SSL pretraining on brain MRI slices (paper 000, TumorXAI): SimCLR, BYOL, DINO, MoCo v3
and a supervised baseline on a torchvision ResNet, built from lightly's heads, losses and
momentum utilities.

Pipeline: :func:`select_items` (training patients only) -> :func:`build_cache` (decode
once to a uint8 memory map) -> :func:`pretrain` (batched MRI-aware augmentation on the
device, cosine LR with warm-up, LARS/SGD/AdamW, clipping, bf16 + channels_last on CUDA,
kNN monitor, resumable checkpoints) -> ``backbone.safetensors``.
"""

from brainxai.ssl.augment import MRIAugment, center_view
from brainxai.ssl.backbone import Backbone, build_backbone
from brainxai.ssl.cache import Cache, build_cache, fingerprint
from brainxai.ssl.config import (
    AugmentConfig,
    DataConfig,
    KnnConfig,
    OptimConfig,
    TrainConfig,
)
from brainxai.ssl.dataset import select_items
from brainxai.ssl.frameworks import FRAMEWORKS, build_framework, framework_config
from brainxai.ssl.knn import embed, knn_accuracy
from brainxai.ssl.train import BACKBONE_FILE, PretrainSpec, pretrain

__all__ = [
    "BACKBONE_FILE",
    "FRAMEWORKS",
    "AugmentConfig",
    "Backbone",
    "Cache",
    "DataConfig",
    "KnnConfig",
    "MRIAugment",
    "OptimConfig",
    "PretrainSpec",
    "TrainConfig",
    "build_backbone",
    "build_cache",
    "build_framework",
    "center_view",
    "embed",
    "fingerprint",
    "framework_config",
    "from_mapping",
    "knn_accuracy",
    "pretrain",
    "select_items",
    "to_dict",
]
