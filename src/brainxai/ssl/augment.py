"""MRI-aware view generation as batched tensor ops (CPU or GPU, one call per batch).

Every sample of a batch gets its own random parameters, yet the whole batch is processed
by a handful of kernels, so augmentation runs on the training device next to the model:

1. **Geometry** - random resized crop (area fraction ``crop_scale``, aspect ``crop_ratio``),
   horizontal/vertical flips and a rotation of at most ``rotation_deg``, composed into one
   affine map per sample and applied by a single bilinear ``grid_sample`` (zeros outside
   the image, i.e. MR background).
2. **Intensity** (probability ``intensity_prob``) - contrast around the image mean,
   multiplicative brightness (scanner gain), gamma; no hue/saturation jitter and no random
   grayscale, which are meaningless on grey MR images.
3. **Blur** (``blur_prob``) - Gaussian, sigma drawn per sample, as a separable grouped conv.
4. **Noise** (``noise_prob``) - Rician: ``sqrt((x + s n1)^2 + (s n2)^2)``, the distribution
   of magnitude MR images.

Input: uint8 ``(B, H, W)`` (the decoded cache); output: float32 ``(B, 1, S, S)`` in [0, 1].
Randomness comes from an integer seed (one per training step), so a step's views are a
pure function of (seed, step) and resume reproduces them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from brainxai.ssl.config import AugmentConfig


def _uniform(lo: float, hi: float, n: int, gen: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def crop_affines(
    n: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rotation_deg: float,
    hflip_prob: float,
    vflip_prob: float,
    gen: torch.Generator,
) -> Tensor:
    """Per-sample affine matrices ``(n, 2, 3)`` mapping output to input coordinates.

    Output point ``p`` in [-1, 1]^2 is flipped, rotated, scaled to the crop's half-sizes
    ``(w, h)`` and shifted to the crop centre: ``x = c + diag(w, h) R(a) diag(fx, fy) p``.
    """
    area = _uniform(scale[0], scale[1], n, gen)
    log_r = _uniform(math.log(ratio[0]), math.log(ratio[1]), n, gen)
    w = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
    cx = (2 * torch.rand(n, generator=gen) - 1) * (1 - w)
    cy = (2 * torch.rand(n, generator=gen) - 1) * (1 - h)
    a = torch.deg2rad(_uniform(-rotation_deg, rotation_deg, n, gen))
    fx = torch.where(torch.rand(n, generator=gen) < hflip_prob, -1.0, 1.0)
    fy = torch.where(torch.rand(n, generator=gen) < vflip_prob, -1.0, 1.0)
    cos, sin = torch.cos(a), torch.sin(a)
    row0 = torch.stack([w * cos * fx, -w * sin * fy, cx], dim=1)
    row1 = torch.stack([h * sin * fx, h * cos * fy, cy], dim=1)
    return torch.stack([row0, row1], dim=1)


def warp(x: Tensor, theta: Tensor, size: int) -> Tensor:
    """Resample ``x`` (B, 1, H, W) through ``theta`` onto a ``size`` x ``size`` grid."""
    grid = F.affine_grid(theta.to(x), [x.shape[0], 1, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def jitter_intensity(x: Tensor, contrast: Tensor, brightness: Tensor, gamma: Tensor) -> Tensor:
    """Contrast about the per-image mean, multiplicative brightness, then gamma; in [0, 1]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast.view(-1, 1, 1, 1) + mean).clamp(0, 1)
    x = (x * brightness.view(-1, 1, 1, 1)).clamp(0, 1)
    return x.clamp_min(1e-6).pow(gamma.view(-1, 1, 1, 1)).clamp(0, 1)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma per sample (grouped conv, reflect padding)."""
    b, _, hgt, wid = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    radius = min(radius, (min(hgt, wid) - 1) // 2)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma.to(x).view(-1, 1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    y = x.reshape(1, b, hgt, wid)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(b, 1, -1, 1), groups=b)
    return y.reshape(b, 1, hgt, wid)


def rician_noise(x: Tensor, std: Tensor, gen: torch.Generator) -> Tensor:
    """Magnitude of complex Gaussian noise added to the (real) signal, clipped to [0, 1]."""
    s = std.to(x).view(-1, 1, 1, 1)
    n1 = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    n2 = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return torch.sqrt((x + s * n1) ** 2 + (s * n2) ** 2).clamp(0, 1)


def _where_apply(x: Tensor, mask: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` to the samples selected by ``mask`` only (others unchanged)."""
    idx = mask.nonzero().flatten().to(x.device)
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = fn(x[idx], idx.cpu())
    return out


class MRIAugment:
    """Makes the views of a batch: ``views(images_u8, seed, n_global)`` (see module doc)."""

    def __init__(self, cfg: AugmentConfig, size: int) -> None:
        self.cfg = cfg
        self.size = size

    def view(
        self, x: Tensor, gen: torch.Generator, dgen: torch.Generator, size: int, scale: tuple
    ) -> Tensor:
        """One random view of every image of ``x`` (float (B, 1, H, W) in [0, 1])."""
        c = self.cfg
        n = x.shape[0]
        theta = crop_affines(
            n, scale, c.crop_ratio, c.rotation_deg, c.hflip_prob, c.vflip_prob, gen
        )
        v = warp(x, theta, size)
        do_int = torch.rand(n, generator=gen) < c.intensity_prob
        con = _uniform(1 - c.contrast, 1 + c.contrast, n, gen)
        bri = _uniform(1 - c.brightness, 1 + c.brightness, n, gen)
        gam = torch.exp(_uniform(math.log(c.gamma[0]), math.log(c.gamma[1]), n, gen))
        v = _where_apply(v, do_int, lambda y, i: jitter_intensity(y, con[i], bri[i], gam[i]))
        do_blur = torch.rand(n, generator=gen) < c.blur_prob
        sig = _uniform(c.blur_sigma[0], c.blur_sigma[1], n, gen)
        v = _where_apply(v, do_blur, lambda y, i: gaussian_blur(y, sig[i]))
        do_noise = torch.rand(n, generator=gen) < c.noise_prob
        std = _uniform(c.noise_std[0], c.noise_std[1], n, gen)
        v = _where_apply(v, do_noise, lambda y, i: rician_noise(y, std[i], dgen))
        return v.contiguous()

    def views(self, images: Tensor, seed: int, n_global: int = 2) -> list[Tensor]:
        """``n_global`` views at ``size`` then ``cfg.local_views`` small local views."""
        gen = torch.Generator().manual_seed(int(seed))
        dgen = torch.Generator(device=images.device).manual_seed(int(seed) + 1)
        x = to_unit(images)
        out = [self.view(x, gen, dgen, self.size, self.cfg.crop_scale) for _ in range(n_global)]
        out += [
            self.view(x, gen, dgen, self.cfg.local_size, self.cfg.local_crop_scale)
            for _ in range(self.cfg.local_views)
        ]
        return out


def to_unit(images: Tensor) -> Tensor:
    """uint8 ``(B, H, W)`` -> float32 ``(B, 1, H, W)`` in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def center_view(images: Tensor, size: int) -> Tensor:
    """Whole image resized to ``size`` (evaluation view of the kNN monitor)."""
    x = to_unit(images)
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
