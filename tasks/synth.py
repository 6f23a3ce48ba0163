"""Prefect tasks around :mod:`brainxai.synth` (the embedded synthetic cohort).

Work is sharded by subject: each shard task re-plans the cohort (cheap and
deterministic) and writes its subjects, so a shard's cache key is just
(kind, config, seed, subject indices, output dirs, generator code). Bad data is
not retried; a shard retries only on transient I/O while writing (:mod:`tasks.transient`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from brainxai import synth
from brainxai.synth.cohort import TRUTH_DIR
from tasks.caching import code_policy, hashed_outputs
from tasks.transient import (
    TRANSIENT_RETRIES,
    TRANSIENT_RETRY_DELAYS_S,
    inject_fault,
    retry_on_transient_io,
)


def _plan(kind: str, cfg: synth.SynthConfig, seed: int) -> list[synth.SubjectSpec]:
    if kind == "cohort3d":
        return synth.plan_cohort3d(cfg, seed)
    if kind == "kaggle2d":
        return synth.plan_kaggle2d(cfg, seed)
    raise ValueError(f"unknown synthetic export {kind!r}")


@task(name="synth-plan", cache_policy=code_policy(__name__), persist_result=True)
def plan_subjects(kind: str, cfg: dict[str, Any], seed: int) -> int:
    """Number of subjects the export will hold."""
    return len(_plan(kind, synth.SynthConfig.from_dict(cfg), seed))


@task(
    name="synth-shard",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="synth-{kind}-{indices[0]}",
    retries=TRANSIENT_RETRIES,
    retry_delay_seconds=TRANSIENT_RETRY_DELAYS_S,
    retry_condition_fn=retry_on_transient_io,
)
@hashed_outputs
def write_shard(
    kind: str,
    cfg: dict[str, Any],
    seed: int,
    indices: list[int],
    out_dir: str,
    meta_dir: str | None = None,
) -> dict[str, Any]:
    """Write the subjects ``indices`` of one export; return their summaries / rows."""
    inject_fault("synth-shard", f"{kind}-{indices[0]}")  # no-op unless $BRAINXAI_FAULTS
    conf = synth.SynthConfig.from_dict(cfg)
    specs = _plan(kind, conf, seed)
    out: dict[str, Any] = {"kind": kind, "indices": indices, "items": [], "files": []}
    for i in indices:
        spec = specs[i]
        if kind == "cohort3d":
            summary = synth.write_subject3d(spec, Path(out_dir), conf)
            out["items"].append(summary)
        else:
            rows = synth.write_subject2d(spec, Path(out_dir), Path(meta_dir or out_dir), conf)
            out["items"].extend(rows)
    out["files"] = _files_of(kind, out["items"], out_dir, meta_dir)
    return out


def _files_of(kind: str, items: list[dict], out_dir: str, meta_dir: str | None) -> list[str]:
    if kind == "cohort3d":
        return [str(Path(out_dir) / rel) for it in items for rel in it["files"].values()]
    return [str(Path(out_dir) / r["path"]) for r in items] + [
        str(Path(meta_dir or out_dir) / r["mask_path"]) for r in items if r.get("mask_path")
    ]


@task(name="synth-finalize", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def finalize(
    kind: str,
    cfg: dict[str, Any],
    seed: int,
    shards: list[dict[str, Any]],
    out_dir: str,
    meta_dir: str | None = None,
) -> dict[str, Any]:
    """Write the cohort-level files (participants.tsv / subjects.csv) from all shards."""
    conf = synth.SynthConfig.from_dict(cfg)
    items = [it for s in sorted(shards, key=lambda s: s["indices"][0]) for it in s["items"]]
    if kind == "cohort3d":
        specs = _plan(kind, conf, seed)
        synth.finalize_cohort3d(Path(out_dir), specs, items, conf, seed)
        files = [
            Path(out_dir) / "participants.tsv",
            Path(out_dir) / "dataset_description.json",
            Path(out_dir) / TRUTH_DIR / "dataset_description.json",  # else pruned as stale
        ]
        return {"kind": kind, "subjects": len(specs), "files": [str(f) for f in files]}
    csv_path = synth.finalize_kaggle2d(Path(meta_dir or out_dir), items)
    return {
        "kind": kind,
        "images": len(items),
        "subjects": len({r["subject"] for r in items}),
        "files": [str(csv_path)],
    }


@task(name="plant-faults", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def plant_faults(
    image_root: str, counts: dict[str, int], seed: int, faults_csv: str, synth_key: str
) -> dict[str, Any]:
    """Plant known bad files into the 2D tree (see :mod:`brainxai.faults`).

    ``synth_key`` (config digest of the generation) is only there for the cache key.
    """
    from brainxai import faults

    planted = faults.plant_faults(Path(image_root), counts, seed)
    faults.write_faults(planted, Path(faults_csv))
    files = [str(Path(image_root) / f.path) for f in planted] + [faults_csv]
    return {"planted": len(planted), "files": files}
