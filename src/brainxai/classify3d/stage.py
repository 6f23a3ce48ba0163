"""Stage ``classify3d`` without the orchestrator: the cohort and its folds
(:func:`prepare`), the fan-out (:func:`plan_runs`, :func:`plan`: one call per (ablation row
or compared backbone) x fold), the per-run numbers MLflow shows, and what the results make
(:func:`summarise`: the tables under ``reports/classify3d``, the checkpoint index, the
headline metrics). ``flows/classify3d.py`` runs the calls as cached tasks and logs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.classify3d.config import TRUE_MASK, Classify3DConfig
from brainxai.classify3d.data import attach_pseudolabels, select_patients
from brainxai.classify3d.folds import assign_folds, check_patient_disjoint
from brainxai.classify3d.results import (
    ablation,
    label_table,
    markdown_ablation,
    markdown_runs,
    row_labels,
    run_summary,
)
from brainxai.config import config_to_mapping
from brainxai.hashing import file_sha256
from brainxai.labels import DIAGNOSES_3D
from brainxai.paths import StudyPaths
from brainxai.pseudolabel.provenance import proposer_label
from brainxai.splits import check_subset_leakage

#: ``models/classify3d/index.parquet``: the explanation-tracking stage's input.
INDEX_COLUMNS = (
    "run", "init", "protocol", "fraction", "seed", "fold", "epoch", "path", "loader", "kind",
    "selected", "val_macro_f1", "backbone", "mask_source",
)  # fmt: skip
#: Test metrics of each fold logged beside its history.
FOLD_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall")


def plan_runs(
    cfg: Classify3DConfig, have_pseudo: bool = True, have_truth: bool = True
) -> tuple[list[tuple[str, str]], list[str], str]:
    """``(runs, notes, comparison_variant)``: (variant, backbone) pairs in table order (a
    row that needs pseudo-labels or true masks the cohort lacks is skipped, with a note)."""
    notes: list[str] = []
    runnable = []
    for name in cfg.rows:
        v = cfg.variants[name]
        if v.needs_pseudolabels and not have_pseudo:
            notes.append(f"ablation row {name!r} skipped: no pseudo-labels ({v.mask})")
        elif v.mask == TRUE_MASK and not have_truth:
            notes.append(f"ablation row {name!r} skipped: some patients lack a true lesion mask")
        else:
            runnable.append(name)
    runs = [(name, cfg.ablation_backbone) for name in runnable]
    comp = cfg.comparison_variant
    if comp not in runnable:
        notes.append(f"backbone comparison uses {cfg.base_variant!r}: {comp!r} is not runnable")
        comp = cfg.base_variant
    runs += [(comp, b) for b in cfg.compare_backbones if (comp, b) not in runs]
    return runs, notes, comp


@dataclass
class Cohort:
    """The patients of the stage, their folds, and which runs the cohort allows."""

    patients: pd.DataFrame  # one row per patient; ``fold`` -1 = held-out test patient
    excluded: pd.DataFrame
    patients_path: Path
    runs: list[tuple[str, str]]
    comparison_variant: str
    notes: list[str]
    proposer: str
    labels: dict[str, str]
    class_names: list[str] = field(default_factory=lambda: list(DIAGNOSES_3D))

    def counts(self) -> dict[str, float]:
        folds = self.patients["fold"]
        return {
            "classify3d.n_patients": float(len(self.patients)),
            "classify3d.n_cv": float((folds >= 0).sum()),
            "classify3d.n_holdout": float((folds < 0).sum()),
            "classify3d.n_excluded": float(len(self.excluded)),
        }


def prepare(cfg: Classify3DConfig, paths: StudyPaths, manifest: pd.DataFrame) -> Cohort:
    """Patients of the standardized manifest, stratified folds of the CV pool (checked
    patient-disjoint and inside the pool's splits), pseudo-labels when present; writes
    ``data/interim/classify3d/patients.parquet`` and ``classify3d_excluded.parquet``."""
    class_names = list(DIAGNOSES_3D)
    patients, excluded = select_patients(manifest, cfg.data, class_names)
    in_pool = patients["split"].isin(cfg.cv.pool)
    cv_pool = patients[in_pool].copy()
    check_subset_leakage(manifest, cv_pool["record_id"], allowed_splits=cfg.cv.pool)
    fold = assign_folds(cv_pool, cfg.cv.n_folds, cfg.cv.seed)
    patients["fold"] = -1
    patients.loc[cv_pool.index, "fold"] = fold
    check_patient_disjoint(patients[patients["fold"] >= 0])

    pl_path = paths.root / cfg.pseudolabels
    pseudo = pd.read_parquet(pl_path) if pl_path.exists() else None
    patients, notes = attach_pseudolabels(patients, pseudo)
    have_pseudo = pseudo is not None and bool((patients["union_path"] != "").all())
    if pseudo is not None and not have_pseudo:
        notes.append("some patients lack pseudo-labels: pseudo-label rows skipped")
    have_truth = bool((patients[TRUE_MASK] != "").all())
    runs, plan_notes, comp = plan_runs(cfg, have_pseudo, have_truth)
    proposer = proposer_label(pseudo)

    work = paths.interim / "classify3d"
    work.mkdir(parents=True, exist_ok=True)
    patients_path = work / "patients.parquet"
    patients.to_parquet(patients_path, index=False)
    excluded.to_parquet(paths.processed / "classify3d_excluded.parquet", index=False)
    return Cohort(
        patients, excluded, patients_path, runs, comp, notes + plan_notes, proposer,
        row_labels(cfg.variants, proposer), class_names,
    )  # fmt: skip


@dataclass
class Run:
    """One (variant, backbone) of the table: a call per fold."""

    variant: str
    backbone: str
    calls: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.backbone}"


def plan(
    cfg: Classify3DConfig, paths: StudyPaths, cohort: Cohort, spacing_mm: Any = None
) -> list[Run]:
    """Every runnable (variant, backbone) with one training call per fold
    (``spacing_mm``: the standardization grid, recorded with the run's config)."""
    sha = file_sha256(cohort.patients_path)
    run_cfg = {
        k: config_to_mapping(getattr(cfg, k)) for k in ("data", "augment", "cv", "train", "model")
    } | {"spacing_mm": spacing_mm}
    run_cfg = json.loads(json.dumps(run_cfg))
    out_root = paths.root / cfg.out_dir
    return [
        Run(variant, backbone, [
            {
                "patients_path": str(cohort.patients_path),
                "patients_sha256": sha,
                "root": str(paths.root),
                "run": f"{variant}/{backbone}",
                "variant": cfg.variants[variant].model_fields(),
                "backbone_spec": cfg.backbones[backbone],
                "cfg": run_cfg,
                "class_names": cohort.class_names,
                "fold": k,
                "out_dir": str(out_root / variant / backbone / f"fold{k}"),
                "threads": cfg.threads,
            }
            for k in range(cfg.cv.n_folds)
        ])
        for variant, backbone in cohort.runs
    ]  # fmt: skip


def run_tags(run: Run) -> dict[str, str]:
    return {"brainxai.stage": "classify3d", "brainxai.variant": run.variant,
            "brainxai.backbone": run.backbone}  # fmt: skip


def run_params(cfg: Classify3DConfig, run: Run) -> dict[str, Any]:
    return {"variant": vars(cfg.variants[run.variant]), "backbone": cfg.backbones[run.backbone]}


def fold_history(k: int, res: dict[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """``(epoch, metrics)`` of fold ``k``'s training history (``fold<k>.<metric>``)."""
    return [
        (int(rec["epoch"]), {f"fold{k}.{m}": float(x) for m, x in rec.items() if m != "epoch"})
        for rec in res["history"]
    ]


def fold_test(k: int, res: dict[str, Any]) -> dict[str, float]:
    """Fold ``k``'s scores on its own (outer) fold and its selected epoch."""
    return {f"fold{k}.test_{m}": float(res["cv_metrics"][m]) for m in FOLD_METRICS} | {
        f"fold{k}.best_epoch": float(res["best_epoch"])
    }


def logs_model(cfg: Classify3DConfig, cohort: Cohort, run: Run) -> bool:
    """Whether each fold's best model is logged (``classify3d.register``)."""
    headline = run.variant == cohort.comparison_variant and run.backbone == cfg.ablation_backbone
    return cfg.register == "all" or (cfg.register == "headline" and headline)


def selected_checkpoint(res: dict[str, Any]) -> Path:
    return Path(next(c for c in res["checkpoints"] if c["selected"])["path"])


def run_predictions(run: Run, results: list[dict[str, Any]]) -> pd.DataFrame:
    """The predictions of every fold of ``run``."""
    return pd.concat(
        [
            pd.read_parquet(res["predictions"]).assign(
                run=run.name, variant=run.variant, backbone=run.backbone, fold=k
            )
            for k, res in enumerate(results)
        ],
        ignore_index=True,
    )


def run_cv(run: Run, results: list[dict[str, Any]], class_names: list[str]) -> dict[str, float]:
    """Mean and sd over folds of every finite CV metric of ``run``."""
    summ = run_summary(run_predictions(run, results), class_names)[run.name]
    return {f"cv.{m}_mean": v for m, v in summ["mean"].items() if np.isfinite(v)} | {
        f"cv.{m}_sd": v for m, v in summ["sd"].items() if np.isfinite(v)
    }


def _index_rows(
    cfg: Classify3DConfig, paths: StudyPaths, run: Run, results: list[dict[str, Any]], loader: str
) -> list[dict[str, Any]]:
    if run.backbone != cfg.ablation_backbone:
        return []
    return [
        {
            "run": f"{run.name}/fold{k}",
            "init": run.variant,
            "protocol": "cv",
            "fraction": 1.0,
            "seed": cfg.train.seed,
            "fold": k,
            "epoch": int(c["epoch"]),
            "path": paths.rel(Path(c["path"])),
            "loader": loader,
            "kind": "3d",
            "selected": bool(c["selected"]),
            "val_macro_f1": float(c["val_macro_f1"]),
            "backbone": run.backbone,
            "mask_source": cfg.variants[run.variant].mask or "",
        }
        for k, res in enumerate(results)
        for c in res["checkpoints"]
    ]


@dataclass
class Outputs:
    metrics: dict[str, Any]  # reports/metrics/classify3d.json
    result: dict[str, Any]  # what the flow returns
    reports: Path


def summarise(
    cfg: Classify3DConfig,
    paths: StudyPaths,
    cohort: Cohort,
    runs: list[Run],
    results: dict[str, list[dict[str, Any]]],
    loader: str,
) -> Outputs:
    """Write ``reports/classify3d`` (predictions, ``runs.md``, ``ablation.md``,
    ``backbones.md``, confusion matrices) and the checkpoint index of the ablation
    backbone's runs (``loader`` reads them); return the headline metrics."""
    class_names, labels = cohort.class_names, cohort.labels
    preds = pd.concat([run_predictions(r, results[r.name]) for r in runs], ignore_index=True)
    summary = run_summary(preds, class_names, cfg.stats.n_bootstrap, cfg.cv.seed,
                          cfg.stats.alpha)  # fmt: skip
    ablation_runs = [r.name for r in runs if r.backbone == cfg.ablation_backbone]
    base_run = f"{cfg.base_variant}/{cfg.ablation_backbone}"
    table = ablation(
        preds, base_run, ablation_runs, class_names, cfg.stats.n_bootstrap, cfg.cv.seed,
        cfg.stats.alpha,
    )  # fmt: skip
    table = label_table(table, labels)
    comp = cohort.comparison_variant
    backbone_runs = [f"{comp}/{b}" for b in dict.fromkeys(
        [cfg.ablation_backbone, *cfg.compare_backbones])]  # fmt: skip

    rep = paths.reports / "classify3d"
    rep.mkdir(parents=True, exist_ok=True)
    preds.assign(probs=preds["probs"].map(list)).to_parquet(rep / "predictions.parquet")
    (rep / "runs.md").write_text(markdown_runs(summary, list(summary), labels))
    (rep / "ablation.md").write_text(
        f"Paper 003 Table 2 rows ①–⑤ and this project's extensions; masks from the "
        f"{cohort.proposer}.\n\n" + markdown_ablation(table)
        + "".join(f"\n- {n}" for n in cohort.notes) + "\n"
    )  # fmt: skip
    (rep / "backbones.md").write_text(markdown_runs(summary, backbone_runs, labels))
    _confusions(summary, class_names, rep)
    rows = [row for r in runs for row in _index_rows(cfg, paths, r, results[r.name], loader)]
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    out_root = paths.root / cfg.out_dir
    out_root.mkdir(parents=True, exist_ok=True)
    index.to_parquet(out_root / "index.parquet", index=False)

    patients, excluded = cohort.patients, cohort.excluded
    metrics = {
        "headline": {  # flat, for `dvc metrics show`: CV and held-out macro-F1 per row
            **{f"cv_macro_f1.{r}": s["mean"]["macro_f1"] for r, s in summary.items()},
            **{
                f"holdout_macro_f1.{r}": s.get("holdout_ensemble", {}).get("macro_f1")
                for r, s in summary.items()
            },
        },
        "n_patients": len(patients),
        "n_cv": int((patients["fold"] >= 0).sum()),
        "n_holdout": int((patients["fold"] < 0).sum()),
        "n_excluded": len(excluded),
        "excluded_reasons": excluded["reason"].value_counts().to_dict(),
        "n_folds": cfg.cv.n_folds,
        "pool": list(cfg.cv.pool),
        "mask_proposer": cohort.proposer,
        "rows": {v: labels[v] for v in dict.fromkeys(v for v, _ in cohort.runs)},
        "notes": cohort.notes,
        "runs": {
            r: {
                "mean": s["mean"],
                "sd": s["sd"],
                "pooled_confusion": s["pooled"]["confusion"],
                "pooled_per_class": s["pooled"]["per_class"],
                "holdout_ensemble_macro_f1": s.get("holdout_ensemble", {}).get("macro_f1"),
                "pooled_macro_f1_ci": s.get("pooled_macro_f1_ci"),
                "chance_macro_f1": s.get("chance_macro_f1"),
                "above_chance": s.get("above_chance"),
                "best_epochs": [int(x["best_epoch"]) for x in results[r]],
                "seconds": float(sum(x["seconds"] for x in results[r])),
                "train_volumes_per_s": float(np.mean([x["volumes_per_s"] for x in results[r]])),
            }
            for r, s in summary.items()
        },
        "ablation": json.loads(table.to_json(orient="records")),
        "n_checkpoints_indexed": len(index),
    }
    result = {k: metrics[k] for k in ("n_patients", "n_cv", "n_holdout", "n_excluded", "notes")}
    result["macro_f1"] = {r: s["mean"]["macro_f1"] for r, s in summary.items()}
    return Outputs(metrics, result, rep)


def _confusions(summary: dict[str, Any], class_names: list[str], rep: Path) -> None:
    from brainxai.evaluation.metrics import save_confusion

    for run, s in summary.items():
        stem = run.replace("/", "__")
        save_confusion(
            s["pooled"]["confusion"], class_names, rep / f"confusion_{stem}.png",
            rep / f"confusion_{stem}.csv",
        )  # fmt: skip
