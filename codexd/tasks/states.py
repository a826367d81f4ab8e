"""Task states and the transitions allowed between them. Imports nothing of ours."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    STALLED = "stalled"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
ACTIVE = frozenset({TaskState.IN_PROGRESS, TaskState.STALLED})
RETRYABLE = frozenset({TaskState.FAILED, TaskState.CANCELLED})  # `codexd retry` runs them again

#   queued ──► in_progress ──► completed | failed | cancelled
#     │            ▲   │
#     │            │   ▼
#     │          stalled ──► failed | cancelled
#     └──► cancelled
#   failed | cancelled ──► queued   (only `codexd retry`: the same task runs again)
ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.IN_PROGRESS, TaskState.CANCELLED, TaskState.FAILED}),
    TaskState.IN_PROGRESS: frozenset(
        {TaskState.STALLED, TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}
    ),
    TaskState.STALLED: frozenset({TaskState.IN_PROGRESS, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset({TaskState.QUEUED}),  # retried
    TaskState.CANCELLED: frozenset({TaskState.QUEUED}),  # retried
}


class TaskEvent(StrEnum):
    """What listeners (notices) hear of a state change: the new state's name, except the
    two ways into in_progress."""

    QUEUED = "queued"
    STARTED = "started"  # queued -> in_progress
    RESTARTED = "restarted"  # stalled -> in_progress, or a restart between runs
    STALLED = "stalled"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Not state changes: the account's usage limit held every task, and work resumed (usagelimit).
    USAGE_LIMIT = "usage_limit"
    USAGE_RESUMED = "usage_resumed"


def can_change(old: TaskState, new: TaskState) -> bool:
    return new in ALLOWED[old]
