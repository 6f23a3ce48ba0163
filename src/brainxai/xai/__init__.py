"""Explainability metrics: C-Score consistency (paper 004), fast all-pairs soft-IoU
kernels, correctness against ground-truth masks (papers 001/002), baselines and the
parameter-randomisation sanity check. Pure numpy/numba/torch; no CAMs here.

Heavier modules, imported on demand (torch, pytorch-grad-cam, matplotlib):
``cams`` (CAMs, SmoothGrad, IG; ``Explainer``), ``layers`` (target-layer registry),
``gradients``, ``heatmap_store`` (float16 ``.npz`` per checkpoint and method),
``explain`` (``explain_checkpoint``, ``randomisation_check``), ``tracking``
(trajectory table, dissociations, τ/γ sweeps) and ``trajectory_plots``."""

from brainxai.xai.baselines import (
    centre_gaussian_baseline,
    edge_baseline,
    laplace_baseline,
    random_baseline,
)
from brainxai.xai.cscore import CScoreResult, cscore, gold_mask
from brainxai.xai.groundtruth import (
    LocalisationScores,
    auprc,
    count_empty,
    localisation_scores,
    outside_false_positive_rate,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_gt_precision,
)
from brainxai.xai.minmax import minmax_normalise
from brainxai.xai.randomisation import RandomisationSimilarity, randomisation_similarity
from brainxai.xai.randomisation import flag as randomisation_flag
from brainxai.xai.softiou import cross_soft_iou, paired_soft_iou, pairwise_soft_iou, soft_iou

__all__ = [
    "CScoreResult",
    "LocalisationScores",
    "RandomisationSimilarity",
    "auprc",
    "centre_gaussian_baseline",
    "count_empty",
    "cross_soft_iou",
    "cscore",
    "edge_baseline",
    "gold_mask",
    "laplace_baseline",
    "localisation_scores",
    "minmax_normalise",
    "outside_false_positive_rate",
    "paired_soft_iou",
    "pairwise_soft_iou",
    "pointing_game",
    "random_baseline",
    "randomisation_flag",
    "randomisation_similarity",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "soft_iou",
    "top_gt_precision",
]
