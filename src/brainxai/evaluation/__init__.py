"""Evaluation statistics for label-fraction studies (issue 6).

``metrics`` (per-run metrics, ECE, confusion), ``bootstrap`` (patient-level bootstrap CIs,
single run or pooled over seeds), ``significance`` (paired bootstrap, McNemar, Wilcoxon over
seeds, Holm), ``aggregate`` (predictions table → per-run metrics, summaries, comparisons),
``plots`` (label-efficiency curve) and ``report`` (Markdown tables).
"""

from brainxai.evaluation.aggregate import compare, per_class_table, run_metrics, summarise
from brainxai.evaluation.bootstrap import CI, patient_bootstrap, patient_bootstrap_seeds
from brainxai.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    save_confusion,
)
from brainxai.evaluation.plots import label_efficiency
from brainxai.evaluation.results_md import results_markdown
from brainxai.evaluation.significance import holm, mcnemar, paired_bootstrap, wilcoxon_seeds

__all__ = [
    "CI",
    "classification_metrics",
    "compare",
    "expected_calibration_error",
    "holm",
    "label_efficiency",
    "mcnemar",
    "paired_bootstrap",
    "patient_bootstrap",
    "patient_bootstrap_seeds",
    "per_class_table",
    "results_markdown",
    "run_metrics",
    "save_confusion",
    "summarise",
    "wilcoxon_seeds",
]
