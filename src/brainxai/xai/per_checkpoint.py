"""What the tracking stage does for one checkpoint: load it with its index's loader, build
the evaluation batch, write the heatmaps of a method (float16, with the checkpoint id);
score the stored maps' faithfulness (deletion/insertion, :mod:`brainxai.xai.faithfulness`);
and, on a run's final checkpoint, the parameter-randomisation sanity check against the
stored maps (Adebayo et al. 2018; paper 004 §1.2)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.devices import torch_device
from brainxai.xai.cams import CamConfig, Explainer, frozen_copy
from brainxai.xai.checkpoints import checkpoint_id, resolve_loader
from brainxai.xai.evalset import EvalInputError, eval_tensors
from brainxai.xai.explain import explain_checkpoint, randomised_copy
from brainxai.xai.faithfulness import FaithfulnessConfig, faithfulness_scores_many
from brainxai.xai.heatmap_store import load_heatmaps
from brainxai.xai.randomisation import flag, randomisation_similarity
from brainxai.xai.stage_config import RandomisationConfig


def labelled_rows(table: pd.DataFrame, class_names: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Rows whose label is one of the checkpoint's classes, with ``y`` (class index), and
    how many rows had another label."""
    pos = {str(c): i for i, c in enumerate(class_names)}
    known = table["label"].astype(str).isin(pos)
    rows = table[known].reset_index(drop=True)
    return rows.assign(y=rows["label"].astype(str).map(pos).astype("int64")), int((~known).sum())


def load_model(checkpoint_path: str | Path, loader: str) -> tuple[Any, dict[str, Any]]:
    """``(model, meta)`` from the index's ``loader``; ``meta`` must name ``class_names``."""
    model, meta = resolve_loader(loader)(str(checkpoint_path))
    if "class_names" not in meta:
        raise ValueError(f"{checkpoint_path}: checkpoint meta has no class_names")
    return model, meta


def explain_methods(
    model: Any,
    meta: dict[str, Any],
    kind: str,
    data: str | Path,
    table: pd.DataFrame,
    root: str | Path,
    run: str,
    epoch: int,
    methods: Sequence[str],
    out_dir: str | Path,
    cam: CamConfig,
    explain: str = "label",
    device: str = "auto",
) -> dict[str, Any]:
    """Heatmaps of ``methods`` for one checkpoint on the evaluation rows ``table``.

    Returns ``{"heatmaps": {method: path}, "n_images", "n_unknown_label", "shape",
    "seconds", "device"}``. Rows whose label the checkpoint does not know are left out
    (and counted); the model is explained on a frozen copy.
    """
    t0 = time.perf_counter()
    rows, n_unknown = labelled_rows(table, meta["class_names"])
    if rows.empty:
        raise EvalInputError(f"{run}: no evaluation image has one of its classes")
    x = eval_tensors(kind, data, rows, root, meta)
    dev = torch_device(device)
    paths = explain_checkpoint(
        model,
        x,
        rows["y"].to_numpy().copy(),
        rows["record_id"].astype(str).tolist(),
        checkpoint_id(run, epoch),
        methods,
        out_dir,
        cam,
        dev,
        epoch=int(epoch),
        explain=explain,
    )
    with Explainer(model, cam, dev) as ex:
        grid = list(ex.grid(x[:1]))
    return {
        "heatmaps": {m: str(p) for m, p in paths.items()},
        "cam_grid": grid,
        "n_images": len(rows),
        "n_unknown_label": n_unknown,
        "shape": list(x.shape[2:]),
        "seconds": time.perf_counter() - t0,
        "device": str(dev),
    }


def randomisation_against_stored(
    model: Any,
    meta: dict[str, Any],
    kind: str,
    data: str | Path,
    table: pd.DataFrame,
    root: str | Path,
    heatmap_path: str | Path,
    cam: CamConfig,
    config: RandomisationConfig,
    device: str = "auto",
) -> dict[str, Any]:
    """Maps of a re-initialised copy of the checkpoint's model vs the trained maps stored
    in ``heatmap_path`` (same images, same explained classes): median Spearman rank
    correlation and soft-IoU, and the flag (True = maps barely depend on the weights)."""
    rec = load_heatmaps(heatmap_path)
    n = len(rec.record_ids) if config.max_images == 0 else min(config.max_images, len(rec.maps))
    ids = rec.record_ids[:n].astype(str)
    by_id = table.set_index(table["record_id"].astype(str))
    rows = by_id.loc[ids].reset_index(drop=True)
    x = eval_tensors(kind, data, rows, root, meta)
    with Explainer(randomised_copy(model, config.seed), cam, torch_device(device)) as ex:
        rand = ex.heatmaps(x, rec.method, np.array(rec.targets[:n]))
    sim = randomisation_similarity(rec.maps[:n].astype(np.float32), rand.maps)
    return {
        "method": rec.method,
        "checkpoint": rec.checkpoint_id,
        "n": int(n),
        "median_spearman": _nanmedian(sim.spearman),
        "median_soft_iou": _nanmedian(sim.soft_iou),
        #: maps of either model that are constant (Spearman undefined: NaN)
        "n_undefined": int(np.isnan(sim.spearman).sum()),
        "flag": flag(sim, config.threshold, config.similarity),
        "similarity": config.similarity,
        "threshold": config.threshold,
    }


def _stored_rows(
    table: pd.DataFrame, heatmap_path: str | Path, max_images: int
) -> tuple[Any, pd.DataFrame]:
    """The heatmap record and the evaluation rows of its first ``max_images`` maps (0 =
    all), in the record's order."""
    rec = load_heatmaps(heatmap_path)
    n = len(rec.record_ids) if max_images == 0 else min(max_images, len(rec.maps))
    ids = rec.record_ids[:n].astype(str)
    by_id = table.set_index(table["record_id"].astype(str))
    return rec, by_id.loc[ids].reset_index(drop=True)


def faithfulness_against_stored(
    model: Any,
    meta: dict[str, Any],
    kind: str,
    data: str | Path,
    table: pd.DataFrame,
    root: str | Path,
    heatmap_paths: Sequence[str | Path],
    config: FaithfulnessConfig,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Deletion/insertion AUC of the maps stored in each of ``heatmap_paths`` (the methods
    of one checkpoint) on the checkpoint's model (same images, same explained classes) and
    of the random control, one dict per path; maps of the same images and classes share
    one random control (:func:`brainxai.xai.faithfulness.faithfulness_scores_many`)."""
    dev = torch_device(device)
    frozen = frozen_copy(model, dev)
    stored = [_stored_rows(table, p, config.max_images) for p in heatmap_paths]
    groups: dict[tuple, list[int]] = {}
    for i, (rec, rows) in enumerate(stored):
        n = len(rows)
        key = (tuple(rec.record_ids[:n].astype(str)), tuple(np.asarray(rec.targets[:n]).tolist()))
        groups.setdefault(key, []).append(i)
    out: list[dict[str, Any]] = [{} for _ in stored]
    for members in groups.values():
        rec, rows = stored[members[0]]
        n = len(rows)
        x = eval_tensors(kind, data, rows, root, meta)
        maps = {i: stored[i][0].maps[:n].astype(np.float32) for i in members}
        scores = faithfulness_scores_many(frozen, x, np.asarray(rec.targets[:n]), maps, config, dev)
        for i in members:
            r = stored[i][0]
            out[i] = {"method": r.method, "checkpoint": r.checkpoint_id, **scores[i]}
    return out


def _nanmedian(x: np.ndarray) -> float:
    """Median of the defined values (NaN when none is)."""
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else float("nan")
