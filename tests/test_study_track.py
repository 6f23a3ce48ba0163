"""One MLflow parent run per study run: `brainxai study track -- <cmd>` (dvc repro), the
in-process study run (``brainxai study run``, a Prefect deployment) and the bare fallback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

import tasks  # noqa: F401  (embedded defaults first)
from tasks.mlflow_log import PARENT_ENV, STUDY_ID_TAG, stage_run, study_id, study_run, track_command
from tests.conftest import make_study

BIN = Path(sys.executable).parent

#: a child process with two stage runs, one with a nested run (like a fine-tune cell)
CHILD = textwrap.dedent(
    """
    import mlflow, tasks
    from tasks.mlflow_log import stage_run
    with stage_run("one", {"profile": "smoke"}):
        pass
    with stage_run("two", {"profile": "smoke"}) as stage:
        with mlflow.start_run(run_name="cell", nested=True):
            mlflow.log_metric("m", 1.0)
    """
)


def _children(parent_id: str) -> dict[str, mlflow.entities.Run]:
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        output_format="list",
    )
    return {r.info.run_name: r for r in runs}


def test_tracked_command_nests_every_stage_process_and_finishes(tmp_path):
    root = make_study(tmp_path / "s")
    code, rid = track_command([sys.executable, "-c", CHILD], "smoke", root)
    assert code == 0
    study = mlflow.get_run(rid)
    assert study.info.status == "FINISHED"
    assert study.data.tags["brainxai.entry"] == "track"
    assert study.data.tags[STUDY_ID_TAG] == study_id(root, "smoke")
    assert study.data.metrics["study.exit_code"] == 0
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(rid, "study")}
    assert {"study/params.yaml", "study/dvc.yaml"} <= arts
    stages = _children(rid)
    assert set(stages) == {"one", "two"}
    assert all(r.info.status == "FINISHED" for r in stages.values())
    cells = _children(stages["two"].info.run_id)
    assert list(cells) == ["cell"]  # nested runs nest under their stage run


def test_a_failing_command_marks_the_study_run_failed(tmp_path):
    root = make_study(tmp_path / "s")
    code, rid = track_command([sys.executable, "-c", "import sys; sys.exit(3)"], None, root)
    assert code == 3
    run = mlflow.get_run(rid)
    assert run.info.status == "FAILED" and run.data.metrics["study.exit_code"] == 3
    code, rid = track_command([str(tmp_path / "no-such-command")], None, root)
    assert code == 127 and mlflow.get_run(rid).info.status == "FAILED"
    assert "FileNotFoundError" in mlflow.get_run(rid).data.tags["error"]
    with pytest.raises(ValueError, match="nothing to run"):
        track_command([], None, root)


def test_in_process_study_run_nests_stages_and_restores_the_environment(tmp_path, monkeypatch):
    root = make_study(tmp_path / "s")
    monkeypatch.delenv(PARENT_ENV, raising=False)
    with study_run("smoke", root, entry="prefect") as study:
        assert os.environ[PARENT_ENV] == study.info.run_id
        with stage_run("unit", {"profile": "smoke"}) as stage:
            pass
    assert PARENT_ENV not in os.environ
    assert mlflow.get_run(stage.info.run_id).data.tags["mlflow.parentRunId"] == study.info.run_id
    # under an outer tracked run (`study track -- brainxai study run`) it nests, then restores
    outer = mlflow.MlflowClient().create_run(study.info.experiment_id).info.run_id
    monkeypatch.setenv(PARENT_ENV, outer)
    with study_run("smoke", root, entry="prefect") as inner:
        pass
    assert mlflow.get_run(inner.info.run_id).data.tags["mlflow.parentRunId"] == outer
    assert os.environ[PARENT_ENV] == outer


def test_a_bare_stage_run_is_top_level_tagged_with_its_study_id(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(PARENT_ENV, raising=False)
    with stage_run("bare", {"profile": "smoke"}) as run:
        pass
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert "mlflow.parentRunId" not in tags and tags["brainxai.parent"] == "none"
    assert len(tags[STUDY_ID_TAG]) == 16
    assert "no study run to nest under" in caplog.text


def test_a_stale_parent_id_is_ignored_not_fatal(monkeypatch, caplog):
    monkeypatch.setenv(PARENT_ENV, "0" * 32)
    with stage_run("stale", {"profile": "smoke"}) as run:
        pass
    assert "mlflow.parentRunId" not in mlflow.get_run(run.info.run_id).data.tags
    assert "is not a run of" in caplog.text


def test_study_id_depends_on_profile_and_params(tmp_path):
    root = make_study(tmp_path / "s")
    a = study_id(root, "smoke")
    assert a == study_id(root, "smoke") and a != study_id(root, "full")
    assert study_id(root, None) == a  # no profile given: the file's `profile` key
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + "\n# changed\n")
    assert study_id(root, "smoke") != a


def _env_for(root: Path) -> dict[str, str]:
    env = {**os.environ, "BRAINXAI_ROOT": str(root), "PREFECT_HOME": str(root / ".prefect"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns.db'}",
           "BRAINXAI_ARTIFACTS": str(root / "mlartifacts"),
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    env.pop(PARENT_ENV, None)
    return env


@pytest.mark.slow
def test_cli_study_track_two_real_stages(tmp_path):
    """`brainxai study track -- sh -c "brainxai data synth && brainxai data ingest"`."""
    root = make_study(tmp_path / "s")
    env = _env_for(root)
    cmd = [str(BIN / "brainxai"), "study", "track", "--",
           "sh", "-c", "brainxai data synth && brainxai data ingest"]  # fmt: skip
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    # both stages ran their flows on the one Prefect API `study track` started (params
    # study_track.shared_prefect_api), none on a temporary server of its own
    logs = out.stdout + out.stderr
    assert logs.count("Beginning flow run") >= 2
    assert logs.count("Starting temporary server") <= 1, logs[-3000:]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        (study,) = mlflow.search_runs(
            search_all_experiments=True, filter_string="tags.`brainxai.stage` = 'study'",
            output_format="list",
        )  # fmt: skip
        assert study.info.status == "FINISHED"
        stages = _children(study.info.run_id)
        assert set(stages) == {"synth", "ingest"}
        assert all(r.info.status == "FINISHED" for r in stages.values())
        failed = subprocess.run(
            [str(BIN / "brainxai"), "study", "track", "--", "sh", "-c", "exit 4"],
            cwd=root, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert failed.returncode == 4
        last = mlflow.search_runs(
            search_all_experiments=True, filter_string="tags.`brainxai.stage` = 'study'",
            order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
        )[0]  # fmt: skip
        assert last.info.status == "FAILED"
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
