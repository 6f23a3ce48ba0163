"""The fine-tuning stage end to end through its Prefect flow on a tiny study: outputs and
contracts, an added seed that runs only the new cells (the old ones are cache hits), and a
broken backbone whose runs are reported as failed while the others finish."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.finetune.evaluate import forward_batches, softmax_np
from brainxai.finetune.model import build_classifier, load_classifier
from brainxai.ssl import build_backbone
from brainxai.ssl.cache import Cache
from brainxai.ssl.checkpoint import save_backbone
from flows.finetune import finetune_flow
from tests.conftest import make_study
from tests.test_finetune_toydata import write_toy_study

CPU = torch.device("cpu")
#: Two fractions, two checkpoint epochs per protocol (slow: 42 s idle, ~6 min on a loaded box).
FULLER = {
    "inits": ["simclr", "random"],
    "fractions": [0.5, 1.0],
    "seeds": [0],
    "n_boot": 100,
    "fail_on_error": False,
    "probe": {"epochs": 3, "checkpoint_epochs": [1, 3]},
    "tune": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 1, "patience": 0,
             "checkpoint_epochs": [1, 2], "augment": {"blur_prob": 0.0}},
}  # fmt: skip
#: The default suite's version: one fraction, one epoch of one step.
LEAN = {
    **FULLER,
    "fractions": [1.0],
    "probe": {"epochs": 2, "checkpoint_epochs": [1, 2]},
    "tune": {**FULLER["tune"], "epochs": 1, "batch_size": 4, "checkpoint_epochs": [1]},
}


def _set(root, base, **finetune):
    params = yaml.safe_load((root / "params.yaml").read_text())
    smoke = params["profiles"]["smoke"]
    smoke.setdefault("pretrain", {}).setdefault("train", {})["image_size"] = 32
    smoke["finetune"] = {**base, **finetune}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _mtimes(root):
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
            for p in (root / "models" / "finetune").glob("*/*/epoch-*.pt")}  # fmt: skip


@pytest.mark.parametrize(
    "base", [LEAN, pytest.param(FULLER, marks=pytest.mark.slow)], ids=["lean", "fuller"]
)
def test_stage_end_to_end_cached_rerun_added_seed_and_failed_runs(tmp_path, base):
    root = make_study(tmp_path / "study")
    write_toy_study(root, patients_per_group=6, size=48)
    bb = build_backbone("resnet18", 0.449, 0.226)
    save_backbone(bb, root / "models" / "ssl" / "simclr" / "backbone.safetensors")
    _set(root, base)
    n = 2 * 2 * len(base["fractions"])  # inits x protocols x fractions, one seed

    first = finetune_flow(profile="smoke", root=str(root))
    assert first["runs"] == first["ok"] == n and first["failed"] == 0
    rep = root / "reports" / "finetune"
    for name in ("predictions.parquet", "summary.csv", "comparisons.csv", "results.md",
                 "label_efficiency.png", "subsets.csv", "runs.csv"):  # fmt: skip
        assert (rep / name).stat().st_size > 0, name
    preds = pd.read_parquet(rep / "predictions.parquet")
    assert preds.groupby("run").size().eq(17).all() and preds["run"].nunique() == n
    index = pd.read_parquet(root / "models" / "finetune" / "index.parquet")
    assert set(index["loader"]) == {"brainxai.finetune.model:load_classifier"}
    assert index.groupby("run")["selected"].sum().eq(1).all()
    probe = index[index["protocol"] == "probe"]
    listed = base["probe"]["checkpoint_epochs"]
    assert probe.groupby("run")["epoch"].apply(sorted).map(lambda e: e == listed).all()
    sel = index[index["selected"] & (index["init"] == "simclr")].iloc[0]
    model, meta = load_classifier(root / sel["path"])
    assert meta["run"] == sel["run"] and len(meta["class_names"]) == 17
    # the selected checkpoint reproduces the reported test predictions (decoded cache)
    cache = Cache.open(root / "data" / "interim" / "finetune")
    test = cache.index[cache.index["split"] == "test"].sort_values("record_id")
    probs = softmax_np(forward_batches(model, cache.images[test["row"]], 32, 64, CPU))
    mine = preds[preds["run"] == sel["run"]].sort_values("record_id")
    assert mine["record_id"].tolist() == test["record_id"].tolist()
    np.testing.assert_allclose(np.stack(mine["probs"]), probs, atol=1e-5)
    for name in ("confusion.png", "confusion.csv"):
        assert (rep / sel["init"] / "runs" / sel["run"] / name).exists()
    runs = pd.read_csv(rep / "runs.csv")
    # the same subset for every init at a given (fraction, seed)
    assert runs.groupby(["fraction", "seed"])["n_train"].nunique().eq(1).all()
    metrics = json.loads((root / "reports" / "metrics" / "finetune.json").read_text())
    assert metrics["ok"] == n and "probe.simclr.f1.macro_f1" in metrics
    # the positive control is the random-init full-label cell, measured, not trained twice
    ctrl = json.loads((rep / "controls" / "controls.json").read_text())["measured"]
    cell = runs.set_index("run").loc["random__finetune__f1__s0"]
    assert ctrl["positive"]["reused_run"] == cell.name
    assert ctrl["positive"]["test_macro_f1"] == pytest.approx(cell["macro_f1"], abs=1e-12)
    assert not list((root / "models/finetune/controls/positive").glob("epoch-*.pt"))
    assert ctrl["shortcut"]["reused_run"] == ""

    # the DVC path (finetune_cache, finetune@<init>, finetune_eval) reuses the same cached
    # cells and gives the same numbers; each init's outputs stay in its own directories
    t0 = _mtimes(root)
    (rep / "summary.csv").unlink()
    for step, init in [("cache", None), ("init", "simclr"), ("init", "random"), ("eval", None)]:
        finetune_flow(profile="smoke", root=str(root), step=step, init=init)
    assert _mtimes(root) == t0, "the per-init steps must hit the cached cells"
    again = json.loads((root / "reports" / "metrics" / "finetune.json").read_text())
    assert again == metrics and (rep / "summary.csv").is_file()
    for init in ("simclr", "random"):
        per_init = json.loads((root / "reports/metrics" / f"finetune_{init}.json").read_text())
        assert per_init["ok"] == n // 2 and per_init["failed_runs"] == []
        assert set(pd.read_csv(rep / init / "runs.csv")["init"]) == {init}
    curve = pd.read_csv(rep / "label_efficiency.csv")
    series = {f"{p}/{i}" for p in ("probe", "finetune") for i in ("simclr", "random")}
    assert len(curve) == n and set(curve["series"]) == series
    assert (curve["ci_low"] <= curve["ci_high"]).all() and curve["macro_f1"].between(0, 1).all()

    # adding a seed trains only the new cells (the old ones are cache hits)
    t1 = _mtimes(root)
    _set(root, base, seeds=[0, 1])
    added = finetune_flow(profile="smoke", root=str(root))
    t2 = _mtimes(root)
    assert added["ok"] == 2 * n
    assert {k: t2[k] for k in t1} == t1, "old cells must be cache hits"
    assert all("__s1/" in k for k in set(t2) - set(t1)) and len(t2) > len(t1)

    # a corrupt backbone: its runs fail and are reported, the random runs still finish,
    # and the stage exits non-zero afterwards (fail_on_error)
    (root / "models" / "ssl" / "simclr" / "backbone.safetensors").write_bytes(b"broken")
    _set(root, base, seeds=[0, 1], fail_on_error=True)
    with pytest.raises(RuntimeError, match=f"{n} of {2 * n} fine-tuning runs failed"):
        finetune_flow(profile="smoke", root=str(root))
    runs = pd.read_csv(rep / "runs.csv")
    assert (runs["status"] == "ok").sum() == n
    assert set(runs.loc[runs["status"] == "failed", "init"]) == {"simclr"}
    assert runs.loc[runs["status"] == "failed", "error"].str.len().gt(0).all()
    metrics = json.loads((root / "reports" / "metrics" / "finetune.json").read_text())
    assert metrics["failed"] == n and all(r.startswith("simclr__") for r in metrics["failed_runs"])


def test_backbone_files_missing_backbones_and_local_imagenet_weights(tmp_path):
    import torchvision

    from brainxai.finetune.config import BackboneSpec, FinetuneConfig
    from brainxai.finetune.stage import backbone_files

    spec = BackboneSpec(arch="resnet18", image_size=32)
    cfg = FinetuneConfig.from_dict({"inits": ["simclr", "random"]})
    with pytest.raises(FileNotFoundError, match="run the pretrain stage"):
        backbone_files(cfg, spec, tmp_path, tmp_path / "export")
    save_backbone(
        build_backbone("resnet18", 0.449, 0.226),
        tmp_path / "models/ssl/simclr/backbone.safetensors",
    )
    assert backbone_files(cfg, spec, tmp_path, tmp_path / "export") == {
        "simclr": str(tmp_path / "models/ssl/simclr/backbone.safetensors"),
        "random": "",
    }
    cfg = FinetuneConfig.from_dict({"inits": ["random"], "imagenet_path": "weights/rn18.pth"})
    with pytest.raises(FileNotFoundError, match="no download"):
        backbone_files(cfg, spec, tmp_path, tmp_path / "export")
    (tmp_path / "weights").mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "weights/rn18.pth")
    files = backbone_files(cfg, spec, tmp_path, tmp_path / "export")
    assert list(files) == ["random", "imagenet"]
    # the exported backbone is the ImageNet file (RGB conv1 summed to one grey channel)
    model = build_classifier("resnet18", 17, 0.449, 0.226, backbone_path=files["imagenet"])
    state = torch.load(tmp_path / "weights/rn18.pth", weights_only=True)
    torch.testing.assert_close(
        model.backbone.net.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True)
    )
