"""Benchmark the linear probe's embedding cache against re-running the backbone every epoch.

    python benchmarks/bench_finetune.py                        # CPU, smoke-like (ResNet-18, 64 px)
    python benchmarks/bench_finetune.py --arch resnet50 --size 224 --images 2000 --epochs 30

In one run, same device, same frozen backbone (eval mode), same head training
(:func:`brainxai.finetune.probe.train_linear_probe`, ``--epochs`` epochs):

(a) **baseline**: every epoch re-runs the backbone over the training images (no grad), then
    trains the head on those features - what a probe without a cache costs;
(b) **cached, warm**: the features were embedded once by an earlier run (they are shared by
    every fraction and seed of an initialisation): load the ``.npy`` and train the head;
(c) **cached, cold**: embed every image (train + val + test, ``--eval-images`` extra) once,
    save, then (b) - the first run of an initialisation pays this.

Prints the times, a/b (per run, the target >= 20x) and a/c, and the amortised ratio over
the ``--runs`` probe runs of one initialisation (fractions x seeds; 10 in the smoke
profile, 15 at full scale): ``runs * a / (c + (runs - 1) * b)``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from brainxai.devices import torch_device
from brainxai.finetune.config import ProbeConfig
from brainxai.finetune.evaluate import forward_batches
from brainxai.finetune.probe import embed_images, train_linear_probe
from brainxai.ssl import build_backbone


def images_of(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` grey uint8 slices (ellipse head, a bright blob, noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        img = 120 * (((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.36) ** 2 < 1)
        cy, cx, r = rng.uniform(0.3, 0.7, 3) * [1, 1, 0.2]
        img = img + 100 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r**2)
        out[i] = np.clip(img + rng.normal(0, 10, img.shape), 0, 255)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64, help="backbone input side")
    ap.add_argument("--cache-size", type=int, default=80, help="cached image side")
    ap.add_argument("--images", type=int, default=200, help="training images of the run")
    ap.add_argument("--eval-images", type=int, default=100, help="val + test images")
    ap.add_argument("--classes", type=int, default=17)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128, help="backbone batch")
    ap.add_argument("--runs", type=int, default=10, help="probe runs sharing one embedding")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch_device(args.device)
    torch.manual_seed(0)
    backbone = build_backbone(args.arch, 0.449, 0.226).to(device).eval()
    imgs = images_of(args.images + args.eval_images, args.cache_size, seed=0)
    train, held = imgs[: args.images], imgs[args.images :]
    y = np.arange(args.images) % args.classes
    yv = np.arange(len(held)) % args.classes
    cfg = ProbeConfig(epochs=args.epochs, batch_size=256)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (first-call allocations, cuDNN autotuning)
    forward_batches(backbone, train[: args.batch], args.size, args.batch, device)
    sync()

    # (a) baseline: the backbone runs every epoch
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        feats = forward_batches(backbone, train, args.size, args.batch, device).numpy()
        hv = forward_batches(backbone, held, args.size, args.batch, device).numpy()
        sync()
        one = ProbeConfig(epochs=1, batch_size=256)
        train_linear_probe(feats, y, hv, yv, args.classes, one, seed=0)
    t_base = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emb.npy"
        # (c) cold: embed everything once, save; then train on the cache
        t0 = time.perf_counter()
        np.save(path, embed_images(backbone, imgs, args.size, args.batch, device))
        sync()
        t_embed = time.perf_counter() - t0
        # (b) warm: load the cached features and train the head for every epoch
        t0 = time.perf_counter()
        emb = np.load(path, mmap_mode="r")
        train_linear_probe(emb[: args.images], y, emb[args.images :], yv, args.classes, cfg, seed=0)
        t_warm = time.perf_counter() - t0
    t_cold = t_embed + t_warm
    amortised = args.runs * t_base / (t_cold + (args.runs - 1) * t_warm)
    result = {
        "device": str(device),
        "arch": args.arch,
        "size": args.size,
        "train_images": args.images,
        "eval_images": args.eval_images,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "baseline_s": round(t_base, 3),
        "embed_once_s": round(t_embed, 3),
        "cached_warm_s": round(t_warm, 4),
        "cached_cold_s": round(t_cold, 3),
        "ratio_warm": round(t_base / t_warm, 1),
        "ratio_cold": round(t_base / t_cold, 2),
        f"ratio_amortised_{args.runs}_runs": round(amortised, 1),
    }
    print(json.dumps(result, indent=2))
    print(
        f"probe cache speed-up per run (warm): {t_base / t_warm:.1f}x (target >= 20x); "
        f"first run incl. embedding: {t_base / t_cold:.2f}x; "
        f"over {args.runs} runs: {amortised:.1f}x"
    )


if __name__ == "__main__":
    main()
