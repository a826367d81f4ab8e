"""Where the daemon is in a task's files (status.json's `daemon`): the cursor that lets a new
daemon carry on exactly, the run it owes the task, and what it saw of a silent task's work."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from codexd.fields import Fields
from codexd.tasks.usage import Run, Usage, models_of, runs_of


class ResumeKind(StrEnum):
    RESTART = "restart"  # after a stall or a `restart`: counts in restarts
    RETRY = "retry"  # after a busy endpoint: counts in retries
    FRESH = "fresh"  # after a lost session: started afresh, counts in neither
    RERUN = "rerun"  # `codexd retry` of an ended task: its next start resumes the session
    LIMIT = "limit"  # the account's usage limit: resumed at its reset, counts in neither


@dataclass(frozen=True)
class Resume:
    """A run the daemon owes the task: after a stall, a busy endpoint, or a `restart`."""

    at: float  # wall-clock epoch seconds when it is due (kept so a new daemon honours it)
    kind: ResumeKind
    reason: str  # told to the agent in the continuation prompt

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": str(self.kind), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: object) -> Resume | None:
        return cls.read(Fields(data))

    @classmethod
    def read(cls, f: Fields) -> Resume | None:
        at, kind = f.number("at"), f.text("kind")
        if at is None or kind not in tuple(ResumeKind):
            if f.data:
                f.bad.append(f.prefix.rstrip("."))
            return None
        return cls(at=at, kind=ResumeKind(kind), reason=f.text("reason") or "")


@dataclass(frozen=True)
class Busy:
    """A silent task's process tree seen working (daemon/busy.py): not a stall, for a while."""

    at: float  # epoch seconds it was last seen busy; older than daemon.active_at: stale
    cpu: float  # CPU seconds its tree used since its last progress
    what: str | None = None  # its busiest process's command line, shortened (shown, never obeyed)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "cpu": self.cpu, "what": self.what}

    @classmethod
    def read(cls, f: Fields) -> Busy | None:
        at, cpu = f.number("at"), f.number("cpu")
        if at is None or cpu is None:
            return None
        return cls(at=at, cpu=cpu, what=f.text("what"))


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
    stderr: int = 0  # bytes of stderr.log already looked through for what Codex says there
    cgroup: str | None = None  # the current run's cgroup (Linux): ends its whole tree, even later
    sessions: dict[str, Usage] = field(default_factory=dict)  # each Codex session's newest (cumulative) use
    rollout: str | None = None  # the session's rollout file being followed for its use so far
    rollout_at: int = 0  # bytes of it already read
    busy: Busy | None = None  # its tree seen working since its last progress (not a stall)
    models: dict[str, str] = field(default_factory=dict)  # each session's model, from its rollout
    runs: tuple[Run, ...] = ()  # each Codex run's session and its figure then (per-run shares)

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
            "stderr": self.stderr,
            "cgroup": self.cgroup,
            "sessions": {thread: used.to_dict() for thread, used in self.sessions.items()},
            "rollout": self.rollout,
            "rollout_at": self.rollout_at,
            "busy": self.busy.to_dict() if self.busy else None,
            "models": self.models,
            "runs": [run.to_dict() for run in self.runs],
        }

    @classmethod
    def from_dict(cls, data: object) -> Cursor:
        return cls.read(Fields(data))

    @classmethod
    def read(cls, f: Fields) -> Cursor:
        return cls(
            events=f.integer("events") or 0,
            reports=f.integer("reports") or 0,
            run_start=f.integer("run_start") or 0,
            pid_create_time=f.number("pid_create_time"),
            accepted_ns=f.integer("accepted_ns", 0, high=2**63) or 0,
            log=f.integer("log") or 0,
            active_at=f.number("active_at"),
            streak=f.integer("streak") or 0,
            resume=Resume.read(f.within("resume")),
            stderr_start=f.integer("stderr_start") or 0,
            afresh=f.integer("afresh") or 0,
            stderr=f.integer("stderr") or 0,
            cgroup=f.text("cgroup"),
            sessions=Usage.sessions(f.within("sessions")),
            rollout=f.text("rollout"),
            rollout_at=f.integer("rollout_at") or 0,
            busy=Busy.read(f.within("busy")),
            models=models_of(f.within("models")),
            runs=runs_of(f),
        )
