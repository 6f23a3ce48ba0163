"""Every knob of the pseudo-labelling stage (paper 003, Tumor-Localizer), one dataclass each.

The stage turns 2D boxes on axial slices into a 3D tumour mask: a box proposer
(:class:`ProposerConfig`: ``classical`` | ``transformers`` | ``openai``) answers per slice,
the boxes are stacked into a coarse 3D prior (:class:`PriorConfig`: Gaussian smoothing,
dilation, confidence threshold ``tau``) and a voxel-wise MLP (:class:`RefineConfig`)
trained on the prior's high-confidence voxels refines it. Lengths are in mm and
converted to voxels with the standardized grid's spacing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from brainxai.config import config_from_mapping

ProposerKind = Literal["classical", "transformers", "openai"]
PROPOSERS: tuple[str, ...] = ("classical", "transformers", "openai")
CoordSystem = Literal["qwen1000", "pixel", "unit"]
COORDS: tuple[str, ...] = ("qwen1000", "pixel", "unit")


@dataclass(frozen=True)
class SliceConfig:
    """Which axial slices are shown, and how they are rendered for a VLM.

    ``sequences``: the sequences a VLM is asked about (one image per slice and sequence);
    ``combine``: how their boxes meet in the prior (``max`` = union, ``mean`` = votes).
    ``min_brain_fraction``: slices whose brain area is below this fraction of the largest
    slice's are skipped. ``render_size``: longest image side in pixels; ``radiological``
    puts the patient's right on the image's left; anterior is always at the top.
    """

    sequences: tuple[str, ...] = ("FLAIR", "T1C+")
    combine: Literal["max", "mean"] = "max"
    min_brain_fraction: float = 0.1
    render_size: int = 448
    window_percentiles: tuple[float, float] = (0.5, 99.5)
    radiological: bool = True

    def __post_init__(self) -> None:
        if not self.sequences:
            raise ValueError("slices.sequences must not be empty")
        if self.combine not in ("max", "mean"):
            raise ValueError("slices.combine must be 'max' or 'mean'")
        if not 0.0 <= self.min_brain_fraction < 1.0:
            raise ValueError("slices.min_brain_fraction must be in [0, 1)")
        if self.render_size < 16:
            raise ValueError("slices.render_size must be >= 16")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SliceConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class ClassicalConfig:
    """Weight-free proposer: robust-z abnormality maps on the standardized volumes.

    ``channels``: ``"SEQ"`` (hyperintensity of a sequence), ``"A-B"`` (subtraction, e.g.
    ``T1C+-T1`` = enhancement), ``"asym:SEQ"`` (contralateral asymmetry, SEQ minus its
    left-right mirror in MNI space). Each channel is robust-z scored inside the brain
    (median, 1.4826 MAD); the abnormality map is their maximum, smoothed with
    ``smooth_mm``, thresholded at ``z_threshold`` inside the brain eroded by
    ``brain_erode_mm``; 3D components under ``min_component_ml`` are noise; every 2D
    component of at least ``min_area_px`` voxels in a slice gives a box.
    """

    channels: tuple[str, ...] = ("T1C+-T1",)
    z_threshold: float = 5.0
    smooth_mm: float = 2.0
    brain_erode_mm: float = 4.0
    min_component_ml: float = 0.2
    min_area_px: int = 2
    max_boxes_per_slice: int = 4

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("classical.channels must not be empty")
        if self.max_boxes_per_slice < 1 or self.min_area_px < 1:
            raise ValueError("classical: max_boxes_per_slice and min_area_px must be >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ClassicalConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class PromptConfig:
    """Prompt template files (package ``prompt_templates/`` or a path) and the answer's coordinates.

    ``coords``: how the model writes boxes: ``qwen1000`` (Qwen2.5/3-VL relative grid,
    0-1000), ``pixel`` (pixels of the image sent) or ``unit`` (0-1).
    ``max_retries``: re-asks with the ``strict`` template after a malformed answer.
    """

    expert: str = "expert.txt"
    strict: str = "strict.txt"
    coords: CoordSystem = "qwen1000"
    max_retries: int = 1

    def __post_init__(self) -> None:
        if self.coords not in COORDS:
            raise ValueError(f"prompts.coords must be one of {COORDS}")
        if self.max_retries < 0:
            raise ValueError("prompts.max_retries must be >= 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PromptConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class TransformersConfig:
    """A local Hugging Face image-text-to-text model (Qwen3-VL), batched greedy decoding.

    ``model_path``: a directory from ``save_pretrained`` / ``hf download`` (nothing is
    downloaded at run time). ``dtype``: ``bfloat16`` on GPU; CPU always runs float32.
    """

    model_path: str = ""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 8
    max_new_tokens: int = 128
    min_pixels: int = 0  # 0: the processor's own; else passed to the image processor
    max_pixels: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("transformers: batch_size and max_new_tokens must be >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TransformersConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class OpenAIConfig:
    """Any OpenAI-compatible chat endpoint (vLLM, ``transformers serve``, Ollama...).

    The key is read from the environment variable ``api_key_env`` (never from params).
    ``retries`` with exponential back-off ``backoff_s * 2**attempt`` on time-outs,
    connection errors, 429 and 5xx; at most ``max_concurrency`` requests in flight.
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "Qwen/Qwen3-VL-8B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0
    max_concurrency: int = 4
    max_tokens: int = 256
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("openai: max_concurrency >= 1, retries >= 0, timeout_s > 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> OpenAIConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class PriorConfig:
    """Boxes -> coarse 3D prior: ``P = dilate_r(G_sigma * B)``; coarse mask ``P >= level``.

    ``B`` stacks the slices' boxes; ``sigma_mm`` the Gaussian, ``dilate_mm`` the radius of
    the grey dilation (ball); ``tau`` the high-confidence level whose voxels are the MLP's
    positives; ``coarse_level`` the coarse mask's level. All masks are cut to the brain.
    """

    sigma_mm: float = 2.0
    dilate_mm: float = 2.0
    tau: float = 0.9
    coarse_level: float = 0.5

    def __post_init__(self) -> None:
        if self.sigma_mm < 0 or self.dilate_mm < 0:
            raise ValueError("prior: sigma_mm and dilate_mm must be >= 0")
        if not 0.0 < self.coarse_level <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError("prior: tau and coarse_level must be in (0, 1]")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PriorConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class RefineConfig:
    """Voxel-wise MLP on intensity features, trained on the prior's confident voxels.

    Features per voxel: every sequence's intensity, local mean and standard deviation in
    cubes of side ``scales_mm``, and (``use_coords``) template-space coordinates.
    Positives: ``P > tau``; negatives: brain voxels farther than ``negative_margin_mm``
    outside the coarse mask. At most ``n_positive`` / ``n_negative`` are sampled (seeded).
    The prediction (probability >= ``threshold``) is kept within ``search_mm`` of the
    coarse mask, and only its connected components touching the coarse mask.
    """

    sequences: tuple[str, ...] = ("T1", "T1C+", "T2", "FLAIR")
    scales_mm: tuple[float, ...] = ()
    use_coords: bool = False
    hidden: tuple[int, ...] = (32, 16)
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    balanced: bool = False
    n_positive: int = 4000
    n_negative: int = 12000
    negative_margin_mm: float = 2.0
    threshold: float = 0.8
    search_mm: float = 4.0
    min_positive: int = 10
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.sequences or not self.hidden:
            raise ValueError("refine: sequences and hidden must not be empty")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("refine.threshold must be in (0, 1)")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RefineConfig:
        return config_from_mapping(cls, d)


@dataclass(frozen=True)
class PseudolabelConfig:
    """The whole stage; ``proposer`` picks the box source."""

    proposer: ProposerKind = "classical"
    seed: int = 0
    hd95_empty_mm: float = 200.0  # HD95 reported when one mask is empty and the other not
    slices: SliceConfig = field(default_factory=SliceConfig)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    def __post_init__(self) -> None:
        if self.proposer not in PROPOSERS:
            raise ValueError(f"proposer must be one of {PROPOSERS}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PseudolabelConfig:
        return config_from_mapping(
            cls,
            d,
            {
                "slices": SliceConfig,
                "classical": ClassicalConfig,
                "prompts": PromptConfig,
                "transformers": TransformersConfig,
                "openai": OpenAIConfig,
                "prior": PriorConfig,
                "refine": RefineConfig,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
