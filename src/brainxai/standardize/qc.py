"""Quality control per subject: overlap, mutual information, intensity statistics, montage."""

from __future__ import annotations

from pathlib import Path

import ants
import numpy as np

from brainxai.atomic import savefig_atomic


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Sorensen-Dice ``2|A&B| / (|A|+|B|)`` of two binary arrays (1.0 when both empty)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    denom = int(a.sum()) + int(b.sum())
    return 1.0 if denom == 0 else 2.0 * float(np.logical_and(a, b).sum()) / denom


def mutual_information(fixed: ants.ANTsImage, moving: ants.ANTsImage) -> float:
    """Mattes mutual information (nats, larger = better; ANTs returns its negative)."""
    return -float(ants.image_mutual_information(fixed, moving))


def intensity_stats(x: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, SD, 1st/50th/99th percentile and coefficient of variation inside ``mask``."""
    v = x[mask > 0].astype(np.float64)
    if v.size == 0:
        return {k: float("nan") for k in ("mean", "sd", "p01", "p50", "p99", "cov")}
    p01, p50, p99 = np.percentile(v, [1, 50, 99])
    mean, sd = float(v.mean()), float(v.std())
    return {
        "mean": mean,
        "sd": sd,
        "p01": float(p01),
        "p50": float(p50),
        "p99": float(p99),
        "cov": sd / abs(mean) if mean else float("nan"),
    }


def coefficient_of_variation(x: np.ndarray, mask: np.ndarray) -> float:
    """``sd / mean`` of ``x`` inside ``mask`` (the N4 criterion)."""
    return intensity_stats(x, mask)["cov"]


def montage(image: np.ndarray, outline: np.ndarray, path: str | Path, title: str = "") -> Path:
    """PNG of three orthogonal central slices with the outline of ``outline`` overlaid.

    Arrays are in canonical RAS voxel order; slices are shown radiological-agnostic with
    superior/anterior up.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = [s // 2 for s in image.shape]
    views = [
        (image[c[0], :, :], outline[c[0], :, :], "sagittal"),
        (image[:, c[1], :], outline[:, c[1], :], "coronal"),
        (image[:, :, c[2]], outline[:, :, c[2]], "axial"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3), dpi=80)
    lo, hi = np.percentile(image[outline > 0], [1, 99]) if outline.any() else (0.0, 1.0)
    for ax, (img, ol, name) in zip(axes, views, strict=True):
        ax.imshow(img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        if ol.any():
            ax.contour(ol.T, levels=[0.5], colors="r", linewidths=0.8)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    savefig_atomic(fig, path)
    plt.close(fig)
    return path
