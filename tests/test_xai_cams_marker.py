"""CAMs of small models trained to look at a planted marker (2-D and 3-D): the maps point
at the marker on held-out images, and change when the weights are randomised
(Adebayo et al.'s sanity check, via brainxai.xai.randomisation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from brainxai.xai.baselines import edge_baseline
from brainxai.xai.cams import CamConfig, Explainer
from brainxai.xai.explain import randomisation_check, randomised_copy
from brainxai.xai.groundtruth import pointing_game
from brainxai.xai.randomisation import flag, randomisation_similarity

MARKER = 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and two OpenMP threads on a 2-core box that
    other jobs share stall at every barrier (measured: 9 ms vs 660 ms per forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def marker_data(
    n: int, size: int, ndim: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Smooth-noise images; odd samples (class 1) carry a bright MARKER-wide cube at a
    random place. Returns images (N, 1, *s), labels, and the marker masks (N, *s)."""
    rng = np.random.default_rng(seed)
    shape = (size,) * ndim
    x = 2 * gaussian_filter(rng.normal(0, 1, (n, 1, *shape)), sigma=(0, 0) + (1.0,) * ndim)
    y = (np.arange(n) % 2).astype(np.int64)
    masks = np.zeros((n, *shape), bool)
    for i in np.flatnonzero(y == 1):
        corner = rng.integers(2, size - MARKER - 2, ndim)
        sl = tuple(slice(int(a), int(a) + MARKER) for a in corner)
        masks[(i, *sl)] = True
        x[(i, 0, *sl)] += 3.0
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y), masks


def marker_model(ndim: int, channels: tuple[int, int, int]) -> nn.Module:
    """conv → conv/2 → conv, global average pool, linear (named features/head)."""
    torch.manual_seed(0)
    conv = nn.Conv2d if ndim == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d if ndim == 2 else nn.AdaptiveAvgPool3d
    c1, c2, c3 = channels
    m = nn.Sequential()
    m.features = nn.Sequential(
        conv(1, c1, 3, padding=1), nn.ReLU(),
        conv(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
        conv(c2, c3, 3, padding=1), nn.ReLU(),
    )  # fmt: skip
    m.head = nn.Sequential(pool(1), nn.Flatten(), nn.Linear(c3, 2))
    return m


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


CFG = CamConfig(
    layers=("features.5",),
    multiscale_layers=("features.1", "features.3", "features.5"),
    smoothgrad_samples=4,
    ig_steps=8,
)


@pytest.fixture(scope="module")
def trained_2d():
    x, y, _ = marker_data(192, 24, 2, seed=0)
    model = train(marker_model(2, (6, 12, 16)), x, y, steps=60)
    xt, yt, mt = marker_data(24, 24, 2, seed=1)
    pos = (yt == 1).numpy()
    return model, xt, yt, xt[pos], mt[pos]


@pytest.fixture(scope="module")
def trained_3d():
    x, y, _ = marker_data(96, 16, 3, seed=0)
    model = train(marker_model(3, (4, 8, 16)), x, y, steps=50)
    xt, yt, mt = marker_data(16, 16, 3, seed=1)
    pos = (yt == 1).numpy()
    return model, xt, yt, xt[pos], mt[pos]


def test_2d_model_learned_the_marker(trained_2d):
    model, xt, yt, *_ = trained_2d
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc >= 0.95


@pytest.mark.parametrize(
    "method",
    [
        "gradcam",
        "gradcam++",
        "layercam",
        "eigencam",
        "scorecam",
        "ms-gradcam++",
        "smoothgrad",
        "ig",
        "lrp",
    ],
)
def test_2d_heatmaps_point_at_the_marker(trained_2d, method):
    model, _, _, xpos, masks = trained_2d
    with Explainer(model, CFG) as ex:
        hm = ex.heatmaps(xpos, method, np.ones(len(xpos), np.int64))
    assert hm.maps.shape == masks.shape
    assert np.nanmean(pointing_game(hm.maps, masks)) >= 0.9


@pytest.mark.parametrize(
    "method", ["gradcam", "gradcam++", "layercam", "scorecam", "ms-gradcam++", "smoothgrad"]
)
def test_2d_maps_change_when_weights_are_randomised(trained_2d, method):
    """Passing the sanity check: maps of the randomised copy are unlike the trained ones
    (median Spearman well below the flag threshold) and stop pointing at the marker."""
    model, _, _, xpos, masks = trained_2d
    targets = np.ones(len(xpos), np.int64)
    sim, flagged, trained, random = randomisation_check(model, xpos, method, targets, CFG, seed=3)
    assert not flagged
    assert np.nanmedian(sim.spearman) < 0.35
    assert (
        np.nanmean(pointing_game(trained.maps, masks))
        - np.nanmean(pointing_game(random.maps, masks))
        >= 0.5
    )


def test_weight_independent_maps_are_flagged(trained_2d):
    """Control: an 'explanation' that ignores the weights (Sobel edges, paper 002's
    baseline) is identical for trained and randomised models and gets flagged."""
    _, _, _, xpos, _ = trained_2d
    edges = edge_baseline(xpos[:, 0].numpy())
    sim = randomisation_similarity(edges, edges.copy())
    assert flag(sim)
    assert np.allclose(sim.spearman, 1.0)


def test_randomised_copy_leaves_the_model_and_global_rng_alone(trained_2d):
    model = trained_2d[0]
    before = [p.detach().clone() for p in model.parameters()]
    state = torch.random.get_rng_state()
    rnd = randomised_copy(model, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert not any(
        torch.equal(a, b) for a, b in zip(model.parameters(), rnd.parameters(), strict=True)
    )


def _reset_under_global_seed(model: nn.Module, seed: int) -> nn.Module:
    """The re-initialisation by each module's own reset_parameters after a global seed
    (what randomised_copy draws, single-threaded)."""
    import copy

    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in clone.modules():
            if list(m.parameters(recurse=False)):
                m.reset_parameters()
    return clone


@pytest.mark.parametrize("kind", ["resnet18", "densenet3d"])
def test_randomised_copy_draws_what_reset_parameters_draws(kind):
    from monai.networks.nets import DenseNet
    from torchvision.models import resnet18

    torch.manual_seed(5)
    if kind == "resnet18":
        model = resnet18(num_classes=4)
    else:
        model = DenseNet(3, 1, 4, init_features=8, growth_rate=4, block_config=(1, 1))
    for m in model.modules():  # trained-looking BN statistics, to be reset
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.running_mean.fill_(0.3)
            m.running_var.fill_(2.0)
    want = _reset_under_global_seed(model, 7)
    got = randomised_copy(model, seed=7)
    for (name, a), b in zip(want.state_dict().items(), got.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_randomised_copies_in_concurrent_threads_are_identical(trained_2d):
    """The thread task runner explains several checkpoints at once: copies made while
    other threads seed and draw from the global RNG must not change (they did when
    randomised_copy seeded the global generator: the demo study's randomisation check
    then differed between two runs of the same code and data)."""
    from concurrent.futures import ThreadPoolExecutor

    model = trained_2d[0]
    want = [p.clone() for p in randomised_copy(model, seed=3).parameters()]

    def noisy(i: int) -> list[torch.Tensor]:
        if i % 2:  # a neighbour that seeds and draws from the global generator
            for _ in range(200):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(i)
                    torch.rand(1000)
            return want
        return [p.clone() for p in randomised_copy(model, seed=3).parameters()]

    with ThreadPoolExecutor(8) as pool:
        for got in pool.map(noisy, range(16)):
            assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_3d_model_learned_the_marker(trained_3d):
    model, xt, yt, *_ = trained_3d
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc >= 0.95


@pytest.mark.parametrize(
    "method", ["gradcam", "gradcam++", "layercam", "scorecam", "smoothgrad", "lrp"]
)
def test_3d_heatmaps_point_at_the_marker(trained_3d, method):
    model, _, _, xpos, masks = trained_3d
    with Explainer(model, CFG) as ex:
        hm = ex.heatmaps(xpos, method, np.ones(len(xpos), np.int64))
    assert hm.maps.shape == masks.shape
    assert np.nanmean(pointing_game(hm.maps, masks)) >= 0.9


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_3d_maps_change_when_weights_are_randomised(trained_3d, method):
    model, _, _, xpos, masks = trained_3d
    targets = np.ones(len(xpos), np.int64)
    _, flagged, trained, random = randomisation_check(model, xpos, method, targets, CFG, seed=3)
    assert not flagged
    assert (
        np.nanmean(pointing_game(trained.maps, masks))
        - np.nanmean(pointing_game(random.maps, masks))
        >= 0.5
    )
