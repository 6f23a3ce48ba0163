"""Benchmark the shared CAM pass (``Explainer.heatmaps_many``) against one method at a time
(``Explainer.heatmaps`` per method), on the demo profile's xai settings, CPU, random weights:

* 2D: the demo classifier (ResNet-18 at base width 32, 17 classes, 1 channel) on 136
  images at 128 px, deep layer ``layer3`` (8 x 8), batch 34;
* 3D: the demo DenseNet (blocks 2-2-2-2, 16 initial features, growth 8, 4 classes) on 12
  volumes at 64³, deep layer ``features.denseblock3`` (4³), batch 34;

with the demo's five methods (GradCAM, GradCAM++, LayerCAM, EigenCAM, MS-GradCAM++). Both
ways run in this process, best of ``--repeats``; the maps are checked to be identical.

    PYTHONPATH=src python benchmarks/bench_cam_shared_pass.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from brainxai.xai.cams import SHARED_PASS_METHODS, CamConfig, Explainer

METHODS = list(SHARED_PASS_METHODS)


def settings() -> list[tuple[str, torch.nn.Module, torch.Tensor, CamConfig]]:
    from monai.networks.nets import DenseNet

    from brainxai.finetune.model import build_classifier

    torch.manual_seed(0)
    two = build_classifier("resnet18-w32", 17, 0.449, 0.226).eval()
    three = DenseNet(3, 1, 4, init_features=16, growth_rate=8, block_config=(2, 2, 2, 2)).eval()
    return [
        ("2D ResNet-18-w32 136x1x128²", two, torch.randn(136, 1, 128, 128),
         CamConfig(layers=("layer3",), batch_size=34)),
        ("3D DenseNet 12x1x64³", three, torch.randn(12, 1, 64, 64, 64),
         CamConfig(layers=("features.denseblock3",), batch_size=34)),
    ]  # fmt: skip


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, methods {METHODS}")
    print("| setting | one method at a time s | shared pass s | ratio | maps identical |")
    print("|---|---|---|---|---|")
    for name, model, x, cfg in settings():
        k = np.arange(len(x)) % 4
        with Explainer(model, cfg) as ex:
            ex.heatmaps(x[:1], "gradcam", k[:1])  # warm-up
            t_one, one = best_of(lambda x=x, k=k, ex=ex: {m: ex.heatmaps(x, m, k) for m in METHODS},
                                 args.repeats)  # fmt: skip
            t_many, many = best_of(lambda x=x, k=k, ex=ex: ex.heatmaps_many(x, METHODS, k),
                                   args.repeats)  # fmt: skip
        same = all(np.array_equal(one[m].maps, many[m].maps) for m in METHODS)  # type: ignore[index]
        print(f"| {name} | {t_one:.2f} | {t_many:.2f} | {t_one / t_many:.2f} | {same} |")


if __name__ == "__main__":
    main()
