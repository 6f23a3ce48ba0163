"""Prefect tasks around :mod:`brainxai.finetune`: the decoded cache, the frozen-backbone
embeddings, one task per cell of the matrix, and the aggregate statistics.

Cache keys: the cache task is keyed by the manifest's sha256 and the data params; the
embedding task by the backbone file's sha256 (or the random seed), the cache fingerprint
and the backbone spec; a cell by its (init, protocol, fraction, seed), the sha256 of its
backbone, its training record ids, the params of its protocol only and the cache
fingerprint - so adding a seed or a fraction runs only the new cells. Each task's key
also holds the ``brainxai`` code it calls (:func:`tasks.caching.code_policy`).

A cell or an embedding that raises is retried once (a crashed worker, an out-of-memory
GPU); if it fails again the flow reports it (an embedding's failure fails its init's probe
cells) and the other cells go on (:func:`gather_reporting`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import task

from brainxai.atomic import to_csv_atomic, to_parquet_atomic, write_atomic, write_text_atomic
from brainxai.devices import torch_device
from brainxai.evaluation.aggregate import compare, summarise
from brainxai.evaluation.fractions import with_effective
from brainxai.evaluation.metrics import classification_metrics, save_confusion
from brainxai.evaluation.plots import label_efficiency
from brainxai.evaluation.results_md import results_markdown
from brainxai.finetune.cell import CellData, run_finetune, run_probe, run_twophase
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.data import CLASS_NAMES, select_images
from brainxai.finetune.model import build_classifier
from brainxai.finetune.probe import embed_images
from brainxai.finetune.runs import RunSpec
from brainxai.finetune.sampling import effective_by_fraction
from brainxai.jsonio import write_json
from brainxai.manifest import read_table
from brainxai.ssl.cache import IMAGES, INDEX, Cache, build_cache, fingerprint
from tasks.caching import (
    code_policy,
    from_root,
    hashed_outputs,
    log_stale,
    output_problems,
    root_calls,
    strip_hashes,
)
from tasks.gpu import GPU_TAG, on_gpu_slot
from tasks.progress import track

FINGERPRINT_FILE = "fingerprint.txt"
#: The params section of each protocol (only that one enters a cell's cache key).
PROTOCOL_SECTION = {"probe": "probe", "finetune": "tune", "twophase": "twophase"}
#: Where each protocol trains (the probe's head is fitted on cached embeddings, on the CPU).
PROTOCOL_DEVICE: dict[str, Callable[[FinetuneConfig], str]] = {
    "probe": lambda cfg: "cpu",
    "finetune": lambda cfg: cfg.tune.device,
    "twophase": lambda cfg: cfg.twophase.device,
}


@task(name="finetune-cache", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def finetune_cache(
    manifest_path: str, manifest_sha256: str, base_dir: str, data_cfg: dict[str, Any], out_dir: str
) -> dict[str, Any]:
    """Decode every labelled 2D image (train/val/test) once into ``out_dir``."""
    data = FinetuneConfig.from_dict({"data": data_cfg}).data
    items = select_images(read_table(manifest_path), data.datasets_2d)
    fp = fingerprint(items, data.cache_size)
    out = Path(out_dir)
    t0 = time.perf_counter()
    stats = build_cache(items, base_dir, out, data.cache_size, data.decode_workers)
    write_text_atomic(out / FINGERPRINT_FILE, fp + "\n")
    return {
        "cache_dir": str(out),
        "fingerprint": fp,
        "files": [str(out / IMAGES), str(out / INDEX), str(out / FINGERPRINT_FILE)],
        "decode_seconds": time.perf_counter() - t0,
        **{k: stats[k] for k in ("n", "ok", "failed", "failures")},
    }


@task(
    name="finetune-embed",
    cache_policy=code_policy(__name__),
    persist_result=True,
    retries=1,
    task_run_name="embed-{init}-s{backbone_seed}",
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def finetune_embed(
    init: str,
    backbone_path: str,
    backbone_sha256: str,
    backbone_seed: int,
    backbone: dict[str, Any],
    cache_dir: str,
    cache_fingerprint: str,
    batch_size: int,
    device: str,
    out_path: str,
    bn_recalibration_images: int = 0,
) -> dict[str, Any]:
    """Frozen-backbone features of every cached image, once per backbone (``.npy``);
    BatchNorm statistics first re-estimated on training-split images when
    ``bn_recalibration_images > 0`` (no labels are used)."""
    spec = BackboneSpec.from_dict(backbone)
    model = build_classifier(
        spec.arch, len(CLASS_NAMES), spec.input_mean, spec.input_std,
        backbone_path=backbone_path, backbone_seed=backbone_seed,
    )  # fmt: skip
    cache = Cache.open(cache_dir)
    t0 = time.perf_counter()
    train_rows = cache.index.loc[cache.index["ok"] & (cache.index["split"] == "train"), "row"]
    feats = embed_images(
        model.backbone, cache.images, spec.image_size, batch_size, torch_device(device),
        bn_rows=train_rows.to_numpy() if bn_recalibration_images else None,
        bn_max_images=bn_recalibration_images, seed=backbone_seed,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: np.save(tmp, feats))
    return {"path": str(out), "files": [str(out)], "shape": list(feats.shape), "seconds": seconds}


@task(
    name="finetune-cell",
    cache_policy=code_policy(__name__),
    persist_result=True,
    retries=1,
    task_run_name="{run}",
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def finetune_cell(
    run: str,
    spec: dict[str, Any],
    protocol_cfg: dict[str, Any],
    backbone: dict[str, Any],
    backbone_path: str,
    backbone_sha256: str,
    cache_dir: str,
    cache_fingerprint: str,
    train_record_ids: list[str],
    embeddings_path: str,
    embeddings_key: str,
    run_dir: str,
    report_dir: str,
    ece_bins: int,
) -> dict[str, Any]:
    """Train one cell, checkpoint it, predict the test split and score it.

    ``protocol_cfg`` is ``{"probe": ...}``, ``{"tune": ...}`` or ``{"twophase": ...}`` (the
    other protocols' params never enter this cell's key). Writes ``run_dir/epoch-XXXX.pt`` and
    ``report_dir/{predictions.parquet, confusion.png, confusion.csv, metrics.json}``.
    """
    rs = RunSpec(**spec)
    cfg = FinetuneConfig.from_dict(protocol_cfg)
    bb = BackboneSpec.from_dict(backbone)
    cache = Cache.open(cache_dir)
    data = CellData.of(cache, train_record_ids)
    out, rep = Path(run_dir), Path(report_dir)
    for stale in out.glob("epoch-*.pt"):  # a re-run (new params or code) starts clean
        stale.unlink()
    if rs.protocol == "probe":
        res = run_probe(rs, cfg, bb, data, np.load(embeddings_path, mmap_mode="r"),
                        backbone_path, out)  # fmt: skip
    elif rs.protocol == "twophase":
        res = run_twophase(rs, cfg, bb, cache, data, backbone_path, out)
    else:
        res = run_finetune(rs, cfg, bb, cache, data, backbone_path, "", out)
    preds: pd.DataFrame = res.pop("predictions")
    rep.mkdir(parents=True, exist_ok=True)
    pred_path = rep / "predictions.parquet"
    to_parquet_atomic(preds, pred_path, index=False)
    metrics = classification_metrics(
        preds["y_true"].to_numpy(), np.stack(preds["probs"].to_numpy()), CLASS_NAMES, ece_bins
    )
    png, csv = save_confusion(
        metrics["confusion"], CLASS_NAMES, rep / "confusion.png", rep / "confusion.csv"
    )
    write_json(rep / "metrics.json", metrics)
    ckpts = [c["path"] for c in res["checkpoints"]]
    return {
        "run": run,
        **rs.to_dict(),
        **res,
        "metrics": metrics,
        "predictions": str(pred_path),
        "confusion_png": str(png),
        "confusion_csv": str(csv),
        "device": str(torch_device(PROTOCOL_DEVICE[rs.protocol](cfg))),
        "files": [*ckpts, str(pred_path), str(png), str(csv)],
    }


@task(
    name="finetune-aggregate",
    cache_policy=code_policy(__name__),
    persist_result=True,
)
@hashed_outputs
def finetune_aggregate(
    predictions_path: str,
    predictions_sha256: str,
    baseline_init: str,
    metric: str,
    n_boot: int,
    seed: int,
    out_dir: str,
    ece_bins: int = 15,
    effective_path: str = "",
    effective_sha256: str = "",
    power: float = 0.8,
) -> dict[str, Any]:
    """Summary (mean ± sd, patient-bootstrap CI), paired comparisons with Holm correction,
    the label-efficiency plot and the Markdown table, from the successful runs' predictions.
    ``effective_path``: the subsets' effective fractions (``fractions.csv``; its sha256 is
    there for the cache key), joined on the nominal fraction into every table and the plot.
    """
    preds = pd.read_parquet(predictions_path)
    out = Path(out_dir)
    summary = summarise(preds, CLASS_NAMES, n_boot=n_boot, seed=seed, n_bins=ece_bins)
    comparisons = compare(
        preds, CLASS_NAMES, baseline_init=baseline_init, metric=metric, n_boot=n_boot,
        seed=seed, n_bins=ece_bins, power=power,
    )  # fmt: skip
    if effective_path:
        effective = effective_by_fraction(pd.read_csv(effective_path))
        summary = with_effective(summary, effective)
        comparisons = with_effective(comparisons, effective)
    files = {
        "summary": out / "summary.csv",
        "comparisons": out / "comparisons.csv",
        "results": out / "results.md",
        "plot": out / "label_efficiency.png",
    }
    to_csv_atomic(summary, files["summary"], index=False)
    to_csv_atomic(comparisons, files["comparisons"], index=False)
    write_text_atomic(
        files["results"], results_markdown(summary, comparisons, metric=metric) + "\n"
    )
    label_efficiency(summary, comparisons, metric, files["plot"])
    sig = comparisons["significant"] if not comparisons.empty else pd.Series(dtype=bool)
    diff = comparisons["diff"] if not comparisons.empty else pd.Series(dtype=float)
    return {
        **{k: str(v) for k, v in files.items()},
        "files": [str(v) for v in files.values()],
        "comparisons_n": len(comparisons),
        "comparisons_significant_better": int((sig & (diff > 0)).sum()),
        "comparisons_significant_worse": int((sig & (diff < 0)).sum()),
    }


def gather_reporting(
    task_: Any,
    files_of: Callable[[Any], Iterable[str | Path]],
    calls: list[dict[str, Any]],
    root: str | Path | None = None,
) -> list[tuple[dict[str, Any], Any | None, str | None]]:
    """Like :func:`tasks.caching.run_cached` (a result whose files are missing, changed or
    unrecorded is recomputed with ``refresh_cache=True``; ``root``: paths stored relative
    to the study root), but a call that fails (after its retries) is returned as
    ``(call, None, error)`` instead of stopping the others."""
    sent = root_calls(task_, calls, root)
    futures = [task_.submit(**kw) for kw in sent]
    track(futures, task_.name)  # the stage's progress line (every call, failed or not)
    out: list[tuple[dict[str, Any], Any | None, str | None]] = []
    stale: list[int] = []
    for i, (kw, fut) in enumerate(zip(calls, futures, strict=True)):
        fut.wait()
        if fut.state.is_completed():
            res = from_root(fut.result(), root)
            out.append((kw, res, None))
            problems = output_problems(res, files_of)
            if problems:
                log_stale(task_, problems)
                stale.append(i)
        else:
            out.append((kw, None, _error_of(fut)))
    if stale:
        fresh = task_.with_options(refresh_cache=True)
        refutures = {i: fresh.submit(**sent[i]) for i in stale}
        track(refutures.values(), f"{task_.name} (re-run)")
        for i, fut in refutures.items():
            fut.wait()
            ok = fut.state.is_completed()
            res = from_root(fut.result(), root) if ok else None
            err = None if ok else _error_of(fut)
            if ok and (problems := output_problems(res, files_of)):
                res, err = None, f"outputs inconsistent after a re-run: {problems[:5]}"
            out[i] = (calls[i], res, err)
    return [(kw, strip_hashes(res), err) for kw, res, err in out]


def _error_of(fut: Any) -> str:
    try:
        fut.result()
    except Exception as exc:  # the task's own exception, re-raised by Prefect
        return f"{type(exc).__name__}: {exc}"[:500]
    return f"state {fut.state.type}"


def torch_threads(n: int) -> None:
    """Cap torch's intra-op threads (0 = leave torch's default)."""
    if n > 0:
        torch.set_num_threads(n)
