"""Benchmark heatmap methods (brainxai.xai.cams) on CPU: seconds per batch, batched vs
one image at a time, and our device-side wrapper vs stock pytorch-grad-cam 1.5.7.

    PYTHONPATH=src python benchmarks/bench_cams.py           # ResNet-18 8×3×224², DN121-3D 2×1×48³
    PYTHONPATH=src python benchmarks/bench_cams.py --quick   # 4×3×128², 2×1×48³, fewer methods
    PYTHONPATH=src python benchmarks/bench_cams.py --threads 1

For each setting and method: ``batched`` = one ``Explainer.heatmaps`` call with
``batch_size = N``; ``one-at-a-time`` = ``batch_size = 1`` (ScoreCAM still scores its
masked inputs 32 at a time); ratio = one-at-a-time / batched. ``stock`` = the same
method through pytorch-grad-cam's own class on the whole batch (CPU numpy weights,
``cv2``/``scipy.zoom`` resizing); stock ScoreCAM is not timed (it scores all 512/1,024
channels per image and fails on 3-D input). Random weights (no downloads); CamConfig
defaults (ScoreCAM 32 masks, SmoothGrad 16 samples, IG 32 steps). Best of ``--repeats``
after one warm-up call on a single image.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from brainxai.xai.cams import METHODS, CamConfig, ClassTarget, Explainer, frozen_copy
from brainxai.xai.layers import target_layers


def best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def stock_runner(method: str, model: torch.nn.Module, x: torch.Tensor, k: list[int]):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM,
               "eigencam": EigenCAM}  # fmt: skip
    if method not in classes:
        return None
    copy = frozen_copy(model)
    for p in copy.parameters():  # stock backward needs parameter grads or input grads
        p.requires_grad_(True)
    cam = classes[method](copy, target_layers(copy))
    targets = [ClassTarget(c) for c in k]
    return lambda: cam(x, targets)


def run_setting(name: str, model: torch.nn.Module, x: torch.Tensor, methods, repeats: int) -> list:
    rows = []
    k = [int(c) for c in np.arange(len(x)) % 2]
    for method in methods:
        with Explainer(model, CamConfig(batch_size=len(x))) as ex:
            ex.heatmaps(x[:1], method, k[:1])  # warm-up
            batched = best_of(lambda: ex.heatmaps(x, method, k), repeats)  # noqa: B023
        with Explainer(model, CamConfig(batch_size=1)) as ex:
            single = best_of(lambda: ex.heatmaps(x, method, k), repeats)  # noqa: B023
        stock = stock_runner(method, model, x, k)
        stock_s = best_of(stock, repeats) if stock is not None else float("nan")
        rows.append((name, method, batched, single, stock_s))
        print(
            f"{name:32s} {method:13s} batched {batched:8.3f} s  one-at-a-time {single:8.3f} s  "
            f"×{single / batched:5.2f}  stock {stock_s:8.3f} s  "
            f"stock/ours ×{stock_s / batched:5.2f}",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", choices=["2d", "3d"], default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    methods = ("gradcam", "gradcam++", "layercam", "eigencam", "scorecam", "ms-gradcam++")
    methods = methods if args.quick else METHODS
    rows = []
    if args.only in (None, "2d"):
        from torchvision.models import resnet18

        n, size = (4, 128) if args.quick else (8, 224)
        x = torch.randn(n, 3, size, size)
        rows += run_setting(
            f"ResNet-18 {n}×3×{size}²",
            resnet18(weights=None, num_classes=2),
            x,
            methods,
            args.repeats,
        )
    if args.only in (None, "3d"):
        from monai.networks.nets import DenseNet121

        x3 = torch.randn(2, 1, 48, 48, 48)
        model3 = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
        rows += run_setting("DenseNet121-3D 2×1×48³", model3, x3, methods, args.repeats)
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    print(
        "\n| setting | method | batched s/batch | one-at-a-time s/batch |"
        " one-at-a-time / batched | stock s/batch | stock / ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, method, b, s, st in rows:
        stock = "–" if np.isnan(st) else f"{st:.3f}"
        ratio = "–" if np.isnan(st) else f"{st / b:.2f}"
        print(f"| {name} | {method} | {b:.3f} | {s:.3f} | {s / b:.2f} | {stock} | {ratio} |")


if __name__ == "__main__":
    main()
