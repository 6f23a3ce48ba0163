"""CAM wrapper (brainxai.xai.cams): hand-computed weights in 3-D, agreement with stock
pytorch-grad-cam in 2-D, shapes in 3-D, batching, side effects, gradient baselines,
target-layer registry and the heatmap store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

from brainxai.xai import gradients as G
from brainxai.xai.cams import (
    METHODS,
    SHARED_PASS_METHODS,
    CamConfig,
    ClassTarget,
    Explainer,
    compute_heatmaps,
    eigen_projection,
    gradcampp_weights,
    pass_groups,
)
from brainxai.xai.explain import explain_checkpoint
from brainxai.xai.heatmap_store import (
    HeatmapRecord,
    heatmap_filename,
    load_heatmaps,
    save_heatmaps,
)
from brainxai.xai.layers import get_module, target_layer_names


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and two OpenMP threads on a 2-core box that
    other jobs share stall at every barrier (measured: 9 ms vs 660 ms per forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gap_model(ndim: int, c_in: int = 1, c: int = 5, k: int = 3, seed: int = 0) -> nn.Module:
    """conv (target, 'features.0', same size as input) → ReLU → GAP → linear."""
    torch.manual_seed(seed)
    conv = nn.Conv2d if ndim == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d if ndim == 2 else nn.AdaptiveAvgPool3d
    m = nn.Sequential()
    m.features = nn.Sequential(conv(c_in, c, 3, padding=1), nn.ReLU())
    m.head = nn.Sequential(pool(1), nn.Flatten(), nn.Linear(c, k))
    return m.eval()


def bn_model(ndim: int, seed: int = 0) -> nn.Module:
    """Three conv stages with BatchNorm and Dropout (for side-effect and batching tests)."""
    torch.manual_seed(seed)
    conv, bn = (nn.Conv2d, nn.BatchNorm2d) if ndim == 2 else (nn.Conv3d, nn.BatchNorm3d)
    pool = nn.AdaptiveAvgPool2d if ndim == 2 else nn.AdaptiveAvgPool3d
    m = nn.Sequential()
    m.features = nn.Sequential(
        conv(1, 4, 3, padding=1), bn(4), nn.ReLU(inplace=True),
        conv(4, 8, 3, stride=2, padding=1), bn(8), nn.ReLU(inplace=True),
        conv(8, 8, 3, stride=2, padding=1), bn(8), nn.ReLU(inplace=True),
    )  # fmt: skip
    m.head = nn.Sequential(pool(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 3))
    return m


MS = ("features.2", "features.5", "features.8")
SMALL = CamConfig(layers=("features.8",), multiscale_layers=MS, smoothgrad_samples=3, ig_steps=4)


# ------------------------------------------------------------------- GradCAM++ in 3-D


def test_gradcampp_weights_match_a_hand_loop_in_3d():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 4, 5, 6))
    g = rng.normal(size=a.shape)
    g[0, 1, 0, 0, :3] = 0.0  # zero gradients must contribute nothing
    expected = np.zeros((2, 3))
    for n in range(2):
        for c in range(3):
            s = a[n, c].sum()
            for gv in g[n, c].ravel():
                if gv != 0:
                    alpha = gv**2 / (2 * gv**2 + s * gv**3 + 1e-6)
                    expected[n, c] += max(gv, 0.0) * alpha
    got = gradcampp_weights(torch.from_numpy(a), torch.from_numpy(g)).numpy()
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-12)
    # pytorch-grad-cam 1.5.7's own weights already use every spatial axis (issue #583 fixed)
    stock = GradCAMPlusPlus.get_cam_weights(None, None, None, None, a, g)
    assert np.allclose(stock, expected, rtol=1e-10, atol=1e-12)


def test_3d_gradcampp_map_equals_hand_computation():
    """GAP head: ∂f_k/∂A_cs = W_kc / P · [A_cs > 0], so every term is known in closed form."""
    model = gap_model(3)
    x = torch.randn(2, 1, 6, 7, 5)
    k = torch.tensor([2, 0])
    conv, lin = model.features[0], model.head[2]
    with torch.no_grad():
        a = conv(x).double().numpy()  # (N, C, D, H, W)
    w_lin = lin.weight.detach().double().numpy()
    p = np.prod(a.shape[2:])
    expected = []
    for n in range(2):
        cam = np.zeros(a.shape[2:])
        for c in range(a.shape[1]):
            g = w_lin[k[n], c] / p * (a[n, c] > 0)
            s = a[n, c].sum()
            alpha = np.where(g != 0, g**2 / (2 * g**2 + s * g**3 + 1e-6), 0.0)
            cam += (np.maximum(g, 0) * alpha).sum() * a[n, c]
        cam = np.maximum(cam, 0)
        expected.append((cam - cam.min()) / (cam.max() - cam.min()))
    hm = compute_heatmaps(model, x, "gradcam++", k, CamConfig(layers=("features.0",)))
    assert hm.maps.shape == (2, 6, 7, 5)
    assert np.allclose(hm.maps, np.array(expected), atol=2e-5)


# ------------------------------------------------------- 2-D agreement with stock library


@pytest.mark.parametrize(
    ("method", "stock"),
    [
        ("gradcam", GradCAM),
        ("gradcam++", GradCAMPlusPlus),
        ("layercam", LayerCAM),
        ("scorecam", ScoreCAM),
    ],
)
def test_2d_maps_equal_stock_pytorch_grad_cam(method, stock):
    """Target layer at input resolution (no resizing): our device-side maps equal the
    library's numpy ones (ScoreCAM with every channel scored, as the library does)."""
    model = gap_model(2, c_in=2)
    x = torch.randn(3, 2, 9, 11)
    k = [1, 0, 2]
    cfg = CamConfig(layers=("features.0",), scorecam_max_masks=None)
    ours = compute_heatmaps(model, x, method, k, cfg).maps
    ref_cam = stock(model, [model.features[0]])
    ref = ref_cam(x, [ClassTarget(c) for c in k])
    ref_cam.activations_and_grads.release()
    assert np.allclose(ours, ref, atol=1e-4)


def test_eigencam_projection_equals_stock_up_to_its_sign_and_sign_is_fixed():
    rng = np.random.default_rng(1)
    blob = np.zeros((6, 7))
    blob[2:4, 3:5] = 1.0
    acts = rng.normal(0, 0.1, (2, 4, 6, 7)) + rng.random((2, 4, 1, 1)) * blob * 5
    ours = eigen_projection(torch.from_numpy(acts)).numpy()
    ref = get_2d_projection(acts.astype(np.float32))
    for o, r in zip(ours, ref, strict=True):
        assert np.allclose(np.abs(o), np.abs(r), atol=1e-4)
        assert np.allclose(o, r, atol=1e-4) or np.allclose(o, -r, atol=1e-4)
        assert o[2:4, 3:5].mean() > o.mean()  # the active blob is positive
    flipped = eigen_projection(torch.from_numpy(-acts + 2 * acts.mean())).numpy()
    assert np.isfinite(flipped).all()


# ------------------------------------------------------------------- shapes, MS, batching


def test_every_method_returns_the_input_shape_in_3d_on_monai_densenet():
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    model = DenseNet(3, 1, 3, init_features=8, growth_rate=4, block_config=(1, 1, 1, 1))
    x = torch.randn(2, 1, 36, 40, 33)
    cfg = CamConfig(smoothgrad_samples=2, ig_steps=2, scorecam_max_masks=4)
    with Explainer(model, cfg) as ex:
        for method in METHODS:
            hm = ex.heatmaps(x, method)
            assert hm.maps.shape == (2, 36, 40, 33), method
            assert hm.maps.dtype == np.float32
            assert np.isfinite(hm.maps).all() and hm.maps.min() >= 0 and hm.maps.max() <= 1
            assert hm.probs.shape == (2, 3)
        assert ex.layer_names("gradcam") == ("features.denseblock4",)
        assert ex.layer_names("ms-gradcam++") == (
            "features.denseblock2",
            "features.transition3",
            "features.denseblock4",
        )


@pytest.mark.parametrize("ndim", [2, 3])
def test_ms_gradcampp_is_the_mean_of_its_three_gradcampp_maps(ndim):
    model = bn_model(ndim).eval()
    x = torch.randn(3, 1, *((12,) * ndim))
    k = [0, 1, 2]
    ms = compute_heatmaps(model, x, "ms-gradcam++", k, SMALL).maps
    singles = [
        compute_heatmaps(model, x, "gradcam++", k, CamConfig(layers=(name,))).maps for name in MS
    ]
    assert np.allclose(ms, np.mean(singles, axis=0), atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_batched_equals_one_at_a_time(ndim):
    model = bn_model(ndim).eval()
    x = torch.randn(4, 1, *((12,) * ndim))
    k = np.array([0, 2, 1, 1])
    for method in METHODS:
        with Explainer(model, SMALL) as ex:
            batched = ex.heatmaps(x, method, k).maps
        cfg1 = CamConfig(**{**SMALL.__dict__, "batch_size": 1, "scorecam_batch_size": 1})
        with Explainer(model, cfg1) as ex:
            single = ex.heatmaps(x, method, k).maps
        assert np.allclose(batched, single, atol=1e-5), method


@pytest.mark.parametrize("ndim", [2, 3])
def test_shared_pass_gives_every_method_its_own_maps_bit_for_bit(ndim):
    """heatmaps_many reads the CAMs' activations and gradients from one pass (MS-GradCAM++'s
    three layers and the deep layer hooked together): the same bytes as one method at a
    time, for given and predicted targets, across batches; methods outside the pass too."""
    model = bn_model(ndim).eval()
    x = torch.randn(5, 1, *((12,) * ndim))
    methods = ["smoothgrad", *SHARED_PASS_METHODS, "gradcam"]  # order and a repeat kept
    cfg = CamConfig(**{**SMALL.__dict__, "batch_size": 2})
    for k in (np.array([0, 2, 1, 1, 0]), None):
        with Explainer(model, cfg) as ex:
            many = ex.heatmaps_many(x, methods, k)
        assert list(many) == ["smoothgrad", *SHARED_PASS_METHODS]
        for m in many:
            with Explainer(model, cfg) as ex:
                one = ex.heatmaps(x, m, k)
            assert np.array_equal(many[m].maps, one.maps), m
            assert np.array_equal(many[m].probs, one.probs), m
            assert np.array_equal(many[m].targets, one.targets), m
            assert many[m].layers == one.layers, m


def test_shared_pass_falls_back_when_a_layer_runs_twice():
    """A target layer called twice per forward (weight sharing) has two activations: the
    shared pass steps aside and each method runs alone (pytorch-grad-cam's own handling)."""

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.block(self.block(self.stem(x))))

    model = Twice().eval()
    x = torch.randn(2, 1, 8, 8)
    cfg = CamConfig(layers=("block",), multiscale_layers=("stem", "block", "block"))
    with Explainer(model, cfg) as ex:
        assert ex._shared_heatmaps(x, ["gradcam", "layercam"], [0, 1]) == {}
        many = ex.heatmaps_many(x, ["gradcam", "layercam"], [0, 1])
        one = ex.heatmaps(x, "layercam", [0, 1])
    assert np.array_equal(many["layercam"].maps, one.maps)


def test_pass_groups_put_the_cams_together_and_the_rest_alone():
    assert pass_groups(["lrp", "gradcam", "eigencam", "ig", "gradcam"]) == [
        ["gradcam", "eigencam"], ["lrp"], ["ig"],
    ]  # fmt: skip
    assert pass_groups(["scorecam"]) == [["scorecam"]]
    assert pass_groups([]) == []


def test_default_target_is_the_predicted_class():
    model = gap_model(2)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    hm = compute_heatmaps(model, x, "gradcam", None, CamConfig(layers=("features.0",)))
    assert np.array_equal(hm.targets, pred)
    assert np.allclose(hm.probs.sum(1), 1, atol=1e-6)
    multi = ("features.0", "features.1", "features.0")
    cfg = CamConfig(layers=("features.0",), multiscale_layers=multi, batch_size=3)
    with Explainer(model, cfg) as ex:
        expected = ex.predict(x)
        for method in METHODS:  # probs taken from the method's own forward pass
            assert np.allclose(ex.heatmaps(x, method, pred).probs, expected, atol=1e-6), method


# ------------------------------------------------------------------------- side effects


def _state(model: nn.Module) -> dict:
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "requires": [p.requires_grad for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks))
            for m in model.modules()
        ],
    }


def test_original_model_is_never_touched():
    model = bn_model(2).train()
    x = torch.randn(6, 1, 12, 12)
    model(x).sum().backward()  # grads present, as mid-training
    model.head[3].weight.requires_grad_(False)  # a frozen part stays frozen
    before = _state(model)
    with Explainer(model, SMALL) as ex:
        for method in METHODS:
            ex.heatmaps(x, method)
        assert all(not p.requires_grad for p in ex.model.parameters())
        assert not any(m.training for m in ex.model.modules())
        assert all(
            a.data_ptr() != b.data_ptr()
            for a, b in zip(model.parameters(), ex.model.parameters(), strict=True)
        )
    after = _state(model)
    for key in ("params", "grads", "buffers"):
        assert all(torch.equal(a, b) for a, b in zip(before[key], after[key], strict=True)), key
    for key in ("modes", "requires", "hooks"):
        assert before[key] == after[key], key
    assert all(m.training for m in model.modules())


# --------------------------------------------------------------------- gradient baselines


def smooth_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Softplus(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).eval()  # fmt: skip


def test_smoothgrad_with_zero_noise_is_the_plain_gradient():
    model = smooth_model()
    x = torch.randn(3, 2, 7, 6)
    k = torch.tensor([0, 2, 1])
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    (plain,) = torch.autograd.grad(logits[torch.arange(3), k].sum(), xg)
    sg = G.smoothgrad(model, x, k, n_samples=5, noise=0.0)
    assert torch.allclose(sg, plain, atol=1e-7)
    noisy = G.smoothgrad(model, x, k, n_samples=5, noise=0.2, seed=1)
    again = G.smoothgrad(model, x, k, n_samples=5, noise=0.2, seed=1)
    assert torch.equal(noisy, again) and not torch.allclose(noisy, plain)
    cfg = CamConfig(smoothgrad_noise=0.0, smoothgrad_samples=2)
    hm = compute_heatmaps(model, x, "smoothgrad", k.numpy(), cfg)
    ref = plain.abs().sum(1).reshape(3, -1)
    ref = (ref - ref.min(1, keepdim=True).values) / (
        ref.max(1, keepdim=True).values - ref.min(1, keepdim=True).values
    )
    assert np.allclose(hm.maps.reshape(3, -1), ref.numpy(), atol=1e-6)


def test_integrated_gradients_completeness():
    """Σ IG = f(x) − f(x') (Sundararajan et al., Prop. 1): tight for a smooth model,
    within quadrature error for a ReLU model in 3-D."""
    model = smooth_model()
    x = torch.randn(3, 2, 7, 6)
    k = torch.tensor([1, 0, 2])
    ig = G.integrated_gradients(model, x, k, steps=16, baseline=0.0)
    gap = G.ig_completeness_gap(model, x, k, ig, 0.0)
    with torch.no_grad():
        diff = G.target_scores(model(x), k) - G.target_scores(model(torch.zeros_like(x)), k)
    assert diff.abs().min() > 1e-3
    assert (gap.abs() <= 1e-5 * (1 + diff.abs())).all()

    relu3d = bn_model(3).eval()
    x3 = torch.randn(2, 1, 10, 10, 10)
    k3 = torch.tensor([0, 2])
    ig3 = G.integrated_gradients(relu3d, x3, k3, steps=64, baseline=-0.5)
    gap3 = G.ig_completeness_gap(relu3d, x3, k3, ig3, -0.5)
    with torch.no_grad():
        d3 = G.target_scores(relu3d(x3), k3) - G.target_scores(
            relu3d(torch.full_like(x3, -0.5)), k3
        )
    assert (gap3.abs() <= 0.02 * d3.abs() + 1e-4).all()


def test_gauss_legendre_integrates_polynomials_exactly():
    a, w = G.gauss_legendre_01(4)
    assert np.isclose(w.sum(), 1.0) and (0 < a).all() and (a < 1).all()
    assert np.isclose((w * a**7).sum(), 1 / 8)  # exact up to degree 2·4 − 1


def test_single_logit_binary_targets():
    z = torch.tensor([[2.0], [-1.0]])
    assert torch.equal(G.target_scores(z, torch.tensor([1, 0])), torch.tensor([2.0, 1.0]))
    p = G.probs_from_logits(z)
    assert torch.allclose(p[:, 1], torch.sigmoid(z[:, 0])) and torch.allclose(
        p.sum(1), torch.ones(2)
    )
    with pytest.raises(ValueError, match="abs"):
        G.reduce_attribution(torch.zeros(1, 1, 2, 2), "bogus")


# ------------------------------------------------------------------------------ registry


def test_registry_resolves_torchvision_and_monai_and_wrappers():
    from monai.networks.nets import DenseNet121
    from torchvision.models import densenet121, resnet18

    r18 = resnet18(weights=None)
    assert target_layer_names(r18) == ["layer4"]
    assert target_layer_names(r18, multiscale=True) == ["layer2", "layer3", "layer4"]
    wrapped = nn.Sequential(r18, nn.Linear(1000, 2))
    assert target_layer_names(wrapped) == ["0.layer4"]
    assert target_layer_names(densenet121(weights=None), multiscale=True) == [
        "features.denseblock2",
        "features.transition3",
        "features.denseblock4",
    ]
    assert target_layer_names(DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)) == [
        "features.denseblock4"
    ]


def test_fallback_lookup_by_name_and_last_conv():
    model = bn_model(2)
    assert target_layer_names(model) == ["features.6"]  # last conv
    assert target_layer_names(model, names=["5"]) == ["features.5"]  # unique dotted suffix
    assert get_module(model, "head.2") is model.head[2]
    with pytest.raises(KeyError, match="no module"):
        get_module(model, "layer9")
    with pytest.raises(KeyError, match="ambiguous"):
        get_module(
            nn.ModuleDict(
                {"a": nn.ModuleDict({"relu": nn.ReLU()}), "b": nn.ModuleDict({"relu": nn.ReLU()})}
            ),
            "relu",
        )
    with pytest.raises(ValueError, match="three layer names"):
        target_layer_names(model, multiscale=True)


def test_config_rejects_unknown_keys_and_bad_values():
    cfg = CamConfig.from_dict({"layers": ["layer4"], "scorecam_max_masks": None})
    assert cfg.layers == ("layer4",) and CamConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown CamConfig"):
        CamConfig.from_dict({"batchsize": 3})
    with pytest.raises(ValueError):
        CamConfig(attribution="squared")
    with pytest.raises(ValueError):
        CamConfig(multiscale_layers=("a", "b"))
    with pytest.raises(ValueError, match="method must be one of"):
        compute_heatmaps(gap_model(2), torch.randn(1, 1, 4, 4), "gradcam+++")


# ---------------------------------------------------------------------------------- store


def test_heatmap_store_round_trip(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rec = HeatmapRecord(
        checkpoint_id="ft-resnet18/epoch=003",
        method="ms-gradcam++",
        maps=rng.random((3, 4, 5, 6)).astype(np.float32),
        record_ids=np.array(["sub-01", "sub-02", "sub-ß3"]),
        labels=np.array([0, 1, 1]),
        probs=rng.random((3, 2)).astype(np.float32),
        targets=np.array([0, 1, 1]),
        epoch=3,
        layers=("a", "b", "c"),
        extra={"explain": "label"},
    )
    name = heatmap_filename(rec.checkpoint_id, rec.method)
    assert name == "ft-resnet18_epoch_003__ms-gradcampp.npz"
    path = save_heatmaps(tmp_path / name, rec)
    back = load_heatmaps(path)
    assert back.maps.dtype == np.float16 and back.maps.shape == (3, 4, 5, 6)
    assert np.abs(back.maps.astype(np.float32) - rec.maps).max() <= 2**-11
    assert list(back.record_ids) == ["sub-01", "sub-02", "sub-ß3"]
    assert (back.checkpoint_id, back.method, back.epoch, back.layers) == (
        rec.checkpoint_id,
        rec.method,
        3,
        ("a", "b", "c"),
    )
    assert np.array_equal(back.labels, rec.labels) and np.array_equal(back.probs, rec.probs)
    assert not list(tmp_path.glob("*.tmp"))
    # the same record gives the same bytes at any time (a recomputed file keeps its sha256)
    import time

    monkeypatch.setattr(time, "time", lambda: 1.0e9)
    first = save_heatmaps(tmp_path / "t1.npz", rec).read_bytes()
    monkeypatch.setattr(time, "time", lambda: 2.0e9)
    assert save_heatmaps(tmp_path / "t2.npz", rec).read_bytes() == first
    with pytest.raises(ValueError, match="record_ids"):
        HeatmapRecord("c", "m", rec.maps, rec.record_ids[:2], rec.labels, rec.probs, rec.targets)


def test_explain_checkpoint_writes_one_file_per_method(tmp_path):
    model = gap_model(2)
    x = torch.randn(4, 1, 8, 8)
    y = np.array([0, 1, 2, 1])
    paths = explain_checkpoint(
        model,
        x,
        y,
        ["a", "b", "c", "d"],
        "ckpt7",
        ["gradcam", "layercam"],
        tmp_path,
        CamConfig(layers=("features.0",)),
        epoch=7,
    )
    assert sorted(paths) == ["gradcam", "layercam"]
    rec = load_heatmaps(paths["gradcam"])
    assert rec.epoch == 7 and np.array_equal(rec.targets, y) and rec.maps.shape == (4, 8, 8)
    direct = compute_heatmaps(model, x, "gradcam", y, CamConfig(layers=("features.0",))).maps
    assert np.allclose(rec.maps.astype(np.float32), direct, atol=1e-3)


def test_cam_grid_is_the_target_layers_spatial_size():
    """ResNet-18 (stride 16 at layer3, 32 at layer4): 128 px -> 8 x 8 / 4 x 4; a 64³
    MONAI DenseNet's denseblock3 (stride 16) is 4³."""
    from monai.networks.nets import DenseNet

    from brainxai.finetune.model import build_classifier

    net = build_classifier("resnet18-w8", 3, 0.449, 0.226, backbone_seed=0)
    x = torch.rand(2, 1, 128, 128)
    assert Explainer(net, CamConfig(layers=("layer3",))).grid(x) == (8, 8)
    assert Explainer(net, CamConfig()).grid(x) == (4, 4)
    d3 = DenseNet(3, 1, 4, init_features=8, growth_rate=4, block_config=(1, 1, 1, 1))
    cfg = CamConfig(layers=("features.denseblock3",))
    assert Explainer(d3, cfg).grid(torch.rand(1, 1, 64, 64, 64)) == (4, 4, 4)
