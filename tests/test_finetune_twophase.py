"""Paper 004's two-phase protocol (issue 17.1): one run whose backbone is frozen for the
first epochs (transfer learning: parameters and BatchNorm statistics unchanged, only the
head learns) and trained afterwards (fine-tuning); every checkpoint carries its phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainxai.config import load_params
from brainxai.finetune.cell import CellData, run_twophase
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.model import build_classifier, load_classifier
from brainxai.finetune.runs import RunSpec, frozen_epochs, parse_run_name, phase_of
from brainxai.finetune.tune import two_phase
from brainxai.ssl.cache import Cache
from tests.conftest import REPO
from tests.test_finetune_toydata import toy_table

BB = BackboneSpec(arch="resnet18", image_size=32)
TWOPHASE = {
    "frozen_epochs": 2,
    "unfrozen_epochs": 2,
    "lr": 1e-2,
    "finetune_lr": 1e-3,
    "batch_size": 8,
    "max_steps_per_epoch": 2,
    "checkpoint_epochs": [1, 3],
    "augment": {"blur_prob": 0.0, "noise_prob": 0.0},
}


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm running statistics included), copied."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_backbone_is_frozen_in_phase_one_and_trained_in_phase_two():
    items, images = toy_table(patients_per_group=6, size=40)
    train, val = items[items["split"] == "train"], items[items["split"] == "val"]
    cfg = FinetuneConfig.from_dict({"twophase": TWOPHASE}).twophase
    model = build_classifier("resnet18", 17, 0.45, 0.23, backbone_seed=0)
    states = {0: (_state(model.backbone), _state(model.head))}

    def snapshot(epoch, m, metrics):
        states[epoch] = (_state(m.backbone), _state(m.head))

    res = two_phase(
        model, images[train["row"]], np.arange(len(train)) % 17, images[val["row"]],
        np.arange(len(val)) % 17, cfg, 32, seed=0, on_epoch=snapshot,
    )  # fmt: skip
    assert [h["phase"] for h in res.history] == ["transfer", "transfer", "finetune", "finetune"]
    start_bb = states[0][0]
    for epoch in (1, 2):  # phase 1: every backbone tensor (BN statistics too) as it was
        bb, head = states[epoch]
        assert all(torch.equal(bb[k], start_bb[k]) for k in start_bb), epoch
        assert not torch.equal(head["weight"], states[epoch - 1][1]["weight"]), epoch
    for epoch in (3, 4):  # phase 2: the backbone's parameters move, epoch after epoch
        bb, prev = states[epoch][0], states[epoch - 1][0]
        conv = "net.conv1.weight"
        assert not torch.equal(bb[conv], prev[conv]), epoch
        assert not torch.equal(bb["net.bn1.running_mean"], prev["net.bn1.running_mean"])
    # after the run every parameter trains again (the module is left as a model should be)
    assert all(p.requires_grad for p in model.parameters())
    # selection "last": the selected weights are the final epoch's
    assert res.best_epoch == 4
    assert all(torch.equal(res.best_state[f"backbone.{k}"], v) for k, v in states[4][0].items())


def test_best_val_selection_picks_the_best_epoch():
    items, images = toy_table(patients_per_group=6, size=40)
    train, val = items[items["split"] == "train"], items[items["split"] == "val"]
    cfg = FinetuneConfig.from_dict({"twophase": {**TWOPHASE, "selection": "best_val"}}).twophase
    model = build_classifier("resnet18", 17, 0.45, 0.23, backbone_seed=0)
    res = two_phase(model, images[train["row"]], np.zeros(len(train), np.int64),
                    images[val["row"]], np.zeros(len(val), np.int64), cfg, 32, seed=0)  # fmt: skip
    scores = [h["val_macro_f1"] for h in res.history]
    assert res.best_epoch == 1 + int(np.argmax(scores))  # the first of the best
    assert res.best_val_macro_f1 == max(scores)


def test_run_twophase_checkpoints_carry_their_phase(tmp_path):
    items, images = toy_table(patients_per_group=6, size=40)
    cache = Cache(images, items)
    data = CellData.of(cache, items.loc[items["split"] == "train", "record_id"].tolist())
    cfg = FinetuneConfig.from_dict({"twophase": TWOPHASE})
    spec = RunSpec("random", "twophase", 1.0, 3)
    res = run_twophase(spec, cfg, BB, cache, data, "", tmp_path / "run")
    assert res["frozen_epochs"] == 2 and res["selected_epoch"] == 4
    got = {c["epoch"]: c["phase"] for c in res["checkpoints"]}
    # listed epochs 1 and 3, the last (= selected) epoch 4
    assert got == {1: "transfer", 3: "finetune", 4: "finetune"}
    start = build_classifier("resnet18", 17, BB.input_mean, BB.input_std, backbone_seed=3)
    for c in res["checkpoints"]:
        model, meta = load_classifier(c["path"])
        assert meta["phase"] == c["phase"] and meta["protocol"] == "twophase"
        assert meta["run"] == "random__twophase__f1__s3"
        # the transfer checkpoint holds the initial backbone, the fine-tuning ones do not
        same = torch.equal(model.backbone.net.conv1.weight, start.backbone.net.conv1.weight)
        assert same == (c["phase"] == "transfer"), c["epoch"]
    assert len(res["predictions"]) == (items["split"] == "test").sum()


def test_phase_helpers_and_run_names():
    cfg = FinetuneConfig.from_dict(
        {"probe": {"epochs": 7}, "twophase": {"frozen_epochs": 3, "unfrozen_epochs": 2}}
    )
    assert [frozen_epochs(p, cfg) for p in ("probe", "finetune", "twophase")] == [7, 0, 3]
    assert [phase_of(e, 3) for e in (1, 3, 4)] == ["transfer", "transfer", "finetune"]
    assert parse_run_name("byol__twophase__f0.01__s2") == RunSpec("byol", "twophase", 0.01, 2)
    assert cfg.twophase.runs_cell(0.5, 1)  # empty lists: every cell
    only = FinetuneConfig.from_dict({"twophase": {"fractions": [0.1, 1.0], "seeds": [0]}})
    assert only.twophase.runs_cell(1.0, 0) and not only.twophase.runs_cell(0.5, 0)
    assert not only.twophase.runs_cell(1.0, 1)
    with pytest.raises(ValueError, match="selection"):
        FinetuneConfig.from_dict({"twophase": {"selection": "best"}})
    with pytest.raises(ValueError, match="unknown TwoPhaseConfig key"):
        FinetuneConfig.from_dict({"twophase": {"frozen": 2}})


@pytest.mark.parametrize(("profile", "frozen", "unfrozen"), [("full", 20, 10), ("smoke", 1, 1)])
def test_profiles_run_the_paper_protocol(profile, frozen, unfrozen):
    params = load_params(REPO / "params.yaml", profile=profile)
    cfg = FinetuneConfig.from_dict(params["finetune"])
    assert "twophase" in cfg.protocols
    tp = cfg.twophase
    assert (tp.frozen_epochs, tp.unfrozen_epochs) == (frozen, unfrozen)
    assert max(tp.checkpoint_epochs) <= tp.epochs
    if profile == "full":  # the paper's checkpoints 1, 5, ..., 30 along the one run
        assert tp.checkpoint_epochs == (1, 5, 10, 15, 20, 25, 30)
    assert "twophase" in params["xai"]["select"]["protocols"]
