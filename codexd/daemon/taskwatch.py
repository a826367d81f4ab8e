"""Wakes the loop when a running task writes, so that it reads only the tasks that did.

Each running task's folder has a watch of its own (not its subfolders), added when the
task starts and removed when it ends; one thread sleeps in the kernel (daemon/kernelwatch)
and posts the tasks whose events, reports or stderr grew, and those whose folder was
removed, moved or had its mode changed. A task is reported once when its watch is added,
since it may have written before. A lost event only costs time: the loop still reads every
task on a slow timer, and every task no watch covers on every round (`Reads` decides what
the loop reads). Without inotify, daemon/polledwatch serves (watchfiles).
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from codexd.daemon import kernelwatch, rollout
from codexd.daemon.watcher import WatchThread
from codexd.tasks import store
from codexd.tasks.records import TaskStatus

log = structlog.get_logger()
WRITTEN_BY_THE_TASK = frozenset({store.EVENTS, store.REPORTS, store.STDERR})  # not our own files
GATHER = 0.1  # seconds: what tasks wrote is handed over this long after the first write
READ_ALL = 5.0  # seconds between reads of every running task, whatever the watch said
# With inotify, which says when it lost events (its queue overflowed), that read is a last net.
READ_ALL_KERNEL = 30.0
FOLDER_CHECK = 1.0  # seconds between checks of the folders of tasks the watch cannot see
# Task reads a second before a task that keeps writing is read less often (200 tasks: every 8 s),
# each read taking all it wrote meanwhile: a read costs about 200 µs, an event in it a quarter of
# that (measured: 200 busy tasks, 7.1% of a core at 100 reads a second, 5.3% at 20). Up to 25
# running tasks each is read as it writes; stalls and deadlines are judged on a fresh read.
READS = 25


# A task's folder keeps a watch while it runs: a file of the task's made or moved in (picked
# by name), and the folder itself removed, moved away or its mode changed. Not every write
# in it: most are the daemon's own (progress.log, status.json).
FOLDER_CHANGES = (
    kernelwatch.CREATE
    | kernelwatch.MOVED_TO
    | kernelwatch.ATTRIB
    | kernelwatch.DELETE_SELF
    | kernelwatch.MOVE_SELF
    | kernelwatch.ONLYDIR
)
FOLDER_ITSELF = kernelwatch.ATTRIB | kernelwatch.DELETE_SELF | kernelwatch.MOVE_SELF | kernelwatch.IGNORED
# Each file the task writes has a one-shot watch: its first write after the loop last read
# the task is reported, then the kernel removes the watch until the next read arms it again.
# A task printing an event a second but read every 8 s costs one wake-up, not eight.
FILE_WRITTEN = kernelwatch.MODIFY | kernelwatch.ONESHOT


class TaskWatcher(WatchThread):
    """Watches over the running tasks, added and removed as tasks start and end (by the loop,
    in `watch`, and `arm` before each read); one thread waits in the kernel and posts
    (wrote, folder touched)."""

    NAME = "codexd-taskwatch"
    sees_folders = True  # the loop checks a task's folder when the watch says it was touched
    read_all = READ_ALL_KERNEL

    def __init__(
        self,
        tasks_root: Path,
        post: Callable[[frozenset[str], frozenset[str]], None],
        restart_delay: float = 1.0,
    ):
        self.root = tasks_root
        self.post = post
        self._kernel = kernelwatch.KernelWatch()
        self._wanted: frozenset[str] = frozenset()
        self._folder_wd: dict[str, int] = {}  # the loop's
        self._seen: dict[int, tuple[str, bool]] = {}  # wd -> (task, its folder?): under the lock
        self._lock = threading.Lock()
        self._refused: set[str] = set()  # tasks whose watch could not be added, said once
        super().__init__(restart_delay)

    @property
    def covers(self) -> frozenset[str]:
        """The tasks a watch covers now: the loop reads the others on every round."""
        return frozenset(self._folder_wd) if self._thread.is_alive() else frozenset()

    def watch(self, task_ids: Collection[str]) -> None:
        """The tasks running now (called by the loop every round; cheap when nothing changed)."""
        if self._wanted == task_ids:  # (a set compared with the loop's dict keys, in C)
            return
        self._wanted = frozenset(task_ids)
        for task_id in [t for t in self._folder_wd if t not in self._wanted]:
            self._forget(task_id)
        added = frozenset(t for t in self._wanted if t not in self._folder_wd and self._add(t))
        if added:
            self.post(added, frozenset())  # what they wrote before their watch was in place

    def arm(self, task_id: str, rollout: str | None = None) -> None:
        """Before the loop reads the task: its next write is reported (a write during the read
        is then reported too, and read again: never lost). `rollout`: its session's rollout
        file, which grows while a command runs and the events say nothing (live usage)."""
        if task_id not in self._folder_wd:
            return
        folder = f"{self.root}/{task_id}/"
        for path in [folder + name for name in WRITTEN_BY_THE_TASK] + ([rollout] if rollout else []):
            try:
                wd = self._kernel.add(path, FILE_WRITTEN)  # one not made yet: the folder's watch
            except OSError:
                continue
            with self._lock:
                self._seen[wd] = (task_id, False)

    def _add(self, task_id: str) -> bool:
        try:
            wd = self._kernel.add(self.root / task_id, FOLDER_CHANGES)
        except OSError as exc:  # its folder is gone, or the watch limit is reached: read every round
            if task_id not in self._refused:
                self._refused.add(task_id)
                fix = "raise fs.inotify.max_user_watches" if exc.errno == errno.ENOSPC else None
                log.warning("taskwatch.not_watched", task_id=task_id, error=str(exc), fix=fix)
            return False
        self._refused.discard(task_id)
        self._folder_wd[task_id] = wd
        with self._lock:
            self._seen[wd] = (task_id, True)
        self.arm(task_id)
        return True

    def _forget(self, task_id: str) -> None:
        del self._folder_wd[task_id]
        with self._lock:
            wds = [wd for wd, (owner, _) in self._seen.items() if owner == task_id]
            for wd in wds:
                del self._seen[wd]
        for wd in wds:
            self._kernel.remove(wd)

    def _wake(self) -> None:
        self._kernel.wake()

    def stop(self) -> None:
        super().stop()
        if not self._thread.is_alive():
            self._kernel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._post(self._kernel.wait(GATHER))
            except Exception as exc:  # the loop reads every task until the thread is back
                log.error("taskwatch.failed", error=str(exc))
                self._stop.wait(self.restart_delay)
                return

    def _post(self, changes: Sequence[Any]) -> None:
        wrote: set[str] = set()
        touched: set[str] = set()
        with self._lock:
            seen = self._seen
            for change in changes:
                if change.mask & kernelwatch.Q_OVERFLOW:  # the kernel's queue overflowed: all of them
                    wrote |= {task_id for task_id, _ in seen.values()}
                    touched |= {task_id for task_id, _ in seen.values()}
                    continue
                task_id, folder = seen.get(change.wd, ("", False))
                if change.mask & kernelwatch.IGNORED and not folder:
                    seen.pop(change.wd, None)  # a one-shot watch that fired: armed again at the next read
                elif not task_id:
                    continue  # a watch removed meanwhile
                elif not folder:
                    wrote.add(task_id)
                elif change.name in WRITTEN_BY_THE_TASK:
                    wrote.add(task_id)  # made (reports.jsonl at the agent's first report)
                elif not change.name and change.mask & FOLDER_ITSELF:
                    touched.add(task_id)
        if wrote or touched:
            self.post(frozenset(wrote), frozenset(touched))


def task_watcher(tasks_root: Path, post: Callable[[frozenset[str], frozenset[str]], None]) -> Watcher:
    """The kernel's watch where there is one (Linux), else watchfiles."""
    if kernelwatch.available():
        return TaskWatcher(tasks_root, post)
    from codexd.daemon.polledwatch import PolledTaskWatcher

    return PolledTaskWatcher(tasks_root, post)


class Watcher(Protocol):
    """What the loop asks of a task watch."""

    sees_folders: bool
    read_all: float

    def arm(self, task_id: str, rollout: str | None = None) -> None: ...

    @property
    def covers(self) -> frozenset[str]: ...
    @property
    def alive(self) -> bool: ...
    def watch(self, task_ids: Collection[str]) -> None: ...
    def start(self) -> None: ...
    def restart(self) -> None: ...
    def stop(self) -> None: ...


class Reads:
    """Which running tasks the loop reads each round: those the watch saw write (each at most
    every running/READS seconds), those with more left to read (at once), those no watch
    covers; and every task every `read_all` seconds, so a lost file event costs only time.
    And whose folders it checks (`folders`)."""

    def __init__(self, read_all: float = READ_ALL) -> None:
        self.read_all = read_all
        self.grown: set[str] = set()  # tasks that wrote since they were last read
        self.touched: set[str] = set()  # tasks whose folder the watch saw removed, moved or chmod'ed
        self._behind: set[str] = set()
        self._later: dict[str, tuple[float, str]] = {}  # task -> (when, its session): a rollout to look for
        self._read_at: dict[str, float] = {}  # when each task was last read (monotonic)
        self._all_at = 0.0
        self._folders_at = 0.0

    def done(self, task_id: str, mono: float, more: bool) -> None:
        self._read_at[task_id] = mono
        if more:  # its step's budget ran out: the rest next round
            self._behind.add(task_id)

    def look_for_rollout(self, task_id: str, status: TaskStatus, mono: float) -> None:
        """A session whose rollout file is not found yet is read again when its search is due,
        whether it writes or not (the rollout tells its use while a command runs)."""
        if status.thread_id and not status.daemon.rollout:
            self._look_later(task_id, status.thread_id, mono)

    def _look_later(self, task_id: str, thread: str, mono: float) -> None:
        look = rollout.next_look(thread)
        if look is not None:  # (the search keeps the real clock; the loop's may be a test's)
            self._later[task_id] = (mono + max(0.0, look - time.monotonic()), thread)

    def _looked_for(self, mono: float) -> set[str]:
        """The tasks whose rollout a search due now found: they are read at once (a miss costs
        only the search, not a read)."""
        found = set()
        for task_id, thread in [(t, thread) for t, (at, thread) in self._later.items() if at <= mono]:
            del self._later[task_id]
            if rollout.find(thread) is not None:
                found.add(task_id)
            else:
                self._look_later(task_id, thread, mono)
        return found

    @property
    def next_later(self) -> float:
        return min((at for at, _ in self._later.values()), default=float("inf"))

    def due(self, mono: float, running: Collection[str], covered: Collection[str] | None) -> set[str] | None:
        """The tasks to read now; None: all of them (no watch at all, or the slow timer)."""
        behind, self._behind = self._behind, set()
        if self._later and self.next_later <= mono:
            behind |= self._looked_for(mono)
        if covered is None or mono >= self._all_at:
            self._all_at = mono + self.read_all
            self.grown.clear()
            self._read_at = {task_id: self._read_at.get(task_id, 0.0) for task_id in running}
            return None
        gap = len(running) / READS
        ready = {t for t in self.grown if mono - self._read_at.get(t, float("-inf")) >= gap}
        self.grown -= ready
        return ready | behind | _uncovered(running, covered)

    def folders(
        self, mono: float, running: Collection[str], covered: Collection[str] | None, reading_all: bool
    ) -> set[str] | None:
        """The tasks whose folders to check now (None: all): those the watch saw touched, and
        every FOLDER_CHECK seconds those it does not cover (all of them, for a watch that
        cannot see folders: `covered` None), and all with every read of all."""
        touched, self.touched = self.touched, set()
        if reading_all:
            return None
        if mono < self._folders_at:
            return touched
        self._folders_at = mono + FOLDER_CHECK
        if covered is None:
            return None
        return touched | _uncovered(running, covered)


def _uncovered(running: Collection[str], covered: Collection[str]) -> set[str]:
    return {task_id for task_id in running if task_id not in covered}
