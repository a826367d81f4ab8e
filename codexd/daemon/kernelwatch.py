"""Watches that sleep in the kernel until something changes: inotify on Linux, through
inotify_simple (a thin ctypes wrapper).

Why not watchfiles here: its Rust loop wakes every `step` and takes the GIL to ask whether
to stop, whether anything changed or not (measured with 200 quiet tasks: 0.6% of a core
for the spool's 5 ms step, 0.2% for the task watch's 20 ms). A thread blocked in poll()
costs nothing until the kernel has news. Elsewhere (macOS) daemon/polledwatch keeps
watchfiles (FSEvents).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import inotify_simple
except ImportError:  # not Linux: daemon/polledwatch serves
    inotify_simple = None

# The flags of <sys/inotify.h> (inotify_simple.flags holds the same, as a slower IntEnum).
MODIFY, ATTRIB, CLOSE_WRITE = 0x2, 0x4, 0x8
MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x40, 0x80, 0x100, 0x200
DELETE_SELF, MOVE_SELF, Q_OVERFLOW, IGNORED = 0x400, 0x800, 0x4000, 0x8000
ONLYDIR, ONESHOT = 0x01000000, 0x80000000


def available() -> bool:
    return inotify_simple is not None


class KernelWatch:
    """One inotify instance, and a pipe that ends a wait at once (`wake`, from any thread).
    Watches may be added and removed from another thread while one waits."""

    def __init__(self) -> None:
        if inotify_simple is None:
            raise OSError("inotify is not available on this system")
        self._inotify: Any = inotify_simple.INotify(nonblocking=True)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self._inotify.fileno(), select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self._closing = threading.Lock()  # a wake never writes to a closed (maybe reused) fd
        self._closed = False

    def add(self, path: str | Path, mask: int) -> int:
        """The watch descriptor of `path` (OSError: gone, the user's watch limit reached, or
        this watch closed at shutdown)."""
        with self._closing:
            if self._closed:
                raise OSError(errno.EBADF, "the watch is closed")
            return int(self._inotify.add_watch(path, mask))

    def remove(self, wd: int) -> None:
        with contextlib.suppress(OSError):  # already gone with its folder
            self._inotify.rm_watch(wd)

    def wake(self) -> None:
        with self._closing:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake is pending anyway
                os.write(self._wake_w, b"x")

    def wait(self, gather: float) -> Sequence[Any]:
        """What changed (inotify_simple Events: wd, mask, cookie, name), after blocking until
        something did or `wake` was called (then possibly nothing). Once the first change is
        seen, `gather` more seconds pass, so that a burst is handed over in one piece."""
        ready = {fd for fd, _ in self._poller.poll()}
        if self._wake_r in ready:
            self._drain_wakes()
            return ()
        if gather > 0:
            time.sleep(gather)
        return list(self._inotify.read(timeout=0))

    def _drain_wakes(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._inotify.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
