"""Wakes the loop when a running task writes, so that it reads only the tasks that did.

One thread watches the running tasks' folders, each on its own (not their subfolders),
through watchfiles: inotify on Linux, FSEvents or kqueue on macOS. It posts the names of
the tasks whose events, reports or stderr grew. The loop says which tasks run (`watch`);
when that changes, the watch is made again over the new folders, and every task is then
reported once, since a write in between went unseen. A lost event only costs time: the
loop still reads every task on a slow timer, and every task while this watch is down
(`Reads` decides what the loop reads each round).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from pathlib import Path

import structlog
import watchfiles

from codexd.daemon.watcher import WatchThread
from codexd.tasks import store

log = structlog.get_logger()
WRITTEN_BY_THE_TASK = frozenset({store.EVENTS, store.REPORTS, store.STDERR})  # not our own files
GROUP_MS = 100  # changes are handed over at most this long after they happened
QUIET_MS = 20  # or once the folders have been quiet this long
READ_ALL = 5.0  # seconds between reads of every running task, whatever the watch said
# Task reads a second before a task that keeps writing is read less often (200 tasks: every 8 s),
# each read taking all it wrote meanwhile: a read costs about 200 µs, an event in it a quarter of
# that (measured: 200 busy tasks, 7.1% of a core at 100 reads a second, 5.3% at 20). Up to 25
# running tasks each is read as it writes; stalls and deadlines are judged on a fresh read.
READS = 25


def written_by_the_task(change: watchfiles.Change, path: str) -> bool:
    return change != watchfiles.Change.deleted and Path(path).name in WRITTEN_BY_THE_TASK


class TaskWatcher(WatchThread):
    NAME = "codexd-taskwatch"

    def __init__(self, tasks_root: Path, post: Callable[[frozenset[str]], None], restart_delay: float = 1.0):
        self.root = tasks_root
        self.post = post
        self._wanted: frozenset[str] = frozenset()
        self._watching: frozenset[str] | None = None  # what the watch in place covers
        self._lock = threading.Lock()
        self._rewatch = threading.Event()  # the set changed, or stop: the watch in place ends
        super().__init__(restart_delay)

    @property
    def covers(self) -> frozenset[str]:
        """The tasks a watch in place covers now: the loop reads the others on every round."""
        with self._lock:
            return self._watching or frozenset()

    def _wake(self) -> None:
        self._rewatch.set()

    def watch(self, task_ids: Collection[str]) -> None:
        """The tasks running now (called by the loop every round; cheap when nothing changed)."""
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
        self.post(covered)  # what was written while no watch was in place
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
            self.post(frozenset(Path(path).parent.name for _, path in changes))


class Reads:
    """Which running tasks the loop reads each round: those the watch saw write (each at most
    every running/READS seconds), those with more left to read (at once), those no watch
    covers; and every task every READ_ALL seconds, so a lost file event costs only time."""

    def __init__(self) -> None:
        self.grown: set[str] = set()  # tasks that wrote since they were last read
        self._behind: set[str] = set()
        self._read_at: dict[str, float] = {}  # when each task was last read (monotonic)
        self._all_at = 0.0

    def done(self, task_id: str, mono: float, more: bool) -> None:
        self._read_at[task_id] = mono
        if more:  # its step's budget ran out: the rest next round
            self._behind.add(task_id)

    def due(self, mono: float, running: Collection[str], covered: Collection[str] | None) -> set[str] | None:
        """The tasks to read now; None: all of them (no watch at all, or the slow timer)."""
        behind, self._behind = self._behind, set()
        if covered is None or mono >= self._all_at:
            self._all_at = mono + READ_ALL
            self.grown.clear()
            self._read_at = {task_id: self._read_at.get(task_id, 0.0) for task_id in running}
            return None
        gap = len(running) / READS
        ready = {t for t in self.grown if mono - self._read_at.get(t, float("-inf")) >= gap}
        self.grown -= ready
        return ready | behind | {task_id for task_id in running if task_id not in covered}
