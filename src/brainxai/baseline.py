"""Data-difficulty probe: how far simple supervised baselines get on the ingested data.

Not the study's supervised baseline (that is the label-fraction stage): a quick,
deterministic check that a data set, synthetic or real, is neither trivial nor
hopeless before days of SSL pretraining are spent on it. On the patient-level
split of the manifest it trains

* a multinomial logistic regression on down-sampled pixels (2D: ``pixels_2d``²
  images; 3D: the T1C+ volume reoriented to RAS and resized to ``voxels_3d``³);
* a small CNN from scratch on the 2D images (``cnn.size``² pixels),

and reports accuracy, balanced accuracy and macro-F1 on the test split next to
chance (1/K) and the majority-class rate. For the 17-class 2D task it also
reports tumour-group accuracy (the sequence is easy to read off the contrast;
the lesion type is the hard part).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from brainxai.config import MappingConfig


@dataclass(frozen=True)
class BaselineConfig(MappingConfig):
    pixels_2d: int = 32
    voxels_3d: int = 16
    sequence_3d: str = "T1C+"
    logreg_c: float = 0.1
    logreg_max_iter: int = 2000
    cnn_size: int = 64
    cnn_epochs: int = 15
    cnn_batch: int = 32
    cnn_lr: float = 2e-3
    cnn_width: int = 16
    seed: int = 0


def _load_2d(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), np.float32)
    return arr / 255.0


def _load_3d(path: Path, size: int) -> np.ndarray:
    img = nib.as_closest_canonical(nib.load(path))
    vol = torch.from_numpy(np.asarray(img.dataobj, dtype=np.float32))[None, None]
    vol = F.interpolate(vol, size=(size, size, size), mode="trilinear", align_corners=False)[0, 0]
    v = vol.numpy()
    hi = np.percentile(v, 99.5)
    return np.clip(v / hi, 0, 1.5) if hi > 0 else v


def features(manifest: pd.DataFrame, base_dir: Path, cfg: BaselineConfig) -> np.ndarray:
    """One flattened, down-sampled image per manifest row (2D or 3D, not mixed)."""
    ndim = set(manifest["ndim"].tolist())
    if ndim == {2}:
        rows = [_load_2d(base_dir / p, cfg.pixels_2d) for p in manifest["path"]]
    elif ndim == {3}:
        rows = [_load_3d(base_dir / p, cfg.voxels_3d) for p in manifest["path"]]
    else:
        raise ValueError(f"expected one dimensionality, got {sorted(ndim)}")
    return np.stack([r.ravel() for r in rows])


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    counts = np.bincount(y_true, minlength=n_classes)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "chance": 1.0 / n_classes,
        "majority_rate": float(counts.max() / counts.sum()),
        "n_test": len(y_true),
    }


def logreg_baseline(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, cfg: BaselineConfig
) -> np.ndarray:
    """Standardised pixels → multinomial logistic regression; returns test predictions."""
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=cfg.logreg_c, max_iter=cfg.logreg_max_iter, random_state=cfg.seed),
    )
    model.fit(x[train], y[train])
    return model.predict(x[test])


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-pool blocks, global average pooling, linear head."""

    def __init__(self, n_classes: int, width: int) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        blocks: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            blocks += [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def cnn_baseline(
    images: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, cfg: BaselineConfig
) -> np.ndarray:
    """Train :class:`SmallCNN` from scratch (seeded, flips as the only augmentation)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_classes = int(y.max()) + 1
    model = SmallCNN(n_classes, cfg.cnn_width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.cnn_lr)
    xt = torch.from_numpy(images[train])[:, None]
    yt = torch.from_numpy(y[train]).long()
    model.train()
    for _ in range(cfg.cnn_epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(order), cfg.cnn_batch):
            idx = order[i : i + cfg.cnn_batch]
            xb = xt[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(images[test])[:, None])
    return logits.argmax(1).numpy()


def run_baselines(manifest: pd.DataFrame, base_dir: Path, cfg: BaselineConfig) -> dict[str, Any]:
    """Every baseline on each data set of the manifest (2D: all rows; 3D: ``sequence_3d``).

    A data set without train or test images gets ``{"skipped": reason}`` instead of scores
    (never silently left out)."""
    out: dict[str, Any] = {}
    for dataset, part in manifest.groupby("dataset", sort=True):
        if set(part["ndim"]) == {3}:
            part = part[part["sequence"] == cfg.sequence_3d]
        part = part.sort_values("record_id").reset_index(drop=True)
        classes = sorted(part["label"].unique())
        y = part["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        train = (part["split"] == "train").to_numpy()
        test = (part["split"] == "test").to_numpy()
        if train.sum() == 0 or test.sum() == 0:  # a cohort too small for its splits
            empty = [k for k, m in (("train", train), ("test", test)) if m.sum() == 0]
            out[str(dataset)] = {
                "skipped": f"no {' and '.join(empty)} images (train {int(train.sum())}, "
                f"test {int(test.sum())}): no baseline can be scored"
            }
            continue
        res: dict[str, Any] = {"classes": len(classes), "n_train": int(train.sum())}
        x = features(part, base_dir, cfg)
        pred = logreg_baseline(x, y, train, test, cfg)
        res["logreg"] = scores(y[test], pred, len(classes))
        if set(part["ndim"]) == {2}:
            imgs = np.stack([_load_2d(base_dir / p, cfg.cnn_size) for p in part["path"]])
            pred_cnn = cnn_baseline(imgs, y, train, test, cfg)
            res["cnn"] = scores(y[test], pred_cnn, len(classes))
            groups = part["group"].to_numpy()
            cls_group = np.array([part.loc[y == k, "group"].iloc[0] for k in range(len(classes))])
            res["cnn"]["group_accuracy"] = float((cls_group[pred_cnn] == groups[test]).mean())
            res["logreg"]["group_accuracy"] = float((cls_group[pred] == groups[test]).mean())
        out[str(dataset)] = res
    return out
