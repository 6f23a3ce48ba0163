"""One override mechanism (issue 19): ``--set key.path=value`` on the command line, the
``overrides`` parameter of every flow and deployment, and params.yaml's ``overrides``
mapping (what ``dvc exp run -S '++overrides.<key>=<value>'`` sets), each applied after the
profile and checked against the typed stage configs."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import prefect.main  # noqa: F401  (logging set up now, not inside a CliRunner stream)
import pytest
import yaml
from typer.testing import CliRunner

from brainxai.config import load_params
from brainxai.overrides import OverrideError, parse_assignments
from flows.cli import app
from tests.conftest import REPO, make_study

BACKEND = "standardize.config.skullstrip.backend"
BIN = Path(sys.executable).parent
runner = CliRunner()


def _backend(params: dict) -> str:
    return params["standardize"]["config"]["skullstrip"]["backend"]


def _with_profile_value(root: Path, section: str, values: dict) -> Path:
    """Set ``profiles.smoke.<section>`` (deep) in ``root``'s params.yaml."""
    f = root / "params.yaml"
    params = yaml.safe_load(f.read_text())
    smoke = params["profiles"]["smoke"]
    smoke[section] = {**(smoke.get(section) or {}), **values}
    f.write_text(yaml.safe_dump(params, sort_keys=False))
    return f


# ------------------------------------------------------------------------ resolution ---


def test_assignments_parse_as_yaml_into_a_nested_mapping():
    got = parse_assignments(["a.b=3", "a.c=0.5", "d=[1, 2]", "e=null", "f=hdbet", "a.b=4"])
    assert got == {"a": {"b": 4, "c": 0.5}, "d": [1, 2], "e": None, "f": "hdbet"}
    for bad in ("a.b", "a..b=1", "=1", "a=[1"):
        with pytest.raises(OverrideError):
            parse_assignments([bad])
    with pytest.raises(OverrideError, match="also set to a value"):
        parse_assignments(["a=1", "a.b=2"])


def test_an_explicit_override_wins_over_the_profile():
    smoke = load_params(REPO / "params.yaml", profile="smoke")
    assert _backend(smoke) == "template"  # the smoke profile sets it (HD-BET is slow on CPU)
    assert _backend(load_params(REPO / "params.yaml", "smoke", [f"{BACKEND}=hdbet"])) == "hdbet"
    # a mapping works as well; everything else stays as the profile has it
    over = load_params(REPO / "params.yaml", "smoke", {"finetune": {"tune": {"epochs": 1}}})
    assert over["finetune"]["tune"]["epochs"] == 1
    assert over["finetune"]["probe"] == smoke["finetune"]["probe"]
    assert "overrides" not in smoke  # the mapping is consumed, not passed on to stages


def test_the_params_file_overrides_win_over_the_profile_where_a_shared_key_cannot(tmp_path):
    """The bug: changing the shared key (what `dvc exp run -S standardize...` does) is hidden
    by the profile; the same value under `overrides:` wins."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["standardize"]["config"]["skullstrip"]["backend"] = "deepbet"
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert _backend(load_params(f, "smoke")) == "template", "the profile hides the shared key"
    raw["overrides"]["standardize"] = {"config": {"skullstrip": {"backend": "hdbet"}}}
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert _backend(load_params(f, "smoke")) == "hdbet"
    assert _backend(load_params(f, "full")) == "hdbet"
    # the caller's override comes last
    assert _backend(load_params(f, "smoke", [f"{BACKEND}=deepbet"])) == "deepbet"
    raw["overrides"]["seed"] = 3
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(OverrideError, match=r"overrides\.seed is not a section"):
        load_params(f, "smoke")


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            f"{BACKEND[:-1]}=hdbet",
            r"unknown key .*valid keys of standardize\.config\.skullstrip: "
            r"\['backend', 'device'",
        ),
        (f"{BACKEND}=bet", r"expected one of 'hdbet', 'deepbet', 'template', got str"),
        ("finetune.tune.epochs=many", r"finetune\.tune\.epochs = 'many': expected int, got str"),
        ("finetune.tune.epochs=2.5", r"expected int, got float"),
        ("finetune.tune.epochs.max=2", r"finetune\.tune\.epochs is not a mapping"),
        ("synth.noise=[1]", r"synth\.noise = \[1\]: expected float, got list"),
        ("runner.workers=two", r"runner\.workers = 'two': expected int, got str"),
        ("pretrain.byol.base_lrr=0.1", r"valid keys of pretrain\.byol: \['base_lr'"),
        ("xai.families.classify3d.max_images=all", r"expected int, got str"),
        ("finetune.fractions=[0.1, 2]", r"finetune rejects it: label fractions must be in"),
        ("nosuch.key=1", r"unknown key 'nosuch\.key': valid keys of the top level: \["),
        ("profile=full", r"cannot be overridden"),
    ],
)
def test_an_invalid_override_is_rejected_naming_the_valid_keys(assignment, message):
    with pytest.raises(OverrideError, match=message):
        load_params(REPO / "params.yaml", "smoke", [assignment])


def test_valid_overrides_of_every_kind_resolve():
    params = load_params(REPO / "params.yaml", "smoke", [
        "finetune.tune.lr=1",  # an int for a float field
        "runner.address=tcp://scheduler:8786",  # an untyped key whose value is null
        "xai.families.classify3d.max_images=2",  # a dict[str, dataclass] entry
        "classify3d.backbones.vit.hidden_size=64",  # a dict[str, dict] entry
        "pretrain.byol.base_lr=0.1",  # a framework section
        "seed=7",
    ])  # fmt: skip
    assert params["finetune"]["tune"]["lr"] == 1 and params["seed"] == 7
    assert params["xai"]["families"]["classify3d"]["max_images"] == 2
    assert params["classify3d"]["backbones"]["vit"]["hidden_size"] == 64


# ------------------------------------------------------------------- command line -------


def _commands(group, path=()):
    import typer.main

    cmd = typer.main.get_command(group) if not hasattr(group, "params") else group
    subs = getattr(cmd, "commands", {})
    if not subs:
        yield path, cmd
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


def test_every_command_with_a_profile_takes_set():
    with_profile = {p: c for p, c in _commands(app) if any(o.name == "profile" for o in c.params)}
    assert ("data", "standardize") in with_profile and ("study", "run") in with_profile
    lacking = [p for p, c in with_profile.items() if not any(o.name == "sets" for o in c.params)]
    # `study track` wraps another command (`-- dvc repro`): DVC reads params.yaml itself, so
    # its override is `dvc exp run -S '++overrides...'` (docs/configuration.md), not a flag of
    # the wrapper
    assert lacking == [("study", "track")], lacking


def test_set_on_the_command_line_wins_over_the_profile(tmp_path, monkeypatch):
    root = make_study(tmp_path / "study")
    _with_profile_value(root, "vlm", {"model_path": "/from/profile"})
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    plain = runner.invoke(app, ["doctor", "--profile", "smoke"])
    assert plain.exit_code == 0 and "/from/profile" in plain.output, plain.output
    res = runner.invoke(app, ["doctor", "--profile", "smoke", "--set", "vlm.model_path=/from/set"])
    assert res.exit_code == 0, res.output
    assert "/from/set" in res.output and "/from/profile" not in res.output


def test_a_bad_set_fails_before_any_work(tmp_path, monkeypatch):
    root = make_study(tmp_path / "study")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    res = runner.invoke(app, ["data", "synth", "--set", "synth.n_subjects_3d=4"])
    assert res.exit_code == 2, res.output
    assert "unknown key 'synth.n_subjects_3d'" in res.output and "n_subjects_3d_per_class" in (
        res.output
    )
    assert not (root / "data").exists(), "no stage ran"


# -------------------------------------------------------------- flows / deployments -----


def test_every_flow_and_deployment_takes_overrides():
    from flows.orchestrate import read_prefect_yaml
    from flows.study import STAGES

    entry = {d["name"]: d["entrypoint"] for d in read_prefect_yaml(REPO / "prefect.yaml")
             ["deployments"]}  # fmt: skip
    from prefect.flows import load_flow_from_entrypoint

    for name, ep in entry.items():
        fn = load_flow_from_entrypoint(str(REPO / ep)).fn
        assert inspect.signature(fn).parameters["overrides"].default is None, name
    for name, fn in STAGES.items():
        assert "overrides" in inspect.signature(fn).parameters, name


@pytest.mark.slow  # ~40 s: the ephemeral Prefect API plus one report build
def test_the_overrides_parameter_of_a_flow_wins_over_the_profile(tmp_path):
    from flows.report import report_flow

    root = make_study(tmp_path / "study")
    _with_profile_value(root, "report", {"title": "Title from the profile"})
    with pytest.raises(OverrideError, match=r"unknown key 'report\.titel'"):
        report_flow(root=str(root), overrides=["report.titel=x"])
    res = report_flow(root=str(root), overrides=["report.title=Title from the flow"])
    html = Path(res["html"]).read_text()
    assert "Title from the flow" in html and "Title from the profile" not in html


# -------------------------------------------------------------------------------- DVC --


def _stage_params(dvc_yaml: dict) -> dict[str, list[str]]:
    return {
        name: [str(p) for p in (st.get("do", st).get("params") or [])]
        for name, st in dvc_yaml["stages"].items()
    }


def test_every_stage_depends_on_the_overrides_of_the_sections_it_reads():
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    listed = raw["overrides"]
    needed: set[str] = set()
    for name, params in _stage_params(dvc_yaml).items():
        sections = {p.split(".")[0] for p in params if p not in ("profile", "seed")} - {
            "profiles", "overrides"
        }  # fmt: skip
        deps = {p.split(".", 1)[1] for p in params if p.startswith("overrides.")}
        assert sections <= deps, (name, sections - deps)
        needed |= deps
    # each of them exists (DVC fails on a missing param) and is a section: empty = no change
    assert set(listed) == needed, set(listed) ^ needed
    assert all(isinstance(v, dict) for v in listed.values())
    assert load_params(REPO / "params.yaml", "smoke") == load_params(
        REPO / "params.yaml", "smoke", {}
    )


def _placeholders(root: Path) -> None:
    from tests.test_dvc import _placeholders as make

    make(root)


def test_dvc_sees_an_override_as_a_change_of_that_stage_only(tmp_path, monkeypatch):
    from dvc.repo import Repo

    from tests.test_dvc import dvc_tree

    root = dvc_tree(tmp_path / "tree", with_code=False)
    monkeypatch.chdir(root)
    _placeholders(root)
    repo = Repo(str(root))
    repo.commit(force=True)
    assert repo.status() == {}
    params = yaml.safe_load((root / "params.yaml").read_text())
    # what `dvc exp run -S '++overrides.standardize.config.skullstrip.backend=hdbet'` writes
    params["overrides"]["standardize"] = {"config": {"skullstrip": {"backend": "hdbet"}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(Repo(str(root)).status()) == {"standardize"}
    assert _backend(load_params(root / "params.yaml")) == "hdbet"  # what the stage resolves


def test_dvc_exp_run_set_param_overrides_the_profile(tmp_path):
    """A real `dvc exp run -S` in a throw-away git repository: a stage that reports what
    brainxai resolves for the profile."""
    root = tmp_path / "exp"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    show = (
        f'{sys.executable} -c "from brainxai.config import load_params; '
        "p = load_params('params.yaml', 'smoke'); "
        "print(p['standardize']['config']['skullstrip']['backend'])\" > backend.txt"
    )
    stage = {"cmd": show, "params": ["profile", "standardize", "profiles.smoke.standardize",
                                     "overrides.standardize"], "outs": ["backend.txt"]}  # fmt: skip
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"show": stage}}))

    def run(*args: str) -> None:
        proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])

    git = shutil.which("git")
    assert git
    run(git, "init", "-q")
    run(git, "config", "user.email", "t@example.org")
    run(git, "config", "user.name", "t")
    run(str(BIN / "dvc"), "init", "-q")
    run(str(BIN / "dvc"), "repro", "-q")
    assert (root / "backend.txt").read_text().strip() == "template"  # the smoke profile's
    run(git, "add", "-A")
    run(git, "commit", "-qm", "baseline")
    run(str(BIN / "dvc"), "exp", "run", "-q", "-S", f"++overrides.{BACKEND}=hdbet")
    assert (root / "backend.txt").read_text().strip() == "hdbet"
    applied = yaml.safe_load((root / "params.yaml").read_text())
    assert applied["overrides"]["standardize"] == {"config": {"skullstrip": {"backend": "hdbet"}}}
