"""The study report (issue 10): one self-contained HTML file + the same figures as PNG.

``sources`` reads each stage's outputs from a study root (a stage that did not run gives a
section saying so), ``tables``/``figures``/``gallery`` turn them into tables and figures,
``validity`` computes the threats to validity from the data, ``render`` writes the HTML
(jinja2 template shipped as package data). Entry point: :func:`build_report`.
"""

from brainxai.report.build import build_report
from brainxai.report.config import ReportConfig
from brainxai.report.sources import StudyLayout

__all__ = ["ReportConfig", "StudyLayout", "build_report"]
