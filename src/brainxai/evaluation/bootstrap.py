"""Patient-level bootstrap confidence intervals (issue 6: error bars that respect patients).

Images of one patient are correlated (several slices, several sequences), so the unit of
resampling is the patient: a replicate draws ``P`` patients with replacement from the ``P``
test patients and every image of a drawn patient comes along, as often as the patient was
drawn (Efron & Tibshirani 1993 §6; the cluster bootstrap of Field & Welsh 2007). A replicate
is stored as integer image multiplicities ``w_i`` (``(B, N)``), so metrics are computed on
weighted confusions / bins / rank sums in one vectorised pass, identical to recomputing the
metric on the resampled list (``metrics`` conventions). The interval is the percentile
interval ``[q_{α/2}, q_{1−α/2}]`` of the replicate values; replicates where a metric is
undefined (``nan``, e.g. macro AUROC with < 2 classes drawn) are left out of the quantiles.

**Several seeds** (``patient_bootstrap_seeds``): runs that differ only in their training seed
predict the same test images. Each replicate resamples the patients once and averages the
metric over the seeds with those same patients, so the interval covers test-set sampling of
the seed-averaged metric (the quantity reported as the mean); seed-to-seed spread enters
through the average but is not resampled (with 3–5 seeds a bootstrap over seeds is
meaningless) — it is reported separately as the sd over seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from brainxai.evaluation.metrics import (
    SCALAR_METRICS,
    binary_auroc,
    check_inputs,
    ece_bins,
    scores_from_confusion,
)

Metric = str | Callable[[np.ndarray, np.ndarray], float]
CHUNK = 256  # replicates per vectorised block (bounds memory at CHUNK × N floats)


@dataclass(frozen=True)
class CI:
    """A point estimate with its percentile bootstrap interval at level ``1 − alpha``."""

    point: float
    low: float
    high: float
    n_boot: int
    alpha: float


def patient_codes(patients: Any) -> np.ndarray:
    """Integer code ``0 .. P−1`` of each image's patient (patients in sorted order)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(patients, dtype=object)), sort=True)
    if codes.size == 0:
        raise ValueError("no test images: nothing to bootstrap")
    if (codes < 0).any():
        raise ValueError("patients contains missing values")
    return codes


def patient_draws(n_patients: int, n_boot: int, seed: int) -> np.ndarray:
    """``(B, P)`` multiplicities: how often each patient is drawn in each replicate."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_patients, size=(n_boot, n_patients))
    flat = idx + n_patients * np.arange(n_boot)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n_patients).reshape(n_boot, n_patients)


def grouped_sum(weights: np.ndarray, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """``out[..., g] = Σ_{i: labels_i = g} weights[..., i]`` (sorted ``reduceat``, no BLAS:
    small products gain nothing from threads and stall on a busy machine)."""
    order = np.argsort(labels, kind="stable")
    lab = labels[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    out = np.zeros((*weights.shape[:-1], n_groups))
    out[..., lab[starts]] = np.add.reduceat(weights[..., order], starts, axis=-1)
    return out


def weighted_metric(
    y: np.ndarray, probs: np.ndarray, weights: np.ndarray, metric: str, n_bins: int = 15
) -> np.ndarray:
    """Named metric of ``metrics`` for each row of image multiplicities ``weights (B, N)``."""
    k = probs.shape[1]
    w = np.asarray(weights, dtype=np.float64)
    if metric == "macro_auroc":
        auroc = np.stack([binary_auroc(probs[:, c], y == c, w) for c in range(k)], axis=-1)
        valid = np.isfinite(auroc)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(valid, auroc, 0.0).sum(axis=-1) / valid.sum(axis=-1)
        return np.where(valid.sum(axis=-1) >= 2, mean, np.nan)
    pred = probs.argmax(axis=1)
    if metric == "ece":
        conf, idx = ece_bins(probs, n_bins)
        gap = grouped_sum(w * ((pred == y) - conf), idx, n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.abs(gap).sum(axis=-1) / w.sum(axis=-1)
    if metric not in SCALAR_METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {SCALAR_METRICS}")
    conf = grouped_sum(w, y * k + pred, k * k).reshape(*w.shape[:-1], k, k)
    return scores_from_confusion(conf)[metric]


def replicate_values(
    y_true: Any,
    probs_runs: Any,
    draws: np.ndarray,
    codes: np.ndarray,
    metric: Metric,
    n_bins: int = 15,
) -> tuple[np.ndarray, np.ndarray]:
    """Metric of each run on the full test set ``(S,)`` and on each replicate ``(S, B)``.

    ``probs_runs`` is ``(S, N, K)`` (``S`` runs predicting the same ``N`` images); ``draws``
    the ``(B, P)`` patient multiplicities; ``codes`` each image's patient. A named metric is
    vectorised over replicates; a callable ``metric(y_true, probs) -> float`` is called on
    each resampled list (slow path, for anything not in ``metrics.SCALAR_METRICS``).
    """
    runs = np.asarray(probs_runs, dtype=np.float64)
    if runs.ndim == 2:
        runs = runs[None]
    y = check_inputs(y_true, runs[0])[0]
    if codes.shape != y.shape:
        raise ValueError(f"patients has {codes.size} entries for {y.size} images")
    n_boot = draws.shape[0]
    point = np.empty(runs.shape[0])
    values = np.empty((runs.shape[0], n_boot))
    for s, probs in enumerate(runs):
        check_inputs(y, probs)
        if isinstance(metric, str):
            point[s] = weighted_metric(y, probs, np.ones((1, y.size)), metric, n_bins)[0]
            for start in range(0, n_boot, CHUNK):
                w = draws[start : start + CHUNK][:, codes]
                values[s, start : start + CHUNK] = weighted_metric(y, probs, w, metric, n_bins)
        else:
            point[s] = metric(y, probs)
            for b in range(n_boot):
                rows = np.repeat(np.arange(y.size), draws[b][codes])
                values[s, b] = metric(y[rows], probs[rows])
    return point, values


def percentile_ci(point: float, values: np.ndarray, alpha: float) -> CI:
    """Percentile interval of the finite replicate values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return CI(float(point), float("nan"), float("nan"), int(values.size), alpha)
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return CI(float(point), float(low), float(high), int(values.size), alpha)


def patient_bootstrap(
    y_true: Any,
    probs: Any,
    patients: Any,
    metric: Metric,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 15,
) -> CI:
    """Percentile CI of ``metric`` for one run, resampling patients (module docstring)."""
    return patient_bootstrap_seeds(y_true, [probs], patients, metric, n_boot, seed, alpha, n_bins)


def patient_bootstrap_seeds(
    y_true: Any,
    probs_runs: Any,
    patients: Any,
    metric: Metric,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 15,
) -> CI:
    """CI of the seed-averaged metric: one patient resample per replicate, shared by all seeds.

    ``probs_runs``: ``(S, N, K)``, every run predicting the same images in the same order.
    Point = mean over seeds of the metric on the full test set.
    """
    codes = patient_codes(patients)
    draws = patient_draws(int(codes.max()) + 1, n_boot, seed)
    point, values = replicate_values(y_true, probs_runs, draws, codes, metric, n_bins)
    return percentile_ci(float(point.mean()), values.mean(axis=0), alpha)
