"""Every knob of the 3D classifier stage (paper 003, Virtual Biopsy), as frozen dataclasses.

Defaults are the paper's values (the ``full`` profile): AdamW lr 5e-5, weight decay 1e-4,
cosine annealing with warm restarts T0 = 10, clipping 2.0, label smoothing 0.05, batch 2 with
2 accumulation steps, up to 250 epochs with early stopping, dropout 0.2, 128³ inputs; the
augmentations of §"Training" (rot90 axial p=0.5, sagittal flip p=0.5, Gaussian noise
sigma=0.01 p=0.15, gamma [0.9, 1.1] p=0.15). ``params.yaml`` profiles scale them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brainxai.config import MappingConfig, config_from_mapping

#: Mask sources a variant may name: pseudo-label columns, and the true lesion (oracle).
PSEUDO_MASKS = ("coarse_path", "refined_path", "union_path")
TRUE_MASK = "std_lesion_path"


@dataclass(frozen=True)
class AugmentConfig(MappingConfig):
    """MONAI dictionary augmentations (spatial ones move image and mask together)."""

    rot90_prob: float = 0.5  # rot90 in the axial plane
    flip_prob: float = 0.5  # sagittal (left-right) flip
    noise_prob: float = 0.15
    noise_std: float = 0.01
    gamma_prob: float = 0.15
    gamma: tuple[float, float] = (0.9, 1.1)


@dataclass(frozen=True)
class DataConfig(MappingConfig):
    """Which volumes, at what size, cached how."""

    sequence: str = "T1C+"
    label_column: str = "label"
    input_size: tuple[int, int, int] = (128, 128, 128)
    #: ``memory`` (MONAI CacheDataset) | ``disk`` (PersistentDataset under ``cache_dir``).
    cache: str = "memory"
    cache_dir: str = "data/interim/classify3d_cache"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.cache not in ("memory", "disk"):
            raise ValueError(f"data.cache must be 'memory' or 'disk', not {self.cache!r}")
        if len(self.input_size) != 3 or min(self.input_size) < 8:
            raise ValueError(f"data.input_size must be three sizes >= 8, got {self.input_size}")


@dataclass(frozen=True)
class CVConfig(MappingConfig):
    """Stratified patient-level k-fold cross-validation.

    ``pool``: the manifest splits whose patients enter the CV. Default ``[train, val]``:
    the test patients are held out, never trained on or used for selection, and every fold
    model predicts them (held-out evaluation; the explanation stage scores CAMs on them).
    ``[train, val, test]`` cross-validates over the whole cohort as the paper does (then
    there is no held-out set). ``inner_val_fraction`` of each training fold (at
    least one patient per class) is held out for early stopping and epoch selection, so
    the outer fold is never used to choose anything.
    """

    n_folds: int = 5
    pool: tuple[str, ...] = ("train", "val")
    inner_val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_folds < 2:
            raise ValueError("cv.n_folds must be >= 2")
        if not 0.0 < self.inner_val_fraction < 1.0:
            raise ValueError("cv.inner_val_fraction must be in (0, 1)")


@dataclass(frozen=True)
class TrainConfig(MappingConfig):
    """The optimisation loop (paper 003 §"Training")."""

    epochs: int = 250
    batch_size: int = 2
    accumulate: int = 2
    lr: float = 5e-5
    weight_decay: float = 1e-4
    t0: int = 10  # CosineAnnealingWarmRestarts period (epochs)
    t_mult: int = 1
    clip_grad_norm: float = 2.0
    label_smoothing: float = 0.05
    #: Early stopping: epochs without a better inner-validation macro F1 (0 = never stop).
    patience: int = 30
    #: Checkpoints kept for the explanation-tracking (C-Score) stage, by epoch (1-based).
    checkpoint_epochs: tuple[int, ...] = (1, 5, 10, 25, 50, 100, 150, 200, 250)
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # autocast on CUDA only
    channels_last: bool = True  # channels_last_3d on CUDA only
    eval_batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.accumulate < 1:
            raise ValueError("train.epochs, batch_size and accumulate must be >= 1")


@dataclass(frozen=True)
class ModelConfig(MappingConfig):
    """The fusion head: ``y = Linear(Concat(GAP(F), GAP(F ⊗ w)))``; ``w = σ(MLP(z))``."""

    dropout: float = 0.2
    reduction: int = 16  # MLP hidden width = channels // reduction (at least 1)
    eps: float = 1e-6  # masked average pooling: Σ F·M / (Σ M + eps)


#: Paper 003, Table 2: ablation row -> (VLM-C, Refine, MCA). VLM-C: a coarse mask from the
#: slice boxes; Refine: the refined prior X_tumor-refined = coarse ∪ voxel MLP (Eq. 5, our
#: ``union_path``); MCA: masked channel attention (Eqs. 7-9).
PAPER_ROWS: dict[int, tuple[bool, bool, bool]] = {
    1: (False, False, False),
    2: (True, False, False),
    3: (True, False, True),
    4: (True, True, False),
    5: (True, True, True),
}
#: How the paper numbers its rows.
ROW_SYMBOLS: dict[int, str] = {1: "①", 2: "②", 3: "③", 4: "④", 5: "⑤"}
#: The paper's refined mask (Eq. 5) among the pseudo-label columns.
REFINED_MASK = "union_path"


@dataclass(frozen=True)
class VariantConfig(MappingConfig):
    """One ablation row: where the mask comes from and how the model uses it.

    ``mask``: ``None`` (no mask), a pseudo-label column (:data:`PSEUDO_MASKS`) or the true
    lesion (:data:`TRUE_MASK`, the oracle upper bound). Three ways to use it, any mix:
    ``attention`` (masked channel attention, paper 003 Eqs. 7-9; the backbone sees the
    whole brain), ``roi`` (background removal: the backbone sees the image multiplied by
    the mask — paper 003's rows ② and ④ use the mask without MCA and credit their gain to
    "background removal") and ``mask_input`` (the mask as a second input channel of the
    backbone: this project's extension, never a paper row).

    ``paper_row``: the row ①–⑤ of paper 003 Table 2 this variant reproduces (None: an
    extension). A paper row must have that row's design (:data:`PAPER_ROWS`), the mask
    never as an input channel, and the mask used through ``roi`` exactly when it has no
    MCA (checked here).
    """

    mask: str | None = None
    mask_input: bool = False
    attention: bool = False
    roi: bool = False
    paper_row: int | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.mask not in (*PSEUDO_MASKS, TRUE_MASK):
            raise ValueError(f"variant mask must be one of {(*PSEUDO_MASKS, TRUE_MASK)}")
        if self.mask is None and self.needs_mask:
            raise ValueError(
                "a variant without a mask can use neither mask_input, attention nor roi"
            )
        if self.mask is not None and not self.needs_mask:
            raise ValueError(
                f"variant mask {self.mask!r} is unused: set attention, roi or mask_input"
            )
        if self.paper_row is not None:
            self._check_paper_row()

    def _check_paper_row(self) -> None:
        if self.paper_row not in PAPER_ROWS:
            raise ValueError(f"paper_row must be one of {sorted(PAPER_ROWS)}, not {self.paper_row}")
        row = ROW_SYMBOLS[self.paper_row]
        if self.design != PAPER_ROWS[self.paper_row]:
            raise ValueError(
                f"paper row {row} is (VLM-C, Refine, MCA) = {PAPER_ROWS[self.paper_row]}; "
                f"this variant is {self.design}"
            )
        if self.mask_input:
            raise ValueError(f"paper row {row} never feeds the mask as an input channel")
        if self.mask is not None and self.roi == self.attention:
            raise ValueError(
                f"paper row {row}: the mask is used through MCA on the whole brain, or without "
                "MCA as background removal (roi), never both or neither"
            )

    @property
    def design(self) -> tuple[bool, bool, bool]:
        """``(VLM-C, Refine, MCA)`` in the terms of paper 003 Table 2."""
        return (self.needs_pseudolabels, self.mask == REFINED_MASK, self.attention)

    @property
    def needs_mask(self) -> bool:
        """The model reads a mask at every forward pass."""
        return self.mask_input or self.attention or self.roi

    @property
    def in_channels(self) -> int:
        """Input channels of the backbone: the image, and the mask when ``mask_input``."""
        return 1 + int(self.mask_input)

    @property
    def needs_pseudolabels(self) -> bool:
        return self.mask in PSEUDO_MASKS

    def model_fields(self) -> dict[str, Any]:
        """What builds the model (a checkpoint's ``variant``; not the row's number)."""
        return {
            "mask": self.mask,
            "mask_input": self.mask_input,
            "attention": self.attention,
            "roi": self.roi,
        }


@dataclass(frozen=True)
class StatsConfig(MappingConfig):
    """Paired significance tests of each ablation row against the base row."""

    n_bootstrap: int = 2000
    alpha: float = 0.05


def _variants(d: dict[str, Any]) -> dict[str, VariantConfig]:
    return {str(k): VariantConfig.from_dict(v) for k, v in d.items()}


@dataclass(frozen=True)
class Classify3DConfig(MappingConfig):
    """The whole stage: data, CV, model, loop, ablation rows and backbone comparison."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    #: backbone name -> constructor kwargs, ``kind`` one of ``brainxai.classify3d.model.BACKBONES``
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ablation row name -> :class:`VariantConfig`; the row named ``base_variant`` is the base
    variants: dict[str, VariantConfig] = field(default_factory=dict)
    base_variant: str = "base"
    #: the ablation rows that run, in table order (empty: every variant)
    ablation_rows: tuple[str, ...] = ()
    ablation_backbone: str = "densenet121"
    #: backbones compared (same folds) under ``comparison_variant`` (else the base row)
    compare_backbones: tuple[str, ...] = ()
    comparison_variant: str = "full"
    out_dir: str = "models/classify3d"
    pseudolabels: str = "data/processed/pseudolabels.parquet"
    #: MLflow models logged and registered: ``headline`` (the comparison variant on the
    #: ablation backbone, every fold) | ``all`` | ``none``
    register: str = "headline"
    #: torch intra-op threads per training run (0: torch's default)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.base_variant not in self.variants:
            raise ValueError(f"base_variant {self.base_variant!r} is not among the variants")
        if self.variants[self.base_variant].mask is not None:
            raise ValueError("the base variant must use no mask")
        unknown_rows = sorted(set(self.ablation_rows) - set(self.variants))
        if unknown_rows:
            raise ValueError(f"ablation_rows {unknown_rows} are not among the variants")
        numbered = [v.paper_row for v in self.variants.values() if v.paper_row is not None]
        if len(numbered) != len(set(numbered)):
            raise ValueError(f"two variants claim the same paper_row: {sorted(numbered)}")
        if self.register not in ("headline", "all", "none"):
            raise ValueError(f"register must be headline | all | none, not {self.register!r}")
        names = {self.ablation_backbone, *self.compare_backbones}
        missing = sorted(names - set(self.backbones))
        if missing:
            raise ValueError(f"backbones {missing} are not configured in classify3d.backbones")

    @property
    def rows(self) -> list[str]:
        """The ablation rows that run (base first)."""
        rows = list(self.ablation_rows or self.variants)
        return [self.base_variant, *[r for r in rows if r != self.base_variant]]

    @property
    def paper_rows(self) -> dict[int, str]:
        """Paper 003 Table 2 row number -> the variant reproducing it (configured ones)."""
        return {
            v.paper_row: name
            for name, v in sorted(self.variants.items(), key=lambda kv: kv[1].paper_row or 0)
            if v.paper_row is not None
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Classify3DConfig:
        d = dict(d or {})
        variants = _variants(dict(d.pop("variants", None) or {"base": {}}))
        backbones = {str(k): dict(v) for k, v in (d.pop("backbones", None) or {}).items()}
        nested = {
            "data": DataConfig,
            "augment": AugmentConfig,
            "cv": CVConfig,
            "train": TrainConfig,
            "model": ModelConfig,
            "stats": StatsConfig,
        }
        return config_from_mapping(
            cls, {**d, "variants": variants, "backbones": backbones}, nested=nested
        )
