"""Tables of the report, computed from the stages' outputs with the stages' own functions.

Per-class metrics and confusion matrices come from :mod:`brainxai.evaluation`
(``classification_metrics``, ``per_class_table``) and the 3D classifier's
:func:`brainxai.classify3d.results.run_summary`; nothing is re-implemented here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from brainxai.evaluation.aggregate import flags, per_class_table
from brainxai.evaluation.fractions import fraction_labels
from brainxai.evaluation.metrics import classification_metrics
from brainxai.evaluation.plots import percent_label
from brainxai.evaluation.results_md import AT_CHANCE
from brainxai.xai.trajectory_plots import DEFAULT_MIN_GOLD, short_classes


def num(x: Any, digits: int = 3) -> str:
    """A number for a table cell (``—`` when missing or not finite)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—" if x is None else str(x)
    return f"{v:.{digits}f}" if np.isfinite(v) else "—"


def with_ci(mean: Any, lo: Any, hi: Any) -> str:
    return f"{num(mean)} [{num(lo)}, {num(hi)}]"


def finetune_headline(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    metric: str,
    uninformative_inits: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Mean [CI] of ``metric`` per (protocol, init) x label fraction; ``*`` = Holm-significant
    difference from the baseline (``comparisons.csv``) between informative results. A cell
    at chance says :data:`AT_CHANCE`; an init in ``uninformative_inits`` (its SSL
    pretraining did not beat random features) is named ``<init> (uninformative)`` and gets
    no ``*``. A column is named by its nominal fraction with the effective one beside it when
    ``summary`` carries it."""
    uninformative = dict(uninformative_inits or {})
    sub = summary[summary["metric"] == metric].copy()
    sig: set[tuple[str, str, float]] = set()
    if comparisons is not None and len(comparisons) and "significant" in comparisons:
        c = comparisons[comparisons["metric"] == metric]
        c = c[flags(c, "significant", False) & flags(c, "informative", True)]
        sig = {(r.init, r.protocol, float(r.fraction)) for r in c.itertuples()
               if r.init not in uninformative}  # fmt: skip
    at_chance = flags(sub, "at_chance", False)
    sub["cell"] = [
        with_ci(r.mean, r.ci_low, r.ci_high)
        + (" *" if (r.init, r.protocol, float(r.fraction)) in sig else "")
        + (f" {AT_CHANCE}" if at else "")
        for r, at in zip(sub.itertuples(), at_chance, strict=True)
    ]
    sub["init"] = [f"{i} (uninformative)" if i in uninformative else i for i in sub["init"]]
    sub["fraction"] = sub["fraction"].astype(float)
    labels = fraction_labels(sub)
    table = sub.pivot_table(
        index=["protocol", "init"], columns="fraction", values="cell", aggfunc="first"
    )
    table.columns = [f"{labels[float(f)]} labels" for f in table.columns]
    table.columns.name = None
    return table.reset_index()


def best_condition(summary: pd.DataFrame, metric: str, protocol: str) -> dict[str, Any] | None:
    """The init with the highest mean ``metric`` at the largest label fraction of ``protocol``
    (the first protocol present when ``protocol`` is not)."""
    sub = summary[summary["metric"] == metric]
    if sub.empty:
        return None
    if protocol not in set(sub["protocol"]):
        protocol = sorted(sub["protocol"].unique())[0]
    sub = sub[sub["protocol"] == protocol]
    sub = sub[np.isclose(sub["fraction"].astype(float), sub["fraction"].astype(float).max())]
    row = sub.sort_values(["mean", "init"], ascending=[False, True], kind="stable").iloc[0]
    return {"init": row["init"], "protocol": protocol, "fraction": float(row["fraction"])}


def condition_summary(summary: pd.DataFrame, cond: dict[str, Any], metric: str) -> str:
    """``mean [ci_low, ci_high]`` of one condition's ``metric`` in ``summary.csv``."""
    s = summary[
        (summary["metric"] == metric)
        & (summary["init"] == cond["init"])
        & (summary["protocol"] == cond["protocol"])
        & np.isclose(summary["fraction"].astype(float), cond["fraction"])
    ]
    return with_ci(*s[["mean", "ci_low", "ci_high"]].iloc[0]) if len(s) else "—"


def condition_rows(predictions: pd.DataFrame, cond: dict[str, Any]) -> pd.DataFrame:
    p = predictions
    return p[
        (p["init"] == cond["init"])
        & (p["protocol"] == cond["protocol"])
        & np.isclose(p["fraction"].astype(float), cond["fraction"])
    ]


def per_seed_metrics(rows: pd.DataFrame, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`classification_metrics` of each run (seed) of one condition."""
    out = []
    for _, g in rows.groupby("run", sort=True):
        probs = np.stack(g["probs"].map(np.asarray).to_list())
        out.append(classification_metrics(g["y_true"].to_numpy(), probs, class_names))
    return out


def per_class_prf(metrics: Sequence[dict[str, Any]], class_names: Sequence[str]) -> pd.DataFrame:
    """Per class: precision, recall, F1 (mean over runs) and test support."""
    rows = []
    for name in class_names:
        pcs = [m["per_class"][name] for m in metrics]
        rows.append(
            {
                "class": name,
                "precision": num(np.mean([p["precision"] for p in pcs])),
                "recall": num(np.mean([p["recall"] for p in pcs])),
                "F1": num(np.mean([p["f1"] for p in pcs])),
                "support": int(pcs[0]["support"]),
            }
        )
    return pd.DataFrame(rows)


def summed_confusion(metrics: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.sum([np.asarray(m["confusion"]) for m in metrics], axis=0)


def per_class_f1_by_init(
    predictions: pd.DataFrame, class_names: Sequence[str], protocol: str, fraction: float
) -> pd.DataFrame:
    """Per-class F1 (mean ± sd over seeds) of every init at one (protocol, fraction)."""
    rows = predictions[
        (predictions["protocol"] == protocol)
        & np.isclose(predictions["fraction"].astype(float), fraction)
    ]
    if rows.empty:
        return pd.DataFrame()
    tab = per_class_table(rows, class_names)
    wide = tab.pivot_table(index="class", columns="init", values="f1", aggfunc="first")
    support = tab.groupby("class")["support"].first()
    wide.insert(0, "support", support)
    wide = wide.reindex([c for c in class_names if c in wide.index])
    wide.columns.name = None
    return wide.reset_index()


def run_per_class(summary: dict[str, dict[str, Any]], class_names: Sequence[str]) -> pd.DataFrame:
    """3D classifier: pooled out-of-fold P/R/F1/support per (run, class)."""
    rows = []
    for run, s in summary.items():
        for name in class_names:
            pc = s["pooled"]["per_class"][name]
            rows.append(
                {
                    "run": run,
                    "class": name,
                    "precision": num(pc["precision"]),
                    "recall": num(pc["recall"]),
                    "F1": num(pc["f1"]),
                    "support": pc["support"],
                }
            )
    return pd.DataFrame(rows)


def markdown_table(text: str) -> pd.DataFrame:
    """The first pipe table of a markdown document as a DataFrame (cells as text)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return pd.DataFrame()
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    header, body = cells[0], [r for r in cells[2:] if len(r) == len(cells[0])]
    return pd.DataFrame(body, columns=header)


def records_table(
    records: Sequence[dict[str, Any]], first: Sequence[str] = (), digits: int = 3
) -> pd.DataFrame:
    """A list of JSON records as a table: ``first`` columns leading, numbers formatted,
    ``None`` as ``—``."""
    frame = pd.DataFrame(list(records))
    order = [c for c in first if c in frame] + [c for c in frame if c not in first]
    frame = frame[order]
    for c in frame.columns:
        frame[c] = frame[c].map(
            lambda v: "—" if v is None else (num(v, digits) if isinstance(v, float) else v)
        )
    return frame


def pseudolabel_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean quality per class and overall: Dice / HD95 / detection of coarse, refined, union
    and the per-slice box IoU (sessions with truth only)."""
    cols = [c for c in table.columns if c.startswith(("dice_", "hd95_", "detected_"))]
    cols += ["box_iou"] if "box_iou" in table else []
    rows = table.copy()
    for c in cols:
        rows[c] = rows[c].astype(float)
    groups = [(str(k), g) for k, g in rows.groupby("label", sort=True)] + [("all", rows)]
    out = [{"class": k, "n": len(g), **{c: num(g[c].mean()) for c in cols}} for k, g in groups]
    return pd.DataFrame(out)


def condition_label(cond: dict[str, Any], summary: pd.DataFrame | None = None) -> str:
    """``init / protocol / <fraction> labels``; with ``summary`` (its effective columns) the
    effective fraction stands beside the nominal one."""
    fraction = float(cond["fraction"])
    labels = fraction_labels(summary) if summary is not None and len(summary) else {}
    name = labels.get(fraction, percent_label(fraction))
    return f"{cond['init']} / {cond['protocol']} / {name} labels"


def tau_sweep_table(sensitivity: pd.DataFrame, default_tau: float) -> pd.DataFrame:
    """The C-Score τ sweep at the final checkpoints (``reports/xai/sensitivity.csv``): one
    row per (family, method), one column per τ, each cell ``C | C* | e/K`` = the global
    C-Score of paper 004 (Eq. 6, empty / singleton-gold classes counted as 0), the global
    C-Score without those classes (``—`` when no class has a gold pair), and how many of
    the K classes have fewer than 2 gold images — means over the family's models."""
    tau = sensitivity[sensitivity["sweep"].astype(str) == "tau"]
    if tau.empty:
        return pd.DataFrame()
    if "family" not in tau:
        tau = tau.assign(family="")
    keys = ["family", "model", "method", "tau"]
    classes = tau[tau["klass"] != -1]
    per_model = classes.groupby(keys).agg(
        k=("klass", "size"), short=("gold_size", lambda g: int((g < 2).sum()))
    )
    glob = tau[tau["klass"] == -1].set_index(keys)
    per_model["c"] = glob["cscore"].astype(float)
    has_nonempty = "cscore_nonempty" in glob  # absent from tables of older runs
    per_model["c_nonempty"] = glob["cscore_nonempty"].astype(float) if has_nonempty else np.nan
    agg = (
        per_model.reset_index()
        .groupby(["family", "method", "tau"])
        .agg(
            c=("c", "mean"),
            c_nonempty=("c_nonempty", "mean"),
            short=("short", "mean"),
            k=("k", "max"),
        )
        .reset_index()
    )
    agg["cell"] = [
        f"{num(r.c)} | {num(r.c_nonempty)} | {r.short:g}/{r.k}" for r in agg.itertuples()
    ]
    wide = agg.pivot_table(
        index=["family", "method"], columns="tau", values="cell", aggfunc="first"
    )
    wide.columns = [
        f"τ = {t:g}" + (" (default)" if np.isclose(t, default_tau) else "") for t in wide.columns
    ]
    wide.columns.name = None
    return wide.reset_index()


#: Trajectory columns of the three questions about an explanation method (issue 17.6).
THREE_QUESTIONS = {
    "consistent: C-Score": "cscore",
    "correct: pointing game": "pointing",
    "correct: relevance mass": "mass_accuracy",
    "faithful: deletion AUC (↓)": "deletion_auc",
    "deletion AUC, random control": "deletion_auc_random",
    "faithful: insertion AUC (↑)": "insertion_auc",
    "insertion AUC, random control": "insertion_auc_random",
}


def consistent_correct_faithful(
    traj: pd.DataFrame, min_gold: int = DEFAULT_MIN_GOLD
) -> pd.DataFrame:
    """Per family and method, means over the models' final checkpoints (global rows) of
    the consistency, correctness and faithfulness scores of the trajectory table; columns
    a study did not compute are left out. The C-Score mean leaves out the models none of
    whose classes has a gold list of ``min_gold`` images (a C-Score over fewer is
    uninformative, issue 15.5): the cell says how many, or "uninformative" when that is
    every model; beside it, the mean number of classes with fewer than ``min_gold``."""
    if traj is None or traj.empty:
        return pd.DataFrame()
    glob = traj[traj["klass"] == -1]
    last = glob[glob["epoch"] == glob.groupby("model")["epoch"].transform("max")]
    cols = {k: c for k, c in THREE_QUESTIONS.items() if c in last and last[c].notna().any()}
    if not cols:
        return pd.DataFrame()
    out = last.groupby(["family", "method"], sort=True)[list(cols.values())].mean()
    out = out.rename(columns={c: k for k, c in cols.items()}).map(num)
    short = short_classes(traj, min_gold).set_index(["model", "method", "epoch"])
    if "cscore" in cols.values() and len(short):
        counts = short.reindex(list(zip(last["model"], last["method"], last["epoch"],
                                        strict=True)))  # fmt: skip
        judged = last.assign(short=counts["short"].to_numpy(), k=counts["k"].to_numpy())
        judged = judged.assign(ok=~(judged["short"] >= judged["k"]))
        label = f"classes with < {min_gold} gold images"
        for key, g in judged.groupby(["family", "method"], sort=True):
            ok, left = g[g["ok"]], int((~g["ok"]).sum())
            cell = num(ok["cscore"].mean()) if len(ok) else "uninformative"
            if left and len(ok):
                cell += f" ({left} uninformative model{'s' if left > 1 else ''} left out)"
            elif left:
                cell += f" (no class with >= {min_gold} gold images)"
            out.loc[key, "consistent: C-Score"] = cell
            out.loc[key, label] = f"{g['short'].mean():g}/{g['k'].max():g}"
    return out.reset_index()
