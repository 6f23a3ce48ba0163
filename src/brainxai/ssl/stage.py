"""Stage ``pretrain`` (this package, ``brainxai.ssl``) without the orchestrator: which
frameworks run (:func:`frameworks`), the fan-out (:func:`cache_call`: one decode-cache call;
:func:`framework_call`: one call per framework) and what each result makes (the MLflow
numbers, :func:`summarise`: ``reports/metrics/pretrain_<framework>.json``).
``flows/pretrain.py`` runs the calls as cached tasks and logs the outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brainxai.hashing import file_sha256
from brainxai.paths import StudyPaths

#: ``reports/metrics/pretrain_<framework>.json``: these keys of the run's result.
SUMMARY_KEYS = (
    "framework", "arch", "epochs", "steps", "n_pretrain_images", "n_knn_bank", "n_knn_query",
    "knn_classes", "resumed_from_epoch", "device", "final", "knn_random_init",
    "knn_gain_over_random", "knn_precise_bn", "knn_gain_over_random_precise_bn",
)  # fmt: skip
#: Cache counts logged with the stage run.
CACHE_COUNTS = ("n", "ok", "failed", "n_pretrain", "n_pretrain_3d_slices", "n_query")
#: History keys logged per epoch as ``epoch_<key>`` (the others as they are).
EPOCH_KEYS = ("loss", "lr", "images_per_s")
#: The sections of ``pretrain`` every framework shares.
SHARED = ("data", "train", "augment", "knn")


def frameworks(section: Mapping[str, Any], chosen: Sequence[str] | None = None) -> list[str]:
    """The frameworks to run: ``chosen`` (None: all of ``pretrain.frameworks``); an unknown
    one is an error."""
    out = list(section["frameworks"] if chosen is None else chosen)
    unknown = [f for f in out if f not in section["frameworks"]]
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; known: {section['frameworks']}")
    return out


def framework_params(pcfg: Mapping[str, Any], framework: str, seed: int) -> dict[str, Any]:
    """The params one framework's run depends on (and nothing of the other frameworks)."""
    return {
        "framework": dict(pcfg.get(framework) or {}),
        "train": {**pcfg["train"], "seed": int(seed)},
        "augment": dict(pcfg["augment"]),
        "knn": dict(pcfg["knn"]),
    }


def cache_call(section: Mapping[str, Any], paths: StudyPaths) -> dict[str, Any]:
    """The decode-cache call: the pretraining and kNN-monitor images, decoded once."""
    return {
        "manifest_path": str(paths.manifest),
        "manifest_sha256": file_sha256(paths.manifest),
        "base_dir": str(paths.root),
        "data_cfg": section["data"],
        "knn_cfg": section["knn"],
        "out_dir": str(paths.interim / "pretrain"),
    }


def cache_counts(cache: Mapping[str, Any]) -> dict[str, float]:
    return {f"pretrain.cache.{k}": float(cache[k]) for k in CACHE_COUNTS}


def framework_call(
    section: Mapping[str, Any],
    paths: StudyPaths,
    framework: str,
    seed: int,
    cache: Mapping[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """One framework's pretraining call on the decoded cache (``run_id``: its MLflow run,
    which the task streams its step metrics to; not part of the cache key)."""
    return {
        "framework": framework,
        "cache_dir": cache["cache_dir"],
        "cache_fingerprint": cache["fingerprint"],
        "cfg": framework_params(section, framework, seed),
        "out_dir": str(paths.root / section["out_dir"] / framework),
        "resident_max_bytes": int(section["data"]["resident_max_bytes"]),
        "mlflow_run_id": run_id,
    }


def history(res: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """``(step, metrics)`` per epoch of a run's history (what a cached run re-logs)."""
    return [
        (
            int(rec["epoch"]) * int(res["steps_per_epoch"]),
            {f"epoch_{k}" if k in EPOCH_KEYS else k: v for k, v in rec.items()},
        )
        for rec in res["history"]
    ]


def final_metrics(res: Mapping[str, Any]) -> dict[str, float]:
    """The run's final numbers (and the random-init kNN reference, when measured)."""
    final = {f"final.{k}": float(v) for k, v in res["final"].items()}
    for key in ("knn_random_init", "knn_precise_bn"):
        if res.get(key) is not None:
            final[key] = float(res[key])
    return final


def summarise(res: Mapping[str, Any], paths: StudyPaths) -> dict[str, Any]:
    """``reports/metrics/pretrain_<framework>.json`` of one run."""
    return {k: res.get(k) for k in SUMMARY_KEYS} | {"backbone": paths.rel(Path(res["backbone"]))}
