"""What the study found, as sentences computed from its numbers (issue 15.5).

The report's first screen lists one :class:`Finding` per claim the study can make, or fail
to make: every fine-tuning comparison (each init against the baseline at each protocol and
label fraction, the fraction named with its effective share), every 3D ablation row against
the base row, each SSL framework's kNN gain over its random-init reference and the XAI
headline (C-Score and pointing game at the final checkpoints). Each sentence carries its
numbers: the difference with its CI and Holm-adjusted p, or "no difference detected; MDE =
…". Statuses:

* ``finding``: a Holm-significant difference between two informative results, or an SSL
  framework that beat random features by the target;
* ``no difference``: the test did not reject; the minimal detectable difference says what
  it could have found;
* ``uninformative``: degenerate, never drawn as a finding: two models at chance (their CIs
  do not lie above the chance level), an init whose SSL pretraining did not beat random
  features (``targets.ssl_knn_gain_min``) or was too short (``targets.ssl_steps_min``), a
  C-Score over gold lists of fewer than ``min_gold`` images;
* ``info``: a number without a test (the XAI scores), or a result that could not be judged.

Pure functions of the stages' tables and documents; :mod:`brainxai.report.build` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from brainxai.classify3d.results import EXTENSION
from brainxai.evaluation.aggregate import flag, mde
from brainxai.evaluation.fractions import fraction_labels
from brainxai.targets import FAIL, PASS, TargetsConfig, ssl_knn, ssl_targets
from brainxai.targets import UNINFORMATIVE as TARGET_UNINFORMATIVE
from brainxai.xai.trajectory import GLOBAL
from brainxai.xai.trajectory_plots import short_classes

FINDING, NO_DIFFERENCE, UNINFORMATIVE, INFO = "finding", "no difference", "uninformative", "info"
STATUSES = (FINDING, NO_DIFFERENCE, UNINFORMATIVE, INFO)


@dataclass(frozen=True)
class Finding:
    """One sentence of the first screen, under its topic, with its status."""

    topic: str
    status: str
    sentence: str


def num(x: Any, digits: int = 3) -> str:
    """``0.123`` (``—`` when missing or not finite)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—"
    return f"{v:.{digits}f}" if np.isfinite(v) else "—"


def signed(x: Any, digits: int = 3) -> str:
    """``+0.123`` / ``-0.123`` (``—`` when missing)."""
    s = num(x, digits)
    return s if s == "—" or s.startswith("-") else f"+{s}"


def p_text(p: Any) -> str:
    """``Holm-adjusted p = 0.012`` or ``Holm-adjusted p < 0.001``."""
    s = num(p)
    if s != "—" and float(p) < 0.001:
        return "Holm-adjusted p < 0.001"
    return f"Holm-adjusted p = {s}"


def ci_text(lo: Any, hi: Any, alpha: float) -> str:
    """``[95 % CI 0.100, 0.300]``."""
    return f"[{100 * (1 - alpha):g} % CI {num(lo)}, {num(hi)}]"


# ------------------------------------------------------------------------------------ SSL


def ssl_verdict(framework: str, doc: Mapping[str, Any] | None, cfg: TargetsConfig) -> str | None:
    """The target status of one SSL framework (:func:`brainxai.targets.ssl_targets`: pass,
    fail = did not beat random features, uninformative = too few steps, not run); None for a
    label-trained framework (``targets.ssl_exclude``)."""
    if framework in cfg.ssl_exclude:
        return None
    (target,) = ssl_targets({framework: dict(doc) if doc is not None else None}, cfg)
    return target.status


def _ssl_numbers(doc: Mapping[str, Any]) -> tuple[float, float, int]:
    knn, ref, _ = ssl_knn(doc)
    nan = float("nan")
    return (nan if knn is None else knn), (nan if ref is None else ref), int(doc.get("steps") or 0)


def ssl_reason(framework: str, doc: Mapping[str, Any] | None, cfg: TargetsConfig) -> str | None:
    """Why an SSL init is no evidence (its pretraining did not beat random features, or was
    too short to be one); None when it is (pass) or cannot be judged (no reference)."""
    status = ssl_verdict(framework, doc, cfg)
    if doc is None or status not in (FAIL, TARGET_UNINFORMATIVE):
        return None
    knn, ref, steps = _ssl_numbers(doc)
    if status == TARGET_UNINFORMATIVE:
        return f"its pretraining ran {steps} steps (< {cfg.ssl_steps_min}: not a pretraining)"
    return (
        f"its pretraining did not beat random features (kNN gain {signed(knn - ref)} "
        f"< +{cfg.ssl_knn_gain_min:.2f})"
    )


def uninformative_inits(
    pretrain: Mapping[str, Mapping[str, Any] | None], cfg: TargetsConfig
) -> dict[str, str]:
    """Init (= SSL framework) -> why its fine-tuning results are no evidence about SSL."""
    out = {fw: ssl_reason(fw, doc, cfg) for fw, doc in sorted(pretrain.items())}
    return {fw: why for fw, why in out.items() if why}


def ssl_findings(
    pretrain: Mapping[str, Mapping[str, Any] | None], cfg: TargetsConfig
) -> list[Finding]:
    """One sentence per SSL framework: its val kNN top-1 against the same backbone untrained."""
    out = []
    for fw, doc in sorted(pretrain.items()):
        status = ssl_verdict(fw, doc, cfg)
        if status is None:
            continue
        if doc is None or status not in (PASS, FAIL, TARGET_UNINFORMATIVE):
            why = "no kNN monitor or random-init reference"
            out.append(Finding("SSL pretraining", INFO, f"{fw}: not judged ({why})."))
            continue
        knn, ref, steps = _ssl_numbers(doc)
        numbers = f"val kNN top-1 {num(knn)} vs {num(ref)} for the same backbone untrained"
        gain = f"gain {signed(knn - ref)}"
        if status == PASS:
            out.append(
                Finding(
                    "SSL pretraining",
                    FINDING,
                    f"{fw} learned features: {numbers} ({gain} >= "
                    f"+{cfg.ssl_knn_gain_min:.2f}, {steps} steps).",
                )
            )
        elif status == FAIL:
            out.append(
                Finding(
                    "SSL pretraining",
                    UNINFORMATIVE,
                    f"{fw} did not beat random features: {numbers} ({gain} < "
                    f"+{cfg.ssl_knn_gain_min:.2f}, {steps} steps); its fine-tuning "
                    "comparisons are uninformative.",
                )
            )
        else:
            out.append(
                Finding(
                    "SSL pretraining",
                    UNINFORMATIVE,
                    f"{fw} is not a pretraining: {steps} steps < {cfg.ssl_steps_min} "
                    f"({numbers}, {gain}); its fine-tuning comparisons are "
                    "uninformative.",
                )
            )
    return out


# ------------------------------------------------------------------------------ fine-tuning


def finetune_findings(
    comparisons: pd.DataFrame | None,
    metric: str,
    uninformative: Mapping[str, str] | None = None,
) -> list[Finding]:
    """One sentence per comparison of ``metric`` in ``comparisons.csv`` (``compare``'s
    columns; ``uninformative``: init -> why its results are no evidence)."""
    if comparisons is None or comparisons.empty or "metric" not in comparisons:
        return []
    why = dict(uninformative or {})
    c = comparisons[comparisons["metric"] == metric].sort_values(["protocol", "fraction", "init"])
    labels = fraction_labels(c)
    out = []
    for r in c.to_dict("records"):
        alpha = float(r["alpha"])
        init, base = str(r["init"]), str(r["baseline"])
        cond = f"at {r['protocol']}, {labels[float(r['fraction'])]} labels"
        where = f"{init} vs {base} {cond}"
        means = f"{metric} {num(r['mean'])} vs {num(r['baseline_mean'])}"
        diff = (
            f"difference {signed(r['diff'])} {ci_text(r['ci_low'], r['ci_high'], alpha)}, "
            f"{p_text(r['p_bootstrap_holm'])}"
        )
        if not flag(r.get("informative"), True):
            out.append(
                Finding(
                    "fine-tuning",
                    UNINFORMATIVE,
                    f"{where}: uninformative (both at chance {num(r.get('chance'))}: "
                    f"{means}); no claim.",
                )
            )
        elif init in why:
            out.append(
                Finding(
                    "fine-tuning",
                    UNINFORMATIVE,
                    f"{where}: uninformative ({init}: {why[init]}); {diff} is no "
                    "evidence about SSL.",
                )
            )
        elif flag(r.get("significant"), False):
            verb = "beats" if float(r["diff"]) > 0 else "trails"
            claim = f"{init} {verb} {base} {cond}"
            out.append(Finding("fine-tuning", FINDING, f"{claim}: {means}, {diff}."))
        else:
            power = float(r.get("power", float("nan")))
            at = f" at {100 * power:g} % power" if np.isfinite(power) else ""
            out.append(
                Finding(
                    "fine-tuning",
                    NO_DIFFERENCE,
                    f"{where}: no difference detected; MDE = {num(r.get('mde'))}{at} "
                    f"({means}, {diff}).",
                )
            )
    return out


# ---------------------------------------------------------------------------- 3D ablation


def _row_name(r: Mapping[str, Any]) -> str:
    variant = str(r.get("variant") or str(r["run"]).split("/")[0])
    row = r.get("paper_row")
    return f"row {row} ({variant})" if row and row != EXTENSION else f"row {variant}"


def classify3d_findings(doc: Mapping[str, Any] | None, power: float, alpha: float) -> list[Finding]:
    """One sentence per 3D ablation row against the base row (``classify3d.json``:
    ``ablation`` rows, ``runs.<row>.above_chance``). The ablation records no standard error:
    the MDE is derived from the difference's CI, ``se = (high - low) / (2 z_{1-a/2})``, at
    ``power`` for the Holm family of the tested rows. ``alpha``: used when the document
    does not carry the stage's own."""
    if not doc:
        return []
    rows = list(doc.get("ablation") or [])
    runs = doc.get("runs") or {}
    base = next((r for r in rows if r.get("delta_macro_f1") is None), None)
    tested = [r for r in rows if r.get("delta_macro_f1") is not None]
    if base is None or not tested:
        return []
    ci_doc = (runs.get(base["run"]) or {}).get("pooled_macro_f1_ci") or {}
    alpha = float(ci_doc.get("alpha", alpha))
    chance = (runs.get(base["run"]) or {}).get("chance_macro_f1")
    base_above = (runs.get(base["run"]) or {}).get("above_chance")
    z = norm.ppf(1 - alpha / 2)
    out = []
    for r in tested:
        where = f"3D {_row_name(r)} vs {_row_name(base)}"
        means = f"pooled out-of-fold macro-F1 {num(r['macro_f1'])} vs {num(base['macro_f1'])}"
        ci = ci_text(r.get("ci_low"), r.get("ci_high"), alpha)
        diff = f"difference {signed(r['delta_macro_f1'])} {ci}, {p_text(r.get('p_holm'))}"
        above = (runs.get(r["run"]) or {}).get("above_chance")
        p_holm = r.get("p_holm")
        if above is False and base_above is False:
            out.append(
                Finding(
                    "3D ablation",
                    UNINFORMATIVE,
                    f"{where}: uninformative (both at chance {num(chance)}: {means}); no claim.",
                )
            )
        elif p_holm is not None and float(p_holm) < alpha:
            verb = "beats" if float(r["delta_macro_f1"]) > 0 else "trails"
            claim = f"3D {_row_name(r)} {verb} {_row_name(base)}"
            out.append(Finding("3D ablation", FINDING, f"{claim}: {means}, {diff}."))
        else:
            width = float(r.get("ci_high", np.nan)) - float(r.get("ci_low", np.nan))
            m = float(mde(width / (2 * z), alpha / len(tested), power))
            out.append(
                Finding(
                    "3D ablation",
                    NO_DIFFERENCE,
                    f"{where}: no difference detected; MDE = {num(m)} at {100 * power:g} % "
                    f"power, from the CI width ({means}, {diff}).",
                )
            )
    return out


# ------------------------------------------------------------------------------------ XAI


def final_rows(trajectory: pd.DataFrame) -> pd.DataFrame:
    """The rows of each model's final tracked checkpoint."""
    last = trajectory.groupby("model")["epoch"].transform("max")
    return trajectory[trajectory["epoch"] == last]


def xai_findings(trajectory: pd.DataFrame | None, min_gold: int) -> list[Finding]:
    """Per (family, method), over the models' final checkpoints: the global C-Score (paper
    004: a class with a gold list of < 2 images counts 0) of the models with at least one
    class of >= ``min_gold`` gold images - the others are uninformative, left out and
    counted - and the pointing game."""
    if trajectory is None or trajectory.empty:
        return []
    final = final_rows(trajectory)
    glob = final[final["klass"] == GLOBAL]
    short = short_classes(final, min_gold).set_index(["model", "method"])
    out = []
    for (family, method), g in glob.groupby(["family", "method"], sort=True):
        n = int(g["model"].nunique())
        counts = short.reindex(list(zip(g["model"], g["method"], strict=True)))
        ok = ~(counts["short"] >= counts["k"]).to_numpy()  # no class rows: not judged
        where = f"{method} on {family} (final checkpoint of {n} model{'s' if n > 1 else ''})"
        pg = pd.to_numeric(g.get("pointing", pd.Series(dtype=float)), errors="coerce").dropna()
        pointing = f"pointing game {num(pg.mean())}" if len(pg) else ""
        if not ok.any():
            out.append(
                Finding(
                    "explanations",
                    UNINFORMATIVE,
                    f"{where}: C-Score uninformative - no class has a gold list of "
                    f">= {min_gold} images" + (f"; {pointing}" if pointing else "") + ".",
                )
            )
            continue
        cs = g["cscore"].to_numpy(float)[ok]
        k = counts["k"].to_numpy(float)[ok]
        s = counts["short"].to_numpy(float)[ok]
        spread = f"range {num(cs.min())}-{num(cs.max())}; " if len(cs) > 1 else ""
        gold = (
            f"{np.nanmean(s):g} of {np.nanmax(k):g} classes with < {min_gold} gold images, "
            "counted as 0"
            if np.isfinite(k).any()
            else "gold lists not recorded"
        )
        text = f"{where}: global C-Score {num(cs.mean())} ({spread}{gold})"
        if pointing:
            text += f", {pointing}"
        left = int((~ok).sum())
        if left:
            text += (
                f"; {left} model{'s' if left > 1 else ''} left out: no class with >= "
                f"{min_gold} gold images (uninformative)"
            )
        out.append(Finding("explanations", INFO, text + "."))
    return out


def as_rows(findings: Sequence[Finding]) -> tuple[tuple[str, str], ...]:
    """``(status, sentence)`` pairs for the report's status list."""
    return tuple((f.status, f.sentence) for f in findings)


__all__ = [
    "FINDING",
    "INFO",
    "NO_DIFFERENCE",
    "STATUSES",
    "UNINFORMATIVE",
    "Finding",
    "as_rows",
    "classify3d_findings",
    "finetune_findings",
    "short_classes",
    "ssl_findings",
    "ssl_reason",
    "ssl_verdict",
    "uninformative_inits",
    "xai_findings",
]
