"""The 2D classification task's images: every labelled 2D row of the manifest, by split.

The decoded cache (``data/interim/finetune/<fingerprint>/``) has the format of
:func:`brainxai.ssl.cache.build_cache` (``images.npy`` + ``index.parquet``); its index
carries ``record_id, subject, group, split, label, path, mask_path, row, ok, reason``.
Labels are coded in the fixed order of :func:`brainxai.labels.kaggle_classes` (17
classes, whether or not every class occurs), stored as ``class_names`` in checkpoints.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainxai.labels import kaggle_classes
from brainxai.manifest import SPLITS

CLASS_NAMES: tuple[str, ...] = tuple(kaggle_classes())


def select_images(manifest: pd.DataFrame, datasets_2d: tuple[str, ...]) -> pd.DataFrame:
    """Item table for :func:`~brainxai.ssl.cache.build_cache`: labelled 2D rows of every split.

    Rows with a label outside :data:`CLASS_NAMES` are a ``ValueError`` (ingestion
    quarantines unknown labels, so one here means a broken manifest).
    """
    m = manifest[(manifest["ndim"] == 2) & manifest["dataset"].isin(list(datasets_2d))]
    m = m[m["split"].isin(list(SPLITS))].sort_values("record_id").reset_index(drop=True)
    unknown = sorted(set(m["label"].astype(str)) - set(CLASS_NAMES))
    if unknown:
        raise ValueError(f"labels outside the 17 Kaggle classes: {unknown[:5]}")
    mask = m["mask_path"] if "mask_path" in m.columns else pd.Series("", index=m.index)
    return pd.DataFrame(
        {
            "key": m["record_id"].astype(str),
            "record_id": m["record_id"].astype(str),
            "subject": m["subject"].astype(str),
            "group": m["group"].astype(str),
            "path": m["path"].astype(str),
            "mask_path": mask.fillna("").astype(str),
            "sha256": m["sha256"].astype(str),
            "kind": "2d",
            "slice": 0,
            "n_slices": 1,
            "split": m["split"].astype(str),
            "label": m["label"].astype(str),
        }
    )


def encode_labels(labels: pd.Series) -> np.ndarray:
    """Integer codes in :data:`CLASS_NAMES` order."""
    lut = {c: i for i, c in enumerate(CLASS_NAMES)}
    return np.array([lut[str(x)] for x in labels], dtype=np.int64)
