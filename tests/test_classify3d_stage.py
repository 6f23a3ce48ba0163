"""The stage's bookkeeping: which sessions are used (reasons for the rest), which ablation
rows run without pseudo-labels (never replaced by the truth), and the paired ablation
numbers against hand-computed ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.classify3d.config import Classify3DConfig, DataConfig
from brainxai.classify3d.data import attach_pseudolabels, select_patients
from brainxai.classify3d.results import ablation, run_summary
from brainxai.classify3d.stage import plan_runs

CLASSES = ["glioma", "pcnsl", "germinoma", "other"]
CFG = {
    "backbones": {"densenet": {"kind": "densenet"}, "vit": {"kind": "vit"}},
    "variants": {
        "base": {"mask": None},
        "coarse_attention": {"mask": "coarse_path", "mask_input": True, "attention": True},
        "full": {"mask": "union_path", "mask_input": True, "attention": True},
        "oracle": {"mask": "std_lesion_path", "mask_input": True, "attention": True},
    },
    "ablation_backbone": "densenet",
    "compare_backbones": ["vit"],
}


def _manifest() -> pd.DataFrame:
    rows = []
    for i, (label, status, qc) in enumerate(
        [("glioma", "ok", True), ("pcnsl", "ok", True), ("other", "quarantined", False),
         ("germinoma", "ok", False), ("normal", "ok", True)]
    ):  # fmt: skip
        for seq in ("T1", "T1C+"):
            rows.append(
                {"record_id": f"r{i}{seq}", "subject": f"s{i}", "session": "", "ndim": 3,
                 "sequence": seq, "label": label, "split": "train", "std_status": status,
                 "std_reason": "" if status == "ok" else "registration failed", "qc_pass": qc,
                 "std_path": f"std/{i}_{seq}.nii.gz" if status == "ok" else "",
                 "std_lesion_path": f"les/{i}.nii.gz"}
            )  # fmt: skip
    rows.append({**rows[0], "record_id": "x2d", "subject": "t", "ndim": 2})
    return pd.DataFrame(rows)


def test_every_session_is_used_or_excluded_with_a_reason():
    patients, excluded = select_patients(_manifest(), DataConfig(), CLASSES)
    assert list(patients["subject"]) == ["s0", "s1"]
    assert list(patients["image_path"]) == ["std/0_T1C+.nii.gz", "std/1_T1C+.nii.gz"]
    assert len(patients) + len(excluded) == 5  # five 3D sessions, the 2D row is not one
    reasons = dict(zip(excluded["subject"], excluded["reason"], strict=True))
    assert reasons["s2"].startswith("standardization quarantined")
    assert reasons["s3"].startswith("standardization QC failed")
    assert "not one of" in reasons["s4"]


def test_missing_pseudolabels_skip_mask_rows_and_are_never_replaced_by_the_truth():
    cfg = Classify3DConfig.from_dict(CFG)
    patients, _ = select_patients(_manifest(), DataConfig(), CLASSES)
    with_pl, notes = attach_pseudolabels(patients, None)
    assert (with_pl["union_path"] == "").all() and "absent" in notes[0]
    runs, notes, comp = plan_runs(cfg, have_pseudo=False, have_truth=True)
    assert runs == [("base", "densenet"), ("oracle", "densenet"), ("base", "vit")]
    assert comp == "base" and sum("skipped" in n for n in notes) == 2
    runs, _, comp = plan_runs(cfg, have_pseudo=True, have_truth=True)
    assert comp == "full" and ("full", "vit") in runs and len(runs) == 5
    pl = pd.DataFrame({"subject": ["s0"], "session": [""], "coarse_path": ["c0"],
                       "refined_path": ["r0"], "union_path": ["u0"], "empty": [True]})  # fmt: skip
    with_pl, notes = attach_pseudolabels(patients, pl)
    assert list(with_pl["union_path"]) == ["u0", ""]
    assert any("without a pseudo-label" in n for n in notes)
    assert any("empty" in n for n in notes)


def test_unknown_keys_and_rows_are_rejected():
    with pytest.raises(ValueError, match="unknown"):
        Classify3DConfig.from_dict({**CFG, "epochs": 3})
    with pytest.raises(ValueError, match="ablation_rows"):
        Classify3DConfig.from_dict({**CFG, "ablation_rows": ["nope"]})


def _preds(run: str, correct: list[bool], fold_of: list[int]) -> pd.DataFrame:
    y = np.arange(len(correct)) % 2
    probs = [
        [0.9, 0.1] if (yi == 0) == ok else [0.1, 0.9] for yi, ok in zip(y, correct, strict=True)
    ]
    return pd.DataFrame(
        {"run": run, "variant": run.split("/")[0], "backbone": "densenet", "fold": fold_of,
         "set": "cv", "subject": [f"p{i:02d}" for i in range(len(y))], "y": y, "probs": probs}
    )  # fmt: skip


def test_ablation_against_the_base_matches_hand_computed_numbers():
    folds = [0, 1] * 6
    base = _preds("base/densenet", [True] * 6 + [False] * 6, folds)  # accuracy 0.5
    good = _preds("full/densenet", [True] * 12, folds)  # perfect
    preds = pd.concat([base, good], ignore_index=True)
    table = ablation(preds, "base/densenet", ["base/densenet", "full/densenet"], ["a", "b"],
                     n_boot=500, seed=0, alpha=0.05).set_index("run")  # fmt: skip
    # base: y = 0,1,0,1,...; first 6 correct, last 6 flipped -> 3 TP per class of 6
    assert table.loc["base/densenet", "macro_f1"] == pytest.approx(0.5)
    assert table.loc["full/densenet", "delta_macro_f1"] == pytest.approx(0.5)
    # McNemar: 6 discordant pairs, all favouring full -> exact p = 2 / 2^6
    assert table.loc["full/densenet", "p_mcnemar"] == pytest.approx(2 / 64)
    assert not table.loc["full/densenet", "wilcoxon_can_reject"]  # 2 folds: never
    summary = run_summary(preds, ["a", "b"])
    assert summary["full/densenet"]["mean"]["accuracy"] == 1.0
    assert summary["base/densenet"]["pooled"]["confusion"] == [[3, 3], [3, 3]]


def test_pooled_ci_and_chance_by_construction():
    """A perfect run's pooled macro F1 is 1 in every replicate (CI [1, 1], above chance
    1/2); the coin-flip base (F1 0.5 = chance) cannot have its CI's lower bound above it."""
    folds = [0, 1] * 6
    base = _preds("base/densenet", [True] * 6 + [False] * 6, folds)
    good = _preds("full/densenet", [True] * 12, folds)
    summary = run_summary(pd.concat([base, good], ignore_index=True), ["a", "b"], n_boot=400)
    full, b = summary["full/densenet"], summary["base/densenet"]
    assert full["pooled_macro_f1_ci"]["low"] == full["pooled_macro_f1_ci"]["high"] == 1.0
    assert full["chance_macro_f1"] == 0.5 and full["above_chance"]
    assert b["pooled_macro_f1_ci"]["point"] == pytest.approx(0.5)
    assert b["pooled_macro_f1_ci"]["low"] < 0.5 < b["pooled_macro_f1_ci"]["high"]
    assert not b["above_chance"]
    assert "pooled_macro_f1_ci" not in run_summary(base, ["a", "b"])["base/densenet"]
