"""Model registry (MLflow side): versions, aliases, champion, idempotency, loading back."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.tracking import MlflowClient
from torch import nn

import tasks  # noqa: F401  (embedded defaults first)
from brainxai.finetune.config import BackboneSpec
from brainxai.finetune.model import build_classifier, load_classifier, save_classifier
from brainxai.finetune.runs import LOADER, RunSpec, checkpoint_meta
from brainxai.registry.candidates import selected_checkpoints
from brainxai.registry.config import FamilyConfig
from flows.register import _checkpoint_loader
from tasks.mlflow_log import ensure_experiment
from tasks.registry import SHA_TAG, Loaded, logged_fold_model, register_family

EXAMPLE = np.zeros((1, 1, 2, 2), dtype=np.float32)


def _tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


def _family(tmp_path: Path, vals: dict[str, float]):
    """A hand-made candidate table (one row per init), its files and modules."""
    rows, modules = [], {}
    for i, (init, val) in enumerate(vals.items()):
        f = tmp_path / f"{init}.bin"
        f.write_bytes(f"weights of {init}".encode())
        modules[init] = _tiny(i)
        rows.append({"run": f"{init}__probe", "init": init, "protocol": "probe",
                     "val_macro_f1": val, "file": str(f)})  # fmt: skip
    fam = FamilyConfig(
        name=f"test-clf-{uuid.uuid4().hex[:8]}", metric="val_macro_f1",
        group_by=("init", "protocol"), exclude={"init": ("oracle",)},
    )  # fmt: skip

    def load(row: pd.Series) -> Loaded:
        if row["init"] == "broken":
            raise ValueError("checkpoint unreadable")
        return Loaded(modules[row["init"]], EXAMPLE)

    return fam, pd.DataFrame(rows), modules, load


def _register(fam, table, load) -> dict:
    with mlflow.start_run(experiment_id=ensure_experiment(), run_name="register"):
        return register_family(
            fam, "classifier-2d", table, "run", lambda r: Path(r["file"]), load, None,
            "champion", {"brainxai.profile": "smoke"},
        )  # fmt: skip


def test_versions_aliases_champion_and_loading_back(tmp_path):
    fam, table, modules, load = _family(
        tmp_path, {"simclr": 0.4, "byol": 0.6, "oracle": 0.9, "broken": 0.99}
    )
    s = _register(fam, table, load)
    client = MlflowClient()
    # the broken checkpoint is reported, the others registered; oracle is never champion
    assert set(s["failed"]) == {"broken__probe"} and "unreadable" in s["failed"]["broken__probe"]
    assert set(s["versions"]) == {"simclr-probe", "byol-probe", "oracle-probe"}
    assert s["logged"] == 3 and s["champion"]["key"] == "byol__probe"
    champ = client.get_model_version_by_alias(fam.name, "champion")
    assert int(champ.version) == s["versions"]["byol-probe"]
    assert champ.tags["brainxai.profile"] == "smoke" and champ.tags["brainxai.init"] == "byol"
    assert champ.tags[SHA_TAG] and "0.6" in champ.tags["brainxai.champion_reason"]
    x = torch.rand(5, 1, 2, 2)
    with torch.no_grad():
        ref = modules["byol"](x).numpy()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{fam.name}@champion")
    assert pyfunc.metadata.get_input_schema().inputs[0].shape == (-1, 1, 2, 2)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(x.numpy())), ref)
    simclr = mlflow.pytorch.load_model(f"models:/{fam.name}@simclr-probe")
    np.testing.assert_array_equal(simclr(x).detach().numpy(), modules["simclr"](x).detach())

    # same files again: no new version; a better validation score moves only the alias
    again = _register(fam, table.assign(val_macro_f1=[0.7, 0.6, 0.9, 0.99]), load)
    assert again["logged"] == 0 and again["already_registered"] == 3
    assert again["versions"] == s["versions"] and again["champion"]["key"] == "simclr__probe"
    champ = client.get_model_version_by_alias(fam.name, "champion")
    assert int(champ.version) == s["versions"]["simclr-probe"]
    assert len(client.search_model_versions(f"name = '{fam.name}'")) == 3
    # no eligible validation score: the champion alias is removed, not left stale
    nan = _register(fam, table.assign(val_macro_f1=[np.nan, np.nan, 0.9, np.nan]), load)
    assert nan["champion"]["alias_removed"] is True
    assert "champion" not in client.get_registered_model(fam.name).aliases


def test_a_real_2d_checkpoint_loads_back_with_the_same_outputs(tmp_path):
    spec = BackboneSpec(arch="resnet18", image_size=32, input_mean=0.45, input_std=0.23)
    model = build_classifier(spec.arch, 3, spec.input_mean, spec.input_std, backbone_seed=7)
    meta = checkpoint_meta(RunSpec("random", "finetune", 1.0, 0), spec, ["a", "b", "c"], 2, "")
    path = save_classifier(tmp_path / "models/finetune/r/epoch-0002.pt", model, meta)
    index = pd.DataFrame([{"run": "random__finetune__f1__s0", "init": "random",
                           "protocol": "finetune", "epoch": 2, "selected": True,
                           "val_macro_f1": 0.5, "kind": "2d", "loader": LOADER,
                           "path": str(path.relative_to(tmp_path))}])  # fmt: skip
    fam = FamilyConfig(f"test-real-{uuid.uuid4().hex[:8]}", "val_macro_f1", ("init", "protocol"))
    with mlflow.start_run(experiment_id=ensure_experiment(), run_name="register"):
        s = register_family(
            fam, "classifier-2d", selected_checkpoints(index), "run",
            lambda r: tmp_path / r["path"], _checkpoint_loader(tmp_path),
        )  # fmt: skip
    assert s["champion"]["version"] == s["versions"]["random-finetune"]
    x = torch.rand(3, 1, 32, 32)
    ckpt, _ = load_classifier(path)
    with torch.no_grad():
        ref = ckpt(x).numpy()
    got = mlflow.pyfunc.load_model(f"models:/{fam.name}@champion").predict(x.numpy())
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-6)


def test_a_fold_model_logged_after_its_checkpoint_is_reused(tmp_path):
    ckpt = tmp_path / "fold0.pt"
    ckpt.write_bytes(b"weights")
    exp = ensure_experiment()
    variant = f"v{uuid.uuid4().hex[:6]}"
    tags = {"brainxai.stage": "classify3d", "brainxai.variant": variant,
            "brainxai.backbone": "densenet"}  # fmt: skip
    with mlflow.start_run(experiment_id=exp, run_name="classify3d-x", tags=tags):
        info = mlflow.pytorch.log_model(
            _tiny(0), name="fold0", serialization_format="pickle", pip_requirements=["torch"]
        )
    row = pd.Series({"init": variant, "backbone": "densenet", "fold": 0})
    assert logged_fold_model(exp, row, ckpt) == info.model_uri
    later = ckpt.stat().st_mtime + 3600  # the checkpoint was rewritten after the log
    os.utime(ckpt, (later, later))
    assert logged_fold_model(exp, row, ckpt) is None
    assert logged_fold_model(exp, pd.Series({**row, "fold": 1}), ckpt) is None
