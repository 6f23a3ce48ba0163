"""Each stage's outputs, read from a study root into typed records.

A stage *ran* when its required files exist; otherwise its record lists what is missing
and the report says "not run" for it (never a crash). Optional files (e.g. a stage's
metrics JSON) are read when present. Where the files are: :class:`StudyLayout`, resolved
from ``params.yaml`` (the stages' own ``out_dir``/``reports_dir`` keys) with the stages'
default locations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.targets import Sources


def _get(params: Mapping[str, Any], dotted: str, default: str) -> str:
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return str(node)


@dataclass(frozen=True)
class StudyLayout:
    """Where the report's inputs live (paths relative to ``root``)."""

    root: Path
    reports: str = "reports"
    processed: str = "data/processed"
    ssl_dir: str = "models/ssl"
    finetune_reports: str = "reports/finetune"
    classify3d_reports: str = "reports/classify3d"
    xai_out: str = "data/interim/xai"
    xai_reports: str = "reports/xai"

    @classmethod
    def from_params(cls, root: str | Path, params: Mapping[str, Any]) -> StudyLayout:
        reports = _get(params, "paths.reports", cls.reports)
        return cls(
            root=Path(root).resolve(),
            reports=reports,
            processed=_get(params, "paths.processed", cls.processed),
            ssl_dir=_get(params, "pretrain.out_dir", cls.ssl_dir),
            finetune_reports=_get(params, "finetune.reports_dir", cls.finetune_reports),
            classify3d_reports=f"{reports}/classify3d",
            xai_out=_get(params, "xai.out_dir", cls.xai_out),
            xai_reports=_get(params, "xai.reports_dir", cls.xai_reports),
        )

    def path(self, rel: str) -> Path:
        return self.root / rel

    def stage_files(self) -> dict[str, dict[str, list[str]]]:
        """Per stage: ``required`` and ``optional`` input files (relative paths)."""
        r, p, m = self.reports, self.processed, f"{self.reports}/metrics"
        ft, c3, xr = self.finetune_reports, self.classify3d_reports, self.xai_reports
        return {
            "ingest": {
                "required": [f"{r}/datacard.json"],
                "optional": [f"{m}/ingest.json", f"{p}/manifest.parquet"],
            },
            "standardize": {
                "required": [f"{p}/standardize_qc.parquet"],
                "optional": [f"{m}/standardize.json"],
            },
            "difficulty": {"required": [f"{m}/difficulty.json"], "optional": []},
            "pretrain": {"required": [], "optional": []},  # globbed: <ssl_dir>/*/summary.json
            "finetune": {
                "required": [f"{ft}/summary.csv", f"{ft}/predictions.parquet"],
                "optional": [
                    f"{ft}/comparisons.csv",
                    f"{ft}/runs.csv",
                    f"{m}/finetune.json",
                    f"{ft}/controls/controls.csv",  # the planted controls (targets)
                ],
            },
            "pseudolabel": {
                "required": [f"{p}/pseudolabels.parquet"],
                "optional": [f"{m}/pseudolabel.json"],
            },
            "classify3d": {
                "required": [f"{c3}/predictions.parquet"],
                "optional": [f"{m}/classify3d.json", f"{c3}/backbones.md"],
            },
            "xai": {
                "required": [f"{xr}/trajectory.parquet"],
                "optional": [
                    f"{xr}/sensitivity.csv",
                    f"{xr}/randomisation.csv",
                    f"{xr}/quarantine.csv",
                    f"{m}/xai.json",
                    f"{self.xai_out}/evalsets/finetune.parquet",
                    f"{self.xai_out}/evalsets/classify3d.parquet",
                ],
            },
        }

    def ssl_summaries(self) -> list[Path]:
        return sorted(self.path(self.ssl_dir).glob("*/summary.json"))

    def pretrain_metrics(self) -> list[Path]:
        """``reports/metrics/pretrain_<framework>.json`` (kNN vs random init: the targets)."""
        return sorted(self.path(f"{self.reports}/metrics").glob("pretrain_*.json"))

    def heatmap_files(self) -> list[Path]:
        return sorted(self.path(self.xai_out).joinpath("heatmaps").rglob("*.npz"))

    def input_files(self) -> list[Path]:
        """Every file the report may read that exists now (for cache keys)."""
        files = [
            self.path(f)
            for spec in self.stage_files().values()
            for f in (*spec["required"], *spec["optional"])
        ]
        files += self.ssl_summaries() + self.pretrain_metrics() + self.heatmap_files()
        qc = self.path(f"{self.processed}/standardize_qc.parquet")
        if qc.is_file():
            files += [self.path(m) for m in _montages(pd.read_parquet(qc))]
        for family in ("finetune", "classify3d"):  # images the CAM galleries draw
            ev = self.path(f"{self.xai_out}/evalsets/{family}.parquet")
            if ev.is_file():
                table = pd.read_parquet(ev)
                cols = [c for c in ("path", "mask_path") if c in table]
                files += [self.path(str(v)) for c in cols for v in table[c].dropna() if str(v)]
        return sorted({f for f in files if f.is_file()})


def target_sources(layout: StudyLayout, params: Mapping[str, Any]) -> Sources:
    """Where :func:`brainxai.targets.evaluate` reads, in this study's layout; frameworks:
    ``pretrain.frameworks`` (a missing one is "not run"), else those with metrics."""
    fws = (params.get("pretrain") or {}).get("frameworks") or [
        p.stem.removeprefix("pretrain_") for p in layout.pretrain_metrics()
    ]
    return Sources(
        manifest=layout.path(f"{layout.processed}/manifest.parquet"),
        finetune_reports=layout.path(layout.finetune_reports),
        metrics=layout.path(f"{layout.reports}/metrics"),
        xai_reports=layout.path(layout.xai_reports),
        frameworks=[str(f) for f in fws],
    )


def report_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``params.yaml`` the report depends on (for cache keys and MLflow): the
    targets (its "Do the methods work?" section, SSL statuses) and the power at which the
    MDEs are stated included."""
    xai = params.get("xai", {}) or {}
    pretrain = params.get("pretrain") or {}
    finetune = params.get("finetune") or {}
    return {
        "profile": params.get("profile"),
        "paths": params.get("paths", {}),
        "report": params.get("report", {}) or {},
        "targets": params.get("targets", {}) or {},
        "pretrain": {k: pretrain.get(k) for k in ("out_dir", "frameworks")},
        "finetune": {k: finetune.get(k) for k in ("reports_dir", "mde_power")},
        "xai": {k: xai.get(k) for k in ("out_dir", "reports_dir", "tracking")},
    }


def _montages(qc: pd.DataFrame) -> list[str]:
    if "montage" not in qc.columns:
        return []
    return [str(m) for m in qc["montage"].fillna("").astype(str) if m]


@dataclass
class StageData:
    """One stage's outputs: tables (parquet/CSV), JSON documents and text, by file stem."""

    name: str
    ran: bool
    missing: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    docs: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def doc(self, name: str) -> Any:
        return self.docs.get(name)


@dataclass(frozen=True)
class HeatmapInfo:
    """Where one (checkpoint, method) heatmap file is, and what it holds (no maps loaded)."""

    path: Path
    checkpoint_id: str
    model: str
    method: str
    epoch: int
    ndim: int  # 2 or 3 spatial dimensions

    @property
    def family(self) -> str:
        return "classify3d" if self.ndim == 3 else "finetune"


def read_heatmap_info(path: Path) -> HeatmapInfo:
    """Meta of a :mod:`brainxai.xai.heatmap_store` file without loading its maps."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        ndim = int(z["maps"].ndim) - 1
    ckpt = str(meta["checkpoint_id"])
    model = ckpt.rsplit("/epoch-", 1)[0]
    return HeatmapInfo(path, ckpt, model, str(meta["method"]), int(meta.get("epoch") or 0), ndim)


def _read(path: Path) -> tuple[str, Any]:
    if path.suffix == ".parquet":
        return "table", pd.read_parquet(path)
    if path.suffix == ".csv":
        return "table", pd.read_csv(path) if path.stat().st_size else pd.DataFrame()
    if path.suffix == ".json":
        return "doc", json.loads(path.read_text())
    return "text", path.read_text()


def load_stage(layout: StudyLayout, name: str) -> StageData:
    """Read one stage's files; ``ran`` is False (with ``missing``) if a required one is absent."""
    spec = layout.stage_files()[name]
    missing = [f for f in spec["required"] if not layout.path(f).is_file()]
    data = StageData(name=name, ran=not missing, missing=missing)
    if name == "pretrain":
        summaries = layout.ssl_summaries()
        data.ran = bool(summaries)
        data.missing = [] if summaries else [f"{layout.ssl_dir}/<framework>/summary.json"]
        for f in summaries:
            data.docs[f.parent.name] = json.loads(f.read_text())
        return data
    if not data.ran:
        return data
    for rel in (*spec["required"], *spec["optional"]):
        f = layout.path(rel)
        if not f.is_file():
            continue
        kind, value = _read(f)
        key = f.stem if name != "xai" or "evalsets" not in rel else f"evalset_{f.stem}"
        {"table": data.tables, "doc": data.docs, "text": data.texts}[kind][key] = value
    return data


STAGES = (
    "ingest",
    "standardize",
    "difficulty",
    "pretrain",
    "finetune",
    "pseudolabel",
    "classify3d",
    "xai",
)


def load_study(layout: StudyLayout) -> dict[str, StageData]:
    """Every stage's record, in pipeline order."""
    return {name: load_stage(layout, name) for name in STAGES}
