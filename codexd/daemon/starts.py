"""Starting queued tasks: the queue's order (`queueorder.plan`) applied on the loop's thread.

Each round, the queued tasks ready to start are planned: some start (`runs.launch`), some
wait and say why (`Ledger.hold`), some are cancelled (an `after` that failed, was cancelled or
removed). While the account's usage limit holds (`usagelimit`), nothing starts, and the
queued tasks keep its reason, but cancellations still happen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from codexd.clock import Clock
from codexd.daemon import queueorder
from codexd.daemon.ledger import Ledger
from codexd.daemon.runs import Runs
from codexd.errors import InvalidInput, UnknownTask
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

Guard = Callable[..., None]


class Starts:
    def __init__(self, runs: Runs, book: Ledger, clock: Clock, guard: Guard):
        self.runs, self.book, self.clock, self.guard = runs, book, clock, guard
        self.ended = queueorder.Lookup(self._state_outside)  # the states of tasks queued ones run after
        book.listeners.append(lambda _status, _event: self.ended.forget())

    def start_queued(self, now: datetime) -> None:
        held = self.runs.limit.holds(now)  # the account's usage limit: nothing starts before its reset
        queued, running, settings = self.book.queued, self.book.running, self.runs.settings
        if not queued:
            return
        ready = [s for s in queued if not self.runs.ending(s.task_id)]  # a retry waits for its last tree
        books = [s.task_id for s in queued] + list(running)
        plan = queueorder.plan(
            ready,
            [r.status for r in running.values()],
            self.ended.states(queueorder.outside(ready, books), self.clock.monotonic()),
            free=0 if held else settings.max_parallel - len(running),
            share_folders=settings.share_folders,
        )
        for status, why in plan.cancel:
            self.guard(self._cancel, status, why, now)
        if held:
            return  # the others keep the usage limit's reason (usagelimit holds them)
        for status, waiting in plan.wait:
            self.guard(self.book.hold, status, waiting, now)
        for status in plan.start:
            queued.remove(status)
            self.guard(self.runs.launch, status, now)

    def _cancel(self, status: TaskStatus, why: str, now: datetime) -> None:
        """A task one of whose `after` failed, was cancelled or is gone: it never runs."""
        cancelled = status.with_(error=f"cancelled: {why}")
        self.book.end(cancelled, TaskState.CANCELLED, now, f"Cancelled: {why}", {"summary": None})

    def _state_outside(self, task_id: str) -> str | None:
        """The state of a task the books do not hold (ended, or in the spool still)."""
        try:
            return self.book.tasks.read_status(task_id).status.value
        except UnknownTask:
            spooled = (Path(self.runs.settings.spool_dir) / f"{task_id}.md").exists()
            return "in the spool" if spooled else queueorder.GONE
        except (InvalidInput, OSError):  # a broken record, a folder not ours: it may be mended
            return "unreadable"
