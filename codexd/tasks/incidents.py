"""Incidents: what went wrong in a task's life (stalls, restarts, retries, failures, notices
that could not be delivered), kept as data in status.json for reports.

Each is recorded where its progress.log line is written, with that line as its text, so
a report says the same as the log without reading it. A record an older codexd wrote has
none (None): reports read its progress.log as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from codexd.fields import Fields
from codexd.tasks.states import TERMINAL, TaskState

KEPT = 100  # the last ones; a record stays small whatever befalls the task


class IncidentKind(StrEnum):
    STALL = "stall"  # no progress for stall_timeout: its process tree is stopped
    RESTART = "restart"  # a restart is owed (after a stall, or `codexd restart` between runs)
    RESTART_ASKED = "restart_asked"  # `codexd restart` while it ran: its tree is being stopped
    RETRY = "retry"  # the model endpoint was busy: another run is owed
    AFRESH = "afresh"  # the Codex session could not be resumed: a fresh start is owed
    RESUMED = "resumed"  # the owed run began (its session resumed, or afresh)
    FAILED = "failed"  # the task ended failed (its line says why)
    NOTICE_LOST = "notice_lost"  # a notice was given up
    RERUN = "rerun"  # `codexd retry`: the ended task is queued to run again
    USAGE_LIMIT = "usage_limit"  # the account's usage limit was reached: a run is owed at its reset


# A run owed (Resume.kind) -> the incident that owes it.
OWED = {
    "restart": IncidentKind.RESTART,
    "retry": IncidentKind.RETRY,
    "fresh": IncidentKind.AFRESH,
    "limit": IncidentKind.USAGE_LIMIT,
}


def of_change(old: TaskState, new: TaskState) -> IncidentKind | None:
    """The incident a state change is, if any."""
    if new == TaskState.STALLED:
        return IncidentKind.STALL
    if new == TaskState.FAILED:
        return IncidentKind.FAILED
    if old == TaskState.STALLED and new == TaskState.IN_PROGRESS:
        return IncidentKind.RESUMED
    if old in TERMINAL and new == TaskState.QUEUED:
        return IncidentKind.RERUN
    return None


@dataclass(frozen=True)
class Incident:
    at: str  # ISO 8601, as its progress.log line
    kind: IncidentKind
    text: str  # its progress.log line

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "kind": str(self.kind), "text": self.text}

    @classmethod
    def read(cls, data: object) -> Incident | None:
        f = Fields(data)
        at, kind, text = f.text("at"), f.text("kind"), f.text("text")
        if at is None or text is None or kind not in _KINDS:
            return None
        return cls(at, IncidentKind(kind), text)


_KINDS = frozenset(k.value for k in IncidentKind)


def read_all(f: Fields) -> tuple[Incident, ...] | None:
    """status.json's `incidents`: None when it has none (an older codexd's record)."""
    found = f.data.get("incidents")
    if not isinstance(found, list):
        return f.ignore("incidents", None)
    read = [Incident.read(entry) for entry in found]
    if None in read:
        f.bad.append(f.prefix + "incidents")
    return tuple(i for i in read if i is not None)[-KEPT:]


def added(incidents: tuple[Incident, ...], incident: Incident) -> tuple[Incident, ...]:
    return (*incidents, incident)[-KEPT:]
