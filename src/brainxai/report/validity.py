"""Threats to validity, computed from the study's own outputs (not boilerplate).

Each :class:`Threat` has a status (``ok`` / ``caution`` / ``problem`` / ``not run``), a
one-paragraph finding with the numbers, and what it means for the claims:

* patient leakage: :func:`brainxai.splits.check_leakage` re-run on the manifest, and the
  fine-tuning stage's train-test near-duplicate similarity;
* near duplicates: groups, label-mixing groups, groups spanning splits;
* test-set size per stage and what it does to the CIs: the 95 % Wald half-width of a
  proportion at 0.5, ``z·sqrt(0.25/n)``, next to the observed bootstrap CI widths;
* multiple comparisons: Holm family sizes and whether ``n_boot`` lets Holm reject at all
  (``n_boot ≥ 2m/α``, :func:`brainxai.evaluation.aggregate.min_n_boot`);
* explanation sanity: methods flagged by the model-parameter randomisation check;
* synthetic data and the profile (smoke vs full).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from brainxai.evaluation.aggregate import flags, min_n_boot
from brainxai.report.sources import StageData
from brainxai.report.tables import num
from brainxai.splits import LeakageError, check_leakage


@dataclass(frozen=True)
class Threat:
    title: str
    status: str
    finding: str
    meaning: str


def wald_half_width(n: int, level: float) -> float:
    """Half-width of the ``level`` Wald CI of a proportion at p = 0.5 with ``n`` units."""
    return float(norm.ppf(0.5 + level / 2) * np.sqrt(0.25 / n)) if n > 0 else float("nan")


def leakage(stages: Mapping[str, StageData]) -> Threat:
    ingest, ft = stages["ingest"], stages["finetune"]
    manifest = ingest.table("manifest")
    if manifest is None:
        return Threat("Patient leakage", "not run", "No manifest to check.", "")
    try:
        check_leakage(manifest)
        status, found = (
            "ok",
            (
                f"check_leakage on the manifest ({len(manifest)} rows, "
                f"{manifest['subject'].nunique()} patients): no patient and no duplicate group in "
                "two splits or two folds."
            ),
        )
    except LeakageError as exc:
        status, found = "problem", f"check_leakage FAILED: {exc}"
    sim = (ft.doc("finetune") or {}).get("leakage", {})
    if sim:
        found += (
            f" Fine-tuning checked {sim.get('n_test_checked')} test against "
            f"{sim.get('n_train_checked')} training images before training: largest "
            f"train-test image similarity {num(sim.get('max_train_test_similarity'))}."
        )
    meaning = (
        "Splits are by patient and checked, not assumed; every later stage reads these splits "
        "(SSL pretraining sees training patients only, checked by check_subset_leakage)."
    )
    return Threat("Patient leakage", status, found, meaning)


def near_duplicates(stages: Mapping[str, StageData]) -> Threat:
    card = stages["ingest"].doc("datacard")
    manifest = stages["ingest"].table("manifest")
    if card is None:
        return Threat("Near-duplicate images", "not run", "No data card.", "")
    nd = card.get("near_duplicates", {})
    spanning = 0
    if manifest is not None and "dup_group" in manifest:
        g = manifest[manifest["dup_group"].fillna("").astype(str) != ""]
        spanning = int((g.groupby("dup_group")["split"].nunique() > 1).sum())
    mixed = int(nd.get("mixed_label_groups", 0))
    status = "problem" if spanning else ("caution" if mixed else "ok")
    found = (
        f"{nd.get('n_groups', 0)} near-duplicate groups ({nd.get('n_images', 0)} images, "
        f"largest {nd.get('largest', 0)}); {mixed} mix different labels; {spanning} span "
        "more than one split."
    )
    meaning = (
        "Duplicates are kept in one split, so they cannot inflate test scores; groups that mix "
        "labels (e.g. T1 and T1C+ slices of one patient) mark classes that are hard to tell "
        "apart by construction."
    )
    return Threat("Near-duplicate images", status, found, meaning)


def test_sizes(
    stages: Mapping[str, StageData], metric: str, level: float
) -> tuple[Threat, pd.DataFrame]:
    rows: list[dict[str, Any]] = []
    diff = stages["difficulty"].doc("difficulty") or {}
    for ds, d in sorted(diff.items()):
        if isinstance(d, dict):
            n = max((v.get("n_test", 0) for v in d.values() if isinstance(v, dict)), default=0)
            rows.append({"stage": "difficulty", "test set": ds, "unit": "images", "n": n})
    summ = stages["finetune"].table("summary")
    observed = float("nan")
    if summ is not None and len(summ):
        s = summ[summ["metric"] == metric]
        rows.append(
            {
                "stage": "finetune",
                "test set": "2D test split",
                "unit": "patients",
                "n": int(summ["n_patients"].max()),
            }
        )
        rows.append(
            {
                "stage": "finetune",
                "test set": "2D test split",
                "unit": "images",
                "n": int(summ["n_images"].max()),
            }
        )
        if len(s):
            observed = float(((s["ci_high"] - s["ci_low"]) / 2).median())
    c3 = stages["classify3d"].doc("classify3d") or {}
    if c3:
        rows.append(
            {
                "stage": "classify3d",
                "test set": "CV (out of fold)",
                "unit": "patients",
                "n": int(c3.get("n_cv", 0)),
            }
        )
        rows.append(
            {
                "stage": "classify3d",
                "test set": "held-out test",
                "unit": "patients",
                "n": int(c3.get("n_holdout", 0)),
            }
        )
    xai = (stages["xai"].doc("xai") or {}).get("families", {})
    for fam, f in sorted(xai.items()):
        rows.append(
            {
                "stage": "xai",
                "test set": f"{fam} evaluation set",
                "unit": "images",
                "n": int(f.get("images_per_checkpoint", 0)),
            }
        )
    table = pd.DataFrame(rows, columns=["stage", "test set", "unit", "n"])
    if table.empty:
        return Threat("Test-set size and CIs", "not run", "No evaluated stage.", ""), table
    table[f"±{100 * level:g} % half-width at p=0.5"] = [
        num(wald_half_width(n, level)) for n in table["n"]
    ]
    smallest = table.loc[table["n"].idxmin()]
    status = "caution" if wald_half_width(int(smallest["n"]), level) > 0.1 else "ok"
    found = (
        f"Smallest test set: {smallest['stage']} {smallest['test set']} with {smallest['n']} "
        f"{smallest['unit']} (a proportion near 0.5 is then known to "
        f"±{num(wald_half_width(int(smallest['n']), level))})."
    )
    if np.isfinite(observed):
        found += (
            f" Median patient-bootstrap CI half-width of fine-tuning {metric}: {num(observed)}."
        )
    meaning = (
        "Differences smaller than these half-widths are not resolved; the bootstrap resamples "
        "patients, so with few test patients its CIs are themselves unstable (coverage is "
        "measured in benchmarks/RESULTS.md)."
    )
    return Threat("Test-set size and CIs", status, found, meaning), table


def multiple_comparisons(stages: Mapping[str, StageData], metric: str) -> Threat:
    comp = stages["finetune"].table("comparisons")
    if comp is None or comp.empty:
        return Threat("Multiple comparisons", "not run", "No fine-tuning comparisons.", "")
    c = comp[comp["metric"] == metric] if metric in set(comp["metric"]) else comp
    m = int(c["holm_family_size"].max())
    alpha = float(c["alpha"].iloc[0])
    n_boot = int(c["n_boot"].min())
    need = min_n_boot(m, alpha)
    raw = int((c["p_bootstrap"] < alpha).sum())
    adj = int(c["significant"].astype(bool).sum())
    found = (
        f"{len(c)} fine-tuning comparisons of {metric} against the baseline; Holm family size "
        f"{m}; {raw} have a raw bootstrap p < {alpha:g}, {adj} stay significant after Holm. "
        f"n_boot = {n_boot} (Holm over {m} tests can reject only with n_boot ≥ {need})."
    )
    uninformative = int((~flags(c, "informative", True)).sum())
    if uninformative:
        found += (
            f" {uninformative} compare two models at chance (uninformative: no finding, "
            "no significance mark, whatever their p)."
        )
    c3 = (stages["classify3d"].doc("classify3d") or {}).get("ablation", [])
    tested = [r for r in c3 if r.get("p_bootstrap") is not None]
    if tested:
        sig = sum(1 for r in tested if (r.get("p_holm") or 1.0) < alpha)
        found += (
            f" 3D ablation: {len(tested)} rows tested against the base, {sig} Holm-significant."
        )
    status = "caution" if n_boot < need else "ok"
    meaning = (
        "Only Holm-adjusted results are marked significant in this report; raw p-values are "
        "shown for completeness and must not be read one at a time."
    )
    return Threat("Multiple comparisons", status, found, meaning)


def explanation_sanity(stages: Mapping[str, StageData]) -> Threat:
    rnd = stages["xai"].table("randomisation")
    if rnd is None or rnd.empty:
        return Threat(
            "Explanation sanity (randomisation)", "not run", "No randomisation check.", ""
        )
    flagged = rnd[rnd["flag"].astype(bool)]
    methods = sorted(flagged["method"].unique())
    found = (
        f"{len(flagged)} of {len(rnd)} (run, method) checks flagged: the heatmap barely changes "
        f"when the model's weights are randomised (median similarity above the threshold)"
        + (f"; methods: {', '.join(methods)}." if methods else ".")
    )
    status = "caution" if len(flagged) else "ok"
    meaning = (
        "A flagged method explains the image more than the model; its C-Score and correctness "
        "trajectories should not be read as evidence about the model."
    )
    return Threat("Explanation sanity (randomisation)", status, found, meaning)


def synthetic_data(stages: Mapping[str, StageData]) -> Threat:
    manifest = stages["ingest"].table("manifest")
    if manifest is None:
        return Threat("Synthetic data", "not run", "No manifest.", "")
    synth = manifest["path"].astype(str).str.startswith("data/raw/synth/")
    patients = manifest["subject"].astype(str)
    n_syn = patients[synth].nunique()
    found = (
        f"{n_syn} of {patients.nunique()} patients ({int(synth.sum())} of {len(manifest)} "
        "images) come from the embedded synthetic cohort (brainxai.synth: MNI152 anatomy "
        "with generated lesions)."
    )
    status = "caution" if n_syn else "ok"
    meaning = (
        "Results on synthetic data show the pipeline works and how methods rank on a known "
        "ground truth; they are not evidence about real MRI, where lesions, scanners and "
        "label noise differ."
        if n_syn
        else "All patients come from the configured real sources."
    )
    return Threat("Synthetic data", status, found, meaning)


def profile_caveat(profile: str, stages: Mapping[str, StageData]) -> Threat:
    ssl = stages["pretrain"].docs
    epochs = sorted({int(d.get("epochs", 0)) for d in ssl.values()})
    sizes = sorted({int(d.get("image_size", 0)) for d in ssl.values()})
    found = f"Profile '{profile}'."
    if ssl:
        found += (
            f" SSL pretraining: {', '.join(map(str, epochs))} epoch(s) at "
            f"{', '.join(map(str, sizes))} px."
        )
    if profile == "full":
        return Threat("Profile", "ok", found, "Paper-scale settings (params.yaml profiles.full).")
    meaning = (
        "The smoke profile proves the plumbing on CPU in minutes: models train for a few steps, "
        "test sets are a handful of patients, and at 64 px a ResNet's last CAM layer is 2 x 2 "
        "pixels. Its numbers say nothing about the papers' claims; run the full profile for that."
    )
    return Threat("Profile", "caution", found, meaning)


def threats(
    stages: Mapping[str, StageData], profile: str, metric: str, level: float
) -> tuple[list[Threat], pd.DataFrame]:
    """All threats, in reading order, and the test-size table."""
    sizes, table = test_sizes(stages, metric, level)
    items = [
        leakage(stages),
        near_duplicates(stages),
        sizes,
        multiple_comparisons(stages, metric),
        explanation_sanity(stages),
        synthetic_data(stages),
        profile_caveat(profile, stages),
    ]
    return items, table
