"""Stage ``finetune``: label-fraction fine-tuning and evaluation (paper 000's claim that SSL
beats supervised training when labels are scarce; issue 6).

Run: ``brainxai finetune run`` (all steps; the study flow), or step by step as the DVC
stages do: ``brainxai finetune cache`` (steps 1-3), ``brainxai finetune run --init <init>``
(steps 4-5 of one init: DVC ``finetune@<init>``), ``brainxai finetune eval`` (step 6).
Steps:

1. decode every labelled 2D image once (``data/interim/finetune/``);
2. draw the label-fraction subsets of the training split (by patient, stratified per
   tumour group, at least one image per class, nested across fractions, the same for every
   initialisation; :mod:`brainxai.finetune.sampling`) -> ``reports/finetune/subsets.csv``;
3. check leakage before any training (no non-training patient, no near duplicate of a
   test image among the training images) - a violation stops the stage;
4. embed every image once per frozen backbone (linear probe);
5. run every cell (init x protocol x fraction x seed) as a cached Prefect task: a failed
   cell is retried once, then reported (``reports/finetune/runs.csv``, MLflow tag) while
   the others finish;
6. aggregate the successful cells (:mod:`brainxai.evaluation`): summary with patient
   bootstrap CIs, paired tests vs the supervised baseline with Holm correction, the
   label-efficiency plot and the Markdown results table.

Outputs: ``models/finetune/<init>/<run>/epoch-XXXX.pt`` + ``models/finetune/index.parquet``
(checkpoint contract of :mod:`brainxai.finetune.model`), ``reports/finetune/*`` (layout:
:class:`brainxai.finetune.stage.Stage`), ``reports/metrics/finetune*.json``. MLflow: one
nested run per cell under the stage run (``finetune``, or ``finetune@<init>`` step by step).

The calls of every step and the tables they make come from :mod:`brainxai.finetune.stage`;
this module runs the calls as cached Prefect tasks and logs through :mod:`tasks.mlflow_log`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from brainxai.finetune import stage
from brainxai.finetune.stage import Stage, all_inits, backbone_files
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.controls import finetune_control
from tasks.env import study_params
from tasks.finetune import (
    FINGERPRINT_FILE,
    finetune_aggregate,
    finetune_cache,
    finetune_cell,
    finetune_embed,
    gather_reporting,
    torch_threads,
)
from tasks.mlflow_log import log_stage, record_run, stage_run
from tasks.runners import task_runner


def load_stage(profile: str | None, root: str | None, overrides: list[str] | None = None) -> Stage:
    """The stage's params, paths and configs (profile and overrides applied)."""
    return Stage.from_params(*study_params(profile, root, overrides))


def _files(res: dict[str, Any]) -> list[str]:
    return res["files"]


def _cache(st: Stage) -> dict[str, Any]:
    """Step 1: the decoded cache (rebuilt when another configuration overwrote it since)."""
    call = stage.cache_call(st)
    (res,) = run_cached(finetune_cache, _files, [call], root=st.paths.root)
    on_disk = (Path(res["cache_dir"]) / FINGERPRINT_FILE).read_text().strip()
    if on_disk != res["fingerprint"]:  # another configuration rebuilt the cache since
        fresh = finetune_cache.with_options(refresh_cache=True)
        (res,) = run_cached(fresh, _files, [call], root=st.paths.root)
    return res


def _open_cache(st: Stage) -> dict[str, Any]:
    """The decoded cache ``finetune cache`` wrote (read, never rebuilt, by one init's step)."""
    cache_dir = st.paths.root / st.cfg.cache_dir
    fp = cache_dir / FINGERPRINT_FILE
    if not fp.is_file():
        raise FileNotFoundError(f"{fp} not found: run `brainxai finetune cache` first")
    return {"cache_dir": str(cache_dir), "fingerprint": fp.read_text().strip()}


def prepare(st: Stage) -> dict[str, Any]:
    """Steps 1-3: decode the images once, draw the label-fraction subsets and check
    leakage before any training (:func:`brainxai.finetune.stage.prepare`).
    Metrics: ``reports/metrics/finetune_cache.json``."""
    logger = get_run_logger()
    cache = _cache(st)
    for f in cache["failures"]:
        logger.warning("not decoded, left out of every run: %s (%s)", f["key"], f["reason"])
    prep = stage.prepare(st, cache)
    log_stage(prep.pop("metrics"))
    return {**prep, "cache_result": cache}


def train_init(
    st: Stage, init: str, cache: dict[str, Any], subsets: pd.DataFrame
) -> dict[str, Any]:
    """Steps 4-5 for one init: its frozen-backbone embeddings (probe) and every cell
    (protocol x fraction x seed), each a cached task, one nested MLflow run per cell. Writes
    the init's ``runs.csv``, ``predictions.parquet``, checkpoint ``index.parquet`` and
    ``reports/metrics/finetune_<init>.json``; returns that summary."""
    logger = get_run_logger()
    cfg, spec, root = st.cfg, st.spec, st.paths.root
    models, reports = st.init_dirs(init)
    reports.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    backbones = backbone_files(cfg, spec, root, models / "backbone", inits=[init])
    sha = {i: stage.backbone_sha(p) for i, p in backbones.items()}
    emb_calls = stage.embed_calls(cfg, spec, backbones, sha, cache, models / "embeddings")
    embedded = gather_reporting(finetune_embed, _files, emb_calls, root)
    calls, skipped = stage.cell_calls(
        cfg, spec, backbones, sha, cache, subsets, embedded, models, reports / "runs"
    )
    results = gather_reporting(finetune_cell, _files, calls, root)
    for call, res, err in results:
        record_run(**stage.cell_record(call, res, err), artifact_path="confusion")
    summary, status = stage.summarise_init(st, init, results, skipped)
    for r in status[status["status"] == "failed"].itertuples():
        logger.error("run %s failed: %s", r.run, r.error)
    publish_stage("finetune", st.paths.metrics / f"finetune_{init}.json")
    return summary


def run_controls(st: Stage, cache: dict[str, Any], subsets: pd.DataFrame) -> dict[str, Any]:
    """The planted controls (:mod:`brainxai.finetune.controls`): one cached task each, then
    the pass / fail / uninformative table ``reports/finetune/controls/controls.csv``, the
    numbers ``controls.json`` and ``reports/metrics/finetune_controls.json``."""
    logger = get_run_logger()
    calls = stage.control_calls(st, cache, subsets)
    results = gather_reporting(finetune_control, _files, calls, st.paths.root)
    for call, res, err in results:
        if res is None:
            logger.error("control %s failed: %s", call["control"], err)
    out = stage.summarise_controls(st, results)
    log_stage(out.metrics, artifacts=out.artifacts, artifact_path="finetune/controls")
    return out.summary


def evaluate(st: Stage) -> dict[str, Any]:
    """Step 6: gather every init's cells and aggregate them (:mod:`brainxai.evaluation`):
    summary with patient-bootstrap CIs, paired tests vs the baseline init with Holm
    correction, the label-efficiency plot + its tidy table (``label_efficiency.csv``, the
    DVC plot), the Markdown table; the combined ``runs.csv``, ``predictions.parquet`` and
    checkpoint index (the xai stage's input); ``reports/metrics/finetune.json``."""
    combined = stage.combine_inits(st)
    agg = None
    if combined.predictions is not None:
        call = stage.aggregate_call(st, combined.predictions)
        (agg,) = run_cached(finetune_aggregate, _files, [call], root=st.paths.root)
    out = stage.summarise(st, combined, agg)
    log_stage(artifacts=out.artifacts, artifact_path="finetune")
    log_stage(out.metrics, tags=out.tags)
    publish_stage("finetune", st.paths.metrics / "finetune.json", st.reports.glob("*.png"))
    return out.summary


def _run_all(st: Stage) -> dict[str, Any]:
    """Every step: the cache, each init's cells, the statistics, then the controls."""
    with stage_run("finetune", st.stage_params()):
        prep = prepare(st)
        backbone_files(st.cfg, st.spec, st.paths.root, st.models / "imagenet" / "backbone")
        for i in all_inits(st.cfg):
            train_init(st, i, prep["cache_result"], prep["subsets"])
        summary = evaluate(st)
        if st.cfg.controls.run:
            summary["controls"] = run_controls(st, prep["cache_result"], prep["subsets"])
    stage.raise_if_failed(st.cfg, summary, st.reports / stage.RUNS_FILE)
    return summary


def run_finetune_stage(
    profile: str | None = None,
    root: str | None = None,
    step: str = "all",
    init: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """The stage's body (runs inside the Prefect flow :func:`finetune_flow`).

    ``step``: ``all`` (every init, the statistics, then the planted controls: the study
    flow), ``cache`` (steps 1-3), ``init`` (one init's cells: DVC ``finetune@<init>``),
    ``eval`` (step 6), ``controls`` (the planted controls: DVC ``finetune_controls``).
    """
    st = load_stage(profile, root, overrides)
    torch_threads(st.cfg.torch_threads)
    if step == "init":
        if init not in all_inits(st.cfg):
            raise ValueError(f"unknown init {init!r}; finetune.inits: {all_inits(st.cfg)}")
        with stage_run(f"finetune@{init}", st.stage_params(init=init)):
            summary = train_init(st, init, _open_cache(st), stage.read_subsets(st))
        stage.raise_if_failed(st.cfg, summary, st.init_dirs(init)[1] / stage.RUNS_FILE)
        return summary
    if step == "cache":
        with stage_run("finetune_cache", st.stage_params()):
            prep = prepare(st)
        return {k: prep[k] for k in ("cache", "leakage")}
    if step == "eval":
        with stage_run("finetune_eval", st.stage_params()):
            return evaluate(st)
    if step == "controls":
        with stage_run("finetune_controls", st.stage_params()):
            return run_controls(st, _open_cache(st), stage.read_subsets(st))
    if step != "all":
        raise ValueError(f"unknown step {step!r}: all | cache | init | eval | controls")
    return _run_all(st)


@flow(name="finetune", log_prints=True)
def _finetune(
    profile: str | None = None,
    root: str | None = None,
    step: str = "all",
    init: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    return run_finetune_stage(profile=profile, root=root, step=step, init=init, overrides=overrides)


def finetune_flow(
    profile: str | None = None,
    root: str | None = None,
    step: str = "all",
    init: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Run the stage (or one ``step`` of it) as a Prefect flow with the task runner of
    ``finetune.runner``.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        step: all (every init, the statistics, the controls) | cache | init | eval |
            controls (the DVC stages finetune_cache, finetune@<init>, finetune_eval,
            finetune_controls).
        init: the init of step ``init`` (one of finetune.inits).
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs.
    """
    root_path, params = study_params(profile, root, overrides)
    runner = task_runner({"runner": params["finetune"].get("runner", params["runner"])})
    name = f"finetune-{step}" + (f"-{init}" if init else "")
    return _finetune.with_options(task_runner=runner, flow_run_name=name)(
        profile=profile, root=str(root_path), step=step, init=init, overrides=overrides
    )


if __name__ == "__main__":
    import typer

    typer.run(finetune_flow)
