"""Where each stage reads and writes, relative to the study root.

Layout follows cookiecutter-data-science: ``data/raw`` (immutable inputs and the
generated cohort), ``data/interim`` (per-source ingestion tables, DICOM→NIfTI
conversions), ``data/processed`` (the split manifest every later stage reads),
``reports`` (data card, metrics, figures). The relative locations come from the
``paths`` section of ``params.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StudyPaths:
    root: Path
    raw: Path
    interim: Path
    processed: Path
    reports: Path

    @classmethod
    def from_params(cls, root: Path, params: Mapping[str, Any]) -> StudyPaths:
        p = params["paths"]
        root = Path(root).resolve()
        return cls(
            root=root,
            raw=root / p["raw"],
            interim=root / p["interim"],
            processed=root / p["processed"],
            reports=root / p["reports"],
        )

    # the embedded synthetic data set
    @property
    def synth(self) -> Path:
        return self.raw / "synth"

    @property
    def synth3d(self) -> Path:
        return self.synth / "cohort3d"

    @property
    def synth2d(self) -> Path:
        return self.synth / "kaggle2d"

    @property
    def synth2d_meta(self) -> Path:
        return self.synth / "kaggle2d_meta"

    # ingestion
    @property
    def manifest(self) -> Path:
        return self.processed / "manifest.parquet"

    @property
    def quarantine(self) -> Path:
        return self.processed / "quarantine.parquet"

    @property
    def datacard_md(self) -> Path:
        return self.reports / "datacard.md"

    @property
    def datacard_json(self) -> Path:
        return self.reports / "datacard.json"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics"

    def rel(self, path: Path) -> str:
        """Posix path relative to the root (how manifests store paths)."""
        return Path(path).resolve().relative_to(self.root).as_posix()
