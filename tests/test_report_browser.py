"""The study report in headless Chromium (Debian's ``/usr/bin/chromium``) via Playwright:
it loads with no console error and no page error, every figure decodes and renders, and a
full-page screenshot is kept as a CI artifact (``$BRAINXAI_CI_ARTIFACTS/report.png``,
default ``reports/ci/report.png``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from brainxai.report import build_report
from tests.report_study import REPO, make_report_study

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def artifacts_dir() -> Path:
    return Path(os.environ.get("BRAINXAI_CI_ARTIFACTS") or REPO / "reports" / "ci")


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent (Debian package `chromium`; .ci/run installs it as root)",
)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = tmp_path / "study"
    result = build_report(root, make_report_study(root, skip=("standardize",)))
    messages: list[tuple[str, str]] = []
    errors: list[str] = []
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data dir
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(result.html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.width])"
            )
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
    assert not errors, errors
    assert not [m for m in messages if m[0] == "error"], messages
    assert len(images) == len(result.figures) >= 7
    broken = [alt for alt, complete, natural, shown in images if not (complete and natural > 0)]
    assert not broken, broken
    assert all(shown > 0 for *_, shown in images)
    assert "standardize" in sections and "validity" in sections
    assert shot.stat().st_size > 10_000
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, out / "report.png")
