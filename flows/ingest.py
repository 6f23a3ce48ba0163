"""Stage ``ingest``: every configured source → one split manifest, quarantine and data card.

Run: ``brainxai data ingest [--profile smoke]`` or ``python -m flows.ingest``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.ingest import stage
from brainxai.paths import StudyPaths
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.ingest import ingest_source, split_and_card
from tasks.mlflow_log import log_stage, stage_run


@flow(name="ingest", log_prints=True)
def ingest_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Ingest sources in parallel, then split by patient and write the data card.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    section = params["ingest"]
    logger = get_run_logger()
    stale = stage.prepare(section, paths)  # before any work: sources, partial files
    if stale:  # a run killed mid-write left them; they would change DVC's hash of the outs
        logger.warning("removed %d partial file(s) of a killed run: %s", len(stale), stale[:5])
    sid = stage.dicom_salt_id(section, paths)
    with stage_run("ingest", {"ingest": section, "split": params["split"]}):
        calls = stage.plan(section, paths, sid)
        sources = run_cached(ingest_source, lambda r: r["files"], calls, root=root_path)
        for s in sources:
            logger.info("%s: found %d, ingested %d, quarantined %d",
                        s["name"], s["found"], s["ingested"], s["quarantined"])  # fmt: skip
        call = stage.split_call(section, params["split"], paths, sources)
        (result,) = run_cached(split_and_card, lambda r: r["files"], [call], root=root_path)
        for warning in result["split_warnings"]:  # allowed by split.allow_empty_splits
            logger.warning("split too small: %s", warning)
        log_stage(stage.metrics(result), artifacts=stage.outputs(paths), artifact_path="ingest")
    paths.metrics.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in result.items() if k != "files"}
    save_json_atomic(out, paths.metrics / "ingest.json")
    publish_stage("ingest", paths.metrics / "ingest.json")
    return out


if __name__ == "__main__":
    import typer

    typer.run(ingest_flow)
