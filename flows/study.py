"""The study flow: every stage that exists, in order, under one MLflow parent run.

Stages so far: ``synth`` (embedded cohort) → ``ingest`` (manifest, quarantine,
patient-level splits, data card) → ``difficulty`` (quick supervised baselines).
Each later stage adds itself to :data:`STAGES`.
Run: ``brainxai study run --profile smoke``; ``dvc repro`` runs the same stages
one process each (see ``dvc.yaml``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow

from flows.classify3d import classify3d_flow
from flows.difficulty import difficulty_flow
from flows.finetune import finetune_flow
from flows.ingest import ingest_flow
from flows.pretrain import pretrain_flow
from flows.pseudolabel import pseudolabel_flow
from flows.register import register_flow
from flows.report import report_flow
from flows.standardize import standardize_flow
from flows.synth import synth_flow
from flows.xai import xai_flow
from tasks.env import study_params, study_root
from tasks.mlflow_log import log_stage, study_run

STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "synth": synth_flow,
    "ingest": ingest_flow,
    "standardize": standardize_flow,
    "difficulty": difficulty_flow,
    "pretrain": pretrain_flow,
    "finetune": finetune_flow,
    "pseudolabel": pseudolabel_flow,
    "classify3d": classify3d_flow,
    "xai": xai_flow,
    "register": register_flow,
    "report": report_flow,
}


@flow(name="study", log_prints=True)
def study_flow(
    profile: str | None = None,
    root: str | None = None,
    stages: list[str] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Run the chosen stages (default: all) in order; return each stage's summary.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        stages: only these stages, in pipeline order (synth, ingest, standardize, difficulty,
            pretrain, finetune, pseudolabel, classify3d, xai, ...); empty: all of them.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root = str(Path(root) if root else study_root())
    chosen = stages or list(STAGES)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; known: {list(STAGES)}")
    study_params(profile, root, overrides)  # a bad override fails before any stage runs
    results: dict[str, Any] = {}
    with study_run(profile, Path(root), entry="prefect"):  # the parent of every stage run
        for name in chosen:
            t0 = time.perf_counter()
            results[name] = STAGES[name](profile=profile, root=root, overrides=overrides)
            log_stage({f"study.{name}.seconds": time.perf_counter() - t0})
    return results


if __name__ == "__main__":
    import typer

    typer.run(study_flow)
