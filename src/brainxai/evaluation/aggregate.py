"""From a predictions table to per-run metrics, summaries and paired comparisons (issue 6).

Input: one row per (run, test image) with columns ``run, init, protocol, fraction, seed,
record_id, subject, y_true, y_pred, probs`` (``probs`` a length-K list). A *condition* is an
``(init, protocol, fraction)``; its runs differ only in ``seed`` and must all predict the same
test images (checked). ``y_pred`` must equal ``argmax probs`` (checked; metrics use
``probs``). Patients are the ``subject`` column.

Multiple comparisons (``compare``): each test (paired bootstrap, McNemar, Wilcoxon) is its
own family; by default a family is every comparison in the table (all non-baseline inits ×
protocols × fractions for the metric), the conservative choice for a paper's claim "SSL
helps at low label fractions"; ``holm_by=("protocol",)`` makes one family per protocol.
A bootstrap p is at least ``2/(n_boot+1)``, so Holm over ``m`` tests needs
``n_boot ≥ 2m/α`` to reject anything; ``compare`` warns when it cannot.

Degenerate results (issue 15.5): a condition is *at chance* when the patient-bootstrap CI of
its metric does not lie above the metric's chance level (:func:`chance_level`: ``1/K`` for
macro-F1, accuracy and balanced accuracy, 0.5 for macro AUROC; it includes the level, or lies
below it as a constant classifier's macro-F1 does); a comparison of two conditions both at
chance is *uninformative* (``informative`` False): whatever its p, it is no finding, and no
table or plot marks it significant.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from brainxai.evaluation.bootstrap import (
    patient_codes,
    patient_draws,
    percentile_ci,
    replicate_values,
)
from brainxai.evaluation.metrics import SCALAR_METRICS, classification_metrics
from brainxai.evaluation.significance import (
    bootstrap_p,
    holm,
    mcnemar,
    wilcoxon_seeds,
)

CONDITION = ["init", "protocol", "fraction"]
REQUIRED = ["run", *CONDITION, "seed", "record_id", "subject", "y_true", "y_pred", "probs"]
COMPARE_COLUMNS = [
    *CONDITION, "metric", "baseline", "mean", "baseline_mean", "diff", "ci_low", "ci_high",
    "p_bootstrap", "p_mcnemar", "mcnemar_b", "mcnemar_c", "p_wilcoxon", "wilcoxon_min_p",
    "n_seeds", "n_paired_seeds", "n_patients", "n_boot", "alpha", "se_diff", "chance",
    "at_chance", "baseline_at_chance", "informative", "p_bootstrap_holm", "p_mcnemar_holm",
    "p_wilcoxon_holm", "significant", "holm_family_size", "mde", "power",
]  # fmt: skip
DEFAULT_METRICS = ("macro_f1", "balanced_accuracy", "accuracy", "macro_auroc", "ece")
#: Metrics whose chance level is ``1/K`` (a classifier guessing uniformly among K classes).
CHANCE_ONE_OVER_K = ("macro_f1", "accuracy", "balanced_accuracy")
#: Macro AUROC of any classifier whose scores ignore the image.
CHANCE_AUROC = 0.5


def chance_level(metric: str, n_classes: int) -> float:
    """The metric's chance level: ``1/K`` (:data:`CHANCE_ONE_OVER_K`), :data:`CHANCE_AUROC`
    for ``macro_auroc``; NaN for a metric without one (ECE)."""
    if metric in CHANCE_ONE_OVER_K:
        return 1.0 / n_classes
    if metric == "macro_auroc":
        return CHANCE_AUROC
    return float("nan")


def flag(value: Any, default: bool) -> bool:
    """One boolean as ``summarise``/``compare`` write it (also read back from CSV, where a
    column with gaps holds strings); ``default`` for a missing value."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return default
    return bool(value)


def flags(table: pd.DataFrame, column: str, default: bool) -> np.ndarray:
    """:func:`flag` of every value of ``column``; ``default`` everywhere when it is absent."""
    if column not in table:
        return np.full(len(table), default)
    return np.array([flag(v, default) for v in table[column]], dtype=bool)


def is_at_chance(ci_low: float, chance: float) -> bool:
    """True when a CI with lower bound ``ci_low`` does not lie above ``chance`` (an undefined
    bound counts as at chance); never for a metric without a chance level (NaN)."""
    if not np.isfinite(chance):
        return False
    return not (np.isfinite(ci_low) and ci_low > chance)


@dataclass(frozen=True)
class Condition:
    """The runs of one condition aligned on the same test images (sorted by record_id)."""

    seeds: np.ndarray  # (S,)
    records: np.ndarray  # (N,)
    subjects: np.ndarray  # (N,)
    y_true: np.ndarray  # (N,)
    probs: np.ndarray  # (S, N, K)

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=-1)


def check_predictions(predictions: pd.DataFrame, n_classes: int) -> pd.DataFrame:
    """Validate columns, one row per (run, record), probs of length K, y_pred = argmax."""
    missing = [c for c in REQUIRED if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    dup = predictions.duplicated(["run", "record_id"])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} duplicate (run, record_id) rows in predictions")
    per_run = predictions.groupby("run")[[*CONDITION, "seed"]].nunique()
    if (per_run > 1).any(axis=None):
        raise ValueError("a run has more than one init/protocol/fraction/seed")
    probs = _probs_matrix(predictions["probs"], n_classes)
    bad = probs.argmax(axis=1) != predictions["y_pred"].to_numpy()
    if bad.any():
        raise ValueError(f"y_pred differs from argmax(probs) on {int(bad.sum())} rows")
    return predictions


def _probs_matrix(column: pd.Series, n_classes: int) -> np.ndarray:
    lengths = column.map(len).to_numpy()
    if (lengths != n_classes).any():
        raise ValueError(f"probs must have length {n_classes} (len(class_names)) on every row")
    return np.asarray(column.tolist(), dtype=np.float64).reshape(len(column), n_classes)


def condition_arrays(rows: pd.DataFrame, n_classes: int) -> Condition:
    """Align the seeds of one condition on the same test images; raise if they differ."""
    rows = rows.sort_values(["seed", "record_id"], kind="stable")
    seeds = np.sort(rows["seed"].unique())
    first = rows[rows["seed"] == seeds[0]]
    records = first["record_id"].to_numpy()
    for s in seeds[1:]:
        if not np.array_equal(rows.loc[rows["seed"] == s, "record_id"].to_numpy(), records):
            raise ValueError(
                f"seeds {seeds[0]} and {s} of condition "
                f"{tuple(rows.iloc[0][CONDITION])} predict different test images"
            )
    for column in ("y_true", "subject"):
        values = rows[column].to_numpy().reshape(len(seeds), len(records))
        if not (values == values[0]).all():
            raise ValueError(f"{column} of a test image differs between seeds")
    probs = _probs_matrix(rows["probs"], n_classes).reshape(len(seeds), len(records), n_classes)
    return Condition(
        seeds=seeds,
        records=records,
        subjects=first["subject"].to_numpy(),
        y_true=first["y_true"].to_numpy(dtype=np.int64),
        probs=probs,
    )


def run_metrics(
    predictions: pd.DataFrame, class_names: Sequence[str], n_bins: int = 15
) -> pd.DataFrame:
    """One row per run: its condition, seed, ``n`` and every scalar metric."""
    check_predictions(predictions, len(class_names))
    rows = []
    for run, g in predictions.groupby("run", sort=True):
        m = classification_metrics(
            g["y_true"].to_numpy(),
            _probs_matrix(g["probs"], len(class_names)),
            class_names,
            n_bins,
        )
        head = g.iloc[0]
        rows.append(
            {"run": run, **{c: head[c] for c in CONDITION}, "seed": head["seed"], "n": m["n"]}
            | {k: m[k] for k in SCALAR_METRICS}
        )
    return pd.DataFrame(rows).sort_values([*CONDITION, "seed"], ignore_index=True)


def summarise(
    predictions: pd.DataFrame,
    class_names: Sequence[str],
    metrics: Sequence[str] = DEFAULT_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 15,
) -> pd.DataFrame:
    """Rows per (init, protocol, fraction, metric): mean, sd over seeds and a patient CI.

    ``mean`` = mean over seeds of the run's metric; ``sd`` its sample sd (``ddof=1``, nan
    for one seed); ``ci_low``/``ci_high`` = patient bootstrap of the seed-averaged metric
    (``bootstrap.patient_bootstrap_seeds``; one set of resampled patients per condition,
    shared by all metrics). ``n_bins``: ECE bins, as in ``classification_metrics``.
    ``chance``: the metric's chance level (:func:`chance_level`); ``at_chance``: the CI does
    not lie above it (:func:`is_at_chance`; the condition is uninformative for this metric).
    """
    check_predictions(predictions, len(class_names))
    k = len(class_names)
    rows = []
    for key, g in predictions.groupby(CONDITION, sort=True):
        cond = condition_arrays(g, k)
        codes = patient_codes(cond.subjects)
        draws = patient_draws(int(codes.max()) + 1, n_boot, seed)
        for metric in metrics:
            point, values = replicate_values(cond.y_true, cond.probs, draws, codes, metric, n_bins)
            ci = percentile_ci(float(point.mean()), values.mean(axis=0), alpha)
            chance = chance_level(metric, k)
            rows.append(
                dict(zip(CONDITION, key, strict=True))
                | {
                    "metric": metric,
                    "mean": ci.point,
                    "sd": float(np.std(point, ddof=1)) if point.size > 1 else float("nan"),
                    "n_seeds": int(point.size),
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                    "n_patients": int(codes.max()) + 1,
                    "n_images": int(cond.records.size),
                    "n_boot": n_boot,
                    "alpha": alpha,
                    "chance": chance,
                    "at_chance": is_at_chance(ci.low, chance),
                }
            )
    return pd.DataFrame(rows)


def compare(
    predictions: pd.DataFrame,
    class_names: Sequence[str],
    baseline_init: str = "random",
    metric: str = "macro_f1",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    holm_by: Sequence[str] = (),
    n_bins: int = 15,
    power: float = 0.8,
) -> pd.DataFrame:
    """Every non-baseline init vs ``baseline_init`` at each (protocol, fraction).

    Power: ``se_diff`` is the sd of the paired bootstrap differences and ``mde`` the
    minimal detectable difference of the comparison, ``(z_{1-a'/2} + z_power) · se_diff``
    with ``a' = alpha / m`` for a Holm family of ``m`` tests (Holm's first step, a
    Bonferroni bound): a true difference smaller than ``mde`` is found with probability
    below ``power``, so "no difference detected" means "none larger than ``mde``".

    Columns: ``diff`` (mean over seeds of a − mean over seeds of baseline), ``ci_low``,
    ``ci_high`` and ``p_bootstrap`` (paired patient bootstrap of the seed-averaged
    difference), ``p_mcnemar`` (predictions paired by (seed, record_id), pooled over the
    seeds both have — the pooled pairs are not independent across seeds, so read it as a
    descriptive check), ``p_wilcoxon`` (per-seed metric, seeds both have; see
    ``wilcoxon_min_p``), Holm-adjusted ``*_holm`` per family (module docstring) and
    ``significant`` = ``p_bootstrap_holm < alpha``. Conditions without a baseline are skipped.

    Degenerate comparisons: ``chance`` (the metric's chance level), ``at_chance`` /
    ``baseline_at_chance`` (each condition's patient-bootstrap CI of ``metric``, on the same
    resampled patients, does not lie above it; equal to ``summarise``'s with the same
    ``n_boot`` and ``seed``) and ``informative`` = not both at chance. ``significant`` keeps
    its meaning (the test); an uninformative comparison is never a finding and no table or
    plot marks it.
    """
    check_predictions(predictions, len(class_names))
    k = len(class_names)
    rows = []
    for (protocol, fraction), g in predictions.groupby(["protocol", "fraction"], sort=True):
        if baseline_init not in set(g["init"]):
            continue
        base = condition_arrays(g[g["init"] == baseline_init], k)
        codes = patient_codes(base.subjects)
        draws = patient_draws(int(codes.max()) + 1, n_boot, seed)
        point_b, values_b = replicate_values(base.y_true, base.probs, draws, codes, metric, n_bins)
        chance = chance_level(metric, k)
        ci_b = percentile_ci(float(point_b.mean()), values_b.mean(axis=0), alpha)
        base_at_chance = is_at_chance(ci_b.low, chance)
        for init in sorted(set(g["init"]) - {baseline_init}):
            cond = condition_arrays(g[g["init"] == init], k)
            if not np.array_equal(cond.records, base.records):
                raise ValueError(
                    f"{init} and {baseline_init} at {protocol}/{fraction} "
                    "predict different test images"
                )
            point_a, values_a = replicate_values(
                cond.y_true, cond.probs, draws, codes, metric, n_bins
            )
            diffs = values_a.mean(axis=0) - values_b.mean(axis=0)
            ci = percentile_ci(float(point_a.mean() - point_b.mean()), diffs, alpha)
            ci_a = percentile_ci(float(point_a.mean()), values_a.mean(axis=0), alpha)
            at_chance = is_at_chance(ci_a.low, chance)
            finite = diffs[np.isfinite(diffs)]
            shared = np.intersect1d(cond.seeds, base.seeds)
            ia = np.searchsorted(cond.seeds, shared)
            ib = np.searchsorted(base.seeds, shared)
            mc = (
                mcnemar(
                    np.tile(base.y_true, shared.size),
                    cond.y_pred[ia].ravel(),
                    base.y_pred[ib].ravel(),
                )
                if shared.size
                else {"p": float("nan"), "b": 0, "c": 0}
            )
            wx = wilcoxon_seeds(point_a[ia], point_b[ib])
            rows.append(
                {
                    "init": init,
                    "protocol": protocol,
                    "fraction": fraction,
                    "metric": metric,
                    "baseline": baseline_init,
                    "mean": float(point_a.mean()),
                    "baseline_mean": float(point_b.mean()),
                    "diff": ci.point,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                    "p_bootstrap": bootstrap_p(diffs),
                    "p_mcnemar": float(mc["p"]),
                    "mcnemar_b": int(mc["b"]),
                    "mcnemar_c": int(mc["c"]),
                    "p_wilcoxon": float(wx["p"]) if shared.size else float("nan"),
                    "wilcoxon_min_p": float(wx["min_p"]) if shared.size else float("nan"),
                    "n_seeds": int(point_a.size),
                    "n_paired_seeds": int(shared.size),
                    "n_patients": int(codes.max()) + 1,
                    "n_boot": n_boot,
                    "alpha": alpha,
                    "se_diff": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                    "chance": chance,
                    "at_chance": at_chance,
                    "baseline_at_chance": base_at_chance,
                    "informative": not (at_chance and base_at_chance),
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:  # no condition has a baseline: an empty table with the full header
        return pd.DataFrame(columns=COMPARE_COLUMNS)
    groups = out.groupby(list(holm_by), sort=False).groups.values() if holm_by else [out.index]
    for test in ("bootstrap", "mcnemar", "wilcoxon"):
        adjusted = pd.Series(np.nan, index=out.index)
        for idx in groups:
            adjusted.loc[idx] = holm(out.loc[idx, f"p_{test}"].to_numpy())
        out[f"p_{test}_holm"] = adjusted
    out["significant"] = out["p_bootstrap_holm"] < alpha
    out["holm_family_size"] = 0
    for idx in groups:
        out.loc[idx, "holm_family_size"] = len(idx)
    out["mde"] = mde(out["se_diff"].to_numpy(float), alpha / out["holm_family_size"], power)
    out["power"] = power
    family = max(len(idx) for idx in groups)
    if family * bootstrap_p_floor(n_boot) >= alpha:
        warnings.warn(
            f"n_boot={n_boot} cannot reach Holm-adjusted p < {alpha} in a family of {family} "
            f"comparisons (bootstrap p ≥ 2/(n_boot+1)); use n_boot ≥ {min_n_boot(family, alpha)}",
            stacklevel=2,
        )
    return out


def mde(se: Any, alpha: Any, power: float) -> np.ndarray:
    """Minimal detectable difference of a two-sided level-``alpha`` test with standard error
    ``se`` at ``power``: ``(z_{1-alpha/2} + z_power) · se`` (normal approximation)."""
    se, alpha = np.asarray(se, dtype=float), np.asarray(alpha, dtype=float)
    return (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se


def bootstrap_p_floor(n_boot: int) -> float:
    """Smallest two-sided bootstrap p with ``n_boot`` replicates: ``2 / (n_boot + 1)``."""
    return 2.0 / (n_boot + 1)


def min_n_boot(family_size: int, alpha: float) -> int:
    """Fewest replicates for which Holm over ``family_size`` tests can reach ``p < alpha``."""
    return int(np.floor(2 * family_size / alpha))


def per_class_table(predictions: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per (init, protocol, fraction, class): F1 mean ± sd over seeds and test support."""
    check_predictions(predictions, len(class_names))
    rows: list[dict[str, Any]] = []
    for run, g in predictions.groupby("run", sort=True):
        m = classification_metrics(
            g["y_true"].to_numpy(), _probs_matrix(g["probs"], len(class_names)), class_names
        )
        head = g.iloc[0]
        for name, pc in m["per_class"].items():
            rows.append(
                {c: head[c] for c in CONDITION}
                | {"run": run, "class": name, "f1": pc["f1"], "support": pc["support"]}
            )
    frame = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(class_names)}
    out = (
        frame.groupby([*CONDITION, "class"], sort=False)
        .agg(
            f1_mean=("f1", "mean"),
            f1_sd=("f1", lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")),
            n_seeds=("f1", "size"),
            support=("support", "first"),
        )
        .reset_index()
    )
    out["f1"] = [
        f"{m:.3f} ± {s:.3f}" if np.isfinite(s) else f"{m:.3f}"
        for m, s in zip(out["f1_mean"], out["f1_sd"], strict=True)
    ]
    out["_order"] = out["class"].map(order)
    return out.sort_values([*CONDITION, "_order"], ignore_index=True).drop(columns="_order")
