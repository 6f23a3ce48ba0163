"""Stage ``xai``: per-checkpoint explanation tracking (paper 004) on the checkpoints the
training stages log (fine-tuning: ``models/finetune/index.parquet``; 3D classifier:
``models/classify3d/index.parquet``; a missing index skips that family and says so).

Run: ``brainxai xai track [--profile smoke]``. For every selected checkpoint
(``xai.select``) and method (``xai.methods``) one cached task writes float16 heatmaps of
the evaluation images (``xai.eval_split``, at most ``xai.max_images`` per family, classes
taking turns) to ``data/interim/xai/heatmaps/<run>/``. Then, from those files:

* ``reports/xai/trajectory.parquet`` (+ ``.csv``): one row per (run, method, epoch, class)
  and a global row (``klass = -1``): C-Score, gold-list size, support, AUC, accuracy and
  correctness against the lesion masks (:mod:`brainxai.xai.trajectory`);
* ``reports/xai/dissociations.md``: paper 004's three AUC–consistency dissociations;
* ``reports/xai/sensitivity.csv``: τ and γ sweeps at each run's final checkpoint;
* ``reports/xai/randomisation.csv``: model-parameter randomisation check, final checkpoints;
* ``reports/xai/faithfulness.csv``: deletion / insertion AUC per checkpoint and method, and
  of a random-ranking control (:mod:`brainxai.xai.faithfulness`; also on the trajectory's
  global rows) - "faithful" beside "consistent" (C-Score) and "correct" (localisation);
* ``reports/xai/plots/<run>__<method>.png``: C-Score and AUC per class vs epoch, gold sizes,
  and the transfer → fine-tuning boundary of a two-phase run (paper 004);
* ``reports/xai/quarantine.csv``: checkpoints that are missing or do not load;
* ``reports/metrics/xai.json``: the headline numbers.

MLflow: a stage run with a nested run per model (``xai-<run>``): metrics with
``step = epoch``, the randomisation results and the model's plots as artifacts.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from brainxai.atomic import save_json_atomic, to_csv_atomic, to_parquet_atomic, write_text_atomic
from brainxai.hashing import file_sha256
from brainxai.jsonio import write_json
from brainxai.paths import StudyPaths
from brainxai.xai.checkpoints import (
    checkpoint_fingerprint,
    loader_module,
    read_index,
    select_checkpoints,
)
from brainxai.xai.evalset import EvalSet, eval_masks, select_eval_2d, select_eval_3d
from brainxai.xai.faithfulness import SCORE_COLUMNS, faithfulness_summary
from brainxai.xai.stage_config import FamilyConfig, XaiConfig
from brainxai.xai.stage_tables import (
    RUN_COLUMNS,
    HeatmapFile,
    final_files,
    final_sensitivity,
    headline,
    stage_trajectory,
    with_faithfulness,
    with_phases,
)
from brainxai.xai.trajectory import CORRECTNESS, GLOBAL, dissociation_report, dissociations
from brainxai.xai.trajectory_plots import plot_trajectory
from tasks.artifacts import publish_stage
from tasks.caching import package_hash, run_cached
from tasks.env import study_params
from tasks.mlflow_log import child_run, log_stage, log_steps, stage_run
from tasks.runners import task_runner
from tasks.xai import explain_task, faithfulness_task, randomisation_task

QUARANTINE_COLUMNS = ["family", "run", "epoch", "path", "reason"]
FAITHFULNESS_COLUMNS = ["family", "run", "epoch", "method", "checkpoint", "n", "steps",
                        "baseline", *SCORE_COLUMNS]  # fmt: skip
RANDOMISATION_KEYS = ("max_images", "seed", "threshold", "similarity")


def _metric_name(*parts: str) -> str:
    """MLflow-safe metric name (``+`` → ``p``, other odd characters → ``_``)."""
    return ".".join(re.sub(r"[^\w\-]", "_", str(p).replace("+", "p")) for p in parts)


def _evalset(name: str, fam: FamilyConfig, cfg: XaiConfig, root: Path) -> EvalSet:
    cap = cfg.max_images if fam.max_images is None else fam.max_images
    if fam.kind == "2d":
        return select_eval_2d(root / fam.data, root, cfg.eval_split, cap, cfg.seed)
    pseudo = root / fam.pseudolabels if fam.pseudolabels else None
    return select_eval_3d(
        root / fam.data, root, cfg.eval_split, fam.sequence, cap, cfg.seed, pseudo
    )


def _plan(
    cfg: XaiConfig, root: Path, out_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], pd.DataFrame, list[dict]]:
    """Explain calls, per-family report, eval sets, selected checkpoints, quarantine rows."""
    calls: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    evalsets: dict[str, Any] = {}
    selected = []
    quarantine: list[dict[str, Any]] = []
    for name, fam in cfg.families.items():
        cam_cfg = fam.cam_config(cfg.cam).to_dict()
        missing = [p for p in (fam.index, fam.data) if not (root / p).exists()]
        if missing:
            report[name] = {"status": "skipped", "reason": f"not found: {', '.join(missing)}"}
            continue
        index = read_index(root / fam.index)
        sel = select_checkpoints(index, cfg.select.merged(fam.select))
        ev = _evalset(name, fam, cfg, root)
        ev_path = out_dir / "evalsets" / f"{name}.parquet"
        ev_path.parent.mkdir(parents=True, exist_ok=True)
        to_parquet_atomic(ev.table, ev_path, index=False)
        excluded = out_dir / "evalsets" / f"{name}_excluded.parquet"
        to_parquet_atomic(ev.excluded, excluded, index=False)
        evalsets[name] = {"kind": fam.kind, "table": ev.table, "path": ev_path}
        report[name] = {
            "status": "ok",
            "kind": fam.kind,
            "checkpoints_in_index": len(index),
            "runs_in_index": int(index["run"].nunique()),
            "checkpoints_selected": len(sel),
            "runs_selected": int(sel["run"].nunique()),
            "eval_candidates": len(ev.table) + len(ev.excluded),
            "eval": ev.counts,
        }
        selected.append(sel.assign(family=name, kind=fam.kind))
        for row in sel.itertuples():
            ckpt = root / row.path
            if not ckpt.is_file():
                quarantine.append(
                    {"family": name, "run": row.run, "epoch": int(row.epoch), "path": row.path,
                     "reason": "checkpoint file missing"}
                )  # fmt: skip
                continue
            common = {
                "family": name,
                "run": str(row.run),
                "epoch": int(row.epoch),
                "checkpoint_path": str(ckpt),
                "checkpoint_fingerprint": checkpoint_fingerprint(ckpt, root),
                "loader": str(row.loader),
                "loader_code": package_hash(loader_module(str(row.loader))),
                "kind": fam.kind,
                "data": str(root / fam.data),
                "evalset_path": str(ev_path),
                "evalset_fingerprint": ev.fingerprint,
                "root": str(root),
            }
            for method in cfg.methods:
                calls.append(
                    common
                    | {
                        "method": method,
                        "cam_cfg": cam_cfg,
                        "explain": cfg.explain,
                        "device": cfg.device,
                        "out_dir": str(out_dir / "heatmaps"),
                    }
                )
    runs = pd.concat(selected, ignore_index=True) if selected else pd.DataFrame()
    return calls, report, evalsets, runs, quarantine


class _Masks:
    """Ground-truth masks per (family, heatmap shape), computed once, looked up by id."""

    def __init__(self, evalsets: dict[str, Any], root: Path) -> None:
        self.evalsets = evalsets
        self.root = root
        self.cache: dict[tuple[str, tuple[int, ...]], tuple[dict[str, int], np.ndarray]] = {}
        self.reasons: dict[str, dict[str, int]] = {}

    def __call__(self, family: str, ids: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        key = (family, tuple(shape))
        if key not in self.cache:
            ev = self.evalsets[family]
            masks, reasons = eval_masks(ev["kind"], ev["table"], self.root, shape)
            pos = {str(r): i for i, r in enumerate(ev["table"]["record_id"])}
            self.cache[key] = (pos, masks)
            counts = pd.Series([r or "mask used" for r in reasons]).value_counts()
            self.reasons[family] = {str(k): int(v) for k, v in counts.items()}
        pos, masks = self.cache[key]
        return masks[[pos[str(i)] for i in ids]]


def _log_model_run(table: pd.DataFrame, rand: pd.DataFrame, plots: list[Path]) -> None:
    """Trajectory metrics with ``step = epoch``; randomisation results; the plots (in the
    active model run)."""
    metrics: list[tuple[str, float, int]] = []
    first_method = sorted(table["method"].unique())[0]
    for r in table.itertuples():
        scope = "global" if r.klass == GLOBAL else r.class_name
        values = {
            (r.method, "cscore", scope): r.cscore,
            (r.method, "gold_size", scope): r.gold_size,
        }
        if r.klass == GLOBAL:
            values |= {(r.method, c, scope): getattr(r, c, None) for c in CORRECTNESS}
            values |= {(r.method, c, scope): getattr(r, c, None) for c in SCORE_COLUMNS}
        if r.method == first_method:  # the same probabilities for every method
            values |= {("auc", scope): r.auc, ("accuracy", scope): r.accuracy}
        for key, v in values.items():
            if v is not None and not pd.isna(v):
                metrics.append((_metric_name(*key), float(v), int(r.epoch)))
    for r in rand.itertuples():
        for k in ("median_spearman", "median_soft_iou", "flag"):
            v = float(getattr(r, k))
            if not np.isnan(v):
                metrics.append((_metric_name(r.method, "randomisation", k), v, r.epoch))
    log_steps(metrics)
    log_stage(artifacts=plots, artifact_path="plots")


def _plot_name(model: str, method: str) -> str:
    """``<model>__<method>`` as :func:`brainxai.xai.trajectory_plots.plot_trajectories` names."""
    return "__".join(
        re.sub(r"[^A-Za-z0-9._-]", "_", str(v).replace("+", "p")) for v in (model, method)
    )


def _plots(table: pd.DataFrame, plot_dir: Path, index: Path, min_gold: int) -> list[Path]:
    """One PNG per (model, method), redrawn only when its rows or ``min_gold`` (no class
    C-Score drawn over fewer gold images) changed (a digest is kept in ``index``; a figure
    costs seconds); stale PNGs are removed."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    old = json.loads(index.read_text()) if index.is_file() else {}
    new: dict[str, str] = {}
    out = []
    groups = table.groupby(["model", "method"], sort=True) if len(table) else []
    for (model, method), sub in groups:
        name = _plot_name(model, method)
        path = plot_dir / f"{name}.png"
        rows = sub.to_csv(index=False) + f"min_gold={min_gold}"
        new[name] = hashlib.sha256(rows.encode()).hexdigest()[:16]
        if old.get(name) != new[name] or not path.is_file():
            plot_trajectory(table, model, method, path, min_gold)
        out.append(path)
    for stale in plot_dir.glob("*.png"):
        if stale.stem not in new:
            stale.unlink()
    save_json_atomic(new, index, indent=1)
    return out


def _faithfulness(
    cfg: XaiConfig, files: list[HeatmapFile], by_key: dict[tuple, dict[str, Any]], root: Path
) -> pd.DataFrame:
    """Deletion/insertion AUC of every explained (checkpoint, method) - one cached task each,
    keyed on the heatmap file's hash - as the ``faithfulness.csv`` table."""
    if not cfg.faithfulness.enabled:
        return pd.DataFrame(columns=FAITHFULNESS_COLUMNS)
    fcfg = cfg.faithfulness.to_dict()
    calls = [
        {
            k: v
            for k, v in by_key[(f.run, f.epoch, f.method)].items()
            if k not in ("explain", "out_dir", "cam_cfg")
        }
        | {"heatmap_path": f.path, "heatmap_sha256": file_sha256(f.path), "faith_cfg": fcfg}
        for f in files
    ]
    res = run_cached(faithfulness_task, lambda r: [], calls, root=root) if calls else []
    return pd.DataFrame([r for r in res if r["status"] == "ok"], columns=FAITHFULNESS_COLUMNS)


def _write(df: pd.DataFrame, path: Path, parquet: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_csv_atomic(df, path.with_suffix(".csv"), index=False)
    if parquet:
        to_parquet_atomic(df, path.with_suffix(".parquet"), index=False)


def run_xai(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Body of the stage (inside a flow whose task runner comes from ``xai.runner``)."""
    t0 = time.perf_counter()
    root_path, params = study_params(profile, root, overrides)
    root_path = root_path.resolve()
    paths = StudyPaths.from_params(root_path, params)
    xparams = {k: v for k, v in params["xai"].items() if k != "runner"}
    cfg = XaiConfig.from_dict(xparams)
    out_dir = root_path / cfg.out_dir
    reports = root_path / cfg.reports_dir
    logger = get_run_logger()
    with stage_run("xai", {"xai": xparams}):
        calls, fam_report, evalsets, runs, quarantine = _plan(cfg, root_path, out_dir)
        for name, rep in fam_report.items():
            if rep["status"] != "ok":
                logger.warning("xai: family %s skipped (%s)", name, rep["reason"])
        results = (
            run_cached(explain_task, lambda r: r["files"], calls, root=root_path) if calls else []
        )
        ok = [r for r in results if r["status"] == "ok"]
        seen = set()
        for r in results:
            if r["status"] != "ok" and (r["run"], r["epoch"]) not in seen:
                seen.add((r["run"], r["epoch"]))
                row = runs[(runs["run"] == r["run"]) & (runs["epoch"] == r["epoch"])].iloc[0]
                quarantine.append(
                    {"family": r["family"], "run": r["run"], "epoch": r["epoch"],
                     "path": row["path"], "reason": r["reason"]}
                )  # fmt: skip
                logger.warning("xai: quarantined %s epoch %s: %s", r["run"], r["epoch"],
                               r["reason"])  # fmt: skip
        files = [HeatmapFile(r["family"], r["run"], r["epoch"], r["method"], r["path"]) for r in ok]
        class_names = {r["run"]: r["class_names"] for r in ok}
        masks = _Masks(evalsets, root_path)
        table = with_phases(stage_trajectory(files, masks, runs, class_names, cfg.tracking), runs)
        found = dissociations(table, cfg.tracking) if len(table) else {}
        last = {r["run"]: max(x["epoch"] for x in ok if x["run"] == r["run"]) for r in ok}
        finals = final_files(files, last)
        sens = final_sensitivity(finals, cfg.tracking)
        rcfg = {k: getattr(cfg.randomisation, k) for k in RANDOMISATION_KEYS}
        by_key = {(c["run"], c["epoch"], c["method"]): c for c in calls}
        rcalls = [
            {
                k: v
                for k, v in by_key[(f.run, f.epoch, f.method)].items()
                if k not in ("explain", "out_dir")
            }
            | {"heatmap_path": f.path, "heatmap_sha256": file_sha256(f.path), "rand_cfg": rcfg}
            for f in finals
            if f.method in cfg.randomisation_methods
        ]
        rand_res = (
            run_cached(randomisation_task, lambda r: [], rcalls, root=root_path) if rcalls else []
        )
        rand = pd.DataFrame(
            [r for r in rand_res if r["status"] == "ok"],
            columns=["family", "run", "epoch", "method", "checkpoint", "n", "median_spearman",
                     "median_soft_iou", "n_undefined", "flag", "similarity", "threshold"],
        )  # fmt: skip
        faith = _faithfulness(cfg, files, by_key, root_path)
        table = with_faithfulness(table, faith)

        # ---- reports
        reports.mkdir(parents=True, exist_ok=True)
        _write(table, reports / "trajectory.parquet", parquet=True)
        _write(sens, reports / "sensitivity.csv")
        _write(rand, reports / "randomisation.csv")
        _write(faith, reports / "faithfulness.csv")
        _write(pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS), reports / "quarantine.csv")
        if found:
            write_text_atomic(reports / "dissociations.md", dissociation_report(found))
        else:
            write_text_atomic(
                reports / "dissociations.md",
                "# AUC–consistency dissociations (paper 004 §4.4)\n\nNo checkpoint explained.\n",
            )
        plots = _plots(
            table, reports / "plots", out_dir / "plot_digests.json", cfg.tracking.min_gold
        )

        # ---- MLflow: one nested run per model
        for run in sorted(table["model"].unique()) if len(table) else []:
            sub = table[table["model"] == run]
            info = runs[runs["run"] == run].iloc[0]
            with child_run(
                f"xai-{run}",
                tags={
                    "brainxai.stage": "xai",
                    "brainxai.family": str(info["family"]),
                    "brainxai.run": str(run),
                },
                params={c: str(info[c]) for c in RUN_COLUMNS},
            ):
                safe = _plot_name(run, "")
                _log_model_run(
                    sub, rand[rand["run"] == run], [p for p in plots if p.name.startswith(safe)]
                )

        # ---- headline
        for name, rep in fam_report.items():
            if rep["status"] == "ok":
                rep["explained_checkpoints"] = len({(r["run"], r["epoch"]) for r in ok
                                                    if r["family"] == name})  # fmt: skip
                rep["masks"] = masks.reasons.get(name, {})
                rep["images_per_checkpoint"] = max(
                    (r["n_images"] for r in ok if r["family"] == name), default=0
                )
                grids = {tuple(r["cam_grid"]) for r in ok if r["family"] == name
                         and r.get("cam_grid")}  # fmt: skip
                # the coarsest grid any explained checkpoint of the family had (CAM methods)
                rep["cam_grid"] = list(min(grids, key=np.prod)) if grids else None
                rep["unknown_label_images"] = max(
                    (r["n_unknown_label"] for r in ok if r["family"] == name), default=0
                )
        summary = {
            "profile": params["profile"],
            "methods": list(cfg.methods),
            "families": fam_report,
            "headline": headline(table),
            "dissociations": {k: len(v) for k, v in found.items()},
            "randomisation": {
                "checked": len(rand),
                "flagged": int(rand["flag"].astype(bool).sum()),
                "flagged_methods": sorted(set(rand.loc[rand["flag"].astype(bool), "method"])),
            },
            "faithfulness": faithfulness_summary(faith),
            "heatmap_tasks": len(calls),
            "quarantined_checkpoints": len(quarantine),
            "trajectory_rows": len(table),
            "device": sorted({r["device"] for r in ok}),
            "heatmap_seconds_when_computed": round(sum(r["seconds"] for r in ok), 2),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        tables = [reports / "trajectory.csv", reports / "dissociations.md"]
        log_stage(
            {
                "xai.trajectory_rows": len(table),
                "xai.quarantined_checkpoints": len(quarantine),
                "xai.randomisation_flagged": summary["randomisation"]["flagged"],
                **{f"xai.dissociations.{k}": v for k, v in summary["dissociations"].items()},
            },
            artifacts=tables if tables[0].exists() else [],
            artifact_path="xai",
        )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics / "xai.json", summary)
    logger.info("xai: %s", {k: summary[k] for k in ("dissociations", "randomisation")})
    publish_stage("xai", paths.metrics / "xai.json", (reports / "plots").glob("*.png"))
    return summary


@flow(name="xai", log_prints=True)
def _xai(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    return run_xai(profile=profile, root=root, overrides=overrides)


def xai_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Run the stage as a Prefect flow with the task runner of ``xai.runner``."""
    root_path, params = study_params(profile, root, overrides)
    runner = task_runner({"runner": params["xai"].get("runner", params["runner"])})
    return _xai.with_options(task_runner=runner)(
        profile=profile, root=str(root_path), overrides=overrides
    )


if __name__ == "__main__":
    import typer

    typer.run(xai_flow)
