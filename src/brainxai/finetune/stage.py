"""Stage ``finetune`` without the orchestrator: the layout (:class:`Stage`), the fan-out
(:func:`cells`, :func:`embeddings` - the part ``brainxai study plan`` shares with the flow,
so the two cannot drift - and the calls of the cached tasks: :func:`cache_call`,
:func:`embed_calls`, :func:`cell_calls`, :func:`control_calls`, :func:`aggregate_call`), and
what the results make: the subsets and the leakage check (:func:`prepare`), one init's
tables (:func:`summarise_init`), the combined tables and the headline numbers
(:func:`combine_inits`, :func:`summarise`), the controls' verdicts
(:func:`summarise_controls`) and what MLflow records of a cell (:func:`cell_record`).
``flows/finetune.py`` runs the calls as cached tasks and logs the outputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.atomic import to_csv_atomic, to_parquet_atomic
from brainxai.config import config_to_mapping
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
#: The params section of each protocol (only that one enters a cell's cache key).
PROTOCOL_SECTION = {"probe": "probe", "finetune": "tune", "twophase": "twophase"}
#: Numbers of each control's result copied into ``reports/metrics/finetune_controls.json``.
CONTROL_KEYS = ("test_macro_f1", "val_macro_f1", "outside_head_mass", "pointing_tumour")
CONTROLS_COLUMNS = ["control", "check", "measured", "target", "status", "note", "comparison"]

#: One cached task's outcome: ``(call, result or None, error or None)``.
Outcome = tuple[dict[str, Any], dict[str, Any] | None, str | None]


def all_inits(cfg: FinetuneConfig) -> list[str]:
    """The inits of the stage: ``finetune.inits`` (+ ``imagenet`` when ``imagenet_path`` is
    set and the list does not name it)."""
    extra = ["imagenet"] if cfg.imagenet_path and "imagenet" not in cfg.inits else []
    return [*cfg.inits, *extra]


def cells(cfg: FinetuneConfig, inits: Iterable[str] | None = None) -> list[RunSpec]:
    """Every cell the stage runs, in its order: init x protocol x fraction x seed (the
    two-phase protocol only at its own cells); ``inits`` default: :func:`all_inits`."""
    return [
        RunSpec(init, protocol, float(fraction), int(seed))
        for init in (all_inits(cfg) if inits is None else inits)
        for protocol in cfg.protocols
        for fraction in cfg.fractions
        for seed in cfg.seeds
        if protocol != "twophase" or cfg.twophase.runs_cell(fraction, seed)
    ]


def embeddings(cfg: FinetuneConfig, inits: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """``(init, seed)`` of each frozen-backbone embedding when probing: one per backbone,
    one per seed for the random init; none without the probe protocol."""
    if "probe" not in cfg.protocols:
        return []
    return [
        (init, int(s))
        for init in (all_inits(cfg) if inits is None else inits)
        for s in (cfg.seeds if init == "random" else [0])
    ]


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
    def from_params(cls, root: Path, params: dict[str, Any]) -> Stage:
        """The stage of the study at ``root`` with the (profile-merged) ``params``."""
        return cls(
            params,
            StudyPaths.from_params(root, params),
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
        return {"finetune": {**self.cfg.to_dict(), "inits": inits},
                "backbone": config_to_mapping(self.spec), **extra}  # fmt: skip


# ------------------------------------------------------------------ backbones and cache


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


def backbone_sha(path: str) -> str:
    """The backbone file's sha256 (``random`` for the random init's empty path)."""
    return file_sha256(path) if path else "random"


def cache_call(st: Stage) -> dict[str, Any]:
    """The decode-cache task's call (step 1)."""
    return {
        "manifest_path": str(st.paths.manifest),
        "manifest_sha256": file_sha256(st.paths.manifest),
        "base_dir": str(st.paths.root),
        "data_cfg": config_to_mapping(st.cfg.data),
        "out_dir": str(st.paths.root / st.cfg.cache_dir),
    }


def prepare(st: Stage, cache: dict[str, Any]) -> dict[str, Any]:
    """Steps 2-3 on the decoded ``cache`` (the cache task's result): draw the label-fraction
    subsets (``reports/finetune/subsets.csv``; what each nominal fraction really is, per
    subset: ``fractions.csv``) and check leakage before any training (a violation raises).
    Writes ``reports/metrics/finetune_cache.json``; returns its numbers, the MLflow
    ``metrics`` and the ``subsets``."""
    st.reports.mkdir(parents=True, exist_ok=True)
    opened = Cache.open(cache["cache_dir"])
    index = opened.index
    subsets = subsets_table(index[index["ok"]], st.cfg.fractions, st.cfg.seeds)
    to_csv_atomic(subsets, st.reports / SUBSETS_FILE, index=False)
    effective = effective_fractions(index[index["ok"]], subsets)
    to_csv_atomic(effective, st.reports / FRACTIONS_FILE, index=False)
    leak = check_training_leakage(
        read_table(st.paths.manifest), index, opened.images,
        subsets["record_id"].unique().tolist(),
        st.cfg.data.near_dup_size, st.cfg.data.near_dup_threshold,
    )  # fmt: skip
    counts = {k: cache[k] for k in ("n", "ok", "failed")}
    metrics = {f"finetune.leakage.{k}": float(v) for k, v in leak.items()}
    metrics |= {f"finetune.cache.{k}": float(v) for k, v in counts.items()}
    out = {"cache": counts, "leakage": leak}
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / "finetune_cache.json", out)
    return {**out, "metrics": metrics, "subsets": subsets}


def read_subsets(st: Stage) -> pd.DataFrame:
    """The subsets ``finetune cache`` drew (read, never redrawn, by the later steps)."""
    path = st.reports / SUBSETS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `brainxai finetune cache` first")
    return pd.read_csv(path, dtype={"record_id": str, "subject": str})


# ------------------------------------------------------------------ one init's cells


def embed_calls(
    cfg: FinetuneConfig,
    spec: BackboneSpec,
    backbones: dict[str, str],
    sha: dict[str, str],
    cache: dict[str, Any],
    out_dir: Path,
) -> list[dict[str, Any]]:
    """One embedding task per frozen backbone (per seed for random init) when probing."""
    calls = []
    for init, s in embeddings(cfg, backbones):
        key = f"{init}-{sha[init][:12]}-s{s}-{cache['fingerprint']}"
        if cfg.probe.bn_recalibration_images:
            key += f"-bn{cfg.probe.bn_recalibration_images}"
        calls.append({
            "init": init, "backbone_path": backbones[init], "backbone_sha256": sha[init],
            "backbone_seed": int(s), "backbone": config_to_mapping(spec),
            "cache_dir": cache["cache_dir"], "cache_fingerprint": cache["fingerprint"],
            "batch_size": cfg.probe.embed_batch_size, "device": cfg.tune.device,
            "bn_recalibration_images": cfg.probe.bn_recalibration_images,
            "out_path": str(out_dir / f"{key}.npy"),
        })  # fmt: skip
    return calls


def cell_calls(
    cfg: FinetuneConfig,
    spec: BackboneSpec,
    backbones: dict[str, str],
    sha: dict[str, str],
    cache: dict[str, Any],
    subsets: pd.DataFrame,
    embedded: list[Outcome],
    models: Path,
    run_reports: Path,
) -> tuple[list[dict[str, Any]], list[tuple[RunSpec, str]]]:
    """The task call of every (init, protocol, fraction, seed) of :func:`cells`; probe cells
    whose embedding (``embedded``: the outcomes of :func:`embed_calls`) failed are returned
    apart as ``(spec, reason)``."""
    emb_of = {(c["init"], c["backbone_seed"]): (r, e) for c, r, e in embedded}
    by_cell = subsets.groupby(["fraction", "seed"])["record_id"].apply(sorted).to_dict()
    calls, skipped = [], []
    for rs in cells(cfg, backbones):
        emb_path = ""
        if rs.protocol == "probe":
            r, e = emb_of[(rs.init, rs.seed if rs.init == "random" else 0)]
            if r is None:
                skipped.append((rs, f"embedding failed: {e}"))
                continue
            emb_path = r["path"]
        section = PROTOCOL_SECTION[rs.protocol]
        calls.append({
            "run": rs.name, "spec": rs.to_dict(),
            "protocol_cfg": {section: config_to_mapping(getattr(cfg, section))},
            "backbone": config_to_mapping(spec), "backbone_path": backbones[rs.init],
            "backbone_sha256": sha[rs.init], "cache_dir": cache["cache_dir"],
            "cache_fingerprint": cache["fingerprint"],
            "train_record_ids": [str(x) for x in by_cell[(rs.fraction, rs.seed)]],
            "embeddings_path": emb_path, "embeddings_key": Path(emb_path).stem,
            "run_dir": str(models / rs.name), "report_dir": str(run_reports / rs.name),
            "ece_bins": cfg.ece_bins,
        })  # fmt: skip
    return calls, skipped


def cell_record(call: dict[str, Any], res: dict[str, Any] | None, err: str | None) -> dict:
    """What MLflow records of one cell (a run nested under the stage run): its name, tags,
    params, per-epoch metrics (step = epoch) and test metrics as ``(name, value, step)``
    rows, the confusion files; a failed cell is ``failed``, with its error as a tag."""
    spec = call["spec"]
    tags = {
        "brainxai.stage": "finetune",
        "brainxai.run": call["run"],
        "status": "ok" if res is not None else "failed",
        **{f"brainxai.{k}": str(v) for k, v in spec.items()},
        **({"error": err[:5000]} if err else {}),
    }
    params = {**spec, **call["protocol_cfg"], "backbone_path": call["backbone_path"],
              "n_train_records": len(call["train_record_ids"])}  # fmt: skip
    record = {"name": call["run"], "tags": tags, "params": params, "failed": res is None,
              "steps": [], "artifacts": []}  # fmt: skip
    if res is None:
        return record
    steps = [
        (k, float(v), int(h["epoch"]))
        for h in res["history"]
        for k, v in h.items()
        if k != "epoch" and isinstance(v, int | float)  # not the phase name
    ]
    m = res["metrics"]
    steps += [(f"test_{k}", float(m[k]), 0) for k in METRIC_KEYS]
    steps += [
        (f"test_f1.{name.replace(' ', '_').replace('+', 'plus')}", float(v["f1"]), 0)
        for name, v in m["per_class"].items()
    ]
    steps.append(("selected_epoch", float(res["selected_epoch"]), 0))
    return record | {"steps": steps, "artifacts": [res["confusion_png"], res["confusion_csv"]]}


def counts(status: pd.DataFrame, checkpoints: int) -> dict[str, Any]:
    """Runs, ok and failed (with the failed runs' names) of a ``runs.csv`` table."""
    failed = status.loc[status["status"] == "failed", "run"]
    return {"runs": len(status), "ok": int((status["status"] == "ok").sum()),
            "failed": len(failed), "failed_runs": sorted(failed),
            "checkpoints": checkpoints}  # fmt: skip


def summarise_init(
    st: Stage, init: str, results: list[Outcome], skipped: list[tuple[RunSpec, str]]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One init's tables from its cells' outcomes: ``runs.csv`` (every cell, failed ones
    with their error), ``predictions.parquet``, the checkpoint ``index.parquet`` and
    ``reports/metrics/finetune_<init>.json``. Returns that summary and the runs table."""
    models, reports = st.init_dirs(init)
    status_rows, ok = [], []
    for call, res, err in results:
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
    summary = counts(status, len(index_rows)) | headline(status[status["status"] == "ok"], st.cfg)
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / f"finetune_{init}.json", summary)
    return summary, status


def raise_if_failed(cfg: FinetuneConfig, summary: dict[str, Any], where: Path) -> None:
    """Stop the stage when runs failed and ``finetune.fail_on_error`` asks to."""
    if summary["failed"] and cfg.fail_on_error:
        raise RuntimeError(
            f"{summary['failed']} of {summary['runs']} fine-tuning runs failed (see "
            f"{where}): {summary['failed_runs'][:10]}"
        )


# ------------------------------------------------------------------ the planted controls


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


def masks_fingerprint(index: pd.DataFrame, root: Path) -> str:
    """Content id of the lesion masks a cache's valid rows point to (path and sha256 of
    each file; a missing file counts as such): the cache's own fingerprint covers the
    images only, and the controls train (``pasted``) and score explanations on the masks."""
    rows = index.loc[index["ok"] & (index["mask_path"].fillna("").astype(str) != ""),
                     "mask_path"].astype(str)  # fmt: skip
    h = hashlib.sha256()
    for rel in sorted(set(rows)):
        path = Path(root) / rel
        h.update(f"{rel}\0{file_sha256(path) if path.is_file() else 'missing'}\n".encode())
    return h.hexdigest()[:16]


def control_calls(st: Stage, cache: dict[str, Any], subsets: pd.DataFrame) -> list[dict]:
    """One control task call per planted control of ``finetune.controls.run``
    (:mod:`brainxai.finetune.controls`)."""
    cfg = st.cfg
    out_models, out_reports = st.models / "controls", st.reports / "controls"
    out_reports.mkdir(parents=True, exist_ok=True)
    train_ids = control_train_ids(cfg, cache, subsets)
    layers = list(st.params.get("xai", {}).get("cam", {}).get("layers", []) or [])
    masks = masks_fingerprint(Cache.open(cache["cache_dir"]).index, st.paths.root)
    source = positive_source(st, train_ids) if "positive" in cfg.controls.run else None
    return [{
        "control": c, "cache_dir": cache["cache_dir"], "cache_fingerprint": cache["fingerprint"],
        "masks_fingerprint": masks, "train_record_ids": train_ids,
        "finetune_cfg": {"tune": config_to_mapping(cfg.tune),
                         "controls": config_to_mapping(cfg.controls)},
        "backbone": config_to_mapping(st.spec), "cam_layers": layers, "root": str(st.paths.root),
        "run_dir": str(out_models / c), "report_dir": str(out_reports / c),
        "source": source if c == "positive" else None,
    } for c in cfg.controls.run]  # fmt: skip


def positive_source(st: Stage, train_ids: list[str]) -> dict[str, Any] | None:
    """The study's own cell the positive control is, when the study trained it: random
    init, full fine-tuning, ``controls.fraction`` / ``seed``, the ``tune`` recipe (no
    ``controls.epochs`` override), on the same training records. Returns its run name,
    checkpoint rows (paths absolute), the selected checkpoint's and the test predictions'
    sha256 (the control task's key), ``selected_epoch``, ``n_train`` and ``seconds``; None
    (the control trains its own, identical cell) when ``positive_from_run`` is off or the
    cell is not in the study, did not finish, or its files are missing."""
    cfg, c = st.cfg, st.cfg.controls
    epochs = int(c.epochs.get("positive", 0))
    if (not c.positive_from_run or epochs not in (0, cfg.tune.epochs)
            or "random" not in all_inits(cfg) or "finetune" not in cfg.protocols
            or not any(abs(f - c.fraction) < 1e-9 for f in cfg.fractions)
            or int(c.seed) not in cfg.seeds):  # fmt: skip
        return None
    rs = RunSpec("random", "finetune", c.fraction, c.seed)
    models, reports = st.init_dirs("random")
    runs_csv, index_file = reports / RUNS_FILE, models / INDEX_FILE
    preds = reports / "runs" / rs.name / PREDICTIONS_FILE
    if not (runs_csv.is_file() and index_file.is_file() and preds.is_file()):
        return None
    runs = pd.read_csv(runs_csv)
    row = runs[(runs["run"] == rs.name) & (runs["status"] == "ok")]
    if len(row) != 1 or int(row["n_train"].iloc[0]) != len(train_ids):
        return None
    index = pd.read_parquet(index_file)
    index = index[index["run"] == rs.name].sort_values("epoch")
    rows = [{"epoch": int(r.epoch), "path": str(st.paths.root / r.path),
             "selected": bool(r.selected), "val_macro_f1": float(r.val_macro_f1),
             "phase": str(r.phase)} for r in index.itertuples()]  # fmt: skip
    selected = [r for r in rows if r["selected"]]
    if len(selected) != 1 or not all(Path(r["path"]).is_file() for r in rows):
        return None
    return {"run": rs.name, "checkpoints": rows,
            "checkpoint_sha256": file_sha256(selected[0]["path"]),
            "predictions": str(preds), "predictions_sha256": file_sha256(preds),
            "selected_epoch": int(row["selected_epoch"].iloc[0]),
            "n_train": int(row["n_train"].iloc[0]),
            "seconds": float(row["seconds"].iloc[0])}  # fmt: skip


@dataclass
class Outputs:
    """What a summary step wrote and what the flow logs and publishes."""

    summary: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)


def summarise_controls(st: Stage, results: list[Outcome]) -> Outputs:
    """The pass / fail / uninformative table ``reports/finetune/controls/controls.csv``
    (a failed control fails its ``ran`` check), the numbers ``controls.json`` and
    ``reports/metrics/finetune_controls.json``."""
    cfg, out_reports = st.cfg, st.reports / "controls"
    measured, errors = {}, {}
    for call, res, err in results:
        if res is None:
            errors[call["control"]] = err or "failed"
        else:
            measured[call["control"]] = res["measured"]
    rows = verdicts(measured, cfg.controls)
    rows += [{"control": c, "check": "ran", "measured": None, "target": "-", "status": "fail",
              "note": e[:300], "comparison": False} for c, e in errors.items()]  # fmt: skip
    table = pd.DataFrame(rows, columns=CONTROLS_COLUMNS)
    to_csv_atomic(table, out_reports / "controls.csv", index=False)
    doc = {"measured": measured, "verdicts": rows, "errors": errors,
           "config": config_to_mapping(cfg.controls)}  # fmt: skip
    write_json(out_reports / "controls.json", doc)
    summary = {
        "controls": list(cfg.controls.run),
        "checks": len(rows),
        "passed": int((table["status"] == "pass").sum()),
        "failed": int((table["status"] == "fail").sum()),
        "uninformative": int((table["status"] == "uninformative").sum()),
    }
    for c, m in measured.items():
        for k in CONTROL_KEYS:
            if isinstance(m.get(k), int | float):
                summary[f"{c}.{k}"] = round(float(m[k]), 4)
    metrics = {f"finetune.controls.{k}": float(v) for k, v in summary.items()
               if isinstance(v, int | float)}  # fmt: skip
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / "finetune_controls.json", summary)
    return Outputs(summary, metrics, artifacts=[str(out_reports / "controls.csv")])


# ------------------------------------------------------------------ every init together


@dataclass
class Combined:
    """Every init's cells together (:func:`combine_inits`): the summary so far, the
    successful runs and their predictions (``None``: no run succeeded)."""

    summary: dict[str, Any]
    ok: pd.DataFrame
    predictions: pd.DataFrame | None


def combine_inits(st: Stage) -> Combined:
    """Step 6's input: gather every init's ``runs.csv``, checkpoint index and predictions
    into the combined ``runs.csv``, ``models/finetune/index.parquet`` (the xai stage's
    input) and ``predictions.parquet``. A missing init is a clear error."""
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
        **counts(status, len(index)), "inits": inits, "fractions": list(cfg.fractions),
        "seeds": list(cfg.seeds),
    }  # fmt: skip
    cache_metrics = st.paths.metrics / "finetune_cache.json"
    if cache_metrics.is_file():
        summary |= json.loads(cache_metrics.read_text())
    ok = status[status["status"] == "ok"]
    if ok.empty:
        return Combined(summary, ok, None)
    preds = pd.concat(
        [pd.read_parquet(st.init_dirs(i)[1] / PREDICTIONS_FILE) for i in inits],
        ignore_index=True,
    )
    preds = preds.sort_values(["run", "record_id"], ignore_index=True)
    to_parquet_atomic(preds, st.reports / PREDICTIONS_FILE, index=False)
    return Combined(summary, ok, preds)


def aggregate_call(st: Stage, preds: pd.DataFrame) -> dict[str, Any]:
    """The aggregate task's call on the combined predictions (:func:`combine_inits`)."""
    cfg = st.cfg
    return {
        "predictions_path": str(st.reports / PREDICTIONS_FILE),
        "predictions_sha256": frame_sha(preds),
        "baseline_init": cfg.baseline_init, "metric": cfg.compare_metric,
        "n_boot": cfg.n_boot, "seed": int(st.params["seed"]), "out_dir": str(st.reports),
        "ece_bins": cfg.ece_bins, "power": cfg.mde_power, **effective_call(st),
    }  # fmt: skip


def effective_call(st: Stage) -> dict[str, str]:
    """The aggregate task's ``effective_path``/``effective_sha256`` (none before the cache
    step wrote ``fractions.csv``)."""
    path = st.reports / FRACTIONS_FILE
    if not path.is_file():
        return {}
    return {"effective_path": str(path), "effective_sha256": file_sha256(path)}


def summarise(st: Stage, combined: Combined, agg: dict[str, Any] | None) -> Outputs:
    """Step 6's outputs from the aggregate task's result ``agg`` (``None``: no run
    succeeded): the label-efficiency curve's tidy table (``label_efficiency.csv``, the DVC
    plot), the headline numbers and the comparisons' counts in
    ``reports/metrics/finetune.json``; the MLflow metrics, the failed runs' tag and the
    artifacts (the aggregate's files and the curve)."""
    summary = dict(combined.summary)
    artifacts: list[str] = []
    if agg is not None:
        curve = label_efficiency_table(pd.read_csv(agg["summary"]))
        to_csv_atomic(curve, st.reports / CURVE_FILE, index=False)
        artifacts = [*agg["files"], str(st.reports / CURVE_FILE)]
        summary |= headline(combined.ok, st.cfg)
        summary |= {k: v for k, v in agg.items() if k.startswith("comparisons_")}
    metrics = {f"finetune.{k}": float(v) for k, v in summary.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    tags = {"finetune.failed_runs": ",".join(summary["failed_runs"])[:5000]}
    st.paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(st.paths.metrics / "finetune.json", summary)
    return Outputs(summary, metrics, tags, artifacts)


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


def frame_sha(frame: pd.DataFrame) -> str:
    """Content hash of a predictions frame (probabilities rounded to 12 decimals)."""
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
