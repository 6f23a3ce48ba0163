"""Stage ``finetune``: label-fraction fine-tuning and evaluation (paper 000's claim that SSL
beats supervised training when labels are scarce; issue 6).

Run: ``brainxai finetune run``. Steps:

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

Outputs: ``models/finetune/<run>/epoch-XXXX.pt`` + ``models/finetune/index.parquet``
(checkpoint contract of :mod:`brainxai.finetune.model`), ``reports/finetune/*``,
``reports/metrics/finetune.json``. MLflow: one nested run per cell under the stage run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from brainxai.config import load_params
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.leakage import check_training_leakage
from brainxai.finetune.runs import LOADER, RunSpec
from brainxai.finetune.sampling import subsets_table
from brainxai.jsonio import write_json
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.ssl import build_backbone
from brainxai.ssl.cache import Cache
from brainxai.ssl.checkpoint import save_backbone
from brainxai.ssl.config import to_dict
from tasks.caching import run_cached
from tasks.env import study_root
from tasks.finetune import (
    FINGERPRINT_FILE,
    finetune_aggregate,
    finetune_cache,
    finetune_cell,
    finetune_embed,
    gather_reporting,
    torch_threads,
)
from tasks.ingest import file_sha256
from tasks.runners import task_runner
from tasks.tracking import flatten, stage_run

BACKBONE_FILE = "backbone.safetensors"
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
               "macro_auroc", "ece")  # fmt: skip


def backbone_files(
    cfg: FinetuneConfig, spec: BackboneSpec, root: Path, export_dir: Path
) -> dict[str, str]:
    """Backbone file of each init (``""`` = random). A missing file is a clear error.

    ``imagenet`` (only when ``imagenet_path`` is set) is exported once as safetensors, so
    its head-only probe checkpoints load like any other.
    """
    files: dict[str, str] = {}
    missing = []
    for init in cfg.inits:
        if init == "random":
            files[init] = ""
            continue
        path = root / cfg.backbone_dir / init / BACKBONE_FILE
        if not path.is_file():
            missing.append(str(path))
        files[init] = str(path)
    if missing:
        raise FileNotFoundError(
            f"pretrained backbones not found (run the pretrain stage first): {missing}"
        )
    if cfg.imagenet_path:
        src = Path(cfg.imagenet_path)
        src = src if src.is_absolute() else root / src
        if not src.is_file():
            raise FileNotFoundError(
                f"finetune.imagenet_path {cfg.imagenet_path!r} does not exist (no download); "
                "set it to a local torchvision state dict or to '' to drop the imagenet init"
            )
        bb = build_backbone(spec.arch, spec.input_mean, spec.input_std, src)
        files["imagenet"] = str(save_backbone(bb, export_dir / "imagenet.safetensors"))
    return files


def _sha(path: str) -> str:
    return file_sha256(path) if path else "random"


def _cache(cfg: FinetuneConfig, paths: StudyPaths) -> dict[str, Any]:
    call = {
        "manifest_path": str(paths.manifest),
        "manifest_sha256": file_sha256(paths.manifest),
        "base_dir": str(paths.root),
        "data_cfg": to_dict(cfg.data),
        "out_dir": str(paths.root / cfg.cache_dir),
    }
    (res,) = run_cached(finetune_cache, lambda r: r["files"], [call])
    on_disk = (Path(res["cache_dir"]) / FINGERPRINT_FILE).read_text().strip()
    if on_disk != res["fingerprint"]:  # another configuration rebuilt the cache since
        res = finetune_cache.with_options(refresh_cache=True)(**call)
    return res


def _log_cell(client: MlflowClient, parent: Any, call: dict, res: dict | None, err: str | None):
    """One nested MLflow run per cell: params, per-epoch metrics (step = epoch), test
    metrics, confusion artifacts; a failed cell gets ``status = failed`` and its error."""
    spec = call["spec"]
    tags = {
        "mlflow.parentRunId": parent.info.run_id,
        "brainxai.stage": "finetune",
        "brainxai.run": call["run"],
        "status": "ok" if res is not None else "failed",
        **{f"brainxai.{k}": str(v) for k, v in spec.items()},
        **({"error": err[:5000]} if err else {}),
    }
    run = client.create_run(parent.info.experiment_id, run_name=call["run"], tags=tags)
    rid = run.info.run_id
    params = flatten({**spec, **call["protocol_cfg"], "backbone_path": call["backbone_path"],
                      "n_train_records": len(call["train_record_ids"])})  # fmt: skip
    client.log_batch(rid, params=[Param(k, v) for k, v in params.items()])
    if res is None:
        client.set_terminated(rid, status="FAILED")
        return
    ts = 0
    metrics = [
        Metric(k, float(v), ts, int(h["epoch"]))
        for h in res["history"]
        for k, v in h.items()
        if k != "epoch"
    ]
    m = res["metrics"]
    metrics += [Metric(f"test_{k}", float(m[k]), ts, 0) for k in METRIC_KEYS]
    metrics += [
        Metric(f"test_f1.{name.replace(' ', '_').replace('+', 'plus')}", float(v["f1"]), ts, 0)
        for name, v in m["per_class"].items()
    ]
    metrics.append(Metric("selected_epoch", float(res["selected_epoch"]), ts, 0))
    for i in range(0, len(metrics), 500):
        client.log_batch(rid, metrics=metrics[i : i + 500])
    client.log_artifact(rid, res["confusion_png"], artifact_path="confusion")
    client.log_artifact(rid, res["confusion_csv"], artifact_path="confusion")
    client.set_terminated(rid)


def _embed_calls(
    cfg: FinetuneConfig,
    spec: BackboneSpec,
    backbones: dict[str, str],
    sha: dict[str, str],
    cache: dict[str, Any],
    out_dir: Path,
) -> list[dict[str, Any]]:
    """One embedding task per frozen backbone (per seed for random init) when probing."""
    if "probe" not in cfg.protocols:
        return []
    calls = []
    for init, path in backbones.items():
        for s in cfg.seeds if init == "random" else [0]:
            key = f"{init}-{sha[init][:12]}-s{s}-{cache['fingerprint']}"
            calls.append({
                "init": init, "backbone_path": path, "backbone_sha256": sha[init],
                "backbone_seed": int(s), "backbone": to_dict(spec),
                "cache_dir": cache["cache_dir"], "cache_fingerprint": cache["fingerprint"],
                "batch_size": cfg.probe.embed_batch_size, "device": cfg.tune.device,
                "out_path": str(out_dir / f"{key}.npy"),
            })  # fmt: skip
    return calls


def _cell_calls(
    cfg: FinetuneConfig,
    spec: BackboneSpec,
    backbones: dict[str, str],
    sha: dict[str, str],
    cache: dict[str, Any],
    subsets: pd.DataFrame,
    emb_of: dict[tuple[str, int], tuple[dict | None, str | None]],
    models: Path,
    run_reports: Path,
) -> tuple[list[dict[str, Any]], list[tuple[RunSpec, str]]]:
    """The task call of every (init, protocol, fraction, seed); probe cells whose embedding
    failed are returned apart as ``(spec, reason)``."""
    by_cell = subsets.groupby(["fraction", "seed"])["record_id"].apply(sorted).to_dict()
    calls, skipped = [], []
    for init in backbones:
        for protocol in cfg.protocols:
            for fraction in cfg.fractions:
                for seed in cfg.seeds:
                    rs = RunSpec(init, protocol, float(fraction), int(seed))
                    emb_path = ""
                    if protocol == "probe":
                        r, e = emb_of[(init, int(seed) if init == "random" else 0)]
                        if r is None:
                            skipped.append((rs, f"embedding failed: {e}"))
                            continue
                        emb_path = r["path"]
                    section = "probe" if protocol == "probe" else "tune"
                    calls.append({
                        "run": rs.name, "spec": rs.to_dict(),
                        "protocol_cfg": {section: to_dict(getattr(cfg, section))},
                        "backbone": to_dict(spec), "backbone_path": backbones[init],
                        "backbone_sha256": sha[init], "cache_dir": cache["cache_dir"],
                        "cache_fingerprint": cache["fingerprint"],
                        "train_record_ids": [str(x) for x in by_cell[(float(fraction), int(seed))]],
                        "embeddings_path": emb_path, "embeddings_key": Path(emb_path).stem,
                        "run_dir": str(models / rs.name), "report_dir": str(run_reports / rs.name),
                        "ece_bins": cfg.ece_bins,
                    })  # fmt: skip
    return calls, skipped


def run_finetune_stage(profile: str | None = None, root: str | None = None) -> dict[str, Any]:
    """The stage's body (runs inside the Prefect flow :func:`finetune_flow`)."""
    root_path = Path(root) if root else study_root()
    params = load_params(root_path / "params.yaml", profile=profile)
    paths = StudyPaths.from_params(root_path, params)
    cfg = FinetuneConfig.from_dict(params["finetune"])
    spec = BackboneSpec.from_pretrain(params["pretrain"]["train"])
    logger = get_run_logger()
    torch_threads(cfg.torch_threads)
    cache_root = paths.root / cfg.cache_dir
    models, reports = paths.root / cfg.out_dir, paths.root / cfg.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    backbones = backbone_files(cfg, spec, paths.root, cache_root / "backbones")
    inits = list(backbones)
    manifest = read_table(paths.manifest)
    stage_params = {"finetune": {**cfg.to_dict(), "inits": inits}, "backbone": to_dict(spec)}
    with stage_run("finetune", stage_params) as stage:
        cache = _cache(cfg, paths)
        opened = Cache.open(cache["cache_dir"])
        index = opened.index
        for f in cache["failures"]:
            logger.warning("not decoded, left out of every run: %s (%s)", f["key"], f["reason"])
        subsets = subsets_table(index[index["ok"]], cfg.fractions, cfg.seeds)
        subsets.to_csv(reports / "subsets.csv", index=False)
        leak = check_training_leakage(
            manifest, index, opened.images, subsets["record_id"].unique().tolist(),
            cfg.data.near_dup_size, cfg.data.near_dup_threshold,
        )  # fmt: skip
        mlflow.log_metrics({f"finetune.leakage.{k}": float(v) for k, v in leak.items()})
        mlflow.log_metrics({f"finetune.cache.{k}": float(cache[k]) for k in ("n", "ok", "failed")})

        # 4. frozen-backbone embeddings (probe): one per backbone (per seed for random)
        sha = {i: _sha(p) for i, p in backbones.items()}
        embed_calls = _embed_calls(cfg, spec, backbones, sha, cache, cache_root / "embeddings")
        embedded = gather_reporting(finetune_embed, lambda r: r["files"], embed_calls)
        emb_of = {(c["init"], c["backbone_seed"]): (r, e) for c, r, e in embedded}

        # 5. every cell of the matrix, each a cached task
        calls, skipped = _cell_calls(
            cfg, spec, backbones, sha, cache, subsets, emb_of, models, reports / "runs"
        )
        results = gather_reporting(finetune_cell, lambda r: r["files"], calls)

        client = MlflowClient()
        status_rows, ok = [], []
        for call, res, err in results:
            _log_cell(client, stage, call, res, err)
            row = {**call["spec"], "run": call["run"], "status": "ok" if res else "failed",
                   "error": err or "", "n_train": len(call["train_record_ids"])}  # fmt: skip
            if res is not None:
                ok.append(res)
                row |= {"selected_epoch": res["selected_epoch"], "seconds": res["seconds"],
                        "stopped_early": res["stopped_early"],
                        **{k: res["metrics"][k] for k in METRIC_KEYS}}  # fmt: skip
            status_rows.append(row)
        for rs, err in skipped:
            status_rows.append({**rs.to_dict(), "run": rs.name, "status": "failed",
                                "error": err, "n_train": 0})  # fmt: skip
        failed = [r for r in status_rows if r["status"] == "failed"]
        for r in failed:
            logger.error("run %s failed: %s", r["run"], r["error"])
        status = pd.DataFrame(status_rows).sort_values(["init", "protocol", "fraction", "seed"])
        status.to_csv(reports / "runs.csv", index=False)

        index_rows = [
            {"run": res["run"], "init": res["init"], "protocol": res["protocol"],
             "fraction": float(res["fraction"]), "seed": int(res["seed"]),
             "epoch": int(c["epoch"]), "path": paths.rel(Path(c["path"])), "loader": LOADER,
             "kind": "2d", "selected": bool(c["selected"]),
             "val_macro_f1": float(c["val_macro_f1"])}
            for res in ok for c in res["checkpoints"]
        ]  # fmt: skip
        models.mkdir(parents=True, exist_ok=True)
        ckpt_index = pd.DataFrame(index_rows)
        if not ckpt_index.empty:
            ckpt_index = ckpt_index.sort_values(["run", "epoch"], ignore_index=True)
        ckpt_index.to_parquet(models / "index.parquet", index=False)

        summary: dict[str, Any] = {
            "runs": len(status_rows), "ok": len(ok), "failed": len(failed),
            "failed_runs": sorted(r["run"] for r in failed), "checkpoints": len(index_rows),
            "inits": inits, "fractions": list(cfg.fractions), "seeds": list(cfg.seeds),
            "cache": {k: cache[k] for k in ("n", "ok", "failed")}, "leakage": leak,
        }  # fmt: skip
        if ok:
            preds = pd.concat([pd.read_parquet(r["predictions"]) for r in ok], ignore_index=True)
            preds = preds.sort_values(["run", "record_id"], ignore_index=True)
            pred_path = reports / "predictions.parquet"
            preds.to_parquet(pred_path, index=False)
            (agg,) = run_cached(finetune_aggregate, lambda r: r["files"], [{
                "predictions_path": str(pred_path),
                "predictions_sha256": _frame_sha(preds),
                "baseline_init": cfg.baseline_init, "metric": cfg.compare_metric,
                "n_boot": cfg.n_boot, "seed": int(params["seed"]), "out_dir": str(reports),
                "ece_bins": cfg.ece_bins,
            }])  # fmt: skip
            for f in agg["files"]:
                mlflow.log_artifact(f, artifact_path="finetune")
            summary |= headline(status[status["status"] == "ok"], cfg)
            summary |= {k: v for k, v in agg.items() if k.startswith("comparisons_")}
        mlflow.log_metrics(
            {f"finetune.{k}": float(v) for k, v in summary.items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
        )  # fmt: skip
        mlflow.set_tag("finetune.failed_runs", ",".join(summary["failed_runs"])[:5000])
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics / "finetune.json", summary)
    if failed and cfg.fail_on_error:
        raise RuntimeError(
            f"{len(failed)} of {len(status_rows)} fine-tuning runs failed (see "
            f"{reports / 'runs.csv'}): {summary['failed_runs'][:10]}"
        )
    return summary


def _frame_sha(frame: pd.DataFrame) -> str:
    blob = frame.assign(probs=frame["probs"].map(lambda p: np.round(p, 12).tolist())).to_json()
    return hashlib.sha256(blob.encode()).hexdigest()


def headline(ok_runs: pd.DataFrame, cfg: FinetuneConfig) -> dict[str, Any]:
    """Flat numbers for ``dvc metrics show``: mean test macro-F1 over seeds per (protocol,
    init) at the smallest and the largest label fraction."""
    out: dict[str, Any] = {}
    lo, hi = min(cfg.fractions), max(cfg.fractions)
    for (protocol, init, frac), g in ok_runs.groupby(["protocol", "init", "fraction"]):
        if frac in (lo, hi):
            out[f"{protocol}.{init}.f{frac:g}.macro_f1"] = round(float(g["macro_f1"].mean()), 4)
    return out


@flow(name="finetune", log_prints=True)
def _finetune(profile: str | None = None, root: str | None = None) -> dict[str, Any]:
    return run_finetune_stage(profile=profile, root=root)


def finetune_flow(profile: str | None = None, root: str | None = None) -> dict[str, Any]:
    """Run the stage as a Prefect flow with the task runner of ``finetune.runner``."""
    root_path = Path(root) if root else study_root()
    params = load_params(root_path / "params.yaml", profile=profile)
    runner = task_runner({"runner": params["finetune"].get("runner", params["runner"])})
    return _finetune.with_options(task_runner=runner)(profile=profile, root=str(root_path))


if __name__ == "__main__":
    import typer

    typer.run(finetune_flow)
