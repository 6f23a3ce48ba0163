"""Stage ``synth``: generate the embedded synthetic cohort (3D BIDS + 2D Kaggle layout).

Run: ``brainxai data synth [--profile smoke]`` or ``python -m flows.synth``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.config import params_digest
from brainxai.paths import StudyPaths
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.synth import finalize, plan_subjects, plant_faults, write_shard

KINDS = ("cohort3d", "kaggle2d")


def _shards(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def prune_stale(directory: Path, keep: set[Path]) -> list[Path]:
    """Delete files under ``directory`` not written by this run (left by an older config)."""
    removed = []
    if not directory.exists():
        return removed
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f.resolve() not in keep:
            f.unlink()
            removed.append(f)
    for d in sorted((d for d in directory.rglob("*") if d.is_dir()), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return removed


@flow(name="synth", log_prints=True)
def synth_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Generate both exports, sharded over subjects, cached per shard.

    Args:
        profile: params.yaml profile (smoke | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    cfg, seed = params["synth"], int(params["seed"])
    shard_size = int(params["runner"]["shard_size"])
    logger = get_run_logger()
    dirs = {
        "cohort3d": (paths.synth3d, None),
        "kaggle2d": (paths.synth2d, paths.synth2d_meta),
    }
    summary: dict[str, Any] = {}
    run_params = {"seed": seed, "synth": cfg, "synth_faults": params["synth_faults"]}
    with stage_run("synth", {**run_params, "runner": params["runner"]}):
        t0 = time.perf_counter()
        for kind in KINDS:
            out_dir, meta_dir = dirs[kind]
            n = plan_subjects(kind, cfg, seed)
            calls = [
                {
                    "kind": kind,
                    "cfg": cfg,
                    "seed": seed,
                    "indices": idx,
                    "out_dir": str(out_dir),
                    "meta_dir": str(meta_dir) if meta_dir else None,
                }
                for idx in _shards(n, shard_size)
            ]
            shards = run_cached(write_shard, lambda r: r["files"], calls, root=root_path)
            (done,) = run_cached(
                finalize,
                lambda r: r["files"],
                [
                    {
                        "kind": kind,
                        "cfg": cfg,
                        "seed": seed,
                        "shards": shards,
                        "out_dir": str(out_dir),
                        "meta_dir": str(meta_dir) if meta_dir else None,
                    }
                ],
                root=root_path,
            )
            written = {Path(f).resolve() for s in [*shards, done] for f in s["files"]}
            done = {k: v for k, v in done.items() if k != "files"}
            if kind == "kaggle2d" and any(params["synth_faults"].values()):
                # planted after generation, before pruning; cached like a shard
                (faults,) = run_cached(
                    plant_faults,
                    lambda r: r["files"],
                    [
                        {
                            "image_root": str(out_dir),
                            "counts": params["synth_faults"],
                            "seed": seed,
                            "faults_csv": str(meta_dir / "faults.csv"),
                            "synth_key": params_digest({"synth": cfg, "seed": seed}),
                        }
                    ],
                    root=root_path,
                )
                written |= {Path(f).resolve() for f in faults["files"]}
                done["faults"] = faults["planted"]
            for d in (out_dir, meta_dir):
                if d is None:
                    continue
                # cohort-level files written by finalize are kept too
                keep = written | {
                    f.resolve()
                    for f in d.glob("*")
                    if f.is_file() and f.suffix in {".tsv", ".json", ".csv"}
                }
                removed = prune_stale(d, keep)
                if removed:
                    logger.info("pruned %d stale files from %s", len(removed), d)
            summary[kind] = done
        seconds = time.perf_counter() - t0
        summary["seconds"] = round(seconds, 2)
        tables = (paths.synth3d / "participants.tsv", paths.synth2d_meta / "subjects.csv")
        log_stage(
            {
                "synth.subjects_3d": summary["cohort3d"]["subjects"],
                "synth.subjects_2d": summary["kaggle2d"]["subjects"],
                "synth.images_2d": summary["kaggle2d"]["images"],
                "synth.seconds": seconds,
            },
            artifacts=[f for f in tables if f.exists()],
            artifact_path="synth",
        )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    counts = {k: v for k, v in summary.items() if k != "seconds"}
    save_json_atomic(counts, paths.metrics / "synth.json")
    publish_stage("synth", paths.metrics / "synth.json")
    logger.info("synthetic cohort: %s", summary)
    return summary


if __name__ == "__main__":
    import typer

    typer.run(synth_flow)
