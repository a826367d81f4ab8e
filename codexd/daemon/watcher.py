"""Watches folders on a thread and tells the daemon loop when something changed there.

File events can be lost (overflow, coalescing): the loop also rescans on a timer. If
the watcher itself fails it is logged and started again, never silently gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import structlog
import watchfiles

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
    def __init__(self, folders: list[Path], on_change: Callable[[], None], restart_delay: float = 1.0):
        self.folders = folders
        self.on_change = on_change
        super().__init__(restart_delay)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for _ in watchfiles.watch(
                    *self.folders,
                    watch_filter=None,
                    step=5,
                    debounce=200,
                    stop_event=self._stop,
                    raise_interrupt=False,
                    rust_timeout=1000,
                    yield_on_timeout=False,
                ):
                    self.on_change()
            except Exception as exc:  # the loop's rescans cover the gap until it is back
                log.error("watcher.failed", error=str(exc), folders=[str(f) for f in self.folders])
                self.on_change()
                self._stop.wait(self.restart_delay)
