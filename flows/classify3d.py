"""Stage ``classify3d``: the Virtual-Biopsy 3D classifier (paper 003) on the standardized
T1C+ volumes — patient-level stratified CV, the mask ablation and the backbone comparison.

Run: ``brainxai classify3d run [--profile smoke]``. Reads ``data/processed/manifest_std.parquet``
and, when present, ``data/processed/pseudolabels.parquet`` (mask variants are skipped with a
note when it is absent — never replaced by the true lesion; the ``oracle`` row uses the true
lesion on purpose, as an upper bound). Protocol: the CV pool (``classify3d.cv.pool``,
default train + val patients) is split into stratified patient folds; each fold's model is
trained on the other folds minus an inner validation hold-out (early stopping and epoch
selection), scored on its fold, and predicts the held-out test patients. Every ablation row
and backbone uses the same folds and seeds. Writes:

* ``models/classify3d/<variant>/<backbone>/fold<k>/`` checkpoints (``epoch-*.pt`` at
  ``train.checkpoint_epochs``, ``best.pt``), ``predictions.parquet``, ``history.json``;
* ``models/classify3d/index.parquet``: one row per checkpoint of the ablation backbone's
  runs (the explanation-tracking stage's input; loader
  ``brainxai.classify3d.model:load_checkpoint``);
* ``data/interim/classify3d/patients.parquet`` (patients, folds, mask paths),
  ``data/processed/classify3d_excluded.parquet`` (sessions not used, with the reason);
* ``reports/classify3d/`` (``runs.md``, ``ablation.md``, ``backbones.md``,
  ``predictions.parquet``, confusion matrices) and ``reports/metrics/classify3d.json``.

MLflow: a stage run with one nested run per (variant, backbone): params, per-epoch metrics
(``fold<k>.train_loss`` … with ``step = epoch``), per-fold and mean ± sd test metrics; the
best model of each fold logged as an MLflow model with its signature (logits) as
``classify3d.register`` says; the ``register`` stage registers the champion per task.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

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
from brainxai.jsonio import write_json
from brainxai.labels import DIAGNOSES_3D
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.pseudolabel.provenance import proposer_label
from brainxai.registry.candidates import checkpoint_model
from brainxai.splits import check_subset_leakage
from tasks import mlflow_log
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.classify3d import LOADER, train_run
from tasks.env import study_params
from tasks.mlflow_log import child_run, log_stage, stage_run

INDEX_COLUMNS = (
    "run", "init", "protocol", "fraction", "seed", "fold", "epoch", "path", "loader", "kind",
    "selected", "val_macro_f1", "backbone", "mask_source",
)  # fmt: skip


def plan_runs(
    cfg: Classify3DConfig, have_pseudo: bool, have_truth: bool
) -> tuple[list[tuple[str, str]], list[str], str]:
    """``(runs, notes, comparison_variant)``: (variant, backbone) pairs in table order."""
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


@flow(name="classify3d", log_prints=True)
def classify3d_flow(
    profile: str | None = None,
    root: str | None = None,
    log_model: bool = True,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Patient CV of every runnable ablation row and compared backbone; tables; index.

    Args:
        profile: params.yaml profile (smoke | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        log_model: log the best model of each fold to MLflow (as classify3d.register says).
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    section = params["classify3d"]
    cfg = Classify3DConfig.from_dict(section)
    logger = get_run_logger()
    class_names = list(DIAGNOSES_3D)

    manifest_std = paths.processed / "manifest_std.parquet"
    manifest = read_table(manifest_std)
    patients, excluded = select_patients(manifest, cfg.data, class_names)
    in_pool = patients["split"].isin(cfg.cv.pool)
    cv_pool = patients[in_pool].copy()
    check_subset_leakage(manifest, cv_pool["record_id"], allowed_splits=cfg.cv.pool)
    fold = assign_folds(cv_pool, cfg.cv.n_folds, cfg.cv.seed)
    patients["fold"] = -1
    patients.loc[cv_pool.index, "fold"] = fold
    check_patient_disjoint(patients[patients["fold"] >= 0])

    pl_path = root_path / cfg.pseudolabels
    pseudo = pd.read_parquet(pl_path) if pl_path.exists() else None
    patients, notes = attach_pseudolabels(patients, pseudo)
    have_pseudo = pseudo is not None and bool((patients["union_path"] != "").all())
    if pseudo is not None and not have_pseudo:
        notes.append("some patients lack pseudo-labels: pseudo-label rows skipped")
    have_truth = bool((patients[TRUE_MASK] != "").all())
    runs, plan_notes, comp = plan_runs(cfg, have_pseudo, have_truth)
    notes += plan_notes
    proposer = proposer_label(pseudo)
    labels = row_labels(cfg.variants, proposer)
    for n in notes:
        logger.warning(n)

    work = paths.interim / "classify3d"
    work.mkdir(parents=True, exist_ok=True)
    patients_path = work / "patients.parquet"
    patients.to_parquet(patients_path, index=False)
    excluded.to_parquet(paths.processed / "classify3d_excluded.parquet", index=False)
    sha = file_sha256(patients_path)
    spacing = params.get("standardize", {}).get("config", {}).get("spacing_mm")
    run_cfg = {
        k: config_to_mapping(getattr(cfg, k)) for k in ("data", "augment", "cv", "train", "model")
    } | {"spacing_mm": spacing}
    run_cfg = json.loads(json.dumps(run_cfg))
    out_root = root_path / cfg.out_dir
    threads = cfg.threads

    all_preds: list[pd.DataFrame] = []
    index_rows: list[dict[str, Any]] = []
    fold_results: dict[str, list[dict[str, Any]]] = {}
    with stage_run("classify3d", {"classify3d": section}):
        log_stage(
            {
                "classify3d.n_patients": float(len(patients)),
                "classify3d.n_cv": float((patients["fold"] >= 0).sum()),
                "classify3d.n_holdout": float((patients["fold"] < 0).sum()),
                "classify3d.n_excluded": float(len(excluded)),
            }
        )
        for variant, backbone in runs:
            run = f"{variant}/{backbone}"
            vcfg = cfg.variants[variant]
            with child_run(
                f"classify3d-{variant}-{backbone}",
                tags={"brainxai.stage": "classify3d", "brainxai.variant": variant,
                      "brainxai.backbone": backbone},
                params={"variant": vars(vcfg), "backbone": cfg.backbones[backbone]},
            ):  # fmt: skip
                results = []
                for k in range(cfg.cv.n_folds):
                    call = {
                        "patients_path": str(patients_path),
                        "patients_sha256": sha,
                        "root": str(root_path),
                        "run": run,
                        "variant": vcfg.model_fields(),
                        "backbone_spec": cfg.backbones[backbone],
                        "cfg": run_cfg,
                        "class_names": class_names,
                        "fold": k,
                        "out_dir": str(out_root / variant / backbone / f"fold{k}"),
                        "threads": threads,
                    }
                    (res,) = run_cached(train_run, lambda r: r["files"], [call], root=root_path)
                    results.append(res)
                    for rec in res["history"]:
                        log_stage(
                            {f"fold{k}.{m}": float(x) for m, x in rec.items() if m != "epoch"},
                            step=int(rec["epoch"]),
                        )
                    log_stage(
                        {f"fold{k}.test_{m}": float(res["cv_metrics"][m])
                         for m in ("accuracy", "macro_f1", "macro_precision", "macro_recall")}
                        | {f"fold{k}.best_epoch": float(res["best_epoch"])}
                    )  # fmt: skip
                    check_subset_leakage(
                        manifest, res["train_record_ids"], allowed_splits=cfg.cv.pool
                    )
                    p = pd.read_parquet(res["predictions"])
                    all_preds.append(p.assign(run=run, variant=variant, backbone=backbone, fold=k))
                    best = next(c for c in res["checkpoints"] if c["selected"])
                    register = cfg.register
                    headline = variant == comp and backbone == cfg.ablation_backbone
                    if log_model and (register == "all" or (register == "headline" and headline)):
                        fold_model = checkpoint_model(LOADER, Path(best["path"]), "3d")
                        mlflow_log.log_model(*fold_model, f"fold{k}")
                    if backbone == cfg.ablation_backbone:
                        for c in res["checkpoints"]:
                            index_rows.append(
                                {
                                    "run": f"{run}/fold{k}",
                                    "init": variant,
                                    "protocol": "cv",
                                    "fraction": 1.0,
                                    "seed": cfg.train.seed,
                                    "fold": k,
                                    "epoch": int(c["epoch"]),
                                    "path": paths.rel(Path(c["path"])),
                                    "loader": LOADER,
                                    "kind": "3d",
                                    "selected": bool(c["selected"]),
                                    "val_macro_f1": float(c["val_macro_f1"]),
                                    "backbone": backbone,
                                    "mask_source": vcfg.mask or "",
                                }
                            )
                fold_results[run] = results
                preds_run = pd.concat(all_preds[-cfg.cv.n_folds :], ignore_index=True)
                summ = run_summary(preds_run, class_names)[run]
                log_stage(
                    {f"cv.{m}_mean": v for m, v in summ["mean"].items() if np.isfinite(v)}
                    | {f"cv.{m}_sd": v for m, v in summ["sd"].items() if np.isfinite(v)}
                )

        preds = pd.concat(all_preds, ignore_index=True)
        summary = run_summary(preds, class_names, cfg.stats.n_bootstrap, cfg.cv.seed,
                              cfg.stats.alpha)  # fmt: skip
        ablation_runs = [f"{v}/{cfg.ablation_backbone}" for v, b in runs
                         if b == cfg.ablation_backbone]  # fmt: skip
        base_run = f"{cfg.base_variant}/{cfg.ablation_backbone}"
        table = ablation(
            preds, base_run, ablation_runs, class_names, cfg.stats.n_bootstrap, cfg.cv.seed,
            cfg.stats.alpha,
        )  # fmt: skip
        table = label_table(table, labels)
        backbone_runs = [f"{comp}/{b}" for b in dict.fromkeys(
            [cfg.ablation_backbone, *cfg.compare_backbones])]  # fmt: skip

        rep = paths.reports / "classify3d"
        rep.mkdir(parents=True, exist_ok=True)
        preds.assign(probs=preds["probs"].map(list)).to_parquet(rep / "predictions.parquet")
        (rep / "runs.md").write_text(markdown_runs(summary, list(summary), labels))
        (rep / "ablation.md").write_text(
            f"Paper 003 Table 2 rows ①–⑤ and this project's extensions; masks from the "
            f"{proposer}.\n\n" + markdown_ablation(table)
            + "".join(f"\n- {n}" for n in notes) + "\n"
        )  # fmt: skip
        (rep / "backbones.md").write_text(markdown_runs(summary, backbone_runs, labels))
        _confusions(summary, class_names, rep)
        index = pd.DataFrame(index_rows, columns=list(INDEX_COLUMNS))
        out_root.mkdir(parents=True, exist_ok=True)
        index.to_parquet(out_root / "index.parquet", index=False)
        log_stage(artifacts=[rep], artifact_path="classify3d")

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
            "mask_proposer": proposer,
            "rows": {v: labels[v] for v in dict.fromkeys(v for v, _ in runs)},
            "notes": notes,
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
                    "best_epochs": [int(x["best_epoch"]) for x in fold_results[r]],
                    "seconds": float(sum(x["seconds"] for x in fold_results[r])),
                    "train_volumes_per_s": float(
                        np.mean([x["volumes_per_s"] for x in fold_results[r]])
                    ),
                }
                for r, s in summary.items()
            },
            "ablation": json.loads(table.to_json(orient="records")),
            "n_checkpoints_indexed": len(index),
        }
        write_json(paths.metrics / "classify3d.json", metrics)
    publish_stage("classify3d", paths.metrics / "classify3d.json", rep.glob("confusion_*.png"))
    return {k: metrics[k] for k in ("n_patients", "n_cv", "n_holdout", "n_excluded", "notes")} | {
        "macro_f1": {r: s["mean"]["macro_f1"] for r, s in summary.items()}
    }


def _confusions(summary: dict[str, Any], class_names: list[str], rep: Path) -> None:
    from brainxai.evaluation.metrics import save_confusion

    for run, s in summary.items():
        stem = run.replace("/", "__")
        save_confusion(
            s["pooled"]["confusion"], class_names, rep / f"confusion_{stem}.png",
            rep / f"confusion_{stem}.csv",
        )  # fmt: skip


if __name__ == "__main__":
    import typer

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    typer.run(classify3d_flow)
