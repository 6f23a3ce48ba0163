"""Prefect task around :mod:`brainxai.baseline` (the data-difficulty probe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from brainxai.baseline import BaselineConfig, run_baselines
from brainxai.manifest import read_table
from tasks.caching import code_policy, hashed_outputs


@task(name="difficulty-probe", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs(files_of=lambda r: [])  # writes no file; run_cached needs the wrapper
def difficulty_probe(
    manifest_path: str, manifest_sha256: str, base_dir: str, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Baselines on the manifest's patient-level split; ``manifest_sha256`` keys the cache."""
    manifest = read_table(manifest_path)
    return run_baselines(manifest, Path(base_dir), BaselineConfig.from_dict(cfg))
