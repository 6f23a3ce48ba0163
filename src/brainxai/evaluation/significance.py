"""Paired tests of a method against a baseline on the same test patients (issue 6).

* ``paired_bootstrap``: the same resampled patients for both methods in every replicate
  (``bootstrap``); the difference ``Δ* = m_a* − m_b*`` has a percentile interval and a
  two-sided p-value ``p = min(1, 2 · min((1 + #{Δ* ≤ 0}) / (B + 1), (1 + #{Δ* ≥ 0}) / (B + 1)))``
  — twice the smaller tail of the bootstrap distribution at zero, i.e. the smallest α at which
  the percentile interval excludes 0 (Efron & Tibshirani 1993 §16.4; the ``+1`` keeps
  ``p ≥ 2/(B+1)`` so a finite bootstrap never claims ``p = 0``). Runs with several seeds are
  averaged per replicate (``bootstrap.patient_bootstrap_seeds``).
* ``mcnemar``: exact binomial McNemar test on the discordant pairs when ``b + c < 25``,
  otherwise the χ² test with continuity correction (statsmodels).
* ``wilcoxon_seeds``: Wilcoxon signed-rank test on per-seed scores (scipy, exact
  distribution for small n). With ``n`` non-zero pairs the smallest attainable two-sided p is
  ``2 / 2ⁿ``: 0.0625 for ``n = 5``, so **fewer than 6 seeds can never reach p < 0.05** — the
  result says so (``min_p``, ``can_reject``) instead of hiding it.
* ``holm``: Holm's step-down adjustment (statsmodels ``multipletests``); ``nan`` stays ``nan``
  and is not counted in the family.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import PermutationMethod, wilcoxon
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar
from statsmodels.stats.multitest import multipletests

from brainxai.evaluation.bootstrap import (
    Metric,
    patient_codes,
    patient_draws,
    percentile_ci,
    replicate_values,
)

EXACT_MCNEMAR_BELOW = 25  # b + c below this: exact binomial test
EXACT_WILCOXON_UP_TO = 50  # non-zero pairs up to this (and no tied |Δ|): exact distribution
ENUMERATE_SIGNS_UP_TO = 13  # tied |Δ|: all 2^n sign flips enumerated (scipy PermutationMethod)
TIE_DECIMALS = 12  # |Δ| equal to 12 decimals are ties (float noise in seed-averaged metrics)


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of ``Δ = 0`` from bootstrap differences (module docstring)."""
    d = diffs[np.isfinite(diffs)]
    if d.size == 0:
        return float("nan")
    low = (1 + np.count_nonzero(d <= 0)) / (d.size + 1)
    high = (1 + np.count_nonzero(d >= 0)) / (d.size + 1)
    return float(min(1.0, 2 * min(low, high)))


def paired_bootstrap(
    y_true: Any,
    probs_a: Any,
    probs_b: Any,
    patients: Any,
    metric: Metric,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 15,
) -> dict[str, float]:
    """``diff = m(a) − m(b)`` with its percentile CI and bootstrap p, same patients for both.

    ``probs_a`` / ``probs_b``: ``(N, K)`` for one run or ``(S, N, K)`` for seeds (averaged per
    replicate; the numbers of seeds may differ), all predicting the same images.
    """
    codes = patient_codes(patients)
    draws = patient_draws(int(codes.max()) + 1, n_boot, seed)
    point_a, values_a = replicate_values(y_true, probs_a, draws, codes, metric, n_bins)
    point_b, values_b = replicate_values(y_true, probs_b, draws, codes, metric, n_bins)
    diffs = values_a.mean(axis=0) - values_b.mean(axis=0)
    ci = percentile_ci(float(point_a.mean() - point_b.mean()), diffs, alpha)
    return {"diff": ci.point, "low": ci.low, "high": ci.high, "p": bootstrap_p(diffs)}


def mcnemar(y_true: Any, pred_a: Any, pred_b: Any) -> dict[str, float]:
    """McNemar test on paired predictions: ``b`` = only a correct, ``c`` = only b correct."""
    y = np.asarray(y_true).ravel()
    ok_a = np.asarray(pred_a).ravel() == y
    ok_b = np.asarray(pred_b).ravel() == y
    if not (ok_a.shape == ok_b.shape == y.shape):
        raise ValueError("y_true, pred_a and pred_b must have the same length")
    b = int(np.count_nonzero(ok_a & ~ok_b))
    c = int(np.count_nonzero(~ok_a & ok_b))
    if b + c == 0:
        return {"statistic": 0.0, "p": 1.0, "b": b, "c": c}
    table = np.array([[np.count_nonzero(ok_a & ok_b), b], [c, np.count_nonzero(~ok_a & ~ok_b)]])
    exact = b + c < EXACT_MCNEMAR_BELOW
    res = _sm_mcnemar(table, exact=exact, correction=True)
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "b": b, "c": c}


def wilcoxon_seeds(scores_a: Any, scores_b: Any) -> dict[str, Any]:
    """Wilcoxon signed-rank test over seeds (pairs ``(a_s, b_s)``), two-sided.

    Returns ``statistic, p, n`` (pairs), ``n_nonzero`` (pairs with a difference; zeros are
    dropped, Wilcoxon's original convention), ``min_p = 2 / 2^n_nonzero`` (smallest p the
    exact test can give), ``can_reject`` (``min_p < 0.05``, i.e. ``n_nonzero ≥ 6``) and
    ``method``: ``exact`` (the signed-rank null distribution; ≤ 50 non-zero pairs, no tied
    ``|Δ|``), ``permutation`` (tied ``|Δ|``, ≤ 13 pairs: all ``2ⁿ`` sign flips of the
    mid-ranks enumerated, still exact, so ``p ≥ min_p``) or ``approx`` (normal
    approximation, larger n only — with few tied pairs it could dip below ``min_p``).
    """
    a = np.asarray(scores_a, dtype=np.float64).ravel()
    b = np.asarray(scores_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError("scores_a and scores_b must pair up (same number of seeds)")
    d = a - b
    n_nonzero = int(np.count_nonzero(d[np.isfinite(d)]))
    min_p = float(min(1.0, 2.0 / 2.0**n_nonzero))
    out: dict[str, Any] = {
        "n": int(a.size),
        "n_nonzero": n_nonzero,
        "min_p": min_p,
        "can_reject": min_p < 0.05,
    }
    if n_nonzero == 0:
        return {"statistic": 0.0, "p": 1.0, "method": "none", **out}
    nonzero = np.round(d[np.isfinite(d) & (d != 0)], TIE_DECIMALS)
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if not ties and nonzero.size <= EXACT_WILCOXON_UP_TO:
        method, how = "exact", "exact"
    elif ties and nonzero.size <= ENUMERATE_SIGNS_UP_TO:
        method, how = "permutation", PermutationMethod(n_resamples=2**ENUMERATE_SIGNS_UP_TO)
    else:
        method, how = "approx", "approx"
    res = wilcoxon(nonzero, alternative="two-sided", method=how)
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "method": method, **out}


def holm(pvalues: Any) -> np.ndarray:
    """Holm-adjusted p-values (family = the finite entries of ``pvalues``)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="holm")[1]
    return out
