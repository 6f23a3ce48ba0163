"""Metrics files are strict JSON: undefined numbers become null."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from brainxai.jsonio import strict, write_json


def test_non_finite_numbers_become_null_and_numpy_becomes_plain(tmp_path):
    obj = {"auroc": float("nan"), "n": np.int64(3), "x": np.float32(0.5), 1: (np.inf, Path("a"))}
    assert strict(obj) == {"auroc": None, "n": 3, "x": 0.5, "1": [None, "a"]}
    path = write_json(tmp_path / "m/metrics.json", {"v": np.array([1.0, np.nan])})
    assert "NaN" not in path.read_text()
    assert json.loads(path.read_text()) == {"v": [1.0, None]}
