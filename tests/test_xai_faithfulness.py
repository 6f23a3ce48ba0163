"""LRP (Captum) in the gradient family and the deletion/insertion faithfulness metric
(issue 17.6): numbers computed by hand on a model whose decision depends only on a known
region, conservation of relevance on a residual network, and a trained planted-marker
model whose LRP maps point at the marker and beat a random control on faithfulness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit
from torch import nn
from torchvision.models.resnet import BasicBlock

from brainxai.xai import gradients as G
from brainxai.xai.cams import CamConfig, Explainer
from brainxai.xai.faithfulness import (
    FaithfulnessConfig,
    curve_auc,
    faithfulness_scores,
    faithfulness_scores_many,
    perturbation_curves,
    pixel_ranks,
    step_counts,
)
from brainxai.xai.groundtruth import pointing_game
from tests.test_xai_cams_marker import marker_data, marker_model, train

SIDE, GAIN = 8, 4.0
REGION = (slice(2, 4), slice(4, 6))  # 4 pixels


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def region_mask() -> np.ndarray:
    m = np.zeros((SIDE, SIDE), bool)
    m[REGION] = True
    return m


def region_model() -> nn.Module:
    """Logits ``[0, GAIN * mean of x over REGION]``: only REGION decides (bias-free)."""
    lin = nn.Linear(SIDE * SIDE, 2, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = torch.from_numpy(region_mask().ravel() * GAIN / region_mask().sum())
    return nn.Sequential(nn.Flatten(), lin).eval()


def test_ranks_and_step_counts_by_hand():
    maps = np.array([[[0.1, 0.9], [0.5, 0.5]]])
    assert pixel_ranks(maps).tolist() == [[3, 0, 1, 2]]  # ties in pixel order
    assert step_counts(64, 16).tolist() == [4 * s for s in range(17)]
    assert step_counts(10, 4).tolist() == [0, 2, 5, 8, 10]  # round(2.5) = 2, round(7.5) = 8


def test_deletion_and_insertion_auc_by_hand():
    """Images of ones; the planted map ranks the 4 region pixels first, the reversed map
    last. With 16 steps of 4 pixels the curves are step functions between p = sigma(GAIN)
    (region intact) and p = 1/2 (region gone), so the trapezoid areas are known."""
    model = region_model()
    x = torch.ones(2, 1, SIDE, SIDE)
    k = np.array([1, 1])
    planted = np.stack([region_mask().astype(np.float32)] * 2)
    reverse = 1 - planted
    hi, lo, h = float(expit(GAIN)), 0.5, 1 / 16
    c = perturbation_curves(model, x, k, planted, steps=16, batch_size=5)
    assert np.allclose(c["fractions"], np.arange(17) / 16)
    assert np.allclose(c["deletion"], [[hi] + [lo] * 16] * 2)
    assert np.allclose(c["insertion"], [[lo] + [hi] * 16] * 2)
    cfg = FaithfulnessConfig(steps=16, random_control=False)
    good = faithfulness_scores(model, x, k, planted, cfg)
    bad = faithfulness_scores(model, x, k, reverse, cfg)
    assert good["deletion_auc"] == pytest.approx(h * (hi / 2 + 15 * lo + lo / 2))
    assert good["insertion_auc"] == pytest.approx(h * (lo / 2 + 15 * hi + hi / 2))
    assert bad["deletion_auc"] == pytest.approx(h * (hi / 2 + 15 * hi + lo / 2))
    assert bad["insertion_auc"] == pytest.approx(h * (lo / 2 + 15 * lo + hi / 2))
    assert good["n"] == 2 and curve_auc([0, 1], [[1, 1]]).tolist() == [1.0]


def test_lrp_of_the_region_model_is_the_region_exactly():
    """A bias-free linear model: LRP-ε with ε -> 0 gives R_i = x_i w_i (GAIN/4 inside the
    region, 0 outside), summing to the logit; the stored map is its min-max image."""
    model = region_model()
    x = torch.rand(3, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0)) + 0.5
    cls = torch.tensor([1, 1, 1])
    rel = G.lrp(G.lrp_ready(model), x, cls)
    expected = x * torch.from_numpy(region_mask()).float() * GAIN / 4
    torch.testing.assert_close(rel, expected, atol=1e-6, rtol=1e-5)
    assert G.lrp_conservation_gap(model, x, cls, rel).abs().max() < 1e-5
    with Explainer(model, CamConfig()) as ex:
        hm = ex.heatmaps(x, "lrp", np.ones(3, np.int64))
    assert np.allclose(hm.maps > 0, region_mask()[None])
    # faithfulness of the LRP maps equals the planted map's (same ranking of the region)
    cfg = FaithfulnessConfig(steps=16, random_control=True, seed=3)
    s = faithfulness_scores(model, x, np.ones(3, np.int64), hm.maps, cfg)
    assert s["deletion_auc"] < s["deletion_auc_random"]
    assert s["insertion_auc"] > s["insertion_auc_random"]


def residual_net() -> nn.Module:
    """Bias-free ReLU network with a torchvision residual block (no normalisation)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(),
        BasicBlock(4, 4, norm_layer=nn.Identity), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3, bias=False),
    )  # fmt: skip
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


def test_lrp_conserves_relevance_across_a_residual_sum():
    """Bias-free ReLU network: LRP-0 is gradient x input and sums to the logit - only with
    the residual sum routed through Captum's Addition_Module (lrp_ready); the plain block
    counts the relevance of the sum in both branches."""
    net = residual_net()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    cls = torch.tensor([0, 2])
    rel = G.lrp(G.lrp_ready(net), x, cls)
    assert G.lrp_conservation_gap(net, x, cls, rel).abs().max() < 1e-5
    torch.testing.assert_close(rel, G.input_gradient(net, x, cls) * x, atol=1e-6, rtol=1e-4)
    plain = G.lrp(residual_net(), x, cls)
    assert G.lrp_conservation_gap(net, x, cls, plain).abs().max() > 1e-3


def test_lrp_refuses_layers_without_a_rule_and_reused_layers():
    norm = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LayerNorm(72), nn.Linear(72, 2))
    with pytest.raises(G.LRPUnsupportedError, match="LayerNorm"):
        G.lrp(norm.eval(), torch.rand(1, 1, 8, 8), torch.tensor([0]))

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))

        def forward(self, x):
            return self.head(self.conv(self.conv(x)))

    with pytest.raises(G.LRPUnsupportedError, match="reused"):
        G.lrp(Twice().eval(), torch.rand(1, 1, 8, 8), torch.tensor([0]))


@pytest.fixture(scope="module")
def marker_2d():
    x, y, _ = marker_data(192, 24, 2, seed=0)
    model = train(marker_model(2, (6, 12, 16)), x, y, steps=60)
    xt, yt, mt = marker_data(24, 24, 2, seed=1)
    pos = (yt == 1).numpy()
    return model, xt[pos], mt[pos]


def test_lrp_points_at_the_planted_marker_and_is_faithful(marker_2d):
    """A model trained to detect a bright marker: LRP points at the marker, and deleting
    pixels in LRP order destroys the class score faster (inserting builds it faster) than
    two controls do: a random ranking (model-free noise) and a map that avoids the marker."""
    model, xpos, masks = marker_2d
    targets = np.ones(len(xpos), np.int64)
    with Explainer(model, CamConfig()) as ex:
        hm = ex.heatmaps(xpos, "lrp", targets)
    assert np.nanmean(pointing_game(hm.maps, masks)) >= 0.9
    cfg = FaithfulnessConfig(steps=12, random_control=True, seed=0)
    s = faithfulness_scores(model, xpos, targets, hm.maps, cfg)
    assert s["n"] == len(xpos)
    assert s["deletion_auc"] < s["deletion_auc_random"] - 0.1
    assert s["insertion_auc"] > s["insertion_auc_random"] + 0.1
    # a map that avoids the marker (the true mask inverted) is scored as unfaithful
    away = faithfulness_scores(model, xpos, targets, (~masks).astype(np.float32),
                               FaithfulnessConfig(steps=12, random_control=False))  # fmt: skip
    assert away["deletion_auc"] > s["deletion_auc"] and away["insertion_auc"] < s["insertion_auc"]


def test_methods_of_one_checkpoint_share_the_random_control():
    """faithfulness_scores_many: every map gets exactly its faithfulness_scores numbers, and
    the random control (images, classes and seed only) is scored once: 2 maps + 1 control =
    3 curve sets of forward passes instead of 4."""
    model = region_model()
    seen: list[int] = []
    model.register_forward_hook(lambda m, i, o: seen.append(len(o)))
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.random((3, 1, SIDE, SIDE)).astype(np.float32))
    k = np.array([1, 0, 1])
    maps = {m: rng.random((3, SIDE, SIDE)).astype(np.float32) for m in ("a", "b")}
    cfg = FaithfulnessConfig(steps=4, batch_size=6, max_images=2)
    one = {m: faithfulness_scores(model, x, k, v, cfg) for m, v in maps.items()}
    alone = sum(seen)
    seen.clear()
    many = faithfulness_scores_many(model, x, k, maps, cfg)
    assert many == one  # exactly, key order included
    assert list(many["a"]) == ["n", "steps", "baseline", "deletion_auc", "insertion_auc",
                               "deletion_auc_random", "insertion_auc_random"]  # fmt: skip
    assert alone == 2 * 2 * (2 * 5 * 2) and sum(seen) == 3 * (2 * 5 * 2)  # images x points x 2
    assert faithfulness_scores_many(model, x, k, {}, cfg) == {}
    with pytest.raises(ValueError, match="differ in length"):
        faithfulness_scores_many(model, x, k, {"a": maps["a"], "b": maps["b"][:2]}, cfg)
