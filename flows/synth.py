"""Stage ``synth``: generate the embedded synthetic cohort (3D BIDS + 2D Kaggle layout).

Run: ``brainxai data synth [--profile smoke]`` or ``python -m flows.synth``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.paths import StudyPaths
from brainxai.synth import stage
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.synth import finalize, plan_subjects, plant_faults, write_shard


def _export(kind: str, params: dict[str, Any], paths: StudyPaths) -> dict[str, Any]:
    """Write one export (its shards, then its cohort files, then the planted faults) and
    prune what an older config left; return its counts."""
    cfg, seed, root = params["synth"], int(params["seed"]), paths.root
    out_dir, meta_dir = {"cohort3d": (paths.synth3d, None),
                         "kaggle2d": (paths.synth2d, paths.synth2d_meta)}[kind]  # fmt: skip
    n = plan_subjects(kind, cfg, seed)
    size = int(params["runner"]["shard_size"])
    calls = stage.shard_calls(kind, cfg, seed, n, size, out_dir, meta_dir)
    shards = run_cached(write_shard, lambda r: r["files"], calls, root=root)
    call = stage.finalize_call(kind, cfg, seed, shards, out_dir, meta_dir)
    (done,) = run_cached(finalize, lambda r: r["files"], [call], root=root)
    written = {Path(f).resolve() for s in [*shards, done] for f in s["files"]}
    done = {k: v for k, v in done.items() if k != "files"}
    if kind == "kaggle2d" and any(params["synth_faults"].values()):
        # planted after generation, before pruning; cached like a shard
        call = stage.faults_call(cfg, seed, params["synth_faults"], out_dir, meta_dir)
        (faults,) = run_cached(plant_faults, lambda r: r["files"], [call], root=root)
        written |= {Path(f).resolve() for f in faults["files"]}
        done["faults"] = faults["planted"]
    for d in (out_dir, meta_dir):
        if d is not None and (removed := stage.prune_stale(d, stage.keep(d, written))):
            get_run_logger().info("pruned %d stale files from %s", len(removed), d)
    return done


@flow(name="synth", log_prints=True)
def synth_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Generate both exports, sharded over subjects, cached per shard.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    summary: dict[str, Any] = {}
    run_params = {"seed": int(params["seed"]), "synth": params["synth"],
                  "synth_faults": params["synth_faults"]}  # fmt: skip
    with stage_run("synth", {**run_params, "runner": params["runner"]}):
        t0 = time.perf_counter()
        for kind in stage.KINDS:
            summary[kind] = _export(kind, params, paths)
        seconds = time.perf_counter() - t0
        summary["seconds"] = round(seconds, 2)
        tables = (paths.synth3d / "participants.tsv", paths.synth2d_meta / "subjects.csv")
        log_stage(
            stage.metrics(summary, seconds),
            artifacts=[f for f in tables if f.exists()],
            artifact_path="synth",
        )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    counts = {k: v for k, v in summary.items() if k != "seconds"}
    save_json_atomic(counts, paths.metrics / "synth.json")
    publish_stage("synth", paths.metrics / "synth.json")
    get_run_logger().info("synthetic cohort: %s", summary)
    return summary


if __name__ == "__main__":
    import typer

    typer.run(synth_flow)
