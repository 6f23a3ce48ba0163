"""CAM galleries from the xai stage's stored heatmaps (paper 004's qualitative figure).

2D: rows = fine-tuned models (final checkpoint, one init after another), columns = the same
test images (spread over the classes); the heatmap over the image as the model saw it
(:func:`brainxai.ssl.cache.decode_2d` at the map size), the ground-truth lesion outline
in green. 3D: rows = test volumes of one 3D classifier (final checkpoint), columns = the
axial, coronal and sagittal slices through the lesion centroid (through the heatmap
maximum when there is no mask), resampled as the classifier saw them
(:func:`brainxai.xai.evalset.volumes_3d`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brainxai.report.figures import Figure, new_figure, save
from brainxai.report.sources import HeatmapInfo
from brainxai.ssl.cache import decode_2d
from brainxai.xai.evalset import mask_2d, masks_3d, volumes_3d
from brainxai.xai.heatmap_store import load_heatmaps


def final_files(infos: Sequence[HeatmapInfo], method: str, ndim: int) -> list[HeatmapInfo]:
    """The last-epoch file of ``method`` per model of the given dimensionality."""
    best: dict[str, HeatmapInfo] = {}
    for h in infos:
        if h.method == method and h.ndim == ndim:
            if h.model not in best or h.epoch > best[h.model].epoch:
                best[h.model] = h
    return [best[m] for m in sorted(best)]


def pick_method(infos: Sequence[HeatmapInfo], wanted: str) -> str | None:
    """``wanted`` if some heatmap has it, else the alphabetically first method (or None)."""
    methods = sorted({h.method for h in infos})
    return wanted if wanted in methods else (methods[0] if methods else None)


def round_robin(models: Sequence[str]) -> list[str]:
    """Models ordered so each init (name before ``__``) appears once before any repeats;
    within an init, names in reverse order (``…__f1__s0`` before ``…__f0.1__s0``: the
    largest label fraction first)."""
    groups: dict[str, list[str]] = {}
    for m in sorted(models, key=lambda m: (m.split("__")[0], _neg(m))):
        groups.setdefault(m.split("__")[0], []).append(m)
    order = []
    for r in range(max((len(g) for g in groups.values()), default=0)):
        order += [g[r] for g in groups.values() if r < len(g)]
    return order


def _neg(name: str) -> list[int]:
    """Sort key for descending names."""
    return [-ord(c) for c in name]


def spread(n_total: int, n: int) -> np.ndarray:
    """``n`` positions evenly spread over ``0 … n_total − 1`` (classes are sorted, so this
    samples across them)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(int))


def _overlay(ax, image: np.ndarray, cam: np.ndarray, mask: np.ndarray | None, alpha: float):
    ax.imshow(image, cmap="gray", interpolation="nearest")
    ax.imshow(cam, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])


def gallery_2d(
    infos: Sequence[HeatmapInfo],
    evalset: pd.DataFrame,
    root: Path,
    method: str,
    n_models: int,
    n_images: int,
    alpha: float,
    dpi: int,
    out_dir: Path,
) -> Figure | None:
    files = {h.model: h for h in final_files(infos, method, 2)}
    models = round_robin(list(files))[:n_models]
    if not models or n_images == 0:
        return None
    records = [load_heatmaps(files[m].path) for m in models]
    by_id = evalset.set_index("record_id")
    common = [r for r in records[0].record_ids if r in by_id.index]
    for rec in records[1:]:
        common = [r for r in common if r in set(rec.record_ids)]
    chosen = [common[i] for i in spread(len(common), n_images)]
    if not chosen:
        return None
    size = int(records[0].maps.shape[-1])
    fig = new_figure(1.7 * len(chosen) + 1.2, 1.85 * len(models) + 0.5, dpi)
    axes = fig.subplots(len(models), len(chosen), squeeze=False)
    for i, (model, rec) in enumerate(zip(models, records, strict=True)):
        pos = {str(r): k for k, r in enumerate(rec.record_ids)}
        for j, rid in enumerate(chosen):
            row = by_id.loc[rid]
            image = decode_2d(root / str(row["path"]), size)
            mask = None
            if str(row.get("mask_path", "") or ""):
                mask = mask_2d(root / str(row["mask_path"]), size)
            cam = np.asarray(rec.maps[pos[rid]], dtype=np.float32)
            _overlay(axes[i, j], image, cam, mask, alpha)
            if i == 0:
                axes[i, j].set_title(str(row["label"]), fontsize=7)
        axes[i, 0].set_ylabel(f"{model}\nepoch {files[model].epoch}", fontsize=7)
    caption = (
        f"2D CAM gallery ({method}, final checkpoints): {len(models)} fine-tuned models x "
        f"{len(chosen)} test images; heatmap over the image at the model's input size "
        f"({size} px), ground-truth lesion outline in green."
    )
    return save(fig, out_dir, "cam_gallery_2d", caption)


def _centre(mask: np.ndarray, cam: np.ndarray) -> tuple[int, int, int]:
    if mask.any():
        return tuple(round(c) for c in np.argwhere(mask).mean(axis=0))  # type: ignore[return-value]
    return tuple(int(c) for c in np.unravel_index(int(np.argmax(cam)), cam.shape))  # type: ignore[return-value]


def gallery_3d(
    infos: Sequence[HeatmapInfo],
    evalset: pd.DataFrame,
    root: Path,
    method: str,
    n_images: int,
    alpha: float,
    dpi: int,
    out_dir: Path,
) -> Figure | None:
    files = final_files(infos, method, 3)
    if not files or n_images == 0:
        return None
    info = next((h for h in files if h.model.startswith("full/")), files[0])
    rec = load_heatmaps(info.path)
    by_id = evalset.set_index("record_id")
    keep = [k for k, r in enumerate(rec.record_ids) if r in by_id.index]
    keep = [keep[i] for i in spread(len(keep), n_images)]
    if not keep:
        return None
    shape = tuple(int(s) for s in rec.maps.shape[1:])
    rows = by_id.loc[[str(rec.record_ids[k]) for k in keep]].reset_index()
    vols = volumes_3d(rows, root, shape)[:, 0].numpy()  # type: ignore[arg-type]
    masks, _ = masks_3d(rows, root, shape)  # type: ignore[arg-type]
    fig = new_figure(7.0, 2.3 * len(keep) + 0.4, dpi)
    axes = fig.subplots(len(keep), 3, squeeze=False)
    views = ("axial", "coronal", "sagittal")
    for i, k in enumerate(keep):
        cam = np.asarray(rec.maps[k], dtype=np.float32)
        vol, mask = vols[i], masks[i]
        lo, hi = np.percentile(vol, [1, 99]) if vol.size else (0.0, 1.0)
        vol = np.clip((vol - lo) / ((hi - lo) or 1.0), 0, 1)
        x, y, z = _centre(mask, cam)
        cuts = (
            (slice(None), slice(None), z),
            (slice(None), y, slice(None)),
            (x, slice(None), slice(None)),
        )
        for j, cut in enumerate(cuts):
            _overlay(axes[i, j], np.rot90(vol[cut]), np.rot90(cam[cut]), np.rot90(mask[cut]), alpha)
            if i == 0:
                axes[i, j].set_title(views[j], fontsize=8)
        axes[i, 0].set_ylabel(f"{rows.loc[i, 'subject']}\n{rows.loc[i, 'label']}", fontsize=7)
    caption = (
        f"3D CAM overlays ({method}) of {info.model}, epoch {info.epoch}: three orthogonal "
        f"slices through the lesion centroid at the classifier's input size {shape}; "
        "true lesion outline in green."
    )
    return save(fig, out_dir, "cam_gallery_3d", caption)
