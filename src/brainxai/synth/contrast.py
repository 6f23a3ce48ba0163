"""MR contrast: tissue fractions -> sequence intensities, bias field and Rician noise.

The signal of a voxel is the partial-volume mix ``S = sum_k f_k mu_k`` of its tissue
and lesion fractions ``f_k`` with per-subject jittered class intensities ``mu_k`` (one
matrix product for all sequences). Acquisition effects follow: a smooth multiplicative
bias field ``B = exp(sigma g(y))`` (``g`` a unit-variance Gaussian random field of
scanner coordinates with a long correlation length, the receive-coil profile), Rician
magnitude noise ``|B S + n_re + i n_im|`` and a scanner gain to integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from brainxai.labels import SEQUENCES_3D
from brainxai.synth.config import SynthConfig
from brainxai.synth.deform import OutputGrid
from brainxai.synth.lesions import FourierField

#: Mixing channels, in the order of the fraction stack built by the synthesis.
CHANNELS: tuple[str, ...] = (
    "background",
    "csf",
    "gm",
    "wm",
    "bone",
    "marrow",
    "scalp",
    "oedema",
    "enhancing",
    "necrosis",
    "solid",
)
LESION_CHANNELS: tuple[str, ...] = ("oedema", "enhancing", "necrosis", "solid")

#: Normal-tissue intensities per sequence (T1, T1C+, T2, FLAIR), white matter T1 ~ 1.
#: Relative signals at 1.5-3 T: CSF dark on T1 and FLAIR, bright on T2; GM darker than
#: WM on T1, brighter on T2/FLAIR; cortical bone dark everywhere; diploic marrow and
#: scalp fat bright on T1 and (fast spin-echo) T2. T1 is a spin-echo T1; T1C+ a
#: post-contrast 3D gradient-echo T1 (MPRAGE-like: stronger GM/WM contrast, darker CSF,
#: enhancing scalp/mucosa), as in most clinical protocols, so the two differ even far
#: from a lesion.
TISSUE_INTENSITY: dict[str, tuple[float, float, float, float]] = {
    "background": (0.0, 0.0, 0.0, 0.0),
    "csf": (0.30, 0.18, 1.00, 0.10),
    "gm": (0.70, 0.62, 0.62, 0.72),
    "wm": (0.92, 0.98, 0.45, 0.55),
    "bone": (0.05, 0.05, 0.04, 0.04),
    "marrow": (1.05, 1.05, 0.55, 0.60),
    "scalp": (0.85, 0.95, 0.60, 0.55),
}

#: Default lesion sub-region intensities (T1, T1C+, T2, FLAIR): enhancing tumour (T1
#: hypo, avid gadolinium uptake), necrosis (T1 dark, T2 bright, FLAIR intermediate),
#: non-enhancing infiltrative tumour (T2/FLAIR bright) and vasogenic oedema.
LESION_INTENSITY: dict[str, tuple[float, float, float, float]] = {
    "enhancing": (0.62, 1.55, 0.75, 0.80),
    "necrosis": (0.35, 0.36, 0.92, 0.65),
    "solid": (0.62, 0.66, 0.80, 0.90),
    "oedema": (0.72, 0.73, 0.82, 0.95),
}

#: Variant-specific overrides of :data:`LESION_INTENSITY` (keyed by lesion variant).
VARIANT_INTENSITY: dict[str, dict[str, tuple[float, float, float, float]]] = {
    # Meningioma: iso to GM on T1/T2, strong homogeneous enhancement.
    "convexity": {"enhancing": (0.66, 1.60, 0.64, 0.70)},
    "falx": {"enhancing": (0.66, 1.60, 0.64, 0.70)},
    # Schwannoma: T2 hyperintense, enhancing; cysts are fluid.
    "vestibular": {"enhancing": (0.60, 1.45, 0.82, 0.80), "necrosis": (0.30, 0.31, 0.95, 0.45)},
    # Central neurocytoma: iso to GM, moderate heterogeneous enhancement, CSF-like bubbles.
    "central": {
        "enhancing": (0.66, 1.05, 0.70, 0.75),
        "solid": (0.66, 0.70, 0.72, 0.78),
        "necrosis": (0.28, 0.29, 0.98, 0.25),
    },
    # PCNSL: hypercellular, T2 iso/hypointense, homogeneous enhancement.
    "deep": {"enhancing": (0.58, 1.45, 0.50, 0.65)},
    # Germinoma: iso, homogeneous enhancement, small fluid cysts.
    "pineal": {"enhancing": (0.64, 1.40, 0.68, 0.74), "necrosis": (0.30, 0.31, 0.95, 0.35)},
    "suprasellar": {"enhancing": (0.64, 1.40, 0.68, 0.74), "necrosis": (0.30, 0.31, 0.95, 0.35)},
    # Abscess: smooth ring slightly T1-bright and T2-dark, pus not suppressed on FLAIR.
    "abscess": {"enhancing": (0.75, 1.35, 0.35, 0.55), "necrosis": (0.40, 0.41, 0.90, 0.85)},
    # Simple cyst: CSF-like fluid.
    "cyst": {"necrosis": (0.25, 0.26, 1.00, 0.10)},
}

#: Lesion contrast is scaled about this tissue (the parenchyma a lesion replaces).
REFERENCE_TISSUE = "wm"
#: Evaluation stride (voxels) of the bias field and its stored precision (decimals).
BIAS_STRIDE = 8
BIAS_DECIMALS = 4


@dataclass(frozen=True, eq=False)
class Contrast:
    """Per-subject intensity matrix (channels x sequences) and acquisition settings."""

    mu: np.ndarray  # (len(CHANNELS), len(SEQUENCES_3D)) float32
    gain: np.ndarray  # (len(SEQUENCES_3D),)
    noise_sigma: float
    bias: FourierField
    bias_strength: float

    def mix(self, fractions: np.ndarray) -> np.ndarray:
        """Fractions (C, N) -> noise-free intensities (S, N)."""
        return self.mu.T @ fractions

    def bias_field(self, grid: OutputGrid) -> np.ndarray:
        """Multiplicative bias field on the whole output grid (float32).

        Evaluated every ``BIAS_STRIDE`` voxels (the field is far smoother than that) and
        upsampled trilinearly.
        """
        coarse = [
            np.linspace(0, n - 1, max(2, int(np.ceil((n - 1) / BIAS_STRIDE)) + 1))
            for n in grid.shape
        ]
        ijk = np.stack(np.meshgrid(*coarse, indexing="ij"), axis=-1).reshape(-1, 3)
        world = ijk @ grid.affine[:3, :3].T + grid.affine[:3, 3]
        log_b = self.bias_strength * self.bias(world.astype(np.float32))
        t = torch.from_numpy(log_b.reshape(1, 1, *(len(c) for c in coarse)).astype(np.float32))
        full = F.interpolate(t, size=grid.shape, mode="trilinear", align_corners=True)
        # Rounded to 1e-4 so that the saved field (exactly what was applied) compresses.
        return np.round(np.exp(full[0, 0].numpy()), BIAS_DECIMALS)

    def to_dict(self) -> dict:
        return {
            "intensity": {c: np.round(self.mu[i], 6).tolist() for i, c in enumerate(CHANNELS)},
            "sequences": list(SEQUENCES_3D),
            "gain": np.round(self.gain, 6).tolist(),
            "noise_sigma": round(self.noise_sigma, 8),
            "bias_strength": self.bias_strength,
        }


def draw_contrast(rng: np.random.Generator, variant: str, cfg: SynthConfig) -> Contrast:
    """Jittered intensities of one subject, lesion contrast scaled by ``lesion_contrast``."""
    table = {**TISSUE_INTENSITY, **LESION_INTENSITY, **VARIANT_INTENSITY.get(variant, {})}
    mu = np.array([table[c] for c in CHANNELS], dtype=np.float64)
    ref = mu[CHANNELS.index(REFERENCE_TISSUE)]
    for c in LESION_CHANNELS:
        i = CHANNELS.index(c)
        mu[i] = ref + cfg.lesion_contrast * (mu[i] - ref)
    jitter = 1.0 + cfg.intensity_jitter * rng.standard_normal(mu.shape)
    t1, t1c = SEQUENCES_3D.index("T1"), SEQUENCES_3D.index("T1C+")
    jitter[:, t1c] = jitter[:, t1]  # same acquisition family: contrast uptake is the change
    mu = np.clip(mu * jitter, 0.0, None)
    gain = rng.uniform(*cfg.gain_range, size=len(SEQUENCES_3D))
    sigma = cfg.noise * TISSUE_INTENSITY[REFERENCE_TISSUE][t1]
    bias = FourierField.draw(rng, cfg.bias_length_mm)
    return Contrast(mu.astype(np.float32), gain, sigma, bias, cfg.bias_strength)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise (Rician distributed)."""
    if sigma <= 0:
        return signal
    re = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    im = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.hypot(re, im)
