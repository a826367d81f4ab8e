"""The watchfiles fallback, where inotify is not to be had (macOS: FSEvents).

watchfiles' loop wakes every `step` to look for news (daemon/kernelwatch says what that
costs), and its watch over a set of folders cannot grow or shrink: when the running tasks
change, the task watch is made again over the new set, and every task is then reported
once, since a write in between went unseen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from pathlib import Path

import structlog
import watchfiles

from codexd.daemon.taskwatch import READ_ALL, WRITTEN_BY_THE_TASK
from codexd.daemon.watcher import WatchThread

log = structlog.get_logger()
GROUP_MS = 100  # changes are handed over at most this long after they happened
QUIET_MS = 20  # or once the folders have been quiet this long


def written_by_the_task(change: watchfiles.Change, path: str) -> bool:
    return change != watchfiles.Change.deleted and Path(path).name in WRITTEN_BY_THE_TASK


class PolledFolderWatcher(WatchThread):
    """Tells the loop (`on_change`) when anything in the spool or the requests folder changed."""

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


class PolledTaskWatcher(WatchThread):
    """Posts the running tasks that wrote (see daemon/taskwatch); it cannot tell a task's
    folder was removed (`sees_folders`), so the loop checks every folder every second."""

    NAME = "codexd-taskwatch"
    sees_folders = False
    read_all = READ_ALL  # watchfiles may lose events unsaid: every task is read this often

    def __init__(
        self,
        tasks_root: Path,
        post: Callable[[frozenset[str], frozenset[str]], None],
        restart_delay: float = 1.0,
    ):
        self.root = tasks_root
        self.post = post
        self._wanted: frozenset[str] = frozenset()
        self._watching: frozenset[str] | None = None  # what the watch in place covers
        self._lock = threading.Lock()
        self._rewatch = threading.Event()  # the set changed, or stop: the watch in place ends
        super().__init__(restart_delay)

    @property
    def covers(self) -> frozenset[str]:
        with self._lock:
            return self._watching or frozenset()

    def _wake(self) -> None:
        self._rewatch.set()

    def arm(self, task_id: str, rollout: str | None = None) -> None:
        """(Its folder's watch stays in place: nothing to arm; a rollout waits for the slow read.)"""

    def watch(self, task_ids: Collection[str]) -> None:
        if len(task_ids) == len(self._wanted) and all(t in self._wanted for t in task_ids):
            return
        with self._lock:
            self._wanted = frozenset(task_ids)
        self._rewatch.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._rewatch.clear()
            with self._lock:
                wanted = self._wanted
            folders = [self.root / task_id for task_id in sorted(wanted)]
            folders = [f for f in folders if f.is_dir()]
            if not folders:
                self._rewatch.wait()
                continue
            try:
                self._watch(frozenset(f.name for f in folders), folders)
            except Exception as exc:  # the loop reads every task until the watch is back
                log.error("taskwatch.failed", error=str(exc), tasks=len(folders))
                self._stop.wait(self.restart_delay)
            finally:
                with self._lock:
                    self._watching = None

    def _watch(self, covered: frozenset[str], folders: list[Path]) -> None:
        self.post(covered, frozenset())  # what was written while no watch was in place
        with self._lock:
            self._watching = covered
        for changes in watchfiles.watch(
            *folders,
            watch_filter=written_by_the_task,
            debounce=GROUP_MS,
            step=QUIET_MS,
            stop_event=self._rewatch,
            rust_timeout=0,
            raise_interrupt=False,
            recursive=False,
            ignore_permission_denied=True,
        ):
            self.post(frozenset(Path(path).parent.name for _, path in changes), frozenset())
