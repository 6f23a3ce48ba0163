"""One task per GPU: a host-wide device-slot allocator (file locks), with a CPU twin.

A GPU task holds one *slot* — one physical device of this host — for as long as it runs.
Slots are ``flock``-ed files ``<lock_dir>/gpu-<id>.lock`` (one per physical device id), so
two tasks never share a device whether they run as threads of one flow, processes of a
process pool, Dask workers or separate flow runs on the same host. Inside the slot:

* a *process-isolated* task (a worker process whose CUDA is not initialised yet) gets
  ``CUDA_VISIBLE_DEVICES=<id>`` and the device ``cuda:0``; the process is then pinned to
  that device (CUDA reads the variable once), so its later tasks wait for the same slot;
* any other task (threads sharing one process) gets ``cuda:<slot>`` and that device made
  current for its thread (``torch.cuda.set_device``), so code asking for ``"cuda"`` /
  ``"auto"`` lands on the slot's device without knowing about slots;
* with no GPU the slot is the CPU: nothing is locked and nothing ever waits.

``BRAINXAI_GPU_SLOTS=<n>`` overrides the device count (tests use fake slots on a CPU host:
the environment is set, no CUDA call is made).
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SLOTS_ENV = "BRAINXAI_GPU_SLOTS"
LOCK_DIR_ENV = "BRAINXAI_GPU_LOCK_DIR"
ISOLATE_ENV = "BRAINXAI_GPU_ISOLATE"  # "1"/"0": force / forbid CUDA_VISIBLE_DEVICES per task
CVD = "CUDA_VISIBLE_DEVICES"
POLL_SECONDS = 0.05

_pinned: str | None = None  # physical id this process's CUDA was initialised on
_pinned_ids: list[str] = []  # the device ids this process saw before it was pinned
_held = threading.local()  # the slot this thread holds (re-entrant device_slot)


@dataclass(frozen=True)
class DeviceSlot:
    """The device a task runs on: ``slot`` index and physical ``device_id`` (None on CPU)."""

    slot: int | None
    device_id: str | None
    device: str  # torch device string: "cpu", "cuda:0", "cuda:<slot>"
    isolated: bool  # CUDA_VISIBLE_DEVICES was set to ``device_id`` for this task


def visible_ids() -> list[str] | None:
    """Physical device ids from ``CUDA_VISIBLE_DEVICES`` (None when unset)."""
    raw = os.environ.get(CVD)
    if raw is None:
        return None
    return [d.strip() for d in raw.split(",") if d.strip() and d.strip() != "-1"]


def fake_slots() -> int | None:
    raw = os.environ.get(SLOTS_ENV)
    return int(raw) if raw not in (None, "") else None


def gpu_count() -> int:
    """GPUs this process may use, counted without initialising CUDA where possible.

    ``$BRAINXAI_GPU_SLOTS``, else NVML (respects ``CUDA_VISIBLE_DEVICES``), else torch.
    """
    fake = fake_slots()
    if fake is not None:
        return fake
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    try:
        n = torch.cuda._device_count_nvml()  # no cuInit: CUDA_VISIBLE_DEVICES stays settable
    except Exception:
        n = -1
    return n if n >= 0 else torch.cuda.device_count()


def resolve_device(device: Any = None) -> str:
    """The one device rule: ``None``/``"auto"`` -> ``"cuda"`` when a GPU is visible, else
    ``"cpu"``; any other name (or ``torch.device``) as given. Imports torch only for auto."""
    if device is None or device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def torch_device(device: Any = None) -> torch.device:
    """:func:`resolve_device` as a ``torch.device``."""
    import torch

    return torch.device(resolve_device(device))


def default_lock_dir() -> Path:
    """Host-wide by default (``$BRAINXAI_GPU_LOCK_DIR`` or ``<tmp>/brainxai-gpu-<uid>``)."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"brainxai-gpu-{os.getuid()}"


class SlotAllocator:
    """Exclusive, blocking slots over the device ids ``ids`` (``flock`` per id)."""

    def __init__(self, ids: list[str], lock_dir: Path, poll: float = POLL_SECONDS) -> None:
        self.ids = list(ids)
        self.lock_dir = Path(lock_dir)
        self.poll = poll

    def _try(self, device_id: str) -> int | None:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / f"gpu-{device_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @contextmanager
    def hold(self, only: str | None = None) -> Iterator[int]:
        """Block until a slot is free (``only``: that device id); yield its index."""
        choices = [i for i, d in enumerate(self.ids) if only is None or d == only]
        if not choices:
            raise ValueError(f"device {only!r} is not one of {self.ids}")
        while True:
            for i in choices:
                fd = self._try(self.ids[i])
                if fd is not None:
                    try:
                        yield i
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                        os.close(fd)
                    return
            time.sleep(self.poll)


def _isolation_allowed() -> bool:
    """Worker processes (process pool, Dask nanny) may set CUDA_VISIBLE_DEVICES per task."""
    forced = os.environ.get(ISOLATE_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return multiprocessing.parent_process() is not None


@contextmanager
def device_slot(lock_dir: Path | None = None) -> Iterator[DeviceSlot]:
    """Hold one GPU of this host for the ``with`` body; the CPU (no wait) without GPUs.

    Re-entrant per thread: GPU code called from a GPU task keeps the task's device.
    """
    held = getattr(_held, "slot", None)
    if held is not None:
        yield held
        return
    with _acquire(lock_dir) as slot:
        _held.slot = slot
        try:
            yield slot
        finally:
            _held.slot = None


@contextmanager
def _acquire(lock_dir: Path | None) -> Iterator[DeviceSlot]:
    global _pinned, _pinned_ids
    n = gpu_count()
    if n <= 0:
        yield DeviceSlot(None, None, "cpu", False)
        return
    fake = fake_slots() is not None
    ids = _pinned_ids if _pinned else (visible_ids() or [str(i) for i in range(n)])[:n]
    alloc = SlotAllocator(ids, lock_dir or default_lock_dir())
    with alloc.hold(only=_pinned) as i:
        dev_id = ids[i]
        if _pinned is not None:
            yield DeviceSlot(i, dev_id, "cuda:0", True)
            return
        if _isolation_allowed() and (fake or not _cuda_initialised()):
            before = os.environ.get(CVD)
            os.environ[CVD] = dev_id
            if fake or _count_after_isolation() == 1:
                _pinned, _pinned_ids = dev_id, ids
                yield DeviceSlot(i, dev_id, "cuda:0", True)
                return
            # too late (CUDA already saw every device): back to the slot's index
            if before is None:
                del os.environ[CVD]
            else:
                os.environ[CVD] = before
        with _current_device(i, enabled=not fake):
            yield DeviceSlot(i, dev_id, f"cuda:{i}", False)


def _cuda_initialised() -> bool:
    import torch

    return bool(torch.cuda.is_initialized())


def _count_after_isolation() -> int:
    import torch

    return torch.cuda.device_count()


@contextmanager
def _current_device(index: int, enabled: bool) -> Iterator[None]:
    """Make ``cuda:<index>`` this thread's current device ("cuda" then means it)."""
    if not enabled:
        yield
        return
    import torch

    prev = torch.cuda.current_device()
    torch.cuda.set_device(index)
    try:
        yield
    finally:
        torch.cuda.set_device(prev)
