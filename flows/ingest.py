"""Stage ``ingest``: every configured source → one split manifest, quarantine and data card.

Run: ``brainxai data ingest [--profile smoke]`` or ``python -m flows.ingest``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import remove_stale_temps, remove_stale_temps_of, save_json_atomic
from brainxai.hashing import file_sha256
from brainxai.ingest import IngestConfig
from brainxai.ingest.dicom import dicom_salt, salt_id
from brainxai.ingest.sources import SourceError, check_sources, dvc_uncovered
from brainxai.paths import StudyPaths
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.ingest import ingest_source, split_and_card, tree_fingerprint
from tasks.mlflow_log import log_stage, stage_run


@flow(name="ingest", log_prints=True)
def ingest_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Ingest sources in parallel, then split by patient and write the data card.

    Args:
        profile: params.yaml profile (smoke | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    icfg = params["ingest"]
    out_dir = paths.interim / "ingest"
    logger = get_run_logger()
    check_sources(icfg["sources"], root_path)  # before any work: layouts, roots, names
    own = (paths.manifest, paths.quarantine, paths.datacard_md, paths.datacard_json)
    stale = remove_stale_temps(out_dir) + remove_stale_temps_of(*own, paths.metrics / "ingest.json")
    if stale:  # a run killed mid-write left them; they would change DVC's hash of the outs
        logger.warning("removed %d partial file(s) of a killed run: %s", len(stale), stale[:5])
    dvc_yaml = root_path / "dvc.yaml"
    uncovered = dvc_uncovered(icfg["sources"], dvc_yaml) if dvc_yaml.is_file() else []
    if uncovered:
        raise SourceError(
            f"add these source paths to the ingest stage deps of {dvc_yaml}: "
            f"{uncovered} (else DVC does not re-run ingestion when they change)"
        )
    conf = IngestConfig.from_dict(icfg["config"])
    has_dicom = any(src["layout"] == "dicom" for src in icfg["sources"])
    sid = salt_id(dicom_salt(conf, root_path)) if has_dicom else ""  # refuses without a salt
    with stage_run("ingest", {"ingest": icfg, "split": params["split"]}):
        calls = []
        for src in icfg["sources"]:
            src_root = root_path / src["root"]
            sidecar = root_path / src["sidecar"] if src.get("sidecar") else None
            labels_csv = root_path / src["labels_csv"] if src.get("labels_csv") else None
            calls.append(
                {
                    "name": src["name"],
                    "layout": src["layout"],
                    "root": str(src_root),
                    "cfg": icfg["config"],
                    "base_dir": str(root_path),
                    "out_dir": str(out_dir),
                    "fingerprint": tree_fingerprint(src_root, sidecar, labels_csv),
                    "sidecar": str(sidecar) if sidecar else None,
                    "labels_csv": str(labels_csv) if labels_csv else None,
                    "salt_id": sid if src["layout"] == "dicom" else "",
                }
            )
        sources = run_cached(ingest_source, lambda r: r["files"], calls, root=root_path)
        for s in sources:
            logger.info(
                "%s: found %d, ingested %d, quarantined %d",
                s["name"],
                s["found"],
                s["ingested"],
                s["quarantined"],
            )
        (result,) = run_cached(
            split_and_card,
            lambda r: r["files"],
            [
                {
                    "sources": sources,
                    "ingest_cfg": icfg["config"],
                    "split_cfg": params["split"],
                    "manifest_path": str(paths.manifest),
                    "quarantine_path": str(paths.quarantine),
                    "card_md": str(paths.datacard_md),
                    "card_json": str(paths.datacard_json),
                    "table_hashes": [file_sha256(s["manifest"]) for s in sources]
                    + [file_sha256(s["quarantine"]) for s in sources],
                }
            ],
            root=root_path,
        )
        for warning in result["split_warnings"]:  # allowed by split.allow_empty_splits
            logger.warning("split too small: %s", warning)
        metrics = {
            "ingest.datasets_with_empty_splits": len(result["split_warnings"]),
            "ingest.found": result["found"],
            "ingest.ingested": result["ingested"],
            "ingest.quarantined": result["quarantined"],
            "ingest.subjects": result["subjects"],
            **{f"ingest.split.{k}": v for k, v in result["per_split"].items()},
            **{f"ingest.quarantine.{k}": v for k, v in result["quarantine_reasons"].items()},
        }
        log_stage(
            metrics,
            artifacts=(paths.manifest, paths.quarantine, paths.datacard_md, paths.datacard_json),
            artifact_path="ingest",
        )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    out = {k: v for k, v in result.items() if k != "files"}
    save_json_atomic(out, paths.metrics / "ingest.json")
    publish_stage("ingest", paths.metrics / "ingest.json")
    return out


if __name__ == "__main__":
    import typer

    typer.run(ingest_flow)
