"""The study report (issue 10): numbers in the HTML equal the stage outputs they come from,
stages that did not run say so, the page is self-contained, the flow is cached."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from brainxai.report import ReportConfig, build_report
from brainxai.report.tables import with_ci
from brainxai.report.validity import wald_half_width
from tests.report_study import make_report_study

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", re.IGNORECASE)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report-study")
    params = make_report_study(root)
    result = build_report(root, params)
    return root, result.html.read_text(encoding="utf-8")


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start : html.index("</section>", start)]


def test_headline_macro_f1_equals_summary(built: tuple[Path, str]) -> None:
    root, html = built
    summary = pd.read_csv(root / "reports/finetune/summary.csv")
    ft = _section(html, "finetune")
    for init, expected in (("simclr", 1.0), ("random", 1 / 78)):
        row = summary[
            (summary["init"] == init) & (summary["fraction"] == 1.0)
            & (summary["metric"] == "macro_f1")
        ].iloc[0]  # fmt: skip
        # by construction: simclr is always right; random always says class 0, so class 0
        # has F1 = 2/13 (P = 1/12, R = 1) and the 11 other test classes 0: macro-F1 1/78
        assert row["mean"] == pytest.approx(expected)
        assert with_ci(row["mean"], row["ci_low"], row["ci_high"]) in ft
    assert "1.000 [1.000, 1.000]" in _section(html, "key-results")
    # per-class table of the best condition (simclr, 100 %): every present class F1 = 1
    assert ft.count("<td>1.000</td>") >= 3 * 12


def test_pseudolabel_dice_equals_table(built: tuple[Path, str]) -> None:
    root, html = built
    pl = _section(html, "pseudolabel")
    table = pd.read_parquet(root / "data/processed/pseudolabels.parquet")
    glioma = table.loc[table["label"] == "glioma", "dice_refined"].mean()
    assert glioma == pytest.approx(0.7)
    assert re.search(r"<td>glioma</td>\s*<td>2</td>\s*<td>[0-9.]+</td>\s*<td>0\.700</td>", pl)
    assert "<td>0.600</td>" in _section(html, "key-results")  # (0.8 + 0.6 + 0.5 + 0.5) / 4


def test_dissociation_and_threats(built: tuple[Path, str]) -> None:
    root, html = built
    assert "<td>1 / 0 / 0</td>" in _section(html, "key-results")  # one gold-list collapse
    val = _section(html, "validity")
    assert 'data-status="ok">\n    <h3><span class="badge ok">ok</span>Patient leakage' in val
    # 2 test patients of 2D fine-tuning -> 95 % Wald half-width 1.96 * sqrt(0.25 / 6)
    assert f"{wald_half_width(6, 0.95):.3f}" == "0.400"
    assert "<td>0.400</td>" in val
    comp = pd.read_csv(root / "reports/finetune/comparisons.csv")
    m, n_sig = int(comp["holm_family_size"].max()), int(comp["significant"].sum())
    assert f"Holm family size {m};" in val and f"{n_sig} stay significant after Holm" in val


def test_missing_stages_say_not_run(built: tuple[Path, str]) -> None:
    _, html = built
    for sid, missing in (
        ("classify3d", "reports/classify3d/predictions.parquet"),
        ("difficulty", "reports/metrics/difficulty.json"),
    ):
        sec = _section(html, sid)
        assert 'data-status="not-run"' in sec and missing in sec
    assert "(not run)" in html  # table of contents marks them


def test_self_contained(built: tuple[Path, str]) -> None:
    root, html = built
    assert not EXTERNAL.search(html)
    assert "http://" not in html and "https://" not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 7 and all(s.startswith("data:image/png;base64,") for s in srcs)
    figs = sorted((root / "reports/report/figures").glob("*.png"))
    assert {f.stem for f in figs} >= {"ssl_curves", "label_efficiency", "cam_gallery_2d",
                                      "cam_gallery_3d", "pseudolabel_dice"}  # fmt: skip
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in srcs}
    assert (root / "reports/report/figures/cam_gallery_3d.png").read_bytes() in embedded
    assert '<nav aria-label="Contents">' in html


def test_empty_study_renders_every_section_as_not_run(tmp_path: Path) -> None:
    params = make_report_study(tmp_path, skip=("ingest", "finetune", "pseudolabel", "pretrain",
                                               "standardize", "xai"))  # fmt: skip
    result = build_report(tmp_path, params)
    assert not any(v for k, v in result.sections.items() if k not in ("validity", "key-results"))
    html = result.html.read_text()
    assert html.count('data-status="not-run"') >= 8 and not result.figures


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown ReportConfig keys"):
        ReportConfig.from_dict({"dpii": 100})
    assert ReportConfig.from_dict({"dpi": 50}).dpi == 50


@pytest.mark.slow  # ~70 s on 2 busy cores, mostly the ephemeral Prefect API starting
def test_report_flow_writes_once_then_hits_the_cache(tmp_path: Path) -> None:
    """Prefect task cached on the inputs' content: a re-run with nothing changed rewrites
    nothing; a changed input rebuilds the page."""
    from flows.report import report_flow

    make_report_study(tmp_path, skip=("xai", "standardize"))
    first = report_flow(root=str(tmp_path))
    html = Path(first["html"])
    stamp = html.stat().st_mtime_ns
    assert first["sections"]["finetune"] and not first["sections"]["xai"]
    second = report_flow(root=str(tmp_path))
    assert second == first and html.stat().st_mtime_ns == stamp
    pl = tmp_path / "data/processed/pseudolabels.parquet"
    table = pd.read_parquet(pl)
    table["dice_refined"] = 0.25
    table.to_parquet(pl)
    third = report_flow(root=str(tmp_path))
    assert "<td>0.250</td>" in Path(third["html"]).read_text()


def test_gallery_order_and_spread() -> None:
    from brainxai.report.gallery import round_robin, spread

    models = ["byol__finetune__f0.1__s0", "byol__finetune__f1__s0", "random__finetune__f1__s0"]
    assert round_robin(models) == [models[1], models[2], models[0]]
    assert spread(34, 6).tolist() == [0, 7, 13, 20, 26, 33]
    assert spread(3, 6).tolist() == [0, 1, 2]


def test_vanished_image_is_reported_not_fatal(tmp_path: Path) -> None:
    params = make_report_study(tmp_path, skip=("finetune", "pseudolabel"))
    (tmp_path / "data/raw/synth/kaggle2d/t00.png").unlink()
    result = build_report(tmp_path, params)
    html = result.html.read_text()
    assert "The 2D CAM gallery could not be drawn: FileNotFoundError" in html
    assert result.errors and result.sections["xai"]
    assert (tmp_path / "reports/report/figures/cam_gallery_3d.png").is_file()


def test_same_inputs_same_bytes(built: tuple[Path, str], tmp_path: Path) -> None:
    root, html = built
    from brainxai.config import load_params

    again = build_report(root, load_params(root / "params.yaml", profile="smoke"), tmp_path)
    assert again.html.read_text(encoding="utf-8") == html
