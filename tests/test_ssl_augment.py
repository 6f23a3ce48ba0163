"""MRI-aware batched augmentation: shape, dtype, range, determinism, identities by hand."""

import dataclasses

import torch

from brainxai.ssl.augment import (
    MRIAugment,
    center_view,
    crop_affines,
    gaussian_blur,
    jitter_intensity,
    rician_noise,
    to_unit,
    warp,
)
from brainxai.ssl.config import AugmentConfig
from tests.test_ssl_toydata import toy_images


def _batch(n=6, size=40):
    return torch.from_numpy(toy_images(n, size)[0])


def test_views_keep_shape_dtype_range_and_are_seeded():
    x = _batch()
    cfg = AugmentConfig(local_views=2, local_size=16)
    aug = MRIAugment(cfg, 32)
    views = aug.views(x, seed=7, n_global=2)
    assert [tuple(v.shape) for v in views] == [(6, 1, 32, 32)] * 2 + [(6, 1, 16, 16)] * 2
    for v in views:
        assert v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
        assert torch.isfinite(v).all()
    again = aug.views(x, seed=7, n_global=2)
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    other = aug.views(x, seed=8, n_global=2)
    assert not torch.equal(views[0], other[0])
    assert not torch.equal(views[0], views[1]), "the two views of a step must differ"


def test_identity_geometry_returns_the_image():
    x = to_unit(_batch(4, 32))
    theta = crop_affines(4, (1.0, 1.0), (1.0, 1.0), 0.0, 0.0, 0.0, torch.Generator())
    expect = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(4, 2, 3)
    assert torch.allclose(theta, expect, atol=1e-6)
    assert torch.allclose(warp(x, theta, 32), x, atol=1e-5)
    # certain horizontal flip = the image mirrored left/right
    flip = crop_affines(4, (1.0, 1.0), (1.0, 1.0), 0.0, 1.0, 0.0, torch.Generator())
    assert torch.allclose(warp(x, flip, 32), x.flip(-1), atol=1e-5)


def test_intensity_blur_noise_by_hand():
    x = to_unit(_batch(3, 24))
    one = torch.ones(3)
    assert torch.allclose(jitter_intensity(x, one, one, one), x, atol=1e-5)
    # gamma 2 squares the intensities; brightness 0.5 halves them
    assert torch.allclose(jitter_intensity(x, one, one, 2 * one), x**2, atol=1e-5)
    assert torch.allclose(jitter_intensity(x, one, 0.5 * one, one), x * 0.5, atol=1e-5)
    flat = torch.full((3, 1, 24, 24), 0.4)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 1.0, 2.0])), flat, atol=1e-6)
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    blurred = gaussian_blur(impulse, torch.tensor([1.0]))
    assert abs(float(blurred.sum()) - 1.0) < 1e-5  # mass preserved away from the border
    assert (
        abs(float(blurred[0, 0, 10, 9] / blurred[0, 0, 10, 10]) - torch.exp(torch.tensor(-0.5)))
        < 1e-5
    )
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(rician_noise(x, torch.zeros(3), gen), x, atol=1e-6)


def test_no_colour_jitter_knobs_and_center_view():
    names = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert not names & {"hue", "saturation", "random_gray", "grayscale_prob"}
    v = center_view(_batch(2, 40), 20)
    assert v.shape == (2, 1, 20, 20) and v.dtype == torch.float32
