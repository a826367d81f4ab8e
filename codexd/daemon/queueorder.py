"""The order of the queue: which queued tasks start now, which wait and why, which are
cancelled and why. `plan` is pure: records in, a decision out; the supervisor applies it.

- `after`: a task starts once every task it names has completed; one of them failed,
  cancelled or gone cancels it, naming that task.
- `priority`: higher starts first; equal priorities keep their submission order.
- One folder, one task: two tasks without worktrees of their own in the same folder (their
  cwd, resolved) do not run at once, unless the `share_folders` setting lets them.

The states of tasks outside the daemon's books (ended ones) come from `Lookup`, which reads
only the ids named, and again only when something changed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from codexd.tasks.records import TaskStatus, Waiting
from codexd.tasks.states import TaskState

GONE = None  # a task named in `after` that has no record (removed, or never taken in)
SHOWN_PENDING = 5  # tasks named in one waiting reason; the rest are counted
REFRESH = 5.0  # seconds a looked-up state is trusted when nothing announced a change
ENDED_BADLY = {TaskState.FAILED.value: "failed", TaskState.CANCELLED.value: "was cancelled"}

State = str | None  # a TaskState's value, a word such as "unreadable", or GONE


@dataclass(frozen=True)
class Plan:
    start: tuple[TaskStatus, ...] = ()  # in this order, each into a free slot
    wait: tuple[tuple[TaskStatus, Waiting | None], ...] = ()  # None: only a slot is missing
    cancel: tuple[tuple[TaskStatus, str], ...] = ()  # with why: "codex-a, which it runs after, failed"


def shares_checkout(status: TaskStatus) -> bool:
    """Does the task work in its cwd itself (not in a git worktree of its own)?"""
    return status.taken is None or not status.taken.worktree


@functools.lru_cache(maxsize=1024)
def _resolved(path: str) -> str:
    return os.path.realpath(path)


def folder_of(status: TaskStatus) -> str | None:
    """The folder a task works in, links resolved; None for one that cannot collide."""
    if status.cwd is None or not shares_checkout(status):
        return None
    return _resolved(status.cwd)


def order_key(status: TaskStatus) -> tuple[int, int]:
    """Higher priority first; then the order of submission."""
    return (-status.priority, status.daemon.accepted_ns)


def outside(queued: Iterable[TaskStatus], held: Iterable[str]) -> set[str]:
    """The ids queued tasks run after that the books (`held`: queued and running ids) do not hold."""
    books = set(held)
    return {name for status in queued for name in status.after if name not in books}


def plan(
    queued: Sequence[TaskStatus],
    running: Sequence[TaskStatus],
    states: Mapping[str, State],
    free: int,
    share_folders: bool = False,
) -> Plan:
    """What to do with each of `queued` now, given the tasks `running` (they hold their
    folders), the `states` of tasks outside the books, and `free` slots."""
    known: dict[str, State] = {**states, **{s.task_id: s.status.value for s in [*queued, *running]}}
    cancel = _cancelled(queued, known)
    gone = {status.task_id for status, _ in cancel}
    taken: dict[str, str] = {} if share_folders else _folders(running)
    start: list[TaskStatus] = []
    wait: list[tuple[TaskStatus, Waiting | None]] = []
    for status in sorted((s for s in queued if s.task_id not in gone), key=order_key):
        reason = _pending(status, known) or _folder_taken(status, taken)
        if reason is not None:
            wait.append((status, Waiting(reason)))
        elif len(start) < free:
            start.append(status)
            folder = None if share_folders else folder_of(status)
            if folder is not None:
                taken[folder] = status.task_id
        else:
            wait.append((status, None))
    return Plan(tuple(start), tuple(wait), tuple(cancel))


def _cancelled(queued: Sequence[TaskStatus], known: dict[str, State]) -> list[tuple[TaskStatus, str]]:
    """Tasks one of whose `after` failed, was cancelled or is gone; a task cancelled so cancels
    those that run after it in the same round."""
    cancel: list[tuple[TaskStatus, str]] = []
    found = True
    while found:
        found = False
        for status in queued:
            if known.get(status.task_id) == TaskState.CANCELLED.value:
                continue
            why = _ended_badly(status, known)
            if why is not None:
                cancel.append((status, why))
                known[status.task_id] = TaskState.CANCELLED.value
                found = True
    return cancel


def _ended_badly(status: TaskStatus, known: Mapping[str, State]) -> str | None:
    for name in status.after:
        state = known.get(name, GONE)
        if state is GONE:
            return f"{name}, which it runs after, was removed"
        if state in ENDED_BADLY:
            return f"{name}, which it runs after, {ENDED_BADLY[state]}"
    return None


def _pending(status: TaskStatus, known: Mapping[str, State]) -> str | None:
    """`waiting for codex-a (in_progress), codex-b (queued)`; None once all have completed."""
    pending = [f"{name} ({known.get(name)})" for name in status.after if known.get(name) != "completed"]
    if not pending:
        return None
    more = len(pending) - SHOWN_PENDING
    return "waiting for " + ", ".join(pending[:SHOWN_PENDING]) + (f" and {more} more" if more > 0 else "")


def _folders(running: Iterable[TaskStatus]) -> dict[str, str]:
    """The folders running tasks work in, each with the task in it."""
    return {folder: s.task_id for s in running if (folder := folder_of(s)) is not None}


def _folder_taken(status: TaskStatus, taken: Mapping[str, str]) -> str | None:
    folder = folder_of(status)
    holder = taken.get(folder) if folder is not None else None
    return None if holder is None else f"waiting for {holder}: same folder"


@dataclass
class Lookup:
    """States of tasks outside the books, read through `read` for the ids asked about only,
    and again after `forget` (the ledger announced a change) or REFRESH seconds (a task
    removed by `codexd rm` announces nothing)."""

    read: Callable[[str], State]
    refresh: float = REFRESH
    _seen: dict[str, tuple[State, float]] = field(default_factory=dict)

    def states(self, ids: Iterable[str], now: float) -> dict[str, State]:
        found: dict[str, State] = {}
        for task_id in ids:
            kept = self._seen.get(task_id)
            if kept is None or now - kept[1] >= self.refresh:
                kept = self._seen[task_id] = (self.read(task_id), now)
            found[task_id] = kept[0]
        return found

    def forget(self) -> None:
        self._seen.clear()
