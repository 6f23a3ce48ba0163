"""Settings of the explanation-tracking stage (``params.yaml`` section ``xai``).

Which checkpoints are explained (:class:`SelectConfig`), on which images
(``eval_split``, ``max_images``), with which methods, and how the heatmaps
(:class:`~brainxai.xai.cams.CamConfig`), the tracking metrics
(:class:`~brainxai.xai.trajectory.TrackingConfig`), the parameter-randomisation sanity
check (:class:`RandomisationConfig`) and the deletion/insertion faithfulness scores
(:class:`~brainxai.xai.faithfulness.FaithfulnessConfig`) are configured. Every key is
checked: an unknown key is an error, not a silently ignored typo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from brainxai.config import MappingConfig, config_from_mapping, config_to_mapping
from brainxai.xai.cams import METHODS, CamConfig
from brainxai.xai.faithfulness import FaithfulnessConfig
from brainxai.xai.trajectory import TrackingConfig

KINDS = ("2d", "3d")


@dataclass(frozen=True)
class SelectConfig(MappingConfig):
    """Filters on a checkpoint index (:mod:`brainxai.xai.checkpoints`).

    Each list filters one column; an empty list keeps every value. ``fractions`` and
    ``seeds`` also take ``"min"``/``"max"`` (the smallest/largest value in the index after
    the other filters), ``epochs`` takes ``"last"`` (each run's last epoch). ``where``
    filters any other index column (e.g. ``{"fold": [0]}`` for the 3D cross-validation).
    """

    protocols: tuple[str, ...] = ()
    inits: tuple[str, ...] = ()
    fractions: tuple[float | str, ...] = ()
    seeds: tuple[int | str, ...] = ()
    epochs: tuple[int | str, ...] = ()
    where: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, words in (("fractions", ("min", "max")), ("seeds", ("min", "max"))):
            bad = [v for v in getattr(self, name) if isinstance(v, str) and v not in words]
            if bad:
                raise ValueError(f"select.{name}: unknown word(s) {bad}; use numbers or {words}")
        bad = [v for v in self.epochs if isinstance(v, str) and v != "last"]
        if bad:
            raise ValueError(f"select.epochs: unknown word(s) {bad}; use numbers or 'last'")

    def merged(self, over: dict[str, Any] | None) -> SelectConfig:
        """This selection with the keys of ``over`` replaced (per-family overrides)."""
        return SelectConfig.from_dict({**config_to_mapping(self), **(over or {})})


@dataclass(frozen=True)
class RandomisationConfig(MappingConfig):
    """Model-parameter randomisation check (Adebayo et al. 2018) on each selected run's
    final checkpoint: maps of the trained model vs a re-initialised copy."""

    enabled: bool = True
    #: Methods checked; empty = every explained method.
    methods: tuple[str, ...] = ()
    #: Images compared (the first ones of the evaluation set); 0 = all.
    max_images: int = 16
    seed: int = 0
    #: Flag when the median similarity exceeds this (``brainxai.xai.randomisation.flag``).
    threshold: float = 0.5
    #: Which similarity is thresholded (not called ``on``: YAML 1.1 reads that as True).
    similarity: str = "spearman"

    def __post_init__(self) -> None:
        if self.similarity not in ("spearman", "soft_iou"):
            raise ValueError("randomisation.similarity must be 'spearman' or 'soft_iou'")
        if self.max_images < 0:
            raise ValueError("randomisation.max_images must be >= 0")
        _check_methods(self.methods, "randomisation.methods")


@dataclass(frozen=True)
class FamilyConfig(MappingConfig):
    """One model family: a checkpoint index and the images its models are evaluated on.

    ``kind="2d"``: ``data`` is a decoded cache directory (``brainxai.ssl.cache`` format:
    ``images.npy`` + ``index.parquet`` with ``mask_path``). ``kind="3d"``: ``data`` is the
    standardized manifest (``std_path`` of ``sequence``, ``std_lesion_path``) and
    ``pseudolabels`` the pseudo-label table whose masks mask-using models take as input.
    """

    index: str
    kind: str
    data: str
    sequence: str = "T1C+"
    pseudolabels: str = ""
    #: Evaluation images of this family (None = ``xai.max_images``).
    max_images: int | None = None
    select: dict[str, Any] = field(default_factory=dict)
    #: Keys of ``xai.cam`` this family overrides (e.g. its target ``layers``: a 2D ResNet
    #: and a 3D DenseNet have no layer name in common).
    cam: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"family kind must be one of {KINDS}, got {self.kind!r}")
        SelectConfig.from_dict(self.select)  # validate early
        CamConfig.from_dict(self.cam)  # unknown keys / bad values fail here

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FamilyConfig:
        d = dict(d)
        select = dict(d.pop("select", None) or {})
        cam = dict(d.pop("cam", None) or {})
        return replace(config_from_mapping(cls, d), select=select, cam=cam)

    def cam_config(self, shared: CamConfig) -> CamConfig:
        """``xai.cam`` with this family's overrides."""
        return CamConfig.from_dict({**shared.to_dict(), **self.cam})


@dataclass(frozen=True)
class XaiConfig(MappingConfig):
    """The whole ``xai`` section."""

    families: dict[str, FamilyConfig]
    methods: tuple[str, ...]
    select: SelectConfig = field(default_factory=SelectConfig)
    eval_split: str = "test"
    #: Images per family, stratified by class (classes take turns); 0 = all.
    max_images: int = 64
    #: Explain each image's true class ("label") or its predicted class ("predicted").
    explain: str = "label"
    device: str = "auto"
    seed: int = 0
    out_dir: str = "data/interim/xai"
    reports_dir: str = "reports/xai"
    cam: CamConfig = field(default_factory=CamConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    randomisation: RandomisationConfig = field(default_factory=RandomisationConfig)
    faithfulness: FaithfulnessConfig = field(default_factory=FaithfulnessConfig)

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("xai.methods must name at least one method")
        _check_methods(self.methods, "xai.methods")
        if self.explain not in ("label", "predicted"):
            raise ValueError("xai.explain must be 'label' or 'predicted'")
        if self.max_images < 0:
            raise ValueError("xai.max_images must be >= 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> XaiConfig:
        d = dict(d)
        families = {k: FamilyConfig.from_dict(v) for k, v in (d.pop("families", {}) or {}).items()}
        nested = {
            "select": SelectConfig,
            "cam": CamConfig,
            "tracking": TrackingConfig,
            "randomisation": RandomisationConfig,
            "faithfulness": FaithfulnessConfig,
        }
        return replace(config_from_mapping(cls, {"families": {}, **d}, nested), families=families)

    @property
    def randomisation_methods(self) -> tuple[str, ...]:
        """Methods the sanity check runs on (explained methods only)."""
        if not self.randomisation.enabled:
            return ()
        wanted = self.randomisation.methods or self.methods
        return tuple(m for m in self.methods if m in wanted)


def _check_methods(methods: tuple[str, ...], where: str) -> None:
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"{where}: unknown method(s) {bad}; known: {list(METHODS)}")
