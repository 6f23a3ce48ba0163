"""Which images pretraining sees, and which ones the kNN monitor scores.

* **Pretraining** (role ``pretrain``): 2D rows of ``DataConfig.datasets_2d`` whose patient
  is in the TRAINING split, plus ``slices_per_volume`` axial slices of every training
  patient's 3D volume (optional). Validation/test patients never reach pretraining; the
  flow checks it with :func:`brainxai.splits.check_subset_leakage`.
* **kNN monitor**: bank = labelled 2D rows of ``KnnConfig.bank_split`` (training images),
  queries = 2D rows of ``KnnConfig.query_split`` (held-out patients, never trained on).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainxai.ssl.config import DataConfig, KnnConfig

ITEM_COLUMNS = ["key", "record_id", "path", "sha256", "kind", "slice", "n_slices", "split"]


def select_items(manifest: pd.DataFrame, data: DataConfig, knn: KnnConfig) -> pd.DataFrame:
    """Item table (one cached image per row) with ``pretrain``/``bank``/``query`` flags."""
    m = manifest.sort_values("record_id").reset_index(drop=True)
    two = m[(m["ndim"] == 2) & m["dataset"].isin(list(data.datasets_2d))]
    wanted = {"train", knn.bank_split, knn.query_split}
    two = two[two["split"].isin(wanted)]
    rows = pd.DataFrame(
        {
            "key": two["record_id"].astype(str),
            "record_id": two["record_id"].astype(str),
            "path": two["path"].astype(str),
            "sha256": two["sha256"].astype(str),
            "kind": "2d",
            "slice": 0,
            "n_slices": 1,
            "split": two["split"].astype(str),
            "label": two[knn.label_column].astype(str),
        }
    )
    parts = [rows]
    if data.slices_per_volume > 0:
        vol = m[(m["ndim"] == 3) & (m["split"] == "train")]
        col = data.volume_column
        if col not in vol.columns:
            raise KeyError(f"manifest has no column {col!r} (DataConfig.volume_column)")
        n = data.slices_per_volume
        rep = vol.loc[vol.index.repeat(n)]
        parts.append(
            pd.DataFrame(
                {
                    "key": [f"{r}#{j}" for r in vol["record_id"].astype(str) for j in range(n)],
                    "record_id": rep["record_id"].astype(str).to_numpy(),
                    "path": rep[col].astype(str).to_numpy(),
                    "sha256": rep["sha256"].astype(str).to_numpy(),
                    "kind": "3d",
                    "slice": np.tile(np.arange(n), len(vol)),
                    "n_slices": n,
                    "split": "train",
                    "label": "",
                }
            )
        )
    items = pd.concat(parts, ignore_index=True)
    items["pretrain"] = items["split"] == "train"
    items["bank"] = (items["kind"] == "2d") & (items["split"] == knn.bank_split)
    items["query"] = (items["kind"] == "2d") & (items["split"] == knn.query_split)
    return items.reset_index(drop=True)


def label_codes(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of non-empty labels (``-1`` for none) and the sorted class names."""
    classes = sorted(x for x in labels.astype(str).unique() if x)
    lut = {c: i for i, c in enumerate(classes)}
    return np.array([lut.get(x, -1) for x in labels.astype(str)], dtype=np.int64), classes
