from pathlib import Path

import pytest
import yaml

from brainxai.config import deep_merge, load_params, params_digest, project_root

REPO = Path(__file__).resolve().parents[1]


def test_deep_merge_nested_values_win_and_base_untouched():
    base = {"a": 1, "b": {"c": 2, "d": 3}}
    out = deep_merge(base, {"b": {"c": 20}, "e": 5})
    assert out == {"a": 1, "b": {"c": 20, "d": 3}, "e": 5}
    assert base == {"a": 1, "b": {"c": 2, "d": 3}}


def test_both_profiles_resolve_from_the_repo_params():
    smoke = load_params(REPO / "params.yaml", profile="smoke")
    full = load_params(REPO / "params.yaml", profile="full")
    assert smoke["profile"] == "smoke" and full["profile"] == "full"
    for p in (smoke, full):
        for key in ("seed", "paths", "runner", "synth", "ingest", "split"):
            assert key in p, key
    assert full["runner"]["workers"] >= smoke["runner"]["workers"]


def test_profile_precedence_and_errors(tmp_path, monkeypatch):
    f = tmp_path / "params.yaml"
    f.write_text(
        yaml.safe_dump({"profile": "a", "x": 1, "profiles": {"a": {"y": 1}, "b": {"y": 2}}})
    )
    assert load_params(f)["y"] == 1
    monkeypatch.setenv("BRAINXAI_PROFILE", "b")
    assert load_params(f)["y"] == 2
    assert load_params(f, profile="a", overrides={"x": 9})["x"] == 9
    with pytest.raises(KeyError, match="unknown profile"):
        load_params(f, profile="nope")


def test_params_digest_is_order_independent():
    assert params_digest({"a": 1, "b": 2}) == params_digest({"b": 2, "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 2})


def test_project_root_found_from_a_subdirectory(tmp_path, monkeypatch):
    monkeypatch.delenv("BRAINXAI_ROOT", raising=False)
    (tmp_path / "params.yaml").write_text("profile: x\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert project_root(sub) == tmp_path.resolve()


def test_params_hold_every_knob_of_each_stage_config():
    """No hidden defaults: every config field is spelled out in params.yaml, per profile."""
    import dataclasses

    from brainxai.baseline import BaselineConfig
    from brainxai.ingest import IngestConfig
    from brainxai.splits import SplitConfig
    from brainxai.synth import SynthConfig

    for profile in ("smoke", "full"):
        p = load_params(REPO / "params.yaml", profile=profile)
        checks = [
            (SynthConfig, p["synth"], set()),
            (IngestConfig, p["ingest"]["config"], {"layout", "allowed_labels"}),  # per source
            (SplitConfig, p["split"], set()),
            (BaselineConfig, p["difficulty"], {"seed"}),  # the study seed
        ]
        for cls, section, per_call in checks:
            fields = {f.name for f in dataclasses.fields(cls)} - per_call
            assert fields <= set(section), (profile, cls.__name__, fields - set(section))
            cls.from_dict(section)
    assert load_params(REPO / "params.yaml", profile="full")["synth"]["resolution_mm"] == 1
