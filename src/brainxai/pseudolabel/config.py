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
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from brainxai.config import MappingConfig, config_from_mapping
from brainxai.redact import has_credentials, is_loopback_host, redact_url


def local_model_name(model_path: str) -> str:
    """A local Hugging Face model's family: ``model_type`` of its ``config.json`` (e.g.
    ``qwen2_5_vl``, ``qwen3_vl``), else the directory's name ("" without a path)."""
    if not model_path:
        return ""
    cfg = Path(model_path) / "config.json"
    if cfg.is_file():
        model_type = json.loads(cfg.read_text()).get("model_type")
        if model_type:
            return str(model_type)
    return Path(model_path).name


ProposerKind = Literal["classical", "transformers", "openai"]
PROPOSERS: tuple[str, ...] = ("classical", "transformers", "openai")
CoordSystem = Literal["qwen1000", "pixel", "unit"]
COORDS: tuple[str, ...] = ("qwen1000", "pixel", "unit")
#: ``prompts.coords: auto`` resolves from the model's family (:func:`coords_for_model`).
AUTO_COORDS = "auto"
#: Box coordinates per model family, matched in the lower-cased model name / model_type:
#: Qwen2-VL and Qwen3-VL answer on a relative 0-1000 grid, Qwen2.5-VL in absolute pixels
#: of the image it was given. Longer keys first (``qwen2.5`` before ``qwen2``).
MODEL_FAMILY_COORDS: tuple[tuple[tuple[str, ...], CoordSystem], ...] = (
    (("qwen2.5-vl", "qwen2_5_vl", "qwen2.5vl", "qwen25vl", "qwen2_5-vl"), "pixel"),
    (("qwen3-vl", "qwen3_vl", "qwen3vl"), "qwen1000"),
    (("qwen2-vl", "qwen2_vl", "qwen2vl"), "qwen1000"),
)
#: Prompt sets: ``expert`` (this project's: box the tumour core, FLAIR and T1C+ slices) and
#: ``paper003`` (paper 003 §4.3's cues on T1-CE slices only); the sequences each set shows
#: when ``slices.sequences`` is empty.
PROMPT_SETS: dict[str, tuple[str, ...]] = {"expert": ("FLAIR", "T1C+"), "paper003": ("T1C+",)}
PAPER_SEQUENCE = "T1C+"


def coords_for_model(coords: str, model: str) -> CoordSystem:
    """The coordinate system of a model's boxes: ``coords`` itself unless it is ``auto``,
    then the family's (:data:`MODEL_FAMILY_COORDS`) found in ``model`` (a model name such
    as ``Qwen/Qwen2.5-VL-7B-Instruct`` or a config ``model_type`` such as ``qwen3_vl``)."""
    if coords != AUTO_COORDS:
        if coords not in COORDS:
            raise ValueError(f"prompts.coords must be {AUTO_COORDS} or one of {COORDS}")
        return coords  # type: ignore[return-value]
    name = model.lower()
    for keys, system in MODEL_FAMILY_COORDS:
        if any(k in name for k in keys):
            return system
    raise ValueError(
        f"prompts.coords is auto but model {model!r} is of no known family "
        f"(Qwen2-VL / Qwen2.5-VL / Qwen3-VL): set prompts.coords to one of {COORDS}"
    )


@dataclass(frozen=True)
class SliceConfig(MappingConfig):
    """Which axial slices are shown, and how they are rendered for a VLM.

    ``sequences``: the sequences a VLM is asked about (one image per slice and sequence);
    empty: those of the prompt set (:data:`PROMPT_SETS`);
    ``combine``: how their boxes meet in the prior (``max`` = union, ``mean`` = votes).
    ``min_brain_fraction``: slices whose brain area is below this fraction of the largest
    slice's are skipped. ``render_size``: longest image side in pixels; ``radiological``
    puts the patient's right on the image's left; anterior is always at the top.
    """

    sequences: tuple[str, ...] = ()
    combine: Literal["max", "mean"] = "max"
    min_brain_fraction: float = 0.1
    render_size: int = 448
    window_percentiles: tuple[float, float] = (0.5, 99.5)
    radiological: bool = True

    def __post_init__(self) -> None:
        if self.combine not in ("max", "mean"):
            raise ValueError("slices.combine must be 'max' or 'mean'")
        if not 0.0 <= self.min_brain_fraction < 1.0:
            raise ValueError("slices.min_brain_fraction must be in [0, 1)")
        if self.render_size < 16:
            raise ValueError("slices.render_size must be >= 16")


@dataclass(frozen=True)
class ClassicalConfig(MappingConfig):
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


@dataclass(frozen=True)
class PromptConfig(MappingConfig):
    """Prompt template files (package ``prompt_templates/`` or a path) and the answer's coordinates.

    ``set``: ``expert`` (this project's prompt: box the tumour core, leave the oedema out)
    or ``paper003`` (paper 003 §4.3: T1-CE slices, cues "abnormal signal intensities,
    irregular boundaries, edema-associated gradients, and midline asymmetry"); the template
    of each is the field of that name. ``coords``: how the model writes boxes —
    ``qwen1000`` (relative 0-1000 grid: Qwen2-VL, Qwen3-VL), ``pixel`` (absolute pixels of
    the image sent: Qwen2.5-VL), ``unit`` (0-1) or ``auto`` (from the model's family,
    :func:`coords_for_model`). ``max_retries``: re-asks with the ``strict`` template after
    a malformed answer.
    """

    set: str = "expert"
    expert: str = "expert.txt"
    paper003: str = "paper003.txt"
    strict: str = "strict.txt"
    coords: str = AUTO_COORDS
    max_retries: int = 1

    def __post_init__(self) -> None:
        if self.set not in PROMPT_SETS:
            raise ValueError(f"prompts.set must be one of {sorted(PROMPT_SETS)}")
        if self.coords not in (AUTO_COORDS, *COORDS):
            raise ValueError(f"prompts.coords must be {AUTO_COORDS} or one of {COORDS}")
        if self.max_retries < 0:
            raise ValueError("prompts.max_retries must be >= 0")

    @property
    def template(self) -> str:
        """The first question's template file of the chosen set."""
        return str(getattr(self, self.set))


@dataclass(frozen=True)
class TransformersConfig(MappingConfig):
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


@dataclass(frozen=True)
class OpenAIConfig(MappingConfig):
    """Any OpenAI-compatible chat endpoint (vLLM, ``transformers serve``, Ollama...).

    The key is read from the environment variable ``api_key_env`` (never from params).
    ``retries`` with exponential back-off ``backoff_s * 2**attempt`` on time-outs,
    connection errors, 429 and 5xx; at most ``max_concurrency`` requests in flight.

    Where the images go: ``base_url``, or the URL in the environment variable named by
    ``base_url_env`` when that is set (the only place a URL with credentials,
    ``https://user:password@host/v1``, may come from: params are committed, logged to
    MLflow and copied into ``dvc.lock``, so credentials in ``base_url`` are refused).
    Plain ``http://`` goes only to this machine (localhost, 127.0.0.0/8, ::1) unless
    ``allow_insecure_http`` - MRI slices and the key would cross the network in clear
    text. Credentials never appear in the model id (cache keys, cached answers), in
    error messages or in logs (:func:`brainxai.redact.redact_url`).
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    base_url_env: str = ""
    allow_insecure_http: bool = False
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
        if has_credentials(self.base_url):
            raise ValueError(
                f"openai.base_url {redact_url(self.base_url)} carries credentials, and params "
                "are committed and logged: give the key in the environment variable named by "
                f"openai.api_key_env (${self.api_key_env}), or the whole URL in one named by "
                "openai.base_url_env"
            )
        check_endpoint(self.base_url, self.allow_insecure_http)

    def endpoint(self) -> str:
        """The URL requests go to (``$base_url_env`` when set, else ``base_url``), checked
        by :func:`check_endpoint`. It may carry credentials: show only ``redact_url`` of it."""
        url = os.environ.get(self.base_url_env, "") if self.base_url_env else ""
        url = url.strip() or self.base_url
        check_endpoint(url, self.allow_insecure_http)
        return url


def check_endpoint(url: str, allow_insecure_http: bool = False) -> None:
    """Refuse an endpoint URL that is not ``http(s)://host...``, or plain ``http://`` to a
    host other than this machine unless ``allow_insecure_http`` (``ValueError``; the
    message shows the URL without credentials)."""
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"openai endpoint {shown!r}: not an http(s)://host URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure_http:
        raise ValueError(
            f"openai endpoint {shown}: plain http:// to {parts.hostname}, not this machine - "
            "images and the API key would cross the network unencrypted. Use https://, or "
            "set pseudolabel.config.openai.allow_insecure_http: true for a trusted network"
        )


@dataclass(frozen=True)
class PriorConfig(MappingConfig):
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


@dataclass(frozen=True)
class RefineConfig(MappingConfig):
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


@dataclass(frozen=True)
class PseudolabelConfig(MappingConfig):
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
        if self.prompts.set == "paper003" and self.asked_sequences != (PAPER_SEQUENCE,):
            raise ValueError(
                f"prompts.set paper003 shows {PAPER_SEQUENCE} slices only (paper 003 uses "
                f"T1-CE alone): leave slices.sequences empty, not {list(self.slices.sequences)}"
            )

    @property
    def asked_sequences(self) -> tuple[str, ...]:
        """The sequences whose slices a VLM is shown: ``slices.sequences`` or the set's."""
        return tuple(self.slices.sequences) or PROMPT_SETS[self.prompts.set]

    @property
    def proposer_model(self) -> str:
        """The model that answers (empty for the classical proposer): the served name, or
        the local model's ``model_type`` (its ``config.json``), else its directory name."""
        if self.proposer == "openai":
            return self.openai.model
        if self.proposer == "transformers":
            return local_model_name(self.transformers.model_path)
        return ""

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
