"""Watches folders on a thread and tells the daemon loop when something changed there.

File events can be lost (overflow, coalescing): the loop also rescans on a timer. If
the watcher itself fails it is logged and started again, never silently gone. The watch
sleeps in the kernel (daemon/kernelwatch); without inotify, daemon/polledwatch serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from codexd.daemon import kernelwatch

log = structlog.get_logger()


class WatchThread:
    """A watching thread's life: started, checked by the loop (`alive`), started again if it
    died all the same, stopped at shutdown. Subclasses give `_run` (and `_wake`, to end a
    watch in place that does not look at the stop event)."""

    NAME = "codexd-watcher"

    def __init__(self, restart_delay: float = 1.0):
        self.restart_delay = restart_delay
        self._stop = threading.Event()
        self._thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name=self.NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def restart(self) -> None:
        """A new thread for one that died all the same (the loop checks)."""
        self._thread = self._new_thread()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout=2)

    def _wake(self) -> None:
        """Ends the watch in place (after `_stop` is set)."""

    def _run(self) -> None:
        raise NotImplementedError


class FolderWatcher(WatchThread):
    """Tells the loop (`on_change`) when a file arrives in, changes in or leaves the spool or
    the requests folder. Each change is handed over within GATHER seconds, a burst at once."""

    GATHER = 0.005

    def __init__(self, folders: list[Path], on_change: Callable[[], None], restart_delay: float = 1.0):
        self.folders = folders
        self.on_change = on_change
        self._kernel: kernelwatch.KernelWatch | None = None
        super().__init__(restart_delay)

    def _wake(self) -> None:
        if self._kernel is not None:
            self._kernel.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._kernel = kernelwatch.KernelWatch()
                try:
                    self._watch(self._kernel)
                finally:
                    self._kernel.close()
            except Exception as exc:  # the loop's rescans cover the gap until it is back
                log.error("watcher.failed", error=str(exc), folders=[str(f) for f in self.folders])
                self.on_change()
                self._stop.wait(self.restart_delay)

    def _watch(self, kernel: kernelwatch.KernelWatch) -> None:
        for folder in self.folders:
            kernel.add(folder, SPOOL_CHANGES)
        self.on_change()  # what arrived before the watch was in place
        while not self._stop.is_set():
            if kernel.wait(self.GATHER):
                self.on_change()


# A file moved or written in (closed after writing: one still being copied is taken later),
# removed, or its mode changed. Not every write: a big file copied in would wake the loop often.
SPOOL_CHANGES = (
    kernelwatch.CREATE
    | kernelwatch.MOVED_TO
    | kernelwatch.CLOSE_WRITE
    | kernelwatch.DELETE
    | kernelwatch.MOVED_FROM
    | kernelwatch.ATTRIB
    | kernelwatch.ONLYDIR
)


def folder_watcher(folders: list[Path], on_change: Callable[[], None]) -> WatchThread:
    """The kernel's watch where there is one (Linux), else watchfiles."""
    if kernelwatch.available():
        return FolderWatcher(folders, on_change)
    from codexd.daemon.polledwatch import PolledFolderWatcher

    return PolledFolderWatcher(folders, on_change)
