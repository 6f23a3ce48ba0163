"""Linear probe: cached embeddings equal recomputed ones, the folded head is exact, head-only
checkpoints reproduce the run's predictions through ``load_classifier``."""

from __future__ import annotations

import numpy as np
import torch

from brainxai.finetune.cell import CellData, run_probe
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.evaluate import forward_batches, softmax_np
from brainxai.finetune.model import build_classifier, load_classifier
from brainxai.finetune.probe import embed_images, fold_standardisation, train_linear_probe
from brainxai.finetune.runs import RunSpec, parse_run_name
from brainxai.ssl.cache import Cache
from brainxai.ssl.checkpoint import save_backbone
from tests.test_finetune_toydata import toy_table

CPU = torch.device("cpu")
BB = BackboneSpec(arch="resnet18", image_size=32)


def test_fold_standardisation_gives_the_same_logits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3 + 2
    mu, sigma = x.mean(0), x.std(0)
    w, b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    w2, b2 = fold_standardisation(w, b, mu, sigma)
    torch.testing.assert_close(x @ w2.T + b2, ((x - mu) / sigma) @ w.T + b)


def test_probe_learns_separable_features_and_is_seeded():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.normal(size=(60, 8)) + 4 * np.eye(3, 8)[y]
    cfg = FinetuneConfig.from_dict({"probe": {"epochs": 20, "lr": 0.05, "batch_size": 16}}).probe
    a = train_linear_probe(x[:45], y[:45], x[45:], y[45:], 3, cfg, seed=1)
    b = train_linear_probe(x[:45], y[:45], x[45:], y[45:], 3, cfg, seed=1)
    assert len(a) == 20 and a[-1].val_macro_f1 == 1.0
    assert a[-1].train_loss < a[0].train_loss
    torch.testing.assert_close(a[-1].weight, b[-1].weight, rtol=0, atol=0)


def test_cached_embeddings_and_head_only_checkpoints_reproduce_the_model(tmp_path):
    items, images = toy_table(patients_per_group=6, size=40)
    cache = Cache(images, items)
    bb_path = save_backbone(
        build_classifier("resnet18", 17, 0.449, 0.226, backbone_seed=11).backbone,
        tmp_path / "backbone.safetensors",
    )
    # the cache: embed once, store, reload; equals a fresh forward pass of a loaded model
    model = build_classifier("resnet18", 17, 0.449, 0.226, backbone_path=bb_path)
    np.save(tmp_path / "emb.npy", embed_images(model.backbone, images, 32, 64, CPU))
    cached = np.load(tmp_path / "emb.npy", mmap_mode="r")
    again = build_classifier("resnet18", 17, 0.449, 0.226, backbone_path=bb_path, backbone_seed=5)
    fresh = forward_batches(again.backbone, images[::7], 32, 16, CPU).numpy()
    np.testing.assert_allclose(cached[::7], fresh, rtol=1e-5, atol=1e-5)

    cfg = FinetuneConfig.from_dict({"probe": {"epochs": 4, "checkpoint_epochs": [1, 3]}})
    spec = RunSpec("simclr", "probe", 0.5, 0)
    data = CellData.of(cache, items.loc[items["split"] == "train", "record_id"].tolist())
    res = run_probe(spec, cfg, BB, data, cached, str(bb_path), tmp_path / spec.name)
    assert [c["epoch"] for c in res["checkpoints"]] == [1, 3, 4]  # listed + last
    assert [c["selected"] for c in res["checkpoints"]] == [False, False, True]
    assert parse_run_name(spec.name) == spec
    head_keys = torch.load(res["checkpoints"][-1]["path"], weights_only=True)["state_dict"]
    assert set(head_keys) == {"head.weight", "head.bias"}
    loaded, meta = load_classifier(res["checkpoints"][-1]["path"])
    assert meta["protocol"] == "probe" and meta["epoch"] == 4 and meta["fraction"] == 0.5
    probs = softmax_np(forward_batches(loaded, images[data.test["row"].to_numpy()], 32, 16, CPU))
    preds = res["predictions"]
    np.testing.assert_allclose(np.stack(preds["probs"]), probs, atol=1e-5)
    assert (preds["y_pred"] == probs.argmax(1)).all()
    assert len(preds) == 17 and preds["record_id"].is_unique
