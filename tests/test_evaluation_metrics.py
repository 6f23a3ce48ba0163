"""Per-run metrics against scikit-learn and hand-computed values (issue 6)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from brainxai.evaluation.metrics import (
    binary_auroc,
    classification_metrics,
    expected_calibration_error,
    save_confusion,
)

NAMES = ["a", "b", "c", "d", "e"]


def fixed_predictions():
    """Class 3 ('d') is in y_true but never predicted; class 4 ('e') is predicted, never true."""
    rng = np.random.default_rng(7)
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 0, 1, 2, 0, 1])
    probs = rng.dirichlet(np.ones(5), y.size) * 0.3
    pred = np.array([0, 1, 0, 1, 1, 2, 2, 2, 0, 0, 4, 0, 4, 2, 0, 1])
    probs[np.arange(y.size), pred] += 0.7
    probs /= probs.sum(axis=1, keepdims=True)
    assert np.array_equal(probs.argmax(axis=1), pred)
    return y, probs, pred


def test_scalar_metrics_match_sklearn_with_unpredicted_and_absent_classes():
    y, probs, pred = fixed_predictions()
    m = classification_metrics(y, probs, NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
        bal = skm.balanced_accuracy_score(y, pred)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(bal)
    assert m["macro_precision"] == pytest.approx(p)
    assert m["macro_recall"] == pytest.approx(r)
    assert m["macro_f1"] == pytest.approx(f)
    # the union convention: 5 classes enter the macro F1 ('e' predicted only, with F1 0)
    per_f1 = skm.f1_score(y, pred, labels=range(5), average=None, zero_division=0)
    assert m["macro_f1"] == pytest.approx(per_f1.mean())
    assert m["per_class"]["d"] == pytest.approx(
        {
            "precision": 0.0,
            "recall": 0.0,
            "f1": 0.0,
            "support": 2,
            "auroc": m["per_class"]["d"]["auroc"],
        }
    )
    assert m["per_class"]["e"]["support"] == 0 and m["per_class"]["e"]["precision"] == 0.0
    assert np.isnan(m["per_class"]["e"]["auroc"])
    assert m["confusion"] == skm.confusion_matrix(y, pred, labels=range(5)).tolist()
    assert m["n"] == y.size


def test_macro_auroc_is_ovr_over_classes_present_in_truth():
    y, probs, _ = fixed_predictions()
    m = classification_metrics(y, probs, NAMES)
    present = [0, 1, 2, 3]
    expected = np.mean([skm.roc_auc_score(y == c, probs[:, c]) for c in present])
    assert m["macro_auroc"] == pytest.approx(expected)
    for c in present:
        assert m["per_class"][NAMES[c]]["auroc"] == pytest.approx(
            skm.roc_auc_score(y == c, probs[:, c])
        )
    # with every class present and rows summing to 1 it is sklearn's multi-class OvR macro
    y4 = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3, 2])
    p4 = np.random.default_rng(1).dirichlet(np.ones(4), y4.size)
    assert classification_metrics(y4, p4, list("abcd"))["macro_auroc"] == pytest.approx(
        skm.roc_auc_score(y4, p4, multi_class="ovr", average="macro")
    )


def test_macro_auroc_nan_with_one_class_and_ties_count_half():
    probs = np.array([[0.6, 0.4], [0.7, 0.3]])
    assert np.isnan(classification_metrics([0, 0], probs, ["x", "y"])["macro_auroc"])
    # ties: one positive and one negative at the same score -> 0.5
    assert binary_auroc(np.array([0.3, 0.3]), np.array([True, False])) == pytest.approx(0.5)
    # integer weights = repeated items
    s = np.array([0.1, 0.4, 0.35, 0.8])
    pos = np.array([False, False, True, True])
    w = np.array([2, 1, 3, 1])
    rep = np.repeat(np.arange(4), w)
    assert binary_auroc(s, pos, w) == pytest.approx(skm.roc_auc_score(pos[rep], s[rep]))


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.4, 0.3, 0.3], [0.45, 0.35, 0.2]])
    y = np.array([0, 1, 0, 2])
    # bin (0.5, 1]: conf 0.9 (right), 0.8 (wrong) -> |0.5 - 0.85| * 2/4 = 0.175
    # bin (0, 0.5]: conf 0.4 (right), 0.45 (wrong) -> |0.5 - 0.425| * 2/4 = 0.0375
    assert expected_calibration_error(y, probs, n_bins=2) == pytest.approx(0.2125)
    # a confidence on a bin edge goes to the lower bin: 0.5 in (0, 0.5], acc 1 -> 0.5
    assert expected_calibration_error([0], [[0.5, 0.25, 0.25]], n_bins=2) == pytest.approx(0.5)
    # perfectly calibrated: conf 1 and always right
    assert expected_calibration_error([0, 1], np.eye(2), n_bins=15) == 0.0
    assert classification_metrics(y, probs, ["a", "b", "c"], n_bins=2)["ece"] == pytest.approx(
        0.2125
    )


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="class names"):
        classification_metrics([0, 1], np.eye(2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 2], np.eye(2), ["a", "b"])


def test_save_confusion_writes_csv_and_png(tmp_path):
    from brainxai.labels import kaggle_classes

    names = kaggle_classes()
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 5, (17, 17))
    png, csv = save_confusion(conf.tolist(), names, tmp_path / "c.png", tmp_path / "sub" / "c.csv")
    back = pd.read_csv(csv, index_col=0)
    assert back.to_numpy().tolist() == conf.tolist()
    assert list(back.columns) == names and list(back.index) == names
    assert png.stat().st_size > 20_000
    with pytest.raises(ValueError, match="17"):
        save_confusion(conf[:3, :3], names, tmp_path / "x.png", tmp_path / "x.csv")
