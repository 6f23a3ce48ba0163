"""Issue 16 on a real (tiny) study: X -> Y -> X ingestion gives X's numbers in the files and
in MLflow (item 1), a source fingerprint follows content, not size + mtime (item 1), every
file the synth, ingest and difficulty stages write arrives by rename, never written in
place (item 2, watched with inotify), a cohort too small for its splits stops ingestion
or, when allowed, warns in the data card and the report (item 8), a moved study keeps its
cache hits and stores no absolute path (item 9), and the DICOM salt is never logged,
stored or printed (item 7).

Every study here is a copy of one synthesized tiny cohort (``make_study``: 4 volumes, one
per diagnosis, so the 3D data set ``bids`` has train 4, val 0, test 0 patients by
construction).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
import pytest
import yaml

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.atomic import is_temp
from brainxai.splits import EmptySplitError
from tests import fswatch
from tests.conftest import _STATE, make_study

ROOT_TOKEN = "${STUDY_ROOT}"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthesized tiny study; tests work on copies of it."""
    from flows.synth import synth_flow

    root = make_study(tmp_path_factory.mktemp("integrity") / "base")
    synth_flow(root=str(root))
    return root


def _copy(cohort: Path, dest: Path) -> Path:
    shutil.copytree(cohort, dest, symlinks=True)
    return dest


def _edit_params(root: Path, edit) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _stored_results() -> list[str]:
    """Every task result in this session's Prefect result store, as text."""
    out = []
    for f in sorted((_STATE / "prefect" / "storage").glob("*")):
        try:
            record = json.loads(f.read_text())
            out.append(str(cloudpickle.loads(base64.b64decode(record["result"]))))
        except (ValueError, KeyError, UnicodeDecodeError):
            continue  # not a result record
    return out


# --- item 1: X -> Y -> X ----------------------------------------------------------------


def test_ingest_x_then_y_then_x_gives_x_numbers_files_and_mlflow_run(cohort, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from flows.ingest import ingest_flow

    root = _copy(cohort, tmp_path / "xyx")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    outputs = [root / "data/processed/manifest.parquet", root / "reports/datacard.json"]
    results, runs, md5s = [], [], []
    for side in (64, 150, 64):  # X, Y (drops the 2D images under 150 px), X
        _edit_params(root, lambda p, s=side: p["ingest"]["config"].update(min_side_2d=s))
        results.append(ingest_flow(root=str(root)))
        runs.append(mlflow.last_active_run().info.run_id)
        md5s.append([_md5(f) for f in outputs])
    x1, y, x2 = results
    assert y["ingested"] < x1["ingested"] and y["quarantine_reasons"].get("bad_shape", 0) > 0
    assert x2 == x1, "the third run must give X's numbers"
    assert md5s[2] == md5s[0] != md5s[1], "and X's files on disk"
    client = MlflowClient()
    for run_id, side, res in zip(runs, (64, 150, 64), results, strict=True):
        data = client.get_run(run_id).data
        assert data.params["ingest.config.min_side_2d"] == str(side)
        assert data.metrics["ingest.ingested"] == res["ingested"]
        assert data.metrics["ingest.quarantined"] == res["quarantined"]


def test_source_fingerprint_sees_content_with_same_size_and_mtime(tmp_path):
    from brainxai.ingest.stage import tree_fingerprint

    f = tmp_path / "src" / "Glioma T1" / "a.png"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"\x89PNG" + bytes(100))
    st = f.stat()
    before = tree_fingerprint(tmp_path / "src")
    f.write_bytes(b"\x89PNG" + bytes(99) + b"\x01")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert tree_fingerprint(tmp_path / "src") != before


# --- item 2: every output through temp file + rename ------------------------------------


def _cheap_difficulty(p: dict) -> None:
    p["difficulty"].update(cnn_epochs=1, cnn_size=32)


@pytest.mark.skipif(not fswatch.available(), reason="inotify: Linux only")
def test_stage_outputs_arrive_by_rename_never_written_in_place(cohort, tmp_path, monkeypatch):
    """synth, ingest and difficulty rewrite every output of a study whose outputs were all
    deleted (cached results with missing files re-run); an inotify watch on the whole tree
    sees each final file arrive by a rename, and no final name written in place."""
    from flows.difficulty import difficulty_flow
    from flows.ingest import ingest_flow
    from flows.synth import synth_flow

    root = _copy(cohort, tmp_path / "atomic")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    _edit_params(root, _cheap_difficulty)
    ingest_flow(root=str(root))
    difficulty_flow(root=str(root))
    inputs = {root / "params.yaml", root / "dvc.yaml"}
    outputs = {p for p in root.rglob("*") if p.is_file()} - inputs
    assert len(outputs) > 250 and not [p for p in outputs if is_temp(p)]
    for p in outputs:
        p.unlink()

    with fswatch.Watch(root) as watch:
        synth_flow(root=str(root))
        ingest_flow(root=str(root))
        difficulty_flow(root=str(root))
    final = {p for p in root.rglob("*") if p.is_file()} - inputs
    assert final == outputs, "every output rewritten, nothing else"
    assert not watch.overflow
    in_place = sorted(str(p) for p, ev in watch.events.items() if "write" in ev and not is_temp(p))
    assert in_place == []
    unknown = sorted(str(p) for p in final if watch.events.get(p, [None])[-1] != "rename")
    assert unknown == [], "each output's last event is the rename that committed it"
    temps = [p for p, ev in watch.events.items() if is_temp(p)]
    assert len(temps) >= len(final) and all(ev == ["write"] for p, ev in watch.events.items()
                                             if is_temp(p))  # fmt: skip


@pytest.mark.slow  # 430 s on 2 loaded cores: two standardize runs of four sessions
@pytest.mark.skipif(not fswatch.available(), reason="inotify: Linux only")
def test_standardize_outputs_arrive_by_rename_never_written_in_place(cohort, tmp_path, monkeypatch):
    """The same for standardize: NIfTI volumes, masks, transforms, QC images and tables."""
    from flows.ingest import ingest_flow
    from flows.standardize import standardize_flow

    root = _copy(cohort, tmp_path / "std")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    ingest_flow(root=str(root))
    before = {p for p in root.rglob("*") if p.is_file()}
    standardize_flow(root=str(root))
    written = {p for p in root.rglob("*") if p.is_file()} - before
    written |= {root / "reports/metrics/standardize.json"}
    assert sum(p.name.endswith(".nii.gz") for p in written) >= 4 * 4, "4 sessions x 4 sequences"
    for p in written:
        p.unlink()

    with fswatch.Watch(root) as watch:
        standardize_flow(root=str(root))
    final = {p for p in root.rglob("*") if p.is_file()} - before
    assert final == written and not watch.overflow
    in_place = sorted(str(p) for p, ev in watch.events.items() if "write" in ev and not is_temp(p))
    assert in_place == []
    unknown = sorted(str(p) for p in final if watch.events.get(p, [None])[-1] != "rename")
    assert unknown == []


# --- item 8: a cohort too small for its splits ----------------------------------------


def test_small_cohort_stops_ingestion_unless_allowed_then_warns_in_card_and_report(
    cohort, tmp_path, monkeypatch
):
    from brainxai.config import load_params
    from brainxai.report import build_report
    from flows.difficulty import difficulty_flow
    from flows.ingest import ingest_flow

    root = _copy(cohort, tmp_path / "small")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    _edit_params(root, lambda p: p["split"].update(allow_empty_splits=False))
    with pytest.raises(EmptySplitError) as err:
        ingest_flow(root=str(root))
    msg = str(err.value)
    assert "data set bids: no patients in val and test" in msg
    assert "train 4, val 0, test 0 patients" in msg and "allow_empty_splits: true" in msg
    assert "kaggle17" not in msg, "the 2D set has 3 patients per group: 1/1/1"
    for out in ("data/processed/manifest.parquet", "reports/datacard.json"):
        assert not (root / out).exists(), "nothing a later stage could read is written"

    def allow(p: dict) -> None:
        p["split"]["allow_empty_splits"] = True
        _cheap_difficulty(p)

    _edit_params(root, allow)
    out = ingest_flow(root=str(root))
    assert len(out["split_warnings"]) == 1 and out["split_warnings"][0].startswith(
        "data set bids: no patients in val and test"
    )
    card = json.loads((root / "reports/datacard.json").read_text())
    assert card["warnings"][0] == "SPLIT TOO SMALL: " + out["split_warnings"][0]
    assert card["patients_per_dataset_split"]["bids"] == {"train": 4, "val": 0, "test": 0}
    assert card["patients_per_dataset_split"]["kaggle17"] == {"train": 6, "val": 6, "test": 6}
    assert "**SPLIT TOO SMALL: data set bids" in (root / "reports/datacard.md").read_text()

    diff = difficulty_flow(root=str(root))
    assert diff["bids"] == {
        "skipped": "no test images (train 4, test 0): no baseline can be scored"
    }
    assert "logreg" in diff["kaggle17"]

    html = build_report(root, load_params(root / "params.yaml", profile="smoke")).html
    text = html.read_text()
    assert "SPLIT TOO SMALL: data set bids: no patients in val and test" in text
    assert "bids: no test images (train 4, test 0)" in text


# --- item 9: moving the study -----------------------------------------------------------


def _tables_and_text(root: Path) -> dict[str, str]:
    """Every table and text file under ``root`` as text (parquet: all cells)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if p.suffix == ".parquet":
            out[rel] = pd.read_parquet(p).astype(str).to_csv()
        elif p.suffix in {".json", ".md", ".tsv", ".csv", ".txt", ".yaml", ".html"}:
            out[rel] = p.read_text(errors="replace")
    return out


def test_a_moved_study_keeps_its_cache_hits_and_stores_no_absolute_path(
    cohort, tmp_path, monkeypatch
):
    import brainxai.ingest
    import brainxai.synth
    from flows.ingest import ingest_flow
    from flows.synth import synth_flow

    old = _copy(cohort, tmp_path / "here" / "study")
    ingest_flow(root=str(old))
    data = {
        p.relative_to(old): (p.stat().st_ino, p.stat().st_mtime_ns, _md5(p))
        for p in (old / "data").rglob("*")
        if p.is_file()
    }
    new = tmp_path / "moved" / "elsewhere"
    new.parent.mkdir()
    shutil.move(str(old), str(new))
    assert not old.exists()

    ran: list[str] = []
    for mod, name in ((brainxai.synth, "write_subject3d"), (brainxai.synth, "write_subject2d"),
                      (brainxai.ingest, "ingest")):  # fmt: skip
        real = getattr(mod, name)
        monkeypatch.setattr(
            mod, name, lambda *a, _r=real, _n=name, **k: (ran.append(_n), _r(*a, **k))[1]
        )
    monkeypatch.setenv("BRAINXAI_ROOT", str(new))
    synth_flow(root=str(new))
    out = ingest_flow(root=str(new))
    assert ran == [], "every task a cache hit after the move"
    assert out["ingested"] == 117 and out["found"] == 124
    after = {
        p.relative_to(new): (p.stat().st_ino, p.stat().st_mtime_ns, _md5(p))
        for p in (new / "data").rglob("*")
        if p.is_file()
    }
    assert after == data, "no data file rewritten, none missing, none new"

    texts = _tables_and_text(new)
    assert {"data/processed/manifest.parquet", "reports/datacard.json"} <= set(texts)
    for where in (old, new, old.resolve(), new.resolve()):
        leaks = [rel for rel, text in texts.items() if str(where) in text]
        assert leaks == [], (where, leaks)
    results = _stored_results()
    assert any(ROOT_TOKEN in r for r in results), "results name study-relative paths"
    for where in (old, new):
        assert not [r[:200] for r in results if str(where) in r], where


def test_an_experiment_whose_artifacts_lie_elsewhere_is_reported(tmp_path, monkeypatch, caplog):
    """MLflow fixes an experiment's artifact location when it is created; after a move new
    runs would write to the old place: the stage says so (it cannot be changed)."""
    from tasks.mlflow_log import ensure_experiment

    name = f"moved-{tmp_path.name}"
    old, new = tmp_path / "old" / "mlartifacts", tmp_path / "new" / "mlartifacts"
    monkeypatch.setenv("BRAINXAI_ARTIFACTS", str(old))
    eid = ensure_experiment(name)
    caplog.set_level(logging.WARNING, logger="tasks.mlflow_log")
    assert ensure_experiment(name) == eid and "stores artifacts in" not in caplog.text
    monkeypatch.setenv("BRAINXAI_ARTIFACTS", str(new))
    assert ensure_experiment(name) == eid
    assert f"stores artifacts in {old}, not in $BRAINXAI_ARTIFACTS={new}" in caplog.text


# --- item 7: the DICOM salt -------------------------------------------------------------

SECRET_SALT = "s4lt-7f3e9c1d-never-log-me"


def test_dicom_salt_is_never_logged_stored_or_printed(tmp_path, monkeypatch, capfd, caplog):
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    from flows.ingest import ingest_flow
    from tests.test_ingest_dicom import PHI, write_series

    root = make_study(tmp_path / "pacs")
    write_series(root / "data/raw/pacs/Doe_Jane/s1", PHI, "AX T1 POST GD", n=16)
    labels = root / "data/raw/pacs_labels.csv"
    pd.DataFrame({"PatientID": [PHI["PatientID"]], "diagnosis": ["Glioma"]}).to_csv(
        labels, index=False
    )
    source = {"name": "pacs", "layout": "dicom", "root": "data/raw/pacs",
              "labels_csv": "data/raw/pacs_labels.csv"}  # fmt: skip
    _edit_params(root, lambda p: p["ingest"].update(sources=[source]))
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc["stages"]["ingest"]["deps"] += ["data/raw/pacs", "data/raw/pacs_labels.csv"]
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    monkeypatch.setenv("BRAINXAI_DICOM_SALT", SECRET_SALT)
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    caplog.set_level(logging.DEBUG)

    out = ingest_flow(root=str(root))
    assert (out["found"], out["ingested"]) == (1, 1)
    run_id = mlflow.last_active_run().info.run_id

    seen: dict[str, str] = {}
    data = MlflowClient().get_run(run_id).data
    seen["mlflow params/tags/metrics"] = json.dumps([data.params, data.tags, data.metrics])
    art = Path(download_artifacts(run_id=run_id, dst_path=str(tmp_path / "art")))
    arts = [p for p in art.rglob("*") if p.is_file()]
    assert {p.name for p in arts} >= {"manifest.parquet", "datacard.json"}
    for p in arts:
        seen[f"artifact {p.name}"] = p.read_bytes().decode("latin-1")
    for p in root.rglob("*"):
        if p.is_file():
            raw = p.read_bytes()
            seen[str(p)] = (gzip.decompress(raw) if p.suffix == ".gz" else raw).decode("latin-1")
    for i, text in enumerate(_stored_results()):
        seen[f"prefect result {i}"] = text
    printed = capfd.readouterr()
    seen["stdout"], seen["stderr"], seen["logs"] = printed.out, printed.err, caplog.text
    assert "ingest" in seen["logs"] + seen["stderr"], "the capture saw the run's logs"
    assert [k for k, text in seen.items() if SECRET_SALT in text] == []
