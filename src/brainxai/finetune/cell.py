"""Run one cell of the matrix end to end: train, checkpoint, predict the test split.

Every protocol writes ``<run_dir>/epoch-XXXX.pt`` at ``checkpoint_epochs`` (those within
the epochs actually trained), at the last epoch and at the selected epoch, and returns the
test-split probabilities of the selected model, each checkpoint's training ``phase``
(:func:`brainxai.finetune.runs.phase_of`) and the run's ``frozen_epochs``:

* ``probe``: head-only checkpoints (the backbone is ``backbone_path``); the selected model
  is the final epoch's (a convex problem, no early stopping). Every epoch is ``transfer``.
* ``finetune``: whole-classifier checkpoints; the selected model is the epoch with the
  best validation macro-F1 (early stopping, :mod:`brainxai.finetune.tune`). Every epoch is
  ``finetune``.
* ``twophase``: paper 004's run (:func:`brainxai.finetune.tune.two_phase`): whole-classifier
  checkpoints of both phases; the selected model is the last epoch's or the best on
  validation (``twophase.selection``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from brainxai.devices import torch_device
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.data import CLASS_NAMES, encode_labels
from brainxai.finetune.evaluate import forward_batches, softmax_np
from brainxai.finetune.model import Classifier, build_classifier, save_classifier
from brainxai.finetune.probe import EpochHead, train_linear_probe
from brainxai.finetune.runs import RunSpec, checkpoint_meta, frozen_epochs, phase_of
from brainxai.finetune.tune import TuneResult, finetune, two_phase, with_state
from brainxai.ssl.cache import Cache
from brainxai.ssl.checkpoint import checkpoint_path


@dataclass(frozen=True)
class CellData:
    """Cache rows of one cell: the training subset, the val and the test split."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame

    @classmethod
    def of(cls, cache: Cache, train_record_ids: list[str]) -> CellData:
        idx = cache.index[cache.index["ok"]]
        train = idx[idx["record_id"].astype(str).isin(set(map(str, train_record_ids)))]
        missing = set(map(str, train_record_ids)) - set(train["record_id"].astype(str))
        if missing:
            raise KeyError(f"{len(missing)} training records not (validly) cached: "
                           f"{sorted(missing)[:5]}")  # fmt: skip
        return cls(train, idx[idx["split"] == "val"], idx[idx["split"] == "test"])


def _epochs_to_save(listed: tuple[int, ...], last: int) -> set[int]:
    return {e for e in listed if 1 <= e <= last} | {last}


def _predictions(spec: RunSpec, test: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """The predictions contract: one row per test image of the selected model."""
    return pd.DataFrame(
        {
            "run": spec.name,
            "init": spec.init,
            "protocol": spec.protocol,
            "fraction": float(spec.fraction),
            "seed": int(spec.seed),
            "record_id": test["record_id"].astype(str).to_numpy(),
            "subject": test["subject"].astype(str).to_numpy(),
            "y_true": encode_labels(test["label"]),
            "y_pred": probs.argmax(axis=1).astype(np.int64),
            "probs": [row.tolist() for row in probs],
        }
    )


def run_probe(
    spec: RunSpec,
    cfg: FinetuneConfig,
    backbone: BackboneSpec,
    data: CellData,
    embeddings: np.ndarray,
    backbone_path: str,
    run_dir: Path,
) -> dict[str, Any]:
    """Linear probe on ``embeddings`` (rows aligned with the cache); see module doc."""
    t0 = time.perf_counter()
    k = len(CLASS_NAMES)
    model = build_classifier(
        backbone.arch, k, backbone.input_mean, backbone.input_std,
        backbone_path=backbone_path, backbone_seed=spec.seed,
    )  # fmt: skip
    save_at = _epochs_to_save(cfg.probe.checkpoint_epochs, cfg.probe.epochs)
    frozen = frozen_epochs("probe", cfg)
    checkpoints: list[dict[str, Any]] = []

    def save(rec: EpochHead) -> None:
        if rec.epoch not in save_at:
            return
        with torch.no_grad():
            model.head.weight.copy_(rec.weight)
            model.head.bias.copy_(rec.bias)
        phase = phase_of(rec.epoch, frozen)
        meta = checkpoint_meta(spec, backbone, list(CLASS_NAMES), rec.epoch, backbone_path, phase)
        path = save_classifier(checkpoint_path(run_dir, rec.epoch), model, meta, True)
        checkpoints.append({"epoch": rec.epoch, "path": str(path),
                            "val_macro_f1": rec.val_macro_f1, "phase": phase})  # fmt: skip

    heads = train_linear_probe(
        embeddings[data.train["row"].to_numpy()],
        encode_labels(data.train["label"]),
        embeddings[data.val["row"].to_numpy()],
        encode_labels(data.val["label"]),
        k,
        cfg.probe,
        spec.seed,
        on_epoch=save,
    )
    final = heads[-1]
    logits = torch.as_tensor(embeddings[data.test["row"].to_numpy()]) @ final.weight.T + final.bias
    for c in checkpoints:
        c["selected"] = c["epoch"] == final.epoch
    history = [
        {"epoch": h.epoch, "train_loss": h.train_loss, "val_macro_f1": h.val_macro_f1}
        for h in heads
    ]
    return {
        "history": history,
        "checkpoints": checkpoints,
        "selected_epoch": final.epoch,
        "stopped_early": False,
        "frozen_epochs": frozen,
        "n_train": len(data.train),
        "predictions": _predictions(spec, data.test, softmax_np(logits)),
        "seconds": time.perf_counter() - t0,
    }


def run_finetune(
    spec: RunSpec,
    cfg: FinetuneConfig,
    backbone: BackboneSpec,
    cache: Cache,
    data: CellData,
    backbone_path: str,
    imagenet_path: str,
    run_dir: Path,
) -> dict[str, Any]:
    """Full fine-tuning with early stopping on val macro-F1; see module doc. A random
    init (no backbone file, no ImageNet file) trains its backbone at
    ``tune.random_init_backbone_lr_factor`` instead of ``backbone_lr_factor``."""
    t0 = time.perf_counter()
    tc = cfg.tune
    if not backbone_path and not imagenet_path:
        tc = dataclasses.replace(tc, backbone_lr_factor=tc.random_init_backbone_lr_factor)
    device = torch_device(tc.device)
    k = len(CLASS_NAMES)
    model = build_classifier(
        backbone.arch, k, backbone.input_mean, backbone.input_std,
        backbone_path=backbone_path, backbone_seed=spec.seed, imagenet_path=imagenet_path,
    ).to(device)  # fmt: skip
    images = cache.images
    train = (
        images[data.train["row"].to_numpy()],
        encode_labels(data.train["label"]),
        images[data.val["row"].to_numpy()],
        encode_labels(data.val["label"]),
    )
    return _whole_model_run(
        spec, cfg, backbone, model, images, data, backbone_path, run_dir, device, t0,
        lambda on_epoch: finetune(model, *train, tc, backbone.image_size, spec.seed, on_epoch),
        _tracked(spec, tc.tracked_fractions, tc.tracked_seeds), tc.checkpoint_epochs,
        tc.eval_batch_size,
    )  # fmt: skip


def run_twophase(
    spec: RunSpec,
    cfg: FinetuneConfig,
    backbone: BackboneSpec,
    cache: Cache,
    data: CellData,
    backbone_path: str,
    run_dir: Path,
) -> dict[str, Any]:
    """Paper 004's two-phase protocol (frozen backbone, then every layer); see module doc."""
    t0 = time.perf_counter()
    tp = cfg.twophase
    device = torch_device(tp.device)
    model = build_classifier(
        backbone.arch, len(CLASS_NAMES), backbone.input_mean, backbone.input_std,
        backbone_path=backbone_path, backbone_seed=spec.seed,
    ).to(device)  # fmt: skip
    images = cache.images
    train = (
        images[data.train["row"].to_numpy()],
        encode_labels(data.train["label"]),
        images[data.val["row"].to_numpy()],
        encode_labels(data.val["label"]),
    )
    return _whole_model_run(
        spec, cfg, backbone, model, images, data, backbone_path, run_dir, device, t0,
        lambda on_epoch: two_phase(model, *train, tp, backbone.image_size, spec.seed, on_epoch),
        _tracked(spec, tp.tracked_fractions, tp.tracked_seeds), tp.checkpoint_epochs,
        tp.eval_batch_size,
    )  # fmt: skip


def _tracked(spec: RunSpec, fractions: tuple[float, ...], seeds: tuple[int, ...]) -> bool:
    """Whether the run keeps its per-epoch checkpoints (empty lists: every run)."""
    frac_ok = not fractions or any(abs(spec.fraction - f) < 1e-9 for f in fractions)
    return frac_ok and (not seeds or spec.seed in seeds)


def _whole_model_run(
    spec: RunSpec,
    cfg: FinetuneConfig,
    backbone: BackboneSpec,
    model: Classifier,
    images: np.ndarray,
    data: CellData,
    backbone_path: str,
    run_dir: Path,
    device: torch.device,
    t0: float,
    train: Callable[[Callable[[int, Classifier, dict[str, float]], None]], TuneResult],
    tracked: bool,
    checkpoint_epochs: tuple[int, ...],
    eval_batch_size: int,
) -> dict[str, Any]:
    """Train (``train(on_epoch)``), writing whole-classifier checkpoints at the listed
    epochs (tracked runs), the last epoch (tracked runs) and the selected epoch; predict
    the test split with the selected model."""
    frozen = frozen_epochs(spec.protocol, cfg)
    checkpoints: dict[int, dict[str, Any]] = {}

    def save(epoch: int, m: Classifier, metrics: dict[str, float]) -> None:
        phase = phase_of(epoch, frozen)
        meta = checkpoint_meta(spec, backbone, list(CLASS_NAMES), epoch, backbone_path, phase)
        path = save_classifier(checkpoint_path(run_dir, epoch), m, meta)
        checkpoints[epoch] = {"epoch": epoch, "path": str(path),
                              "val_macro_f1": metrics["val_macro_f1"], "phase": phase}  # fmt: skip

    listed = set(checkpoint_epochs) if tracked else set()
    res = train(lambda e, m, met: save(e, m, met) if e in listed else None)
    last = res.history[-1]
    if tracked and last["epoch"] not in checkpoints:
        save(last["epoch"], model, last)
    best = with_state(model, res.best_state)
    if res.best_epoch not in checkpoints:
        save(res.best_epoch, best, res.history[res.best_epoch - 1])
    logits = forward_batches(
        best, images[data.test["row"].to_numpy()], backbone.image_size, eval_batch_size, device
    )
    rows = [dict(c, selected=e == res.best_epoch) for e, c in sorted(checkpoints.items())]
    return {
        "history": res.history,
        "checkpoints": rows,
        "selected_epoch": res.best_epoch,
        "stopped_early": res.stopped_early,
        "frozen_epochs": frozen,
        "n_train": len(data.train),
        "predictions": _predictions(spec, data.test, softmax_np(logits)),
        "seconds": time.perf_counter() - t0,
    }
