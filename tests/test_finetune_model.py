"""The classifier checkpoint contract shared by fine-tuning and explanation tracking."""

from __future__ import annotations

import torch

from brainxai.finetune.model import build_classifier, load_classifier, save_classifier
from brainxai.ssl.checkpoint import save_backbone
from brainxai.xai.layers import target_layer_names


def _meta(**kw):
    base = dict(
        arch="resnet18", num_classes=3, class_names=["a", "b", "c"], input_mean=0.45,
        input_std=0.23, image_size=32, epoch=1, run="r", init="random", protocol="finetune",
        fraction=1.0, seed=0, backbone_path="", backbone_seed=7,
    )  # fmt: skip
    return {**base, **kw}


def test_full_and_head_only_checkpoints_round_trip(tmp_path):
    x = torch.rand(2, 1, 32, 32)
    model = build_classifier("resnet18", 3, 0.45, 0.23, backbone_seed=7).eval()
    with torch.no_grad():
        model.head.weight.add_(1.0)
        ref = model(x)
    save_classifier(tmp_path / "full.pt", model, _meta())
    back, meta = load_classifier(tmp_path / "full.pt")
    assert meta["class_names"] == ["a", "b", "c"]
    torch.testing.assert_close(back(x), ref)
    # frozen-backbone run: only the head is stored, the backbone comes from its file
    bb = save_backbone(model.backbone, tmp_path / "backbone.safetensors")
    save_classifier(tmp_path / "head.pt", model, _meta(backbone_path=str(bb)), True)
    assert set(torch.load(tmp_path / "head.pt", weights_only=True)["state_dict"]) == {
        "head.weight", "head.bias"
    }  # fmt: skip
    back, _ = load_classifier(tmp_path / "head.pt")
    torch.testing.assert_close(back(x), ref)


def test_random_init_is_seeded_and_cam_layers_resolve():
    a = build_classifier("resnet18", 4, 0.45, 0.23, backbone_seed=3)
    b = build_classifier("resnet18", 4, 0.45, 0.23, backbone_seed=3)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert target_layer_names(a) == ["backbone.net.layer4"]
    assert target_layer_names(a, multiscale=True)[0] == "backbone.net.layer2"


def test_head_only_checkpoint_survives_moving_the_study_tree(tmp_path):
    import shutil

    root = tmp_path / "a"
    model = build_classifier("resnet18", 3, 0.45, 0.23, backbone_seed=1).eval()
    bb = save_backbone(model.backbone, root / "models/ssl/simclr/backbone.safetensors")
    ckpt = root / "models/finetune/run/epoch-0001.pt"
    save_classifier(ckpt, model, _meta(backbone_path=str(bb)), True)
    meta = torch.load(ckpt, weights_only=True)["meta"]
    assert meta["backbone_path"] == "../../ssl/simclr/backbone.safetensors"
    shutil.move(root, tmp_path / "b")
    x = torch.rand(1, 1, 32, 32)
    back, _ = load_classifier(tmp_path / "b/models/finetune/run/epoch-0001.pt")
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))
