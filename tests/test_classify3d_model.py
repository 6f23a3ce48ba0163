"""The 3D classifier's head against hand-computed numbers (paper 003 equations)."""

from __future__ import annotations

import math

import pytest
import torch

from brainxai.classify3d.config import ModelConfig, VariantConfig
from brainxai.classify3d.model import (
    MaskGuidedAttention,
    build_model,
    load_checkpoint,
    masked_average_pool,
    save_model,
)
from brainxai.xai.layers import target_layer_names

TINY_DENSE = {"kind": "densenet", "init_features": 8, "growth_rate": 4, "block_config": [1, 1]}
BASE = VariantConfig()
FULL = VariantConfig(mask="union_path", mask_input=True, attention=True)


def test_masked_average_pool_by_hand():
    # F: 2 channels on a 2x1x1 grid; M covers the first voxel fully, the second by 1/2.
    feat = torch.tensor([[[[[1.0]], [[3.0]]], [[[2.0]], [[-4.0]]]]])  # (1, 2, 2, 1, 1)
    mask = torch.tensor([[[[[1.0]], [[0.5]]]]])
    z = masked_average_pool(feat, mask, eps=0.0)
    # z_c = (F_c0 * 1 + F_c1 * 0.5) / 1.5
    assert torch.allclose(z, torch.tensor([[(1 + 1.5) / 1.5, (2 - 2) / 1.5]]))


def test_mask_is_resampled_to_the_feature_grid_by_area():
    feat = torch.ones(1, 1, 2, 2, 2)
    feat[:, :, 0] = 5.0  # first slab 5, second 1
    mask = torch.zeros(1, 1, 4, 4, 4)
    mask[:, :, :2] = 1.0  # the mask covers exactly the first slab
    z = masked_average_pool(feat, mask, eps=0.0)
    assert torch.allclose(z, torch.tensor([[5.0]]))


def test_attention_weights_equal_the_hand_computed_example():
    att = MaskGuidedAttention(channels=2, reduction=2, eps=0.0)  # hidden = 1
    with torch.no_grad():
        att.fc1.weight.copy_(torch.tensor([[1.0, -1.0]]))
        att.fc1.bias.copy_(torch.tensor([0.5]))
        att.fc2.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        att.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
    feat = torch.tensor([[[[[1.0]], [[3.0]]], [[[2.0]], [[-4.0]]]]])
    mask = torch.tensor([[[[[1.0]], [[0.0]]]]])
    f_att, w = att(feat, mask)
    # z = F at the first voxel = (1, 2); h = relu(1 - 2 + 0.5) = 0 -> w = sigmoid(0, 1)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected_w = torch.tensor([[0.5, sig(1.0)]])
    assert torch.allclose(w, expected_w)
    assert torch.allclose(f_att, feat * expected_w.view(1, 2, 1, 1, 1))


def test_disabled_attention_is_monai_densenet121s_own_classifier():
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    ref = DenseNet(3, 1, 3, init_features=8, growth_rate=4, block_config=(1, 1)).eval()
    model = build_model(TINY_DENSE, BASE, ModelConfig(), 3, (24, 24, 24), seed=1).eval()
    model.backbone.net.features.load_state_dict(ref.features.state_dict())
    model.head.out.load_state_dict(ref.class_layers.out.state_dict())
    x = torch.randn(2, 1, 24, 24, 24)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


def test_attention_with_unit_weights_reduces_to_the_doubled_base_head():
    model = build_model(TINY_DENSE, FULL, ModelConfig(), 3, (24, 24, 24), seed=2).eval()
    with torch.no_grad():  # w = sigmoid(large) = 1  ->  F_att = F
        model.head.attention.fc2.weight.zero_()
        model.head.attention.fc2.bias.fill_(50.0)
    x = torch.randn(1, 2, 24, 24, 24)
    with torch.no_grad():
        feat = model.backbone(x)
        gap = feat.mean(dim=(2, 3, 4))
        w = model.head.out.weight
        c = gap.shape[1]
        expected = gap @ (w[:, :c] + w[:, c:]).T + model.head.out.bias
        assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [
        TINY_DENSE,
        {"kind": "efficientnet", "model_name": "efficientnet-b0"},
        {"kind": "swin", "feature_size": 12, "depths": [1, 1, 1, 1]},
        {
            "kind": "vit",
            "patch_size": 8,
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_layers": 1,
            "num_heads": 2,
        },
    ],
    ids=lambda s: s["kind"],
)
def test_fusion_head_shapes_batch_one_and_odd_sizes(spec):
    odd = {"densenet": (27, 33, 21), "efficientnet": (65, 67, 63)}  # b0's fixed paddings
    size = odd.get(spec["kind"], (32, 32, 32))  # Swin/ViT need multiples of 32 / the patch
    model = build_model(spec, FULL, ModelConfig(), 4, size, seed=0).eval()
    x = torch.randn(1, 1, *size)
    mask = torch.zeros(1, 1, *size)
    mask[..., 5:9, 5:9, 5:9] = 1
    with torch.no_grad():
        out = model(x, mask)
        assert out.shape == (1, 4)
        assert torch.isfinite(out).all()
        model.set_mask(mask)  # the stored-mask path: one-tensor forward
        assert torch.allclose(model(x), out)
        assert torch.allclose(model(torch.cat([x, mask], 1)), out)


def test_mask_model_without_a_mask_is_a_clear_error():
    model = build_model(TINY_DENSE, FULL, ModelConfig(), 2, (24, 24, 24), seed=0).eval()
    with pytest.raises(ValueError, match="set_mask"):
        model(torch.randn(1, 1, 24, 24, 24))


def test_checkpoint_round_trip_and_cam_layer(tmp_path):
    spec = {**TINY_DENSE, "block_config": [1, 1, 1, 1]}  # four blocks, like DenseNet121
    model = build_model(spec, FULL, ModelConfig(), 2, (32, 32, 32), seed=3).eval()
    meta = {
        "backbone_spec": spec,
        "variant": {"mask": "union_path", "mask_input": True, "attention": True},
        "model_cfg": {"dropout": 0.2, "reduction": 16, "eps": 1e-6},
        "class_names": ["a", "b"],
        "input_size": [32, 32, 32],
    }
    path = save_model(tmp_path / "m.pt", model, meta)
    loaded, got = load_checkpoint(path)
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert got["class_names"] == ["a", "b"]
    (layer,) = target_layer_names(loaded)  # brainxai.xai finds the MONAI DenseNet inside
    assert layer == "backbone.net.features.denseblock4"
    assert layer in dict(loaded.named_modules())
