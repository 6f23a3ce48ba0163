"""Benchmark the SSL pretraining input pipeline against the model-only ceiling and lightly's.

    python benchmarks/bench_pretrain.py                                  # CPU, small
    python benchmarks/bench_pretrain.py --arch resnet50 --size 224 --batch 256 \
        --images 4096 --steps 30 --workers 8                             # the GPU target

In one run, same device, same framework step (SimCLR by default: two views, backbone,
projection head, NT-Xent, LARS step; bf16 + channels_last on CUDA):

(a) **model-only ceiling**: the step on synthetic views already on the device;
(b) **our pipeline from files**: decode the image files once into the uint8 cache
    (timed separately, a one-off), then per step: batch from the cache (resident on the
    device when it fits) -> batched MRI augmentation on the device -> step;
(c) **lightly's pipeline** (its SimCLR example): ``torch.utils.data.DataLoader`` over the
    files with ``lightly.transforms.SimCLRTransform`` (PIL decode + torchvision transforms
    per image, ``--workers`` processes) -> step.

Prints images/s of each, b/a (target >= 0.85 on the GPU) and b/c (target >= 2), plus the
data-only throughput of (b) and (c) without the model (what the pipelines can feed).
The files are synthetic grey JPEG/PNG slices of varied size (like the Kaggle set).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from brainxai.devices import torch_device
from brainxai.ssl import AugmentConfig, MRIAugment, TrainConfig, build_backbone, framework_config
from brainxai.ssl.cache import Cache, build_cache
from brainxai.ssl.framework import Progress
from brainxai.ssl.frameworks import build_framework
from brainxai.ssl.loader import BatchLoader
from brainxai.ssl.optim import build_optimizer


def write_images(d: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` grey slices (ellipse head, blobs, noise), 192-512 px, half JPEG half PNG."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(192, 513, 2))
        yy, xx = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
        img = 120 * (((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.36) ** 2 < 1)
        cy, cx, r = rng.uniform(0.3, 0.7, 3) * [1, 1, 0.2]
        img = img + 100 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r**2)
        img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
        p = d / f"img{i:05d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(img).save(p, quality=90) if i % 2 else Image.fromarray(img).save(p)
        paths.append(p)
    return paths


class Step:
    """One framework optimisation step on given views (bf16/channels_last on CUDA)."""

    def __init__(self, name: str, arch: str, device: torch.device, batch: int) -> None:
        cfg = framework_config(name, {})
        t = TrainConfig(arch=arch)
        self.fw = build_framework(
            name, build_backbone(arch, t.input_mean, t.input_std), cfg, n_classes=2
        ).to(device)
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.fw = self.fw.to(memory_format=torch.channels_last)
        self.opt = build_optimizer(self.fw.trainable(), cfg, lr=cfg.base_lr * batch / 256)
        self.device = device
        self.i = 0

    def __call__(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if self.cuda:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        prog = Progress(self.i, 10**6, 1, 100)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            loss = self.fw.loss(views, labels, prog)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.fw.after_step(prog)
        self.i += 1
        return loss.detach()


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn(i)`` after ``warmup`` calls (device synchronised)."""
    for i in range(warmup):
        fn(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        fn(warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def lightly_loader(paths: list[Path], size: int, batch: int, workers: int):
    """lightly's SimCLR example pipeline: DataLoader + SimCLRTransform on PIL images."""
    from lightly.transforms import SimCLRTransform

    tf = SimCLRTransform(input_size=size, cj_prob=0.0, random_gray_scale=0.0)

    class Files(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int):
            with Image.open(paths[i]) as im:
                return tf(im.convert("RGB")), 0

    return torch.utils.data.DataLoader(
        Files(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
    )  # fmt: skip


def lightly_batches(loader, device) -> Callable[[int], list[torch.Tensor]]:
    """``batch(i)``: the loader's next two views (first channel, on ``device``), starting a
    new epoch of the loader whenever one ends (for :func:`timed`'s step index)."""
    it: Iterator[Any] = iter(())

    def batch(i: int) -> list[torch.Tensor]:
        nonlocal it
        try:
            v, _ = next(it)
        except StopIteration:
            it = iter(loader)
            v, _ = next(it)
        return [x[:, :1].to(device, non_blocking=True) for x in v]

    return batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--framework", default="simclr")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--cache-size", type=int, default=0, help="default: size * 8/7")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    device = torch_device(a.device)
    torch.manual_seed(0)
    cache_size = a.cache_size or round(a.size * 8 / 7)
    out: dict[str, object] = {
        "device": str(device), "arch": a.arch, "size": a.size, "batch": a.batch,
        "framework": a.framework, "threads": torch.get_num_threads(), "workers": a.workers,
    }  # fmt: skip
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    aug = MRIAugment(AugmentConfig(), a.size)
    labels = torch.zeros(a.batch, dtype=torch.long, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "img").mkdir()
        paths = write_images(d / "img", a.images)

        # (a) model-only ceiling
        step = Step(a.framework, a.arch, device, a.batch)
        views = [torch.rand(a.batch, 1, a.size, a.size, device=device) for _ in range(2)]
        t_a = timed(lambda i: step(views, labels), a.steps, a.warmup, device)

        # (b) decode once, then cache -> device augmentation -> step
        items = pd.DataFrame(
            {"key": [p.name for p in paths], "record_id": [p.name for p in paths],
             "path": [p.name for p in paths], "kind": "2d", "slice": 0, "n_slices": 1}
        )  # fmt: skip
        t0 = time.perf_counter()
        build_cache(items, d / "img", d / "cache", cache_size, workers=a.workers)
        t_decode = time.perf_counter() - t0
        cache = Cache.open(d / "cache")
        loader = BatchLoader(
            cache.images, np.arange(a.images), np.zeros(a.images), a.batch, device, 2_000_000_000
        )
        it = iter(())

        def next_batch(i: int) -> torch.Tensor:
            nonlocal it
            try:
                return next(it)[0]
            except StopIteration:
                it = iter(loader.epoch(0, i))
                return next(it)[0]

        t_bdata = timed(lambda i: aug.views(next_batch(i), i, 2), a.steps, a.warmup, device)
        t_b = timed(
            lambda i: step(aug.views(next_batch(i), i, 2), labels), a.steps, a.warmup, device
        )

        # (c) lightly's example pipeline
        lightly_batch = lightly_batches(lightly_loader(paths, a.size, a.batch, a.workers), device)

        t_cdata = timed(lightly_batch, a.steps, a.warmup, device)
        t_c = timed(lambda i: step(lightly_batch(i), labels), a.steps, a.warmup, device)

    ips = {k: a.batch / t for k, t in {"a": t_a, "b": t_b, "c": t_c}.items()}
    out.update(
        {
            "model_only_images_per_s": ips["a"],
            "ours_images_per_s": ips["b"],
            "lightly_images_per_s": ips["c"],
            "ratio_b_over_a": ips["b"] / ips["a"],
            "ratio_b_over_c": ips["b"] / ips["c"],
            "ours_data_only_images_per_s": a.batch / t_bdata,
            "lightly_data_only_images_per_s": a.batch / t_cdata,
            "data_only_ratio": t_cdata / t_bdata,
            "decode_once_seconds": t_decode,
            "decode_once_images_per_s": a.images / t_decode,
        }
    )
    for k, v in out.items():
        print(f"{k:34s} {v:.3f}" if isinstance(v, float) else f"{k:34s} {v}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
