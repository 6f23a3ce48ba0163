"""The pretraining loop shared by every framework.

Per step: views of the batch on the device (:class:`~brainxai.ssl.augment.MRIAugment`,
seeded by (seed, step)), the framework's loss under bf16 autocast (CUDA), backward,
gradient clipping, the LR of the cosine-with-warm-up schedule, optimizer step, momentum
updates. Per epoch: kNN monitor every ``knn.every`` epochs, a checkpoint every
``checkpoint_every`` epochs and at the end. Metrics go to the caller through
``on_metrics(kind, step, metrics)`` (``kind`` = ``"step"`` or ``"epoch"``), so this module
knows nothing about experiment trackers. Started again with the same configuration, the
loop resumes from the newest matching checkpoint and ends with exactly the weights of an
uninterrupted run (CPU; on GPU up to non-deterministic kernels).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainxai.devices import torch_device
from brainxai.ssl.augment import MRIAugment
from brainxai.ssl.backbone import Backbone, build_backbone
from brainxai.ssl.batchnorm import recalibrate_batchnorm
from brainxai.ssl.cache import Cache
from brainxai.ssl.checkpoint import (
    checkpoint_path,
    latest_matching,
    prune,
    rng_state,
    save_backbone,
    save_checkpoint,
    set_rng_state,
)
from brainxai.ssl.config import AugmentConfig, KnnConfig, OptimConfig, TrainConfig
from brainxai.ssl.dataset import label_codes
from brainxai.ssl.framework import Framework, Progress
from brainxai.ssl.frameworks import build_framework
from brainxai.ssl.knn import embed, knn_accuracy
from brainxai.ssl.loader import BatchLoader
from brainxai.ssl.optim import build_optimizer, lr_at, peak_lr, set_lr

MetricsCallback = Callable[[str, int, dict[str, float]], None]
BACKBONE_FILE = "backbone.safetensors"


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that determines a pretraining run (and hence its checkpoint digest)."""

    framework: str
    optim: OptimConfig
    train: TrainConfig
    augment: AugmentConfig
    knn: KnnConfig
    data_id: str

    def digest(self) -> str:
        blob = json.dumps(
            {
                "framework": self.framework,
                "optim": self.optim.to_dict(),
                "train": self.train.to_dict(),
                "augment": self.augment.to_dict(),
                "knn": self.knn.to_dict(),
                "data_id": self.data_id,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.default_rng([seed, step, 17]).integers(0, 2**62))


class Monitor:
    """kNN accuracy of the backbone on the cache's bank/query rows."""

    def __init__(self, cache: Cache, knn: KnnConfig, size: int, device: torch.device) -> None:
        idx = cache.index
        ok = idx["ok"].to_numpy()
        bank = idx["bank"].to_numpy() & ok
        query = idx["query"].to_numpy() & ok
        codes, classes = label_codes(idx["label"].where(bank | query, ""))
        self.enabled = bool(bank.any() and query.any() and len(classes) >= 2)
        self.cfg, self.size, self.device = knn, size, device
        self.n_classes = len(classes)
        self.bank_rows, self.query_rows = np.flatnonzero(bank), np.flatnonzero(query)
        self.bank_y = torch.as_tensor(codes[self.bank_rows], device=device)
        self.query_y = torch.as_tensor(codes[self.query_rows], device=device)
        self.images = cache.images

    def random_init(self, backbone: Backbone, pretrain_rows: np.ndarray, seed: int) -> float:
        """kNN accuracy of ``backbone`` as initialised, with its BN statistics re-estimated
        on at most ``random_init_bn_images`` pretraining images (a copy: the backbone that
        trains is untouched): the random-feature reference of every framework."""
        return self.precise_bn(backbone, pretrain_rows, seed)

    def precise_bn(self, backbone: Backbone, pretrain_rows: np.ndarray, seed: int) -> float:
        """kNN accuracy with the BN statistics re-estimated on clean pretraining images (a
        copy), as for the random-init reference: the trained backbone under the same
        protocol (its running statistics were gathered on augmented views)."""
        probe = copy.deepcopy(backbone)
        n = self.cfg.random_init_bn_images
        if n > 0:
            recalibrate_batchnorm(
                probe, self.images, self.size, self.cfg.batch_size, self.device,
                max_images=n, seed=seed, rows=pretrain_rows,
            )  # fmt: skip
        return self(probe, autocast=False, channels_last=False)

    def __call__(self, backbone: Backbone, autocast: bool, channels_last: bool) -> float:
        def feats(rows: np.ndarray) -> torch.Tensor:
            return embed(
                backbone,
                self.images[rows],
                self.size,
                self.cfg.batch_size,
                self.device,
                autocast,
                channels_last,
            )

        return knn_accuracy(
            feats(self.bank_rows),
            self.bank_y,
            feats(self.query_rows),
            self.query_y,
            self.n_classes,
            self.cfg.k,
            self.cfg.temperature,
        )


def _gpu_mem_gb(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    return {"gpu_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30}


def make_framework(spec: PretrainSpec, n_classes: int) -> Framework:
    t = spec.train
    backbone = build_backbone(t.arch, t.input_mean, t.input_std, t.weights_path or None)
    return build_framework(spec.framework, backbone, spec.optim, n_classes)


def pretrain(
    spec: PretrainSpec,
    cache: Cache,
    out_dir: str | Path,
    on_metrics: MetricsCallback | None = None,
    resume: bool = True,
    resident_max_bytes: int = 2_000_000_000,
) -> dict[str, Any]:
    """Pretrain ``spec.framework`` on the cache's ``pretrain`` rows; returns a summary.

    Writes ``out_dir/checkpoints/epoch-XXXX.pt`` and ``out_dir/backbone.safetensors``.
    """
    t, out = spec.train, Path(out_dir)
    ckpt_dir = out / "checkpoints"
    device = torch_device(t.device)
    cuda = device.type == "cuda"
    torch.manual_seed(t.seed)
    idx = cache.index
    train_rows = np.flatnonzero(idx["pretrain"].to_numpy() & idx["ok"].to_numpy())
    labels_all, classes = label_codes(idx["label"].where(idx["pretrain"], ""))
    fw = make_framework(spec, len(classes)).to(device)
    if cuda and t.channels_last:
        fw = fw.to(memory_format=torch.channels_last)
    loader = BatchLoader(
        cache.images,
        train_rows,
        labels_all[train_rows],
        t.batch_size,
        device,
        resident_max_bytes=resident_max_bytes,
    )
    steps_per_epoch = loader.steps_per_epoch
    if t.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, t.max_steps_per_epoch)
    total = t.epochs * steps_per_epoch
    warmup = min(total, round(t.warmup_epochs * steps_per_epoch))
    peak = peak_lr(spec.optim, t.batch_size)
    opt = build_optimizer(fw.trainable(), spec.optim, lr=peak)
    n_local = spec.augment.local_views if fw.uses_local_views else 0
    augment = MRIAugment(dataclasses.replace(spec.augment, local_views=n_local), t.image_size)
    monitor = Monitor(cache, spec.knn, t.image_size, device)
    digest = spec.digest()

    start_epoch, history, resumed_from = 0, [], None
    knn_init: float | None = None
    state = latest_matching(ckpt_dir, digest) if resume else None
    if state is not None:
        fw.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, history, resumed_from = (
            int(state["epoch"]),
            list(state["history"]),
            int(state["epoch"]),
        )
        knn_init = state.get("knn_random_init")
    elif monitor.enabled and spec.knn.random_init_bn_images >= 0:
        knn_init = monitor.random_init(fw.backbone, train_rows, t.seed)
    if cuda and t.compile:
        for m in fw.modules():
            if isinstance(m, Backbone):
                m.net.compile()
    autocast = cuda and t.bf16
    fw.train()
    for epoch in range(start_epoch, t.epochs):
        t_epoch = time.perf_counter()
        losses: list[torch.Tensor] = []
        n_images = 0
        t_log, n_log = time.perf_counter(), 0
        for i, (x, y) in enumerate(loader.epoch(t.seed, epoch, steps_per_epoch)):
            step = epoch * steps_per_epoch + i
            prog = Progress(step, total, epoch, t.epochs)
            lr = lr_at(step, total, warmup, peak, t.final_lr_fraction)
            set_lr(opt, lr)
            views = augment.views(x, _step_seed(t.seed, step), fw.n_global_views)
            if cuda and t.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = fw.loss(views, y, prog)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            fw.before_step(prog)
            grad_norm = None
            if spec.optim.clip_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    [p for m in fw.trainable() for p in m.parameters()], spec.optim.clip_grad_norm
                )
            opt.step()
            fw.after_step(prog)
            losses.append(loss.detach())
            n_images += x.shape[0]
            n_log += x.shape[0]
            if on_metrics and ((step + 1) % max(1, t.log_every) == 0):
                if cuda:
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                m = {"loss": float(loss.detach()), "lr": lr, "images_per_s": n_log / (now - t_log)}
                if grad_norm is not None:
                    m["grad_norm"] = float(grad_norm)
                on_metrics("step", step, {**m, **_gpu_mem_gb(device)})
                t_log, n_log = time.perf_counter(), 0
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t_epoch
        record: dict[str, float] = {
            "epoch": float(epoch + 1),
            "loss": float(torch.stack(losses).float().mean()),
            "lr": lr_at(
                max(0, (epoch + 1) * steps_per_epoch - 1), total, warmup, peak, t.final_lr_fraction
            ),
            "images_per_s": n_images / seconds,
            "seconds": seconds,
            **_gpu_mem_gb(device),
        }
        last = epoch + 1 == t.epochs
        if monitor.enabled and ((epoch + 1) % max(1, spec.knn.every) == 0 or last):
            record["knn_accuracy"] = monitor(fw.backbone, autocast, cuda and t.channels_last)
        history.append(record)
        if (epoch + 1) % max(1, t.checkpoint_every) == 0 or last:
            save_checkpoint(
                checkpoint_path(ckpt_dir, epoch + 1),
                {
                    "model": fw.state_dict(),
                    "optimizer": opt.state_dict(),
                    "epoch": epoch + 1,
                    "step": (epoch + 1) * steps_per_epoch,
                    "history": history,
                    "rng": rng_state(),
                    "digest": digest,
                    "framework": spec.framework,
                    "knn_random_init": knn_init,
                },
            )
            prune(ckpt_dir, t.keep_checkpoints)
        if on_metrics:
            on_metrics("epoch", (epoch + 1) * steps_per_epoch, record)
    backbone_path = save_backbone(fw.backbone, out / BACKBONE_FILE)
    knn_precise = None
    if knn_init is not None and spec.knn.random_init_bn_images > 0:
        knn_precise = monitor.precise_bn(fw.backbone, train_rows, t.seed)
    return {
        "framework": spec.framework,
        "digest": digest,
        "epochs": t.epochs,
        "steps": total,
        "steps_per_epoch": steps_per_epoch,
        "n_pretrain_images": len(train_rows),
        "n_knn_bank": len(monitor.bank_rows),
        "n_knn_query": len(monitor.query_rows),
        "knn_classes": monitor.n_classes,
        "resumed_from_epoch": resumed_from,
        "device": str(device),
        "history": history,
        "final": history[-1] if history else {},
        "knn_random_init": knn_init,
        "knn_gain_over_random": (
            history[-1]["knn_accuracy"] - knn_init
            if knn_init is not None and history and "knn_accuracy" in history[-1]
            else None
        ),
        "knn_precise_bn": knn_precise,
        "knn_gain_over_random_precise_bn": (
            knn_precise - knn_init if knn_precise is not None and knn_init is not None else None
        ),
        "backbone": str(backbone_path),
        "arch": t.arch,
        "feature_dim": fw.backbone.feature_dim,
        "image_size": t.image_size,
    }
