"""Precise BN (brainxai.ssl.batchnorm) and narrow ResNets (brainxai.ssl.backbone)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brainxai.ssl.augment import center_view
from brainxai.ssl.backbone import build_backbone, feature_dim, parse_arch
from brainxai.ssl.batchnorm import recalibrate_batchnorm

CPU = torch.device("cpu")


def _images(n: int = 8, side: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)


def test_statistics_are_the_mean_of_batch_statistics() -> None:
    """mu = mean of batch means, var = mean of unbiased batch variances (hand-computed)."""
    images = _images(8)
    bn = nn.BatchNorm2d(1)
    model = nn.Sequential(bn)
    used = recalibrate_batchnorm(model, images, 12, 4, CPU)
    x = center_view(torch.from_numpy(images), 12).numpy()  # (8, 1, 12, 12), [0, 1]
    batches = [x[:4].ravel(), x[4:].ravel()]
    mu = np.mean([b.mean() for b in batches])
    var = np.mean([b.var(ddof=1) for b in batches])
    assert used == 8
    assert float(bn.running_mean) == pytest.approx(mu, abs=1e-6)
    assert float(bn.running_var) == pytest.approx(var, rel=1e-5)
    assert float(bn.running_mean) == pytest.approx(x.mean(), abs=1e-6)  # equal batches


def test_mode_momentum_and_weights_are_restored() -> None:
    bn = nn.BatchNorm2d(1, momentum=0.3)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(-1.0)
    model = nn.Sequential(bn).eval()
    recalibrate_batchnorm(model, _images(6), 12, 4, CPU)
    assert not model.training and bn.momentum == 0.3
    assert float(bn.weight.detach()) == 2.0 and float(bn.bias.detach()) == -1.0


def test_stale_statistics_are_fixed() -> None:
    """Inputs far from the initial (0, 1) statistics: after recalibration the eval-mode
    output on the same images is standardised (mean 0, sd 1), before it is not."""
    images = np.full((10, 8, 8), 200, np.uint8) + _images(10, 8, 1) // 8
    model = nn.Sequential(nn.BatchNorm2d(1, affine=False)).eval()
    x = center_view(torch.from_numpy(images), 8)
    before = model(x)
    assert float(before.mean()) > 0.7  # running mean 0: the offset passes through
    recalibrate_batchnorm(model, images, 8, 5, CPU)
    after = model(x)
    assert float(after.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(after.std()) == pytest.approx(1.0, abs=0.05)


def test_subset_is_seeded_and_bounded() -> None:
    images = _images(20)
    a, b = nn.BatchNorm2d(1), nn.BatchNorm2d(1)
    assert recalibrate_batchnorm(nn.Sequential(a), images, 12, 4, CPU, max_images=8, seed=3) == 8
    recalibrate_batchnorm(nn.Sequential(b), images, 12, 4, CPU, max_images=8, seed=3)
    assert torch.equal(a.running_mean, b.running_mean)
    assert recalibrate_batchnorm(nn.Sequential(nn.ReLU()), images, 12, 4, CPU) == 0


def test_rows_equal_the_selected_images() -> None:
    """``rows`` reads those rows only: the same statistics as passing ``images[rows]``."""
    images = _images(20, seed=2)
    rows = np.array([17, 3, 9, 11, 0, 5])
    a, b = nn.BatchNorm2d(1), nn.BatchNorm2d(1)
    assert recalibrate_batchnorm(nn.Sequential(a), images, 12, 3, CPU, rows=rows) == 6
    recalibrate_batchnorm(nn.Sequential(b), images[np.sort(rows)], 12, 3, CPU)
    assert torch.allclose(a.running_mean, b.running_mean)
    assert torch.allclose(a.running_var, b.running_var)


def test_narrow_resnet_widths_and_names() -> None:
    assert parse_arch("resnet18") == ("resnet18", 64)
    assert parse_arch("resnet50-w16") == ("resnet50", 16)
    assert feature_dim("resnet18-w32") == 256 and feature_dim("resnet50-w16") == 512
    for bad in ("resnet18-w", "resnet18-wx", "vgg16", "resnet18-w2"):
        with pytest.raises(ValueError):
            parse_arch(bad)
    bb = build_backbone("resnet18-w16", 0.45, 0.22)
    names = {n for n, _ in bb.named_modules()}
    assert {"net.conv1", "net.layer1", "net.layer4", "net.layer4.1.conv2"} <= names
    assert bb.net.conv1.out_channels == 16 and bb.net.layer4[-1].conv2.out_channels == 128
    out = bb(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 128) and bb.feature_dim == 128
    n_params = sum(p.numel() for p in bb.parameters())
    n_full = sum(p.numel() for p in build_backbone("resnet18", 0.45, 0.22).parameters())
    assert n_params < n_full / 10  # ~ (16/64)^2 of the convolution weights
    with pytest.raises(ValueError, match="standard width"):
        build_backbone("resnet18-w16", 0.45, 0.22, weights_path=__file__)
