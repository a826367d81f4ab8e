"""The task record of status.json: plain immutable data with from_dict/to_dict."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from codexd.limits import is_duration
from codexd.states import ACTIVE, TERMINAL, TaskState


@dataclass(frozen=True)
class Item:
    """One finished unit of work (a PR reviewed, a branch cleaned)."""

    title: str
    outcome: str = "done"

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "outcome": self.outcome}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(title=str(data.get("title", "")), outcome=str(data.get("outcome") or "done"))


@dataclass(frozen=True)
class Progress:
    total: int | None = None
    completed: int = 0
    current: str | None = None
    items: tuple[Item, ...] = ()
    # "plan" (Codex todo_list), "reports" (`codexd progress`) or None; reports win.
    source: str | None = None

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
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Progress:
        data = data or {}
        return cls(
            total=data.get("total"),
            completed=int(data.get("completed") or 0),
            current=data.get("current"),
            items=tuple(Item.from_dict(i) for i in data.get("items") or ()),
            source=data.get("source"),
        )


@dataclass(frozen=True)
class LastLog:
    at: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "text": self.text}


@dataclass(frozen=True)
class Resume:
    """A run the daemon owes the task: after a stall, a busy endpoint, or a `restart`."""

    at: float  # wall-clock epoch seconds when it is due (kept so a new daemon honours it)
    kind: str  # "restart" (counts in restarts) or "retry" (counts in retries)
    reason: str  # told to the agent in the continuation prompt

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Resume | None:
        if not data:
            return None
        return cls(at=float(data["at"]), kind=str(data["kind"]), reason=str(data.get("reason") or ""))


@dataclass(frozen=True)
class Cursor:
    """Where the daemon is in the task's files; lets a new daemon carry on exactly."""

    events: int = 0  # bytes of events.jsonl already turned into progress
    reports: int = 0  # bytes of reports.jsonl already applied
    run_start: int = 0  # offset in events.jsonl where the current Codex run began
    pid_create_time: float | None = None  # with pid: tells our process from a recycled pid
    accepted_ns: int = 0  # submission order, for a fair queue
    # progress.log's size when this record was written: lines past it came from a daemon
    # that died before recording them, and are written again from the events.
    log: int = 0
    active_at: float | None = None  # epoch seconds of the last real progress (stall clock)
    streak: int = 0  # runs in a row that failed for a passing reason (busy endpoint)
    resume: Resume | None = None
    stderr_start: int = 0  # stderr.log's size when the current run began: its reason is past it
    afresh: int = 0  # fresh starts after a lost Codex session (one is allowed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "reports": self.reports,
            "run_start": self.run_start,
            "pid_create_time": self.pid_create_time,
            "accepted_ns": self.accepted_ns,
            "log": self.log,
            "active_at": self.active_at,
            "streak": self.streak,
            "resume": self.resume.to_dict() if self.resume else None,
            "stderr_start": self.stderr_start,
            "afresh": self.afresh,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Cursor:
        data = data or {}
        return cls(
            events=int(data.get("events") or 0),
            reports=int(data.get("reports") or 0),
            run_start=int(data.get("run_start") or 0),
            pid_create_time=data.get("pid_create_time"),
            accepted_ns=int(data.get("accepted_ns") or 0),
            log=int(data.get("log") or 0),
            active_at=data.get("active_at"),
            streak=int(data.get("streak") or 0),
            resume=Resume.from_dict(data.get("resume")),
            stderr_start=int(data.get("stderr_start") or 0),
            afresh=int(data.get("afresh") or 0),
        )


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

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    def with_(self, **changes: Any) -> TaskStatus:
        return replace(self, **changes)

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskStatus:
        last = data.get("last_log")
        return cls(
            task_id=data["task_id"],
            type=data.get("type") or "generic",
            status=TaskState(data["status"]),
            created_at=data["created_at"],
            updated_at=data.get("updated_at") or data["created_at"],
            log_file=data.get("log_file") or "",
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            progress=Progress.from_dict(data.get("progress")),
            results=dict(data.get("results") or {}),
            pid=data.get("pid"),
            thread_id=data.get("thread_id"),
            restarts=int(data.get("restarts") or 0),
            stalls=int(data.get("stalls") or 0),
            retries=int(data.get("retries") or 0),
            stall_timeout=_duration(data.get("stall_timeout")),
            exit_code=data.get("exit_code"),
            error=data.get("error"),
            last_log=LastLog(last["at"], last["text"]) if last else None,
            cwd=data.get("cwd"),
            daemon=Cursor.from_dict(data.get("daemon")),
        )


def _duration(value: Any) -> float | None:
    """A task's own stall_timeout; one an older codexd let through (Infinity) is dropped for the default."""
    return float(value) if is_duration(value) and value > 0 else None
