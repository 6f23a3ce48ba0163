"""The images a model family is explained on, with their ground-truth lesion masks.

2D: rows of the decoded cache (:mod:`brainxai.ssl.cache`: ``images.npy`` uint8 (N, S, S)
+ ``index.parquet`` with ``record_id, split, label, path, mask_path, row``). An image
becomes a float in [0, 1] resized to the checkpoint's ``image_size`` (bilinear,
antialiased, as the fine-tuning stage feeds it); its mask goes through the same
geometry — zero-padded to a centred square (:func:`brainxai.ssl.cache.square`) and
resized to ``image_size`` — then is binarised at one half.

3D: rows of the standardized manifest (template-space ``std_path`` of one sequence and
``std_lesion_path``), resized to the checkpoint's ``input_size`` by area interpolation
as the 3D classifier does (masks too, then binarised at one half); a mask-using
classifier gets its mask (``meta["mask_source"]``) as a second input channel.

Every candidate row is either in the evaluation set or in ``excluded`` with a reason
(not in the split, not decodable, capped); the counts add up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from brainxai.hashing import file_sha256
from brainxai.ssl.cache import IMAGES, INDEX, square

EVAL_COLUMNS = ("record_id", "subject", "label", "path", "mask_path", "row")
#: Mask columns a mask-using 3D model may name as ``meta["mask_source"]``: the true lesion
#: of the standardized manifest and the pseudo-label masks (``pseudolabels.parquet``).
INPUT_MASK_COLUMNS = ("std_lesion_path", "coarse_path", "refined_path", "union_path")


class EvalInputError(ValueError):
    """The evaluation images cannot be given to this checkpoint (e.g. a mask-using model
    whose mask source is not available, or no image of one of its classes)."""


@dataclass(frozen=True)
class EvalSet:
    """Chosen rows (``table``), the rows left out with a reason, and a content id."""

    table: pd.DataFrame
    excluded: pd.DataFrame
    fingerprint: str

    @property
    def counts(self) -> dict[str, int]:
        reasons = self.excluded["reason"].value_counts().to_dict() if len(self.excluded) else {}
        return {"images": len(self.table), **{str(k): int(v) for k, v in reasons.items()}}


def balanced_sample(labels: Sequence[str], n: int, seed: int) -> np.ndarray:
    """Positions of at most ``n`` items, classes taking turns (each class shuffled with
    ``seed``), so rare classes keep as many images as the cap allows; sorted."""
    labels = np.asarray(labels).astype(str)
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(labels == k)) for k in sorted(set(labels))]
    order = [q[r] for r in range(max(map(len, queues))) for q in queues if r < len(q)]
    return np.sort(np.asarray(order[:n], dtype=np.int64))


def _split(
    cand: pd.DataFrame, reasons: pd.Series, max_images: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep rows without a reason, cap them (balanced); the rest go to ``excluded``."""
    ok = cand[reasons == ""].sort_values(["label", "record_id"], kind="stable")
    keep = ok.iloc[balanced_sample(ok["label"], max_images, seed)]
    capped = ok.drop(index=keep.index).assign(reason="capped (xai.max_images)")
    bad = cand[reasons != ""].assign(reason=reasons[reasons != ""])
    excluded = pd.concat([bad, capped])[["record_id", "label", "reason"]]
    return keep.reset_index(drop=True), excluded.reset_index(drop=True)


def _digest(table: pd.DataFrame, blobs: Sequence[bytes | str]) -> str:
    h = hashlib.sha256(json.dumps(table.astype(str).values.tolist()).encode())
    for b in blobs:
        h.update(b if isinstance(b, bytes) else b.encode())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    return file_sha256(path) if path.is_file() else "missing"


# ---------------------------------------------------------------------------------- 2D


def select_eval_2d(
    cache_dir: str | Path, root: str | Path, split: str, max_images: int, seed: int
) -> EvalSet:
    """The ``split`` rows of a decoded cache, capped at ``max_images`` (balanced)."""
    index = pd.read_parquet(Path(cache_dir) / INDEX)
    cand = index[index["split"].astype(str) == split].copy()
    for c in ("subject", "mask_path"):
        if c not in cand.columns:
            cand[c] = ""
    cand["mask_path"] = cand["mask_path"].fillna("").astype(str)
    reasons = pd.Series("", index=cand.index)
    if "ok" in cand.columns:
        reasons[~cand["ok"].astype(bool)] = "not decoded: " + cand.get(
            "reason", pd.Series("", index=cand.index)
        ).astype(str)
    keep, excluded = _split(cand, reasons, max_images, seed)
    table = keep[list(EVAL_COLUMNS)].astype({"row": "int64"})
    images = np.load(Path(cache_dir) / IMAGES, mmap_mode="r")
    blobs = [np.ascontiguousarray(images[table["row"].to_numpy()]).tobytes()]
    blobs += [_file_digest(Path(root) / p) if p else "" for p in table["mask_path"]]
    return EvalSet(table, excluded, _digest(table, blobs))


def images_2d(cache_dir: str | Path, table: pd.DataFrame, image_size: int) -> torch.Tensor:
    """(N, 1, S, S) float32 in [0, 1]: cache rows / 255, bilinear (antialiased) to S."""
    images = np.load(Path(cache_dir) / IMAGES, mmap_mode="r")
    x = torch.from_numpy(np.ascontiguousarray(images[table["row"].to_numpy()])).float()[:, None]
    x = x / 255.0
    if x.shape[-1] != image_size:
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.clamp_(0.0, 1.0)


def mask_2d(path: str | Path, image_size: int, image_path: str | Path | None = None) -> np.ndarray:
    """A lesion mask in the cache geometry at ``image_size``: (S, S) bool.

    Raises ``ValueError`` when the mask's size differs from its image's (when known).
    """
    with Image.open(path) as im:
        m = im.convert("L")
    if image_path is not None and Path(image_path).is_file():
        with Image.open(image_path) as im:
            if im.size != m.size:
                raise ValueError(f"mask {m.size} and image {im.size} differ in size")
    return square(m.point(lambda v: 255 if v > 0 else 0), image_size) >= 128


def masks_2d(
    table: pd.DataFrame, root: str | Path, image_size: int
) -> tuple[np.ndarray, list[str]]:
    """(N, S, S) bool masks (all False where there is none) and a reason per row
    ("" = mask used; otherwise why it is missing or unreadable)."""
    out = np.zeros((len(table), image_size, image_size), dtype=bool)
    reasons = []
    for i, (mp, ip) in enumerate(zip(table["mask_path"], table["path"], strict=True)):
        if not mp:
            reasons.append("no mask")
            continue
        try:
            out[i] = mask_2d(Path(root) / mp, image_size, Path(root) / ip if ip else None)
            reasons.append("")
        except Exception as exc:
            reasons.append(f"mask unreadable: {type(exc).__name__}: {exc}"[:200])
    return out, reasons


# ---------------------------------------------------------------------------------- 3D


def select_eval_3d(
    manifest_std: str | Path,
    root: str | Path,
    split: str,
    sequence: str,
    max_images: int,
    seed: int,
    pseudolabels: str | Path | None = None,
) -> EvalSet:
    """Standardized volumes of ``sequence`` in ``split``, capped (balanced).

    The table keeps the :data:`INPUT_MASK_COLUMNS` that exist (pseudo-label masks merged
    from ``pseudolabels`` by subject and session when that file exists), so a mask-using
    classifier gets the mask it was trained with.
    """
    m = pd.read_parquet(manifest_std)
    cand = m[
        (m["ndim"] == 3) & (m["sequence"].astype(str) == sequence) & (m["split"] == split)
    ].copy()
    if "session" not in cand.columns:
        cand["session"] = ""
    cand["session"] = cand["session"].fillna("").astype(str)
    if pseudolabels is not None and Path(pseudolabels).is_file():
        pl = pd.read_parquet(pseudolabels)
        pl["session"] = pl.get("session", pd.Series("", index=pl.index)).fillna("").astype(str)
        pl["subject"] = pl["subject"].astype(str)
        cols = [c for c in INPUT_MASK_COLUMNS[1:] if c in pl.columns]
        cand["subject"] = cand["subject"].astype(str)
        cand = cand.merge(pl[["subject", "session", *cols]], on=["subject", "session"], how="left")
    cand["path"] = cand["std_path"].fillna("").astype(str)
    lesion = cand["std_lesion_path"] if "std_lesion_path" in cand else ""
    cand["mask_path"] = pd.Series(lesion, index=cand.index).fillna("").astype(str)
    cand["row"] = -1
    reasons = pd.Series("", index=cand.index)
    if "std_status" in cand.columns:
        status = cand["std_status"].fillna("").astype(str)
        reasons[status != "ok"] = "not standardized: " + status[status != "ok"]
    reasons[(reasons == "") & (cand["path"] == "")] = "no standardized volume"
    keep, excluded = _split(cand, reasons, max_images, seed)
    extra = [c for c in INPUT_MASK_COLUMNS if c in keep.columns and c != "mask_path"]
    table = keep[[*EVAL_COLUMNS, *extra]].copy()
    for c in extra:
        table[c] = table[c].fillna("").astype(str)
    blobs = [_file_digest(Path(root) / p) for p in table["path"]]
    for c in ("mask_path", *extra):
        blobs += [_file_digest(Path(root) / p) if p else "" for p in table[c]]
    return EvalSet(table, excluded, _digest(table, blobs))


def volume_size(meta: dict[str, Any]) -> tuple[int, int, int] | None:
    """The (D, H, W) a 3D checkpoint expects (``meta["input_size"]``, else
    ``meta["image_size"]``: an int or three ints; None = the volumes' own size)."""
    size = meta.get("input_size", meta.get("image_size"))
    if size is None:
        return None
    return (int(size),) * 3 if np.isscalar(size) else tuple(int(s) for s in size)  # type: ignore[return-value]


def _load_volume(path: Path) -> torch.Tensor:
    import nibabel as nib

    return torch.from_numpy(np.asarray(nib.load(str(path)).dataobj, dtype=np.float32))


def _resized(v: torch.Tensor, size: tuple[int, int, int] | None) -> torch.Tensor:
    """(1, 1, *s) → ``size`` by area (average) interpolation, as the 3D classifier's
    ``Resized(mode="area")`` (a no-op when the size already matches)."""
    if size is None or tuple(v.shape[2:]) == tuple(size):
        return v
    return F.interpolate(v, size=tuple(size), mode="area")


def volumes_3d(
    table: pd.DataFrame,
    root: str | Path,
    size: tuple[int, int, int] | None,
    mask_column: str | None = None,
) -> torch.Tensor:
    """(N, C, D, H, W) float32 volumes resized to ``size``; C = 2 with ``mask_column``
    (the binary mask resized the same way as the second channel, the classifier's
    mask-input convention), else 1."""
    out = []
    for _, r in table.iterrows():
        chans = [_resized(_load_volume(Path(root) / r["path"])[None, None], size)]
        if mask_column:
            m = (_load_volume(Path(root) / r[mask_column]) > 0).float()[None, None]
            chans.append(_resized(m, size))
        out.append(torch.cat(chans, dim=1)[0])
    return torch.stack(out)


def masks_3d(
    table: pd.DataFrame, root: str | Path, shape: tuple[int, int, int]
) -> tuple[np.ndarray, list[str]]:
    """(N, D, H, W) bool lesion masks at ``shape`` (area-resampled, ≥ 0.5) and reasons."""
    out = np.zeros((len(table), *shape), dtype=bool)
    reasons = []
    for i, mp in enumerate(table["mask_path"]):
        if not mp:
            reasons.append("no mask")
            continue
        try:
            v = (_load_volume(Path(root) / mp) > 0).float()[None, None]
            if tuple(v.shape[2:]) != tuple(shape):
                v = F.interpolate(v, size=tuple(shape), mode="area")
            out[i] = (v[0, 0] >= 0.5).numpy()
            reasons.append("")
        except Exception as exc:
            reasons.append(f"mask unreadable: {type(exc).__name__}: {exc}"[:200])
    return out, reasons


def eval_tensors(
    kind: str, data: str | Path, table: pd.DataFrame, root: str | Path, meta: dict[str, Any]
) -> torch.Tensor:
    """The model input for a family's evaluation rows (2D cache / 3D volumes)."""
    if kind == "2d":
        return images_2d(data, table, int(meta["image_size"]))
    column = None
    if meta.get("needs_mask"):
        column = str(meta.get("mask_source") or "")
        if column not in table.columns or (table[column] == "").any():
            raise EvalInputError(
                f"the model needs its input mask {column!r}, which is not available for "
                "every evaluation volume"
            )
    return volumes_3d(table, root, volume_size(meta), column)


def eval_masks(
    kind: str, table: pd.DataFrame, root: str | Path, shape: Sequence[int]
) -> tuple[np.ndarray, list[str]]:
    """Ground-truth masks at the heatmaps' spatial ``shape``."""
    if kind == "2d":
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"2D heatmaps must be square, got {tuple(shape)}")
        return masks_2d(table, root, int(shape[0]))
    return masks_3d(table, root, tuple(int(s) for s in shape))  # type: ignore[arg-type]
