"""Atomic writes (issue 16 item 2) and movable standardize qc.json (item 9)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainxai.atomic import (
    atomic_open,
    atomic_path,
    ending,
    is_temp,
    remove_stale_temps,
    save_json_atomic,
    save_nifti_atomic,
    temp_path,
    to_parquet_atomic,
    write_bytes_atomic,
    write_text_atomic,
)

REPO = Path(__file__).resolve().parents[1]


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and is_temp(p)]


# --- (a) the helper ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "end"),
    [
        ("sub-01_T1w.nii.gz", ".nii.gz"),
        ("manifest.parquet", ".parquet"),
        ("epoch-0001.pt", ".pt"),
        ("v1.2.json", ".json"),
        ("README", ""),
    ],
)
def test_temp_path_keeps_the_ending_last_and_is_hidden(tmp_path, name, end):
    tmp = temp_path(tmp_path / name)
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(f".{name}.") and tmp.name.endswith(f".tmp{end}")
    assert ending(tmp.name) == end or (end == "" and tmp.suffix == ".tmp")
    assert is_temp(tmp) and not is_temp(tmp_path / name)
    assert temp_path(tmp_path / name) != tmp  # fresh each time


def test_success_writes_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "out.txt"  # parent created
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".tmp.txt") and tmp.parent == target.parent
        tmp.write_text("new")
        assert not target.exists()  # nothing visible before the commit
    assert target.read_text() == "new"
    write_text_atomic(target, "newer")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    save_json_atomic({"b": 1, "a": [1, 2]}, tmp_path / "c.json")
    with atomic_open(tmp_path / "d.csv", "w", newline="") as fh:
        fh.write("x\n1\n")
    assert target.read_text() == "newer"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": [1, 2], "b": 1}
    assert (tmp_path / "d.csv").read_text() == "x\n1\n"
    assert _temps(tmp_path) == []


def test_exception_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    fresh = tmp_path / "never.parquet"
    with pytest.raises(ValueError):
        with atomic_path(fresh) as tmp:
            tmp.write_bytes(b"x")
            raise ValueError
    assert not fresh.exists()
    assert _temps(tmp_path) == []


def test_a_writer_that_creates_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.txt"):
            pass
    assert not (tmp_path / "x.txt").exists()


def test_format_inferring_writers_work_through_the_temp_path(tmp_path):
    nib = pytest.importorskip("nibabel")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    seen = []

    real = df.to_parquet

    def spy(path, **kw):
        seen.append(Path(path).name)
        return real(path, **kw)

    df.to_parquet = spy  # type: ignore[method-assign]
    to_parquet_atomic(df, tmp_path / "t.parquet", index=False)
    assert seen[0].endswith(".tmp.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)

    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    save_nifti_atomic(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    raw = (tmp_path / "v.nii.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"  # gzip, chosen by nibabel from the kept ending
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "v.nii.gz").dataobj), data)

    with atomic_path(tmp_path / "arr.npy") as tmp:
        np.save(tmp, data)  # np.save appends .npy unless the name ends with it
    np.testing.assert_array_equal(np.load(tmp_path / "arr.npy"), data)
    assert _temps(tmp_path) == []


def test_new_files_get_the_usual_permissions(tmp_path):
    write_text_atomic(tmp_path / "p.txt", "x")
    probe = tmp_path / "probe.txt"
    probe.write_text("x")
    assert (tmp_path / "p.txt").stat().st_mode & 0o777 == probe.stat().st_mode & 0o777


# --- (b) a process killed mid-write ------------------------------------------------------

_HALF_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from brainxai.atomic import atomic_open

    target, ready = Path(sys.argv[1]), Path(sys.argv[2])
    chunk = b"N" * (1 << 20)
    with atomic_open(target, "wb") as fh:
        for _ in range(8):  # half of a 16 MiB file
            fh.write(chunk)
        fh.flush()
        ready.write_text("half")
        time.sleep(120)
        for _ in range(8):
            fh.write(chunk)
    """
)


def _run_until_ready(args: list[str], ready: Path, timeout: float = 120.0) -> None:
    """Start ``python args``, wait for ``ready`` to appear, SIGKILL the process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise AssertionError(f"writer exited early with {proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError("writer never reached the kill point")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("old", [None, b"old complete content\n"])
def test_sigkill_mid_write_leaves_old_file_or_nothing(tmp_path, old):
    target = tmp_path / "big.bin"
    if old is not None:
        target.write_bytes(old)
    script = tmp_path / "writer.py"
    script.write_text(_HALF_WRITER)
    ready = tmp_path / "ready"
    _run_until_ready([str(script), str(target), str(ready)], ready)
    if old is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == old
    leftovers = _temps(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 8 << 20  # the partial
    assert remove_stale_temps(tmp_path) == leftovers and _temps(tmp_path) == []


def test_remove_stale_temps_of_removes_only_the_targets_temps(tmp_path):
    from brainxai.atomic import remove_stale_temps_of

    target, other = tmp_path / "manifest.parquet", tmp_path / "manifest_std.parquet"
    mine, theirs = temp_path(target), temp_path(other)
    for p in (target, mine, theirs):
        p.write_bytes(b"x")
    assert remove_stale_temps_of(target, tmp_path / "absent" / "x.json") == [mine]
    assert target.exists() and theirs.exists() and not mine.exists()


# --- (c) a real stage writer: the synthetic 3D cohort ------------------------------------

_SYNTH_KILLED = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import nibabel as nib

    out, ready = Path(sys.argv[1]), Path(sys.argv[2])
    real_save = nib.save
    calls = []

    def slow_save(img, filename):  # dies while the 3rd volume is half on disk
        real_save(img, filename)
        calls.append(filename)
        if len(calls) == 3:
            size = Path(filename).stat().st_size
            with open(filename, "r+b") as fh:
                fh.truncate(size // 2)
            ready.write_text(str(filename))
            import time
            time.sleep(120)

    nib.save = slow_save
    sys.path.insert(0, sys.argv[3])
    from test_atomic_writes import synth_run
    synth_run(out)
    """
)


def synth_run(out: Path) -> None:
    """The library's 3D cohort writer for one subject (no Prefect flow)."""
    from brainxai.synth import SynthConfig, plan_cohort3d, write_subject3d
    from brainxai.synth.cohort import finalize_cohort3d

    cfg = SynthConfig(n_subjects_3d_per_class=1, spacing_choices=((1.5, 1.5, 1.5),))
    specs = plan_cohort3d(cfg, 7)[:1]
    summaries = [write_subject3d(s, out, cfg) for s in specs]
    finalize_cohort3d(out, specs, summaries, cfg, 7)


def _md5s(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not is_temp(p)
    }


def test_killed_synth_leaves_no_partial_nifti_and_rerun_matches_clean_run(tmp_path):
    nib = pytest.importorskip("nibabel")
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    script = tmp_path / "synth_killed.py"
    script.write_text(_SYNTH_KILLED)
    ready = tmp_path / "ready"
    _run_until_ready([str(script), str(killed), str(ready), str(Path(__file__).parent)], ready)

    half = Path(ready.read_text())
    assert is_temp(half) and half.exists()  # the partial is only ever the temporary file
    written = [p for p in killed.rglob("*.nii.gz") if not is_temp(p)]
    assert len(written) == 2  # the two volumes committed before the kill
    for p in written:
        np.asarray(nib.load(p).dataobj)  # complete: decodes to the end
    assert not (killed / "participants.tsv").exists()

    synth_run(killed)  # re-run over the killed tree
    synth_run(clean)
    assert _md5s(killed) == _md5s(clean)
    assert len([k for k in _md5s(clean) if k.endswith(".nii.gz")]) == 9
    assert remove_stale_temps(killed) == [half] and _temps(killed) == []


# --- item 9: standardize qc.json stores paths relative to its directory -----------------


def test_qc_json_paths_are_relative_and_survive_moving_the_study(tmp_path):
    pytest.importorskip("ants")
    from brainxai.standardize import read_qc, write_qc

    study = tmp_path / "study"
    out = study / "data" / "std" / "sub-01"
    (out / "xfm").mkdir(parents=True)
    names = {"std:T1": "T1_space-MNI.nii.gz", "mask": "brain_mask.nii.gz", "qc": "qc.json"}
    files = {k: str(out / v) for k, v in names.items()}
    xfm = [str(out / "xfm" / "to_mni_warp.nii.gz"), str(out / "xfm" / "to_mni_affine.mat")]
    for p in [*files.values(), *xfm]:
        if not p.endswith("qc.json"):
            Path(p).write_bytes(b"x")
    result = {
        "files": files,
        "xfm_fwd": xfm,
        "xfm_inv": xfm[::-1],
        "xfm_inv_invert": [True, False],
        "coregistration": {"T2": [xfm[1]]},
        "qc": {"brain_dice": 0.9, "qc_pass": True},
    }
    write_qc(result, files["qc"])
    raw = (out / "qc.json").read_text()
    assert str(tmp_path) not in raw  # no absolute path on disk
    doc = json.loads(raw)
    assert doc["files"]["mask"] == "brain_mask.nii.gz"
    assert doc["xfm_fwd"] == ["xfm/to_mni_warp.nii.gz", "xfm/to_mni_affine.mat"]

    moved = tmp_path / "elsewhere" / "study2"
    moved.parent.mkdir()
    shutil.move(str(study), str(moved))
    back = read_qc(moved / "data" / "std" / "sub-01" / "qc.json")
    paths = [
        *back["files"].values(),
        *back["xfm_fwd"],
        *back["xfm_inv"],
        *back["coregistration"]["T2"],
    ]
    assert all(Path(p).is_file() for p in paths)
    assert all(Path(p).is_relative_to(moved) for p in paths)
    assert back["qc"] == result["qc"] and back["xfm_inv_invert"] == [True, False]
    assert set(back) == set(result)


def test_read_qc_accepts_old_absolute_paths(tmp_path):
    pytest.importorskip("ants")
    from brainxai.standardize import read_qc

    target = tmp_path / "abs" / "m.nii.gz"
    target.parent.mkdir()
    target.write_bytes(b"x")
    (tmp_path / "qc.json").write_text(json.dumps({"files": {"mask": str(target)}, "qc": {}}))
    assert read_qc(tmp_path / "qc.json")["files"]["mask"] == str(target)
