"""Every knob of the label-fraction fine-tuning stage, from ``params.yaml`` (``finetune``).

``Config.from_dict`` (:class:`brainxai.config.MappingConfig`) rejects unknown keys. The
backbone's architecture and input normalisation are NOT here: they come from
``pretrain.train`` so a classifier always matches the backbone it loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brainxai.config import MappingConfig, config_from_mapping
from brainxai.ssl.config import AugmentConfig


@dataclass(frozen=True)
class DataConfig(MappingConfig):
    """The decoded image cache of the 2D classification task and the leakage check."""

    #: Manifest ``dataset`` values that feed the 2D task (the Kaggle-17 layout).
    datasets_2d: tuple[str, ...] = ("kaggle17",)
    #: Side of the square cached images (pad to square, then resize).
    cache_size: int = 80
    decode_workers: int = 2
    #: Near-duplicate check: images are area-downsampled to this side, centred and
    #: l2-normalised; a train/test pair whose cosine similarity exceeds the threshold fails.
    near_dup_size: int = 32
    near_dup_threshold: float = 0.99


@dataclass(frozen=True)
class ProbeConfig(MappingConfig):
    """Linear probe on cached frozen-backbone embeddings (standardised, head folded back)."""

    epochs: int = 30
    lr: float = 0.01
    weight_decay: float = 1e-4
    batch_size: int = 256
    #: Epochs whose head is saved (the last epoch always is).
    checkpoint_epochs: tuple[int, ...] = (1, 5, 10, 15, 20, 25, 30)
    #: Images per backbone forward pass when embedding.
    embed_batch_size: int = 128
    #: Re-estimate the frozen backbone's BatchNorm statistics on (at most this many)
    #: training-split images before embedding (precise BN, :mod:`brainxai.ssl.batchnorm`),
    #: so every init - a random one above all - is embedded with statistics of the data
    #: it sees; 0 = keep the backbone's own statistics.
    bn_recalibration_images: int = 0


@dataclass(frozen=True)
class TuneConfig(MappingConfig):
    """Full fine-tuning: discriminative LRs, cosine schedule, early stopping on val macro-F1."""

    epochs: int = 30
    optimizer: str = "adamw"  # adamw | sgd
    #: Head LR; the backbone's is ``lr * backbone_lr_factor`` (discriminative LRs).
    lr: float = 1e-3
    backbone_lr_factor: float = 0.1
    #: The factor of a randomly initialised backbone (random init, the planted controls):
    #: it has no features to preserve, so a discriminative 0.1 only slows it down (measured
    #: on the demo cohort: test macro-F1 0.457 at 0.1 vs 0.702 at 1.0 after 15 epochs) and
    #: would hand every pretrained init an artificial lead over the baseline.
    random_init_backbone_lr_factor: float = 1.0
    weight_decay: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 32
    #: Cap on optimizer steps per epoch (0 = every batch; the smoke profile caps it).
    max_steps_per_epoch: int = 0
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.0
    #: Stop after this many epochs without a better val macro-F1 (0 = train every epoch).
    patience: int = 10
    checkpoint_epochs: tuple[int, ...] = (1, 5, 10, 15, 20, 25, 30)
    #: Per-epoch checkpoints (``checkpoint_epochs`` and the last) only for runs with these
    #: fractions and seeds ((): all); every other run keeps its selected checkpoint only.
    #: Whole-model checkpoints are 45 MB (ResNet-18) to 94 MB (ResNet-50): 180 runs x 7
    #: epochs would be ~120 GB. Must cover the xai stage's ``select``.
    tracked_fractions: tuple[float, ...] = ()
    tracked_seeds: tuple[int, ...] = ()
    eval_batch_size: int = 128
    #: Before every evaluation, re-estimate the BatchNorm statistics on (at most this
    #: many) training images, centre view (precise BN, :mod:`brainxai.ssl.batchnorm`);
    #: checkpoints hold the re-estimated statistics. 0 = the running statistics of training.
    bn_recalibration_images: int = 0
    label_smoothing: float = 0.0
    device: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


#: Fine-tuning protocols: linear probe, full fine-tuning, and paper 004's two-phase run.
PROTOCOLS: tuple[str, ...] = ("probe", "finetune", "twophase")
#: Selection rules of the two-phase protocol's test-split model.
TWOPHASE_SELECTIONS: tuple[str, ...] = ("last", "best_val")


@dataclass(frozen=True)
class TwoPhaseConfig(MappingConfig):
    """Paper 004's training protocol (§3.1) as one run: phase 1, *transfer learning*, for
    ``frozen_epochs`` epochs (backbone frozen - parameters and BatchNorm statistics - the
    head trained with Adam, cosine-annealed); then phase 2, *fine-tuning*, for
    ``unfrozen_epochs`` epochs (every layer trained with Adam at ``finetune_lr``, label
    smoothing, gradient-norm clipping). Checkpoints along the one run cover both phases.

    The paper's learning rates, smoothing and clipping values did not survive in its text;
    the defaults here are common choices (ASSUMED), all in ``params.yaml``.
    """

    frozen_epochs: int = 20
    unfrozen_epochs: int = 10
    #: Phase 1: the head's peak LR (Adam), cosine-annealed to ``lr * final_lr_fraction``.
    lr: float = 1e-3
    final_lr_fraction: float = 0.0
    #: Phase 2: one constant LR for every layer (Adam).
    finetune_lr: float = 1e-5
    weight_decay: float = 0.0
    #: Phase 2 only (the paper's phase 1 names neither).
    label_smoothing: float = 0.1
    #: Phase 2: clip the global gradient norm to this (0 = no clipping).
    grad_clip_norm: float = 1.0
    batch_size: int = 32
    #: Cap on optimizer steps per epoch (0 = every batch).
    max_steps_per_epoch: int = 0
    checkpoint_epochs: tuple[int, ...] = (1, 5, 10, 15, 20, 25, 30)
    #: As ``TuneConfig``: per-epoch checkpoints only for these fractions / seeds (() = all).
    tracked_fractions: tuple[float, ...] = ()
    tracked_seeds: tuple[int, ...] = ()
    #: The epoch whose model predicts the test split: ``last`` (the trajectory's end, as the
    #: paper reports and anchors its gold lists) or ``best_val`` (best val macro-F1).
    selection: str = "last"
    #: Run the protocol only at these label fractions / seeds of the stage (() = every one).
    fractions: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    eval_batch_size: int = 128
    device: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.frozen_epochs < 0 or self.unfrozen_epochs < 0:
            raise ValueError("twophase: frozen_epochs and unfrozen_epochs must be >= 0")
        if self.frozen_epochs + self.unfrozen_epochs < 1:
            raise ValueError("twophase: the run needs at least one epoch")
        if self.selection not in TWOPHASE_SELECTIONS:
            raise ValueError(f"twophase.selection must be one of {TWOPHASE_SELECTIONS}")
        if self.grad_clip_norm < 0:
            raise ValueError("twophase.grad_clip_norm must be >= 0")

    @property
    def epochs(self) -> int:
        """Length of the whole run (both phases)."""
        return self.frozen_epochs + self.unfrozen_epochs

    def runs_cell(self, fraction: float, seed: int) -> bool:
        """Whether the protocol runs at this (fraction, seed) of the stage's matrix."""
        frac_ok = not self.fractions or any(abs(fraction - f) < 1e-9 for f in self.fractions)
        return frac_ok and (not self.seeds or seed in self.seeds)


CONTROLS: tuple[str, ...] = ("positive", "pasted", "shortcut", "random_labels")
#: Controls whose model must be right for the right reasons (the lesion-pointing targets).
POSITIVE_CONTROLS: tuple[str, ...] = ("positive", "pasted")


@dataclass(frozen=True)
class ControlsConfig(MappingConfig):
    """Knobs and targets of the planted controls (``params.finetune.controls``)."""

    #: Controls run in every study (any of :data:`CONTROLS`; empty = none).
    run: tuple[str, ...] = CONTROLS
    #: The one label fraction and seed of every control cell.
    fraction: float = 1.0
    seed: int = 0
    #: The positive control *is* random-init full fine-tuning at ``fraction`` / ``seed``
    #: with the real recipe: where the study trains that cell (and ``epochs`` does not
    #: change it), its model is measured instead of training the same weights twice
    #: (bit-identical: RESULTS.md); False trains the control's own cell.
    positive_from_run: bool = True
    #: Shortcut tag: side as a fraction of the cached image side, grey value, and the gap
    #: to the image border (fraction of the side).
    tag_size: float = 0.08
    tag_value: int = 255
    tag_margin: float = 0.02
    #: The head of a cached image ("inside the brain"; ``controls.head_mask``): Gaussian
    #: smoothing (px), then above the background's median + ``head_noise_k`` robust SDs
    #: and never below ``head_threshold`` (grey value); largest region, holes filled.
    head_threshold: int = 8
    head_smooth_px: float = 1.0
    head_noise_k: float = 6.0
    #: ``pasted``: draws of a lesion's position inside the donor's head (the first that
    #: fits is kept), and the normal sequence that stands in for one with no normal slices.
    paste_tries: int = 200
    #: ``pasted``: the cut-out is the tumour core's mask dilated by this many px (the
    #: tissue the tumour changed around it: oedema, mass effect; 0 = the core alone); the
    #: moved cut-out is the truth the explanations are scored against.
    paste_margin_px: int = 0
    paste_donor_sequence: dict[str, str] = field(default_factory=lambda: {"T1C+": "T1"})
    #: Test images explained per control (classes taking turns) and the CAM method.
    explain_images: int = 68
    cam_method: str = "gradcam"
    #: Further methods measured on the same images (brainxai.xai.cams.METHODS): each gets
    #: the positive / shortcut criteria as comparison rows (``controls.method_rows``), and
    #: its relevance outside the head, shortcut vs positive model, the controls' direction.
    compare_methods: tuple[str, ...] = ("gradcam++", "layercam", "smoothgrad", "ig", "lrp")
    #: Gold list of the control's C-Score (paper 004, Eq. 1).
    tau: float = 0.5
    #: Permutations of the predictions that give the chance interval of macro-F1.
    n_permutations: int = 1000
    chance_level: float = 0.95
    #: Targets (issue 15, item 4).
    pointing_min: float = 0.5
    baseline_ratio: float = 2.0
    shortcut_outside_min: float = 0.5
    shortcut_pointing_max: float = 0.2
    shortcut_val_min: float = 0.5
    shortcut_drop_min: float = 0.2
    #: Does the control model use the planted evidence at all? The mean drop of p(true
    #: class) when the evidence (positive: the lesion; shortcut: the tag) is occluded, minus
    #: the drop for the same region moved by half the image (occlusion; Zeiler & Fergus 2014).
    reliance_min: float = 0.05
    #: Epochs of a control's cell (control -> epochs; absent or 0 = ``tune.epochs``): the
    #: shortcut needs only as long as a tag takes to learn and random labels hold nothing
    #: to learn, while the positive control must be the real recipe.
    epochs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.run) | set(self.epochs)) - set(CONTROLS))
        if unknown:
            raise ValueError(f"unknown controls {unknown}; valid: {list(CONTROLS)}")
        if any(int(e) < 0 for e in self.epochs.values()):
            raise ValueError("controls.epochs must be >= 0")
        if not 0 < self.tag_size < 0.5 or not 0 <= self.tag_margin < 0.25:
            raise ValueError("tag_size must be in (0, 0.5) and tag_margin in [0, 0.25)")
        if not 0 < self.fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        if self.paste_tries < 1 or self.paste_margin_px < 0:
            raise ValueError("paste_tries must be >= 1 and paste_margin_px >= 0")


@dataclass(frozen=True)
class FinetuneConfig(MappingConfig):
    """The stage: which inits, fractions, seeds and protocols; where things go."""

    inits: tuple[str, ...] = ("simclr", "byol", "dino", "mocov3", "random")
    #: Input size of fine-tuning, evaluation and explanation (0 = the pretraining size;
    #: read by :meth:`BackboneSpec.from_pretrain`).
    image_size: int = 0
    protocols: tuple[str, ...] = ("probe", "finetune", "twophase")
    fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 0.5, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    #: Local ImageNet weights file; when set, the ``imagenet`` init is added.
    imagenet_path: str = ""
    #: Where the pretraining stage wrote ``<framework>/backbone.safetensors``.
    backbone_dir: str = "models/ssl"
    out_dir: str = "models/finetune"
    cache_dir: str = "data/interim/finetune"
    reports_dir: str = "reports/finetune"
    #: Bootstrap resamples (patient level) of the aggregate CIs and paired tests.
    n_boot: int = 1000
    #: Power at which each comparison's minimal detectable difference is reported.
    mde_power: float = 0.8
    ece_bins: int = 15
    #: Exit non-zero when any run failed (after every other run finished and was reported).
    fail_on_error: bool = True
    #: Prefect task runner of the cells (``tasks.runners.task_runner``): one worker on CPU,
    #: where torch already uses every core for one run.
    runner: dict[str, Any] = field(default_factory=lambda: {"kind": "thread", "workers": 1})
    #: torch intra-op threads (0 = torch's default).
    torch_threads: int = 0
    #: The supervised baseline every other initialisation is compared with.
    baseline_init: str = "random"
    #: The metric of the paired tests, the label-efficiency plot and the results table.
    compare_metric: str = "macro_f1"
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    #: Paper 004's two-phase protocol (frozen backbone, then every layer; one run).
    twophase: TwoPhaseConfig = field(default_factory=TwoPhaseConfig)
    #: Planted controls (:mod:`brainxai.finetune.controls`), run with every study.
    controls: ControlsConfig = field(default_factory=ControlsConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> FinetuneConfig:
        d = dict(d or {})
        nested = {"data": DataConfig, "probe": ProbeConfig, "controls": ControlsConfig}
        for key, sub in nested.items():
            d[key] = sub.from_dict(d.get(key))
        for key, sub in (("tune", TuneConfig), ("twophase", TwoPhaseConfig)):
            section = dict(d.get(key) or {})
            section["augment"] = AugmentConfig.from_dict(section.get("augment"))
            d[key] = sub.from_dict(section)
        cfg = config_from_mapping(cls, d)
        for f in cfg.fractions:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"label fractions must be in (0, 1], got {f}")
        unknown = sorted(set(cfg.protocols) - set(PROTOCOLS))
        if unknown:
            raise ValueError(f"unknown protocols {unknown}; known: {sorted(PROTOCOLS)}")
        return cfg


@dataclass(frozen=True)
class BackboneSpec(MappingConfig):
    """The backbone every classifier uses (from ``pretrain.train``)."""

    arch: str = "resnet18"
    image_size: int = 64
    input_mean: float = 0.449
    input_std: float = 0.226

    @classmethod
    def from_pretrain(cls, train: dict[str, Any], image_size: int = 0) -> BackboneSpec:
        """The pretraining backbone; ``image_size`` > 0 fine-tunes at another input size
        (``finetune.image_size``: e.g. pretrained at 64 px, fine-tuned and explained at
        128 px for an 8 x 8 ``layer3`` CAM grid)."""
        return cls(
            arch=str(train["arch"]),
            image_size=int(image_size) or int(train["image_size"]),
            input_mean=float(train.get("input_mean", cls.input_mean)),
            input_std=float(train.get("input_std", cls.input_std)),
        )
