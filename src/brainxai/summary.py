"""A compact, human-readable digest of a study: its targets (:mod:`brainxai.targets`: does
the study show anything?) and the stage metrics files (reports/metrics/*.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def headline(metrics_dir: Path) -> str:
    """One block per stage metrics file; nested mappings become dotted keys."""
    files = sorted(Path(metrics_dir).glob("*.json"))
    if not files:
        return f"no metrics in {metrics_dir}: run the study first (make study)"
    lines: list[str] = []
    for f in files:
        lines.append(f"[{f.stem}]")
        stack = [("", json.loads(f.read_text()))]
        flat: list[tuple[str, object]] = []
        while stack:
            prefix, node = stack.pop()
            if isinstance(node, dict):
                stack += [(f"{prefix}{k}.", v) for k, v in sorted(node.items(), reverse=True)]
            else:
                flat.append((prefix[:-1], node))
        width = max(len(k) for k, _ in flat)
        lines += [f"  {k:<{width}}  {_fmt(v)}" for k, v in flat]
    return "\n".join(lines)


def targets_text(root: Path, params: Mapping[str, Any]) -> str:
    """The study's targets, measured from its outputs, as a terminal table
    (:func:`brainxai.targets.render`; thresholds from ``params.targets``)."""
    from brainxai.report.sources import StudyLayout, target_sources
    from brainxai.targets import TargetsConfig, evaluate, render

    layout = StudyLayout.from_params(root, params)
    cfg = TargetsConfig.from_dict(params.get("targets"))
    return render(evaluate(target_sources(layout, params), cfg))
