"""A daemon as a member of a team on one shared queue: the supervisor's side of `queue.url`.

What the spool accepts is submitted to the queue instead of the daemon's own books; a task
the queue hands over joins the books (queued: it starts when a slot is free; active: its
daemon went silent mid-run, so it is resumed here). Every member shares tasks_dir; each
holds a lock of its own there (`.daemon.<name>.lock`), and writes its name into the folder
of each task it takes (`queue-owner`), so that after a crash it ends only its own strays.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import cast

import structlog

from codexd.config.settings import Settings
from codexd.daemon import queueorder
from codexd.daemon.lock import DaemonLock
from codexd.daemon.processes import Processes, cgroup_of
from codexd.daemon.recovery import Recovery
from codexd.daemon.requests import RETRIES, Kind, Requests
from codexd.daemon.running import Running
from codexd.errors import CodexdError
from codexd.queue import sessions
from codexd.queue.worker import QueueThread
from codexd.tasks import store
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

log = structlog.get_logger()
OWNER = "queue-owner"  # in a task's folder: the name of the member that last took it
STOP_WAIT = 5.0  # seconds the queue's thread gets to put its jobs back at shutdown


class MemberLock(DaemonLock):
    """One daemon per name in a shared tasks_dir (not one per tasks_dir)."""

    def __init__(self, tasks_dir: Path, name: str) -> None:
        super().__init__(tasks_dir)
        self.name = name
        self.path = tasks_dir / f".daemon.{name}.lock"

    def acquire(self) -> None:
        if not self.take(f"{os.getpid()}\n".encode()):  # as in .daemon.lock: `running_pid` reads it
            raise CodexdError(
                f"another codexd daemon named {self.name!r} already runs for {self.path.parent}: "
                "give each daemon of the team its own queue.name"
            )


class Member:
    def __init__(self, settings: Settings, recovery: Recovery, post: Callable[[str], None]) -> None:
        assert settings.queue.url is not None
        self.name = settings.queue.name
        self.share_folders = settings.share_folders
        self.recovery = recovery
        self.runs = recovery.runs
        self.book = recovery.book
        self.tasks = recovery.tasks
        self.processes: Processes = recovery.processes
        self.thread = QueueThread(
            settings.queue.url.get_secret_value(),
            self.name,
            settings.max_parallel,
            settings.queue.takeover_after,
            self.tasks,
            post,
        )
        self.book.listeners.append(self._heard)

    def _heard(self, status: TaskStatus, event: str) -> None:
        if status.is_terminal:
            self.thread.task_ended(status.task_id)

    def lock(self, tasks_dir: Path) -> MemberLock:
        return MemberLock(tasks_dir, self.name)

    def start(self) -> None:
        """Its own strays ended (a crash left them), every queued task made sure of a job."""
        for task_id, procs in self.processes.by_task(self.tasks.root).items():
            if self._owner(task_id) == self.name:
                log.warning("task.strays", task_id=task_id, pids=[p.pid for p in procs])
                grace = self.runs.settings.daemon.stop_grace
                self.processes.kill_tree(None, self.tasks.dir(task_id), grace)
        for status in self.tasks.all_records():
            if status.status == TaskState.QUEUED:
                self.submit(status)
        self.thread.start()
        log.info("queue.member", name=self.name, pending=len(self.thread.pending))

    def submit(self, status: TaskStatus) -> None:
        folder = None if self.share_folders else queueorder.folder_of(status)
        lock = f"folder:{folder}" if folder else f"task:{status.task_id}"
        self.thread.submit(status.task_id, status.priority, lock)

    def take(self, task_id: str, now: datetime) -> None:
        """A task the queue handed over: joins the books, or is resumed here."""
        status = self.tasks.read_status(task_id)
        if status.is_terminal or task_id in self.book.running or self.book.queued_status(task_id):
            return
        store.write_atomic(self.tasks.file(task_id, OWNER), f"{self.name}\n".encode())
        line = f"Taken from the shared queue by codexd {self.name} on {platform.node()}"
        if status.status == TaskState.QUEUED:
            self.book.note(task_id, now, line)
            self.book.queued.append(status)
            self.take_requests(self.recovery.requests, now)  # a stop that waited for it: before it starts
            return
        log.warning("queue.resuming", task_id=task_id, state=status.status)
        sessions.restore(self.tasks, status)  # else the resume fails and it starts afresh
        if status.status == TaskState.IN_PROGRESS:
            why = f"{line}: the daemon running it went silent, so it is resumed here"
            status = self.book.change(status, TaskState.STALLED, now, why)
        self.recovery.recover_one(status, {}, {}, now)

    def take_requests(self, requests: Requests, now: datetime) -> None:
        """Stop and restart requests of the tasks this daemon holds (the holder of a task still
        in the queue gets its request when the queue hands it over, unless its job can be
        cancelled there first); a retry goes back into the queue, to run wherever there is room."""
        for task_id, kinds in requests.waiting().items():
            if "stop" in kinds:
                self._unqueue(task_id)
            mine = task_id in self.book.running or self.book.queued_status(task_id) is not None
            for kind in kinds:
                if kind in RETRIES:
                    self._retry(requests, task_id, kind, now)
                elif mine:
                    requests.take_one(task_id, requests.folder / f"{task_id}.{kind}", cast(Kind, kind), now)

    def _retry(self, requests: Requests, task_id: str, kind: str, now: datetime) -> None:
        """One member carries a retry out: the one that renames its request first."""
        claimed = requests.folder / f".{task_id}.{kind}.{self.name}"
        try:
            os.rename(requests.folder / f"{task_id}.{kind}", claimed)
        except OSError:
            return  # another member took it
        requests.retry(task_id, kind == "retry-fresh", now)
        claimed.unlink(missing_ok=True)
        again = self.book.queued_status(task_id)
        if again is not None and task_id not in self.book.running:
            self.book.queued.remove(again)
            self.submit(again)

    def _unqueue(self, task_id: str) -> None:
        """A task to stop that waits in the queue: once its job is cancelled there, it is
        this daemon's to record as cancelled (nobody else will ever be handed it)."""
        if task_id in self.book.running or self.book.queued_status(task_id) is not None:
            return
        status = self.tasks.read_status(task_id)
        if status.status == TaskState.QUEUED and self.thread.cancel_waiting(task_id):
            self.book.queued.append(status)

    def stop(self, running: list[Running], grace: float) -> None:
        """Its tasks' trees ended, their states kept, then their jobs put back: other members
        resume them (never while they still run here)."""
        for one in running:
            task_dir = self.tasks.dir(one.task_id)
            self.processes.kill_tree(one.root, task_dir, grace, cgroup_of(one.status, task_dir))
        self.thread.stop(STOP_WAIT)

    def _owner(self, task_id: str) -> str:
        try:
            return self.tasks.file(task_id, OWNER).read_text().strip()
        except OSError:
            return ""
