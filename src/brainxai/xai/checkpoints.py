"""Checkpoint indexes written by the training stages, and which checkpoints get explained.

An index (``models/finetune/index.parquet``, ``models/classify3d/index.parquet``) has one
row per checkpoint: ``run, init, protocol, fraction, seed, epoch, path`` (relative to the
study root), ``loader`` (``"module:function"`` returning ``(model, meta)``), ``kind``
(``"2d"``/``"3d"``), ``selected``, ``val_macro_f1``. Explaining every run at every epoch
is too much at paper scale, so :func:`select_checkpoints` applies the ``xai.select``
filters (:class:`~brainxai.xai.stage_config.SelectConfig`).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from brainxai.hashing import file_sha256
from brainxai.xai.stage_config import SelectConfig

INDEX_COLUMNS = ("run", "init", "protocol", "fraction", "seed", "epoch", "path", "loader", "kind")


def read_index(path: str | Path) -> pd.DataFrame:
    """A checkpoint index, its required columns checked."""
    index = pd.read_parquet(path)
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"{path}: checkpoint index lacks columns {missing}")
    return index


def _pick(values: pd.Series, wanted: tuple[Any, ...]) -> pd.Series:
    """Rows whose value is in ``wanted`` ("min"/"max" resolved on ``values``)."""
    if not wanted:
        return pd.Series(True, index=values.index)
    resolved = set()
    for w in wanted:
        if w == "min":
            resolved.add(values.min())
        elif w == "max":
            resolved.add(values.max())
        else:
            resolved.add(w)
    return values.isin(resolved)


def select_checkpoints(index: pd.DataFrame, select: SelectConfig) -> pd.DataFrame:
    """The checkpoints to explain, sorted by (run, epoch).

    Filters apply in order protocol → init → fraction → seed → where → epoch, so ``"min"`` means
    the smallest fraction (seed) among the runs still selected; ``epochs: ["last"]`` keeps
    each run's last epoch.
    """
    sel = index
    for column, wanted in (
        ("protocol", select.protocols),
        ("init", select.inits),
        ("fraction", tuple(float(v) if not isinstance(v, str) else v for v in select.fractions)),
        ("seed", select.seeds),
    ):
        sel = sel[_pick(sel[column], wanted)]
    for column, wanted in select.where.items():
        if column not in sel.columns:
            raise ValueError(f"select.where: the index has no column {column!r}")
        sel = sel[_pick(sel[column], tuple(wanted))]
    if select.epochs:
        numbers = {int(e) for e in select.epochs if e != "last"}
        keep = sel["epoch"].isin(numbers)
        if "last" in select.epochs:
            keep |= sel["epoch"] == sel.groupby("run")["epoch"].transform("max")
        sel = sel[keep]
    return sel.sort_values(["run", "epoch"], kind="stable").reset_index(drop=True)


def resolve_loader(spec: str) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """``"package.module:function"`` → the function (checkpoint path → ``(model, meta)``)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"loader must be 'module:function', got {spec!r}")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise ValueError(f"loader {spec!r}: {module} has no function {name!r}")
    return fn


def loader_module(spec: str) -> str:
    """The module part of a loader spec (its source belongs in the cache key)."""
    return spec.partition(":")[0]


def checkpoint_id(run: str, epoch: int) -> str:
    """``<run>/epoch-<NNNN>``: the id heatmap files and the trajectory table use."""
    return f"{run}/epoch-{int(epoch):04d}"


def checkpoint_fingerprint(path: str | Path, root: str | Path) -> str:
    """sha256 of the checkpoint file and, for head-only checkpoints, of the backbone file
    named in its ``meta["backbone_path"]`` (relative paths: from the study root)."""
    import torch

    h = hashlib.sha256(file_sha256(path).encode())
    try:
        meta = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)["meta"]
    except Exception:  # not a dict with meta (other loaders): the file hash alone
        return h.hexdigest()
    backbone = str(meta.get("backbone_path") or "") if isinstance(meta, dict) else ""
    if backbone:
        from brainxai.finetune.model import resolve_backbone

        try:
            bp = Path(resolve_backbone(path, backbone))
        except FileNotFoundError:
            bp = Path(root) / backbone
        h.update(file_sha256(bp).encode())
    return h.hexdigest()
