"""Stop and restart requests: `<task id>.stop` and `<task id>.restart` in the requests folder,
written by `codexd stop` and `codexd restart`.

A request is acted on once, and removed only when its effect is recorded, so a daemon killed
in between leaves it to the next (acting on it again changes nothing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, cast

from codexd.codex import process
from codexd.daemon.runs import Runs
from codexd.tasks import taskid
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

Kind = Literal["stop", "restart"]
Guard = Callable[..., None]


@dataclass(frozen=True)
class Handled:
    """A stop or restart request acted on: it stays until its effect is recorded."""

    stamp: int  # the request file's mtime_ns: a newer request is acted on again
    task_id: str
    kind: Kind
    run: int  # the run it acted on: a restart is carried out when the next one began


class Requests:
    def __init__(self, folder: Path, runs: Runs, guard: Guard):
        self.folder = folder
        self.runs = runs
        self.book = runs.book
        self.guard = guard
        self._handled: dict[Path, Handled] = {}  # requests acted on, until their effect is recorded

    @property
    def pending(self) -> bool:
        """Requests acted on whose effect is not recorded yet."""
        return bool(self._handled)

    def waiting(self) -> dict[str, dict[str, int]]:
        """The requests in the folder now: by task, kind -> mtime_ns."""
        found: dict[str, dict[str, int]] = {}
        with contextlib.suppress(OSError):
            for request, task_id, kind in self._found():
                with contextlib.suppress(OSError):
                    found.setdefault(task_id, {})[kind] = request.stat().st_mtime_ns
        return found

    def _found(self) -> list[tuple[Path, str, Kind]]:
        """`stop` and `restart` requests in the folder, in order: (file, task id, kind).
        Not the writers' hidden temp files, and no name that is not a task id."""
        found = []
        for request in sorted(self.folder.glob("[!.]*.*")):
            task_id, _, kind = request.name.rpartition(".")
            if kind in ("stop", "restart") and taskid.is_valid(task_id):
                found.append((request, task_id, cast(Kind, kind)))
        return found

    def take(self, now: datetime) -> None:
        for request, task_id, kind in self._found():
            self.guard(self.take_one, task_id, request, kind, now)

    def take_one(self, task_id: str, request: Path, kind: Kind, now: datetime) -> None:
        stamp = request.stat().st_mtime_ns
        seen = self._handled.get(request)
        if seen is None and kind == "restart" and self._began_after(task_id, stamp):
            request.unlink(missing_ok=True)  # carried out by a daemon that died before removing it
            return
        if seen is None or seen.stamp != stamp:
            running = self.book.running.get(task_id)
            run = running.run if running else 0
            (self.cancel if kind == "stop" else self._restart_by_hand)(task_id, now)
            self._handled[request] = Handled(stamp, task_id, kind, run)
        self.settle()

    def _began_after(self, task_id: str, stamp: int) -> bool:
        running = self.book.running.get(task_id)
        return running is not None and began_after(running.status, stamp)

    def settle(self) -> None:
        """Remove the requests whose effect is recorded."""
        for request, handled in list(self._handled.items()):
            if self._carried_out(handled):
                request.unlink(missing_ok=True)
                del self._handled[request]

    def _carried_out(self, handled: Handled) -> bool:
        """A stop when the task is off the books (its end recorded); a restart when its next run began."""
        running = self.book.running.get(handled.task_id)
        if running is None:
            return self.book.queued_status(handled.task_id) is None
        return handled.kind == "restart" and running.run != handled.run and running.has_process

    def cancel(self, task_id: str, now: datetime) -> None:
        waiting = self.book.queued_status(task_id)
        if waiting is not None:
            # Off the queue only once its end is recorded.
            self.book.end(waiting, TaskState.CANCELLED, now, "Cancelled before it started", {"summary": None})
        elif task_id in self.book.running:
            self.runs.cancel(self.book.running[task_id], now)

    def _restart_by_hand(self, task_id: str, now: datetime) -> None:
        if task_id in self.book.running:
            self.runs.restart_by_hand(self.book.running[task_id], now)


def began_after(status: TaskStatus, stamp: int) -> bool:
    """The task's current Codex run began (well) after a request written at `stamp` (ns):
    a restart request older than the run was carried out by a daemon that died since."""
    began = status.daemon.pid_create_time
    return began is not None and began > stamp / 1e9 + process.CREATE_TIME_TOLERANCE
