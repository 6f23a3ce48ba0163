"""Training one fold (paper 003 §"Training"): AdamW, cosine annealing with warm restarts,
gradient clipping, label smoothing, gradient accumulation, early stopping on the inner
validation macro F1, checkpoints at the listed epochs, bf16 autocast and channels-last-3d
on CUDA (the CPU path is the same loop in float32, which the tests exercise).

Determinism: the model is built from ``seed``; augmentations draw from a MONAI random
state seeded with ``seed``; the training order from a seeded ``torch.Generator``; with
``num_workers = 0`` the same params and data give the same numbers on CPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data.utils import worker_init_fn
from monai.transforms import Compose
from torch import nn
from torch.utils.data import DataLoader

from brainxai.classify3d.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
    VariantConfig,
)
from brainxai.classify3d.data import make_dataset
from brainxai.classify3d.model import Classify3DModel, build_model, save_model
from brainxai.classify3d.transforms import IMAGE, MASK, augment_transforms, load_transforms
from brainxai.devices import torch_device
from brainxai.evaluation.metrics import classification_metrics


@dataclass
class FoldResult:
    """What one fold's training leaves behind."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_macro_f1: float
    checkpoints: list[dict[str, Any]]  # {"epoch", "path", "val_macro_f1", "selected"}
    #: per evaluation set (e.g. ``cv`` = the outer fold, ``holdout``; ``val`` = inner val):
    #: ``[{"subject", "record_id", "y", "probs"}]`` of the selected (best) epoch's model
    predictions: dict[str, list[dict[str, Any]]]
    device: str
    seconds: float
    volumes_per_s: float
    stopped_early: bool
    model: Classify3DModel | None = field(default=None, repr=False)


def _inputs(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, ...]:
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    x = _plain(batch[IMAGE]).to(device, non_blocking=True).contiguous(memory_format=fmt)
    m = _plain(batch[MASK]).to(device, non_blocking=True) if MASK in batch else None
    return x, m, _plain(batch["label"]).to(device)


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor (MONAI MetaTensor dispatch costs ~3 ms per op on small volumes)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)


def train_epoch(
    model: nn.Module,
    loader: Any,
    opt: torch.optim.Optimizer,
    sched: Any,
    loss_fn: nn.Module,
    cfg: TrainConfig,
    device: torch.device,
    epoch: int,
) -> tuple[float, int, float]:
    """One epoch: bf16 autocast (CUDA), loss / accumulate, clip, step, fractional LR step.

    Returns ``(sum of per-volume losses, volumes, seconds)``. ``loader`` yields dicts with
    ``image`` (and ``mask``) and ``label`` (a DataLoader, or tensors already on the device).
    """
    cuda = device.type == "cuda"
    bf16 = cuda and cfg.bf16
    channels_last = cuda and cfg.channels_last
    model.train()
    steps = len(loader)
    t0 = time.perf_counter()
    total, count = 0.0, 0
    opt.zero_grad(set_to_none=True)
    for i, batch in enumerate(loader):
        x, m, y = _inputs(batch, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x, m)
        loss = loss_fn(logits.float(), y)
        (loss / cfg.accumulate).backward()
        total += float(loss.detach()) * len(y)
        count += len(y)
        if (i + 1) % cfg.accumulate == 0 or i + 1 == steps:
            if cfg.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if sched is not None:
                sched.step(epoch - 1 + (i + 1) / steps)
    if cuda:
        torch.cuda.synchronize()
    return total, count, time.perf_counter() - t0


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, bf16: bool, channels_last: bool
) -> list[dict[str, Any]]:
    """Softmax probabilities per patient (float32)."""
    model.eval()
    out = []
    for batch in loader:
        x, m, y = _inputs(batch, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x, m)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        for i in range(len(probs)):
            out.append(
                {
                    "subject": batch["subject"][i],
                    "record_id": batch["record_id"][i],
                    "y": int(y[i]),
                    "probs": probs[i].astype(np.float64).tolist(),
                }
            )
    return out


def scores(preds: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    y = np.array([p["y"] for p in preds], dtype=np.int64)
    probs = np.array([p["probs"] for p in preds], dtype=np.float64)
    return classification_metrics(y, probs, class_names)


def train_fold(
    train_data: list[dict],
    val_data: list[dict],
    eval_sets: dict[str, list[dict]],
    *,
    backbone_spec: dict[str, Any],
    variant: VariantConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    data_cfg: DataConfig,
    augment_cfg: AugmentConfig,
    class_names: list[str],
    out_dir: str | Path,
    root: str | Path,
    meta: dict[str, Any],
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    keep_model: bool = False,
) -> FoldResult:
    """Train on ``train_data``, select the epoch on ``val_data``, predict each eval set."""
    t_start = time.perf_counter()
    device = torch_device(train_cfg.device)
    cuda = device.type == "cuda"
    bf16 = cuda and train_cfg.bf16
    channels_last = cuda and train_cfg.channels_last
    with_mask = variant.mask is not None
    size = tuple(data_cfg.input_size)
    seed = train_cfg.seed

    load = load_transforms(size, with_mask)
    aug = augment_transforms(augment_cfg, with_mask, size)
    train_tf = Compose([*load.transforms, *aug.transforms])
    train_tf.set_random_state(seed=seed)
    train_ds = make_dataset(train_data, train_tf, data_cfg, root)
    gen = torch.Generator().manual_seed(seed)
    drop_last = len(train_data) > train_cfg.batch_size  # BatchNorm needs > 1 value/channel
    train_loader = DataLoader(
        train_ds,
        batch_size=train_cfg.batch_size,
        shuffle=True,
        generator=gen,
        drop_last=drop_last,
        num_workers=data_cfg.num_workers,
        pin_memory=cuda,
        # workers: MONAI re-seeds each worker's copy of the random transforms (else every
        # worker would replay the same augmentations)
        worker_init_fn=worker_init_fn if data_cfg.num_workers > 0 else None,
    )
    sets = {"val": val_data, **{k: v for k, v in eval_sets.items() if v}}
    loaders = {
        name: DataLoader(
            make_dataset(d, load, data_cfg, root),
            batch_size=train_cfg.eval_batch_size,
            num_workers=data_cfg.num_workers,
        )
        for name, d in sets.items()
    }
    val_loader = loaders["val"]

    model = build_model(backbone_spec, variant, model_cfg, len(class_names), size, seed)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(
        model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=train_cfg.t0, T_mult=train_cfg.t_mult
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
    torch.manual_seed(seed)  # dropout draws

    keep = set(train_cfg.checkpoint_epochs)
    history: list[dict[str, float]] = []
    checkpoints: list[dict[str, Any]] = []
    best = (-math.inf, math.inf)
    best_epoch, best_state, since_best, stopped = 0, None, 0, False
    n_seen, t_train = 0, 0.0
    out_dir = Path(out_dir)

    for epoch in range(1, train_cfg.epochs + 1):
        total, count, dt = train_epoch(
            model, train_loader, opt, sched, loss_fn, train_cfg, device, epoch
        )
        t_train += dt
        n_seen += count
        val_preds = predict(model, val_loader, device, bf16, channels_last)
        val = scores(val_preds, class_names)
        val_loss = float(np.mean([-math.log(max(p["probs"][p["y"]], 1e-12)) for p in val_preds]))
        rec = {
            "epoch": float(epoch),
            "train_loss": total / max(count, 1),
            "lr": float(opt.param_groups[0]["lr"]),
            "val_macro_f1": float(val["macro_f1"]),
            "val_accuracy": float(val["accuracy"]),
            "val_loss": val_loss,
            "volumes_per_s": count / dt if dt > 0 else float("nan"),
        }
        history.append(rec)
        if on_epoch is not None:
            on_epoch(epoch, rec)
        key = (rec["val_macro_f1"], -val_loss)
        if key > best:
            best, best_epoch, since_best = key, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            since_best += 1
        if epoch in keep:
            path = out_dir / f"epoch-{epoch:04d}.pt"
            save_model(path, model, {**meta, "epoch": epoch, "val_macro_f1": rec["val_macro_f1"]})
            checkpoints.append(
                {"epoch": epoch, "path": str(path), "val_macro_f1": rec["val_macro_f1"]}
            )
        if train_cfg.patience and since_best >= train_cfg.patience:
            stopped = True
            break

    assert best_state is not None
    model.load_state_dict(best_state)
    best_f1 = float(history[best_epoch - 1]["val_macro_f1"])
    best_path = out_dir / f"epoch-{best_epoch:04d}.pt"
    if best_epoch not in keep:  # the selected epoch is always kept
        save_model(best_path, model, {**meta, "epoch": best_epoch, "val_macro_f1": best_f1})
        checkpoints.append({"epoch": best_epoch, "path": str(best_path), "val_macro_f1": best_f1})
        checkpoints.sort(key=lambda c: c["epoch"])
    for c in checkpoints:
        c["selected"] = c["epoch"] == best_epoch
    predictions = {
        name: predict(model, loader, device, bf16, channels_last)
        for name, loader in loaders.items()
    }
    predictions.update({k: [] for k, v in eval_sets.items() if not v})
    return FoldResult(
        history=history,
        best_epoch=best_epoch,
        best_val_macro_f1=best_f1,
        checkpoints=checkpoints,
        predictions=predictions,
        device=str(device),
        seconds=time.perf_counter() - t_start,
        volumes_per_s=n_seen / t_train if t_train > 0 else float("nan"),
        stopped_early=stopped,
        model=model.cpu().eval() if keep_model else None,
    )
