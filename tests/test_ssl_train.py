"""Frameworks learn on CPU; checkpoint/resume equals an uninterrupted run; kNN monitor works."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brainxai.devices import torch_device as pick_device
from brainxai.ssl import (
    AugmentConfig,
    KnnConfig,
    PretrainSpec,
    TrainConfig,
    build_backbone,
    framework_config,
    pretrain,
)
from brainxai.ssl.augment import MRIAugment
from brainxai.ssl.checkpoint import checkpoints, load_checkpoint, read_backbone
from brainxai.ssl.framework import Progress
from brainxai.ssl.frameworks import FRAMEWORKS, build_framework
from brainxai.ssl.knn import knn_accuracy
from brainxai.ssl.train import Monitor
from tests.test_ssl_toydata import toy_cache

SMALL = {
    "simclr": {"hidden_dim": 64, "output_dim": 32, "temperature": 0.5},
    "byol": {"hidden_dim": 64, "output_dim": 32},
    "dino": {
        "hidden_dim": 64,
        "bottleneck_dim": 32,
        "output_dim": 128,
        "freeze_last_layer_epochs": 0,
    },
    "mocov3": {"hidden_dim": 64, "output_dim": 32},
    "supervised": {},
}


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_each_framework_decreases_its_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    cache = toy_cache(n_train=8, n_val=0, size=32)
    cfg = framework_config(name, {**SMALL[name], "optimizer": "adamw", "base_lr": 0.5})
    fw = build_framework(name, build_backbone("resnet18", 0.449, 0.226), cfg, n_classes=2)
    opt = torch.optim.AdamW([p for m in fw.trainable() for p in m.parameters()], lr=1e-3)
    x = torch.from_numpy(np.asarray(cache.images[:8]))
    labels = torch.from_numpy(np.arange(8) % 2)
    views = MRIAugment(AugmentConfig(local_views=2, local_size=16), 32).views(x, 3, 2)
    views = views if name == "dino" else views[: fw.n_global_views]
    losses = []
    for step in range(4):
        prog = Progress(step, 4, 1, 2)
        loss = fw.loss(views, labels, prog)
        opt.zero_grad()
        loss.backward()
        fw.before_step(prog)
        opt.step()
        fw.after_step(prog)
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


def _spec(tmp_epochs=3, **train):
    return PretrainSpec(
        framework="byol",
        optim=framework_config("byol", {**SMALL["byol"], "clip_grad_norm": 1.0}),
        train=TrainConfig(
            arch="resnet18",
            image_size=32,
            epochs=tmp_epochs,
            batch_size=8,
            max_steps_per_epoch=2,
            warmup_epochs=1.0,
            checkpoint_every=1,
            keep_checkpoints=5,
            seed=5,
            **train,
        ),
        augment=AugmentConfig(),
        knn=KnnConfig(k=5, batch_size=16),
        data_id="toy",
    )


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    cache = toy_cache(n_train=24, n_val=8, size=36)
    spec = _spec()
    seen = []
    full = pretrain(spec, cache, tmp_path / "a", on_metrics=lambda k, s, m: seen.append((k, s)))
    assert [s for k, s in seen if k == "epoch"] == [2, 4, 6]
    assert [s for k, s in seen if k == "step"] == list(range(6))

    class Crash(RuntimeError):
        pass

    def crash_at_epoch_2(kind, step, metrics):
        if kind == "epoch" and metrics["epoch"] == 2:
            raise Crash

    with pytest.raises(Crash):
        pretrain(spec, cache, tmp_path / "b", on_metrics=crash_at_epoch_2)
    assert [p.name for p in checkpoints(tmp_path / "b" / "checkpoints")] == [
        "epoch-0001.pt", "epoch-0002.pt",
    ]  # fmt: skip
    resumed = pretrain(spec, cache, tmp_path / "b")
    assert resumed["resumed_from_epoch"] == 2 and full["resumed_from_epoch"] is None
    a = load_file(str(tmp_path / "a" / "backbone.safetensors"))
    b = load_file(str(tmp_path / "b" / "backbone.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca = load_checkpoint(tmp_path / "a" / "checkpoints" / "epoch-0003.pt")
    cb = load_checkpoint(tmp_path / "b" / "checkpoints" / "epoch-0003.pt")
    assert all(torch.equal(v, cb["model"][k]) for k, v in ca["model"].items())  # EMA too
    assert [h["loss"] for h in full["history"]] == [h["loss"] for h in resumed["history"]]
    assert [h["knn_accuracy"] for h in full["history"]] == [
        h["knn_accuracy"] for h in resumed["history"]
    ]
    assert {"optimizer", "rng", "step", "epoch", "digest"} <= set(ca)
    # a changed configuration never resumes from another configuration's checkpoint
    other = pretrain(_spec(tmp_epochs=1), cache, tmp_path / "b")
    assert other["resumed_from_epoch"] is None


def test_knn_accuracy_on_separable_clusters_is_perfect():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8)
    bank_y = torch.arange(30) % 3
    query_y = torch.arange(12) % 3
    bank = torch.nn.functional.normalize(
        centres[bank_y] + 0.05 * torch.randn(30, 8, generator=gen), dim=1
    )
    query = torch.nn.functional.normalize(
        centres[query_y] + 0.05 * torch.randn(12, 8, generator=gen), dim=1
    )
    assert knn_accuracy(bank, bank_y, query, query_y, 3, k=5, temperature=0.1) == 1.0
    assert knn_accuracy(bank, bank_y, query, (query_y + 1) % 3, 3, k=5, temperature=0.1) == 0.0


def test_knn_monitor_beats_chance_on_a_separable_toy_set():
    torch.manual_seed(0)
    cache = toy_cache(n_train=24, n_val=16, size=32)
    mon = Monitor(cache, KnnConfig(k=5, batch_size=16), 32, pick_device("cpu"))
    assert mon.enabled and mon.n_classes == 2
    acc = mon(build_backbone("resnet18", 0.449, 0.226), autocast=False, channels_last=False)
    assert acc >= 0.85, acc  # chance 0.5


def test_random_init_reference_is_the_untrained_backbone_with_precise_bn(tmp_path):
    """knn_random_init = kNN of the seed's initial backbone, BN re-estimated on pretraining
    rows (computed here by hand); training is unchanged by it; a resumed run keeps it."""
    import copy
    import dataclasses

    from brainxai.ssl.batchnorm import recalibrate_batchnorm
    from brainxai.ssl.train import make_framework

    cache = toy_cache(n_train=24, n_val=8, size=36)
    spec = _spec()
    res = pretrain(spec, cache, tmp_path / "a")
    torch.manual_seed(spec.train.seed)
    init = make_framework(spec, 2).backbone
    rows = np.flatnonzero(cache.index["pretrain"].to_numpy() & cache.index["ok"].to_numpy())
    probe = copy.deepcopy(init)
    recalibrate_batchnorm(probe, cache.images, 32, 16, pick_device("cpu"),
                          max_images=spec.knn.random_init_bn_images, seed=5, rows=rows)  # fmt: skip
    mon = Monitor(cache, spec.knn, 32, pick_device("cpu"))
    assert res["knn_random_init"] == mon(probe, autocast=False, channels_last=False)
    final = res["history"][-1]["knn_accuracy"]
    assert res["knn_gain_over_random"] == pytest.approx(final - res["knn_random_init"])
    # the trained backbone under the reference's protocol: BN re-estimated the same way
    trained = make_framework(spec, 2).backbone
    trained.load_state_dict(read_backbone(tmp_path / "a" / "backbone.safetensors"))
    recalibrate_batchnorm(trained, cache.images, 32, 16, pick_device("cpu"),
                          max_images=spec.knn.random_init_bn_images, seed=5, rows=rows)  # fmt: skip
    assert res["knn_precise_bn"] == mon(trained, autocast=False, channels_last=False)
    assert res["knn_gain_over_random_precise_bn"] == pytest.approx(
        res["knn_precise_bn"] - res["knn_random_init"]
    )
    # no reference: the same training (the reference touches no RNG and no weight)
    off = dataclasses.replace(spec, knn=dataclasses.replace(spec.knn, random_init_bn_images=-1))
    res_off = pretrain(off, cache, tmp_path / "b")
    assert res_off["knn_random_init"] is None and res_off["knn_gain_over_random"] is None
    assert res_off["knn_precise_bn"] is None
    assert [h["loss"] for h in res_off["history"]] == [h["loss"] for h in res["history"]]
    # resumed from a checkpoint: the reference comes from the checkpoint, not recomputed
    (tmp_path / "a" / "backbone.safetensors").unlink()
    again = pretrain(spec, cache, tmp_path / "a")
    assert again["resumed_from_epoch"] == 3 and again["knn_random_init"] == res["knn_random_init"]
