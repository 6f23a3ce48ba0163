"""Per-checkpoint tracking (brainxai.xai.trajectory): constructed trajectories with each of
paper 004's three dissociations planted, controls without them, sweeps, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score

from brainxai.xai.heatmap_store import HeatmapRecord, heatmap_filename, save_heatmaps
from brainxai.xai.trajectory import (
    GLOBAL,
    CheckpointInput,
    TrackingConfig,
    checkpoint_rows,
    class_aucs,
    correctness_breakdown,
    dissociation_report,
    dissociations,
    gamma_sweep,
    inputs_from_heatmap_files,
    macro_auc,
    sensitivity,
    tau_sweep,
    trajectory_table,
)
from brainxai.xai.trajectory_plots import plot_trajectories

N_PER_CLASS = 12
SIZE = 16
LABELS = np.repeat([0, 1], N_PER_CLASS)
IDS = np.array([f"r{i:02d}" for i in range(2 * N_PER_CLASS)])


def blob(centre: tuple[float, float], sigma: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


def consistent_maps(rng: np.random.Generator, k: int) -> np.ndarray:
    """Class k attends to one place (k=0 upper left, k=1 lower right), ±0.5 px jitter."""
    c = (4.0, 4.0) if k == 0 else (11.0, 11.0)
    return np.stack(
        [
            blob((c[0] + rng.uniform(-0.5, 0.5), c[1] + rng.uniform(-0.5, 0.5)))
            for _ in range(N_PER_CLASS)
        ]
    )


def scattered_maps(rng: np.random.Generator) -> np.ndarray:
    """Small blobs anywhere: almost no pairwise overlap."""
    return np.stack([blob(tuple(rng.uniform(0, SIZE, 2)), sigma=0.7) for _ in range(N_PER_CLASS)])


def good_probs(rng: np.random.Generator) -> np.ndarray:
    p1 = np.where(
        LABELS == 1, rng.uniform(0.8, 0.97, len(LABELS)), rng.uniform(0.03, 0.2, len(LABELS))
    )
    return np.stack([1 - p1, p1], axis=1)


def checkpoint(
    model: str, epoch: int, maps_bad: tuple[int, ...] = (), probs: str = "good", seed: int = 0
):
    rng = np.random.default_rng(1000 * epoch + seed)
    maps = np.concatenate(
        [scattered_maps(rng) if k in maps_bad else consistent_maps(rng, k) for k in (0, 1)]
    )
    if probs == "good":
        p = good_probs(rng)
    elif probs == "class0_below_threshold":  # ranking intact, but no class-0 argmax
        p1 = np.where(LABELS == 1, 0.9, 0.55)
        p = np.stack([1 - p1, p1], axis=1)
    else:  # "random": the classifier has collapsed
        p1 = rng.uniform(0, 1, len(LABELS))
        p = np.stack([1 - p1, p1], axis=1)
    return CheckpointInput(
        model,
        "gradcam",
        f"{model}/e{epoch}",
        epoch,
        maps.astype(np.float32),
        LABELS,
        p,
        record_ids=IDS,
    )


def planted() -> list[CheckpointInput]:
    """Model A: e2 gold-list collapse of class 0; e4 class-1 maps scatter (C drop, masked
    in the global score) one checkpoint before e5's AUC collapse. B: control, all good.
    C: maps and AUC collapse together at e4 (no early warning)."""
    a = [
        checkpoint("A", 1),
        checkpoint("A", 2, probs="class0_below_threshold"),
        checkpoint("A", 3),
        checkpoint("A", 4, maps_bad=(1,)),
        checkpoint("A", 5, probs="random"),
        checkpoint("A", 6),
    ]
    b = [checkpoint("B", e, seed=7) for e in range(1, 7)]
    c = [checkpoint("C", e, seed=9) for e in (1, 2, 3)]
    c += [checkpoint("C", 4, maps_bad=(0, 1), probs="random", seed=9)]
    c += [checkpoint("C", e, seed=9) for e in (5, 6)]
    return a + b + c


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return trajectory_table(planted(), TrackingConfig())


def row(t: pd.DataFrame, model: str, epoch: int, klass: int) -> pd.Series:
    hit = t[(t.model == model) & (t.epoch == epoch) & (t.klass == klass)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_table_shape_and_planted_values(table):
    assert len(table) == 3 * 6 * 3  # models × checkpoints × (2 classes + global)
    assert list(table.columns[:5]) == ["model", "method", "checkpoint", "epoch", "klass"]
    good = row(table, "B", 3, 0)
    assert good.cscore > 0.6 and good.gold_size == N_PER_CLASS and good.auc == 1.0
    collapsed = row(table, "A", 2, 0)
    assert collapsed.gold_size == 0 and collapsed["empty"] and collapsed.cscore == 0.0
    assert collapsed.auc == 1.0 and collapsed.accuracy == 0.0
    assert row(table, "A", 4, 1).cscore < 0.1
    g = row(table, "A", 4, GLOBAL)
    c0, c1 = row(table, "A", 4, 0).cscore, row(table, "A", 4, 1).cscore
    assert g.cscore == pytest.approx((c0 + c1) / 2)  # equal gold sizes
    assert row(table, "A", 5, GLOBAL).auc < 0.75


def test_the_three_dissociations_are_found_where_planted_and_nowhere_else(table):
    found = dissociations(table, TrackingConfig())
    gold = found["gold_list_collapse"]
    assert gold[["model", "epoch", "klass"]].values.tolist() == [["A", 2, 0]]
    early = found["early_warning"].sort_values("klass")
    assert early[
        ["model", "klass", "c_drop_epoch", "auc_drop_epoch", "lead_checkpoints"]
    ].values.tolist() == [
        ["A", GLOBAL, 4, 5, 1],
        ["A", 1, 4, 5, 1],
    ]
    assert (early["auc_at_warning"] == 1.0).all()
    masked = found["masked_class_collapse"]
    assert masked[["model", "epoch", "klass"]].values.tolist() == [["A", 4, 1]]
    report = dissociation_report(found)
    assert "## 1. Gold-list collapse: 1" in report and "lead 1 checkpoint" in report
    assert "## 3. Class collapse masked in the global score: 1" in report


def test_simultaneous_drop_is_not_an_early_warning(table):
    c = table[table.model == "C"]
    assert row(table, "C", 4, GLOBAL).cscore < 0.1 and row(table, "C", 4, GLOBAL).auc < 0.8
    found = dissociations(c)
    assert all(len(df) == 0 for df in found.values())


def test_thresholds_come_from_the_config(table):
    strict = TrackingConfig(auc_high=1.01, c_drop=0.95, class_collapse=0.0)
    found = dissociations(table, strict)
    assert all(len(df) == 0 for df in found.values())
    # a lead longer than max_lead is not reported
    shifted = table.copy()
    a = shifted.model == "A"
    shifted.loc[a & (shifted.epoch == 5), "auc"] = 1.0
    shifted.loc[a & (shifted.epoch == 6), "auc"] = 0.5
    shifted.loc[a & (shifted.epoch == 5) & (shifted.klass != 0), "cscore"] = 0.05
    assert len(dissociations(shifted, TrackingConfig(max_lead=1))["early_warning"]) == 0
    lead2 = dissociations(shifted, TrackingConfig(max_lead=2))["early_warning"]
    assert sorted(lead2.lead_checkpoints) == [2, 2]


def test_anchoring_the_gold_list_to_the_last_epoch_removes_the_collapse():
    t = trajectory_table(planted()[:6], TrackingConfig(anchor="reference"))
    e2 = row(t, "A", 2, 0)
    assert e2.gold_size == N_PER_CLASS and e2.cscore > 0.6
    assert len(dissociations(t)["gold_list_collapse"]) == 0
    with pytest.raises(ValueError, match="not found"):
        trajectory_table(
            planted()[:6], TrackingConfig(anchor="reference", reference_checkpoint="x")
        )


def test_aucs_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    aucs = class_aucs(y, p)
    assert macro_auc(aucs) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    p2 = good_probs(rng)
    assert macro_auc(class_aucs(LABELS, p2)) == pytest.approx(roc_auc_score(LABELS, p2[:, 1]))
    assert np.isnan(class_aucs(np.zeros(4, int), np.full((4, 2), 0.5))[0])


def test_correctness_columns_against_masks():
    rng = np.random.default_rng(0)
    masks = np.zeros((2 * N_PER_CLASS, SIZE, SIZE), bool)
    masks[N_PER_CLASS:, 9:14, 9:14] = True  # class 1 has lesions around (11, 11)
    maps = np.concatenate([consistent_maps(rng, 0), consistent_maps(rng, 1)])
    rows = checkpoint_rows(maps, LABELS, good_probs(rng), masks)
    c0, c1, glob = rows
    assert np.isnan(c0["pointing"]) and c0["n_masks"] == 0
    assert c1["pointing"] == 1.0 and c1["n_masks"] == N_PER_CLASS
    assert glob["pointing"] == 1.0 and 0.5 < c1["mass_accuracy"] <= 1.0
    assert c1["rank_accuracy"] > 0.8 and c1["auprc"] > 0.8
    wrong = np.concatenate([consistent_maps(rng, 0), consistent_maps(rng, 0)])  # looks elsewhere
    assert checkpoint_rows(wrong, LABELS, good_probs(rng), masks)[1]["pointing"] == 0.0


def test_correctness_breakdown_by_outcome_and_volume():
    masks = np.zeros((6, 8, 8), bool)
    for i, r in enumerate([1, 1, 2, 2, 3, 3]):
        masks[i, :r, :r] = True
    maps = masks.astype(np.float32)
    y = np.ones(6, int)
    p = np.tile([0.1, 0.9], (6, 1))
    p[5] = [0.9, 0.1]  # one wrong prediction, in the largest-lesion bin
    out = correctness_breakdown(maps, masks, y, p, volume_bins=3)
    assert out.n.sum() == 6
    assert out.set_index(["outcome", "volume_bin"]).loc[("incorrect", 2), "n"] == 1
    assert (out.loc[out.n > 0, "pointing"] == 1.0).all()


def test_tau_sweep_gold_sizes_by_construction():
    rng = np.random.default_rng(0)
    maps = np.concatenate([consistent_maps(rng, 0), consistent_maps(rng, 1)])
    p1 = np.where(LABELS == 1, np.tile([0.6, 0.95], N_PER_CLASS)[: len(LABELS)], 0.1)
    p = np.stack([1 - p1, p1], axis=1)  # class 0: all 0.9; class 1: half 0.6, half 0.95
    sw = tau_sweep(maps, LABELS, p, [0.5, 0.7, 0.92, 0.99])
    sizes = sw[sw.klass == 1].set_index("tau").gold_size.to_dict()
    assert sizes == {0.5: N_PER_CLASS, 0.7: N_PER_CLASS // 2, 0.92: N_PER_CLASS // 2, 0.99: 0}
    sizes0 = sw[sw.klass == 0].set_index("tau").gold_size.to_dict()
    assert sizes0 == {0.5: N_PER_CLASS, 0.7: N_PER_CLASS, 0.92: 0, 0.99: 0}
    assert sw[(sw.tau == 0.99) & (sw.klass == GLOBAL)]["empty"].item()


def test_gamma_sweep_matches_hand_values():
    a = np.array([[1.0, 0.5], [0.0, 0.0]])
    b = np.array([[0.5, 1.0], [0.0, 0.0]])
    maps = np.stack([a, b])
    y = np.array([0, 0])
    p = np.array([[0.9, 0.1], [0.9, 0.1]])
    sw = gamma_sweep(maps, y, p, [1.0, 2.0])
    c = sw[sw.klass == 0].set_index("gamma").cscore
    assert c[1.0] == pytest.approx((0.5 + 0.5) / (1 + 1))  # Σmin / Σmax
    assert c[2.0] == pytest.approx((0.25 + 0.25) / (1 + 1))
    both = sensitivity(maps, y, p, TrackingConfig(taus=(0.5,), gammas=(1.0, 2.0)))
    assert set(both.sweep) == {"tau", "gamma"} and len(both) == 3 * 3


def test_trajectory_from_heatmap_files(tmp_path):
    paths = []
    for item in planted()[:3]:
        rec = HeatmapRecord(
            item.checkpoint,
            item.method,
            item.maps,
            IDS,
            LABELS,
            item.probs,
            LABELS,
            epoch=item.epoch,
            extra={"model": "A"},
        )
        paths.append(save_heatmaps(tmp_path / heatmap_filename(item.checkpoint, item.method), rec))
    from_files = trajectory_table(inputs_from_heatmap_files(paths))
    direct = trajectory_table(planted()[:3])
    assert from_files[["model", "epoch", "klass", "gold_size"]].equals(
        direct[["model", "epoch", "klass", "gold_size"]]
    )
    assert np.allclose(from_files.cscore, direct.cscore, atol=2e-3)  # float16 maps


def test_plots_are_written(table, tmp_path):
    paths = plot_trajectories(table[table.model.isin(["A", "B"])], tmp_path)
    assert [p.name for p in paths] == ["A__gradcam.png", "B__gradcam.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(p)
        assert img.shape[0] > 300 and img.shape[1] > 500


def test_config_rejects_unknown_keys():
    assert TrackingConfig.from_dict({"taus": [0.5]}).taus == (0.5,)
    with pytest.raises(ValueError, match="unknown TrackingConfig"):
        TrackingConfig.from_dict({"thau": 0.5})
    with pytest.raises(ValueError):
        TrackingConfig(anchor="epoch")
