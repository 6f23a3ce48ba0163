"""The leakage check before training fails loudly on a test patient or a near duplicate."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.finetune.leakage import check_training_leakage, cross_similarity, near_duplicates
from brainxai.splits import LeakageError
from tests.test_finetune_toydata import toy_table

SIZE, THRESHOLD = 16, 0.99


def _setup():
    items, images = toy_table(patients_per_group=6, size=40)
    manifest = items.drop(columns=["row", "ok", "key"])
    train_ids = items.loc[items["split"] == "train", "record_id"].tolist()
    return items, images, manifest, train_ids


def test_clean_split_passes_and_reports_what_it_checked():
    items, images, manifest, train_ids = _setup()
    out = check_training_leakage(manifest, items, images, train_ids, SIZE, THRESHOLD)
    assert out["n_train_checked"] == len(train_ids) == 6 * 4 * 3 - 4  # normal: 2 classes
    assert out["n_test_checked"] == 17
    assert out["max_train_test_similarity"] < THRESHOLD


def test_a_test_patient_in_training_fails():
    items, images, manifest, train_ids = _setup()
    planted = items.loc[items["split"] == "test", "record_id"].iloc[0]
    with pytest.raises(LeakageError) as err:
        check_training_leakage(manifest, items, images, [*train_ids, planted], SIZE, THRESHOLD)
    assert planted in err.value.offenders


def test_a_near_duplicate_of_a_test_image_fails():
    items, images, manifest, train_ids = _setup()
    images = images.copy()
    test_row = int(items.loc[items["split"] == "test", "row"].iloc[3])
    train_row = int(items.loc[items["split"] == "train", "row"].iloc[10])
    # a re-encoded copy: brightness x1.05 and +-2 grey levels of noise
    rng = np.random.default_rng(0)
    noisy = images[test_row] * 1.05 + rng.integers(-2, 3, images[test_row].shape)
    images[train_row] = np.clip(noisy, 0, 255).astype(np.uint8)
    with pytest.raises(LeakageError, match="near duplicates") as err:
        check_training_leakage(manifest, items, images, train_ids, SIZE, THRESHOLD)
    assert err.value.offenders[0].startswith(items.at[train_row, "record_id"] + "~")
    assert items.at[test_row, "record_id"] in err.value.offenders[0]


def test_similarity_is_pearson_correlation_of_thumbnails():
    a = np.zeros((2, 8, 8), np.uint8)
    a[0, :4] = 200  # top half bright
    a[1, 4:] = 200  # bottom half bright: correlation -1 with the first
    sim = cross_similarity(a, a, size=8)
    np.testing.assert_allclose(sim, [[1.0, -1.0], [-1.0, 1.0]], atol=1e-6)
    assert near_duplicates(sim, 0.99) == [(0, 0, pytest.approx(1.0)), (1, 1, pytest.approx(1.0))]
