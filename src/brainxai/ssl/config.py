"""Every knob of SSL pretraining, as frozen dataclasses built from ``params.yaml``.

``from_dict`` rejects unknown keys (a typo must not silently fall back to a default)
and turns YAML lists into tuples. Defaults are the *smoke* profile; the published
per-framework defaults live in ``params.yaml`` (section ``pretrain``) and in each
framework module's config class.
"""

from __future__ import annotations

from dataclasses import dataclass

from brainxai.config import MappingConfig, config_to_mapping

#: Kept for flows/finetune.py only (the one spelling is ``config.to_dict()``).
to_dict = config_to_mapping


@dataclass(frozen=True)
class DataConfig(MappingConfig):
    """What is pretrained on and how it is cached (decoded once, uint8, memory-mapped)."""

    #: Side of the square cached images (pad to square, then resize); crops are taken from it.
    cache_size: int = 80
    #: Manifest rows with these ``ndim`` feed the 2D set (Kaggle-layout slices).
    datasets_2d: tuple[str, ...] = ("kaggle17",)
    #: Axial slices sampled per 3D volume of a training patient (0 = no 3D slices).
    slices_per_volume: int = 0
    #: Manifest column holding each volume's path: ``path`` (raw) today; ``std_path`` once
    #: the standardization stage writes skull-stripped, MNI-registered volumes.
    volume_column: str = "path"
    #: Slices are drawn evenly inside this central fraction of the volume's brain extent.
    volume_slab: float = 0.6
    #: Upper intensity window of a 3D slice: this percentile of the volume maps to 255.
    volume_window_percentile: float = 99.5
    #: Keep the whole uint8 cache on the training device when it is at most this many bytes.
    resident_max_bytes: int = 2_000_000_000
    #: Threads decoding images into the cache.
    decode_workers: int = 2


@dataclass(frozen=True)
class AugmentConfig(MappingConfig):
    """MRI-aware augmentation (grayscale: no hue/saturation jitter, no random grayscale).

    Geometry: random resized crop (scale of the image area, aspect ratio), flips, small
    rotation (MoCo-CXR uses +-10 deg); intensity: contrast, multiplicative brightness and
    gamma jitter; Gaussian blur; Rician noise (the noise of magnitude MR images).
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    hflip_prob: float = 0.5
    vflip_prob: float = 0.0
    rotation_deg: float = 10.0
    intensity_prob: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_prob: float = 0.5
    #: Gaussian blur sigma in pixels of the output view.
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    noise_prob: float = 0.5
    #: Rician noise std as a fraction of full scale.
    noise_std: tuple[float, float] = (0.0, 0.04)
    #: DINO multi-crop: number of small local views, their side and crop scale.
    local_views: int = 0
    local_size: int = 32
    local_crop_scale: tuple[float, float] = (0.05, 0.2)


@dataclass(frozen=True)
class TrainConfig(MappingConfig):
    """The training loop (cosine LR with warmup, checkpoints, device options)."""

    arch: str = "resnet18"
    #: Local ImageNet weights (torch.save state dict or safetensors); "" = random init.
    weights_path: str = ""
    image_size: int = 64
    epochs: int = 3
    batch_size: int = 32
    #: Cap on optimizer steps per epoch (0 = every full batch of the epoch).
    max_steps_per_epoch: int = 0
    warmup_epochs: float = 1.0
    #: Final LR as a fraction of the peak LR.
    final_lr_fraction: float = 0.0
    checkpoint_every: int = 1
    #: Checkpoints kept on disk (the newest ones; the final one always).
    keep_checkpoints: int = 2
    #: Report step metrics every this many steps (each report syncs the device once).
    log_every: int = 1
    #: Grayscale input normalisation (ImageNet mean/std averaged over RGB).
    input_mean: float = 0.449
    input_std: float = 0.226
    #: "auto" (cuda when present), "cpu" or "cuda".
    device: str = "auto"
    #: bf16 autocast, channels_last and torch.compile apply on CUDA only.
    bf16: bool = True
    channels_last: bool = True
    compile: bool = False
    seed: int = 0


@dataclass(frozen=True)
class KnnConfig(MappingConfig):
    """kNN monitor (weighted kNN of Wu et al. 2018 via lightly's ``knn_predict``)."""

    every: int = 1
    k: int = 20
    temperature: float = 0.1
    #: Manifest column with the monitor's labels; bank = ``bank_split``, queries = ``query_split``.
    label_column: str = "label"
    bank_split: str = "train"
    query_split: str = "val"
    batch_size: int = 128
    #: The reference every framework is judged against: the kNN accuracy of the same
    #: backbone at its random initialisation (before step 0), with precise BN statistics
    #: re-estimated on at most this many pretraining images (0 = the initial running
    #: statistics; -1 = no reference).
    random_init_bn_images: int = 1024


@dataclass(frozen=True)
class OptimConfig(MappingConfig):
    """Optimizer of one framework: peak LR = ``base_lr * batch_size / 256`` (linear scaling)."""

    optimizer: str = "lars"  # lars | adamw | sgd
    base_lr: float = 0.3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    #: Max global gradient norm (0 = no clipping).
    clip_grad_norm: float = 0.0
