"""Stop, restart and retry requests: `<task id>.stop`, `<task id>.restart`, `<task id>.retry`
and `<task id>.retry-fresh` in the requests folder, written by `codexd stop`, `restart` and
`retry [--fresh]`.

A request is acted on once, and removed only when its effect is recorded, so a daemon killed
in between leaves it to the next (acting on it again changes nothing). A retry's effect is
recorded at once (the task queued again), so its request goes in the same step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, cast

import structlog

from codexd import jsonlines
from codexd.codex import process
from codexd.daemon.runs import Runs
from codexd.errors import InvalidInput
from codexd.tasks import files, store, taskid
from codexd.tasks.records import Progress, Resume, ResumeKind, TaskStatus
from codexd.tasks.states import RETRYABLE, TaskState

log = structlog.get_logger()
Kind = Literal["stop", "restart", "retry", "retry-fresh"]
KINDS = ("stop", "restart", "retry", "retry-fresh")
RETRIES = ("retry", "retry-fresh")
REQUEST_MOST = 4096  # bytes of a request file read: what it carries is small
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
        """The requests in the folder, in order: (file, task id, kind).
        Not the writers' hidden temp files, and no name that is not a task id."""
        found = []
        for request in sorted(self.folder.glob("[!.]*.*")):
            task_id, _, kind = request.name.rpartition(".")
            if kind in KINDS and taskid.is_valid(task_id):
                found.append((request, task_id, cast(Kind, kind)))
        return found

    def take(self, now: datetime) -> None:
        for request, task_id, kind in self._found():
            self.guard(self.take_one, task_id, request, kind, now)

    def take_one(self, task_id: str, request: Path, kind: Kind, now: datetime) -> None:
        if kind in RETRIES:
            self.retry(task_id, kind == "retry-fresh", now, budget_in(request))
            request.unlink(missing_ok=True)
            return
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

    def retry(self, task_id: str, fresh: bool, now: datetime, max_tokens: int | None = None) -> None:
        """`codexd retry`: a failed or cancelled task queued to run again under its id (with
        `max_tokens`, under that budget from now on)."""
        if task_id in self.book.running or self.book.queued_status(task_id) is not None:
            return  # queued again by a daemon that died before removing the request
        try:
            status = self.book.tasks.read_status(task_id)
        except InvalidInput as exc:  # removed since, or not a record: nothing to run again
            log.warning("task.retry_refused", task_id=task_id, error=str(exc))
            return
        if status.status not in RETRYABLE:
            log.warning("task.retry_refused", task_id=task_id, status=status.status.value)
            return
        thread = None if fresh else status.thread_id
        how = f"resuming Codex session {thread}" if thread else "starting afresh"
        why = " (--fresh)" if fresh else "" if thread else " (no Codex session was recorded)"
        line = f"Retry requested: {how}{why}"
        if max_tokens is not None and status.taken is not None:
            status = status.with_(taken=replace(status.taken, max_tokens=max_tokens))
            line += f"; its token budget is now max_tokens {max_tokens}"
        queued = self.book.change(again(status, thread, now), TaskState.QUEUED, now, line)
        self.book.queued.append(queued)
        self.book.tasks.file(task_id, store.LAST_MESSAGE).unlink(missing_ok=True)  # the last run's


def budget_in(request: Path) -> int | None:
    """The token budget a retry request carries (`codexd retry --max-tokens N`), if any: the
    file is a JSON object then; an older codexd's (a time) or a bad one carries none."""
    try:
        with files.open_read(request) as f:
            found = jsonlines.object_of(f.read(REQUEST_MOST))
    except OSError:
        return None
    budget = found.get("max_tokens") if found is not None else None
    return budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else None


def began_after(status: TaskStatus, stamp: int) -> bool:
    """The task's current Codex run began (well) after a request written at `stamp` (ns):
    a restart request older than the run was carried out by a daemon that died since."""
    began = status.daemon.pid_create_time
    return began is not None and began > stamp / 1e9 + process.CREATE_TIME_TOLERANCE


def again(status: TaskStatus, thread: str | None, now: datetime) -> TaskStatus:
    """An ended task's record for its next run: what belonged to the last run cleared, its
    history kept. With `thread`, the next start resumes that session and keeps the progress."""
    ended = f"it {status.status.value}" + (f" ({status.error})" if status.error else "")
    owed = Resume(now.timestamp(), ResumeKind.RERUN, f"{ended}; the user asked to run it again")
    cursor = replace(status.daemon, resume=owed if thread else None, streak=0, afresh=0)
    cursor = replace(cursor, pid_create_time=None, cgroup=None)
    cleared = status.with_(thread_id=thread, started_at=None, finished_at=None, exit_code=None)
    cleared = cleared.with_(error=None, pid=None, daemon=cursor)
    return cleared if thread else cleared.with_(progress=Progress(), results={})
