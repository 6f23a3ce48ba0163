"""The pretrain stage's Prefect cache: an unchanged framework is skipped, a changed one
re-runs, and another framework's params never enter a framework's key."""

from __future__ import annotations

import copy

import numpy as np
from prefect import flow

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.ssl.cache import IMAGES, INDEX
from brainxai.ssl.stage import framework_params
from tasks.caching import run_cached
from tasks.pretrain import pretrain_framework
from tests.test_ssl_toydata import toy_cache

PCFG = {
    "frameworks": ["simclr", "byol"],
    "train": {
        "arch": "resnet18",
        "image_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "max_steps_per_epoch": 1,
        "warmup_epochs": 0,
        "checkpoint_every": 1,
    },
    "augment": {"blur_prob": 0.0},
    "knn": {"k": 3, "batch_size": 16},
    "simclr": {"hidden_dim": 32, "output_dim": 16},
    "byol": {"hidden_dim": 32, "output_dim": 16},
}


@flow
def _stage(pcfg: dict, cache_dir: str, out: str) -> dict:
    results = {}
    for fw in pcfg["frameworks"]:
        call = {
            "framework": fw,
            "cache_dir": cache_dir,
            "cache_fingerprint": "toy",
            "cfg": framework_params(pcfg, fw, seed=1),
            "out_dir": f"{out}/{fw}",
            "resident_max_bytes": 10**8,
        }
        (results[fw],) = run_cached(pretrain_framework, lambda r: r["files"], [call])
    return results


def _mtimes(out, fws=("simclr", "byol")):
    return {f: (out / f / "summary.json").stat().st_mtime_ns for f in fws}


def test_stage_cache_skips_unchanged_and_reruns_changed_framework(tmp_path):
    cache = toy_cache(n_train=16, n_val=8, size=36)
    cdir = tmp_path / "cache"
    cdir.mkdir()
    np.save(cdir / IMAGES, np.asarray(cache.images))
    cache.index.assign(row=np.arange(len(cache.index))).to_parquet(cdir / INDEX)
    out = tmp_path / "models"
    first = _stage(PCFG, str(cdir), str(out))
    t1 = _mtimes(out)
    again = _stage(PCFG, str(cdir), str(out))
    assert _mtimes(out) == t1, "unchanged frameworks must be cache hits"
    assert again["simclr"]["final"] == first["simclr"]["final"]
    changed = copy.deepcopy(PCFG)
    changed["simclr"]["temperature"] = 0.2
    third = _stage(changed, str(cdir), str(out))
    t3 = _mtimes(out)
    assert t3["byol"] == t1["byol"], "another framework's params must not re-run byol"
    assert t3["simclr"] != t1["simclr"], "simclr's changed param must re-run simclr"
    assert third["simclr"]["digest"] != first["simclr"]["digest"]
    # a vanished backbone (e.g. `dvc repro` removed the outputs) is recomputed
    (out / "byol" / "backbone.safetensors").unlink()
    _stage(changed, str(cdir), str(out))
    assert (out / "byol" / "backbone.safetensors").exists()
