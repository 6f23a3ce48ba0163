"""The DVC pipeline (``dvc.yaml``): every command is real, every dependency exists or is
produced, fine-tuning follows the framework branch, ``dvc metrics``/``dvc plots`` read the
stage files, and a study pushed to a local-directory remote reproduces in a clone.

Only the last two tests run stages (the foundation ones, once, ~1.5-2.5 min on 2 shared
cores; the remote round trip after it takes 12-35 s); the others work on placeholder
outputs, so they check the pipeline's wiring, not its numbers.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import REPO, make_study

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
#: The foundation stages the end-to-end test reproduces (the rest have their own flow tests).
FOUNDATION = ["synth", "ingest", "difficulty"]


def dvc_tree(dest: Path, with_code: bool = True) -> Path:
    """``dvc.yaml``, ``params.yaml``, plot templates (and code) in a fresh DVC repo."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, dest / name)
    dirs = ("plot_templates", "src", "tasks", "flows") if with_code else ("plot_templates",)
    for d in dirs:
        shutil.copytree(
            REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    subprocess.run([str(BIN / "dvc"), "init", "-q", "--no-scm"], cwd=dest, check=True)
    return dest


def stages(root: Path) -> list:
    """The resolved stages (``foreach`` expanded, ``${...}`` interpolated)."""
    from dvc.repo import Repo

    return list(Repo(str(root)).index.stages)


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def missing_outs(root: Path, names: list[str] | None = None) -> dict[str, list[str]]:
    """Declared outputs (outs, metrics, plots) of the named stages (default: all) that do not
    exist under ``root``: a completed study must have none."""
    out: dict[str, list[str]] = {}
    for st in stages(root):
        if names is None or st.name in names:
            gone = [str(o.def_path) for o in st.outs if not (root / o.def_path).exists()]
            if gone:
                out[st.name] = gone
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return dvc_tree(tmp_path_factory.mktemp("dvc-static"), with_code=False)


def test_every_cmd_is_a_real_cli_command(tree):
    runner = CliRunner()
    for st in stages(tree):
        argv = shlex.split(st.cmd)
        assert argv[0] == "brainxai", st.cmd
        res = runner.invoke(app, [*argv[1:], "--help"])
        assert res.exit_code == 0, (st.name, st.cmd, res.output)
        assert "Usage:" in res.output, (st.name, res.output)


def test_every_dep_exists_in_the_repo_or_is_an_output_of_another_stage(tree):
    resolved = stages(tree)
    outs = {st.name: [Path(o.def_path) for o in st.outs] for st in resolved}
    for st in resolved:
        mine = outs[st.name]
        for dep in st.deps:
            if dep.def_path == "params.yaml":  # the params of the stage
                continue
            path = Path(dep.def_path)
            producers = [
                name for name, paths in outs.items()
                if any(_inside(path, o) or _inside(o, path) for o in paths)
            ]  # fmt: skip
            assert not any(_inside(path, o) for o in mine), (st.name, path)
            assert producers or (REPO / path).exists(), (st.name, f"{path} is missing")


def test_report_stage_depends_on_the_code_that_computes_its_numbers(tree):
    """Every brainxai module the report's code imports lies inside one of the report
    stage's deps, so `dvc repro` re-runs the report when e.g. the targets' rules change."""
    import re

    by_name = {st.name: st for st in stages(tree)}
    deps = [Path(d.def_path) for d in by_name["report"].deps]
    files = [*(REPO / "src/brainxai/report").rglob("*.py"), REPO / "tasks/report.py",
             REPO / "flows/report.py"]  # fmt: skip
    imported = {m for f in files for m in re.findall(r"from (brainxai[\w.]*) import",
                                                      f.read_text())}  # fmt: skip
    for mod in sorted(imported):
        rel = Path("src", *mod.split("."))
        path = rel.with_suffix(".py") if (REPO / rel.with_suffix(".py")).exists() else rel
        assert any(_inside(path, d) for d in deps), f"report stage misses a dep on {path}"


def test_finetune_follows_the_framework_branch_of_every_init(tree):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    inits, frameworks = params["finetune"]["inits"], params["pretrain"]["frameworks"]
    by_name = {st.name: st for st in stages(tree)}
    assert {n for n in by_name if n.startswith("finetune@")} == {f"finetune@{i}" for i in inits}
    eval_deps = {d.def_path for d in by_name["finetune_eval"].deps}
    for init in inits:
        st = by_name[f"finetune@{init}"]
        assert st.cmd == f"brainxai finetune run --init {init}"
        deps = {d.def_path for d in st.deps}
        ssl = f"models/ssl/{init}/backbone.safetensors"
        assert (ssl in deps) == (init in frameworks), (init, deps)
        assert not any(f"/{other}" in d for d in deps for other in inits if other != init)
        assert {f"models/finetune/{init}", f"reports/finetune/{init}"} <= {
            o.def_path for o in st.outs
        }
        assert {f"reports/finetune/{init}", f"models/finetune/{init}/index.parquet"} <= eval_deps
    assert by_name["finetune_eval"].cmd == "brainxai finetune eval"
    # xai and register read the fine-tuned runs: every init's directory and the index, and
    # not the planted controls' models (re-running a control must not re-run them)
    for name in ("xai", "register"):
        deps = {d.def_path for d in by_name[name].deps}
        want = {"models/finetune/index.parquet"} | {f"models/finetune/{i}" for i in inits}
        assert want <= deps, (name, want - deps)
        assert not any(d in ("models", "models/finetune") or "controls" in d for d in deps), name


def _placeholders(root: Path) -> None:
    """A file (or a directory holding one) for every declared output and every dependency
    inside an output directory, so ``dvc commit`` can record a lock without training."""
    resolved = stages(root)
    for path in [Path(o.def_path) for st in resolved for o in st.outs] + [
        Path(d.def_path) for st in resolved for d in st.deps if d.def_path != "params.yaml"
    ]:
        p = root / path
        if p.exists():
            continue
        if p.suffix:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("{}\n" if p.suffix == ".json" else f"placeholder {path}\n")
        else:
            p.mkdir(parents=True)
            (p / "placeholder.txt").write_text(f"placeholder {path}\n")


def test_changing_one_frameworks_param_reruns_that_branch_only(tmp_path, monkeypatch):
    from dvc.repo import Repo

    root = dvc_tree(tmp_path / "branch")
    monkeypatch.chdir(root)  # the DVC API resolves stage paths against the working dir
    _placeholders(root)
    repo = Repo(str(root))
    repo.commit(force=True)
    assert repo.status() == {}, "a recorded study is up to date"
    params = yaml.safe_load((root / "params.yaml").read_text())
    frameworks = [f for f in params["pretrain"]["frameworks"] if f in params["finetune"]["inits"]]
    assert "byol" in frameworks and "simclr" in frameworks
    # DVC compares parsed values key by key: rewriting the file changes only this one
    params["pretrain"]["byol"]["base_lr"] *= 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    repo = Repo(str(root))
    assert set(repo.status()) == {"pretrain@byol"}  # only its own params changed
    # what `dvc repro --dry --force-downstream` would run once pretrain@byol has a new backbone
    ran = {st.name for st in repo.reproduce(dry=True, force_downstream=True)}
    branch = {"pretrain@byol", "finetune@byol", "finetune_eval", "xai"}
    assert branch <= ran, ran
    others = {f"{s}@{f}" for s in ("pretrain", "finetune") for f in frameworks if f != "byol"}
    others |= {"synth", "ingest", "difficulty", "standardize", "pretrain_cache", "finetune_cache",
               "finetune@random", "pseudolabel", "classify3d"}  # fmt: skip
    assert not ran & others, ran & others
    # anything else that runs aggregates over every framework (the report, the registry):
    # downstream of pretrain@byol in the DAG (DVC's edges point from a stage to its inputs)
    import networkx as nx

    graph = repo.index.graph
    byol = next(st for st in graph if st.name == "pretrain@byol")
    downstream = {st.name for st in nx.ancestors(graph, byol)} | {"pretrain@byol"}
    assert branch <= downstream and ran <= downstream, ran - downstream


def _dvc_json(root: Path, *args: str) -> dict:
    out = subprocess.run(
        [str(BIN / "dvc"), *args, "--json"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-2000:])
    return json.loads(out.stdout)


def test_metrics_show_and_plots_show_read_the_stage_files(tmp_path):
    root = dvc_tree(tmp_path / "show", with_code=False)
    metrics = root / "reports" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "finetune.json").write_text(json.dumps({"ok": 60, "probe.simclr.f1.macro_f1": 0.27}))
    (metrics / "difficulty.json").write_text(json.dumps({"kaggle17": {"cnn_accuracy": 0.275}}))
    curve = root / "reports" / "finetune" / "label_efficiency.csv"
    curve.parent.mkdir(parents=True)
    curve.write_text(
        "fraction,init,protocol,macro_f1,ci_low,ci_high,sd,n_seeds,series\n"
        "0.1,simclr,probe,0.20,0.10,0.30,0.01,2,probe/simclr\n"
        "1.0,simclr,probe,0.40,0.30,0.50,0.01,2,probe/simclr\n"
        "0.1,random,probe,0.10,0.05,0.20,0.01,2,probe/random\n"
    )
    traj = root / "reports" / "xai" / "trajectory.csv"
    (traj.parent / "plots").mkdir(parents=True)
    shutil.copy(REPO / "docs" / "img" / "kaggle_montage.png", traj.parent / "plots" / "a.png")
    traj.write_text(
        "model,method,epoch,klass,class_name,family,cscore\n"
        "m1,gradcam,1,-1,global,finetune,0.5\n"
        "m1,gradcam,3,-1,global,finetune,0.7\n"
        "m1,gradcam,3,0,glioma,finetune,0.9\n"
    )

    shown = _dvc_json(root, "metrics", "show")
    data = shown[""]["data"] if "" in shown else shown["workspace"]["data"]
    assert data["reports/metrics/finetune.json"]["data"]["probe.simclr.f1.macro_f1"] == 0.27
    assert data["reports/metrics/difficulty.json"]["data"]["kaggle17"]["cnn_accuracy"] == 0.275

    plots = _dvc_json(root, "plots", "show")
    assert not plots.get("errors"), plots.get("errors")
    (le,) = plots["data"]["label_efficiency"]
    values = le["content"]["data"]["values"]
    got = {(v["series"], float(v["fraction"])): float(v["macro_f1"]) for v in values}
    assert got == {("probe/simclr", 0.1): 0.2, ("probe/simclr", 1.0): 0.4,
                   ("probe/random", 0.1): 0.1}  # fmt: skip
    assert le["content"]["encoding"]["color"]["field"] == "series"
    (cs,) = plots["data"]["cscore_trajectory"]
    rows = cs["content"]["data"]["values"]
    assert [(r["epoch"], r["cscore"]) for r in rows if r["class_name"] == "global"] == [
        ("1", "0.5"),
        ("3", "0.7"),
    ]
    assert {"filter": "datum.class_name == 'global'"} in cs["content"]["transform"]
    assert any(k.endswith("a.png") for k in plots["data"])


def _env(at: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BRAINXAI_ROOT": str(at),
        "PREFECT_HOME": str(at / ".prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{at / 'mlruns.db'}",
        "BRAINXAI_ARTIFACTS": str(at / "mlartifacts"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip


def _run(at: Path, *cmd: str) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=at, env=_env(at), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> dict:
    """A tiny study with git + DVC, its foundation stages reproduced twice."""
    root = make_study(tmp_path_factory.mktemp("dvc-repro") / "study", copy_code=True)
    shutil.copytree(REPO / "plot_templates", root / "plot_templates")
    _run(root, "git", "init", "-q")
    _run(root, DVC, "init", "-q")
    first = _run(root, DVC, "repro", *FOUNDATION)
    second = _run(root, DVC, "repro", *FOUNDATION)
    return {"root": root, "first": first.stdout, "second": second.stdout}


def test_dvc_repro_creates_every_declared_out_and_a_second_run_does_nothing(reproduced):
    root = reproduced["root"]
    for stage in FOUNDATION:
        assert f"Running stage '{stage}'" in reproduced["first"]
    assert missing_outs(root, FOUNDATION) == {}
    assert (root / "dvc.lock").is_file()
    assert "Running stage" not in reproduced["second"] and "up to date" in reproduced["second"]
    assert "up to date" in _run(root, DVC, "status", *FOUNDATION).stdout


def test_push_to_a_local_remote_clone_pull_and_nothing_to_run(reproduced, tmp_path):
    """`dvc push` to a local-directory remote, `git clone` elsewhere, `dvc pull`: the clone
    is up to date, `dvc repro` runs nothing and `dvc metrics show` is identical."""
    root, remote, clone = reproduced["root"], tmp_path / "remote", tmp_path / "clone"
    _run(root, DVC, "remote", "add", "-d", "local", str(remote))
    _run(root, DVC, "push", *FOUNDATION)
    assert any(remote.rglob("*")), "the remote holds the pushed cache"
    with (root / ".gitignore").open("a") as f:
        f.write(".prefect/\nmlruns.db\nmlartifacts/\n")
    _run(root, "git", "add", "-A")
    _run(root, "git", "commit", "-q", "-m", "study")
    _run(tmp_path, "git", "clone", "-q", str(root), str(clone))
    assert not (clone / "data" / "processed" / "manifest.parquet").exists()
    _run(clone, DVC, "pull", *FOUNDATION)
    assert (clone / "data" / "processed" / "manifest.parquet").is_file()
    assert "up to date" in _run(clone, DVC, "status", *FOUNDATION).stdout
    again = _run(clone, DVC, "repro", *FOUNDATION).stdout
    assert "Running stage" not in again and "up to date" in again
    assert _dvc_json(clone, "metrics", "show") == _dvc_json(root, "metrics", "show")
