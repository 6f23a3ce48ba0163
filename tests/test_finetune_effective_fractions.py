"""Label fractions as they really are (issue 17.5): on a toy training split where rounding
up and "at least one image per class" inflate 1 %, the effective fraction of patients and
images equals the hand count, and it stands beside the nominal one in the summary and
comparison tables, results.md, the plot's ticks and label_efficiency.csv.

Toy training split (hand count, independent of the seed's patient order):
* group ``G``: 20 patients with 2 images each, all of class ``G T1`` — 1 % asks for
  ceil(0.01 x 20) = 1 patient (rounding up: 5 % of the group), 50 % for 10;
* group ``H``: 5 patients with 1 image each, 5 different classes — covering every class
  needs all 5 patients at any fraction.
Training split: 25 patients, 45 images. 1 %: 1 + 5 = 6 patients (24 %), 2 + 5 = 7 images
(7/45 = 15.6 %); 50 %: 10 + 5 = 15 patients (60 %), 20 + 5 = 25 images (55.6 %).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainxai.evaluation.aggregate import compare, summarise
from brainxai.evaluation.fractions import fraction_label, fraction_labels, with_effective
from brainxai.evaluation.results_md import results_markdown
from brainxai.finetune.data import CLASS_NAMES
from brainxai.finetune.sampling import effective_by_fraction, effective_fractions, subsets_table
from brainxai.finetune.stage import label_efficiency_table
from tasks.finetune import finetune_aggregate

H_CLASSES = ["H T1", "H T2", "H T1C+", "H FLAIR", "H PD"]


def toy_items() -> pd.DataFrame:
    rows = []
    for p in range(20):
        for j in range(2):
            rows.append({"record_id": f"g{p:02d}-{j}", "subject": f"g{p:02d}", "group": "G",
                         "label": "G T1", "split": "train"})  # fmt: skip
    for p, label in enumerate(H_CLASSES):
        rows.append({"record_id": f"h{p}", "subject": f"h{p}", "group": "H", "label": label,
                     "split": "train"})  # fmt: skip
    rows.append(
        {"record_id": "t0", "subject": "t0", "group": "G", "label": "G T1", "split": "test"}
    )  # fmt: skip  (never counted)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def effective() -> pd.DataFrame:
    items = toy_items()
    subsets = subsets_table(items, (0.01, 0.5, 1.0), (0, 1))
    return effective_fractions(items, subsets)


def test_effective_fractions_by_hand(effective: pd.DataFrame):
    assert set(effective["train_patients"]) == {25} and set(effective["train_images"]) == {45}
    one = effective[effective["fraction"] == 0.01]
    assert list(one["n_patients"]) == [6, 6] and list(one["n_images"]) == [7, 7]  # both seeds
    half = effective[effective["fraction"] == 0.5]
    assert list(half["n_patients"]) == [15, 15] and list(half["n_images"]) == [25, 25]
    mean = effective_by_fraction(effective).set_index("fraction")
    assert mean.loc[0.01, "effective_patients"] == pytest.approx(6 / 25)  # 24 %, not 1 %
    assert mean.loc[0.01, "effective_images"] == pytest.approx(7 / 45)
    assert mean.loc[0.5, "effective_patients"] == pytest.approx(15 / 25)
    assert mean.loc[0.5, "effective_images"] == pytest.approx(25 / 45)
    assert mean.loc[1.0, "effective_patients"] == mean.loc[1.0, "effective_images"] == 1.0
    assert mean.loc[0.01, "labelled_patients"] == 6 and mean.loc[0.5, "labelled_images"] == 25


def test_labels_put_the_effective_fraction_beside_the_nominal_one():
    assert fraction_label(0.01, 6 / 25, 7 / 45) == (
        "1 % (effective 24.0 % of patients, 15.6 % of images)"
    )
    assert fraction_label(0.01, 6 / 25, 7 / 45, style="tick") == "1 %\n24.0 % P\n15.6 % I"
    assert fraction_label(0.01) == "1 %"  # nothing known: the nominal fraction only


def _predictions(fractions: tuple[float, ...], k: int = len(CLASS_NAMES)) -> pd.DataFrame:
    """Two inits x fractions x 2 seeds on 8 test images of classes 0 and 1 (of ``k``):
    ``good`` is always right, ``random`` always says class 0."""
    rows = []
    for init in ("random", "good"):
        for f in fractions:
            for seed in (0, 1):
                for j in range(8):
                    y = j % 2
                    pred = y if init == "good" else 0
                    probs = np.full(k, 0.2 / (k - 1))
                    probs[pred] = 0.8
                    rows.append({"run": f"{init}-{f}-{seed}", "init": init, "protocol": "finetune",
                                 "fraction": f, "seed": seed, "record_id": f"t{j}",
                                 "subject": f"p{j // 2}", "y_true": y, "y_pred": pred,
                                 "probs": probs.tolist()})  # fmt: skip
    return pd.DataFrame(rows)


def test_every_table_and_the_plot_carry_it(effective: pd.DataFrame, tmp_path: Path):
    preds = _predictions((0.01, 0.5))
    pred_path = tmp_path / "predictions.parquet"
    preds.to_parquet(pred_path)
    eff_path = tmp_path / "fractions.csv"
    effective.to_csv(eff_path, index=False)
    out = finetune_aggregate.fn(
        str(pred_path), "sha", "random", "macro_f1", 50, 0, str(tmp_path), 15,
        effective_path=str(eff_path), effective_sha256="sha",
    )  # fmt: skip
    summary, comp = pd.read_csv(out["summary"]), pd.read_csv(out["comparisons"])
    for table in (summary, comp):
        one = table[table["fraction"] == 0.01]
        assert np.allclose(one["effective_patients"], 6 / 25)
        assert np.allclose(one["effective_images"], 7 / 45)
    md = Path(out["results"]).read_text()
    assert "| init | 1 % (effective 24.0 % of patients, 15.6 % of images) | 50 % (effective " \
        "60.0 % of patients, 55.6 % of images) |" in md  # fmt: skip
    assert "| finetune | 1 % (effective 24.0 % of patients, 15.6 % of images) | good |" in md
    assert Path(out["plot"]).stat().st_size > 0
    assert fraction_labels(summary, style="tick")[0.01] == "1 %\n24.0 % P\n15.6 % I"
    curve = label_efficiency_table(summary)
    assert np.allclose(curve.loc[curve["fraction"] == 0.5, "effective_images"], 25 / 45)


def test_a_summary_without_effective_fractions_stays_nominal():
    preds = _predictions((0.01,), k=2)
    summary = summarise(preds, ["a", "b"], metrics=("macro_f1",), n_boot=20)
    comp = compare(preds, ["a", "b"], n_boot=20)
    md = results_markdown(summary, comp)
    assert "| init | 1 % |" in md and "effective" not in md
    with pytest.raises(ValueError, match="no effective fraction"):
        with_effective(summary, effective_by_fraction(
            pd.DataFrame({"fraction": [0.5], "seed": [0], "n_patients": [1], "n_images": [1],
                          "effective_patients": [0.1], "effective_images": [0.1]})))  # fmt: skip
