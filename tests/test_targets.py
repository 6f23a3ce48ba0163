"""brainxai.targets: each target's status from outputs whose numbers are known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from brainxai.targets import (
    COMPARED,
    FAIL,
    INFO,
    NOT_RUN,
    PASS,
    UNINFORMATIVE,
    Sources,
    TargetsConfig,
    control_targets,
    evaluate,
    render,
    ssl_knn,
    ssl_targets,
    xai_targets,
)

CFG = TargetsConfig()


def _manifest(n_patients: int, per_patient: int) -> pd.DataFrame:
    rows = [{"subject": f"p{p}", "ndim": 2, "split": "test"} for p in range(n_patients)
            for _ in range(per_patient)]  # fmt: skip
    rows += [{"subject": "v1", "ndim": 3, "split": "test"}] * 50  # 3D rows never count
    return pd.DataFrame(rows)


def _trajectory(gold: dict[str, list[int]]) -> pd.DataFrame:
    """Per model: last epoch 8 with the given gold sizes per class (and an early epoch 1
    with none, which must not count), two methods each."""
    rows = []
    for model, sizes in gold.items():
        for epoch, sz in ((1, [0] * len(sizes)), (8, sizes)):
            for method in ("gradcam", "eigencam"):
                rows += [{"family": "finetune", "model": model, "protocol": "finetune",
                          "fraction": 1.0, "epoch": epoch, "method": method, "klass": k,
                          "gold_size": s} for k, s in enumerate(sz)]  # fmt: skip
                rows.append({"family": "finetune", "model": model, "protocol": "finetune",
                             "fraction": 1.0, "epoch": epoch, "method": method, "klass": -1,
                             "gold_size": sum(sz)})  # fmt: skip
    # a scarce-label run with no gold at all: not a full-label run, ignored
    rows += [
        {
            "family": "finetune",
            "model": "scarce",
            "protocol": "finetune",
            "fraction": 0.1,
            "epoch": 8,
            "method": "gradcam",
            "klass": k,
            "gold_size": 0,
        }
        for k in range(17)
    ]
    return pd.DataFrame(rows)


def _study(tmp: Path) -> Sources:
    metrics, ft, xai = tmp / "metrics", tmp / "finetune", tmp / "xai"
    for d in (metrics, ft / "controls", xai):
        d.mkdir(parents=True, exist_ok=True)
    _manifest(31, 9).to_parquet(tmp / "manifest.parquet")  # 31 patients, 279 images
    pd.DataFrame([
        {"init": "random", "protocol": "finetune", "fraction": 1.0, "metric": "macro_f1",
         "mean": 0.48, "ci_low": 0.43, "ci_high": 0.53},
        {"init": "random", "protocol": "finetune", "fraction": 0.1, "metric": "macro_f1",
         "mean": 0.9, "ci_low": 0.8, "ci_high": 0.95},  # not the largest fraction
    ]).to_csv(ft / "summary.csv", index=False)  # fmt: skip
    pd.DataFrame({"protocol": ["finetune"] * 3, "metric": "macro_f1", "mde": [0.1, 0.2, 0.3],
                  "power": 0.8, "holm_family_size": 3}).to_csv(ft / "comparisons.csv",
                                                               index=False)  # fmt: skip
    for fw, knn, ref, steps in (
        ("simclr", 0.55, 0.40, 312),
        ("byol", 0.45, 0.40, 312),
        ("dino", 0.9, 0.4, 24),
        ("supervised", 0.9, 0.4, 312),
    ):
        (metrics / f"pretrain_{fw}.json").write_text(
            json.dumps({"final": {"knn_accuracy": knn}, "knn_random_init": ref, "steps": steps})
        )
    (metrics / "classify3d.json").write_text(json.dumps({"runs": {
        "oracle/densenet": {"mean": {"macro_f1": 0.74}, "sd": {"macro_f1": 0.05}},
        "base/densenet": {"mean": {"macro_f1": 0.4}, "sd": {"macro_f1": 0.1},
                          "pooled_macro_f1_ci": {"point": 0.41, "low": 0.27, "high": 0.55},
                          "chance_macro_f1": 0.25, "above_chance": True},
    }}))  # fmt: skip
    (metrics / "xai.json").write_text(json.dumps({"families": {
        "finetune": {"status": "ok", "cam_grid": [8, 8]},
        "classify3d": {"status": "ok", "cam_grid": [2, 2, 2]},
    }}))  # fmt: skip
    _trajectory({"a": [2] * 13 + [1] * 4, "b": [3] * 12 + [0] * 5}).to_parquet(
        xai / "trajectory.parquet"
    )
    pd.DataFrame([
        {"control": "shortcut", "check": "relevance mass outside the head", "measured": 0.7,
         "target": ">= 0.5", "status": "pass", "note": ""},
        {"control": "shortcut", "check": "C-Score (reported, no target)", "measured": None,
         "target": "-", "status": "uninformative", "note": "fewer than 2 gold images"},
    ]).to_csv(ft / "controls" / "controls.csv", index=False)  # fmt: skip
    return Sources(tmp / "manifest.parquet", ft, metrics, xai,
                   ["simclr", "byol", "dino", "mocov3", "supervised"])  # fmt: skip


def test_every_target_from_known_outputs(tmp_path):
    got = {t.check: t for t in evaluate(_study(tmp_path), CFG)}
    assert (got["2D test patients"].measured, got["2D test patients"].status) == (31, PASS)
    assert (got["2D test images"].measured, got["2D test images"].status) == (279, PASS)
    mde = next(t for c, t in got.items() if c.startswith("MDE"))
    assert mde.status == INFO and mde.measured == pytest.approx(0.2)
    ft = got["random init, full fine-tuning, all labels: test macro-F1"]
    assert (ft.measured, ft.status) == (0.48, FAIL)  # the largest fraction's, not 0.1's
    simclr = got["simclr: val kNN top-1 - random-init kNN"]
    assert simclr.measured == pytest.approx(0.15) and simclr.status == PASS
    byol = got["byol: val kNN top-1 - random-init kNN"]
    assert byol.measured == pytest.approx(0.05) and byol.status == FAIL
    assert "did not beat random features" in byol.note
    assert got["dino: val kNN top-1 - random-init kNN"].status == UNINFORMATIVE  # 24 steps
    assert got["mocov3: val kNN top-1 - random-init kNN"].status == NOT_RUN
    assert not any(c.startswith("supervised") for c in got)  # trained with labels
    oracle = got["oracle row: CV macro-F1 (fold mean)"]
    assert (oracle.measured, oracle.status) == (0.74, PASS)
    base = got["base row: pooled out-of-fold macro-F1 CI above chance"]
    assert (base.measured, base.status) == (0.41, PASS)
    assert got["finetune: CAM grid (coarsest explained checkpoint)"].status == PASS
    grid3 = got["classify3d: CAM grid (coarsest explained checkpoint)"]
    assert (grid3.measured, grid3.status) == (2.0, FAIL)  # 2³ < 4³
    gold = next(t for c, t in got.items() if c.startswith("classes with a gold list"))
    # run a: 13 classes with >= 2; run b: 12 -> the worst run has 12 (target >= 12)
    assert (gold.measured, gold.status) == (12.0, PASS) and gold.note.startswith("b:")
    assert got["shortcut: relevance mass outside the head"].status == PASS
    assert got["shortcut: C-Score (reported, no target)"].status == UNINFORMATIVE
    text = render(list(got.values()))
    assert "FAIL" in text and "UNINFORMATIVE" in text and text.splitlines()[0].startswith("item")


def test_method_comparison_rows_are_listed_and_counted_apart():
    """The controls' criteria applied to further methods (note "method comparison") get
    their own item and their own count, so the issue's targets stay countable."""
    rows = pd.DataFrame([
        {"control": "positive", "check": "pointing game, tumour classes", "measured": 0.03,
         "target": ">= 0.5", "status": FAIL, "note": "60 test images with a lesion mask",
         "comparison": False},
        {"control": "positive", "check": "ig: pointing game, tumour classes", "measured": 0.23,
         "target": ">= 0.500", "status": FAIL, "note": "method comparison", "comparison": True},
        {"control": "shortcut", "check": "lrp: relevance mass outside the head",
         "measured": 0.6, "target": ">= 0.5", "status": PASS,
         "note": "method comparison; tag mass 0.020", "comparison": True},
    ])  # fmt: skip
    got = control_targets(rows)
    assert [t.item for t in got] == ["4 planted controls", COMPARED, COMPARED]
    # a controls.csv written before the column existed: every row is a control's own
    old = control_targets(rows.drop(columns="comparison"))
    assert {t.item for t in old} == {"4 planted controls"}
    last = render(got).splitlines()[-1]
    assert last == (
        "1 pass, 2 fail (of these, 2 rows apply the controls' criteria to further "
        "methods: 1 pass, 1 fail)"
    )


def test_gold_target_fails_below_the_threshold_and_missing_outputs_are_not_run(tmp_path):
    traj = _trajectory({"a": [2] * 11 + [1] * 6})
    (gold,) = [t for t in xai_targets({"families": {}}, traj, CFG) if "gold" in t.check]
    assert (gold.measured, gold.status) == (11.0, FAIL)
    empty = Sources(tmp_path / "none.parquet", tmp_path, tmp_path, tmp_path, ["simclr"])
    statuses = {t.status for t in evaluate(empty, CFG)}
    assert statuses == {NOT_RUN}


def test_randomisation_check_beside_the_controls():
    """Per (family, method): pass when no run's maps survive randomising the weights; the
    measured value is the largest median similarity (Spearman, or soft IoU when the stage
    used it) against the stage's threshold."""
    from brainxai.targets import randomisation_targets

    rnd = pd.DataFrame([
        {"family": "finetune", "run": "a", "method": "gradcam", "median_spearman": 0.2,
         "median_soft_iou": 0.9, "flag": False, "similarity": "spearman", "threshold": 0.5},
        {"family": "finetune", "run": "b", "method": "gradcam", "median_spearman": 0.7,
         "median_soft_iou": 0.9, "flag": True, "similarity": "spearman", "threshold": 0.5},
        {"family": "classify3d", "run": "c", "method": "gradcam", "median_spearman": 0.9,
         "median_soft_iou": 0.3, "flag": False, "similarity": "soft_iou", "threshold": 0.5},
    ])  # fmt: skip
    got = {t.check: t for t in randomisation_targets(rnd)}
    fine = got["model-parameter randomisation: finetune / gradcam"]
    assert (fine.measured, fine.target, fine.status) == (0.7, "<= 0.5 (spearman)", FAIL)
    assert fine.note.startswith("1 of 2 runs flagged")
    three = got["model-parameter randomisation: classify3d / gradcam"]
    assert (three.measured, three.target, three.status) == (0.3, "<= 0.5 (soft_iou)", PASS)
    (missing,) = randomisation_targets(None)
    assert missing.status == NOT_RUN


def test_ssl_target_judges_the_precise_bn_knn_like_its_reference():
    """The random-init reference has its BN re-estimated on clean images; the trained
    backbone is judged the same way when measured (running statistics in the note)."""
    doc = {"final": {"knn_accuracy": 0.45}, "knn_random_init": 0.40, "knn_precise_bn": 0.52,
           "steps": 312}  # fmt: skip
    assert ssl_knn(doc) == (0.52, 0.40, 0.45)
    (t,) = ssl_targets({"byol": doc}, CFG)
    assert t.measured == pytest.approx(0.12) and t.status == PASS
    assert "running statistics: 0.450" in t.note
    old = {k: v for k, v in doc.items() if k != "knn_precise_bn"}  # written before: fallback
    assert ssl_knn(old) == (0.45, 0.40, 0.45)
    (t,) = ssl_targets({"byol": old}, CFG)
    assert t.measured == pytest.approx(0.05) and t.status == FAIL
