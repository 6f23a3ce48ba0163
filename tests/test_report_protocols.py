"""The HTML report names each protocol as it really ran (issue 17): paper 003's ablation rows
with their row numbers, the mask proposer ("classical proposer" unless a VLM answered), the
effective label fractions beside the nominal ones, the C-Score τ sweep on the XAI section's
first screen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainxai.classify3d.config import Classify3DConfig
from brainxai.classify3d.results import ablation, label_table, row_labels
from brainxai.config import load_params
from brainxai.evaluation.fractions import with_effective
from brainxai.finetune.sampling import effective_by_fraction, effective_fractions, subsets_table
from brainxai.jsonio import write_json
from brainxai.labels import DIAGNOSES_3D
from brainxai.pseudolabel.provenance import proposer_label
from brainxai.report import build_report
from brainxai.xai.trajectory import TrackingConfig, sensitivity
from tests.conftest import REPO
from tests.report_study import make_report_study
from tests.test_finetune_effective_fractions import toy_items
from tests.test_xai_cscore_many_classes import case


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start : html.index("</section>", start)]


def _classify3d(root: Path, proposer: str) -> None:
    """Two folds of rows ① (always class 0) and ② (always right) on 8 patients."""
    cfg = Classify3DConfig.from_dict(load_params(REPO / "params.yaml", "full")["classify3d"])
    k = len(DIAGNOSES_3D)
    rows = []
    for variant, right in (("base", False), ("coarse", True)):
        for i in range(8):
            y = i % k
            p = np.full(k, 0.1 / (k - 1))
            p[y if right else 0] = 0.9
            rows.append({"run": f"{variant}/densenet", "variant": variant, "backbone": "densenet",
                         "fold": i % 2, "set": "cv", "subject": f"p{i}", "y": y,
                         "probs": p.tolist()})  # fmt: skip
    preds = pd.DataFrame(rows)
    rep = root / "reports/classify3d"
    rep.mkdir(parents=True, exist_ok=True)
    preds.to_parquet(rep / "predictions.parquet")
    table = ablation(preds, "base/densenet", ["base/densenet", "coarse/densenet"],
                     list(DIAGNOSES_3D), n_boot=50, seed=0, alpha=0.05)  # fmt: skip
    table = label_table(table, row_labels(cfg.variants, proposer))
    doc = {"n_patients": 8, "n_cv": 8, "n_folds": 2, "n_holdout": 0, "mask_proposer": proposer,
           "ablation": json.loads(table.to_json(orient="records"))}  # fmt: skip
    write_json(root / "reports/metrics/classify3d.json", doc)


def test_classical_masks_are_labelled_classical_and_rows_carry_paper_numbers(tmp_path: Path):
    params = make_report_study(tmp_path)
    table = pd.read_parquet(tmp_path / "data/processed/pseudolabels.parquet")
    proposer = proposer_label(table)
    assert proposer == "classical proposer"
    _classify3d(tmp_path, proposer)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    c3 = _section(html, "classify3d")
    assert "<td>①</td>" in c3 and "<td>②</td>" in c3
    assert "coarse mask from the classical proposer: background removal" in c3
    assert "Masks made by the classical proposer" in c3
    pl = _section(html, "pseudolabel")
    assert "Masks made by the classical proposer" in pl and "no VLM was asked" in pl
    assert "VLM (" not in c3 + pl


def test_a_vlm_row_appears_only_when_the_vlm_answered(tmp_path: Path):
    params = make_report_study(tmp_path)
    path = tmp_path / "data/processed/pseudolabels.parquet"
    table = pd.read_parquet(path).assign(
        proposer="openai", proposer_model="Qwen/Qwen3-VL-8B-Instruct", n_answers=30,
        n_malformed=30,
    )  # fmt: skip
    table.to_parquet(path)
    silent = proposer_label(table)
    _classify3d(tmp_path, silent)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    assert "gave no readable answer" in _section(html, "classify3d")
    assert "no row of this report is a VLM row" in _section(html, "pseudolabel")
    table.assign(n_malformed=[30, 29, 30, 30]).to_parquet(path)  # one readable answer
    answered = proposer_label(pd.read_parquet(path))
    assert answered == "VLM (Qwen/Qwen3-VL-8B-Instruct)"
    _classify3d(tmp_path, answered)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    assert "coarse mask from the VLM (Qwen/Qwen3-VL-8B-Instruct)" in _section(html, "classify3d")
    assert "1 readable VLM answers" in _section(html, "pseudolabel")


def test_finetune_tables_show_the_effective_fraction_beside_the_nominal_one(tmp_path: Path):
    """The report study's fractions 50 % and 100 %, with the effective shares of the toy
    split of tests/test_finetune_effective_fractions.py (50 %: 15 of 25 patients, 25 of 45
    images)."""
    params = make_report_study(tmp_path)
    items = toy_items()
    eff = effective_by_fraction(effective_fractions(items, subsets_table(items, (0.5, 1.0), (0,))))
    rep = tmp_path / "reports/finetune"
    for name in ("summary", "comparisons"):
        table = pd.read_csv(rep / f"{name}.csv")
        with_effective(table, eff).to_csv(rep / f"{name}.csv", index=False)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    ft = _section(html, "finetune")
    assert "50 % (effective 60.0 % of patients, 55.6 % of images) labels" in ft
    assert "100 % (effective 100.0 % of patients, 100.0 % of images) labels" in ft
    assert "<td>60.0 %</td>" in ft and "<td>55.6 %</td>" in ft  # the comparisons table
    key = _section(html, "key-results")  # the best and the baseline condition, 100 %
    assert "(simclr / finetune / 100 % (effective 100.0 % of patients, 100.0 % of images) " \
        "labels)" in key  # fmt: skip


def test_the_tau_sweep_opens_the_xai_section(tmp_path: Path):
    """First screen of the XAI section: the τ sweep of the hand-computed case of
    tests/test_xai_cscore_many_classes.py, before any gallery or trajectory figure."""
    params = make_report_study(tmp_path)
    maps, labels, probs = case()
    sens = sensitivity(maps, labels, probs, TrackingConfig(taus=(0.3, 0.5, 0.9)))
    sens = sens.assign(family="finetune", model="simclr__finetune__f1__s0", method="gradcam",
                       checkpoint="simclr__finetune__f1__s0/epoch-0002", epoch=2)  # fmt: skip
    sens.to_csv(tmp_path / "reports/xai/sensitivity.csv", index=False)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    xai = _section(html, "xai")
    first_table, first_figure = xai.index("<table"), xai.index("<figure")
    assert first_table < first_figure
    head = xai[:first_figure]
    assert "τ = 0.5 (default)" in head and "<td>0.500 | 0.600 | 2/4</td>" in head
    assert "<td>0.625 | 0.714 | 1/4</td>" in head and "<td>0.000 | — | 4/4</td>" in head
    assert "<td>0.500 | 0.600 | 2/4</td>" in _section(html, "key-results")
