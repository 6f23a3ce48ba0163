"""Does the study show anything? Each target of the demo study, measured from its outputs.

A study that runs is not a study whose numbers mean something (issue 15): a classifier at
chance, an SSL run that did not beat random features, an empty gold list or a comparison
without power answer none of its questions. :func:`evaluate` reads the study's own
outputs and returns one :class:`Target` per check, each with the measured value, the
threshold from ``params.targets`` (or the controls' thresholds in
``params.finetune.controls``) and a status:

* ``pass`` / ``fail``: measured, and the target met or missed (a miss is reported with its
  number, never hidden);
* ``uninformative``: measured, but the number cannot carry the claim (e.g. a C-Score over
  fewer than two gold images);
* ``not run``: the stage's output is missing;
* ``info``: reported beside the targets without a threshold (e.g. each comparison's
  minimal detectable difference).

Sources: the split manifest (test-split size), ``reports/finetune/summary.csv`` and
``comparisons.csv`` (random-init fine-tuning, minimal detectable differences),
``reports/metrics/pretrain_<framework>.json`` (kNN top-1 vs the random-init reference),
``reports/metrics/classify3d.json`` (oracle and base rows), ``reports/metrics/xai.json``
and ``reports/xai/trajectory.parquet`` (CAM grid, gold lists at the last tracked
checkpoint), ``reports/finetune/controls/controls.csv`` (planted controls) and, beside
them, ``reports/xai/randomisation.csv`` (the model-parameter randomisation check).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainxai.config import MappingConfig

PASS, FAIL, UNINFORMATIVE, NOT_RUN, INFO = "pass", "fail", "uninformative", "not run", "info"
STATUSES = (PASS, FAIL, UNINFORMATIVE, NOT_RUN, INFO)
#: Item of the controls' rows that apply their criteria to a further attribution method
#: (``finetune.controls.method_rows``: column ``comparison`` of controls.csv): listed and
#: counted apart from the issue's own targets.
COMPARED = "4 methods compared"


@dataclass(frozen=True)
class TargetsConfig(MappingConfig):
    """Thresholds of the study's targets (``params.targets``; issue 15 items 1-3)."""

    #: Power: the 2D test split (patients, images).
    test_patients_min: int = 30
    test_images_min: int = 250
    #: Random-init full fine-tuning at the largest label fraction: test macro-F1.
    random_finetune_macro_f1_min: float = 0.50
    #: Each SSL framework: val kNN top-1 minus the random-init reference, and its steps.
    ssl_knn_gain_min: float = 0.10
    ssl_steps_min: int = 200
    #: SSL frameworks judged (``pretrain.frameworks`` minus these: label-trained).
    ssl_exclude: tuple[str, ...] = ("supervised",)
    #: 3D classifier: the oracle-mask row's CV macro-F1; the base row must be above chance.
    classify3d_oracle_row: str = "oracle"
    classify3d_base_row: str = "base"
    classify3d_oracle_macro_f1_min: float = 0.70
    #: Explanations: CAM grid per spatial axis (2D, 3D), and at the last tracked
    #: checkpoint of each fully-labelled 2D run, classes with a gold list of >= gold_min.
    cam_grid_2d_min: int = 8
    cam_grid_3d_min: int = 4
    gold_classes_min: int = 12
    gold_min: int = 2
    #: Family / protocol whose runs carry the gold-list target.
    gold_family: str = "finetune"
    gold_protocol: str = "finetune"


@dataclass(frozen=True)
class Target:
    """One check: what was measured, against what, and whether it holds."""

    item: str
    check: str
    measured: float | None
    target: str
    status: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _status(ok: bool) -> str:
    return PASS if ok else FAIL


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() and path.stat().st_size else None


# ---------------------------------------------------------------------------- item 1


def power_targets(
    manifest: pd.DataFrame | None, comparisons: pd.DataFrame | None, cfg: TargetsConfig
) -> list[Target]:
    """Test-split size of the 2D set; each comparison's MDE as ``info``."""
    item = "1 power"
    if manifest is None:
        return [Target(item, "2D test split", None, "-", NOT_RUN, "no manifest")]
    test = manifest[(manifest["ndim"] == 2) & (manifest["split"] == "test")]
    patients, images = int(test["subject"].nunique()), len(test)
    out = [
        Target(item, "2D test patients", patients, f">= {cfg.test_patients_min}",
               _status(patients >= cfg.test_patients_min)),
        Target(item, "2D test images", images, f">= {cfg.test_images_min}",
               _status(images >= cfg.test_images_min)),
    ]  # fmt: skip
    if comparisons is None or comparisons.empty or "mde" not in comparisons:
        out.append(Target(item, "minimal detectable difference", None, "-", NOT_RUN,
                          "no comparisons (finetune_eval)"))  # fmt: skip
        return out
    for proto, g in comparisons.groupby("protocol", sort=True):
        mde = pd.to_numeric(g["mde"], errors="coerce")
        power = _num(g["power"].iloc[0]) if "power" in g else None
        pct = f"{power:.0%}" if power is not None else "?"
        out.append(Target(
            item, f"MDE in {g['metric'].iloc[0]}, {proto} (median over {len(g)} comparisons)",
            _num(mde.median()), "-", INFO,
            f"a true difference smaller than this is detected with < {pct} power "
            f"(range {mde.min():.3f}-{mde.max():.3f}; Holm family size "
            f"{int(g['holm_family_size'].max())})",
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------------------- item 2


def finetune_target(summary: pd.DataFrame | None, cfg: TargetsConfig) -> list[Target]:
    """Random-init full fine-tuning at the largest fraction: test macro-F1 >= the target."""
    item, check = "2 training learns", "random init, full fine-tuning, all labels: test macro-F1"
    want = f">= {cfg.random_finetune_macro_f1_min}"
    if summary is None or summary.empty:
        return [Target(item, check, None, want, NOT_RUN, "no reports/finetune/summary.csv")]
    rows = summary[(summary["init"] == "random") & (summary["protocol"] == "finetune")
                   & (summary["metric"] == "macro_f1")]  # fmt: skip
    if rows.empty:
        return [Target(item, check, None, want, NOT_RUN, "no random-init fine-tuning row")]
    r = rows.loc[rows["fraction"].astype(float).idxmax()]
    f1 = float(r["mean"])
    note = f"fraction {float(r['fraction']):g}, 95 % CI {r['ci_low']:.3f}-{r['ci_high']:.3f}"
    return [Target(item, check, f1, want, _status(f1 >= cfg.random_finetune_macro_f1_min),
                   note)]  # fmt: skip


def ssl_knn(res: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    """``(judged kNN, random-init reference, running-statistics kNN)`` of one pretraining.

    The judged kNN is the trained backbone's with its BN statistics re-estimated on clean
    pretraining images, the protocol of the reference (``knn_precise_bn``); runs written
    before it was measured fall back to the running statistics (gathered on augmented views).
    """
    running = _num((res.get("final") or {}).get("knn_accuracy"))
    precise = _num(res.get("knn_precise_bn"))
    return (precise if precise is not None else running), _num(res.get("knn_random_init")), running


def ssl_targets(pretrain: Mapping[str, dict[str, Any] | None], cfg: TargetsConfig) -> list[Target]:
    """Per framework: kNN gain over the random-init reference, and hundreds of steps."""
    item, out = "2 SSL learns", []
    for fw, res in sorted(pretrain.items()):
        if fw in cfg.ssl_exclude:
            continue
        check = f"{fw}: val kNN top-1 - random-init kNN"
        want = f">= +{cfg.ssl_knn_gain_min:.2f}"
        if res is None:
            out.append(Target(item, check, None, want, NOT_RUN, "no pretrain metrics"))
            continue
        knn, ref, running = ssl_knn(res)
        steps = int(res.get("steps") or 0)
        if knn is None or ref is None:
            out.append(Target(item, check, None, want, NOT_RUN, "no kNN monitor or reference"))
            continue
        gain = knn - ref
        note = f"kNN {knn:.3f} vs random init {ref:.3f} (BN re-estimated on clean images for both"
        note += f"; running statistics: {running:.3f})" if running is not None else ")"
        note += f"; {steps} steps"
        if steps < cfg.ssl_steps_min:
            out.append(Target(item, check, gain, want, UNINFORMATIVE,
                              note + f" (< {cfg.ssl_steps_min}: not a pretraining)"))  # fmt: skip
            continue
        if gain < cfg.ssl_knn_gain_min:
            note += "; did not beat random features by the target: its init is not evidence"
        out.append(Target(item, check, gain, want, _status(gain >= cfg.ssl_knn_gain_min), note))
    return out or [Target(item, "SSL frameworks", None, "-", NOT_RUN, "none pretrained")]


def classify3d_targets(metrics: dict[str, Any] | None, cfg: TargetsConfig) -> list[Target]:
    """Oracle-mask row >= the target (CV macro-F1); base row above chance with its CI."""
    item = "2 3D classifier learns"
    oracle_check = f"{cfg.classify3d_oracle_row} row: CV macro-F1 (fold mean)"
    base_check = f"{cfg.classify3d_base_row} row: pooled out-of-fold macro-F1 CI above chance"
    want = f">= {cfg.classify3d_oracle_macro_f1_min}"
    if metrics is None:
        return [
            Target(item, oracle_check, None, want, NOT_RUN, "no classify3d metrics"),
            Target(item, base_check, None, "> chance", NOT_RUN, "no classify3d metrics"),
        ]
    runs = metrics.get("runs", {})

    def row(variant: str) -> dict[str, Any] | None:
        return next((r for name, r in runs.items() if name.split("/")[0] == variant), None)

    out = []
    o = row(cfg.classify3d_oracle_row)
    if o is None:
        out.append(Target(item, oracle_check, None, want, NOT_RUN, "row not in the ablation"))
    else:
        f1 = float(o["mean"]["macro_f1"])
        out.append(Target(item, oracle_check, f1, want,
                          _status(f1 >= cfg.classify3d_oracle_macro_f1_min),
                          f"sd over folds {o['sd']['macro_f1']:.3f}"))  # fmt: skip
    b = row(cfg.classify3d_base_row)
    ci = (b or {}).get("pooled_macro_f1_ci")
    if b is None or not ci:
        out.append(Target(item, base_check, None, "> chance", NOT_RUN,
                          "row or its pooled CI missing"))  # fmt: skip
    else:
        chance = float(b["chance_macro_f1"])
        out.append(Target(item, base_check, _num(ci["point"]), f"CI low > {chance:.3f}",
                          _status(bool(b["above_chance"])),
                          f"95 % CI {ci['low']:.3f}-{ci['high']:.3f}"))  # fmt: skip
    return out


# ---------------------------------------------------------------------------- item 3


def xai_targets(
    xai: dict[str, Any] | None, trajectory: pd.DataFrame | None, cfg: TargetsConfig
) -> list[Target]:
    """CAM grid per family; gold lists at the last tracked checkpoint of full-label runs."""
    item = "3 explanations can be judged"
    if xai is None:
        return [Target(item, "explanations", None, "-", NOT_RUN, "no xai metrics")]
    out = []
    for fam, rep in sorted((xai.get("families") or {}).items()):
        grid = rep.get("cam_grid") if isinstance(rep, dict) else None
        need = cfg.cam_grid_3d_min if grid is not None and len(grid) == 3 else cfg.cam_grid_2d_min
        check = f"{fam}: CAM grid (coarsest explained checkpoint)"
        if not grid:
            out.append(Target(item, check, None, f">= {need} per axis", NOT_RUN,
                              f"family {rep.get('status', 'not explained')}"
                              if isinstance(rep, dict) else "not explained"))  # fmt: skip
            continue
        out.append(Target(item, check, float(min(grid)), f">= {need} per axis",
                          _status(min(grid) >= need), " x ".join(map(str, grid))))  # fmt: skip
    check = (f"classes with a gold list of >= {cfg.gold_min} images, last tracked checkpoint "
             "(worst full-label run)")  # fmt: skip
    want = f">= {cfg.gold_classes_min}"
    if trajectory is None or trajectory.empty:
        out.append(Target(item, check, None, want, NOT_RUN, "no trajectory"))
        return out
    t = trajectory[(trajectory["family"] == cfg.gold_family) & (trajectory["klass"] >= 0)]
    if "protocol" in t:
        t = t[t["protocol"] == cfg.gold_protocol]
    if t.empty:
        out.append(Target(item, check, None, want, NOT_RUN, "no tracked run"))
        return out
    full = t[t["fraction"].astype(float) == t["fraction"].astype(float).max()]
    last = full[full["epoch"] == full.groupby("model")["epoch"].transform("max")]
    # gold lists depend on the model's probabilities only: the same for every method
    per_run = (last.drop_duplicates(["model", "klass"])
               .assign(ok=lambda d: d["gold_size"] >= cfg.gold_min)
               .groupby("model")["ok"].sum())  # fmt: skip
    worst = per_run.idxmin()
    n_classes = int(last["klass"].nunique())
    out.append(Target(item, check, float(per_run.min()), want,
                      _status(per_run.min() >= cfg.gold_classes_min),
                      f"{worst}: {int(per_run.min())} of {n_classes}; over {len(per_run)} "
                      f"runs {int(per_run.min())}-{int(per_run.max())}"))  # fmt: skip
    return out


# ---------------------------------------------------------------------------- item 4


def control_targets(controls: pd.DataFrame | None) -> list[Target]:
    """The planted controls' verdicts (:func:`brainxai.finetune.controls.verdicts`)."""
    item = "4 planted controls"
    if controls is None or controls.empty:
        return [Target(item, "planted controls", None, "-", NOT_RUN,
                       "no reports/finetune/controls/controls.csv")]  # fmt: skip

    compared = (controls["comparison"] if "comparison" in controls
                else pd.Series(False, index=controls.index)).fillna(False).astype(bool)  # fmt: skip
    return [
        Target(COMPARED if c else item, f"{r.control}: {r.check}", _num(r.measured),
               str(r.target), str(r.status), "" if pd.isna(r.note) else str(r.note))
        for r, c in zip(controls.itertuples(), compared, strict=True)
    ]  # fmt: skip


def randomisation_targets(rnd: pd.DataFrame | None) -> list[Target]:
    """The xai stage's model-parameter randomisation check, per (family, method): pass when
    no run's explanation survives randomising the weights (median similarity of the trained
    and the randomised model's maps at or below the stage's threshold), fail otherwise."""
    item = "4 planted controls"
    if rnd is None or rnd.empty:
        return [Target(item, "model-parameter randomisation", None, "-", NOT_RUN,
                       "no reports/xai/randomisation.csv")]  # fmt: skip
    out = []
    for (fam, method), g in rnd.groupby(["family", "method"], sort=True):
        col = "median_soft_iou" if "similarity" in g and (g["similarity"] == "soft_iou").all() \
            else "median_spearman"  # fmt: skip
        measure = col.removeprefix("median_")
        threshold = _num(g["threshold"].iloc[0]) if "threshold" in g else None
        flagged = int(g["flag"].astype(bool).sum())
        out.append(Target(
            item, f"model-parameter randomisation: {fam} / {method}",
            _num(pd.to_numeric(g[col], errors="coerce").max()),
            f"<= {threshold:g} ({measure})" if threshold is not None else "not flagged",
            _status(flagged == 0),
            f"{flagged} of {len(g)} runs flagged: their maps barely depend on the weights; "
            f"measured: the largest median {measure} over runs",
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------------------- all


@dataclass(frozen=True)
class Sources:
    """Where :func:`evaluate` reads (study-root-relative names resolved by the caller)."""

    manifest: Path
    finetune_reports: Path
    metrics: Path
    xai_reports: Path
    frameworks: Sequence[str]


def evaluate(src: Sources, cfg: TargetsConfig) -> list[Target]:
    """Every target, in issue order (missing outputs give ``not run`` rows)."""
    manifest = pd.read_parquet(src.manifest) if src.manifest.is_file() else None
    traj_path = src.xai_reports / "trajectory.parquet"
    trajectory = pd.read_parquet(traj_path) if traj_path.is_file() else None
    pretrain = {fw: _read_json(src.metrics / f"pretrain_{fw}.json") for fw in src.frameworks}
    return [
        *power_targets(manifest, _read_csv(src.finetune_reports / "comparisons.csv"), cfg),
        *finetune_target(_read_csv(src.finetune_reports / "summary.csv"), cfg),
        *ssl_targets(pretrain, cfg),
        *classify3d_targets(_read_json(src.metrics / "classify3d.json"), cfg),
        *xai_targets(_read_json(src.metrics / "xai.json"), trajectory, cfg),
        *control_targets(_read_csv(src.finetune_reports / "controls" / "controls.csv")),
        *randomisation_targets(_read_csv(src.xai_reports / "randomisation.csv")),
    ]


def table(targets: Sequence[Target]) -> pd.DataFrame:
    return pd.DataFrame(
        [t.to_dict() for t in targets],
        columns=["item", "check", "measured", "target", "status", "note"],
    )


def render(targets: Sequence[Target]) -> str:
    """Plain-text table for the terminal: item, check, measured, target, status."""
    if not targets:
        return "no targets"
    rows = [(t.item, t.check, "-" if t.measured is None else f"{t.measured:.3f}".rstrip("0")
             .rstrip("."), t.target, t.status.upper(), t.note) for t in targets]  # fmt: skip
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{'item':<{w[0]}}  {'check':<{w[1]}}  {'measured':>{max(w[2], 8)}}  "
             f"{'target':<{w[3]}}  status"]  # fmt: skip
    for r in rows:
        lines.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{max(w[2], 8)}}  {r[3]:<{w[3]}}  "
                     f"{r[4]}" + (f"  ({r[5]})" if r[5] else ""))  # fmt: skip

    def counts(ts: Sequence[Target]) -> str:
        return ", ".join(f"{n} {s}" for s in STATUSES if (n := sum(t.status == s for t in ts)))

    line = counts(targets)
    compared = [t for t in targets if t.item == COMPARED]
    if compared:
        line += (f" (of these, {len(compared)} rows apply the controls' criteria to further "
                 f"methods: {counts(compared)})")  # fmt: skip
    lines.append(line)
    return "\n".join(lines)


__all__ = [
    "COMPARED",
    "STATUSES",
    "Sources",
    "Target",
    "TargetsConfig",
    "classify3d_targets",
    "control_targets",
    "evaluate",
    "finetune_target",
    "power_targets",
    "randomisation_targets",
    "render",
    "ssl_knn",
    "ssl_targets",
    "table",
    "xai_targets",
]
