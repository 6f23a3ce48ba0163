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
:class:`Stage`), ``reports/metrics/finetune*.json``. MLflow: one nested run per cell under
the stage run (``finetune``, or ``finetune@<init>`` step by step).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from brainxai.atomic import to_csv_atomic, to_parquet_atomic
from brainxai.evaluation.fractions import EFFECTIVE_COLUMNS
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.controls import verdicts
from brainxai.finetune.leakage import check_training_leakage
from brainxai.finetune.runs import LOADER, RunSpec
from brainxai.finetune.sampling import effective_fractions, subsets_table
from brainxai.hashing import file_sha256
from brainxai.jsonio import write_json
from brainxai.manifest import read_table
from brainxai.paths import StudyPaths
from brainxai.ssl import build_backbone
from brainxai.ssl.cache import Cache
from brainxai.ssl.checkpoint import save_backbone
from brainxai.ssl.config import to_dict
from tasks.artifacts import publish_stage
from tasks.caching import run_cached
from tasks.controls import finetune_control
from tasks.env import study_params
from tasks.finetune import (
    FINGERPRINT_FILE,
    PROTOCOL_SECTION,
    finetune_aggregate,
    finetune_cache,
    finetune_cell,
    finetune_embed,
    gather_reporting,
    torch_threads,
)
from tasks.mlflow_log import flatten, stage_run
from tasks.runners import task_runner

BACKBONE_FILE = "backbone.safetensors"
METRIC_KEYS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
               "macro_auroc", "ece")  # fmt: skip
SUBSETS_FILE = "subsets.csv"
FRACTIONS_FILE = "fractions.csv"  # effective fraction (patients, images) of each subset
RUNS_FILE = "runs.csv"
PREDICTIONS_FILE = "predictions.parquet"
INDEX_FILE = "index.parquet"
CURVE_FILE = "label_efficiency.csv"
RUNS_COLUMNS = ("init", "protocol", "fraction", "seed", "run", "status", "error", "n_train",
                "selected_epoch", "seconds", "stopped_early", *METRIC_KEYS)  # fmt: skip
INDEX_COLUMNS = ("run", "init", "protocol", "fraction", "seed", "epoch", "path", "loader", "kind",
                 "selected", "val_macro_f1", "phase", "frozen_epochs")  # fmt: skip


def all_inits(cfg: FinetuneConfig) -> list[str]:
    """The inits of the stage: ``finetune.inits`` (+ ``imagenet`` when ``imagenet_path`` is
    set and the list does not name it)."""
    extra = ["imagenet"] if cfg.imagenet_path and "imagenet" not in cfg.inits else []
    return [*cfg.inits, *extra]


def backbone_files(
    cfg: FinetuneConfig,
    spec: BackboneSpec,
    root: Path,
    export_dir: Path,
    inits: list[str] | None = None,
) -> dict[str, str]:
    """Backbone file of each init (``""`` = random; default: :func:`all_inits`). A missing
    file is a clear error.

    ``imagenet`` (only when ``imagenet_path`` is set) is exported once as safetensors, so
    its head-only probe checkpoints load like any other.
    """
    files: dict[str, str] = {}
    missing = []
    for init in inits if inits is not None else all_inits(cfg):
        if init == "random":
            files[init] = ""
        elif init == "imagenet":
            files[init] = _imagenet_file(cfg, spec, root, export_dir)
        else:
            path = root / cfg.backbone_dir / init / BACKBONE_FILE
            if not path.is_file():
                missing.append(str(path))
            files[init] = str(path)
    if missing:
        raise FileNotFoundError(
            f"pretrained backbones not found (run the pretrain stage first): {missing}"
        )
    return files


def _imagenet_file(cfg: FinetuneConfig, spec: BackboneSpec, root: Path, export_dir: Path) -> str:
    if not cfg.imagenet_path:
        raise ValueError("init 'imagenet' needs finetune.imagenet_path (a local state dict)")
    src = Path(cfg.imagenet_path)
    src = src if src.is_absolute() else root / src
    if not src.is_file():
        raise FileNotFoundError(
            f"finetune.imagenet_path {cfg.imagenet_path!r} does not exist (no download); "
            "set it to a local torchvision state dict or to '' to drop the imagenet init"
        )
    bb = build_backbone(spec.arch, spec.input_mean, spec.input_std, src)
    return str(save_backbone(bb, export_dir / "imagenet.safetensors"))


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
    (res,) = run_cached(finetune_cache, lambda r: r["files"], [call], root=paths.root)
    on_disk = (Path(res["cache_dir"]) / FINGERPRINT_FILE).read_text().strip()
    if on_disk != res["fingerprint"]:  # another configuration rebuilt the cache since
        fresh = finetune_cache.with_options(refresh_cache=True)
        (res,) = run_cached(fresh, lambda r: r["files"], [call], root=paths.root)
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
        if k != "epoch" and isinstance(v, int | float)  # not the phase name
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
            if cfg.probe.bn_recalibration_images:
                key += f"-bn{cfg.probe.bn_recalibration_images}"
            calls.append({
                "init": init, "backbone_path": path, "backbone_sha256": sha[init],
                "backbone_seed": int(s), "backbone": to_dict(spec),
                "cache_dir": cache["cache_dir"], "cache_fingerprint": cache["fingerprint"],
                "batch_size": cfg.probe.embed_batch_size, "device": cfg.tune.device,
                "bn_recalibration_images": cfg.probe.bn_recalibration_images,
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
                    if protocol == "twophase" and not cfg.twophase.runs_cell(fraction, seed):
                        continue
                    rs = RunSpec(init, protocol, float(fraction), int(seed))
                    emb_path = ""
                    if protocol == "probe":
                        r, e = emb_of[(init, int(seed) if init == "random" else 0)]
                        if r is None:
                            skipped.append((rs, f"embedding failed: {e}"))
                            continue
                        emb_path = r["path"]
                    section = PROTOCOL_SECTION[protocol]
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


@dataclass(frozen=True)
class Stage:
    """What every step of the stage reads: params, paths and the stage's directories.

    Layout (one init's outputs never touch another's, so each init can be its own DVC
    stage ``finetune@<init>``): ``models/finetune/<init>/{<run>/epoch-XXXX.pt, embeddings/,
    index.parquet}``, ``reports/finetune/<init>/{runs/<run>/, runs.csv, predictions.parquet}``,
    ``reports/metrics/finetune_<init>.json``; shared: the decoded cache, ``subsets.csv``,
    ``reports/metrics/finetune_cache.json``; aggregated (``finetune eval``): ``runs.csv``,
    ``predictions.parquet``, statistics and plots in ``reports/finetune/``, the checkpoint
    index ``models/finetune/index.parquet``, ``reports/metrics/finetune.json``.
    """

    params: dict[str, Any]
    paths: StudyPaths
    cfg: FinetuneConfig
    spec: BackboneSpec

    @classmethod
    def load(
        cls, profile: str | None, root: str | None, overrides: list[str] | None = None
    ) -> Stage:
        root_path, params = study_params(profile, root, overrides)
        return cls(
            params,
            StudyPaths.from_params(root_path, params),
            FinetuneConfig.from_dict(params["finetune"]),
            BackboneSpec.from_pretrain(
                params["pretrain"]["train"], params["finetune"].get("image_size", 0)
            ),
        )

    @property
    def models(self) -> Path:
        return self.paths.root / self.cfg.out_dir

    @property
    def reports(self) -> Path:
        return self.paths.root / self.cfg.reports_dir

    def init_dirs(self, init: str) -> tuple[Path, Path]:
        """``(models/finetune/<init>, reports/finetune/<init>)``."""
        return self.models / init, self.reports / init

    def stage_params(self, **extra: Any) -> dict[str, Any]:
        inits = all_inits(self.cfg)
        return {"finetune": {**self.cfg.to_dict(), "inits": inits}, "backbone": to_dict(self.spec),
                **extra}  # fmt: skip


def prepare(st: Stage) -> dict[str, Any]:
    """Steps 1-3: decode the images once, draw the label-fraction subsets
    (``reports/finetune/subsets.csv``; what each nominal fraction really is, per subset:
    ``fractions.csv``) and check leakage before any training.
    Metrics: ``reports/metrics/finetune_cache.json``."""
    logger = get_run_logger()
    st.reports.mkdir(parents=True, exist_ok=True)
    cache = _cache(st.cfg, st.paths)
    opened = Cache.open(cache["cache_dir"])
    index = opened.index
    for f in cache["failures"]:
        logger.warning("not decoded, left out of every run: %s (%s)", f["key"], f["reason"])
    subsets = subsets_table(index[index["ok"]], st.cfg.fractions, st.cfg.seeds)
    to_csv_atomic(subsets, st.reports / SUBSETS_FILE, index=False)
    effective = effective_fractions(index[index["ok"]], subsets)
    to_csv_atomic(effective, st.reports / FRACTIONS_FILE, index=False)
    leak = check_training_leakage(
        read_table(st.paths.manifest), index, opened.images,
        subsets["record_id"].unique().tolist(),
        st.cfg.data.near_dup_size, st.cfg.data.near_dup_threshold,
    )  # fmt: skip
    mlflow.log_metrics({f"finetune.leakage.{k}": float(v) for k, v in leak.items()})
    mlflow.log_metrics({f"finetune.cache.{k}": float(cache[k]) for k in ("n", "ok", "failed")})
    out = {"cache": {k: cache[k] for k in ("n", "ok", "failed")}, "leakage": leak}
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / "finetune_cache.json", out)
    return {**out, "cache_result": cache, "subsets": subsets}


def _open_cache(st: Stage) -> dict[str, Any]:
    """The decoded cache ``finetune cache`` wrote (read, never rebuilt, by one init's step)."""
    cache_dir = st.paths.root / st.cfg.cache_dir
    fp = cache_dir / FINGERPRINT_FILE
    if not fp.is_file():
        raise FileNotFoundError(f"{fp} not found: run `brainxai finetune cache` first")
    return {"cache_dir": str(cache_dir), "fingerprint": fp.read_text().strip()}


def _read_subsets(st: Stage) -> pd.DataFrame:
    path = st.reports / SUBSETS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `brainxai finetune cache` first")
    return pd.read_csv(path, dtype={"record_id": str, "subject": str})


def train_init(
    st: Stage, init: str, cache: dict[str, Any], subsets: pd.DataFrame, parent: Any
) -> dict[str, Any]:
    """Steps 4-5 for one init: its frozen-backbone embeddings (probe) and every cell
    (protocol x fraction x seed), each a cached task. Writes the init's ``runs.csv``,
    ``predictions.parquet``, checkpoint ``index.parquet`` and
    ``reports/metrics/finetune_<init>.json``; returns that summary."""
    logger = get_run_logger()
    cfg, spec = st.cfg, st.spec
    models, reports = st.init_dirs(init)
    reports.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    backbones = backbone_files(cfg, spec, st.paths.root, models / "backbone", inits=[init])
    sha = {i: _sha(p) for i, p in backbones.items()}
    embed_calls = _embed_calls(cfg, spec, backbones, sha, cache, models / "embeddings")
    embedded = gather_reporting(finetune_embed, lambda r: r["files"], embed_calls, st.paths.root)
    emb_of = {(c["init"], c["backbone_seed"]): (r, e) for c, r, e in embedded}
    calls, skipped = _cell_calls(
        cfg, spec, backbones, sha, cache, subsets, emb_of, models, reports / "runs"
    )
    results = gather_reporting(finetune_cell, lambda r: r["files"], calls, st.paths.root)

    client = MlflowClient()
    status_rows, ok = [], []
    for call, res, err in results:
        _log_cell(client, parent, call, res, err)
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
    for r in status_rows:
        if r["status"] == "failed":
            logger.error("run %s failed: %s", r["run"], r["error"])
    status = pd.DataFrame(status_rows, columns=list(RUNS_COLUMNS))
    status = status.sort_values(["init", "protocol", "fraction", "seed"])
    to_csv_atomic(status, reports / RUNS_FILE, index=False)

    index_rows = [
        {"run": res["run"], "init": res["init"], "protocol": res["protocol"],
         "fraction": float(res["fraction"]), "seed": int(res["seed"]),
         "epoch": int(c["epoch"]), "path": st.paths.rel(Path(c["path"])), "loader": LOADER,
         "kind": "2d", "selected": bool(c["selected"]),
         "val_macro_f1": float(c["val_macro_f1"]), "phase": str(c["phase"]),
         "frozen_epochs": int(res["frozen_epochs"])}
        for res in ok for c in res["checkpoints"]
    ]  # fmt: skip
    ckpt_index = pd.DataFrame(index_rows, columns=list(INDEX_COLUMNS))
    if not ckpt_index.empty:
        ckpt_index = ckpt_index.sort_values(["run", "epoch"], ignore_index=True)
    to_parquet_atomic(ckpt_index, models / INDEX_FILE, index=False)
    preds = [pd.read_parquet(r["predictions"]) for r in ok]
    frame = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(columns=["run"])
    frame = frame.sort_values(["run", "record_id"] if preds else ["run"], ignore_index=True)
    to_parquet_atomic(frame, reports / PREDICTIONS_FILE, index=False)
    summary = _counts(status, len(index_rows)) | headline(status[status["status"] == "ok"], cfg)
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / f"finetune_{init}.json", summary)
    publish_stage("finetune", st.paths.metrics / f"finetune_{init}.json")
    return summary


def control_train_ids(
    cfg: FinetuneConfig, cache: dict[str, Any], subsets: pd.DataFrame
) -> list[str]:
    """Training records of the controls' cell: the label-fraction subset of
    ``controls.fraction`` / ``controls.seed`` (every training image at fraction 1)."""
    c = cfg.controls
    sub = subsets[(subsets["fraction"] == float(c.fraction)) & (subsets["seed"] == int(c.seed))]
    if len(sub):
        return sorted(sub["record_id"].astype(str))
    if c.fraction == 1.0:
        index = Cache.open(cache["cache_dir"]).index
        return sorted(index.loc[index["ok"] & (index["split"] == "train"), "record_id"].astype(str))
    raise ValueError(
        f"finetune.controls.fraction {c.fraction} / seed {c.seed} is not among the drawn "
        f"subsets (finetune.fractions {list(cfg.fractions)}, seeds {list(cfg.seeds)})"
    )


def run_controls(
    st: Stage, cache: dict[str, Any], subsets: pd.DataFrame, parent: Any
) -> dict[str, Any]:
    """The planted controls (:mod:`brainxai.finetune.controls`): one cached task each, then
    the pass / fail / uninformative table ``reports/finetune/controls/controls.csv``, the
    numbers ``controls.json`` and ``reports/metrics/finetune_controls.json``."""
    logger = get_run_logger()
    cfg = st.cfg
    out_models, out_reports = st.models / "controls", st.reports / "controls"
    out_reports.mkdir(parents=True, exist_ok=True)
    train_ids = control_train_ids(cfg, cache, subsets)
    layers = list(st.params.get("xai", {}).get("cam", {}).get("layers", []) or [])
    calls = [{
        "control": c, "cache_dir": cache["cache_dir"], "cache_fingerprint": cache["fingerprint"],
        "train_record_ids": train_ids,
        "finetune_cfg": {"tune": to_dict(cfg.tune), "controls": to_dict(cfg.controls)},
        "backbone": to_dict(st.spec), "cam_layers": layers, "root": str(st.paths.root),
        "run_dir": str(out_models / c), "report_dir": str(out_reports / c),
    } for c in cfg.controls.run]  # fmt: skip
    results = gather_reporting(finetune_control, lambda r: r["files"], calls, st.paths.root)
    measured, errors = {}, {}
    for call, res, err in results:
        if res is None:
            errors[call["control"]] = err or "failed"
            logger.error("control %s failed: %s", call["control"], err)
        else:
            measured[call["control"]] = res["measured"]
    rows = verdicts(measured, cfg.controls)
    rows += [{"control": c, "check": "ran", "measured": None, "target": "-", "status": "fail",
              "note": e[:300]} for c, e in errors.items()]  # fmt: skip
    table = pd.DataFrame(rows, columns=["control", "check", "measured", "target", "status",
                                        "note"])  # fmt: skip
    to_csv_atomic(table, out_reports / "controls.csv", index=False)
    doc = {"measured": measured, "verdicts": rows, "errors": errors,
           "config": to_dict(cfg.controls)}  # fmt: skip
    write_json(out_reports / "controls.json", doc)
    summary = {
        "controls": list(cfg.controls.run),
        "checks": len(rows),
        "passed": int((table["status"] == "pass").sum()),
        "failed": int((table["status"] == "fail").sum()),
        "uninformative": int((table["status"] == "uninformative").sum()),
    }
    for c, m in measured.items():
        for k in ("test_macro_f1", "val_macro_f1", "outside_head_mass", "pointing_tumour"):
            if isinstance(m.get(k), int | float):
                summary[f"{c}.{k}"] = round(float(m[k]), 4)
    mlflow.log_metrics({f"finetune.controls.{k}": float(v) for k, v in summary.items()
                        if isinstance(v, int | float)})  # fmt: skip
    mlflow.log_artifact(str(out_reports / "controls.csv"), artifact_path="finetune/controls")
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / "finetune_controls.json", summary)
    return summary


def _counts(status: pd.DataFrame, checkpoints: int) -> dict[str, Any]:
    failed = status.loc[status["status"] == "failed", "run"]
    return {"runs": len(status), "ok": int((status["status"] == "ok").sum()),
            "failed": len(failed), "failed_runs": sorted(failed),
            "checkpoints": checkpoints}  # fmt: skip


def evaluate(st: Stage) -> dict[str, Any]:
    """Step 6: gather every init's cells and aggregate them (:mod:`brainxai.evaluation`):
    summary with patient-bootstrap CIs, paired tests vs the baseline init with Holm
    correction, the label-efficiency plot + its tidy table (``label_efficiency.csv``, the
    DVC plot), the Markdown table; the combined ``runs.csv``, ``predictions.parquet`` and
    checkpoint index (the xai stage's input); ``reports/metrics/finetune.json``."""
    cfg, inits = st.cfg, all_inits(st.cfg)
    missing = [i for i in inits if not (st.init_dirs(i)[1] / RUNS_FILE).is_file()]
    if missing:
        raise FileNotFoundError(
            f"no fine-tuning results for inits {missing}: run "
            f"`brainxai finetune run --init <init>` for each first"
        )
    status = pd.concat(
        [pd.read_csv(st.init_dirs(i)[1] / RUNS_FILE) for i in inits], ignore_index=True
    )
    status["error"] = status["error"].fillna("")
    status = status.sort_values(["init", "protocol", "fraction", "seed"], ignore_index=True)
    to_csv_atomic(status, st.reports / RUNS_FILE, index=False)
    index = pd.concat(
        [pd.read_parquet(st.init_dirs(i)[0] / INDEX_FILE) for i in inits], ignore_index=True
    )
    if not index.empty:
        index = index.sort_values(["run", "epoch"], ignore_index=True)
    to_parquet_atomic(index, st.models / INDEX_FILE, index=False)
    summary: dict[str, Any] = {
        **_counts(status, len(index)), "inits": inits, "fractions": list(cfg.fractions),
        "seeds": list(cfg.seeds),
    }  # fmt: skip
    cache_metrics = st.paths.metrics / "finetune_cache.json"
    if cache_metrics.is_file():
        summary |= json.loads(cache_metrics.read_text())
    ok = status[status["status"] == "ok"]
    if not ok.empty:
        preds = pd.concat(
            [pd.read_parquet(st.init_dirs(i)[1] / PREDICTIONS_FILE) for i in inits],
            ignore_index=True,
        )
        preds = preds.sort_values(["run", "record_id"], ignore_index=True)
        pred_path = st.reports / PREDICTIONS_FILE
        to_parquet_atomic(preds, pred_path, index=False)
        (agg,) = run_cached(finetune_aggregate, lambda r: r["files"], [{
            "predictions_path": str(pred_path),
            "predictions_sha256": _frame_sha(preds),
            "baseline_init": cfg.baseline_init, "metric": cfg.compare_metric,
            "n_boot": cfg.n_boot, "seed": int(st.params["seed"]), "out_dir": str(st.reports),
            "ece_bins": cfg.ece_bins, "power": cfg.mde_power, **_effective_call(st),
        }], root=st.paths.root)  # fmt: skip
        curve = label_efficiency_table(pd.read_csv(agg["summary"]))
        to_csv_atomic(curve, st.reports / CURVE_FILE, index=False)
        for f in [*agg["files"], str(st.reports / CURVE_FILE)]:
            mlflow.log_artifact(f, artifact_path="finetune")
        summary |= headline(ok, cfg)
        summary |= {k: v for k, v in agg.items() if k.startswith("comparisons_")}
    mlflow.log_metrics(
        {f"finetune.{k}": float(v) for k, v in summary.items()
         if isinstance(v, int | float) and not isinstance(v, bool)}
    )  # fmt: skip
    mlflow.set_tag("finetune.failed_runs", ",".join(summary["failed_runs"])[:5000])
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / "finetune.json", summary)
    publish_stage("finetune", st.paths.metrics / "finetune.json", st.reports.glob("*.png"))
    return summary


def _effective_call(st: Stage) -> dict[str, str]:
    """The aggregate task's ``effective_path``/``effective_sha256`` (none before the cache
    step wrote ``fractions.csv``)."""
    path = st.reports / FRACTIONS_FILE
    if not path.is_file():
        return {}
    return {"effective_path": str(path), "effective_sha256": _sha(str(path))}


def label_efficiency_table(summary: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """The label-efficiency curve as a tidy table (one row per init x protocol x fraction:
    mean over seeds and the patient-bootstrap CI of ``metric``, with the effective fraction
    of patients and images beside the nominal one when the summary has it) - the DVC plot's
    data."""
    rows = summary[summary["metric"] == metric]
    cols = ["fraction", "init", "protocol", "mean", "ci_low", "ci_high", "sd", "n_seeds"]
    out = rows[cols + [c for c in EFFECTIVE_COLUMNS if c in rows]]
    out = out.rename(columns={"mean": metric}).assign(
        series=lambda d: d["protocol"] + "/" + d["init"]
    )
    return out.sort_values(["protocol", "init", "fraction"], ignore_index=True)


def _raise_if_failed(cfg: FinetuneConfig, summary: dict[str, Any], where: Path) -> None:
    if summary["failed"] and cfg.fail_on_error:
        raise RuntimeError(
            f"{summary['failed']} of {summary['runs']} fine-tuning runs failed (see "
            f"{where}): {summary['failed_runs'][:10]}"
        )


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
    st = Stage.load(profile, root, overrides)
    torch_threads(st.cfg.torch_threads)
    if step == "init":
        if init not in all_inits(st.cfg):
            raise ValueError(f"unknown init {init!r}; finetune.inits: {all_inits(st.cfg)}")
        with stage_run(f"finetune@{init}", st.stage_params(init=init)) as parent:
            summary = train_init(st, init, _open_cache(st), _read_subsets(st), parent)
        _raise_if_failed(st.cfg, summary, st.init_dirs(init)[1] / RUNS_FILE)
        return summary
    if step == "cache":
        with stage_run("finetune_cache", st.stage_params()):
            prep = prepare(st)
        return {k: prep[k] for k in ("cache", "leakage")}
    if step == "eval":
        with stage_run("finetune_eval", st.stage_params()):
            return evaluate(st)
    if step == "controls":
        with stage_run("finetune_controls", st.stage_params()) as parent:
            return run_controls(st, _open_cache(st), _read_subsets(st), parent)
    if step != "all":
        raise ValueError(f"unknown step {step!r}: all | cache | init | eval | controls")
    with stage_run("finetune", st.stage_params()) as parent:
        prep = prepare(st)
        backbone_files(st.cfg, st.spec, st.paths.root, st.models / "imagenet" / "backbone")
        for i in all_inits(st.cfg):
            train_init(st, i, prep["cache_result"], prep["subsets"], parent)
        summary = evaluate(st)
        if st.cfg.controls.run:
            summary["controls"] = run_controls(st, prep["cache_result"], prep["subsets"], parent)
    _raise_if_failed(st.cfg, summary, st.reports / RUNS_FILE)
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
        profile: params.yaml profile (smoke | full); empty: the file's ``profile`` key.
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
