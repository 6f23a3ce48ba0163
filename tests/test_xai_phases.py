"""The xai stage on paper 004's two-phase protocol and the faithfulness metric (issue 17.1
and 17.6): the index's phases reach the trajectory table, the phase boundary reaches the
plot, and every explained checkpoint gets deletion/insertion scores equal to the ones
computed here from the stored maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.finetune.model import build_classifier, load_classifier, save_classifier
from brainxai.report.tables import consistent_correct_faithful, num
from brainxai.xai.evalset import images_2d
from brainxai.xai.faithfulness import FaithfulnessConfig, faithfulness_scores
from brainxai.xai.heatmap_store import load_heatmaps
from brainxai.xai.trajectory import GLOBAL
from brainxai.xai.trajectory_plots import BOUNDARY_LABEL, phase_boundary, trajectory_figure
from tests.test_xai_stage import (
    LOADER_2D,
    SIZE,
    meta,
    run_stage,
    write_cache,
    write_params,
    xai_section,
)

FAITH = {"steps": 4, "max_images": 6, "batch_size": 16, "random_control": True, "seed": 5}


def write_runs(root):
    """A two-phase run (epochs 1-2 frozen backbone, 3 trained) and a fine-tuning run."""
    d = root / "models/finetune"
    model = build_classifier("resnet18", 3, 0.45, 0.23, backbone_seed=7)
    rows = []
    for run, protocol, frozen, epochs in (("tp", "twophase", 2, (1, 2, 3)), ("ft", "finetune", 0,
                                                                             (1,))):  # fmt: skip
        for epoch in epochs:
            with torch.no_grad():
                model.head.weight.add_(0.05 * torch.randn_like(model.head.weight))
                if epoch > frozen:
                    model.backbone.net.conv1.weight.mul_(1.05)
            phase = "transfer" if epoch <= frozen else "finetune"
            m = meta(epoch=epoch, run=run, protocol=protocol)
            p = save_classifier(d / f"{run}/epoch-{epoch:04d}.pt", model, m)
            rows.append({"run": run, "init": "random", "protocol": protocol, "fraction": 1.0,
                         "seed": 0, "epoch": epoch, "path": str(p.relative_to(root)),
                         "loader": LOADER_2D, "kind": "2d", "selected": epoch == epochs[-1],
                         "val_macro_f1": 0.5, "phase": phase, "frozen_epochs": frozen})  # fmt: skip
    index = pd.DataFrame(rows)
    index.to_parquet(d / "index.parquet", index=False)
    return index


def test_two_phase_trajectory_and_faithfulness_through_the_stage(tmp_path):
    root = tmp_path / "study"
    root.mkdir()
    write_cache(root)
    index = write_runs(root)
    fams = {"finetune": {"index": "models/finetune/index.parquet", "kind": "2d",
                         "data": "data/interim/finetune"}}  # fmt: skip
    base = {"families": fams, "methods": ["gradcam", "lrp"], "max_images": 0,
            "faithfulness": FAITH, "randomisation": {"enabled": False}}  # fmt: skip
    write_params(root, xai_section(**base))
    out = run_stage(root)
    assert out["families"]["finetune"]["explained_checkpoints"] == 4
    assert out["quarantined_checkpoints"] == 0

    # phases of the index on every row of the trajectory table
    table = pd.read_parquet(root / "reports/xai/trajectory.parquet")
    got = table.drop_duplicates(["model", "epoch"]).set_index(["model", "epoch"])
    want = index.set_index(["run", "epoch"])
    for key in want.index:
        assert got.loc[key, "phase"] == want.loc[key, "phase"], key
        assert got.loc[key, "frozen_epochs"] == want.loc[key, "frozen_epochs"], key
    # the boundary sits between the last frozen epoch (2) and the first trained one (3)
    assert phase_boundary(table[table["model"] == "tp"]) == 2.5
    assert phase_boundary(table[table["model"] == "ft"]) is None
    fig = trajectory_figure(table, "tp", "gradcam")
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label() == BOUNDARY_LABEL]
        assert len(lines) == 1 and list(lines[0].get_xdata()) == [2.5, 2.5]
    fig = trajectory_figure(table, "ft", "gradcam")
    assert not any(ln.get_label() == BOUNDARY_LABEL for ax in fig.axes for ln in ax.get_lines())

    # faithfulness: one row per explained (checkpoint, method), on the trajectory's global
    # rows too, equal to the scores computed here from the stored maps
    faith = pd.read_csv(root / "reports/xai/faithfulness.csv")
    assert len(faith) == 4 * 2 and (faith["n"] == FAITH["max_images"]).all()
    cols = ["deletion_auc", "insertion_auc", "deletion_auc_random", "insertion_auc_random"]
    assert faith[cols].stack().between(0, 1).all()
    glob = table[table["klass"] == GLOBAL].set_index(["model", "epoch", "method"])
    for r in faith.itertuples():
        assert np.isclose(glob.loc[(r.run, r.epoch, r.method), "deletion_auc"], r.deletion_auc)
    assert table.loc[table["klass"] != GLOBAL, "deletion_auc"].isna().all()
    r = faith[(faith["run"] == "tp") & (faith["epoch"] == 3) & (faith["method"] == "lrp")].iloc[0]
    rec = load_heatmaps(root / "data/interim/xai/heatmaps/tp/tp_epoch-0003__lrp.npz")
    rows = pd.read_parquet(root / "data/interim/xai/evalsets/finetune.parquet")
    rows = rows.set_index("record_id").loc[rec.record_ids[: FAITH["max_images"]]].reset_index()
    x = images_2d(root / "data/interim/finetune", rows, SIZE)
    model, _ = load_classifier(root / "models/finetune/tp/epoch-0003.pt")
    mine = faithfulness_scores(
        model, x, rec.targets, rec.maps.astype(np.float32), FaithfulnessConfig(**FAITH)
    )
    for c in cols:
        assert np.isclose(mine[c], getattr(r, c)), c
    summary = json.loads((root / "reports/metrics/xai.json").read_text())["faithfulness"]
    assert set(summary["finetune"]) == {"gradcam", "lrp"}
    assert summary["finetune"]["lrp"]["runs"] == 2  # final checkpoints of tp and ft

    # the report's "consistent, correct, faithful" table: means over the final checkpoints
    three = consistent_correct_faithful(table).set_index(["family", "method"])
    final = faith[faith["epoch"] == faith.groupby("run")["epoch"].transform("max")]
    for method, g in final.groupby("method"):
        row = three.loc[("finetune", method)]
        assert row["faithful: deletion AUC (↓)"] == num(g["deletion_auc"].mean())
        assert row["insertion AUC, random control"] == num(g["insertion_auc_random"].mean())
        cs = glob.loc[[(r, e, method) for r, e in zip(g["run"], g["epoch"], strict=True)]]
        assert row["consistent: C-Score"] == num(cs["cscore"].mean())

    # faithfulness.checkpoints: last scores each model's final checkpoint only, the same
    # numbers as before for those rows
    write_params(root, xai_section(**{**base, "faithfulness": {**FAITH, "checkpoints": "last"}}))
    run_stage(root)
    last = pd.read_csv(root / "reports/xai/faithfulness.csv")
    assert len(last) == 2 * 2
    pairs = {(r, e) for r, e in zip(final["run"], final["epoch"], strict=True)}
    assert set(zip(last["run"], last["epoch"], strict=True)) == pairs == {("ft", 1), ("tp", 3)}
    merged = last.merge(final, on=["run", "epoch", "method"], suffixes=("", "_all"))
    assert np.allclose(merged["deletion_auc"], merged["deletion_auc_all"])
    with pytest.raises(ValueError, match="checkpoints"):
        FaithfulnessConfig(checkpoints="first")
