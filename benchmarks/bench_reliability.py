"""Reliability of the study pipeline (issue 16), measured end to end through the CLI.

1. Hostile inputs: files and configurations built so their fault is known, each given to
   the code that meets it in a real run (ingestion, the source check, standardize's loader,
   the split step, the openai endpoint check); the table says what each got.
2. Crash and resume: ``brainxai data synth`` / ``brainxai data ingest`` SIGKILLed mid-run
   (process group, after a given number of output files exist), then run again; every
   output's md5 is compared with a clean run's, partial files and leftovers are counted.
3. X -> Y -> X: ingestion with ``min_side_2d`` 64, 150, 64; counts, manifest md5 and the
   MLflow run's param and metric of each run.
4. A moved study: the clean study moved to another directory, synth + ingest run again:
   tasks cached vs run, files rewritten, absolute paths of either location in any output
   table or JSON, whether the old location is written to again.

Every run is a separate ``brainxai`` process with the embedded defaults (Prefect home,
``mlruns.db`` and ``mlartifacts/`` inside the study), on a tiny synthetic cohort (8
volumes, 18 2D subjects; the 3D set is too small for val/test, so
``split.allow_empty_splits: true``).

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_reliability.py [--work DIR]``; prints
the Markdown of benchmarks/RESULTS.md#reliability and writes ``reliability.json`` in DIR.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "brainxai"
#: The bench cohort: small enough for minutes, two 3D subjects per diagnosis so a kill
#: can land between volumes.
SYNTH = {
    "n_subjects_3d_per_class": 2,
    "n_subjects_2d_per_group": 3,
    "slices_per_subject": 2,
    "spacing_choices": [[1.5, 1.5, 1.5]],
    "image_size_min": 96,
    "image_size_max": 200,
}
CLEAN_ENV_DROP = (
    "PREFECT_HOME", "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "BRAINXAI_ARTIFACTS",
    "BRAINXAI_PARENT_RUN_ID", "BRAINXAI_PROFILE", "PREFECT_LOCAL_STORAGE_PATH",
)  # fmt: skip


# --------------------------------------------------------------------------- helpers


def make_study(dest: Path, **split: Any) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "smoke"
    smoke = params["profiles"]["smoke"]
    smoke["synth"] = {**smoke.get("synth", {}), **SYNTH}
    params["split"].update({"allow_empty_splits": True, **split})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    return dest


def edit_params(root: Path, section: str, key: str, value: Any) -> None:
    p = yaml.safe_load((root / "params.yaml").read_text())
    node = p
    for part in section.split("."):
        node = node[part]
    node[key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV_DROP}
    env.update(BRAINXAI_ROOT=str(root), BRAINXAI_FSYNC="1", PYTHONUNBUFFERED="1")
    return env


def cli(root: Path, *args: str) -> tuple[int, str, float]:
    """``brainxai <args>`` in ``root``; (rc, combined output, seconds)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(BIN), *args], cwd=root, env=env_for(root), capture_output=True, text=True
    )
    return out.returncode, out.stdout + out.stderr, time.perf_counter() - t0


def flow_runs(root: Path) -> set[str]:
    """Ids of the flow runs in the study's embedded Prefect database."""
    db = root / ".prefect" / "prefect.db"
    if not db.is_file():
        return set()
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT id FROM flow_run")}


def task_states(root: Path, before: set[str]) -> dict[str, int]:
    """Task runs per final state ("Completed", "Cached", ...) of the flow runs made since
    ``before``, read from the study's Prefect database (a cached result whose files do not
    match is one "Cached" and one "Completed" run)."""
    new = flow_runs(root) - before
    with sqlite3.connect(root / ".prefect" / "prefect.db") as con:
        rows = con.execute(
            f"SELECT state_name, count(*) FROM task_run WHERE flow_run_id IN "
            f"({','.join('?' * len(new))}) GROUP BY state_name",
            sorted(new),
        ).fetchall()
    return dict(sorted(rows))


def is_temp(p: Path) -> bool:
    from brainxai.atomic import is_temp as _is_temp

    return _is_temp(p)


def outputs(root: Path) -> dict[str, str]:
    """md5 of every output file (data/, reports/), temporaries left out."""
    out = {}
    for sub in ("data", "reports"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and not is_temp(p):
                out[p.relative_to(root).as_posix()] = hashlib.md5(p.read_bytes()).hexdigest()
    return out


def temps(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for sub in ("data", "reports")
        for p in (root / sub).rglob("*")
        if p.is_file() and is_temp(p)
    )


def decodes(p: Path) -> bool:
    """Whether a final image/table file is complete (decodes to its end)."""
    try:
        if p.name.endswith(".nii.gz"):
            import nibabel as nib

            np.asarray(nib.load(p).dataobj)
        elif p.suffix.lower() in {".png", ".jpg", ".jpeg"}:
            from PIL import Image

            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".parquet":
            import pandas as pd

            pd.read_parquet(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        return True
    except Exception:
        return False


# ------------------------------------------------------------------ 1. hostile inputs


def hostile(work: Path) -> list[dict[str, str]]:
    from PIL import Image

    from brainxai.faults import raw_nifti
    from brainxai.ingest import IngestConfig, ingest
    from brainxai.ingest.sources import SourceError, check_sources
    from brainxai.pseudolabel.config import OpenAIConfig
    from brainxai.splits import EmptySplitError, SplitConfig, assign_splits, check_split_sizes
    from brainxai.standardize import BadInput
    from brainxai.standardize.orient import load_volume

    rows: list[dict[str, str]] = []
    work.mkdir(parents=True, exist_ok=True)

    # --- 3D (BIDS layout) --------------------------------------------------------------
    bids = work / "bids"
    subs = ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05", "sub-06", "sub-07"]
    bids.mkdir()
    (bids / "participants.tsv").write_text(
        "participant_id\tdiagnosis\n" + "".join(f"{s}\tglioma\n" for s in subs)
    )
    eye = np.eye(4)[:3]
    singular = eye.copy()
    singular[1] = 0.0
    nan = eye.copy()
    nan[0, 0] = np.nan
    anat = lambda s: bids / s / "anat" / f"{s}_T1w.nii.gz"  # noqa: E731
    raw_nifti(anat("sub-01"), eye)
    cases_3d = {
        "sub-02": ("NIfTI, zero srow_y (singular affine)", raw_nifti(anat("sub-02"), singular)),
        "sub-03": ("NIfTI, NaN in the affine", raw_nifti(anat("sub-03"), nan)),
        "sub-04": (
            "NIfTI declaring 512^3 float32 (512 MiB) in a few kB",
            raw_nifti(anat("sub-04"), eye, shape=(512,) * 3, data=bytes(16384)),
        ),
    }
    full = anat("sub-01").read_bytes()
    anat("sub-05").parent.mkdir(parents=True)
    anat("sub-05").write_bytes(full[: len(full) // 2])
    cases_3d["sub-05"] = ("NIfTI cut in half", anat("sub-05"))
    anat("sub-06").parent.mkdir(parents=True)
    anat("sub-06").write_bytes(b"")
    cases_3d["sub-06"] = ("0-byte .nii.gz", anat("sub-06"))
    anat("sub-07").parent.mkdir(parents=True)
    os.symlink(anat("sub-07"), anat("sub-07"))
    cases_3d["sub-07"] = ("symlink loop", anat("sub-07"))
    res = ingest(bids, "bids", IngestConfig(min_dim_3d=8), base_dir=work, work_dir=work / "w")
    names = res.quarantine["path"].map(lambda p: Path(p).name)
    got = dict(zip(names, res.quarantine["reason"], strict=True))
    for _s, (what, path) in cases_3d.items():
        rows.append(
            {"input": what, "met by": "ingest (bids)", "got": got.get(path.name, "ingested")}
        )
    n_ok = len(res.manifest)
    rows.append({"input": "valid NIfTI beside them", "met by": "ingest (bids)",
                 "got": "ingested" if n_ok == 1 else f"{n_ok} ingested"})  # fmt: skip
    try:
        load_volume(raw_nifti(work / "std" / "s.nii", singular))
        got_std = "loaded"
    except BadInput as exc:
        got_std = f"BadInput {exc.reason} (quarantined, the other sessions go on)"
    rows.append({"input": "NIfTI with a singular affine", "met by": "standardize loader",
                 "got": got_std})  # fmt: skip

    # --- 2D (Kaggle layout) --------------------------------------------------------------
    kag = work / "kaggle"
    folder = kag / "Glioma T1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        img = (rng.random((80, 80)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"g{i}.png")
    Image.fromarray((rng.random((400, 400)) * 255).astype(np.uint8)).save(folder / "big.png")
    outside = work / "elsewhere" / "secret.png"
    outside.parent.mkdir()
    Image.fromarray((rng.random((80, 80)) * 255).astype(np.uint8)).save(outside)
    os.symlink(folder / "loop.png", folder / "loop.png")
    os.symlink(folder / "gone.png", folder / "dangling.png")
    os.symlink(outside, folder / "outside.png")
    cfg2 = IngestConfig(min_side_2d=32, max_pixels_2d=300 * 300)
    res2 = ingest(kag, "kaggle17", cfg2, base_dir=work)
    names2 = res2.quarantine["path"].map(lambda p: Path(p).name)
    got2 = dict(zip(names2, res2.quarantine["reason"], strict=True))
    for name, what in (("big.png", "PNG of 400x400 px over max_pixels_2d = 300x300"),
                       ("loop.png", "symlink loop"), ("dangling.png", "dangling symlink"),
                       ("outside.png", "symlink to a file outside the source root")):  # fmt: skip
        rows.append(
            {"input": what, "met by": "ingest (kaggle17)", "got": got2.get(name, "ingested")}
        )

    # --- DICOM ---------------------------------------------------------------------------
    import copy

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    os.environ["BRAINXAI_DICOM_SALT"] = "bench-salt"
    tmpl = pydicom.dcmread(get_testdata_file("MR_small.dcm"))

    def series(folder: Path) -> list[Path]:  # 16 slices of patient Doe^Jane, PID-99231
        folder.mkdir(parents=True)
        uid, study, paths = generate_uid(), generate_uid(), []
        for k in range(16):
            ds = copy.deepcopy(tmpl)
            ds.PatientName, ds.PatientID = "Doe^Jane", "PID-99231"
            ds.PatientBirthDate = "19600101"
            ds.SeriesInstanceUID, ds.StudyInstanceUID = uid, study
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * k]
            ds.PixelData = np.full((64, 64), 100 * (k + 1), dtype=np.int16).tobytes()
            paths.append(folder / f"im{k:03d}.dcm")
            ds.save_as(paths[-1], enforce_file_format=True)
        return paths

    dcm = work / "dicom" / "Doe_Jane_PID-99231" / "series1"
    paths = series(dcm)
    series(dcm.parent / "series2")  # intact: ingested
    raw = paths[0].read_bytes()
    paths[0].write_bytes(raw[: len(raw) - 3000])
    (dcm / "zero.dcm").write_bytes(b"")
    labels = work / "dicom_labels.csv"
    labels.write_text("PatientID,diagnosis\nPID-99231,Glioma\n")
    res3 = ingest(work / "dicom", "dicom", IngestConfig(min_dim_3d=4), work,
                  work_dir=work / "wd", labels_csv=labels)  # fmt: skip
    q3 = res3.quarantine
    for name, what in (("zero.dcm", "0-byte .dcm"),
                       ("im000.dcm", "truncated .dcm in folder Doe_Jane_PID-99231")):  # fmt: skip
        hit = q3[q3["path"].str.endswith(name)]
        got3 = hit["reason"].iloc[0] if len(hit) else "ingested"
        if len(hit):
            got3 += f"; stored as {hit['path'].iloc[0]}"
        rows.append({"input": what, "met by": "ingest (dicom)", "got": got3})
    text = q3.to_csv() + res3.manifest.to_csv()
    for f in (work / "wd").rglob("*"):  # the converted NIfTI: names and header bytes
        text += str(f.relative_to(work)) + (
            gzip.decompress(f.read_bytes()).decode("latin-1") if f.suffix == ".gz" else ""
        )
    leaked = [s for s in ("Doe", "Jane", "99231", "19600101") if s in text]
    got_phi = (
        f"{len(res3.manifest)} series ingested (the intact one); PHI strings in tables, "
        f"NIfTI names and headers: {leaked or 'none'}"
    )
    rows.append({"input": "PHI in tags and folder names", "met by": "ingest (dicom)",
                 "got": got_phi})  # fmt: skip
    del os.environ["BRAINXAI_DICOM_SALT"]

    # --- configuration -------------------------------------------------------------------
    (work / "data" / "a").mkdir(parents=True)
    bad = [
        {"name": "a", "layout": "kaggle17", "root": "data/a"},
        {"name": "a", "layout": "kaggle17", "root": "data/a"},
        {"name": "b", "layout": "kaggle17", "root": "data/missing"},
    ]
    try:
        check_sources(bad, work)
        got4 = "accepted"
    except SourceError as exc:
        got4 = "SourceError before any work: " + " ".join(str(exc).split())[:170]
    rows.append({"input": "source list: duplicate name + missing root", "met by": "ingest flow",
                 "got": got4})  # fmt: skip
    man = res2.manifest.copy()
    man["subject"] = [f"s{i}" for i in range(len(man))]
    man = assign_splits(man.iloc[:2], SplitConfig())
    try:
        check_split_sizes(man, SplitConfig())
        got5 = "accepted"
    except EmptySplitError as exc:
        got5 = f"EmptySplitError: {str(exc)[:150]}..."
    rows.append({"input": "2 patients in one group (70/15/15 gives 2/0/0)", "met by": "split step",
                 "got": got5})  # fmt: skip
    try:
        OpenAIConfig(base_url="http://10.0.0.5:8000/v1")
        got6 = "accepted"
    except ValueError as exc:
        got6 = f"refused: {str(exc)[:110]}..."
    rows.append({"input": "openai base_url http://10.0.0.5:8000/v1", "met by": "pseudolabel config",
                 "got": got6})  # fmt: skip
    return rows


# ----------------------------------------------------------------- 2. crash and resume


def kill_when(root: Path, args: list[str], ready, timeout: float = 600) -> dict[str, Any]:
    """Start ``brainxai <args>``, SIGKILL its process group once ``ready(root)`` holds."""
    proc = subprocess.Popen(
        [str(BIN), *args], cwd=root, env=env_for(root), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    try:
        while not ready(root):
            if proc.poll() is not None:
                raise RuntimeError(f"{args} finished (rc {proc.returncode}) before the kill point")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{args}: kill point not reached")
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    return {"killed_after_s": round(time.perf_counter() - t0, 1), "rc": proc.returncode}


def _finals(root: Path, pattern: str) -> list[Path]:
    return [p for p in root.glob(pattern) if p.is_file() and not is_temp(p)]


def _planted(root: Path) -> set[Path]:
    """The deliberately broken files synth plants (faults.csv), if written yet."""
    csv = root / "data/raw/synth/kaggle2d_meta/faults.csv"
    if not csv.is_file():
        return set()
    import pandas as pd

    return {root / "data/raw/synth/kaggle2d" / p for p in pd.read_csv(csv)["path"]}


def crash_resume(work: Path, clean: dict[str, str]) -> list[dict[str, Any]]:
    n3d = len([k for k in clean if k.endswith(".nii.gz") and "/derivatives/" not in k])
    n2d = len([k for k in clean if k.startswith("data/raw/synth/kaggle2d/")])
    points = [
        ("synth, after the 1st 3D volume", ["data", "synth"],
         lambda r: len(_finals(r, "data/raw/synth/cohort3d/sub-*/anat/*.nii.gz")) >= 1),
        ("synth, half of the 3D volumes", ["data", "synth"],
         lambda r: len(_finals(r, "data/raw/synth/cohort3d/sub-*/anat/*.nii.gz")) >= n3d // 2),
        ("synth, during the 2D export", ["data", "synth"],
         lambda r: len(_finals(r, "data/raw/synth/kaggle2d/*/*")) >= n2d // 3),
        ("ingest, after the 1st source table", ["data", "ingest"],
         lambda r: len(_finals(r, "data/interim/ingest/*.parquet")) >= 1),
    ]  # fmt: skip
    rows = []
    for i, (what, args, ready) in enumerate(points):
        root = make_study(work / f"kill{i}")
        if args[1] == "ingest":
            rc, log, _ = cli(root, "data", "synth")
            assert rc == 0, log[-2000:]
        kill = kill_when(root, args, ready)
        present = [p for p in (root / "data").rglob("*") if p.is_file() and not is_temp(p)]
        planted = _planted(root)
        broken = [
            p.relative_to(root).as_posix() for p in present if p not in planted and not decodes(p)
        ]
        left = temps(root)
        t0 = time.perf_counter()
        before = flow_runs(root)
        for stage in ("synth", "ingest"):
            rc, log, _ = cli(root, "data", stage)
            assert rc == 0, log[-3000:]
        resumed = outputs(root)
        diff = sorted(k for k in set(clean) | set(resumed) if clean.get(k) != resumed.get(k))
        rows.append({
            "kill point": what,
            "killed after s": kill["killed_after_s"],
            "final files at the kill": len(present),
            "partial final files": len(broken),
            "temp files at the kill": len(left),
            "resume s": round(time.perf_counter() - t0, 1),
            "resume tasks": task_states(root, before),
            "outputs": len(resumed),
            "md5 differing from clean": diff,
            "temp files after resume": temps(root),
        })  # fmt: skip
    return rows


# ------------------------------------------------------------------------- 3. X->Y->X


def xyx(root: Path) -> list[dict[str, Any]]:
    import mlflow
    from mlflow.tracking import MlflowClient

    out = []
    for side in (64, 150, 64):
        edit_params(root, "ingest.config", "min_side_2d", side)
        before = flow_runs(root)
        rc, log, secs = cli(root, "data", "ingest")
        assert rc == 0, log[-3000:]
        res = json.loads((root / "reports/metrics/ingest.json").read_text())
        man = hashlib.md5((root / "data/processed/manifest.parquet").read_bytes()).hexdigest()
        out.append({"min_side_2d": side, "found": res["found"], "ingested": res["ingested"],
                    "quarantined": res["quarantined"], "manifest md5": man[:12],
                    "tasks": task_states(root, before), "seconds": round(secs, 1)})  # fmt: skip
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlruns.db'}")
    runs = MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("brainxai").experiment_id],
        "tags.`brainxai.stage` = 'ingest'",
        order_by=["attributes.start_time ASC"],
    )[-3:]
    for row, run in zip(out, runs, strict=True):
        row["mlflow param min_side_2d"] = run.data.params["ingest.config.min_side_2d"]
        row["mlflow metric ingested"] = int(run.data.metrics["ingest.ingested"])
    return out


# ------------------------------------------------------------------------ 4. moved study


def moved(old: Path, new: Path) -> dict[str, Any]:
    import pandas as pd

    before = {
        p.relative_to(old).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (old / "data").rglob("*")
        if p.is_file()
    }
    new.parent.mkdir(parents=True, exist_ok=True)
    old.rename(new)  # what `mv` does on one file system
    before_runs = flow_runs(new)
    for stage in ("synth", "ingest"):
        rc, log, _ = cli(new, "data", stage)
        assert rc == 0, log[-3000:]
    after = {
        p.relative_to(new).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (new / "data").rglob("*")
        if p.is_file()
    }
    rewritten = sorted(k for k in before if after.get(k) != before[k])
    leaks = []
    for p in sorted(new.rglob("*")):
        if not p.is_file() or ".prefect" in p.parts or "mlartifacts" in p.parts:
            continue
        if p.suffix == ".parquet":
            text = pd.read_parquet(p).astype(str).to_csv()
        elif p.suffix in {".json", ".md", ".tsv", ".csv"}:
            text = p.read_text(errors="replace")
        else:
            continue
        if str(old) in text or str(new) in text:
            leaks.append(p.relative_to(new).as_posix())
    return {
        "tasks after the move": task_states(new, before_runs),
        "data files rewritten": rewritten,
        "tables/JSON naming either location": leaks,
        "old location written again": old.exists(),
        "old location contents": sorted(
            p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()
        )[:10]
        if old.exists()
        else [],
    }


# ------------------------------------------------------------------------------- main


PARTS = ("hostile", "crash", "xyx", "moved")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (kept)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict[str, Any] = {}
    if "hostile" in parts:
        result["hostile"] = hostile(work / "hostile")
    if parts & {"crash", "xyx", "moved"}:
        result.update(cohort_parts(work, parts))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (work / "reliability.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))
    print(f"\n(work dir: {work})")


def cohort_parts(work: Path, parts: set[str]) -> dict[str, Any]:
    import pandas as pd

    result: dict[str, Any] = {}
    clean = make_study(work / "clean" / "study")
    timing = {}
    for stage in ("synth", "ingest"):
        rc, log, secs = cli(clean, "data", stage)
        assert rc == 0, log[-3000:]
        timing[stage] = round(secs, 1)
    clean_md5 = outputs(clean)
    q = pd.read_parquet(clean / "data/processed/quarantine.parquet")
    planted = pd.read_csv(clean / "data/raw/synth/kaggle2d_meta/faults.csv")
    planted["got"] = planted["path"].map(
        lambda p: next(
            (r for qp, r in zip(q["path"], q["reason"], strict=True) if qp.endswith(p)), "ingested"
        )
    )
    result["planted_faults"] = planted[["kind", "expected_reason", "got"]].to_dict("records")
    result["clean"] = {"outputs": len(clean_md5), "seconds": timing}
    if "crash" in parts:
        result["crash_resume"] = crash_resume(work / "crash", clean_md5)
    if "xyx" in parts:
        result["xyx"] = xyx(clean)
    if "moved" in parts:
        result["moved"] = moved(clean, work / "moved" / "elsewhere" / "study")
    return result


def markdown(r: dict[str, Any]) -> str:
    out: list[str] = []
    if "hostile" in r:
        out += ["#### Hostile inputs", "", "| input | met by | got |", "|---|---|---|"]
        out += [f"| {x['input']} | {x['met by']} | {x['got']} |" for x in r["hostile"]]
    if "planted_faults" in r:
        out += ["", "Planted into the synthetic 2D export (`synth_faults`):", "",
                "| fault | expected | got |", "|---|---|---|"]  # fmt: skip
        out += [f"| {x['kind']} | {x['expected_reason']} | {x['got']} |"
                for x in r["planted_faults"]]  # fmt: skip
    if "crash_resume" in r:
        c = r["clean"]
        out += ["", "#### Crash and resume", "",
                f"Clean run: {c['outputs']} output files, synth {c['seconds']['synth']} s, "
                f"ingest {c['seconds']['ingest']} s (each including ~15 s of process and "
                "Prefect start).", "",
                "| kill point (SIGKILL, process group) | killed after s | final files / partial "
                "/ temps at the kill | resume (synth + ingest) s | resume tasks | outputs md5 "
                "≠ clean | temps after resume |",
                "|---|---|---|---|---|---|---|"]  # fmt: skip
        for x in r["crash_resume"]:
            out.append(
                f"| {x['kill point']} | {x['killed after s']} | {x['final files at the kill']} / "
                f"{x['partial final files']} / {x['temp files at the kill']} | {x['resume s']} | "
                f"{x['resume tasks']} | {len(x['md5 differing from clean'])} of {x['outputs']} | "
                f"{len(x['temp files after resume'])} |"
            )
    if "xyx" in r:
        out += ["", "#### X → Y → X (ingest.config.min_side_2d)", "",
                "| run | min_side_2d | found | ingested | quarantined | manifest md5 | tasks | "
                "MLflow param | MLflow ingested |",
                "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for i, x in enumerate(r["xyx"]):
            out.append(
                f"| {'XYX'[i]} | {x['min_side_2d']} | {x['found']} | {x['ingested']} | "
                f"{x['quarantined']} | `{x['manifest md5']}` | {x['tasks']} | "
                f"{x['mlflow param min_side_2d']} | {x['mlflow metric ingested']} |"
            )
    if "moved" in r:
        m = r["moved"]
        out += ["", "#### A moved study", "",
                f"- tasks after the move: {m['tasks after the move']}",
                f"- data files rewritten: {len(m['data files rewritten'])}",
                "- tables/JSON naming the old or new location: "
                f"{m['tables/JSON naming either location'] or 'none'}",
                f"- old location written again: {m['old location written again']} "
                f"{m['old location contents'] or ''}"]  # fmt: skip
    out += ["", f"Benchmark time: {r['seconds']} s."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
