"""Candidate tables for the registry: one row per model that may be registered.

* SSL backbones: one row per framework from ``models/ssl/<framework>/summary.json``;
  the metric is the last epoch's kNN top-1 accuracy on the VALIDATION split
  (``pretrain.knn.query_split``; the bank is the training split).
* Trained classifiers: the ``selected`` checkpoint of every run of a checkpoint index
  (``models/finetune/index.parquet``, ``models/classify3d/index.parquet``): the epoch
  early stopping chose on validation macro-F1 (``val_macro_f1``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SSL_COLUMNS = ("framework", "arch", "epochs", "image_size", "backbone", "summary", "run")


def ssl_candidates(model_dir: Path, frameworks: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
    """Rows of the frameworks whose ``summary.json`` exists (final metrics as columns);
    a missing one is a note, not a crash (its stage may not have run)."""
    rows, notes = [], []
    for fw in frameworks:
        path = model_dir / fw / "summary.json"
        if not path.is_file():
            notes.append(f"ssl {fw}: no {path} (pretrain stage not run for it)")
            continue
        s = json.loads(path.read_text())
        backbone = Path(s.get("backbone", ""))
        local = model_dir / fw / backbone.name if backbone.name else backbone
        rows.append({
            "framework": fw, "arch": s["arch"], "epochs": int(s["epochs"]),
            "image_size": int(s["image_size"]), "backbone": str(local), "summary": str(path),
            "run": fw, **{k: float(v) for k, v in s.get("final", {}).items()},
        })  # fmt: skip
    return pd.DataFrame(rows, columns=None if rows else list(SSL_COLUMNS)), notes


def selected_checkpoints(index: pd.DataFrame) -> pd.DataFrame:
    """The checkpoint early stopping chose for each run (``selected``); a run without a
    ``selected`` flag contributes its last epoch."""
    if index.empty:
        return index.copy()
    if "selected" in index.columns:
        chosen = index[index["selected"].astype(bool)]
        rest = index[~index["run"].isin(chosen["run"])]
    else:
        chosen, rest = index.iloc[0:0], index
    last = rest[rest["epoch"] == rest.groupby("run")["epoch"].transform("max")]
    out = pd.concat([chosen, last]).sort_values(["run", "epoch"], kind="mergesort")
    out = out.drop_duplicates("run", keep="last").reset_index(drop=True)
    if "val_macro_f1" in out.columns:
        out["val_macro_f1"] = pd.to_numeric(out["val_macro_f1"], errors="coerce").astype(float)
    else:
        out["val_macro_f1"] = np.nan
    return out


def example_shape(meta: dict, kind: str) -> tuple[int, ...]:
    """Batch-1 input shape of a checkpoint's model: 2D ``(1, 1, S, S)``; 3D ``(1, C, D, H, W)``
    with ``C = 2`` when the model takes the tumour mask as a second channel (forward splits
    it off; see :class:`brainxai.classify3d.model.Classify3DModel`)."""
    if kind == "2d":
        size = int(meta["image_size"])
        return (1, 1, size, size)
    if kind == "3d":
        channels = 2 if meta.get("needs_mask") else 1
        return (1, channels, *(int(s) for s in meta["input_size"]))
    raise ValueError(f"unknown checkpoint kind {kind!r} (expected '2d' or '3d')")


def backbone_model(
    arch: str, input_mean: float, input_std: float, path: Path, size: int
) -> tuple[Any, np.ndarray]:
    """An SSL backbone file as a module in eval mode and a batch-1 zero input
    ``(1, 1, size, size)`` float32 (what logging or registering it needs)."""
    from brainxai.ssl import build_backbone
    from brainxai.ssl.checkpoint import read_backbone

    backbone = build_backbone(arch, input_mean, input_std)
    backbone.load_state_dict(read_backbone(Path(path)))
    return backbone.eval(), np.zeros((1, 1, size, size), dtype=np.float32)


def checkpoint_model(loader: str, path: Path, kind: str) -> tuple[Any, np.ndarray]:
    """A checkpoint (``loader`` = ``"module:function"``, see
    :func:`brainxai.xai.checkpoints.resolve_loader`) as a module in eval mode and a batch-1
    zero input of :func:`example_shape`."""
    from brainxai.xai.checkpoints import resolve_loader

    model, meta = resolve_loader(loader)(Path(path))
    return model.eval(), np.zeros(example_shape(meta, kind), dtype=np.float32)
