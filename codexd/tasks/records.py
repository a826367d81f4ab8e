"""The task record of status.json: plain immutable data with from_dict/to_dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from codexd.config.defaultdirs import is_task_id
from codexd.config.limits import is_duration
from codexd.fields import Fields, warn
from codexd.tasks import incidents
from codexd.tasks.cursor import Busy, Cursor, Resume, ResumeKind
from codexd.tasks.frozen import replace
from codexd.tasks.incidents import Incident, IncidentKind
from codexd.tasks.states import ACTIVE, TERMINAL, TaskState
from codexd.tasks.taken import Taken
from codexd.tasks.usage import Cost, Usage
from codexd.tasks.worktree import Worktree

__all__ = [
    "MAX_PID",
    "Busy",
    "Cursor",
    "Item",
    "LastLog",
    "Progress",
    "ProgressSource",
    "Resume",
    "ResumeKind",
    "TaskStatus",
    "Usage",
    "Waiting",
]
MAX_PID = 2**31
_STATES = frozenset(s.value for s in TaskState)


@dataclass(frozen=True)
class Item:
    """One finished unit of work (a PR reviewed, a branch cleaned)."""

    title: str
    outcome: str = "done"

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "outcome": self.outcome}

    @classmethod
    def from_dict(cls, data: object) -> Item:
        return cls.read(Fields(data))

    @classmethod
    def read(cls, f: Fields) -> Item:
        return cls(title=f.text("title") or "", outcome=f.text("outcome") or "done")


class ProgressSource(StrEnum):
    PLAN = "plan"  # Codex's todo_list
    REPORTS = "reports"  # `codexd progress`: reports win over the plan


@dataclass(frozen=True)
class Progress:
    total: int | None = None
    completed: int = 0
    current: str | None = None
    items: tuple[Item, ...] = ()
    source: ProgressSource | None = None

    @property
    def percentage(self) -> float | None:
        if not self.total:
            return None
        return round(min(100.0, 100.0 * self.completed / self.total), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "completed": self.completed,
            "percentage": self.percentage,
            "current": self.current,
            "items": [item.to_dict() for item in self.items],
            "source": str(self.source) if self.source else None,
        }

    @classmethod
    def from_dict(cls, data: object) -> Progress:
        return cls.read(Fields(data))

    @classmethod
    def read(cls, f: Fields) -> Progress:
        items = f.items("items")
        if not all(isinstance(i, dict) for i in items):
            f.bad.append(f.prefix + "items")
        return cls(
            total=f.integer("total", None),
            completed=f.integer("completed") or 0,
            current=f.text("current"),
            items=tuple(Item.read(Fields(i)) for i in items if isinstance(i, dict)),
            source=_source(f),
        )


@dataclass(frozen=True)
class LastLog:
    at: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "text": self.text}

    @classmethod
    def read(cls, f: Fields) -> LastLog | None:
        at, text = _moment(f, "at"), f.text("text")
        return cls(at, text) if at is not None and text is not None else None


@dataclass(frozen=True)
class Waiting:
    """Why a queued task does not start yet: what it waits for, and until when if that is known."""

    reason: str  # e.g. "waiting for codex-a: same folder", "usage limit reached; resumes at 15:05"
    until: str | None = None  # when it starts by itself (ISO, UTC); None: once the reason is gone

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "until": self.until}

    @classmethod
    def read(cls, f: Fields) -> Waiting | None:
        reason = f.text("reason")
        if reason is None:
            if f.data:
                f.bad.append(f.prefix.rstrip("."))
            return None
        return cls(reason, _moment(f, "until"))


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    type: str
    status: TaskState
    created_at: str
    updated_at: str
    log_file: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: Progress = field(default_factory=Progress)
    results: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    thread_id: str | None = None
    restarts: int = 0
    stalls: int = 0
    retries: int = 0
    stall_timeout: float | None = None  # the task's own, from its front matter
    exit_code: int | None = None
    error: str | None = None
    last_log: LastLog | None = None
    cwd: str | None = None
    daemon: Cursor = field(default_factory=Cursor)
    taken: Taken | None = None  # None: a task an older codexd took
    incidents: tuple[Incident, ...] | None = None  # None: an older codexd's record (its log tells)
    usage: Usage | None = None  # the sum of daemon.sessions; None: no figure yet, or an older record
    waiting: Waiting | None = None  # a queued task held back, and why; None: it starts when a slot is free
    worktree: Worktree | None = None  # the git worktree it runs in (made at its first launch)
    cost: Cost | None = None  # estimated from the user's [prices]; None (and absent): no price known

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def after(self) -> tuple[str, ...]:
        return self.taken.after if self.taken else ()

    @property
    def priority(self) -> int:
        return self.taken.priority if self.taken else 0

    def with_(self, **changes: Any) -> TaskStatus:
        return replace(self, **changes)

    def with_incident(self, kind: IncidentKind, at: str, text: str) -> TaskStatus:
        """`text`, the progress.log line that told it, kept as an incident of `kind`."""
        if self.incidents is None:
            return self  # a task an older codexd took: its reports read its log
        return replace(self, incidents=incidents.added(self.incidents, Incident(at, kind, text)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "type": self.type,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": self.progress.to_dict(),
            "results": self.results,
            "pid": self.pid,
            "log_file": self.log_file,
            "thread_id": self.thread_id,
            "restarts": self.restarts,
            "stalls": self.stalls,
            "retries": self.retries,
            "stall_timeout": self.stall_timeout,
            "exit_code": self.exit_code,
            "error": self.error,
            "last_log": self.last_log.to_dict() if self.last_log else None,
            "cwd": self.cwd,
            "daemon": self.daemon.to_dict(),
            "taken": self.taken.to_dict() if self.taken else None,
            "incidents": None if self.incidents is None else [i.to_dict() for i in self.incidents],
            "usage": self.usage.to_dict() if self.usage else None,
            **({"cost": self.cost.to_dict()} if self.cost else {}),  # only with a price for its model
            "waiting": self.waiting.to_dict() if self.waiting else None,
            "after": list(self.after),  # from `taken`, shown here for users and scripts
            "priority": self.priority,
            **({"worktree": self.worktree.to_dict()} if self.worktree else {}),  # SPEC: only then
        }

    @classmethod
    def from_dict(cls, data: object) -> TaskStatus:
        """The record in `data`; ill-typed fields read as their defaults, with one warning.

        ValueError only when the task's identity (task_id, status, created_at) is unusable.
        """
        f = Fields(data)
        task_id, state, created = _identity(f)
        status = cls(
            task_id=task_id,
            type=f.text("type") or "generic",
            status=state,
            created_at=created,
            updated_at=_moment(f, "updated_at") or created,
            log_file=f.text("log_file") or "",
            started_at=_moment(f, "started_at"),
            finished_at=_moment(f, "finished_at"),
            progress=Progress.read(f.within("progress")),
            results=_counts(f),
            pid=_pid(f),
            thread_id=f.text("thread_id"),
            restarts=f.integer("restarts") or 0,
            stalls=f.integer("stalls") or 0,
            retries=f.integer("retries") or 0,
            stall_timeout=_stall_timeout(f),
            exit_code=f.integer("exit_code", None, -(2**31), 2**31),
            error=f.text("error"),
            last_log=LastLog.read(f.within("last_log")),
            cwd=f.text("cwd"),
            daemon=Cursor.read(f.within("daemon")),
            taken=Taken.read(f.within("taken")),
            incidents=incidents.read_all(f),
            usage=Usage.read(f.within("usage")),
            waiting=Waiting.read(f.within("waiting")),
            worktree=Worktree.read(f.within("worktree")),
            cost=Cost.read(f.within("cost")),
        )
        if f.bad:
            warn("status.fields_ignored", task_id, f.bad)
        return status


def _identity(f: Fields) -> tuple[str, TaskState, str]:
    task_id, state, created = f.data.get("task_id"), f.data.get("status"), _moment(f, "created_at")
    if not isinstance(task_id, str) or not is_task_id(task_id):
        raise ValueError(f"task_id {task_id!r} is not a task id")
    if not isinstance(state, str) or state not in _STATES:
        raise ValueError(f"status {state!r} is not one of {', '.join(s.value for s in TaskState)}")
    if created is None:
        raise ValueError(f"created_at {f.data.get('created_at')!r} is not a time")
    return task_id, TaskState(state), created


def _stall_timeout(f: Fields) -> float | None:
    """A task's own; one an older codexd let through (Infinity) or a hand made one beyond a year
    is dropped for the default."""
    found = f.data.get("stall_timeout")
    if found is None:
        return None
    return float(found) if is_duration(found) and found > 0 else f.ignore("stall_timeout", None)


def _source(f: Fields) -> ProgressSource | None:
    found = f.text("source")
    try:
        return None if found is None else ProgressSource(found)
    except ValueError:
        return f.ignore("source", None)


def _pid(f: Fields) -> int | None:
    found = f.integer("pid", None, 0)
    return found if found is None or 0 < found < MAX_PID else f.ignore("pid", None)


def _moment(f: Fields, key: str) -> str | None:
    """An ISO 8601 time with its zone, as the daemon writes them; else None."""
    found = f.text(key)
    if found is None:
        return None
    try:
        zoned = datetime.fromisoformat(found.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        zoned = False
    return found if zoned else f.ignore(key, None)


def _counts(f: Fields) -> dict[str, int]:
    """results in status.json: how many items ended with each outcome."""
    found = f.mapping("results")
    counts = {k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    if len(counts) != len(found):
        f.bad.append("results")
    return counts
