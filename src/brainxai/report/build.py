"""Assemble the study report: read the stages (``sources``), compute tables and figures,
the threats to validity, render one self-contained HTML file.

:func:`build_report` is the entry point; each ``_section_*`` builds one section from one
stage's record and never raises for a stage that did not run (it says so instead).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from brainxai.classify3d.results import run_summary
from brainxai.evaluation.aggregate import flags
from brainxai.evaluation.fractions import effective_percent
from brainxai.evaluation.results_md import AT_CHANCE, BOTH_AT_CHANCE
from brainxai.finetune.config import FinetuneConfig
from brainxai.labels import DIAGNOSES_3D, kaggle_classes
from brainxai.pseudolabel.provenance import is_vlm, proposer_label, vlm_answers
from brainxai.report import figures as F
from brainxai.report import findings as FD
from brainxai.report import gallery as G
from brainxai.report import tables as T
from brainxai.report.config import ReportConfig
from brainxai.report.render import (
    Section,
    figure,
    items,
    render_html,
    status_table,
    statuses,
    table,
    text,
    threat,
    write_html,
)
from brainxai.report.sources import (
    StageData,
    StudyLayout,
    load_study,
    read_heatmap_info,
    target_sources,
)
from brainxai.report.validity import threats
from brainxai.targets import INFO, NOT_RUN, PASS, STATUSES, TargetsConfig, evaluate, ssl_knn
from brainxai.targets import table as targets_table
from brainxai.xai.trajectory import TrackingConfig, dissociations

HTML_NAME = "index.html"


@dataclass(frozen=True)
class ReportResult:
    html: Path
    figures: list[Path]
    sections: dict[str, bool]  # section id -> ran
    seconds: float
    n_inputs: int
    errors: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "html_bytes": self.html.stat().st_size,
            "figures": [str(f) for f in self.figures],
            "sections": self.sections,
            "seconds": round(self.seconds, 2),
            "inputs": self.n_inputs,
            "errors": self.errors,
        }


class _Ctx:
    def __init__(self, layout: StudyLayout, cfg: ReportConfig, fig_dir: Path, params: Mapping):
        self.layout, self.cfg, self.fig_dir, self.params = layout, cfg, fig_dir, params
        self.figures: list[F.Figure] = []
        self.key: list[dict[str, str]] = []
        self.errors: list[str] = []
        self.targets = TargetsConfig.from_dict(params.get("targets"))
        self.tracking = TrackingConfig.from_dict((params.get("xai") or {}).get("tracking"))
        #: init -> why its fine-tuning results are no evidence (its SSL pretraining)
        self.uninformative: dict[str, str] = {}

    def note(self, quantity: str, value: Any, section: str) -> None:
        """A headline number for the "Key results" table (linked to its section)."""
        self.key.append({"result": quantity, "value": str(value), "section": section})

    def keep(self, fig: F.Figure | None) -> F.Figure | None:
        if fig is not None:
            self.figures.append(fig)
        return fig


def _not_run(sid: str, title: str, data: StageData) -> Section:
    return Section(sid, title, ran=False, missing=data.missing)


# --------------------------------------------------------------------------------- sections


def _section_data(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("data-card", "Data card (ingest)")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    card = d.doc("datacard")
    tot = card.get("totals", {})
    ctx.note(
        "files found = ingested + quarantined",
        f"{tot.get('found')} = {tot.get('ingested')} + {tot.get('quarantined')}",
        sec.id,
    )
    ctx.note("patients", card.get("n_subjects"), sec.id)
    grouping = card.get("subject_grouping") or {}
    if grouping.get("banner"):  # images without patient ids: the policy, first thing shown
        policy = grouping.get("policy")
        ctx.note("images without patient ids (policy)",
                 f"{grouping.get('images_without_ids')} ({policy})", sec.id)  # fmt: skip
        sec.add(
            threat(
                "Patient ids unknown",
                "caution" if policy == "group" else "problem",
                str(grouping["banner"]),
                "Split by inferred patients (ingest.config.subject_grouping): test scores can be "
                "optimistic where one patient's images reach both sides; the table below "
                "compares each test image's nearest training image with its nearest test image.",
            )
        )
    holds = "holds" if tot.get("invariant_holds") else "DOES NOT HOLD"
    sec.add(
        text(
            f"Found {tot.get('found')} files = ingested {tot.get('ingested')} + quarantined "
            f"{tot.get('quarantined')} ({holds}); {tot.get('ignored', 0)} non-image file(s) "
            f"ignored; {card.get('n_subjects')} patients from "
            f"{', '.join(card.get('datasets', []))}."
        )
    )
    if card.get("warnings"):
        sec.add(items([str(w) for w in card["warnings"]], "Warnings of the data card:"))
    optimism = [
        {"dataset": ds, "images without ids": o.get("images_without_ids"),
         "test→train NN (median)": o.get("test_to_train", {}).get("median"),
         "within-test NN (median)": o.get("within_test", {}).get("median"),
         "median gap": o.get("median_gap"),
         "test images nearest to a train image": o.get("test_nearest_in_train"),
         "chance (image-level split)": o.get("chance")}
        for ds, o in sorted((grouping.get("optimism") or {}).items())
        if o.get("images_without_ids")
    ]  # fmt: skip
    if optimism:
        sec.add(
            table(
                pd.DataFrame(optimism),
                "Expected optimism of the split for images without patient ids: a positive "
                "median gap and a nearest-train share well below chance mean patients were "
                "kept apart; a gap near 0 and a share at chance mean leakage.",
            )
        )
    reasons = card.get("quarantine_by_reason", {})
    if reasons:
        q = pd.DataFrame(sorted(reasons.items()), columns=["quarantine reason", "files"])
        sec.add(table(q, "Quarantined files by reason (data/processed/quarantine.parquet)."))
    subj = pd.DataFrame(card.get("subjects_per_group_split", []))
    if len(subj) and {"group", "split", "n"} <= set(subj.columns):
        idx = [c for c in ("dataset", "group") if c in subj]
        wide = subj.pivot_table(index=idx, columns="split", values="n", aggfunc="sum", fill_value=0)
        wide = wide[[c for c in ("train", "val", "test") if c in wide.columns]]
        wide["total"] = wide.sum(axis=1)
        wide.columns.name = None
        sec.add(table(wide.reset_index(), "Patients per group and split (split by patient)."))
    return sec


def _section_standardize(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("standardize", "Standardization QC")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    qc = d.table("standardize_qc")
    ok = qc[qc["status"].astype(str) == "ok"]
    sec.add(
        text(
            f"{len(ok)} of {len(qc)} sessions standardized; "
            f"{int(qc['qc_pass'].fillna(False).sum())} "
            f"pass QC. Brain Dice mean {T.num(ok['brain_dice'].mean())} (min "
            f"{T.num(ok['brain_dice'].min())}); mutual information with the template mean "
            f"{T.num(ok['mutual_information'].mean())}."
        )
    )
    bad = qc[(qc["status"].astype(str) != "ok") | ~qc["qc_pass"].fillna(False).astype(bool)]
    if len(bad):
        cols = [
            c
            for c in ("subject", "session", "status", "reason", "qc_reason", "brain_dice")
            if c in bad
        ]
        sec.add(table(bad[cols], "Sessions quarantined or flagged by QC."))
    fig = ctx.keep(
        F.qc_montages(qc, ctx.layout.root, ctx.cfg.qc_montages, ctx.cfg.dpi, ctx.fig_dir)
    )
    return sec.add(figure(fig, "No QC montage images found."))


def _section_difficulty(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("difficulty", "Data difficulty (supervised baselines)")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    rows, skipped = [], []
    for ds, entry in sorted(d.doc("difficulty").items()):
        if "skipped" in entry:
            skipped.append(f"{ds}: {entry['skipped']}")
        for model, m in sorted(entry.items()):
            if isinstance(m, dict):
                rows.append(
                    {
                        "data set": ds,
                        "model": model,
                        "n test": m.get("n_test"),
                        "chance": T.num(m.get("chance")),
                        "accuracy": T.num(m.get("accuracy")),
                        "macro-F1": T.num(m.get("macro_f1")),
                    }
                )
    if skipped:
        sec.add(items(skipped, "Not scored (the split has no such patients):"))
    return sec.add(
        table(
            pd.DataFrame(rows),
            "Quick baselines on the patient split: is the task neither trivial nor hopeless?",
        )
    )


def _ssl_status(fw: str, doc: Mapping[str, Any], cfg: TargetsConfig) -> str:
    """The SSL table's status cell: pass, or why the framework's init is uninformative."""
    verdict = FD.ssl_verdict(fw, doc, cfg)
    if verdict is None:
        return "label-trained (not judged)"
    if verdict == PASS:
        return PASS
    reason = FD.ssl_reason(fw, doc, cfg)
    return f"uninformative: {reason}" if reason else "not judged (no random-init reference)"


def _section_ssl(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("ssl", "SSL pretraining")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    tcfg = ctx.targets
    hist = {fw: pd.DataFrame(s.get("history", [])) for fw, s in d.docs.items()}
    rows = []
    for fw, s in sorted(d.docs.items()):
        knn, ref, running = ssl_knn(s)
        rows.append({
            "framework": fw,
            "arch": s.get("arch"),
            "epochs": s.get("epochs"),
            "steps": s.get("steps", "—"),
            "images": s.get("n_pretrain_images"),
            "final loss": T.num(s.get("final", {}).get("loss")),
            "final kNN acc.": T.num(knn),
            "running-BN kNN acc.": T.num(running),
            "random-init kNN acc.": T.num(ref),
            "gain over random": FD.signed(knn - ref) if None not in (knn, ref) else "—",
            "status": _ssl_status(fw, s, tcfg),
            "images/s": T.num(s.get("final", {}).get("images_per_s"), 1),
            "device": s.get("device"),
        })  # fmt: skip
    sec.add(
        table(
            pd.DataFrame(rows),
            "Final epoch per framework (kNN monitor on the val split) beside the same backbone "
            "untrained (random-init reference); both with BN statistics re-estimated on clean "
            "pretraining images (the running statistics, gathered on augmented views, in their "
            f"own column). Status: pass = gain >= "
            f"+{tcfg.ssl_knn_gain_min:.2f} after >= {tcfg.ssl_steps_min} steps (params "
            "targets); otherwise the framework's init is uninformative and its fine-tuning "
            "comparisons are no evidence about SSL.",
        )
    )
    refs = {fw: s.get("knn_random_init") for fw, s in d.docs.items()}
    fig = F.ssl_curves(hist, ctx.cfg.dpi, ctx.fig_dir, refs, set(ctx.uninformative))
    return sec.add(figure(ctx.keep(fig), "No per-epoch history was written."))


def _section_finetune(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("finetune", "Label efficiency (fine-tuning)")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    cfg = ctx.cfg
    summary, comp, preds = d.table("summary"), d.table("comparisons"), d.table("predictions")
    comp = comp if comp is not None else pd.DataFrame()
    why = ctx.uninformative
    head = T.finetune_headline(summary, comp, cfg.metric, why)
    sec.add(
        table(
            head,
            f"{cfg.metric}: mean over seeds [patient-bootstrap CI]; * = Holm-significant vs "
            f"the baseline between informative results; {AT_CHANCE}: the CI does not lie "
            "above the chance level (1/K), no result; an init marked (uninformative): its SSL "
            "pretraining did not beat random features (SSL section). Columns: the nominal "
            "label fraction and, where known, the effective one (share of the training "
            "patients and images really labelled, mean over the seeds' subsets; rounding up "
            "per group and one image per class inflate small fractions).",
        )
    )
    sec.add(
        figure(ctx.keep(F.label_efficiency_figure(summary, comp, cfg.metric, ctx.fig_dir, why)))
    )
    if len(comp):
        c = comp[comp["metric"] == cfg.metric]
        cols = [
            "init",
            "protocol",
            "fraction",
            "effective_patients",
            "effective_images",
            "diff",
            "ci_low",
            "ci_high",
            "p_bootstrap",
            "p_bootstrap_holm",
            "p_mcnemar_holm",
            "mde",
            "significant",
        ]
        shown = c[[k for k in cols if k in c]].copy()
        for k in ("effective_patients", "effective_images"):
            if k in shown:
                shown[k] = shown[k].map(effective_percent)
        for k in ("diff", "ci_low", "ci_high", "p_bootstrap", "p_bootstrap_holm",
                  "p_mcnemar_holm", "mde"):  # fmt: skip
            if k in shown:
                shown[k] = shown[k].map(T.num)
        shown["status"] = _comparison_status(c, why)
        sec.add(
            table(
                shown,
                f"Paired comparisons with the baseline "
                f"({c['baseline'].iloc[0] if len(c) else ''}), Holm-adjusted; mde = the "
                "minimal detectable difference at the stage's power. Status: "
                f"{BOTH_AT_CHANCE} or an uninformative init is no finding whatever its p.",
            )
        )
    cond = T.best_condition(summary, cfg.metric, cfg.protocol)
    if len(comp) and "significant" in comp:
        c = comp[comp["metric"] == cfg.metric]
        status = _comparison_status(c, why)
        n_uninf = sum(s.startswith("uninformative") for s in status)
        ctx.note(
            f"fine-tuning comparisons of {cfg.metric} Holm-significant vs the baseline "
            "(informative ones)",
            f"{sum(s == 'significant' for s in status)} of {len(c)}"
            + (f" ({n_uninf} uninformative)" if n_uninf else ""),
            sec.id,
        )
    if cond is not None:
        names = kaggle_classes()
        best = T.condition_summary(summary, cond, cfg.metric)
        ctx.note(f"best {cfg.metric} ({T.condition_label(cond, summary)})", best, sec.id)
        if len(comp) and "baseline" in comp:
            base = {**cond, "init": str(comp["baseline"].iloc[0])}
            ctx.note(
                f"baseline {cfg.metric} ({T.condition_label(base, summary)})",
                T.condition_summary(summary, base, cfg.metric),
                sec.id,
            )
        rows = T.condition_rows(preds, cond)
        if len(rows):
            per = T.per_seed_metrics(rows, names)
            label = T.condition_label(cond, summary)
            sec.add(
                table(
                    T.per_class_prf(per, names),
                    "Per-class precision / recall / F1 of the best init at the largest "
                    f"fraction ({label}; mean over {len(per)} seed(s)).",
                )
            )
            fig = F.confusion_figure(
                T.summed_confusion(per),
                names,
                "confusion_finetune",
                f"Confusion matrix of {label}, summed over seeds (rows = truth; colour = "
                "row fraction).",
                ctx.fig_dir,
            )
            sec.add(figure(ctx.keep(fig)))
        wide = T.per_class_f1_by_init(preds, names, cond["protocol"], cond["fraction"])
        if len(wide):
            sec.add(
                table(
                    wide,
                    "Per-class F1 (mean ± sd over seeds) of every init at the same protocol "
                    "and fraction.",
                )
            )
    return sec


def _comparison_status(comp: pd.DataFrame, why: Mapping[str, str]) -> list[str]:
    """Per comparison: significant | no difference detected | uninformative (...)."""
    informative = flags(comp, "informative", True)
    significant = flags(comp, "significant", False)
    out = []
    for init, inf, sig in zip(comp["init"], informative, significant, strict=True):
        if not inf:
            out.append(BOTH_AT_CHANCE)
        elif init in why:
            out.append(f"uninformative ({init}: {why[init]})")
        else:
            out.append("significant" if sig else "no difference detected")
    return out


def _section_pseudolabel(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("pseudolabel", "Pseudo-labels: 3D tumour masks (paper 003 Tumor-Localizer)")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    tab = d.table("pseudolabels")
    m = d.doc("pseudolabel") or {}
    source = proposer_label(tab)
    ctx.note("pseudo-label masks made by", source, sec.id)
    for col in ("dice_refined", "dice_union"):
        if col in tab:
            ctx.note(
                f"pseudo-label {col.replace('_', ' ')} (mean over sessions)",
                T.num(tab[col].astype(float).mean()),
                sec.id,
            )
    if is_vlm(source):
        vlm = f"{vlm_answers(tab)} readable VLM answers, prompt set {m.get('prompt_set')}"
    elif "VLM" in source:
        vlm = "no readable VLM answer: the masks are empty, no row of this report is a VLM row"
    else:
        vlm = (
            "no VLM was asked: the boxes come from a T1C+ − T1 enhancement detector, not "
            "from paper 003's Qwen3-VL, so no row of this report is a VLM row"
        )
    sec.add(
        text(
            f"Masks made by the {source} ({vlm}); "
            f"{len(tab)} sessions, {int(tab['empty'].sum())} without any box (flag no_box), "
            f"{int((tab['flag'].fillna('').astype(str) != '').sum())} flagged."
        )
    )
    sec.add(
        table(
            T.pseudolabel_table(tab),
            "Mean quality against the generator's truth per class (Dice, HD95 in mm, "
            "detection rate, per-slice box IoU).",
        )
    )
    return sec.add(figure(ctx.keep(F.dice_figure(tab, ctx.cfg.dpi, ctx.fig_dir))))


def _section_classify3d(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("classify3d", "3D classifier (paper 003): ablation rows ①–⑤ and backbones")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    m = d.doc("classify3d") or {}
    if m:
        sec.add(
            text(
                f"{m.get('n_patients')} patients: {m.get('n_cv')} in {m.get('n_folds')}-fold "
                f"cross-validation, {m.get('n_holdout')} held out; "
                f"{m.get('n_excluded', 0)} excluded. Masks made by the "
                f"{m.get('mask_proposer', 'proposer of the pseudo-label stage')}."
            )
        )
    rows = [r for r in m.get("ablation", []) if r.get("macro_f1") is not None]
    if rows:
        top = max(rows, key=lambda r: r["macro_f1"])
        row = top.get("paper_row", "")
        ctx.note(
            "3D ablation: best row macro-F1 (pooled out of fold)",
            f"{T.num(top['macro_f1'])} ({f'paper row {row}, ' if row else ''}{top['run']})",
            sec.id,
        )
    if m.get("ablation"):
        sec.add(
            table(
                _ablation_table(m),
                "Ablation against the base row (pooled out-of-fold macro-F1; paired "
                "bootstrap, McNemar, Wilcoxon over folds; Holm). paper_row: the row of "
                "paper 003 Table 2 (①–⑤: the mask only through MCA on the whole brain, or "
                "without MCA as background removal); extension: this project's rows (the "
                "mask as a 2nd input channel, the true lesion as an upper bound). chance: "
                f"{AT_CHANCE} when the row's pooled macro-F1 CI does not lie above 1/K; a "
                f"row compared with a base both at chance is {BOTH_AT_CHANCE}.",
            )
        )
    for note in m.get("notes", []):
        sec.add(text(str(note)))
    if "backbones" in d.texts:
        sec.add(
            table(
                T.markdown_table(d.texts["backbones"]),
                "Backbone comparison (mean ± sd over folds; held-out ensemble).",
            )
        )
    preds = d.table("predictions")
    cv = preds[preds["set"].astype(str) == "cv"]
    if len(cv):
        names = list(DIAGNOSES_3D)
        summ = run_summary(preds, names)
        sec.add(
            table(
                T.run_per_class(summ, names),
                "Per-class precision / recall / F1, pooled out of fold.",
            )
        )
        for run, s in summ.items():
            stem = run.replace("/", "__")
            fig = F.confusion_figure(
                s["pooled"]["confusion"],
                names,
                f"confusion_3d_{stem}",
                f"Confusion matrix of {run} (pooled out-of-fold predictions).",
                ctx.fig_dir,
            )
            sec.add(figure(ctx.keep(fig), css="half"))
    return sec


def _ablation_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The 3D ablation records with each row's chance verdict and its comparison's status."""
    first = ("paper_row", "variant", "design", "macro_f1", "delta_macro_f1")
    frame = T.records_table(doc["ablation"], first=first)
    runs = doc.get("runs") or {}
    above = [(runs.get(r["run"]) or {}).get("above_chance") for r in doc["ablation"]]
    base = next((a for r, a in zip(doc["ablation"], above, strict=True)
                 if r.get("delta_macro_f1") is None), None)  # fmt: skip
    frame.insert(frame.columns.get_loc("macro_f1") + 1, "chance", [
        "—" if a is None else ("above chance" if a else AT_CHANCE) for a in above
    ])  # fmt: skip
    frame["status"] = [
        "base" if r.get("delta_macro_f1") is None
        else BOTH_AT_CHANCE if a is False and base is False
        else "tested"
        for r, a in zip(doc["ablation"], above, strict=True)
    ]  # fmt: skip
    return frame


def _section_xai(d: StageData, ctx: _Ctx) -> Section:
    sec = Section("xai", "Explanations: CAM galleries and C-Score trajectories")
    if not d.ran:
        return _not_run(sec.id, sec.title, d)
    cfg, lay = ctx.cfg, ctx.layout
    _tau_sweep(sec, d, ctx)
    infos = [read_heatmap_info(p) for p in lay.heatmap_files()]
    method = G.pick_method(infos, cfg.cam_method) or cfg.cam_method
    traj = d.table("trajectory")
    if method not in set(traj["method"]):
        method = sorted(traj["method"].unique())[0]
    ev2d, ev3d = d.table("evalset_finetune"), d.table("evalset_classify3d")
    galleries = (
        ("2D", ev2d, lambda ev: G.gallery_2d(infos, ev, lay.root, method, cfg.gallery_2d_models,
                                             cfg.gallery_2d_images, cfg.overlay_alpha, cfg.dpi,
                                             ctx.fig_dir)),
        ("3D", ev3d, lambda ev: G.gallery_3d(infos, ev, lay.root, method, cfg.gallery_3d_images,
                                             cfg.overlay_alpha, cfg.dpi, ctx.fig_dir)),
    )  # fmt: skip
    for dim, ev, draw in galleries:
        if ev is None:
            sec.add(text(f"No {dim} evaluation set of the xai stage: no {dim} CAM gallery."))
            continue
        try:
            sec.add(figure(ctx.keep(draw(ev)), f"No {dim} heatmaps stored."))
        except (OSError, ValueError, KeyError) as exc:  # e.g. an image file that vanished
            ctx.errors.append(f"xai {dim} gallery: {type(exc).__name__}: {exc}")
            sec.add(text(f"The {dim} CAM gallery could not be drawn: {type(exc).__name__}: {exc}"))
    tcfg = ctx.tracking
    found = dissociations(traj, tcfg)
    ctx.note(
        "AUC–consistency dissociations (gold-list collapse / early warning / masked class)",
        " / ".join(str(len(v)) for v in found.values()),
        sec.id,
    )
    counts = pd.DataFrame(
        [{"dissociation": k.replace("_", " "), "events": len(v)} for k, v in found.items()]
    )
    sec.add(
        table(
            counts,
            "Paper 004's AUC–consistency dissociations found on the trajectory table "
            "(all methods).",
        )
    )
    events = (
        pd.concat(
            [
                v.assign(kind=k, epoch=v["epoch"] if "epoch" in v else v.get("c_drop_epoch"))[
                    ["model", "method", "epoch", "kind"]
                ]
                for k, v in found.items()
                if len(v)
            ],
            ignore_index=True,
        )
        if any(len(v) for v in found.values())
        else pd.DataFrame(columns=["model", "method", "epoch", "kind"])
    )
    for family in sorted(traj["family"].astype(str).unique()):
        sec.add(
            figure(
                ctx.keep(
                    F.trajectory_figure(
                        traj, events, family, method, cfg.dpi, ctx.fig_dir, tcfg.min_gold
                    )
                )
            )
        )
    for kind, v in found.items():
        if len(v):
            shown = v.head(cfg.max_list_rows).copy()
            for c in shown.columns:
                if shown[c].dtype.kind == "f":
                    shown[c] = shown[c].map(T.num)
            sec.add(
                table(shown, f"{kind.replace('_', ' ')}: first {len(shown)} of {len(v)} events.")
            )
    three = T.consistent_correct_faithful(traj, tcfg.min_gold)
    if len(three):
        sec.add(
            table(
                three,
                "Consistent, correct, faithful: per method, means over each model's final "
                "checkpoint of the C-Score (paper 004; a model none of whose classes has a "
                f"gold list of >= {tcfg.min_gold} images is uninformative and left out), the "
                "localisation scores against the "
                "lesion masks and the deletion / insertion AUC of the class probability "
                "(RISE; a faithful map deletes the evidence faster - lower - and inserts it "
                "faster - higher - than the random ranking beside it).",
            )
        )
    rnd = d.table("randomisation")
    if rnd is not None and len(rnd):
        agg = (
            rnd.groupby(["family", "method"])
            .agg(
                checks=("flag", "size"),
                flagged=("flag", "sum"),
                median_similarity=("median_spearman", "median"),
            )
            .reset_index()
        )
        agg["median_similarity"] = agg["median_similarity"].map(T.num)
        sec.add(
            table(
                agg,
                "Model-parameter randomisation check per method (flagged = explanation "
                "barely depends on the weights).",
            )
        )
    return sec


def _tau_sweep(sec: Section, d: StageData, ctx: _Ctx) -> None:
    """The first screen of the XAI section: how the global C-Score depends on τ (paper 004's
    gold-list threshold), with and without the classes whose gold list is empty or holds a
    single image — with many classes a high τ empties gold lists and Eq. 6 counts them 0."""
    tau = TrackingConfig.from_dict(ctx.params.get("xai", {}).get("tracking")).tau
    sens = d.table("sensitivity")
    sweep = T.tau_sweep_table(sens, tau) if sens is not None and len(sens) else pd.DataFrame()
    if sweep.empty:
        sec.add(text("No τ sweep (reports/xai/sensitivity.csv) in this study."))
        return
    column = next((c for c in sweep.columns if c.endswith("(default)")), None)
    if column is not None:
        first = sweep.iloc[0]
        ctx.note(
            f"global C-Score at τ = {tau:g}, {first['family']} / {first['method']} "
            "(paper 004 | without empty/singleton-gold classes | classes with < 2 gold images)",
            first[column],
            sec.id,
        )
    sec.add(
        table(
            sweep,
            "τ sweep of the global C-Score at each model's final checkpoint (means over the "
            "family's models). Each cell: C | C* | e/K — C is paper 004's global score (Eq. "
            "6; a class with an empty or single-image gold list counts as C_k = 0 with its "
            "n_k), C* the same without those classes (this project's addition; — when no "
            "class has a gold pair), e of the K classes have fewer than 2 gold images. The "
            "paper's τ is the default; the trajectories below use it.",
        )
    )


def _guarded(build: Any, data: StageData, ctx: _Ctx) -> Section:
    """Build a section; an unreadable or inconsistent input gives a section that says what
    failed (the rest of the report still renders)."""
    try:
        return build(data, ctx)
    except Exception as exc:  # reported in the page, never swallowed
        error = f"{type(exc).__name__}: {exc}"[:500]
        ctx.errors.append(f"{data.name}: {error}")
        return Section(data.name, f"{data.name} (could not be built)", ran=False, error=error)


def _guarded_front(build: Any, sid: str, ctx: _Ctx) -> Section:
    """:func:`_guarded` for the sections that read several stages (findings, targets)."""
    try:
        return build(ctx)
    except Exception as exc:  # reported in the page, never swallowed
        error = f"{type(exc).__name__}: {exc}"[:500]
        ctx.errors.append(f"{sid}: {error}")
        return Section(sid, f"{sid} (could not be built)", ran=False, error=error)


def _section_key(ctx: _Ctx, order: list[Section]) -> Section:
    """Key results; ``order``: every section of the page in order (for the numbers)."""
    sec = Section("key-results", "Key results")
    sec.add(
        text("Headline numbers of each stage, with the section that shows where they come from.")
    )
    if not ctx.key:
        return sec.add(text("No stage has results yet."))
    titles = {s.id: f"{i + 1}. {s.title}" for i, s in enumerate(order)}
    key = pd.DataFrame(ctx.key)
    key["section"] = key["section"].map(titles)
    return sec.add(table(key))


#: Topics of the findings, in the order of the first screen.
FINDING_TOPICS = ("fine-tuning", "SSL pretraining", "3D ablation", "explanations")


def _section_findings(stages: Mapping[str, StageData], ctx: _Ctx) -> Section:
    """The first screen: each finding as a sentence computed from the numbers
    (:mod:`brainxai.report.findings`); degenerate results say "uninformative"."""
    sec = Section("findings", "Findings")
    cfg, finetune = ctx.cfg, ctx.params.get("finetune") or {}
    power = float(finetune.get("mde_power") or FinetuneConfig.mde_power)
    ft, c3, xai = stages["finetune"], stages["classify3d"], stages["xai"]
    found = [
        *FD.finetune_findings(ft.table("comparisons") if ft.ran else None, cfg.metric,
                              ctx.uninformative),
        *FD.ssl_findings(stages["pretrain"].docs, ctx.targets),
        *FD.classify3d_findings(c3.doc("classify3d") if c3.ran else None, power,
                                1 - cfg.ci_level),
        *FD.xai_findings(xai.table("trajectory") if xai.ran else None, ctx.tracking.min_gold),
    ]  # fmt: skip
    if not found:
        return Section(sec.id, sec.title, ran=False, missing=[
            f"{ctx.layout.finetune_reports}/comparisons.csv",
            f"{ctx.layout.ssl_dir}/<framework>/summary.json",
            f"{ctx.layout.reports}/metrics/classify3d.json",
            f"{ctx.layout.xai_reports}/trajectory.parquet",
        ])  # fmt: skip
    counts = {st: sum(f.status == st for f in found) for st in FD.STATUSES}
    sec.add(
        text(
            "What the study found, each sentence computed from the numbers: a difference "
            "with its CI and Holm-adjusted p, or 'no difference detected' with the minimal "
            "detectable difference (MDE) of the test. Uninformative: a degenerate result - "
            "models at chance, an SSL run that did not beat random features, a C-Score over "
            f"gold lists of fewer than {ctx.tracking.min_gold} images - never a finding. "
            + ", ".join(f"{n} {st}" for st, n in counts.items() if n)
            + "."
        )
    )
    for topic in FINDING_TOPICS:
        rows = [f for f in found if f.topic == topic]
        if rows:
            sec.add(statuses(FD.as_rows(rows), f"{topic}:"))
    return sec


def _measured(v: Any) -> str:
    """A measured value as :func:`brainxai.targets.render` writes it (``31``, ``0.48``)."""
    s = T.num(v)
    return s.rstrip("0").rstrip(".") if "." in s else s


def _section_methods(ctx: _Ctx) -> Section:
    """Do the methods work? Every target of the study (:func:`brainxai.targets.evaluate`):
    power, training, SSL against random features, the 3D classifier, the CAM grid and gold
    lists, the planted controls and, beside them, the model-parameter randomisation check."""
    sec = Section("methods", "Do the methods work?")
    found = evaluate(target_sources(ctx.layout, ctx.params), ctx.targets)
    frame = targets_table(found)
    frame["measured"] = frame["measured"].map(_measured)
    counts = {st: sum(t.status == st for t in found) for st in STATUSES}
    judged = [t for t in found if t.status not in (NOT_RUN, INFO)]
    ctx.note(
        "targets (pass / fail / uninformative / not run)",
        " / ".join(str(counts[st]) for st in STATUSES if st != INFO),
        sec.id,
    )
    if all(t.status == NOT_RUN for t in found):
        sec.ran, sec.missing = False, sorted({t.note for t in found if t.note})
    sec.add(
        text(
            "Before any finding: does the pipeline work on this study? Each target measured "
            "from the stages' outputs against its threshold (params.yaml targets; the planted "
            "controls' in finetune.controls; the randomisation check's in xai.randomisation). "
            "pass / fail: measured, target met or missed (never lowered); uninformative: "
            "measured, but the number cannot carry the claim; not run: the stage's output is "
            f"missing; info: no threshold. {len(found)} checks, {len(judged)} judged: "
            + ", ".join(f"{n} {st}" for st, n in counts.items() if n)
            + "."
        )
    )
    return sec.add(
        status_table(
            frame,
            "Targets of issue 15 (items 1-3), the planted controls (item 4: positive, "
            "shortcut, random labels; for every compared method (finetune.controls."
            "compare_methods) the same positive and shortcut criteria, and whether the "
            "shortcut model's relevance lies outside the head more than the lesion model's; "
            "reports/finetune/controls/controls.csv) and the "
            "model-parameter randomisation check of the xai stage (reports/xai/"
            "randomisation.csv) beside them.",
        )
    )


def _section_validity(stages: Mapping[str, StageData], ctx: _Ctx, profile: str) -> Section:
    sec = Section("validity", "Threats to validity")
    found, sizes = threats(stages, profile, ctx.cfg.metric, ctx.cfg.ci_level)
    for t in found:
        sec.add(threat(t.title, t.status, t.finding, t.meaning))
    flagged = [t.title for t in found if t.status in ("caution", "problem")]
    ctx.note("threats to validity needing caution", f"{len(flagged)}: {', '.join(flagged)}", sec.id)
    if len(sizes):
        sec.add(table(sizes, "Test-set size per stage and the resolution it allows."))
    return sec


# -------------------------------------------------------------------------------- the report


def build_report(
    root: str | Path, params: Mapping[str, Any], out: str | Path | None = None
) -> ReportResult:
    """Write ``<out>/index.html`` (default ``report.out_dir``) and ``<out>/figures/*.png``."""
    t0 = time.perf_counter()
    cfg = ReportConfig.from_dict(params.get("report"))
    layout = StudyLayout.from_params(root, params)
    out_dir = Path(out) if out else layout.root / cfg.out_dir
    fig_dir = out_dir / "figures"
    if fig_dir.exists():  # figures of an older run must not linger
        for f in fig_dir.glob("*"):
            if f.is_file():
                f.unlink()
    ctx = _Ctx(layout, cfg, fig_dir, params)
    stages = load_study(layout)
    profile = str(params.get("profile", ""))
    builders = [
        (_section_data, stages["ingest"]),
        (_section_standardize, stages["standardize"]),
        (_section_difficulty, stages["difficulty"]),
        (_section_ssl, stages["pretrain"]),
        (_section_finetune, stages["finetune"]),
        (_section_pseudolabel, stages["pseudolabel"]),
        (_section_classify3d, stages["classify3d"]),
        (_section_xai, stages["xai"]),
    ]
    ctx.uninformative = FD.uninformative_inits(stages["pretrain"].docs, ctx.targets)
    methods = _guarded_front(_section_methods, "methods", ctx)
    sections = [_guarded(build, data, ctx) for build, data in builders]
    sections.append(_section_validity(stages, ctx, profile))
    findings = _guarded_front(lambda c: _section_findings(stages, c), "findings", ctx)
    key_slot = Section("key-results", "Key results")  # numbered before it is built
    order = [findings, key_slot, methods, *sections]
    sections = [findings, _section_key(ctx, order), methods, *sections]
    n_inputs = len(layout.input_files())
    subtitle = (
        f"Study root {layout.root.name} · profile {profile} · "
        f"{sum(s.ran for s in sections)} of {len(sections)} sections with data"
    )
    meta = {"profile": profile, "n_inputs": n_inputs, "figure_dir": "figures"}
    html = render_html(cfg.title, subtitle, sections, meta)
    path = write_html(out_dir / HTML_NAME, html)
    return ReportResult(
        html=path,
        figures=[f.path for f in ctx.figures],
        sections={s.id: s.ran for s in sections},
        seconds=time.perf_counter() - t0,
        n_inputs=n_inputs,
        errors=ctx.errors,
    )
