"""Prefect artifacts for a stage flow run: its headline metrics table and key plots.

Called once near the end of each stage flow (``publish_stage(...)``), after the stage has
written ``reports/metrics/<stage>.json``: the JSON becomes one table artifact (one row per
flattened metric, ``{"metric": "a.b.c", "value": ...}``; lists as JSON text) and each plot
a markdown artifact with the PNG embedded as a ``data:`` URI, so the Prefect UI shows it
without access to the study's disk. Keys are Prefect-valid (lowercase letters, digits,
dashes): ``<metrics file stem>-metrics`` (``synth-metrics``, ``pretrain-simclr-metrics``),
``<stage>-plot-<name>``. A missing file is skipped with a log
line; artifacts never fail a stage.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

MAX_PLOTS = 6  # per stage: the UI is for a glance, the files stay in reports/
MAX_PLOT_BYTES = 2_000_000  # larger figures are linked by path, not embedded


def artifact_key(*parts: str) -> str:
    """A valid Prefect artifact key: lowercase, ``[a-z0-9-]``, no leading/trailing dash."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return re.sub(r"-{2,}", "-", key)


def metric_rows(metrics: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Nested metrics -> ``[{"metric": "a.b", "value": v}]`` (sorted; lists as JSON text)."""
    rows: list[dict[str, Any]] = []
    for key in sorted(metrics, key=str):
        val, name = metrics[key], f"{prefix}{key}"
        if isinstance(val, Mapping):
            rows.extend(metric_rows(val, f"{name}."))
        elif isinstance(val, list | tuple):
            rows.append({"metric": name, "value": json.dumps(val, sort_keys=True)})
        else:
            rows.append({"metric": name, "value": val})
    return rows


def plot_markdown(path: Path, title: str) -> str:
    """Markdown showing the PNG at ``path`` inline (base64 ``data:`` URI)."""
    data = path.read_bytes()
    if len(data) > MAX_PLOT_BYTES:
        return f"### {title}\n\n`{path}` ({len(data) / 1e6:.1f} MB, not embedded)\n"
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f"### {title}\n\n![{title}]({uri})\n\n`{path}`\n"


def _warn(msg: str, *args: Any) -> None:
    try:
        from prefect import get_run_logger

        get_run_logger().warning(msg, *args)
    except Exception:  # outside a run context
        pass


def publish_stage(
    stage: str, metrics: Path | Iterable[Path], plots: Iterable[Path] = ()
) -> dict[str, str]:
    """Attach the stage's metrics table(s) and up to :data:`MAX_PLOTS` plots to this run.

    ``metrics``: one JSON file or several (one table each, keyed by file stem). Returns
    ``{artifact key: artifact id}``.
    """
    files = [Path(metrics)] if isinstance(metrics, str | Path) else [Path(m) for m in metrics]
    created: dict[str, str] = {}
    try:
        for f in files:
            if not f.exists():
                _warn("artifacts: no metrics file %s", f)
                continue
            key = artifact_key(f.stem, "metrics")
            rows = metric_rows(json.loads(f.read_text()))
            desc = f"Headline metrics of stage `{stage}` (`{f.name}`)"
            created[key] = str(create_table_artifact(rows, key=key, description=desc))
        for p in sorted({Path(p) for p in plots})[:MAX_PLOTS]:
            if not p.exists():
                _warn("artifacts: no plot %s", p)
                continue
            key = artifact_key(stage, "plot", p.stem)
            md = plot_markdown(p, p.stem)
            created[key] = str(create_markdown_artifact(md, key=key, description=f"{stage}"))
    except Exception as exc:  # the API being down must not fail a finished stage
        _warn("artifacts for %s not attached: %s", stage, exc)
    return created
