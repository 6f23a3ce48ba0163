"""The report's figures: matplotlib object API on an Agg canvas (no pyplot state).

Every figure is written as a PNG under the report's ``figures/`` folder and carried as a
:class:`Figure` record whose ``data_uri`` embeds the same bytes (base64) in the HTML, so
the page needs no other file. Figures that already have a writer in a stage's library
(label-efficiency curve, confusion matrix) are drawn by that writer.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from PIL import Image

from brainxai.atomic import savefig_atomic
from brainxai.evaluation.metrics import save_confusion
from brainxai.evaluation.plots import UNINFORMATIVE_COLOUR, label_efficiency
from brainxai.xai.trajectory_plots import DEFAULT_MIN_GOLD, phase_boundary, short_classes


@dataclass(frozen=True)
class Figure:
    """A figure of the report: its PNG file and the same bytes as a ``data:`` URI."""

    name: str
    caption: str
    path: Path
    data_uri: str


def embed(path: Path, name: str, caption: str) -> Figure:
    """Record a PNG already on disk (base64 ``data:image/png`` URI)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return Figure(name, caption, Path(path), f"data:image/png;base64,{data}")


def new_figure(width: float, height: float, dpi: int) -> MplFigure:
    fig = MplFigure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: MplFigure, out_dir: Path, name: str, caption: str) -> Figure:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    savefig_atomic(fig, path, facecolor="white")
    return embed(path, name, caption)


def qc_montages(qc: pd.DataFrame, root: Path, n: int, dpi: int, out_dir: Path) -> Figure | None:
    """Standardization QC montages of the ``n`` sessions with the lowest brain Dice."""
    rows = qc[qc["montage"].fillna("").astype(str) != ""].copy()
    rows = rows[[(root / m).is_file() for m in rows["montage"]]]
    if rows.empty or n == 0:
        return None
    rows = rows.sort_values(["brain_dice", "subject"], kind="stable").head(n)
    cols = 2 if len(rows) > 1 else 1
    nrows = int(np.ceil(len(rows) / cols))
    fig = new_figure(6.0 * cols, 2.5 * nrows, dpi)
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, r in zip(axes, rows.itertuples(), strict=False):
        with Image.open(root / r.montage) as im:
            ax.imshow(np.asarray(im.convert("RGB")))
        status = "QC pass" if bool(r.qc_pass) else f"QC flag: {r.qc_reason}"
        ax.set_title(
            f"{r.subject}: brain Dice {r.brain_dice:.3f}, MI {r.mutual_information:.3f} ({status})",
            fontsize=8,
        )
    caption = (
        f"Standardization QC montages of the {len(rows)} session(s) with the lowest brain "
        "Dice (of {0}); each montage is the stage's own QC image.".format(len(qc))
    )
    return save(fig, out_dir, "standardize_qc_montage", caption)


def ssl_curves(
    histories: dict[str, pd.DataFrame],
    dpi: int,
    out_dir: Path,
    references: Mapping[str, float] | None = None,
    uninformative: Collection[str] = (),
) -> Figure | None:
    """Per-epoch SSL loss (one panel per framework: each has its own objective and scale)
    and the kNN monitor accuracy on the val split (all frameworks in one panel), each
    framework's random-init reference (``references``) as a dotted line in its colour; a
    framework in ``uninformative`` (did not beat random features) is drawn with hollow grey
    markers and named so, not as a result."""
    histories = {k: h for k, h in sorted(histories.items()) if len(h)}
    if not histories:
        return None
    references = dict(references or {})
    n = len(histories)
    cols = min(n, 3) + 1
    rows = int(np.ceil(n / (cols - 1)))
    fig = new_figure(3.0 * cols, 2.4 * rows + 0.3, dpi)
    grid = fig.add_gridspec(rows, cols)
    for j, (fw, h) in enumerate(histories.items()):
        ax = fig.add_subplot(grid[j // (cols - 1), j % (cols - 1)])
        ax.plot(h["epoch"], h["loss"], color=f"C{j}", marker="o", markersize=4)
        ax.set_title(f"{fw}: loss", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_knn = fig.add_subplot(grid[:, cols - 1])
    for j, (fw, h) in enumerate(histories.items()):
        if "knn_accuracy" in h:
            hollow = fw in uninformative
            ax_knn.plot(
                h["epoch"], h["knn_accuracy"], color=f"C{j}", marker="o", markersize=4,
                markerfacecolor="none" if hollow else f"C{j}",
                markeredgecolor=UNINFORMATIVE_COLOUR if hollow else f"C{j}",
                label=f"{fw} (uninformative)" if hollow else fw,
            )  # fmt: skip
        if references.get(fw) is not None:
            ax_knn.axhline(float(references[fw]), color=f"C{j}", linestyle=":", linewidth=1)
    ax_knn.set_title("kNN monitor (val split)", fontsize=9)
    ax_knn.set_xlabel("epoch", fontsize=8)
    ax_knn.set_ylabel("kNN accuracy", fontsize=8)
    ax_knn.tick_params(labelsize=7)
    ax_knn.grid(True, alpha=0.3)
    ax_knn.xaxis.get_major_locator().set_params(integer=True)
    ax_knn.legend(fontsize=7, loc="best")
    caption = (
        "SSL training curves per framework (models/ssl/<framework>/summary.json history): "
        "each loss is the framework's own objective (own panel and scale); the kNN monitor "
        "classifies val-split images from training-split embeddings (points: the BN running "
        "statistics of training, gathered on augmented views; the table's final kNN and the "
        "reference re-estimate BN on clean images)"
        + (
            "; dotted: the same backbone untrained (random-init reference); hollow grey: "
            "a framework that did not beat it by the target (uninformative)."
            if references
            else "."
        )
    )
    return save(fig, out_dir, "ssl_curves", caption)


def label_efficiency_figure(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    metric: str,
    out_dir: Path,
    uninformative_inits: Mapping[str, str] | None = None,
) -> Figure | None:
    """Paper 000's label-efficiency curve (the fine-tuning stage's own plotting function;
    ``uninformative_inits``: inits whose pretraining did not beat random features)."""
    if summary.empty or metric not in set(summary["metric"]):
        return None
    path = label_efficiency(
        summary, comparisons, metric, out_dir / "label_efficiency.png", uninformative_inits
    )
    return embed(
        path,
        "label_efficiency",
        f"Label efficiency ({metric}): mean over seeds with the patient-bootstrap CI band per "
        "init; * marks a Holm-adjusted significant difference from the baseline "
        "(comparisons.csv) between informative results. Hollow grey points: at chance "
        "(the CI does not lie above the dotted chance line) - uninformative, as is an init "
        "marked (uninformative) because its SSL pretraining did not beat random features; "
        "neither gets a *.",
    )


def confusion_figure(
    confusion: np.ndarray, class_names: Sequence[str], name: str, caption: str, out_dir: Path
) -> Figure:
    """A confusion matrix drawn by :func:`brainxai.evaluation.metrics.save_confusion`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, _ = save_confusion(
        confusion, class_names, out_dir / f"{name}.png", out_dir / f"{name}.csv"
    )
    return embed(png, name, caption)


def dice_figure(table: pd.DataFrame, dpi: int, out_dir: Path) -> Figure | None:
    """Pseudo-label Dice against the generator's truth per class: coarse, refined, union."""
    cols = [c for c in ("dice_coarse", "dice_refined", "dice_union") if c in table]
    rows = table[table["label"].fillna("").astype(str) != ""]
    if not cols or rows.empty:
        return None
    classes = sorted(rows["label"].astype(str).unique())
    fig = new_figure(max(6.0, 1.6 * len(classes) + 2), 3.6, dpi)
    ax = fig.subplots()
    width = 0.8 / len(cols)
    for j, col in enumerate(cols):
        pos = np.arange(len(classes)) + (j - (len(cols) - 1) / 2) * width
        data = [rows.loc[rows["label"] == k, col].dropna().to_numpy(float) for k in classes]
        ax.boxplot(
            data,
            positions=pos,
            widths=width * 0.9,
            patch_artist=True,
            boxprops={"facecolor": f"C{j}", "alpha": 0.5},
            medianprops={"color": "black"},
            showfliers=False,
        )
        for p, d in zip(pos, data, strict=True):
            ax.scatter(np.full(len(d), p), d, s=10, color=f"C{j}", zorder=3)
        ax.plot([], [], color=f"C{j}", linewidth=6, alpha=0.5, label=col.removeprefix("dice_"))
    ax.set_xticks(np.arange(len(classes)), classes)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice vs generator truth (template space)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", ncols=len(cols))
    caption = (
        f"Pseudo-label Dice per class ({len(rows)} sessions): coarse prior, MLP-refined and "
        "their union (boxes: quartiles; dots: sessions)."
    )
    return save(fig, out_dir, "pseudolabel_dice", caption)


def trajectory_figure(
    table: pd.DataFrame,
    events: pd.DataFrame,
    family: str,
    method: str,
    dpi: int,
    out_dir: Path,
    min_gold: int = DEFAULT_MIN_GOLD,
) -> Figure | None:
    """Global C-Score and macro AUC per checkpoint (one line per model) with dissociations.

    ``events`` has columns ``model, method, epoch, kind``: checkpoints where a dissociation
    was found (any class); they are marked on the C-Score curve (red x, count beside). A
    two-phase run (paper 004: backbone frozen, then trained) gets its phase boundary as a
    dotted line in its colour. A checkpoint none of whose classes has a gold list of
    ``min_gold`` images has no C-Score point (uninformative: a gap); each model's legend
    entry says how many of its classes have fewer at its last checkpoint.
    """
    glob = table[(table["family"] == family) & (table["method"] == method) & (table["klass"] == -1)]
    if glob.empty:
        return None
    sub = table[(table["family"] == family) & (table["method"] == method)]
    short = short_classes(sub, min_gold).set_index(["model", "epoch"])
    models = sorted(glob["model"].unique())
    fig = new_figure(11.0, 3.8 + 0.12 * len(models), dpi)
    ax_c, ax_a = fig.subplots(1, 2, sharex=True)
    ev = events[(events["method"] == method) & events["model"].isin(models)]
    for j, model in enumerate(models):
        s = glob[glob["model"] == model].sort_values("epoch")
        style = {
            "color": f"C{j % 10}",
            "marker": "o",
            "markersize": 4,
            "linestyle": "-" if j < 10 else "--",
        }
        counts = short.reindex([(model, e) for e in s["epoch"]])
        every = (counts["short"] >= counts["k"]).to_numpy()
        cs = s["cscore"].to_numpy(dtype=float).copy()
        cs[every] = np.nan
        label = model
        if counts["k"].notna().any():
            last = counts.iloc[-1]
            label += f" ({last['short']:g}/{last['k']:g} classes < {min_gold} gold)"
        ax_c.plot(s["epoch"], cs, label=label, **style)
        ax_a.plot(s["epoch"], s["auc"], **style)
        boundary = phase_boundary(s)
        if boundary is not None:
            for ax in (ax_c, ax_a):
                ax.axvline(boundary, color=style["color"], linestyle=":", linewidth=1)
        hits = ev[ev["model"] == model].groupby("epoch").size()
        for epoch, count in hits.items():
            y = s.loc[s["epoch"] == epoch, "cscore"].where(~every[s["epoch"] == epoch])
            if len(y) and np.isfinite(float(y.iloc[0])):
                ax_c.scatter([epoch], [float(y.iloc[0])], marker="x", s=60, color="red", zorder=4)
                ax_c.annotate(
                    str(count),
                    (epoch, float(y.iloc[0])),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                    color="red",
                )
    ax_c.set(xlabel="epoch", ylabel="global C-Score", title=f"C-Score ({method})")
    ax_a.set(xlabel="epoch", ylabel="AUC (global = macro over classes)", title="AUC")
    for ax in (ax_c, ax_a):
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="outside right center", fontsize=7, title="model", title_fontsize=8)
    caption = (
        f"{family}: C-Score and AUC trajectories of {method} over checkpoints; red x = "
        f"checkpoint with dissociation events (count beside; {len(ev)} in all). Legend: "
        f"classes with a gold list of fewer than {min_gold} images at the model's last "
        "checkpoint (paper 004 counts their C-Score as 0); a checkpoint where every class "
        "has fewer is not drawn (uninformative)."
    )
    return save(fig, out_dir, f"trajectory_{family}_{method.replace('+', 'p')}", caption)
