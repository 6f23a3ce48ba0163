"""Stage ``xai`` without the orchestrator: what to compute (:func:`plan`: one explain call
per selected checkpoint x method, run grouped per checkpoint (:func:`explain_calls`), then
:func:`randomisation_calls` and :func:`faithfulness_calls` on the heatmaps), and what the
results make (:func:`summarise`: the trajectory, sensitivity, randomisation, faithfulness
and quarantine tables, the dissociations, the plots, the headline; :func:`model_metrics`:
each model's metric history). ``flows/xai.py`` runs the calls as cached tasks and logs the
outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.atomic import save_json_atomic, to_csv_atomic, to_parquet_atomic, write_text_atomic
from brainxai.hashing import file_sha256
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

QUARANTINE_COLUMNS = ["family", "run", "epoch", "path", "reason"]
FAITHFULNESS_COLUMNS = ["family", "run", "epoch", "method", "checkpoint", "n", "steps",
                        "baseline", *SCORE_COLUMNS]  # fmt: skip
RANDOMISATION_COLUMNS = ["family", "run", "epoch", "method", "checkpoint", "n",
                         "median_spearman", "median_soft_iou", "n_undefined", "flag",
                         "similarity", "threshold"]  # fmt: skip
RANDOMISATION_KEYS = ("max_images", "seed", "threshold", "similarity")
NO_DISSOCIATIONS = "# AUC–consistency dissociations (paper 004 §4.4)\n\nNo checkpoint explained.\n"

#: ``module -> hash of its sources`` (the checkpoint loader's code, part of a task's key).
CodeHash = Callable[[str], str]


@dataclass
class Plan:
    """The explain calls and what the stage knows before running them."""

    calls: list[dict[str, Any]]
    families: dict[str, Any]  # per-family report (skipped with the reason, or counts)
    evalsets: dict[str, Any]
    runs: pd.DataFrame  # the selected checkpoints, with their family and kind
    quarantine: list[dict[str, Any]]
    _by_key: dict[tuple, dict[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key = {(c["run"], c["epoch"], c["method"]): c for c in self.calls}

    def call_of(self, f: HeatmapFile) -> dict[str, Any]:
        """The explain call that wrote the heatmap file ``f``."""
        return self._by_key[(f.run, f.epoch, f.method)]


class Explained:
    """The explain results: the heatmaps written (all, and each model's last epoch) and
    the checkpoints that failed (``failed``: quarantine rows, one per checkpoint)."""

    def __init__(self, plan: Plan, results: list[dict[str, Any]]) -> None:
        self.results = results
        self.ok = [r for r in results if r["status"] == "ok"]
        self.files = [
            HeatmapFile(r["family"], r["run"], r["epoch"], r["method"], r["path"]) for r in self.ok
        ]
        last = {r["run"]: max(x["epoch"] for x in self.ok if x["run"] == r["run"]) for r in self.ok}
        self.finals = final_files(self.files, last)
        self.failed: list[dict[str, Any]] = []
        seen = set()
        runs = plan.runs
        for r in results:
            if r["status"] != "ok" and (r["run"], r["epoch"]) not in seen:
                seen.add((r["run"], r["epoch"]))
                row = runs[(runs["run"] == r["run"]) & (runs["epoch"] == r["epoch"])].iloc[0]
                self.failed.append(
                    {"family": r["family"], "run": r["run"], "epoch": r["epoch"],
                     "path": row["path"], "reason": r["reason"]}
                )  # fmt: skip


@dataclass
class Outputs:
    """What :func:`summarise` wrote and what the flow logs and publishes."""

    summary: dict[str, Any]
    table: pd.DataFrame
    randomisation: pd.DataFrame
    plots: list[Path]
    metrics: dict[str, float]
    artifacts: list[Path]


def metric_name(*parts: str) -> str:
    """MLflow-safe metric name (``+`` → ``p``, other odd characters → ``_``)."""
    return ".".join(re.sub(r"[^\w\-]", "_", str(p).replace("+", "p")) for p in parts)


def plot_name(model: str, method: str) -> str:
    """``<model>__<method>`` as :func:`brainxai.xai.trajectory_plots.plot_trajectories` names."""
    return "__".join(
        re.sub(r"[^A-Za-z0-9._-]", "_", str(v).replace("+", "p")) for v in (model, method)
    )


def _evalset(fam: FamilyConfig, cfg: XaiConfig, root: Path) -> EvalSet:
    cap = cfg.max_images if fam.max_images is None else fam.max_images
    if fam.kind == "2d":
        return select_eval_2d(root / fam.data, root, cfg.eval_split, cap, cfg.seed)
    pseudo = root / fam.pseudolabels if fam.pseudolabels else None
    return select_eval_3d(
        root / fam.data, root, cfg.eval_split, fam.sequence, cap, cfg.seed, pseudo
    )


def plan(cfg: XaiConfig, root: Path, code_hash: CodeHash) -> Plan:
    """One explain call per selected checkpoint x method of every family whose index and
    data exist; writes each family's evaluation set under ``<out_dir>/evalsets/``.
    ``code_hash(module)`` hashes the checkpoint loader's code (part of the calls' key)."""
    out_dir = root / cfg.out_dir
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
        ev = _evalset(fam, cfg, root)
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
                "loader_code": code_hash(loader_module(str(row.loader))),
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
    return Plan(calls, report, evalsets, runs, quarantine)


def per_checkpoint(
    calls: list[dict[str, Any]], per_method: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Per-(checkpoint, method) ``calls`` as one call per checkpoint (``run``, ``epoch``):
    the shared keys once, each key of ``per_method`` as a list named ``<key>s`` in the
    calls' order."""
    grouped: dict[tuple[str, int], dict[str, Any]] = {}
    for c in calls:
        key = (c["run"], c["epoch"])
        if key not in grouped:
            shared = {k: v for k, v in c.items() if k not in per_method}
            grouped[key] = shared | {f"{k}s": [] for k in per_method}
        for k in per_method:
            grouped[key][f"{k}s"].append(c[k])
    return list(grouped.values())


def explain_calls(plan: Plan) -> list[dict[str, Any]]:
    """``plan.calls`` grouped by checkpoint: one explain call per checkpoint with its
    ``methods`` (the CAMs of a checkpoint share one forward/backward pass and the model is
    loaded once; :func:`brainxai.xai.cams.pass_groups`)."""
    return per_checkpoint(plan.calls, ("method",))


def method_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-checkpoint task results (explain, faithfulness) as one row per (checkpoint,
    method): what :class:`Explained` and :func:`summarise` read."""
    return [row for r in results for row in r["rows"]]


def randomisation_calls(cfg: XaiConfig, plan: Plan, ex: Explained) -> list[dict[str, Any]]:
    """The parameter-randomisation check of each model's final heatmaps (its methods)."""
    rcfg = {k: getattr(cfg.randomisation, k) for k in RANDOMISATION_KEYS}
    return [
        {k: v for k, v in plan.call_of(f).items() if k not in ("explain", "out_dir")}
        | {"heatmap_path": f.path, "heatmap_sha256": file_sha256(f.path), "rand_cfg": rcfg}
        for f in ex.finals
        if f.method in cfg.randomisation_methods
    ]


def faithfulness_calls(cfg: XaiConfig, plan: Plan, ex: Explained) -> list[dict[str, Any]]:
    """Deletion/insertion AUC of every explained (checkpoint, method) - or only each model's
    last checkpoint (``faithfulness.checkpoints: last``) - keyed on the heatmap files'
    hashes, one call per checkpoint with its methods; none when ``faithfulness.enabled`` is
    off."""
    if not cfg.faithfulness.enabled:
        return []
    fcfg = cfg.faithfulness.to_dict()
    files = ex.finals if cfg.faithfulness.checkpoints == "last" else ex.files
    calls = [
        {k: v for k, v in plan.call_of(f).items() if k not in ("explain", "out_dir", "cam_cfg")}
        | {"heatmap_path": f.path, "heatmap_sha256": file_sha256(f.path), "faith_cfg": fcfg}
        for f in files
    ]  # one call per checkpoint: its methods share the random control
    return per_checkpoint(calls, ("method", "heatmap_path", "heatmap_sha256"))


class Masks:
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


def plots(table: pd.DataFrame, plot_dir: Path, index: Path, min_gold: int) -> list[Path]:
    """One PNG per (model, method), redrawn only when its rows or ``min_gold`` (no class
    C-Score drawn over fewer gold images) changed (a digest is kept in ``index``; a figure
    costs seconds); stale PNGs are removed."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    old = json.loads(index.read_text()) if index.is_file() else {}
    new: dict[str, str] = {}
    out = []
    groups = table.groupby(["model", "method"], sort=True) if len(table) else []
    for (model, method), sub in groups:
        name = plot_name(model, method)
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


def _write(df: pd.DataFrame, path: Path, parquet: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    to_csv_atomic(df, path.with_suffix(".csv"), index=False)
    if parquet:
        to_parquet_atomic(df, path.with_suffix(".parquet"), index=False)


def _family_report(report: dict[str, Any], ok: list[dict[str, Any]], masks: Masks) -> None:
    """Fill in each explained family's counts (in place)."""
    for name, rep in report.items():
        if rep["status"] != "ok":
            continue
        mine = [r for r in ok if r["family"] == name]
        rep["explained_checkpoints"] = len({(r["run"], r["epoch"]) for r in mine})
        rep["masks"] = masks.reasons.get(name, {})
        rep["images_per_checkpoint"] = max((r["n_images"] for r in mine), default=0)
        grids = {tuple(r["cam_grid"]) for r in mine if r.get("cam_grid")}
        # the coarsest grid any explained checkpoint of the family had (CAM methods)
        rep["cam_grid"] = list(min(grids, key=np.prod)) if grids else None
        rep["unknown_label_images"] = max((r["n_unknown_label"] for r in mine), default=0)


def summarise(
    cfg: XaiConfig,
    root: Path,
    plan: Plan,
    ex: Explained,
    randomisation: list[dict[str, Any]],
    faithfulness: list[dict[str, Any]],
    profile: str,
) -> Outputs:
    """The stage's tables under ``reports_dir`` (trajectory, sensitivity, randomisation,
    faithfulness, quarantine, dissociations), the plots, and the headline summary."""
    reports = root / cfg.reports_dir
    masks = Masks(plan.evalsets, root)
    class_names = {r["run"]: r["class_names"] for r in ex.ok}
    table = stage_trajectory(ex.files, masks, plan.runs, class_names, cfg.tracking)
    table = with_phases(table, plan.runs)
    found = dissociations(table, cfg.tracking) if len(table) else {}
    sens = final_sensitivity(ex.finals, cfg.tracking)
    rand = pd.DataFrame(
        [r for r in randomisation if r["status"] == "ok"], columns=RANDOMISATION_COLUMNS
    )
    faith = pd.DataFrame(
        [r for r in faithfulness if r["status"] == "ok"], columns=FAITHFULNESS_COLUMNS
    )
    table = with_faithfulness(table, faith)
    quarantine = plan.quarantine + ex.failed

    reports.mkdir(parents=True, exist_ok=True)
    _write(table, reports / "trajectory.parquet", parquet=True)
    _write(sens, reports / "sensitivity.csv")
    _write(rand, reports / "randomisation.csv")
    _write(faith, reports / "faithfulness.csv")
    _write(pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS), reports / "quarantine.csv")
    write_text_atomic(
        reports / "dissociations.md", dissociation_report(found) if found else NO_DISSOCIATIONS
    )
    drawn = plots(
        table, reports / "plots", root / cfg.out_dir / "plot_digests.json", cfg.tracking.min_gold
    )
    _family_report(plan.families, ex.ok, masks)
    flagged = rand["flag"].astype(bool)
    summary = {
        "profile": profile,
        "methods": list(cfg.methods),
        "families": plan.families,
        "headline": headline(table),
        "dissociations": {k: len(v) for k, v in found.items()},
        "randomisation": {
            "checked": len(rand),
            "flagged": int(flagged.sum()),
            "flagged_methods": sorted(set(rand.loc[flagged, "method"])),
        },
        "faithfulness": faithfulness_summary(faith),
        "heatmap_tasks": len(plan.calls),  # (checkpoint, method) heatmap files
        "explain_tasks": len(explain_calls(plan)),  # one per checkpoint
        "quarantined_checkpoints": len(quarantine),
        "trajectory_rows": len(table),
        "device": sorted({r["device"] for r in ex.ok}),
        "heatmap_seconds_when_computed": round(sum(r["seconds"] for r in ex.ok), 2),
    }
    metrics = {
        "xai.trajectory_rows": len(table),
        "xai.quarantined_checkpoints": len(quarantine),
        "xai.randomisation_flagged": summary["randomisation"]["flagged"],
        **{f"xai.dissociations.{k}": v for k, v in summary["dissociations"].items()},
    }
    tables = [reports / "trajectory.csv", reports / "dissociations.md"]
    artifacts = tables if tables[0].exists() else []
    return Outputs(summary, table, rand, drawn, metrics, artifacts)


def model_runs(out: Outputs, plan: Plan) -> list[dict[str, Any]]:
    """One nested MLflow run per explained model: its name, tags, params, metric history
    (``step = epoch``: trajectory and randomisation) and plots."""
    table, runs = out.table, plan.runs
    models = []
    for run in sorted(table["model"].unique()) if len(table) else []:
        info = runs[runs["run"] == run].iloc[0]
        safe = plot_name(run, "")
        models.append(
            {
                "name": f"xai-{run}",
                "tags": {
                    "brainxai.stage": "xai",
                    "brainxai.family": str(info["family"]),
                    "brainxai.run": str(run),
                },
                "params": {c: str(info[c]) for c in RUN_COLUMNS},
                "metrics": model_metrics(
                    table[table["model"] == run], out.randomisation[out.randomisation["run"] == run]
                ),
                "plots": [p for p in out.plots if p.name.startswith(safe)],
            }
        )
    return models


def model_metrics(table: pd.DataFrame, rand: pd.DataFrame) -> list[tuple[str, float, int]]:
    """``(name, value, epoch)`` rows of one model: C-Score, gold size, correctness and
    faithfulness per method and class, AUC and accuracy, randomisation results."""
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
                metrics.append((metric_name(*key), float(v), int(r.epoch)))
    for r in rand.itertuples():
        for k in ("median_spearman", "median_soft_iou", "flag"):
            v = float(getattr(r, k))
            if not np.isnan(v):
                metrics.append((metric_name(r.method, "randomisation", k), v, r.epoch))
    return metrics
