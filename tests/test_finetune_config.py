"""The stage's params: every knob spelled out in params.yaml, typos rejected, names stable."""

from __future__ import annotations

import dataclasses

import pytest

from brainxai.config import load_params
from brainxai.finetune.config import (
    BackboneSpec,
    DataConfig,
    FinetuneConfig,
    ProbeConfig,
    TuneConfig,
    TwoPhaseConfig,
)
from brainxai.finetune.runs import RunSpec, parse_run_name, run_name
from brainxai.ssl.config import AugmentConfig
from tests.conftest import REPO


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_params_hold_every_knob(profile):
    p = load_params(REPO / "params.yaml", profile=profile)
    section = p["finetune"]
    assert _names(FinetuneConfig) <= set(section)
    assert _names(DataConfig) <= set(section["data"])
    assert _names(ProbeConfig) <= set(section["probe"])
    assert _names(TuneConfig) <= set(section["tune"])
    assert _names(AugmentConfig) <= set(section["tune"]["augment"])
    assert _names(TwoPhaseConfig) <= set(section["twophase"])
    assert _names(AugmentConfig) <= set(section["twophase"]["augment"])
    cfg = FinetuneConfig.from_dict(section)
    assert "supervised" not in cfg.inits and "random" in cfg.inits
    assert len(cfg.seeds) >= (2 if profile == "smoke" else 3)
    assert max(cfg.tune.checkpoint_epochs) <= cfg.tune.epochs
    BackboneSpec.from_pretrain(p["pretrain"]["train"])


def test_full_profile_is_the_issue_matrix():
    cfg = FinetuneConfig.from_dict(load_params(REPO / "params.yaml", profile="full")["finetune"])
    assert cfg.fractions == (0.01, 0.05, 0.1, 0.5, 1.0)
    assert cfg.tune.checkpoint_epochs == (1, 5, 10, 15, 20, 25, 30)
    # issue 6's 150 cells (probe, finetune) + paper 004's two-phase protocol on every cell
    assert cfg.protocols == ("probe", "finetune", "twophase")
    assert not cfg.twophase.fractions and not cfg.twophase.seeds
    assert len(cfg.inits) * len(cfg.fractions) * len(cfg.protocols) * len(cfg.seeds) == 225


def test_unknown_keys_and_bad_values_are_rejected():
    with pytest.raises(ValueError, match="unknown FinetuneConfig key"):
        FinetuneConfig.from_dict({"fractons": [0.1]})
    with pytest.raises(ValueError, match="unknown TuneConfig key"):
        FinetuneConfig.from_dict({"tune": {"lr_backbone": 0.1}})
    with pytest.raises(ValueError, match="unknown AugmentConfig key"):
        FinetuneConfig.from_dict({"tune": {"augment": {"hue": 0.1}}})
    with pytest.raises(ValueError, match="fractions"):
        FinetuneConfig.from_dict({"fractions": [0.0, 1.0]})
    with pytest.raises(ValueError, match="protocols"):
        FinetuneConfig.from_dict({"protocols": ["linear"]})


def test_run_names_are_filesystem_safe_and_round_trip():
    assert run_name("simclr", "probe", 0.05, 1) == "simclr__probe__f0.05__s1"
    assert run_name("random", "finetune", 1.0, 0) == "random__finetune__f1__s0"
    for spec in (RunSpec("mocov3", "finetune", 0.01, 2), RunSpec("imagenet", "probe", 0.5, 0)):
        assert parse_run_name(spec.name) == spec
        assert set(spec.name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-")
