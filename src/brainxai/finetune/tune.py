"""Full fine-tuning of a :class:`~brainxai.finetune.model.Classifier` on a label fraction.

* **Discriminative learning rates** (Howard & Ruder 2018): the head learns at ``lr``, the
  backbone at ``lr * backbone_lr_factor``; norm and bias parameters get no weight decay.
* **Schedule**: linear warm-up then cosine decay per step (:func:`brainxai.ssl.optim.lr_at`).
* **Augmentation**: one light MRI-aware view per image and step (:class:`MRIAugment`,
  seeded by (seed, step)); evaluation uses the centre view.
* **Early stopping** on the validation macro-F1: training stops after ``patience`` epochs
  without improvement; the best epoch is the selected model.
* **BatchNorm**: with ``bn_recalibration_images > 0`` the BN statistics are re-estimated
  on training images (centre view) before every validation pass (precise BN,
  :func:`brainxai.ssl.batchnorm.recalibrate_batchnorm`), so a short run is not judged
  with running statistics still near their initial values; training itself is unchanged.

:func:`two_phase` is paper 004's protocol (§3.1) in one run: phase 1 trains the head alone
on a frozen backbone (parameters and BatchNorm statistics fixed: the backbone stays in eval
mode), Adam with a cosine-annealed LR; phase 2 unfreezes every layer (one constant Adam LR,
label smoothing, gradient-norm clipping). Every epoch is validated; there is no early
stopping (the trajectory is the point), and the selected epoch is the last or the best on
validation (``TwoPhaseConfig.selection``).

On CPU the run is a pure function of its inputs and seed (same weights, same numbers).
bf16 autocast and channels_last are used on CUDA.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from lightly.models.utils import get_weight_decay_parameters

from brainxai.finetune.config import TuneConfig, TwoPhaseConfig
from brainxai.finetune.evaluate import forward_batches, macro_f1
from brainxai.finetune.model import Classifier
from brainxai.finetune.runs import phase_of
from brainxai.ssl.augment import MRIAugment
from brainxai.ssl.batchnorm import recalibrate_batchnorm
from brainxai.ssl.optim import lr_at


def param_groups(model: Classifier, cfg: TuneConfig) -> list[dict]:
    """Four groups: (backbone | head) x (decayed | not decayed), each with its peak LR."""
    groups = []
    for part, scale in ((model.backbone, cfg.backbone_lr_factor), (model.head, 1.0)):
        decay, no_decay = get_weight_decay_parameters([part])
        for params, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "weight_decay": wd, "peak": cfg.lr * scale})
    return groups


def build_optimizer(model: Classifier, cfg: TuneConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"optimizer must be adamw | sgd, not {cfg.optimizer!r}")


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, max_steps: int = 0
) -> list[np.ndarray]:
    """A seeded permutation cut into ``ceil(n / batch_size)`` near-equal batches (every
    image every epoch, no batch of one for batch norm when ``n >= 2``); the first
    ``max_steps`` of them when ``max_steps > 0``."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    batches = np.array_split(perm, max(1, -(-n // batch_size)))
    return batches[:max_steps] if max_steps else batches


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.default_rng([seed, step, 29]).integers(0, 2**62))


@dataclass
class TuneResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_macro_f1: float = -1.0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False


def finetune(
    model: Classifier,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    cfg: TuneConfig,
    image_size: int,
    seed: int,
    on_epoch: Callable[[int, Classifier, dict[str, float]], None] | None = None,
) -> TuneResult:
    """Fine-tune ``model`` in place; ``on_epoch(epoch, model, metrics)`` after each epoch
    (e.g. to save a checkpoint). Returns the history and the best epoch's weights (CPU)."""
    device = torch.device(next(model.parameters()).device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    augment = MRIAugment(cfg.augment, image_size)
    x_all = torch.from_numpy(np.ascontiguousarray(train_images)).to(device)
    y_all = torch.as_tensor(np.asarray(train_labels), dtype=torch.long, device=device)
    opt = build_optimizer(model, cfg)
    n_batches = len(epoch_batches(len(x_all), cfg.batch_size, seed, 0, cfg.max_steps_per_epoch))
    total = cfg.epochs * n_batches
    warmup = min(total, round(cfg.warmup_epochs * n_batches))
    result, step, since_best = TuneResult(), 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        batches = epoch_batches(len(x_all), cfg.batch_size, seed, epoch, cfg.max_steps_per_epoch)
        train_loss, step = _train_epoch(
            model, opt, augment, x_all, y_all, batches, seed, step,
            lambda s, g: lr_at(s, total, warmup, g["peak"], cfg.final_lr_fraction),
            cfg.label_smoothing,
        )  # fmt: skip
        if cfg.bn_recalibration_images:
            recalibrate_batchnorm(
                model, train_images, image_size, cfg.eval_batch_size, device,
                cfg.bn_recalibration_images, seed,
            )  # fmt: skip
        val_logits = forward_batches(model, val_images, image_size, cfg.eval_batch_size, device)
        val_f1 = macro_f1(np.asarray(val_labels), val_logits.argmax(dim=1).numpy())
        metrics = {"train_loss": train_loss, "val_macro_f1": val_f1}
        result.history.append({"epoch": epoch, **metrics})
        if val_f1 > result.best_val_macro_f1:
            result.best_epoch, result.best_val_macro_f1 = epoch, val_f1
            result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            since_best = 0
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch, model, metrics)
        if cfg.patience and since_best >= cfg.patience and epoch < cfg.epochs:
            result.stopped_early = True
            break
    return result


def _train_epoch(
    model: Classifier,
    opt: torch.optim.Optimizer,
    augment: MRIAugment,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    batches: list[np.ndarray],
    seed: int,
    step: int,
    lr_of: Callable[[int, dict], float],
    label_smoothing: float,
    clip_norm: float = 0.0,
) -> tuple[float, int]:
    """One pass over ``batches`` (one augmented view per image and step); every param
    group's LR is ``lr_of(step, group)`` before its step; gradients clipped to
    ``clip_norm`` (0 = not). Returns (mean training loss, the next step)."""
    device = x_all.device
    cuda = device.type == "cuda"
    params = [p for g in opt.param_groups for p in g["params"]]
    loss_sum, seen = 0.0, 0
    for pos in batches:
        for g in opt.param_groups:
            g["lr"] = lr_of(step, g)
        idx = torch.from_numpy(pos).to(device)
        views = augment.views(x_all[idx], _step_seed(seed, step), n_global=1)[0]
        if cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(views)
        loss = F.cross_entropy(logits.float(), y_all[idx], label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        opt.step()
        loss_sum += float(loss.detach()) * len(pos)
        seen += len(pos)
        step += 1
    return loss_sum / max(seen, 1), step


def two_phase(
    model: Classifier,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    cfg: TwoPhaseConfig,
    image_size: int,
    seed: int,
    on_epoch: Callable[[int, Classifier, dict[str, float]], None] | None = None,
) -> TuneResult:
    """Paper 004's two-phase run on ``model`` in place (see the module doc); the history
    holds each epoch's ``phase``. ``on_epoch(epoch, model, metrics)`` after each epoch.
    Returns the history and the selected epoch's weights (CPU)."""
    device = torch.device(next(model.parameters()).device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(seed)
    augment = MRIAugment(cfg.augment, image_size)
    x_all = torch.from_numpy(np.ascontiguousarray(train_images)).to(device)
    y_all = torch.as_tensor(np.asarray(train_labels), dtype=torch.long, device=device)
    n_batches = len(epoch_batches(len(x_all), cfg.batch_size, seed, 0, cfg.max_steps_per_epoch))
    phase1_steps = cfg.frozen_epochs * n_batches
    result, step = TuneResult(), 0
    opt: torch.optim.Optimizer | None = None
    for epoch in range(1, cfg.epochs + 1):
        frozen = epoch <= cfg.frozen_epochs
        if epoch == 1 or epoch == cfg.frozen_epochs + 1:  # the start of a phase
            model.backbone.requires_grad_(not frozen)
            part = model.head if frozen else model
            opt = torch.optim.Adam(
                part.parameters(),
                lr=cfg.lr if frozen else cfg.finetune_lr,
                weight_decay=cfg.weight_decay,
            )
        assert opt is not None
        model.train()
        if frozen:  # frozen means frozen: no BatchNorm statistics move either
            model.backbone.eval()
        batches = epoch_batches(len(x_all), cfg.batch_size, seed, epoch, cfg.max_steps_per_epoch)

        def lr_of(s: int, g: dict, frozen: bool = frozen) -> float:
            """Phase 1: cosine over phase 1's steps; phase 2: constant."""
            if frozen:
                return lr_at(s, phase1_steps, 0, cfg.lr, cfg.final_lr_fraction)
            return cfg.finetune_lr

        train_loss, step = _train_epoch(
            model, opt, augment, x_all, y_all, batches, seed, step, lr_of,
            0.0 if frozen else cfg.label_smoothing, 0.0 if frozen else cfg.grad_clip_norm,
        )  # fmt: skip
        val_logits = forward_batches(model, val_images, image_size, cfg.eval_batch_size, device)
        val_f1 = macro_f1(np.asarray(val_labels), val_logits.argmax(dim=1).numpy())
        phase = phase_of(epoch, cfg.frozen_epochs)
        metrics = {"train_loss": train_loss, "val_macro_f1": val_f1}
        result.history.append({"epoch": epoch, **metrics, "phase": phase})
        better = val_f1 > result.best_val_macro_f1
        if cfg.selection == "last" or better:
            result.best_epoch, result.best_val_macro_f1 = epoch, val_f1
            result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, model, metrics)
    model.backbone.requires_grad_(True)
    return result


def with_state(model: Classifier, state: dict[str, torch.Tensor]) -> Classifier:
    """A copy of ``model`` holding ``state`` (the selected epoch's weights)."""
    best = copy.deepcopy(model)
    best.load_state_dict(state)
    return best.eval()
