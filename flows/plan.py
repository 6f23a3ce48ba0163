"""``brainxai study plan``: the scale-out plan of a profile, from params + a measured smoke study.

Task counts come from :func:`brainxai.plan.components` (params only). Per-task seconds are
read from a finished smoke study's Prefect task runs (``<study>/.prefect/prefect.db``,
read-only; completed runs only, cache hits excluded) and scaled by each component's work
ratio full / smoke. Writes ``reports/plan/plan_<profile>.csv`` and ``.md``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from brainxai.atomic import to_csv_atomic, write_text_atomic
from brainxai.config import load_params
from brainxai.plan import GPU_STAGES, PlanConfig, components, measured_costs, plan_table


def task_runs_of(study: Path) -> list[dict[str, Any]]:
    """Completed task runs (function name, run name, seconds) of a study's Prefect DB."""
    db = study / ".prefect" / "prefect.db"
    if not db.exists():
        raise FileNotFoundError(f"no Prefect database at {db}: run the smoke study there first")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        df = pd.read_sql(
            "select task_key, name, start_time, end_time from task_run "
            "where state_name = 'Completed' and start_time is not null and end_time is not null",
            con,
        )
    start = pd.to_datetime(df["start_time"], format="ISO8601")
    end = pd.to_datetime(df["end_time"], format="ISO8601")
    return [
        {"task": key.rsplit("-", 1)[0], "name": name, "seconds": float(sec)}
        for key, name, sec in zip(
            df["task_key"], df["name"], (end - start).dt.total_seconds(), strict=True
        )
    ]


def build_plan(
    root: Path,
    profile: str,
    measured_study: Path,
    gpu_tflops: float,
    overrides: list[str] | None = None,
) -> pd.DataFrame:
    """The plan table of ``profile`` with ``overrides`` (``key.path=value``; costs measured
    on ``measured_study``'s smoke run)."""
    full = components(load_params(root / "params.yaml", profile=profile, overrides=overrides))
    smoke = components(load_params(root / "params.yaml", profile="smoke"))
    comps_all = full + smoke
    measured = measured_costs(task_runs_of(measured_study), comps_all)
    return pd.DataFrame(plan_table(full, smoke, measured, gpu_tflops))


def to_markdown(df: pd.DataFrame, profile: str, measured_study: Path, gpu_tflops: float) -> str:
    """The plan as a Markdown table with totals and the assumptions spelled out."""
    cols = [
        "stage",
        "component",
        "device",
        "tasks_full",
        "smoke_s_per_task",
        "work_ratio_per_task",
        "est_cpu_hours_full",
        "est_gpu_hours_full",
        "assumptions",
    ]
    view = df[cols].copy()
    for c in (
        "smoke_s_per_task",
        "work_ratio_per_task",
        "est_cpu_hours_full",
        "est_gpu_hours_full",
    ):
        view[c] = view[c].map(lambda v: "" if pd.isna(v) else f"{v:,.3g}")
    gpu = df[df["stage"].isin(GPU_STAGES)]
    lines = [
        f"# Scale-out plan: profile `{profile}`",
        "",
        f"Per-task seconds: median of the completed (not cached) Prefect task runs of the "
        f"smoke study in `{measured_study}` (2 shared CPU cores), scaled by the work ratio "
        "full / smoke (FLOPs for networks, voxels x iterations for volumes). CPU-hours: "
        "that scaled measurement. **GPU-hours are estimates, not measurements**: FLOPs / "
        f"{gpu_tflops:g} TFLOP/s sustained bf16 (assumed; no GPU was available).",
        "",
        view.to_markdown(index=False),
        "",
        f"Total: **{int(df['tasks_full'].sum()):,} Prefect tasks**; "
        f"est. **{df['est_cpu_hours_full'].sum():,.1f} CPU-hours** if everything ran on "
        f"this machine's class of CPU; GPU stages est. **{gpu['est_gpu_hours_full'].sum():,.1f}"
        f" GPU-hours** (one task per GPU: wall time ~ GPU-hours / number of GPUs when the "
        "tasks of a stage outnumber them).",
        "",
    ]
    return "\n".join(lines)


def write_plan(
    root: Path,
    profile: str,
    measured_study: Path | None = None,
    overrides: list[str] | None = None,
) -> tuple[Path, Path, pd.DataFrame]:
    """Write ``<plan.out_dir>/plan_<profile>.csv|md``; return their paths and the table.

    ``measured_study`` overrides ``plan.measured_study`` (relative paths: to ``root``);
    ``overrides`` (``key.path=value``, as ``--set``) apply to the planned profile.
    """
    params = load_params(root / "params.yaml", profile=profile, overrides=overrides)
    cfg = PlanConfig.from_dict(params.get("plan"))
    study = measured_study or root / cfg.measured_study
    gpu_tflops, out_dir = cfg.gpu_effective_tflops, root / cfg.out_dir
    df = build_plan(root, profile, study, gpu_tflops, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / f"plan_{profile}.csv", out_dir / f"plan_{profile}.md"
    to_csv_atomic(df, csv, index=False)
    write_text_atomic(md, to_markdown(df, profile, study, gpu_tflops))
    return csv, md, df
