"""Documentation that the code can contradict (issue 19): the architecture picture is drawn
from the imports, data/README.md names every DVC output under data/, git keeps data/
untracked but data/README.md, the README opens with the two commands and names the pinned
SQLAlchemy (as docs/deployments.md, where the details live)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO


def _make_architecture():
    spec = importlib.util.spec_from_file_location("make_architecture", REPO / "docs" /
                                                  "make_architecture.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_picture_is_the_code_s_import_graph():
    arch = _make_architecture()
    drawn = arch.embedded()
    assert drawn == arch.graph(), "redraw it: python docs/make_architecture.py"
    # spot checks against the import statements, read by hand
    assert "f_standardize --> t_standardize" in drawn and "t_standardize --> b_standardize" in drawn
    assert "f_xai --> t_xai" in drawn and "t_pretrain --> b_ssl" in drawn
    assert "t_caching" not in drawn and "caching" in drawn  # shared layer: one node


def _data_outs() -> set[str]:
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    outs: set[str] = set()
    for st in dvc_yaml["stages"].values():
        for o in st.get("do", st).get("outs", []):
            path = next(iter(o)) if isinstance(o, dict) else o
            if path.startswith("data/"):
                outs.add(path)
    return outs


def test_data_readme_names_every_dvc_output_under_data():
    text = (REPO / "data" / "README.md").read_text()
    outs = _data_outs()
    assert len(outs) >= 10
    missing = [p for p in sorted(outs) if f"`{p.removeprefix('data/')}" not in text]
    assert not missing, missing


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_ignores_the_data_but_not_its_readme():
    def ignored(path: str) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
        return proc.returncode == 0

    assert not ignored("data/README.md")
    assert all(ignored(p) for p in _data_outs()), [p for p in _data_outs() if not ignored(p)]
    assert not ignored("data/raw/mydata.dvc"), "a data set added with `dvc add` is committed"


def test_readme_opens_with_the_two_commands_and_names_the_pinned_sqlalchemy():
    readme = (REPO / "README.md").read_text()
    lines = readme.splitlines()
    assert lines[:3] == ["# brainxai", "", "```bash"], lines[:3]
    assert lines[3].startswith("make study   # ") and lines[4].startswith("make test    # ")
    assert lines[5] == "```"
    (pinned,) = re.findall(r"^SQLAlchemy==(\S+)$", (REPO / "requirements.lock").read_text(),
                           flags=re.M | re.I)  # fmt: skip
    deployments = (REPO / "docs" / "deployments.md").read_text()
    assert "docs/deployments.md" in readme  # the reference the README maps
    for text in (readme, deployments):
        assert f"SQLAlchemy {pinned}" in text
        assert "expected failure until the lock pins" not in text
        assert "PREFECT_UI_API_URL" in text
