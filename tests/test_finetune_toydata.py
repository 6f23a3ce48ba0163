"""Toy data for the fine-tuning tests: a tiny 17-class, patient-structured 2D set.

Each patient belongs to one tumour group and has one image per class of that group (3
sequences; 2 for ``normal``), like the Kaggle layout. Images are class-specific patterns
(a bright square whose position codes the group and whose brightness codes the
sequence) plus per-patient noise, so a classifier can learn them in a few steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from brainxai.finetune.data import CLASS_NAMES
from brainxai.labels import KAGGLE_GROUPS

SPLIT_OF = {0: "train", 1: "train", 2: "train", 3: "train", 4: "val", 5: "test"}


def toy_image(label: str, patient: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A head-like ellipse (patient-specific centre and radii) with a square "lesion" whose
    position codes the group and brightness the sequence, plus noise."""
    group, seq = label.split(" ")
    g = KAGGLE_GROUPS.index(group)
    prng = np.random.default_rng([patient, g])  # the patient's anatomy, shared by sequences
    cy, cx = size / 2 + prng.uniform(-0.12, 0.12, 2) * size
    ry, rx = prng.uniform(0.25, 0.45, 2) * size
    yy, xx = np.mgrid[:size, :size]
    img = 30 + 50 * ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) < 1)
    img = img + rng.normal(0, 12, (size, size))
    dy, dx = prng.integers(-2, 3, 2)
    y0, x0 = (g // 3) * size // 2 + 3 + dy, (g % 3) * size // 3 + 2 + dx
    level = {"T1": 120, "T1C+": 250, "T2": 185}[seq]
    img[max(0, y0) : y0 + size // 3, max(0, x0) : x0 + size // 4] = level
    return np.clip(img, 0, 255).astype(np.uint8)


def toy_table(patients_per_group: int = 6, size: int = 40, seed: int = 0):
    """``(items, images)``: item rows (cache-index columns) and uint8 images ``(N, S, S)``."""
    rng = np.random.default_rng(seed)
    rows, images = [], []
    for g in KAGGLE_GROUPS:
        labels = [c for c in CLASS_NAMES if c.startswith(g + " ")]
        for p in range(patients_per_group):
            subject = f"{g}-{p:02d}"
            for label in labels:
                rid = f"{subject}-{label.split(' ')[1]}"
                rows.append(
                    {
                        "key": rid,
                        "record_id": rid,
                        "subject": subject,
                        "group": g,
                        "label": label,
                        "split": SPLIT_OF.get(p, "train"),
                        "path": f"img/{rid}.png",
                        "mask_path": "",
                        "sha256": rid,
                        "dup_group": "",
                    }
                )
                images.append(toy_image(label, p, size, rng))
    items = pd.DataFrame(rows)
    items["row"] = np.arange(len(items))
    items["ok"] = True
    return items, np.stack(images)


def write_toy_study(root, patients_per_group: int = 6, size: int = 48, seed: int = 0):
    """PNG files and a manifest (``data/processed/manifest.parquet``) under ``root``."""
    items, images = toy_table(patients_per_group, size, seed)
    for path, img in zip(items["path"], images, strict=True):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / path)
    manifest = items.drop(columns=["row", "ok", "key"]).assign(dataset="kaggle17", ndim=2, fold=0)
    out = root / "data" / "processed" / "manifest.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(out, index=False)
    return manifest
