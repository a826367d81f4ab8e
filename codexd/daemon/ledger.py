"""The daemon's book of the tasks it holds (running and queued), and the one place a task's
record changes.

Every progress.log line, status.json write and state change goes through here, on the
loop's thread. Listeners (notices) hear of every state change, as an event name:
`started`, `stalled`, `restarted`, `completed`, `failed`, `cancelled` (and `queued`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from codexd.clock import iso
from codexd.daemon.running import Running
from codexd.errors import CodexdError, StorageError
from codexd.tasks import incidents, store
from codexd.tasks.frozen import replace
from codexd.tasks.incidents import IncidentKind
from codexd.tasks.records import LastLog, TaskStatus, Waiting
from codexd.tasks.states import TaskState, can_change

log = structlog.get_logger()
# Routine status.json writes a second, over all tasks, before `status_interval` stretches: each
# write is a file made and renamed (200-600 µs of CPU), and 200 busy tasks would make 200 a second
# (measured at 200 busy tasks: 10 a second cost 0.3% of a core more than 5).
STATUS_WRITES = 5
Listener = Callable[[TaskStatus, str], None]


def event_of(old: TaskState, new: TaskState) -> str:
    if new == TaskState.IN_PROGRESS:
        return "restarted" if old == TaskState.STALLED else "started"  # STALLED -> IN_PROGRESS
    return new.value


class Ledger:
    def __init__(self, tasks: store.TaskStore, status_interval: float = 0.0):
        self.tasks = tasks
        self.status_interval = status_interval
        self.failing: set[str] = set()  # tasks whose status.json could not be written
        self.running: dict[str, Running] = {}
        self.queued: list[TaskStatus] = []  # submission order; daemon/queueorder picks who starts
        self.listeners: list[Listener] = []

    def queued_status(self, task_id: str | None) -> TaskStatus | None:
        return next((s for s in self.queued if s.task_id == task_id), None)

    def drop(self, task_id: str) -> None:
        """The task leaves the books: its end is recorded, or there is nowhere left to record it."""
        self.running.pop(task_id, None)
        self.queued[:] = [s for s in self.queued if s.task_id != task_id]

    def append(
        self,
        running: Running,
        now: datetime,
        lines: list[str],
        status: TaskStatus | None = None,
        incident: IncidentKind | None = None,  # what the last line tells, if anything went wrong
    ) -> None:
        """Lines for progress.log, then `status` (what they came from) becomes the record;
        status.json follows at the next flush. If the lines cannot be written (a full
        disk), nothing changes, so the same events are read again next time."""
        status = status or running.status
        if lines:
            at = iso(now)
            path = self.tasks.file(status.task_id, store.PROGRESS)
            size = store.append_line(path, "\n".join(f"{at} {line}" for line in lines))
            status = status.with_(
                last_log=LastLog(at, lines[-1]), updated_at=at, daemon=replace(status.daemon, log=size)
            )
            if incident is not None:
                status = status.with_incident(incident, at, lines[-1])
        if status is not running.status:
            running.record(status, unwritten=True)

    def amend(self, running: Running, status: TaskStatus) -> None:
        """A change kept in memory, written with the next one: what the loop's next step
        overwrites at once (a resume brought forward by `codexd restart`)."""
        running.record(status, unwritten=running.unwritten)

    def note(self, task_id: str, now: datetime, line: str, incident: IncidentKind | None = None) -> None:
        """A line for any task's progress.log, running or ended (an undeliverable notice)."""
        running = self.running.get(task_id)
        if running is not None:
            self.append(running, now, [line], incident=incident)
        elif self.tasks.dir(task_id).is_dir():
            store.append_line(self.tasks.file(task_id, store.PROGRESS), f"{iso(now)} {line}")
            if incident is not None:
                status = self.tasks.read_status(task_id)
                self.tasks.write_status(status.with_incident(incident, iso(now), line))

    def flush(self, now: float, force: bool = False) -> None:
        """Write status.json of tasks whose progress moved, at most once per `status_interval`.

        With more than STATUS_WRITES busy tasks the interval grows in proportion (200 tasks:
        40 times). Progress is written without fsync: the cursor in it lets a new daemon redo what a
        lost write did not record. State changes are written at once, durably (`change`).
        """
        interval = self.status_interval * max(1.0, len(self.running) / STATUS_WRITES)
        for running in self.running.values():
            if running.unwritten and (force or now - running.written_at >= interval):
                try:
                    self.tasks.write_status(running.status, durable=force)
                    running.written(now)
                except Exception as exc:  # a full disk, or a record that cannot be written: said once
                    if running.task_id not in self.failing:
                        trace = None if isinstance(exc, StorageError) else exc
                        log.error(
                            "status.write_failed", task_id=running.task_id, error=str(exc), exc_info=trace
                        )
                    self.failing.add(running.task_id)
                    continue
                if running.task_id in self.failing:
                    self.failing.discard(running.task_id)
                    log.info("status.write_recovered", task_id=running.task_id)

    def change(self, status: TaskStatus, new: TaskState, now: datetime, line: str) -> TaskStatus:
        """The one place a task's state changes: logged, written at once, and announced."""
        old = status.status
        if not can_change(old, new):
            raise CodexdError(f"task {status.task_id}: {old} -> {new} is not allowed")
        at = iso(now)
        size = store.append_line(self.tasks.file(status.task_id, store.PROGRESS), f"{at} {line}")
        # A state change ends any wait (a task held in the queue is held again by `hold`).
        changed = status.with_(status=new, updated_at=at, last_log=LastLog(at, line), waiting=None)
        changed = changed.with_(daemon=replace(changed.daemon, log=size))
        kind = incidents.of_change(old, new)
        if kind is not None:
            changed = changed.with_incident(kind, at, line)
        # Announced before it is recorded: a crash in between makes the next daemon announce
        # it again, and the outbox drops the repeat. The other order could lose the notice.
        self.emit(changed, event_of(old, new))
        self.tasks.write_status(changed)
        running = self.running.get(status.task_id)
        if running is not None:
            running.record(changed, unwritten=False)
        log.info("task.state", task_id=status.task_id, old=old.value, new=new.value)
        return changed

    def hold(self, status: TaskStatus, waiting: Waiting | None, now: datetime) -> TaskStatus:
        """A queued task held back (`waiting`), or let go (None): recorded when that changes, with
        a progress.log line for each new reason (not one per round)."""
        if status.waiting == waiting or status.status != TaskState.QUEUED:
            return status
        at = iso(now)
        changed = status.with_(waiting=waiting, updated_at=at)
        if waiting is not None and (status.waiting is None or status.waiting.reason != waiting.reason):
            line = f"waiting: {waiting.reason}"
            size = store.append_line(self.tasks.file(status.task_id, store.PROGRESS), f"{at} {line}")
            changed = changed.with_(last_log=LastLog(at, line), daemon=replace(changed.daemon, log=size))
        self.tasks.write_status(changed)
        self.queued[:] = [changed if s.task_id == status.task_id else s for s in self.queued]
        return changed

    def end(
        self, status: TaskStatus, state: TaskState, now: datetime, line: str, results: dict[str, Any]
    ) -> None:
        """Every ended task gets results.json, then its final state. Only then is it off the
        books: if the disk is full, it stays on them and the end is tried again."""
        self.tasks.write_results(status.task_id, results)
        self.change(status.with_(pid=None, finished_at=iso(now)), state, now, line)
        self.drop(status.task_id)

    def emit(self, status: TaskStatus, event: str) -> None:
        for listener in self.listeners:
            try:
                listener(status, event)
            except Exception as exc:  # a listener must never break supervision
                log.error("listener.failed", task_id=status.task_id, error=str(exc))
