"""Champion selection and registry candidate tables: hand-made tables, known winners."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainxai.config import load_params
from brainxai.registry import RegistryConfig, best_per_group, select_champion
from brainxai.registry.candidates import example_shape, selected_checkpoints, ssl_candidates
from brainxai.registry.config import FamilyConfig, alias_for

REPO = Path(__file__).resolve().parents[1]


def _runs() -> pd.DataFrame:
    # run, init, protocol, fraction, seed, val F1 (test F1 is a decoy: never used)
    rows = [
        ("a", "simclr", "probe", 0.1, 0, 0.40, 0.99),
        ("b", "simclr", "probe", 1.0, 1, 0.40, 0.10),  # ties with a: more labels wins
        ("c", "simclr", "probe", 1.0, 0, 0.40, 0.10),  # ties with b: lower seed wins
        ("d", "byol", "probe", 1.0, 0, np.nan, 0.90),  # NaN: never chosen
        ("e", "byol", "probe", 0.5, 0, 0.30, 0.20),
        ("f", "random", "finetune", 1.0, 0, None, 0.50),  # missing value
        ("g", "oracle", "finetune", 1.0, 0, 0.95, 0.95),  # best, but excluded
    ]
    cols = ["run", "init", "protocol", "fraction", "seed", "val_macro_f1", "test_macro_f1"]
    return pd.DataFrame(rows, columns=cols)


TIES = ("-fraction", "seed", "run")


def test_champion_is_the_best_validation_metric_never_test_nor_excluded():
    sel = select_champion(
        _runs(), "val_macro_f1", "run", exclude={"init": ["oracle"]}, tie_break=TIES
    )
    # 3-way tie at 0.40 (a, b, c): fraction desc -> b, c; seed asc -> c
    assert sel.row["run"] == "c"
    assert sel.tied == 3 and "tie broken" in sel.reason
    assert sel.n_candidates == 7 and sel.n_eligible == 4  # a, b, c, e (d, f NaN; g excluded)


def test_without_exclusion_the_oracle_wins_and_minimising_picks_the_lowest():
    assert select_champion(_runs(), "val_macro_f1", "run").row["run"] == "g"
    low = select_champion(_runs(), "val_macro_f1", "run", maximize=False)
    assert low.row["run"] == "e" and low.tied == 1 and "tie" not in low.reason


def test_ties_without_tie_break_columns_fall_back_to_the_key():
    t = _runs()[lambda d: d["run"].isin(["c", "b", "a"])]
    assert select_champion(t, "val_macro_f1", "run").row["run"] == "a"
    assert select_champion(t, "val_macro_f1", "run", tie_break=["nope"]).row["run"] == "a"


def test_no_finite_metric_means_no_champion_and_a_missing_column_is_an_error():
    t = _runs()[lambda d: d["run"].isin(["d", "f"])]
    sel = select_champion(t, "val_macro_f1", "run")
    assert sel.row is None and sel.n_eligible == 0 and "finite" in sel.reason
    assert select_champion(t.iloc[0:0], "val_macro_f1", "run").row is None
    with pytest.raises(KeyError, match="val_auroc"):
        select_champion(_runs(), "val_auroc", "run")


def test_best_per_group_keeps_one_row_per_group_even_without_a_metric():
    best = best_per_group(_runs(), "val_macro_f1", ["init", "protocol"], "run", tie_break=TIES)
    got = dict(zip(best["init"], best["run"], strict=True))
    assert got == {"byol": "e", "oracle": "g", "random": "f", "simclr": "c"}
    random_row = best[best["init"] == "random"].iloc[0]
    assert math.isnan(random_row["val_macro_f1"]) and "finite" in random_row["selection"]
    assert list(best.columns) == [*_runs().columns, "selection"]


def test_aliases_are_valid_mlflow_aliases():
    assert alias_for("simclr", "probe") == "simclr-probe"
    assert alias_for("base/densenet") == "base_densenet"
    assert alias_for("v3") == "g-v3" and alias_for("latest") == "g-latest"


def test_registry_config_from_params_and_unknown_keys_rejected():
    cfg = RegistryConfig.from_dict(load_params(REPO / "params.yaml", profile="smoke")["registry"])
    assert cfg.champion_alias == "champion"
    assert cfg.ssl.name == "brainxai-ssl-backbone" and cfg.ssl.group_by == ("framework",)
    assert cfg.classifier_2d.metric == "val_macro_f1"
    assert cfg.classifier_3d.exclude == {"init": ("oracle",)}
    with pytest.raises(ValueError, match="unknown FamilyConfig keys"):
        FamilyConfig.from_dict({"name": "x", "metric": "m", "metrc": "typo"})
    with pytest.raises(ValueError, match="registered model name"):
        FamilyConfig(name="bad name", metric="m")


def test_selected_checkpoints_one_per_run():
    index = pd.DataFrame(
        {
            "run": ["r1", "r1", "r1", "r2", "r2"],
            "epoch": [1, 2, 3, 1, 2],
            "selected": [False, True, False, False, False],  # r2: none selected -> last
            "val_macro_f1": [0.1, 0.5, 0.4, 0.2, 0.3],
        }
    )
    sel = selected_checkpoints(index)
    assert sel[["run", "epoch"]].values.tolist() == [["r1", 2], ["r2", 2]]
    assert sel["val_macro_f1"].tolist() == [0.5, 0.3]


def test_example_shapes():
    assert example_shape({"image_size": 64}, "2d") == (1, 1, 64, 64)
    meta3 = {"needs_mask": True, "input_size": [8, 9, 10]}
    assert example_shape(meta3, "3d") == (1, 2, 8, 9, 10)
    assert example_shape({**meta3, "needs_mask": False}, "3d") == (1, 1, 8, 9, 10)
    with pytest.raises(ValueError, match="kind"):
        example_shape(meta3, "4d")


def test_ssl_candidates_read_summaries_and_note_missing_ones(tmp_path):
    (tmp_path / "dino").mkdir()
    summary = {"arch": "resnet18", "epochs": 2, "image_size": 64,
               "backbone": "/elsewhere/models/ssl/dino/backbone.safetensors",
               "final": {"knn_accuracy": 0.25, "loss": 1.5}}  # fmt: skip
    (tmp_path / "dino" / "summary.json").write_text(json.dumps(summary))
    table, notes = ssl_candidates(tmp_path, ["dino", "byol"])
    assert table["framework"].tolist() == ["dino"] and table["knn_accuracy"].tolist() == [0.25]
    assert table["backbone"].iloc[0] == str(tmp_path / "dino" / "backbone.safetensors")
    assert len(notes) == 1 and "byol" in notes[0]
