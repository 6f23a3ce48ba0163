"""Per-run classification metrics (issue 6: per-class metrics, calibration, confusion).

Conventions, shared by every function in ``brainxai.evaluation`` (so bootstrap replicates and
point estimates agree exactly):

* ``y_true`` holds class indices ``0 .. K−1``; ``probs`` is ``(N, K)`` with ``K =
  len(class_names)``; the prediction is ``argmax_k probs`` (first index on ties).
* **Zero division → 0.** Precision of a class never predicted, recall of a class absent from
  ``y_true`` and F1 when precision + recall = 0 are 0 (scikit-learn ``zero_division=0``).
* **Macro precision / recall / F1** average over the classes present in ``y_true`` *or* in
  the predictions (scikit-learn's default ``labels=unique_labels(y_true, y_pred)``): a class
  that is predicted but absent from the truth counts with recall = F1 = 0 (it is an error
  the model made), a class neither present nor predicted is left out (nothing to score).
* **Balanced accuracy** = mean recall over the classes present in ``y_true``
  (scikit-learn ``balanced_accuracy_score``).
* **Macro AUROC** (one-vs-rest) = mean over the classes ``k`` present in ``y_true`` with
  both positives and negatives of the binary AUROC of score ``probs[:, k]`` (Mann–Whitney,
  ties count ½); ``nan`` when fewer than 2 classes are present. Per-class AUROC is ``nan``
  for a class with no positive or no negative.
* **ECE** (Guo et al. 2017, Eq. 3): top-label confidence ``max_k p_ik`` in ``n_bins``
  equal-width bins ``(m−1)/M < conf ≤ m/M`` (confidence 0 goes to the first bin),
  ``ECE = Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SCALAR_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "macro_auroc",
    "ece",
)


def check_inputs(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as int64 ``(N,)`` and ``probs`` as float64 ``(N, K)``, labels in ``0..K−1``."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, K) with N = len(y_true) = {y.size}, got {p.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"y_true has labels outside 0..{p.shape[1] - 1}")
    return y, p


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """``K × K`` counts, rows = truth, columns = prediction, over all ``n_classes``."""
    y = np.asarray(y_true, dtype=np.int64).ravel()
    yp = np.asarray(y_pred, dtype=np.int64).ravel()
    return np.bincount(y * n_classes + yp, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def scores_from_confusion(conf: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and per-class/macro P, R, F1 from (weighted) confusions.

    ``conf`` is ``(..., K, K)`` (rows = truth); leading axes are bootstrap replicates, so
    this is the vectorised twin of the scikit-learn definitions (conventions in the module
    docstring). Returns arrays with the leading shape of ``conf`` (per-class ones end in K).
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    support = conf.sum(axis=-1)
    predicted = conf.sum(axis=-2)
    total = support.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
        in_truth = support > 0
        in_either = in_truth | (predicted > 0)
        n_either = in_either.sum(axis=-1)
        n_truth = in_truth.sum(axis=-1)
        out = {
            "accuracy": np.where(total > 0, tp.sum(axis=-1) / total, np.nan),
            "balanced_accuracy": np.where(
                n_truth > 0, (recall * in_truth).sum(axis=-1) / n_truth, np.nan
            ),
            "macro_precision": np.where(
                n_either > 0, (precision * in_either).sum(axis=-1) / n_either, np.nan
            ),
            "macro_recall": np.where(
                n_either > 0, (recall * in_either).sum(axis=-1) / n_either, np.nan
            ),
            "macro_f1": np.where(n_either > 0, (f1 * in_either).sum(axis=-1) / n_either, np.nan),
        }
    out.update(precision=precision, recall=recall, f1=f1, support=support)
    return out


def ece_bins(probs: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and its bin index ``m − 1`` for ``(m−1)/M < conf ≤ m/M``."""
    conf = probs.max(axis=1)
    idx = np.ceil(conf * n_bins).astype(np.int64) - 1
    return conf, np.clip(idx, 0, n_bins - 1)


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = 15) -> float:
    """ECE of Guo et al. 2017 (Eq. 3) with equal-width bins on the top-label confidence."""
    y, p = check_inputs(y_true, probs)
    if y.size == 0:
        return float("nan")
    conf, idx = ece_bins(p, n_bins)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    count = np.bincount(idx, minlength=n_bins)
    gap = np.bincount(idx, weights=correct - conf, minlength=n_bins)
    # Σ_m |B_m|/N · |acc_m − conf_m| = Σ_m |Σ_{i∈B_m} (correct_i − conf_i)| / N
    return float(np.abs(gap[count > 0]).sum() / y.size)


def binary_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None):
    """Weighted Mann–Whitney AUROC, ties ½; vectorised over leading axes of ``weights``.

    ``weights`` (``(..., N)``, default ones) are multiplicities: integer weights give exactly
    the AUROC of the sample with each item repeated (patient bootstrap). ``nan`` where the
    positive or negative weight is 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    w = np.ones(scores.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    s_sorted = scores[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    group = np.cumsum(np.r_[True, s_sorted[1:] != s_sorted[:-1]]) - 1
    w_sorted = w[..., order]
    pos_sorted = positive[order]
    w_neg = np.where(pos_sorted, 0.0, w_sorted)
    w_pos = np.where(pos_sorted, w_sorted, 0.0)
    neg_in_group = np.add.reduceat(w_neg, starts, axis=-1)
    neg_below = np.cumsum(neg_in_group, axis=-1) - neg_in_group
    credit = neg_below + 0.5 * neg_in_group
    num = (w_pos * credit[..., group]).sum(axis=-1)
    total_pos = w_pos.sum(axis=-1)
    total_neg = w_neg.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((total_pos > 0) & (total_neg > 0), num / (total_pos * total_neg), np.nan)


def classification_metrics(
    y_true: Any, probs: Any, class_names: Sequence[str], n_bins: int = 15
) -> dict[str, Any]:
    """All per-run metrics of issue 6 (conventions in the module docstring).

    Returns ``accuracy, balanced_accuracy, macro_precision, macro_recall, macro_f1,
    macro_auroc, ece, n``, ``per_class`` ``{name: {precision, recall, f1, support, auroc}}``
    over all ``class_names`` and ``confusion`` (``K × K`` nested list, rows = truth).
    """
    y, p = check_inputs(y_true, probs)
    k = len(class_names)
    if p.shape[1] != k:
        raise ValueError(f"probs has {p.shape[1]} columns but {k} class names")
    conf = confusion_matrix(y, p.argmax(axis=1), k)
    s = scores_from_confusion(conf)
    auroc = np.array([binary_auroc(p[:, c], y == c) for c in range(k)], dtype=np.float64)
    valid = np.isfinite(auroc)
    macro_auroc = float(auroc[valid].mean()) if valid.sum() >= 2 else float("nan")
    per_class = {
        name: {
            "precision": float(s["precision"][c]),
            "recall": float(s["recall"][c]),
            "f1": float(s["f1"][c]),
            "support": int(s["support"][c]),
            "auroc": float(auroc[c]),
        }
        for c, name in enumerate(class_names)
    }
    return {
        "accuracy": float(s["accuracy"]),
        "balanced_accuracy": float(s["balanced_accuracy"]),
        "macro_precision": float(s["macro_precision"]),
        "macro_recall": float(s["macro_recall"]),
        "macro_f1": float(s["macro_f1"]),
        "macro_auroc": macro_auroc,
        "ece": expected_calibration_error(y, p, n_bins),
        "n": int(y.size),
        "per_class": per_class,
        "confusion": conf.tolist(),
    }


def save_confusion(
    confusion: Any, class_names: Sequence[str], png_path: str | Path, csv_path: str | Path
) -> tuple[Path, Path]:
    """Write the confusion matrix as CSV (counts, truth rows) and a row-normalised heatmap PNG.

    Cells show counts; colour is the row fraction (recall), so rare classes stay readable.
    The figure grows with the number of classes (17 Kaggle classes: labels rotated 90°).
    Matplotlib object API on an Agg canvas (no pyplot state: safe in worker threads).
    """
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from brainxai.atomic import savefig_atomic, to_csv_atomic

    conf = np.asarray(confusion, dtype=np.int64)
    names = list(class_names)
    k = len(names)
    if conf.shape != (k, k):
        raise ValueError(f"confusion must be {k}×{k}, got {conf.shape}")
    png_path, csv_path = Path(png_path), Path(csv_path)
    frame = pd.DataFrame(conf, index=pd.Index(names, name="true"), columns=names)
    to_csv_atomic(frame, csv_path)

    rows = conf.sum(axis=1, keepdims=True)
    frac = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
    side = max(4.0, 0.45 * k + 2.5)
    fig = Figure(figsize=(side + 1.0, side), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class")
    fontsize = 10 if k <= 8 else 7
    for i in range(k):
        for j in range(k):
            if conf[i, j]:
                colour = "white" if frac[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(conf[i, j]), ha="center", va="center", color=colour, fontsize=fontsize
                )
    ax.set_xticks(
        range(k),
        names,
        rotation=90 if k > 6 else 45,
        ha="center" if k > 6 else "right",
        fontsize=fontsize,
    )
    ax.set_yticks(range(k), names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion (N = {int(conf.sum())})")
    savefig_atomic(fig, png_path)
    return png_path, csv_path
