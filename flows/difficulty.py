"""Stage ``difficulty``: quick supervised baselines tell whether the data is neither trivial
nor hopeless (see :mod:`brainxai.baseline`). Run: ``brainxai data difficulty``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic
from brainxai.hashing import file_sha256
from brainxai.paths import StudyPaths
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.difficulty import difficulty_probe
from tasks.env import study_params
from tasks.mlflow_log import flatten, log_stage, stage_run


@flow(name="difficulty", log_prints=True)
def difficulty_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Quick supervised baselines on the patient split: neither trivial nor hopeless?

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    cfg = {**params["difficulty"], "seed": int(params["seed"])}
    with stage_run("difficulty", {"difficulty": cfg}):
        call = {
            "manifest_path": str(paths.manifest),
            "manifest_sha256": file_sha256(paths.manifest),
            "base_dir": str(root_path),
            "cfg": cfg,
        }
        (result,) = run_cached(difficulty_probe, lambda r: [], [call], root=root_path)
        for dataset, entry in sorted(result.items()):
            if "skipped" in entry:
                get_run_logger().warning("difficulty: %s skipped: %s", dataset, entry["skipped"])
        numeric = {k: v for k, v in flatten(result).items() if _is_number(v)}
        log_stage({f"difficulty.{k}": float(v) for k, v in numeric.items()})
    paths.metrics.mkdir(parents=True, exist_ok=True)
    save_json_atomic(result, paths.metrics / "difficulty.json")
    publish_stage("difficulty", paths.metrics / "difficulty.json")
    return result


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    import typer

    typer.run(difficulty_flow)
