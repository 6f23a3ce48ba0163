"""Which files appeared under a directory, and how: written in place or renamed in.

A Linux ``inotify`` watch (through ``ctypes``; no dependency) on every directory of a
tree records, for each file, whether a writer closed it under its final name
(``IN_CLOSE_WRITE``: written in place) or whether it arrived by a rename
(``IN_MOVED_TO``: the atomic temp + rename). It sees every writer - Python, pyarrow,
ITK, PIL - because it watches the file system, not the code. New directories are
watched as they appear; a file already inside one when its watch is added is reported
in :attr:`Watch.unobserved` (its history is unknown).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import threading
from collections import defaultdict
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
_HEADER = struct.Struct("iIII")


def available() -> bool:
    return hasattr(os, "uname") and os.uname().sysname == "Linux"


class Watch:
    """``with Watch(root) as w: ...``; then ``w.events[path]`` lists ``"write"`` /
    ``"rename"`` per event, ``w.unobserved`` the files found without an event."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.events: dict[Path, list[str]] = defaultdict(list)
        self.unobserved: set[Path] = set()
        self.overflow = False
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = -1
        self._dirs: dict[int, Path] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _add(self, directory: Path, scan: bool) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(directory), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:  # gone again
                return
            raise OSError(err, os.strerror(err), str(directory))
        self._dirs[wd] = directory
        for child in sorted(directory.iterdir()) if directory.is_dir() else []:
            if child.is_dir() and not child.is_symlink():
                self._add(child, scan)
            elif scan and child.is_file():
                self.unobserved.add(child)

    def __enter__(self) -> Watch:
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._add(self.root, scan=False)
        self._thread.start()
        return self

    def _drain(self) -> None:
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            pos = 0
            while pos < len(buf):
                wd, mask, _cookie, size = _HEADER.unpack_from(buf, pos)
                name = buf[pos + _HEADER.size : pos + _HEADER.size + size].rstrip(b"\0")
                pos += _HEADER.size + size
                if mask & IN_Q_OVERFLOW:
                    self.overflow = True
                    continue
                base = self._dirs.get(wd)
                if base is None or not name:
                    continue
                path = base / os.fsdecode(name)
                if mask & IN_ISDIR:
                    if mask & (IN_CREATE | IN_MOVED_TO):
                        self._add(path, scan=True)
                elif mask & IN_CLOSE_WRITE:
                    self.events[path].append("write")
                elif mask & IN_MOVED_TO:
                    self.events[path].append("rename")

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if ready:
                self._drain()
        self._drain()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)
