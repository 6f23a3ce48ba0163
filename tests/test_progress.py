"""Progress lines per stage (issue 15.6): ``k/N`` with elapsed and ETA while a stage's
cached tasks run, throttled in logs; the command line quiets Prefect's per-task-run INFO
logs unless ``--verbose`` / ``BRAINXAI_VERBOSE=1``."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from prefect import flow, task

import tasks  # noqa: F401  (embedded defaults before prefect)
from tasks.caching import code_hash, code_policy, hashed_outputs, run_cached
from tasks.progress import Progress, ProgressConfig, duration
from tests.conftest import REPO

LINE = re.compile(
    r"^(?P<label>.+): (?P<k>\d+)/(?P<n>\d+) tasks \(\d+ %\), elapsed \S+, (?P<tail>.+)$"
)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_duration_reads_like_a_clock():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_log_lines_are_throttled_by_step_and_interval():
    clock, out = Clock(), io.StringIO()
    cfg = ProgressConfig(interval_s=60.0, step_percent=25.0)
    bar = Progress("stage · task", 8, cfg=cfg, stream=out, clock=clock)
    for k in range(1, 9):
        clock.t += 10.0
        bar.update(k)
    bar.close()
    lines = out.getvalue().splitlines()
    # 0/8, then one line per 25 % (2, 4, 6), the final line: no line for 1, 3, 5, 7
    assert [LINE.match(x)["k"] for x in lines] == ["0", "2", "4", "6", "8"]
    assert lines[0].endswith("ETA ?") and lines[-1].endswith("elapsed 1m20s, done")
    # 2 done in 20 s, 6 to go: 60 s
    assert lines[1] == "stage · task: 2/8 tasks (25 %), elapsed 20s, ETA 1m00s"

    clock, out = Clock(), io.StringIO()
    cfg = ProgressConfig(interval_s=30.0, step_percent=0.0)  # time only
    bar = Progress("s", 100, cfg=cfg, stream=out, clock=clock)
    for k in range(1, 100):
        clock.t += 1.0
        bar.update(k)
    bar.close("stopped: a task failed")
    ks = [int(LINE.match(x)["k"]) for x in out.getvalue().splitlines()]
    assert ks == [0, 30, 60, 90, 99], "a line at most every 30 s, then the last one"
    assert out.getvalue().splitlines()[-1].endswith("stopped: a task failed")


def test_terminal_redraws_one_line_in_place():
    clock, out = Clock(), Tty()
    bar = Progress("x", 3, cfg=ProgressConfig(refresh_s=1.0), stream=out, clock=clock)
    for k in (1, 2, 3):
        clock.t += 2.0
        bar.update(k)
    bar.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("done\n")
    frames = [f for f in text.rstrip("\n").split("\r\x1b[2K") if f]
    assert [LINE.match(f)["k"] for f in frames] == ["0", "1", "2", "3"]


def test_disabled_prints_nothing():
    out = Tty()
    with Progress("x", 3, cfg=ProgressConfig(enabled=False), stream=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_resumed_run_rates_only_this_runs_units():
    clock, out = Clock(), io.StringIO()
    bar = Progress("pretrain", 10, unit="epochs", cfg=ProgressConfig(step_percent=1), stream=out,
                   clock=clock)  # fmt: skip
    bar.resume_from(6)
    clock.t = 20.0
    bar.update(8)  # 2 epochs in 20 s, 2 to go
    assert out.getvalue().splitlines()[-1].endswith("8/10 epochs (80 %), elapsed 20s, ETA 20s")


# ------------------------------------------------------------- in a flow (real tasks) ---


@task(name="progress-write", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def _write(i: int, out: str) -> dict:
    Path(out).write_text(str(i))
    return {"files": [out]}


@task(name="progress-maybe-fail", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def _maybe_fail(i: int, out: str) -> dict:
    if i == 1:
        raise ValueError("planted failure")
    Path(out).write_text(str(i))
    return {"files": [out]}


@flow(name="progress-demo")
def _demo(n: int, out_dir: str) -> int:
    calls = [{"i": i, "out": f"{out_dir}/{i}.txt"} for i in range(n)]
    return len(run_cached(_write, lambda r: r["files"], calls))


@flow(name="progress-reporting")
def _reporting(n: int, out_dir: str) -> list:
    from tasks.finetune import gather_reporting

    calls = [{"i": i, "out": f"{out_dir}/r{i}.txt"} for i in range(n)]
    return gather_reporting(_maybe_fail, lambda r: r["files"], calls)


def _progress_lines(text: str, label: str) -> list[re.Match]:
    return [m for x in text.splitlines() if (m := LINE.match(x)) and m["label"] == label]


def test_a_flow_prints_k_of_n_lines_with_elapsed_and_eta(tmp_path, capfd, caplog):
    code_hash(__name__)  # the closure once, before tasks key themselves in threads
    assert _demo(5, str(tmp_path)) == 5
    err = capfd.readouterr().err
    lines = _progress_lines(err, "progress-demo · progress-write")
    assert [(int(m["k"]), int(m["n"])) for m in lines] == [(k, 5) for k in range(6)], err
    assert all(m["tail"].startswith("ETA") for m in lines[:-1]) and lines[-1]["tail"] == "done"
    # the test session keeps Prefect's default logging: the task-run lines are there
    assert [r.name for r in caplog.records].count("prefect.task_runs") == 5

    # a stage that reports failures (fine-tuning cells) counts every call, failed or not
    res = _reporting(3, str(tmp_path))
    assert [err is None for _, _, err in res] == [True, False, True]
    lines = _progress_lines(capfd.readouterr().err, "progress-reporting · progress-maybe-fail")
    assert [int(m["k"]) for m in lines] == [0, 1, 2, 3] and lines[-1]["tail"] == "done"


SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from flows.cli import main

    main(verbose=False)  # the CLI's global options, as `brainxai [--verbose] ...` runs them

    import tasks
    from prefect import flow, task

    from tasks.caching import code_hash, code_policy, hashed_outputs, run_cached


    @task(name="progress-write", cache_policy=code_policy("tasks.progress"))
    @hashed_outputs
    def write(i: int, out: str) -> dict:
        Path(out).write_text(str(i))
        return {"files": [out]}


    @flow(name="progress-demo")
    def demo(n: int, out_dir: str) -> int:
        calls = [{"i": i, "out": f"{out_dir}/{i}.txt"} for i in range(n)]
        return len(run_cached(write, lambda r: r["files"], calls))


    print("tasks", demo(3, sys.argv[1]))
    """
)


def _start_cli_like(tmp: Path, verbose_env: str | None) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_LOGGERS")}
    env.pop("BRAINXAI_VERBOSE", None)
    if verbose_env is not None:
        env["BRAINXAI_VERBOSE"] = verbose_env
    env["PREFECT_HOME"] = str(tmp / "prefect")
    env["BRAINXAI_ROOT"] = str(tmp)
    out = tmp / "out"
    out.mkdir(parents=True)
    err = tmp / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(out)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=fh, text=True,
        )  # fmt: skip
    return proc, err


def _finish(proc: subprocess.Popen, err: Path) -> str:
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.read_text()[-3000:]
    assert "tasks 3" in stdout
    return err.read_text()


def test_cli_quiets_task_run_logs_and_verbose_restores_them(tmp_path):
    runs = {name: _start_cli_like(tmp_path / name, env) for name, env in
            (("quiet", None), ("loud", "1"))}  # fmt: skip
    quiet, loud = (_finish(*runs[name]) for name in ("quiet", "loud"))
    lines = _progress_lines(quiet, "progress-demo · progress-write")
    assert [int(m["k"]) for m in lines] == [0, 1, 2, 3], quiet
    assert "Task run" not in quiet and "Finished in state Completed" in quiet  # the flow's
    assert len(re.findall(r"Task run '.+' - Finished in state", loud)) == 3, loud
    assert len(_progress_lines(loud, "progress-demo · progress-write")) == 4
