"""The baselines a referee asks for, through the fine-tuning flow (issue 17.1 and 17.6):
an ImageNet init from a small local weights file (a torchvision ResNet-18 state dict with
random weights, of the right architecture) enters every comparison table, and paper 004's
two-phase protocol writes checkpoints of both phases into the checkpoint index."""

from __future__ import annotations

import pandas as pd
import torch
import torchvision
import yaml

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.finetune.model import load_classifier
from flows.finetune import finetune_flow
from tests.conftest import make_study
from tests.test_finetune_toydata import write_toy_study

WEIGHTS = "weights/resnet18-local.pth"
SETTINGS = {
    "inits": ["random"],
    "imagenet_path": WEIGHTS,
    "protocols": ["finetune", "twophase"],
    "fractions": [1.0],
    "seeds": [0],
    "n_boot": 100,
    "fail_on_error": False,
    "tune": {"epochs": 1, "batch_size": 4, "max_steps_per_epoch": 1, "patience": 0,
             "checkpoint_epochs": [1], "augment": {"blur_prob": 0.0}},
    "twophase": {"frozen_epochs": 1, "unfrozen_epochs": 1, "batch_size": 4,
                 "max_steps_per_epoch": 1, "checkpoint_epochs": [1, 2], "fractions": [],
                 "seeds": [], "tracked_fractions": [], "augment": {"blur_prob": 0.0}},
    "controls": {"run": []},
}  # fmt: skip


def test_local_imagenet_init_is_compared_and_two_phase_checkpoints_are_indexed(tmp_path):
    root = make_study(tmp_path / "study")
    write_toy_study(root, patients_per_group=6, size=48)
    (root / "weights").mkdir()
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, root / WEIGHTS)
    params = yaml.safe_load((root / "params.yaml").read_text())
    smoke = params["profiles"]["smoke"]
    smoke.setdefault("pretrain", {}).setdefault("train", {})["image_size"] = 32
    smoke["finetune"] = SETTINGS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    out = finetune_flow(profile="smoke", root=str(root))
    assert out["inits"] == ["random", "imagenet"]
    assert out["runs"] == out["ok"] == 2 * 2 and out["failed"] == 0

    # ImageNet sits in every comparison table beside the supervised baseline
    rep = root / "reports" / "finetune"
    summary = pd.read_csv(rep / "summary.csv")
    assert {(i, p) for i, p in zip(summary["init"], summary["protocol"], strict=True)} == {
        (i, p) for i in ("random", "imagenet") for p in ("finetune", "twophase")
    }
    comp = pd.read_csv(rep / "comparisons.csv")
    assert set(comp["init"]) == {"imagenet"} and set(comp["protocol"]) == {"finetune", "twophase"}
    assert "imagenet" in (rep / "results.md").read_text()
    curve = pd.read_csv(rep / "label_efficiency.csv")
    assert {"finetune/imagenet", "twophase/imagenet"} <= set(curve["series"])

    # the checkpoint index: phase of every epoch, the run's frozen epochs
    index = pd.read_parquet(root / "models" / "finetune" / "index.parquet")
    tp = index[index["protocol"] == "twophase"].sort_values(["run", "epoch"])
    assert tp.groupby("run")["epoch"].apply(list).map(lambda e: e == [1, 2]).all()
    assert tp["phase"].tolist() == ["transfer", "finetune"] * 2
    assert (tp["frozen_epochs"] == 1).all()
    ft = index[index["protocol"] == "finetune"]
    assert (ft["phase"] == "finetune").all() and (ft["frozen_epochs"] == 0).all()
    # the ImageNet run's transfer checkpoint still holds the local file's weights exactly
    # (its RGB conv1 summed to one grey channel): the backbone was frozen in phase 1
    row = tp[(tp["init"] == "imagenet") & (tp["epoch"] == 1)].iloc[0]
    model, meta = load_classifier(root / row["path"])
    assert meta["init"] == "imagenet" and meta["phase"] == "transfer"
    torch.testing.assert_close(
        model.backbone.net.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True)
    )
    torch.testing.assert_close(model.backbone.net.layer4[1].bn2.running_var,
                               state["layer4.1.bn2.running_var"])  # fmt: skip
    last = tp[(tp["init"] == "imagenet") & (tp["epoch"] == 2)].iloc[0]
    trained, _ = load_classifier(root / last["path"])
    assert not torch.equal(trained.backbone.net.conv1.weight, model.backbone.net.conv1.weight)
