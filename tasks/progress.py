"""What a user sees while a stage runs: one progress line per fan-out, and the command
line's log verbosity.

Where a stage gathers its fanned-out task futures (:func:`tasks.caching.run_cached`,
:func:`tasks.finetune.gather_reporting`), :func:`track` waits on them as they complete
and prints ``<flow> · <task>: k/N tasks (p %), elapsed 1m02s, ETA 2m25s`` to stderr;
a long single task can report its own steps the same way (:class:`Progress`, e.g. the
epochs of one pretraining run). On a terminal the line is redrawn in place; in a log
(DVC, CI, a file) a new line is written only when another ``step_percent`` of the work
is done or ``interval_s`` has passed, so a 75-minute study stays a few hundred lines.
The knobs are params.yaml's ``progress`` section (:func:`configure`, called by
:func:`tasks.env.study_params`; passed on to worker processes in ``$BRAINXAI_PROGRESS``).

Verbosity: the ``brainxai`` command line quiets Prefect's per-task-run INFO lines
(``Finished in state Completed()`` for every task) by setting the level of the
``prefect.task_runs`` logger to WARNING through Prefect's own environment override,
before Prefect is imported (:func:`set_verbosity`); warnings and errors still show, and
flow-level lines are untouched. ``brainxai --verbose`` or ``BRAINXAI_VERBOSE=1`` keeps
them; a level the user set in the environment is never changed. Deployments run by a
worker are not affected (their task logs go to the Prefect UI as before).

Display only: nothing here may shape a result.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from brainxai.config import MappingConfig, config_to_mapping

#: ``1``/``true``/``yes``: keep Prefect's task-run INFO logs on the command line.
VERBOSE_ENV = "BRAINXAI_VERBOSE"
#: The ``progress`` params section as JSON, for worker processes of a process runner.
CONFIG_ENV = "BRAINXAI_PROGRESS"
#: Prefect's override of its logging.yml ``loggers.prefect.task_runs.level``.
TASK_RUNS_LEVEL_ENV = "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL"
QUIET_LEVEL = "WARNING"
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ProgressConfig(MappingConfig):
    """params.yaml ``progress`` (see there)."""

    enabled: bool = True
    interval_s: float = 30.0
    step_percent: float = 10.0
    refresh_s: float = 1.0


_config: ProgressConfig | None = None


def configure(section: dict[str, Any] | None) -> ProgressConfig:
    """Use params.yaml's ``progress`` section in this process and in the worker processes
    it starts from now on."""
    global _config
    _config = ProgressConfig.from_dict(section)
    os.environ[CONFIG_ENV] = json.dumps(config_to_mapping(_config))
    return _config


def current() -> ProgressConfig:
    """The configured settings: :func:`configure`'s, else ``$BRAINXAI_PROGRESS``, else the
    defaults."""
    if _config is not None:
        return _config
    blob = os.environ.get(CONFIG_ENV)
    return ProgressConfig.from_dict(json.loads(blob)) if blob else ProgressConfig()


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in _TRUE


def set_verbosity(is_verbose: bool | None = None) -> bool:
    """Command line: quiet Prefect's per-task-run INFO logs unless verbose (argument, else
    ``$BRAINXAI_VERBOSE``); returns the verbosity. Works through the environment, so it
    must run before Prefect is imported (it then reaches worker processes too); in a
    process that has imported Prefect already (a test, an embedding program) it changes
    nothing."""
    if is_verbose is None:
        is_verbose = verbose()
    if not is_verbose and "prefect" not in sys.modules:
        os.environ.setdefault(TASK_RUNS_LEVEL_ENV, QUIET_LEVEL)
    return is_verbose


def duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``1h05m``."""
    s = round(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """One progress line for ``total`` units of work labelled ``label`` (module docstring).

    ``update(done)`` / ``advance()`` as work finishes, ``close()`` at the end (also as a
    context manager). ``stream`` (default stderr) decides terminal vs log by ``isatty``.
    """

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "tasks",
        cfg: ProgressConfig | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.cfg = cfg or current()
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.start = 0  # units done before this run (a resumed run): not in the ETA's rate
        self.closed = False
        self._shown = -1  # ``done`` of the last line written
        self._last_t = self.t0
        self._last_step = 0
        self._emit()

    # --------------------------------------------------------------------- state
    def update(self, done: int) -> None:
        self.done = min(max(int(done), 0), self.total)
        if self.done != self._shown:
            self._maybe_emit()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def resume_from(self, done: int) -> None:
        """``done`` units were finished before this run started (a resumed training)."""
        self.start = self.done = min(max(int(done), 0), self.total)

    def close(self, note: str | None = None) -> None:
        """Write the final line (``done`` when all units finished, else ``note`` or
        ``stopped``)."""
        if self.closed:
            return
        self.closed = True
        self._emit(note or ("done" if self.done >= self.total else "stopped"))
        if self.tty and self.cfg.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------- output
    def line(self, note: str | None = None) -> str:
        elapsed = self.clock() - self.t0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        head = f"{self.label}: {self.done}/{self.total} {self.unit} ({pct:.0f} %)"
        if note:
            return f"{head}, elapsed {duration(elapsed)}, {note}"
        ran = self.done - self.start
        eta = duration(elapsed / ran * (self.total - self.done)) if ran > 0 else "?"
        return f"{head}, elapsed {duration(elapsed)}, ETA {eta}"

    def _step(self) -> int:
        """How many ``step_percent`` steps of the work are done."""
        if not self.total or self.cfg.step_percent <= 0:
            return 0
        return int(100.0 * self.done / self.total // self.cfg.step_percent)

    def _maybe_emit(self) -> None:
        if self.done >= self.total:
            return  # close() writes the last line
        since = self.clock() - self._last_t
        if self.tty:
            due = since >= self.cfg.refresh_s
        else:
            due = since >= self.cfg.interval_s or self._step() > self._last_step
        if due:
            self._emit()

    def _emit(self, note: str | None = None) -> None:
        if not self.cfg.enabled:
            return
        text = self.line(note)
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\x1b[2K" + text[: max(width, 20)])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._shown, self._last_t, self._last_step = self.done, self.clock(), self._step()


def stage_label(name: str) -> str:
    """``<flow> · <name>`` inside a flow run, else ``name``."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
    except ImportError:  # pragma: no cover - prefect is a dependency
        ctx = None
    flow = getattr(getattr(ctx, "flow", None), "name", None)
    return f"{flow} · {name}" if flow else name


def track(futures: Iterable[Any], name: str, stop_on_failure: bool = False) -> None:
    """Wait for Prefect ``futures`` as they complete, printing the progress line of
    ``name`` (a task's name); ``stop_on_failure``: return at the first failed one (the
    caller then raises it)."""
    from prefect.futures import as_completed

    pending = list(futures)
    with Progress(stage_label(name), len(pending)) as bar:
        for fut in as_completed(pending):
            fut.wait()  # records the final state on the future (no API call)
            bar.advance()
            if stop_on_failure and not fut.state.is_completed():
                bar.close("stopped: a task failed")
                return
