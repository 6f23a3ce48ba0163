"""Cross-validation summaries, the ablation table with paired tests, and Markdown tables.

Predictions table (one row per run, fold, evaluation set and patient): ``run, variant,
backbone, fold, set`` (``cv`` = the outer fold the model never saw, ``holdout`` = test
patients outside the CV pool, ``val`` = inner validation), ``subject, y, probs``.

* Per fold: :func:`brainxai.evaluation.metrics.classification_metrics` on the outer fold;
  mean ± sd (ddof 1) over folds of every scalar metric; the pooled out-of-fold confusion
  matrix and per-class metrics (every patient predicted once, by the model that did not
  train on it).
* Held-out set: the fold models' mean probability (ensemble), and each fold model's.
* Row labels (:func:`row_labels`): paper 003 Table 2's row number ①–⑤ (or
  "extension") and what the row does, naming the mask's proposer as the pseudo-label
  table records it (``classical proposer`` unless a VLM answered).
* Ablation (paired on the same patients, folds and seeds as the base row): patient-level
  paired bootstrap of Δ macro F1 on the pooled out-of-fold predictions, McNemar on
  correctness, Wilcoxon on the per-fold macro F1 (which with ``k`` folds cannot reach
  p < 0.05 below 6 folds — reported as such), Holm over the rows' bootstrap p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from brainxai.classify3d.config import ROW_SYMBOLS, TRUE_MASK, VariantConfig
from brainxai.evaluation.bootstrap import patient_bootstrap
from brainxai.evaluation.metrics import SCALAR_METRICS, classification_metrics
from brainxai.evaluation.significance import holm, mcnemar, paired_bootstrap, wilcoxon_seeds

#: How a table names each mask source (``union_path`` is paper 003's refined prior, Eq. 5).
MASK_NAMES = {
    "coarse_path": "coarse mask",
    "union_path": "refined mask (coarse ∪ voxel MLP)",
    "refined_path": "voxel-MLP mask alone",
    TRUE_MASK: "true lesion mask",
}
#: The ``paper_row`` cell of a variant that is not a paper 003 row.
EXTENSION = "extension"


def _arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = rows.sort_values("subject")
    return rows["y"].to_numpy(np.int64), np.stack(rows["probs"].map(np.asarray).to_list())


def fold_metrics(preds: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per (run, fold): scalar metrics of the outer fold."""
    out = []
    for (run, fold), rows in preds[preds["set"] == "cv"].groupby(["run", "fold"], sort=True):
        y, p = _arrays(rows)
        m = classification_metrics(y, p, class_names)
        out.append({"run": run, "fold": int(fold), **{k: m[k] for k in (*SCALAR_METRICS, "n")}})
    return pd.DataFrame(out)


def run_summary(
    preds: pd.DataFrame,
    class_names: Sequence[str],
    n_boot: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Per run: mean ± sd over folds, pooled out-of-fold metrics, held-out ensemble; with
    ``n_boot`` > 0 also the patient-bootstrap CI of the pooled out-of-fold macro F1 beside
    the chance level ``1 / K`` and ``above_chance`` (the CI's lower bound above it)."""
    per_fold = fold_metrics(preds, class_names)
    out: dict[str, dict[str, Any]] = {}
    for run, folds in per_fold.groupby("run", sort=True):
        rows = preds[preds["run"] == run]
        cv = rows[rows["set"] == "cv"]
        y, p = _arrays(cv)
        entry: dict[str, Any] = {
            "variant": str(rows["variant"].iloc[0]),
            "backbone": str(rows["backbone"].iloc[0]),
            "n_folds": len(folds),
            "folds": folds.drop(columns="run").to_dict("records"),
            "mean": {k: float(folds[k].mean()) for k in SCALAR_METRICS},
            "sd": {k: float(folds[k].std(ddof=1)) if len(folds) > 1 else 0.0
                   for k in SCALAR_METRICS},
            "pooled": classification_metrics(y, p, class_names),
        }  # fmt: skip
        if n_boot > 0:
            ci = patient_bootstrap(y, p, cv["subject"].to_numpy(), "macro_f1", n_boot, seed,
                                   alpha)  # fmt: skip
            chance = 1.0 / len(class_names)
            entry["pooled_macro_f1_ci"] = {"point": ci.point, "low": ci.low, "high": ci.high,
                                           "alpha": alpha, "n_boot": n_boot}  # fmt: skip
            entry["chance_macro_f1"] = chance
            entry["above_chance"] = bool(np.isfinite(ci.low) and ci.low > chance)
        hold = rows[rows["set"] == "holdout"]
        if len(hold):
            mean_p = hold.groupby("subject").agg(
                y=("y", "first"), probs=("probs", lambda s: np.mean(np.stack(s.to_list()), 0))
            )
            hy, hp = _arrays(mean_p.reset_index())
            entry["holdout_ensemble"] = classification_metrics(hy, hp, class_names)
            each = [
                classification_metrics(*_arrays(r), class_names)["macro_f1"]
                for _, r in hold.groupby("fold")
            ]
            entry["holdout_fold_macro_f1"] = {"mean": float(np.mean(each)), "values": each}
        out[str(run)] = entry
    return out


def ablation(
    preds: pd.DataFrame,
    base_run: str,
    runs: Sequence[str],
    class_names: Sequence[str],
    n_boot: int,
    seed: int,
    alpha: float,
) -> pd.DataFrame:
    """Each run vs ``base_run`` on the same patients (see module docstring)."""
    cv = preds[preds["set"] == "cv"]
    base = cv[cv["run"] == base_run].sort_values("subject")
    per_fold = fold_metrics(preds, class_names).set_index(["run", "fold"])["macro_f1"]
    rows = []
    for run in runs:
        mine = cv[cv["run"] == run].sort_values("subject")
        if list(mine["subject"]) != list(base["subject"]):
            raise ValueError(f"{run} and {base_run} did not predict the same patients")
        y, pa = _arrays(mine)
        _, pb = _arrays(base)
        row: dict[str, Any] = {"run": run, "macro_f1": float(
            classification_metrics(y, pa, class_names)["macro_f1"])}  # fmt: skip
        if run == base_run:
            rows.append(row)
            continue
        boot = paired_bootstrap(y, pa, pb, mine["subject"].to_numpy(), "macro_f1", n_boot, seed,
                                alpha)  # fmt: skip
        mc = mcnemar(y, pa.argmax(1), pb.argmax(1))
        fa = per_fold.loc[run].sort_index().to_numpy()
        fb = per_fold.loc[base_run].sort_index().to_numpy()
        wil = wilcoxon_seeds(fa, fb)
        row.update(
            delta_macro_f1=boot["diff"],
            ci_low=boot["low"],
            ci_high=boot["high"],
            p_bootstrap=boot["p"],
            p_mcnemar=float(mc["p"]),
            p_wilcoxon_folds=float(wil["p"]),
            wilcoxon_can_reject=bool(wil["can_reject"]),
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    if "p_bootstrap" in table:
        table["p_holm"] = holm(table["p_bootstrap"].to_numpy(dtype=float))
    return table


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def markdown_runs(
    summary: dict[str, dict[str, Any]],
    runs: Sequence[str],
    labels: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Mean ± sd over folds of accuracy, macro P/R/F1, macro AUROC; held-out ensemble F1;
    with ``labels`` (:func:`row_labels`) each run's paper row and design lead."""
    keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "macro_auroc")
    lead = ["paper row", "design"] if labels is not None else []
    head = "| " + " | ".join([*lead, "run", "folds", *keys, "held-out macro_f1"]) + " |"
    lines = [head, "|" + "---|" * (len(lead) + len(keys) + 3)]
    for run in runs:
        s = summary[run]
        cells = [f"{_fmt(s['mean'][k])} ± {_fmt(s['sd'][k])}" for k in keys]
        hold = s.get("holdout_ensemble", {}).get("macro_f1", float("nan"))
        info = (labels or {}).get(str(s["variant"]), {})
        first = [str(info.get("paper_row", EXTENSION)), str(info.get("design", ""))]
        row = [*(first if labels is not None else []), run, str(s["n_folds"]), *cells, _fmt(hold)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def markdown_ablation(table: pd.DataFrame) -> str:
    cols = [c for c in ("paper_row", "variant", "design", "run", "macro_f1", "delta_macro_f1",
                        "ci_low", "ci_high", "p_bootstrap", "p_holm", "p_mcnemar",
                        "p_wilcoxon_folds") if c in table]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def variant_design(v: VariantConfig, proposer: str) -> str:
    """What a row does, in words: the mask, who made it, and how the model uses it."""
    if v.mask is None:
        return "whole volume, no mask"
    source = MASK_NAMES[v.mask] + (f" from the {proposer}" if v.needs_pseudolabels else "")
    uses = [
        use
        for flag, use in (
            (v.roi, "background removal (image × mask)"),
            (v.attention, "MCA on the whole brain" if not v.roi else "MCA"),
            (v.mask_input, "mask as 2nd input channel"),
        )
        if flag
    ]
    return f"{source}: {' + '.join(uses)}"


def row_labels(variants: dict[str, VariantConfig], proposer: str) -> dict[str, dict[str, Any]]:
    """Per variant: ``paper_row`` (①–⑤ or :data:`EXTENSION`), ``design`` (words) and
    ``in_channels`` (the backbone's input channels)."""
    return {
        name: {
            "paper_row": ROW_SYMBOLS.get(v.paper_row or 0, EXTENSION),
            "design": variant_design(v, proposer),
            "in_channels": v.in_channels,
        }
        for name, v in variants.items()
    }


def label_table(table: pd.DataFrame, labels: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """``table`` (a ``run = <variant>/<backbone>`` column) with ``paper_row``, ``variant``
    and ``design`` leading."""
    out = table.copy()
    variant = out["run"].astype(str).str.split("/").str[0]
    front = {
        "paper_row": variant.map(lambda v: labels.get(v, {}).get("paper_row", EXTENSION)),
        "variant": variant,
        "design": variant.map(lambda v: labels.get(v, {}).get("design", "")),
    }
    for i, (name, col) in enumerate(front.items()):
        if name in out:
            out = out.drop(columns=name)
        out.insert(i, name, col)
    return out
