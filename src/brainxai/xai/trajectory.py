"""Per-checkpoint tracking of explanation consistency and correctness (paper 004 §3.4–4.4).

For every (model, method, checkpoint) the trajectory table holds one row per class and
one global row (``klass = -1``):

* ``cscore``, ``gold_size``, ``support``, ``empty`` — :func:`brainxai.xai.cscore.cscore`
  (gold list at this checkpoint, or anchored to a reference checkpoint as in paper 004
  §3.4, ``TrackingConfig.anchor = "reference"``, default reference: the last epoch);
  ``cscore`` is paper 004's definition (Eq. 6 counts an empty or singleton-gold class as
  ``C_k = 0``); ``cscore_nonempty`` leaves those classes out (global row; a class row has
  its own ``C_k``, NaN when flagged) and ``n_empty_classes`` / ``n_singleton_classes``
  count them (global row; 1/0 on a class row) — with 17 classes and ``τ = 0.5`` many gold
  lists are empty early in training;
* ``auc`` — one-vs-rest ROC AUC of class k (class rows) or the macro mean of those
  (global row; equal to sklearn's ``roc_auc_score(multi_class="ovr", average="macro")``,
  and to the plain AUC for two classes); ``accuracy`` — class recall / overall accuracy;
* correctness against ground-truth masks when given (:mod:`brainxai.xai.groundtruth`,
  NaN-aware means over the rows of that class with a non-empty mask): ``pointing``,
  ``mass_accuracy``, ``rank_accuracy``, ``auprc``, ``outside_fpr``, ``n_masks``.

The three AUC–consistency dissociations of paper 004 §4.4 are found on that table:

1. gold-list collapse — a class's gold list is (nearly) empty (``gold_size < min_gold``)
   while its AUC is still ``≥ auc_high``;
2. early warning — a series' C-Score falls ``c_drop`` below its best value so far and
   stays there while the AUC has not dropped, and the AUC then falls ``auc_drop`` below its
   best so far ``1 … max_lead`` checkpoints later (per class and for the global score);
3. masked class collapse — a non-empty class scores ``C_k ≤ class_collapse`` while the
   global C-Score exceeds it by ``≥ masked_gap``.

τ and γ sweeps (:func:`tau_sweep`, :func:`gamma_sweep`) show the threshold dependence the
paper admits (§6). Plots: :mod:`brainxai.xai.trajectory_plots`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from brainxai.config import MappingConfig
from brainxai.xai._arrays import to_numpy
from brainxai.xai.cscore import cscore, gold_mask
from brainxai.xai.groundtruth import localisation_scores

GLOBAL = -1
ANCHORS = ("checkpoint", "reference")
CORRECTNESS = ("pointing", "mass_accuracy", "rank_accuracy", "auprc", "outside_fpr")
ID_COLUMNS = ("model", "method", "checkpoint", "epoch")


@dataclass(frozen=True)
class TrackingConfig(MappingConfig):
    """C-Score settings, correctness settings and dissociation thresholds."""

    # --- C-Score (paper 004 Eqs. 1–6) ----------------------------------------------
    tau: float = 0.5
    gamma: float = 2.0
    weighting: str = "gold"
    #: "checkpoint": gold list of each checkpoint; "reference": of a reference checkpoint.
    anchor: str = "checkpoint"
    #: Reference checkpoint id for anchor="reference"; None = the model's last epoch.
    reference_checkpoint: str | None = None
    # --- correctness (papers 001/002) ----------------------------------------------
    pointing_tolerance: float = 0.0
    fp_threshold: float = 0.5
    # --- dissociations (paper 004 §4.4) --------------------------------------------
    #: Mechanism 1: gold lists smaller than this count as collapsed (C_k needs 2).
    min_gold: int = 2
    #: Mechanism 1: a class AUC at or above this is "still high".
    auc_high: float = 0.9
    #: Mechanism 2: absolute drops below the best value so far.
    c_drop: float = 0.2
    auc_drop: float = 0.1
    #: Mechanism 2: largest lead (in checkpoints) still reported as an early warning.
    max_lead: int = 3
    #: Mechanism 3: a class C-Score at or below this has collapsed ...
    class_collapse: float = 0.1
    #: ... and is masked when the global C-Score is at least this much higher.
    masked_gap: float = 0.15
    # --- sensitivity sweeps --------------------------------------------------------
    taus: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
    gammas: tuple[float, ...] = (1.0, 2.0, 4.0)

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {self.anchor!r}")
        if self.weighting not in ("gold", "support"):
            raise ValueError("weighting must be 'gold' or 'support'")
        if not 0 <= self.tau <= 1 or self.gamma <= 0:
            raise ValueError("need 0 <= tau <= 1 and gamma > 0")
        if self.min_gold < 0 or self.max_lead < 1:
            raise ValueError("need min_gold >= 0 and max_lead >= 1")


@dataclass(frozen=True)
class CheckpointInput:
    """Everything one (model, method, checkpoint) contributes to the trajectory."""

    model: str
    method: str
    checkpoint: str
    epoch: int
    maps: Any  # (N, H, W) / (N, D, H, W)
    labels: Any  # (N,)
    probs: Any  # (N, K)
    masks: Any = None  # (N, *spatial) bool, or None
    record_ids: Any = None  # (N,) — needed to anchor the gold list across checkpoints


# -------------------------------------------------------------------------- per checkpoint


def class_aucs(labels: Any, probs: Any) -> dict[int, float]:
    """One-vs-rest ROC AUC per class (NaN when the class or its complement is absent)."""
    y = to_numpy(labels).astype(np.int64)
    p = to_numpy(probs, dtype=np.float64)
    out = {}
    for k in range(p.shape[1]):
        pos = y == k
        out[k] = float(roc_auc_score(pos, p[:, k])) if 0 < pos.sum() < len(y) else float("nan")
    return out


def macro_auc(aucs: dict[int, float]) -> float:
    """Unweighted mean of the defined one-vs-rest AUCs (NaN if none)."""
    vals = [v for v in aucs.values() if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def checkpoint_rows(
    maps: Any,
    labels: Any,
    probs: Any,
    masks: Any = None,
    config: TrackingConfig | None = None,
    gold: Any = None,
) -> list[dict[str, Any]]:
    """Rows (one per class, then the global row) of one (model, method, checkpoint).

    ``gold`` (N,) bool anchors the gold list (see :func:`reference_gold`).
    """
    cfg = config or TrackingConfig()
    y = to_numpy(labels).astype(np.int64)
    p = to_numpy(probs, dtype=np.float64)
    res = cscore(maps, y, p, cfg.tau, cfg.gamma, cfg.weighting, gold=gold)
    aucs = class_aucs(y, p)
    pred = p.argmax(axis=1)
    loc = None
    if masks is not None:
        loc = localisation_scores(maps, masks, cfg.pointing_tolerance, cfg.fp_threshold)
    rows = []
    for k in range(p.shape[1]):
        sel = y == k
        row = {
            "klass": k,
            "cscore": res.per_class[k],
            "cscore_nonempty": float("nan") if k in res.empty else res.per_class[k],
            "n_empty_classes": int(res.gold_size[k] == 0),
            "n_singleton_classes": int(res.gold_size[k] == 1),
            "gold_size": res.gold_size[k],
            "support": res.support[k],
            "empty": k in res.empty,
            "auc": aucs[k],
            "accuracy": float((pred[sel] == k).mean()) if sel.any() else float("nan"),
        }
        rows.append(row | _correctness(loc, sel))
    rows.append(
        {
            "klass": GLOBAL,
            "cscore": res.global_score,
            "cscore_nonempty": res.global_nonempty,
            "n_empty_classes": res.n_empty,
            "n_singleton_classes": res.n_singleton,
            "gold_size": int(sum(res.gold_size.values())),
            "support": len(y),
            "empty": len(res.empty) == p.shape[1],
            "auc": macro_auc(aucs),
            "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        }
        | _correctness(loc, np.ones(len(y), bool))
    )
    return rows


def _correctness(loc: Any, sel: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in CORRECTNESS:
        if loc is None:
            out[name] = float("nan")
            continue
        vals = getattr(loc, name)[sel]
        vals = vals[~np.isnan(vals)]
        out[name] = float(vals.mean()) if len(vals) else float("nan")
    out["n_masks"] = 0 if loc is None else int((~np.isnan(loc.pointing[sel])).sum())
    return out


def correctness_breakdown(
    maps: Any,
    masks: Any,
    labels: Any,
    probs: Any,
    volume_bins: int = 3,
    config: TrackingConfig | None = None,
) -> pd.DataFrame:
    """Correctness means split by prediction outcome and lesion-volume tertile (paper 002).

    Columns: outcome ("correct"/"incorrect"), volume_bin (0 = smallest lesions), n, and
    the :data:`CORRECTNESS` metrics. Samples with an empty mask are left out.
    """
    cfg = config or TrackingConfig()
    g = to_numpy(masks).astype(bool)
    vol = g.reshape(len(g), -1).sum(axis=1)
    loc = localisation_scores(maps, g, cfg.pointing_tolerance, cfg.fp_threshold)
    y = to_numpy(labels).astype(np.int64)
    correct = to_numpy(probs).argmax(axis=1) == y
    keep = vol > 0
    edges = np.quantile(vol[keep], np.linspace(0, 1, volume_bins + 1)) if keep.any() else []
    bins = np.clip(np.searchsorted(edges, vol, side="right") - 1, 0, volume_bins - 1)
    rows = []
    for outcome, mask in (("correct", correct), ("incorrect", ~correct)):
        for b in range(volume_bins):
            sel = keep & mask & (bins == b)
            row: dict[str, Any] = {"outcome": outcome, "volume_bin": b, "n": int(sel.sum())}
            for name in CORRECTNESS:
                vals = getattr(loc, name)[sel]
                row[name] = float(np.nanmean(vals)) if sel.any() else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ trajectory


def reference_gold(
    labels: Any, reference_probs: Any, tau: float, record_ids: Any = None, reference_ids: Any = None
) -> np.ndarray:
    """Gold membership (Eq. 1) taken from a reference checkpoint's probabilities; with
    record ids the reference rows are matched to this checkpoint's rows by id."""
    ref = to_numpy(reference_probs, dtype=np.float64)
    if record_ids is not None and reference_ids is not None:
        pos = {r: i for i, r in enumerate(np.asarray(reference_ids).astype(str))}
        ids = np.asarray(record_ids).astype(str)
        missing = [r for r in ids if r not in pos]
        if missing:
            raise ValueError(f"{len(missing)} record(s) missing from the reference checkpoint")
        ref = ref[[pos[r] for r in ids]]
    return gold_mask(labels, ref, tau)


def trajectory_table(
    inputs: Iterable[CheckpointInput],
    config: TrackingConfig | None = None,
    reference: dict[str, tuple[Any, Any]] | None = None,
) -> pd.DataFrame:
    """Assemble the trajectory table from per-checkpoint inputs (any order).

    With ``anchor="reference"``, ``reference`` maps model → (record_ids, probs) of its
    reference checkpoint; when omitted the inputs are materialised and each model's
    reference is ``reference_checkpoint`` or its highest epoch.
    """
    cfg = config or TrackingConfig()
    if cfg.anchor == "reference" and reference is None:
        inputs = list(inputs)
        reference = {}
        for model in {i.model for i in inputs}:
            own = [i for i in inputs if i.model == model]
            if cfg.reference_checkpoint is not None:
                ref = [i for i in own if i.checkpoint == cfg.reference_checkpoint]
                if not ref:
                    raise ValueError(f"reference checkpoint {cfg.reference_checkpoint!r} not found")
            else:
                ref = [max(own, key=lambda i: i.epoch)]
            reference[model] = (ref[0].record_ids, ref[0].probs)
    rows = []
    for item in inputs:
        gold = None
        if cfg.anchor == "reference":
            ref_ids, ref_probs = reference[item.model]  # type: ignore[index]
            gold = reference_gold(item.labels, ref_probs, cfg.tau, item.record_ids, ref_ids)
        for row in checkpoint_rows(item.maps, item.labels, item.probs, item.masks, cfg, gold):
            rows.append(
                {
                    "model": item.model,
                    "method": item.method,
                    "checkpoint": item.checkpoint,
                    "epoch": int(item.epoch),
                }
                | row
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values([*ID_COLUMNS[:2], "epoch", "klass"], kind="stable").reset_index(
        drop=True
    )


def inputs_from_heatmap_files(
    paths: Iterable[str | Path],
    masks_for: Callable[[np.ndarray], Any] | None = None,
    model: str | None = None,
) -> Iterable[CheckpointInput]:
    """Lazily turn heatmap files (:mod:`brainxai.xai.heatmap_store`) into inputs.

    ``masks_for(record_ids)`` returns the masks in that order (or None); ``model``
    defaults to the file's ``extra["model"]``, else its checkpoint id's first path part.
    """
    from brainxai.xai.heatmap_store import load_heatmaps

    for path in paths:
        rec = load_heatmaps(path)
        name = model or rec.extra.get("model") or rec.checkpoint_id.split("/")[0]
        yield CheckpointInput(
            model=name,
            method=rec.method,
            checkpoint=rec.checkpoint_id,
            epoch=-1 if rec.epoch is None else int(rec.epoch),
            maps=rec.maps.astype(np.float32),
            labels=rec.labels,
            probs=rec.probs,
            masks=None if masks_for is None else masks_for(rec.record_ids),
            record_ids=rec.record_ids,
        )


# ---------------------------------------------------------------------------- dissociations


def gold_list_collapse(table: pd.DataFrame, config: TrackingConfig | None = None) -> pd.DataFrame:
    """Mechanism 1: class rows with ``gold_size < min_gold`` and ``auc ≥ auc_high``."""
    cfg = config or TrackingConfig()
    cls = table[table["klass"] != GLOBAL]
    hit = cls[(cls["gold_size"] < cfg.min_gold) & (cls["auc"] >= cfg.auc_high)]
    return hit[[*ID_COLUMNS, "klass", "gold_size", "support", "auc", "accuracy"]].reset_index(
        drop=True
    )


def early_warnings(table: pd.DataFrame, config: TrackingConfig | None = None) -> pd.DataFrame:
    """Mechanism 2: C-Score drops that precede an AUC drop by 1 … max_lead checkpoints.

    Per (model, method, klass) series in epoch order, with ``best(t)`` the maximum over
    the checkpoints before t: a C drop starts at ``t_c`` when ``C_t ≤ best_C(t) − c_drop``;
    an AUC drop at ``t_a`` when ``AUC_t ≤ best_AUC(t) − auc_drop``. Reported: the first
    AUC-drop checkpoint ``t_a`` after ``t_c`` such that C stayed ``c_drop`` below its
    pre-drop best and AUC stayed undropped on ``t_c … t_a − 1``, ``t_a − t_c ≤ max_lead``.
    """
    cfg = config or TrackingConfig()
    events = []
    for key, s in table.groupby(["model", "method", "klass"], sort=True):
        s = s.sort_values("epoch")
        c = s["cscore"].to_numpy(float)
        auc = s["auc"].to_numpy(float)
        c_dropped = _dropped(c, cfg.c_drop)
        a_dropped = _dropped(auc, cfg.auc_drop)
        t = 1
        while t < len(c):
            if not c_dropped[t] or a_dropped[t]:
                t += 1
                continue
            peak = np.nanmax(c[:t])
            end = t
            while end + 1 < len(c) and not a_dropped[end + 1] and c[end + 1] <= peak - cfg.c_drop:
                end += 1
            ta = end + 1
            if ta < len(c) and a_dropped[ta] and ta - t <= cfg.max_lead:
                ep = s["epoch"].to_numpy()
                cp = s["checkpoint"].to_numpy()
                events.append(
                    {
                        "model": key[0],
                        "method": key[1],
                        "klass": int(key[2]),
                        "c_drop_checkpoint": cp[t],
                        "c_drop_epoch": int(ep[t]),
                        "auc_drop_checkpoint": cp[ta],
                        "auc_drop_epoch": int(ep[ta]),
                        "lead_checkpoints": int(ta - t),
                        "lead_epochs": int(ep[ta] - ep[t]),
                        "c_before": float(peak),
                        "c_at_warning": float(c[t]),
                        "auc_at_warning": float(auc[t]),
                        "auc_at_drop": float(auc[ta]),
                    }
                )
            t = end + 1
    return pd.DataFrame(events, columns=_EARLY_COLUMNS)


_EARLY_COLUMNS = [
    "model",
    "method",
    "klass",
    "c_drop_checkpoint",
    "c_drop_epoch",
    "auc_drop_checkpoint",
    "auc_drop_epoch",
    "lead_checkpoints",
    "lead_epochs",
    "c_before",
    "c_at_warning",
    "auc_at_warning",
    "auc_at_drop",
]


def _dropped(x: np.ndarray, drop: float) -> np.ndarray:
    """``x_t ≤ max_{s<t} x_s − drop`` (False at t = 0 and for NaN)."""
    best = np.fmax.accumulate(np.where(np.isnan(x), -np.inf, x))
    prev = np.concatenate([[np.inf], best[:-1]])
    with np.errstate(invalid="ignore"):
        return (x <= prev - drop) & ~np.isnan(x)


def masked_class_collapse(
    table: pd.DataFrame, config: TrackingConfig | None = None
) -> pd.DataFrame:
    """Mechanism 3: non-empty classes with ``C_k ≤ class_collapse`` while the global
    C-Score of the same checkpoint is ``≥ C_k + masked_gap``."""
    cfg = config or TrackingConfig()
    glob = table[table["klass"] == GLOBAL][[*ID_COLUMNS, "cscore"]].rename(
        columns={"cscore": "global_cscore"}
    )
    cls = table[(table["klass"] != GLOBAL) & ~table["empty"].astype(bool)]
    both = cls.merge(glob, on=list(ID_COLUMNS))
    hit = both[
        (both["cscore"] <= cfg.class_collapse)
        & (both["global_cscore"] - both["cscore"] >= cfg.masked_gap)
    ]
    return hit[[*ID_COLUMNS, "klass", "cscore", "global_cscore", "gold_size", "auc"]].reset_index(
        drop=True
    )


def dissociations(
    table: pd.DataFrame, config: TrackingConfig | None = None
) -> dict[str, pd.DataFrame]:
    """All three mechanisms: {"gold_list_collapse", "early_warning", "masked_class_collapse"}."""
    return {
        "gold_list_collapse": gold_list_collapse(table, config),
        "early_warning": early_warnings(table, config),
        "masked_class_collapse": masked_class_collapse(table, config),
    }


def dissociation_report(found: dict[str, pd.DataFrame]) -> str:
    """Markdown summary of :func:`dissociations` (one line per event)."""
    lines = ["# AUC–consistency dissociations (paper 004 §4.4)", ""]
    g = found["gold_list_collapse"]
    lines.append(f"## 1. Gold-list collapse: {len(g)}")
    lines += [
        f"- {r.model} / {r.method} / {r.checkpoint} (epoch {r.epoch}): class {r.klass} gold list "
        f"{r.gold_size} of {r.support} while its AUC is {r.auc:.3f}"
        for r in g.itertuples()
    ]
    e = found["early_warning"]
    lines += ["", f"## 2. C-Score drop before an AUC drop (early warning): {len(e)}"]
    lines += [
        f"- {r.model} / {r.method} / {_scope(r.klass)}: C-Score {r.c_before:.3f} → "
        f"{r.c_at_warning:.3f} at epoch {r.c_drop_epoch} (AUC {r.auc_at_warning:.3f}); AUC "
        f"→ {r.auc_at_drop:.3f} at epoch {r.auc_drop_epoch}: lead {r.lead_checkpoints} "
        f"checkpoint(s)"
        for r in e.itertuples()
    ]
    m = found["masked_class_collapse"]
    lines += ["", f"## 3. Class collapse masked in the global score: {len(m)}"]
    lines += [
        f"- {r.model} / {r.method} / {r.checkpoint} (epoch {r.epoch}): class {r.klass} "
        f"C-Score {r.cscore:.3f} vs global {r.global_cscore:.3f}"
        for r in m.itertuples()
    ]
    return "\n".join(lines) + "\n"


def _scope(klass: int) -> str:
    return "global" if klass == GLOBAL else f"class {klass}"


# ------------------------------------------------------------------------------- sweeps


def tau_sweep(
    maps: Any,
    labels: Any,
    probs: Any,
    taus: Sequence[float],
    gamma: float = 2.0,
    weighting: str = "gold",
) -> pd.DataFrame:
    """C-Score and gold-list sizes for each τ: columns tau, klass, cscore, cscore_nonempty,
    n_empty_classes, n_singleton_classes, gold_size, empty (see the module docstring)."""
    return _sweep(maps, labels, probs, "tau", taus, lambda v: {"tau": v, "gamma": gamma}, weighting)


def gamma_sweep(
    maps: Any,
    labels: Any,
    probs: Any,
    gammas: Sequence[float],
    tau: float = 0.5,
    weighting: str = "gold",
) -> pd.DataFrame:
    """C-Score for each intensity-emphasis exponent γ (Eq. 3) at fixed τ."""
    return _sweep(
        maps, labels, probs, "gamma", gammas, lambda v: {"tau": tau, "gamma": v}, weighting
    )


def _sweep(maps, labels, probs, name, values, kwargs, weighting) -> pd.DataFrame:
    rows = []
    for v in values:
        res = cscore(maps, labels, probs, weighting=weighting, **kwargs(float(v)))
        for k, c in res.per_class.items():
            rows.append(
                {
                    name: float(v),
                    "klass": k,
                    "cscore": c,
                    "cscore_nonempty": float("nan") if k in res.empty else c,
                    "n_empty_classes": int(res.gold_size[k] == 0),
                    "n_singleton_classes": int(res.gold_size[k] == 1),
                    "gold_size": res.gold_size[k],
                    "empty": k in res.empty,
                }
            )
        rows.append(
            {
                name: float(v),
                "klass": GLOBAL,
                "cscore": res.global_score,
                "cscore_nonempty": res.global_nonempty,
                "n_empty_classes": res.n_empty,
                "n_singleton_classes": res.n_singleton,
                "gold_size": sum(res.gold_size.values()),
                "empty": len(res.empty) == len(res.per_class),
            }
        )
    return pd.DataFrame(rows)


def sensitivity(
    maps: Any, labels: Any, probs: Any, config: TrackingConfig | None = None
) -> pd.DataFrame:
    """τ sweep at the configured γ and γ sweep at the configured τ, stacked with a
    ``sweep`` column ("tau"/"gamma"); both tau and gamma columns are filled."""
    cfg = config or TrackingConfig()
    t = tau_sweep(maps, labels, probs, cfg.taus, cfg.gamma, cfg.weighting).assign(
        sweep="tau", gamma=cfg.gamma
    )
    g = gamma_sweep(maps, labels, probs, cfg.gammas, cfg.tau, cfg.weighting).assign(
        sweep="gamma", tau=cfg.tau
    )
    return pd.concat([t, g], ignore_index=True)[
        ["sweep", "tau", "gamma", "klass", "cscore", "cscore_nonempty", "n_empty_classes",
         "n_singleton_classes", "gold_size", "empty"]
    ]  # fmt: skip
