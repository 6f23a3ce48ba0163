"""Render the data figures of docs/data.md from a finished smoke study.

Usage: ``python docs/make_figures.py [STUDY_ROOT]`` (default: the repository root after
``make study``); writes docs/img/kaggle_montage.png and docs/img/volume_montage.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = Path(__file__).resolve().parent / "img"


def main(root: Path) -> None:
    m = pd.read_parquet(root / "data/processed/manifest.parquet")
    OUT.mkdir(exist_ok=True)
    first = m[m["ndim"] == 2].groupby("label").first().reset_index()
    fig, axes = plt.subplots(3, 6, figsize=(15, 8))
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, first.itertuples(), strict=False):
        ax.imshow(Image.open(root / r.path).convert("L"), cmap="gray")
        ax.set_title(r.label, fontsize=8)
    fig.savefig(OUT / "kaggle_montage.png", dpi=70, bbox_inches="tight")
    vols = m[m["ndim"] == 3]
    fig, axes = plt.subplots(2, 4, figsize=(14, 7))
    for row, sub in zip(axes, sorted(vols["subject"].unique())[:2], strict=False):
        for ax, seq in zip(row, ["T1", "T1C+", "T2", "FLAIR"], strict=True):
            r = vols[(vols["subject"] == sub) & (vols["sequence"] == seq)].iloc[0]
            v = np.asarray(nib.as_closest_canonical(nib.load(root / r.path)).dataobj)
            mask = np.asarray(nib.as_closest_canonical(nib.load(root / r.mask_path)).dataobj)
            z = int(np.argmax(mask.sum((0, 1)))) if mask.any() else v.shape[2] // 2
            ax.imshow(np.rot90(v[:, :, z]), cmap="gray")
            ax.contour(np.rot90(mask[:, :, z]), [0.5], colors="r", linewidths=0.5)
            ax.set_title(f"{sub} {r.label} {seq}", fontsize=8)
            ax.axis("off")
    fig.savefig(OUT / "volume_montage.png", dpi=70, bbox_inches="tight")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
