"""Stage ``report``: the self-contained HTML study report (issue 10).

Reads every stage's outputs (a stage that did not run gets a "not run" section), writes
``reports/report/index.html`` and the same figures as PNG under ``reports/report/figures``.
Run: ``brainxai report [--profile P] [--out DIR]`` or ``python -m flows.report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from brainxai.report.sources import report_params
from tasks.caching import run_cached
from tasks.env import study_params
from tasks.mlflow_log import log_stage, stage_run
from tasks.report import inputs_fingerprint, write_report


@flow(name="report", log_prints=True)
def report_flow(
    profile: str | None = None,
    root: str | None = None,
    out: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Build the report from the study at ``root`` (cached on its inputs' content).

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        out: output folder of index.html and figures/; empty: params report.out_dir.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    params = report_params(params)
    logger = get_run_logger()
    with stage_run("report", params):
        call = {
            "root": str(root_path),
            "params": params,
            "fingerprint": inputs_fingerprint(root_path, params),
            "out": str(Path(out).resolve()) if out else None,
        }
        (result,) = run_cached(write_report, lambda r: r["files"], [call], root=root_path)
        log_stage(
            {
                "report.seconds": float(result["seconds"]),
                "report.html_bytes": float(result["html_bytes"]),
                "report.figures": float(len(result["figures"])),
                "report.sections_not_run": float(sum(not v for v in result["sections"].values())),
            },
            artifacts=[result["html"]],
            artifact_path="report",
        )
    summary = {k: v for k, v in result.items() if k not in ("files", "figures")}
    summary["figures"] = len(result["figures"])
    logger.info("report: %s", summary)
    return summary


if __name__ == "__main__":
    import typer

    typer.run(report_flow)
