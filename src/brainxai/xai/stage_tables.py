"""The tracking stage's tables, from the heatmap files: the trajectory table (one row per
model, method, checkpoint and class, plus the global row ``klass = -1``; see
:mod:`brainxai.xai.trajectory`), the τ/γ sensitivity at each model's final checkpoint, and
the headline numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from brainxai.xai.faithfulness import SCORE_COLUMNS
from brainxai.xai.heatmap_store import load_heatmaps
from brainxai.xai.trajectory import (
    GLOBAL,
    CheckpointInput,
    TrackingConfig,
    sensitivity,
    trajectory_table,
)

#: Columns copied from the checkpoint index into the trajectory table.
RUN_COLUMNS = ("family", "kind", "init", "protocol", "fraction", "seed")


@dataclass(frozen=True)
class HeatmapFile:
    """A heatmap file and the model family / run it belongs to."""

    family: str
    run: str
    epoch: int
    method: str
    path: str


MasksFor = Callable[[str, np.ndarray, tuple[int, ...]], np.ndarray | None]


def checkpoint_inputs(
    files: Iterable[HeatmapFile], masks_for: MasksFor
) -> Iterator[CheckpointInput]:
    """Lazily read heatmap files as :class:`CheckpointInput`; ``masks_for(family,
    record_ids, spatial_shape)`` gives the ground-truth masks (or None)."""
    for f in files:
        rec = load_heatmaps(f.path)
        yield CheckpointInput(
            model=f.run,
            method=rec.method,
            checkpoint=rec.checkpoint_id,
            epoch=-1 if rec.epoch is None else int(rec.epoch),
            maps=rec.maps.astype(np.float32),
            labels=rec.labels,
            probs=rec.probs,
            masks=masks_for(f.family, rec.record_ids, tuple(rec.maps.shape[1:])),
            record_ids=rec.record_ids,
        )


def stage_trajectory(
    files: Sequence[HeatmapFile],
    masks_for: MasksFor,
    runs: pd.DataFrame,
    class_names: dict[str, Sequence[str]],
    config: TrackingConfig,
) -> pd.DataFrame:
    """:func:`~brainxai.xai.trajectory.trajectory_table` of the files, with the run's
    ``family, kind, init, protocol, fraction, seed`` (``runs``: one row per run) and the
    class name (``"global"`` for ``klass = -1``)."""
    table = trajectory_table(checkpoint_inputs(files, masks_for), config)
    if table.empty:
        return table
    info = runs.drop_duplicates("run").set_index("run")
    for c in RUN_COLUMNS:
        table[c] = table["model"].map(info[c])
    names = table.apply(
        lambda r: "global" if r["klass"] == GLOBAL else str(class_names[r["model"]][r["klass"]]),
        axis=1,
    )
    return table.assign(class_name=names)


def final_files(files: Sequence[HeatmapFile], epochs: dict[str, int]) -> list[HeatmapFile]:
    """The files of each run's final checkpoint (``epochs``: run → last epoch)."""
    return [f for f in files if f.epoch == epochs[f.run]]


def final_sensitivity(files: Sequence[HeatmapFile], config: TrackingConfig) -> pd.DataFrame:
    """τ and γ sweeps (:func:`~brainxai.xai.trajectory.sensitivity`) per (run, method) at
    the given (final) checkpoints: columns family, model, method, checkpoint, epoch + the
    sweep's."""
    parts = []
    for f in files:
        rec = load_heatmaps(f.path)
        s = sensitivity(rec.maps.astype(np.float32), rec.labels, rec.probs, config)
        meta = {"model": f.run, "method": rec.method, "checkpoint": rec.checkpoint_id,
                "epoch": rec.epoch, "family": f.family}  # fmt: skip
        parts.append(s.assign(**meta))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    first = ["family", "model", "method", "checkpoint", "epoch"]
    return out[first + [c for c in out.columns if c not in first]]


#: Checkpoint-index columns that place a checkpoint in its run's training phases (paper
#: 004's two-phase protocol; ``brainxai.finetune.runs``); absent from the 3D index.
PHASE_COLUMNS = ("phase", "frozen_epochs")


def with_phases(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each checkpoint's training ``phase`` and its run's ``frozen_epochs``
    (epochs with the backbone frozen; the trajectory plots mark the boundary) from the
    selected index rows ``runs``; ``""`` / 0 where the index has no such columns."""
    if table.empty:
        return table
    keys = runs.assign(model=runs["run"], epoch=runs["epoch"].astype(int))
    for c, empty in zip(PHASE_COLUMNS, ("", 0), strict=True):
        if c not in keys:
            keys[c] = empty
    keys = keys[["model", "epoch", *PHASE_COLUMNS]].drop_duplicates(["model", "epoch"])
    out = table.drop(columns=[c for c in PHASE_COLUMNS if c in table]).merge(
        keys, on=["model", "epoch"], how="left"
    )
    out["phase"] = out["phase"].fillna("").astype(str)
    out["frozen_epochs"] = out["frozen_epochs"].fillna(0).astype(int)
    return out


def with_faithfulness(table: pd.DataFrame, faith: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the per-checkpoint faithfulness scores (deletion / insertion AUC and
    the random control's) on the global rows (``klass = GLOBAL``); NaN elsewhere."""
    cols = [c for c in SCORE_COLUMNS if c in faith.columns]
    if table.empty or faith.empty or not cols:
        return table
    scores = faith.rename(columns={"run": "model"})[["model", "method", "epoch", *cols]]
    scores = scores.assign(klass=GLOBAL, epoch=scores["epoch"].astype(int))
    out = table.drop(columns=[c for c in cols if c in table])
    return out.merge(scores, on=["model", "method", "epoch", "klass"], how="left")


def _mean(s: pd.Series) -> float | None:
    v = s.dropna()
    return round(float(v.mean()), 4) if len(v) else None


def headline(table: pd.DataFrame) -> dict[str, Any]:
    """Per family: the global rows of each run's final checkpoint — C-Score (paper 004's,
    and without the empty / singleton-gold classes), macro AUC,
    accuracy, pointing game, relevance mass accuracy per (run, method) — and their means
    per method."""
    if table.empty:
        return {}
    glob = table[table["klass"] == GLOBAL]
    last = glob[glob["epoch"] == glob.groupby("model")["epoch"].transform("max")]
    out: dict[str, Any] = {}
    for family, fam in last.groupby("family", sort=True):
        runs: dict[str, Any] = {}
        for r in fam.itertuples():
            nonempty = getattr(r, "cscore_nonempty", float("nan"))
            runs.setdefault(r.model, {"epoch": int(r.epoch)})[r.method] = {
                "cscore_global": None if pd.isna(r.cscore) else round(float(r.cscore), 4),
                "cscore_global_nonempty": None if pd.isna(nonempty) else round(float(nonempty), 4),
                "auc_macro": None if pd.isna(r.auc) else round(float(r.auc), 4),
                "accuracy": None if pd.isna(r.accuracy) else round(float(r.accuracy), 4),
                "pointing": None if pd.isna(r.pointing) else round(float(r.pointing), 4),
                "mass_accuracy": None
                if pd.isna(r.mass_accuracy)
                else round(float(r.mass_accuracy), 4),
            }
        means = {
            m: {
                "cscore_global": _mean(g["cscore"]),
                "pointing": _mean(g["pointing"]),
                "mass_accuracy": _mean(g["mass_accuracy"]),
            }
            for m, g in fam.groupby("method", sort=True)
        }
        out[str(family)] = {"final": runs, "mean_over_runs": means}
    return out
