"""Full fine-tuning: deterministic on CPU, checkpoints at the listed epochs readable by
``load_classifier``, the selected checkpoint = the best val macro-F1, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainxai.finetune.cell import CellData, run_finetune
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.evaluate import forward_batches, softmax_np
from brainxai.finetune.model import build_classifier, load_classifier
from brainxai.finetune.runs import RunSpec
from brainxai.finetune.tune import epoch_batches, finetune, param_groups
from brainxai.ssl.cache import Cache
from tests.test_finetune_toydata import toy_table

BB = BackboneSpec(arch="resnet18", image_size=32)
TUNE = {
    "epochs": 3,
    "batch_size": 8,
    "max_steps_per_epoch": 1,
    "lr": 3e-3,
    "patience": 0,
    "checkpoint_epochs": [1, 3],
    "warmup_epochs": 0.5,
    "augment": {"blur_prob": 0.0, "noise_prob": 0.0},
}


def test_discriminative_lrs_and_batches():
    cfg = FinetuneConfig.from_dict({"tune": {"lr": 1e-3, "backbone_lr_factor": 0.1}}).tune
    model = build_classifier("resnet18", 4, 0.45, 0.23)
    peaks = {id(p): g["peak"] for g in param_groups(model, cfg) for p in g["params"]}
    assert peaks[id(model.head.weight)] == 1e-3
    assert peaks[id(model.backbone.net.conv1.weight)] == 1e-4
    assert len(peaks) == len(list(model.parameters()))  # every parameter in one group
    b = epoch_batches(33, 16, seed=0, epoch=1)
    assert [len(x) for x in b] == [11, 11, 11]  # near-equal, never a batch of one
    assert sorted(np.concatenate(b)) == list(range(33))
    assert len(epoch_batches(33, 16, 0, 1, max_steps=2)) == 2


def test_finetune_is_deterministic_and_checkpoints_load(tmp_path):
    items, images = toy_table(patients_per_group=6, size=40)
    cache = Cache(images, items)
    data = CellData.of(cache, items.loc[items["split"] == "train", "record_id"].tolist())
    cfg = FinetuneConfig.from_dict({"tune": TUNE})
    spec = RunSpec("random", "finetune", 1.0, 3)
    runs = [run_finetune(spec, cfg, BB, cache, data, "", "", tmp_path / f"r{i}") for i in (0, 1)]
    a, b = runs
    assert a["history"] == b["history"]  # same seed, same numbers
    np.testing.assert_array_equal(np.stack(a["predictions"]["probs"]),
                                  np.stack(b["predictions"]["probs"]))  # fmt: skip
    epochs = [c["epoch"] for c in a["checkpoints"]]
    best = max(a["history"], key=lambda h: h["val_macro_f1"])["epoch"]
    assert set(epochs) == {1, 3, best}
    assert [c["epoch"] for c in a["checkpoints"] if c["selected"]] == [best]
    for c in a["checkpoints"]:
        model, meta = load_classifier(c["path"])
        assert meta["epoch"] == c["epoch"] and meta["run"] == "random__finetune__f1__s3"
    sel = next(c for c in a["checkpoints"] if c["selected"])
    model, _ = load_classifier(sel["path"])
    probs = softmax_np(
        forward_batches(model, images[data.test["row"].to_numpy()], 32, 64, torch.device("cpu"))
    )
    np.testing.assert_allclose(np.stack(a["predictions"]["probs"]), probs, atol=1e-5)


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    items, images = toy_table(patients_per_group=6, size=40)
    train, val = items[items["split"] == "train"], items[items["split"] == "val"]
    cfg = FinetuneConfig.from_dict(
        {"tune": {**TUNE, "epochs": 6, "patience": 1, "lr": 0.0, "max_steps_per_epoch": 1}}
    ).tune
    model = build_classifier("resnet18", 17, 0.45, 0.23, backbone_seed=0)
    seen = []
    res = finetune(
        model, images[train["row"]], np.zeros(len(train), np.int64), images[val["row"]],
        np.zeros(len(val), np.int64), cfg, 32, seed=0, on_epoch=lambda e, m, x: seen.append(e),
    )  # fmt: skip
    # lr 0 and eval mode: the val score never improves after epoch 1 -> stop at epoch 2
    assert res.stopped_early and seen == [1, 2] and res.best_epoch == 1


def test_random_init_trains_its_backbone_at_its_own_lr_factor(tmp_path, monkeypatch):
    """Random init (no backbone / ImageNet file): backbone LR = lr x
    random_init_backbone_lr_factor; a pretrained backbone keeps backbone_lr_factor."""
    import brainxai.finetune.cell as cell
    from brainxai.finetune.model import build_classifier
    from brainxai.finetune.tune import param_groups
    from brainxai.ssl.checkpoint import save_backbone

    items, images = toy_table(patients_per_group=6, size=40)
    cache = Cache(images, items)
    data = CellData.of(cache, items.loc[items["split"] == "train", "record_id"].tolist())
    cfg = FinetuneConfig.from_dict({"tune": {**TUNE, "lr": 0.01, "backbone_lr_factor": 0.1,
                                             "random_init_backbone_lr_factor": 0.5}})  # fmt: skip
    peaks: list[set[float]] = []

    class Seen(Exception):
        pass

    def spy(model, *args):
        tc = args[4]
        backbone = set(model.backbone.parameters())
        peaks.append(sorted({round(g["peak"], 12) for g in param_groups(model, tc)
                             if g["params"][0] in backbone}))  # fmt: skip
        raise Seen

    monkeypatch.setattr(cell, "finetune", spy)
    spec = RunSpec("random", "finetune", 1.0, 0)
    with pytest.raises(Seen):
        cell.run_finetune(spec, cfg, BB, cache, data, "", "", tmp_path / "r")
    ssl = save_backbone(build_classifier("resnet18", 17, 0.449, 0.226).backbone,
                        tmp_path / "bb.safetensors")  # fmt: skip
    with pytest.raises(Seen):
        cell.run_finetune(spec, cfg, BB, cache, data, str(ssl), "", tmp_path / "s")
    assert peaks == [[0.005], [0.001]]
