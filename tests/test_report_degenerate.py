"""Degenerate results are labelled as such in the report, never drawn as findings (issue 15,
item 5 and its acceptance): toy studies whose models are at chance, whose SSL run did not
beat random features, whose C-Score stands on fewer than two gold images, whose 3D rows are
at chance; the "Do the methods work?" section and `brainxai study summary` show the targets.
Every expected number is known by construction or read from the stage tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from brainxai.classify3d.config import Classify3DConfig
from brainxai.classify3d.results import ablation, label_table, row_labels, run_summary
from brainxai.config import load_params
from brainxai.evaluation import plots
from brainxai.evaluation.plots import SIGNIFICANCE_MARK
from brainxai.jsonio import write_json
from brainxai.labels import DIAGNOSES_3D
from brainxai.report import build_report
from brainxai.report import figures as report_figures
from brainxai.report.sources import StudyLayout
from brainxai.report.tables import with_ci
from brainxai.summary import targets_text
from brainxai.xai.trajectory_plots import trajectory_figure
from tasks.report import inputs_fingerprint
from tests.conftest import REPO
from tests.report_study import K, make_report_study, write_finetune

CHANCE_17 = f"{1 / K:.3f}"  # 0.059: 17 classes


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start : html.index("</section>", start)]


def _first_table(section: str) -> str:
    start = section.index("<table")
    return section[start : section.index("</table>", start)]


def _marks(fig) -> int:
    return sum(t.get_text() == SIGNIFICANCE_MARK for ax in fig.axes for t in ax.texts)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The matplotlib figures the report draws, by name (label efficiency, trajectories)."""
    figs: dict = {}
    draw = plots.draw_label_efficiency

    def keep_le(*args, **kw):
        figs["label_efficiency"] = fig = draw(*args, **kw)
        return fig

    save = report_figures.save

    def keep(fig, out_dir, name, caption):
        figs[name] = fig
        return save(fig, out_dir, name, caption)

    monkeypatch.setattr(plots, "draw_label_efficiency", keep_le)
    monkeypatch.setattr(report_figures, "save", keep)
    return figs


def test_models_at_chance_say_uninformative_and_get_no_significance_mark(tmp_path, drawn):
    params = make_report_study(tmp_path)
    # both inits always predict one class (0, 1): each macro-F1 = 2/13 over 12 classes
    summary = write_finetune(tmp_path, {"random": 0, "simclr": 1})
    comp_path = tmp_path / "reports/finetune/comparisons.csv"
    comp = pd.read_csv(comp_path)
    assert not comp["informative"].any() and comp["at_chance"].all()
    # by hand: a test that rejects between the two (possible with other numbers) changes nothing
    comp.assign(significant=True).to_csv(comp_path, index=False)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")

    ft = _section(html, "finetune")
    head = _first_table(ft)
    for init in ("random", "simclr"):
        row = summary[
            (summary["init"] == init)
            & (summary["fraction"] == 1.0)
            & (summary["metric"] == "macro_f1")
        ].iloc[0]
        assert row["mean"] == pytest.approx(1 / 78) and bool(row["at_chance"])
        cell = with_ci(row["mean"], row["ci_low"], row["ci_high"])
        assert f"<td>{cell} uninformative (at chance)</td>" in head
    assert SIGNIFICANCE_MARK not in head
    assert ft.count("<td>uninformative (both at chance)</td>") == 2  # comparisons' status
    assert _marks(drawn["label_efficiency"]) == 0
    hollow = [
        ln
        for ax in drawn["label_efficiency"].axes
        for ln in ax.get_lines()
        if ln.get_markerfacecolor() == "none" and len(ln.get_xdata())
    ]
    assert sorted(x for ln in hollow for x in ln.get_xdata()) == [0.5, 0.5, 1.0, 1.0]

    first = _section(html, "findings")
    assert html.index('<section id="findings">') < html.index('<section id="key-results">')
    m = f"{1 / 78:.3f}"
    sentence = (
        f"simclr vs random at finetune, 100 % labels: uninformative (both at chance "
        f"{CHANCE_17}: macro_f1 {m} vs {m}); no claim."
    )
    assert (
        f'<li data-status="uninformative"><span class="badge st-uninformative">'
        f"uninformative</span>{sentence}</li>" in first
    )
    assert "beats" not in first and "finding</span>" not in first
    assert "<td>0 of 2 (2 uninformative)</td>" in _section(html, "key-results")
    assert "2 compare two models at chance (uninformative" in _section(html, "validity")


def test_an_ssl_run_that_did_not_pretrain_makes_its_comparisons_uninformative(tmp_path, drawn):
    params = make_report_study(tmp_path)
    comp = pd.read_csv(tmp_path / "reports/finetune/comparisons.csv")
    assert comp["significant"].all() and comp["informative"].all()  # simclr right, random not
    build_report(tmp_path, params)
    assert _marks(drawn["label_efficiency"]) == 2  # drawn while nothing says otherwise
    path = tmp_path / "models/ssl/simclr/summary.json"
    doc = json.loads(path.read_text())
    write_json(path, doc | {"steps": 4, "knn_random_init": 0.15})  # final kNN 0.2
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")

    why = "its pretraining ran 4 steps (&lt; 200: not a pretraining)"
    ssl = _section(html, "ssl")
    assert f"<td>uninformative: {why}</td>" in ssl
    assert "<td>0.150</td>" in ssl and "<td>+0.050</td>" in ssl  # reference and gain
    ft = _section(html, "finetune")
    head = _first_table(ft)
    assert "<td>simclr (uninformative)</td>" in head and SIGNIFICANCE_MARK not in head
    assert _marks(drawn["label_efficiency"]) == 0
    assert ft.count(f"<td>uninformative (simclr: {why})</td>") == 2
    r = comp[comp["fraction"] == 1.0].iloc[0]
    expected = (
        f"simclr vs random at finetune, 100 % labels: uninformative (simclr: {why}); "
        f"difference {r['diff']:+.3f} [95 % CI {r['ci_low']:.3f}, {r['ci_high']:.3f}], "
        f"Holm-adjusted p = {r['p_bootstrap_holm']:.3f} is no evidence about SSL."
    )
    first = _section(html, "findings")
    assert expected in first
    assert (
        "simclr is not a pretraining: 4 steps &lt; 200 (val kNN top-1 0.200 vs 0.150 for the "
        "same backbone untrained, gain +0.050)"
    ) in first


def test_a_cscore_over_fewer_than_two_gold_images_is_not_drawn(tmp_path, drawn):
    """The toy trajectory: the 2D model's only class has an empty gold list at its final
    epoch 2 (a gold-list collapse), so its C-Score there stands on nothing."""
    params = make_report_study(tmp_path)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    model = "simclr__finetune__f1__s0"
    assert (
        "gradcam on finetune (final checkpoint of 1 model): C-Score uninformative - no "
        "class has a gold list of &gt;= 2 images."
    ) in _section(html, "findings")
    xai = _section(html, "xai")
    assert "<td>uninformative (no class with &gt;= 2 gold images)</td>" in xai
    assert "<td>0.500</td>" in xai  # the 3D model's C-Score (its class has 2 gold images)
    fig = drawn["trajectory_finetune_gradcam"]
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(model)]
    assert line.get_label() == f"{model} (1/1 classes < 2 gold)"
    ys = np.asarray(line.get_ydata(), float)
    assert ys[0] == 0.5 and np.isnan(ys[1])  # epoch 2: a gap, not a point at 0.5

    # the xai stage's own per-model figure: a gap in class 0 and in the global panel
    traj = pd.read_parquet(tmp_path / "reports/xai/trajectory.parquet")
    fig = trajectory_figure(traj, model, "gradcam", min_gold=2)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    for title in ("class 0", "global (red: classes with gold < 2)"):
        ax = by_title[title]
        (cs,) = [ln for ln in ax.get_lines() if ln.get_label() == "C-Score"]
        ys = np.asarray(cs.get_ydata(), float)
        assert ys[0] == 0.5 and np.isnan(ys[1]), title
        assert [t.get_text() for t in ax.texts] == ["no C-Score at 1 checkpoint: gold < 2"]
    # with min_gold 0 every point is drawn and nothing is noted
    fig = trajectory_figure(traj, model, "gradcam", min_gold=0)
    ax = next(a for a in fig.axes if a.get_title() == "class 0")
    (cs,) = [ln for ln in ax.get_lines() if ln.get_label() == "C-Score"]
    assert list(cs.get_ydata()) == [0.5, 0.5] and not ax.texts


def _classify3d_at_chance(root: Path, proposer: str) -> dict:
    """Rows ① (always class 0) and ② (always class 1) on 8 CV patients: both at chance."""
    cfg = Classify3DConfig.from_dict(load_params(REPO / "params.yaml", "full")["classify3d"])
    names = list(DIAGNOSES_3D)
    rows = []
    for variant, constant in (("base", 0), ("coarse", 1)):
        for i in range(8):
            p = np.full(len(names), 0.1 / (len(names) - 1))
            p[constant] = 0.9
            rows.append(
                {
                    "run": f"{variant}/densenet",
                    "variant": variant,
                    "backbone": "densenet",
                    "fold": i % 2,
                    "set": "cv",
                    "subject": f"p{i}",
                    "y": i % len(names),
                    "probs": p.tolist(),
                }
            )
    preds = pd.DataFrame(rows)
    rep = root / "reports/classify3d"
    rep.mkdir(parents=True, exist_ok=True)
    preds.to_parquet(rep / "predictions.parquet")
    summ = run_summary(preds, names, n_boot=200, seed=0, alpha=0.05)
    table = ablation(
        preds,
        "base/densenet",
        ["base/densenet", "coarse/densenet"],
        names,
        n_boot=50,
        seed=0,
        alpha=0.05,
    )
    table = label_table(table, row_labels(cfg.variants, proposer))
    runs = {
        r: {
            k: s[k] for k in ("mean", "sd", "pooled_macro_f1_ci", "chance_macro_f1", "above_chance")
        }
        for r, s in summ.items()
    }
    doc = {
        "n_patients": 8,
        "n_cv": 8,
        "n_folds": 2,
        "n_holdout": 0,
        "runs": runs,
        "ablation": json.loads(table.to_json(orient="records")),
    }
    write_json(root / "reports/metrics/classify3d.json", doc)
    return doc


def test_3d_rows_at_chance_are_labelled_and_not_findings(tmp_path):
    params = make_report_study(tmp_path)
    doc = _classify3d_at_chance(tmp_path, "classical proposer")
    # each constant classifier on 4 balanced classes, pooled out of fold: macro-F1 =
    # (2 * 0.25 / 1.25) / 4 = 0.1 < 0.25
    for r in doc["ablation"]:
        assert r["macro_f1"] == pytest.approx(0.1)
        assert doc["runs"][r["run"]]["pooled_macro_f1_ci"]["point"] == pytest.approx(0.1)
        assert doc["runs"][r["run"]]["above_chance"] is False
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    c3 = _section(html, "classify3d")
    assert c3.count("<td>uninformative (at chance)</td>") == 2
    assert "<td>uninformative (both at chance)</td>" in c3
    base, coarse = (r["macro_f1"] for r in doc["ablation"])
    assert (
        "3D row ② (coarse) vs row ① (base): uninformative (both at chance 0.250: pooled "
        f"out-of-fold macro-F1 {coarse:.3f} vs {base:.3f}); no claim."
    ) in _section(html, "findings")


def test_methods_section_and_summary_show_the_targets(tmp_path, monkeypatch):
    params = make_report_study(tmp_path)
    controls = tmp_path / "reports/finetune/controls/controls.csv"
    controls.parent.mkdir(parents=True)
    pd.DataFrame(
        [
            {
                "control": "shortcut",
                "check": "relevance mass outside the head",
                "measured": 0.7,
                "target": ">= 0.5",
                "status": "pass",
                "note": "",
            },
            {
                "control": "random_labels",
                "check": "test macro-F1 inside the chance interval",
                "measured": 0.2,
                "target": "in [0.010, 0.120]",
                "status": "fail",
                "note": "",
            },
        ]
    ).to_csv(controls, index=False)
    write_json(
        tmp_path / "reports/metrics/pretrain_simclr.json",
        {"final": {"knn_accuracy": 0.55}, "knn_random_init": 0.40, "steps": 312},
    )
    layout = StudyLayout.from_params(tmp_path, params)
    files = layout.input_files()
    assert controls in files and tmp_path / "reports/metrics/pretrain_simclr.json" in files
    before = inputs_fingerprint(tmp_path, params)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")

    sec = _section(html, "methods")
    assert (
        html.index('<section id="key-results">')
        < html.index('<section id="methods">')
        < html.index('<section id="data-card">')
    )
    rows = {re.sub(r"<[^>]+>", "|", r).strip("|"): r for r in re.findall(r"<tr>.*?</tr>", sec)}

    def row(check: str) -> str:
        return next(r for k, r in rows.items() if f"|{check}|" in k)

    # the toy split: 6 test patients of 12, 12 test images
    assert '<td>3</td><td>&gt;= 30</td><td class="status st-fail">fail</td>' in row(
        "2D test patients"
    )
    assert '<td class="status st-pass">pass</td>' in row("simclr: val kNN top-1 - random-init kNN")
    assert "<td>0.15</td>" in row("simclr: val kNN top-1 - random-init kNN")
    assert '<td class="status st-pass">pass</td>' in row(
        "shortcut: relevance mass outside the head"
    )
    assert '<td class="status st-fail">fail</td>' in row(
        "random_labels: test macro-F1 inside the chance interval"
    )
    # the randomisation check beside the controls: median Spearman 0.8, flagged
    rnd = row("model-parameter randomisation: finetune / gradcam")
    assert "<td>0.8</td>" in rnd and '<td class="status st-fail">fail</td>' in rnd
    assert list(rows).index(next(k for k in rows if "randomisation" in k)) == len(rows) - 1

    # the report's cache key follows the controls
    pd.read_csv(controls).assign(measured=0.1).to_csv(controls, index=False)
    assert inputs_fingerprint(tmp_path, params) != before

    # `brainxai study summary`: the targets first, then the headline numbers
    text = targets_text(tmp_path, params)
    assert re.search(r"2D test patients\s+3\s+>= 30\s+FAIL", text)
    from flows.cli import app

    monkeypatch.setenv("BRAINXAI_ROOT", str(tmp_path))
    out = CliRunner().invoke(app, ["study", "summary"])
    assert out.exit_code == 0, out.output
    assert out.output.index("2D test patients") < out.output.index("[pseudolabel]")
    assert "model-parameter randomisation: finetune / gradcam" in out.output
