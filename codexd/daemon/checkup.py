"""One health check over every task: what the APScheduler job and `codexd health` run.

It only looks. It reads the status files and the process table and says what it found.
The daemon acts on the findings on its own thread, and `codexd health` prints them. Each
step runs under a time limit, so a hung filesystem or process table can delay a check
but never wedge the scheduler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from codexd.clock import duration, iso, parse_iso
from codexd.codex import process
from codexd.daemon.rules import is_stalled, stall_timeout_of
from codexd.errors import BrokenRecord
from codexd.tasks import store
from codexd.tasks.records import TaskStatus

if TYPE_CHECKING:
    from codexd.config.settings import HealthSettings

T = TypeVar("T")
Processes = dict[str, list[psutil.Process]]


@dataclass(frozen=True)
class Finding:
    task_id: str | None
    kind: str  # "stalled", "dead", "orphans", "check_failed" or "unreadable"
    text: str
    pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TaskHealth:
    task_id: str
    status: str
    pid: int | None
    alive: bool | None  # None: no process is expected right now
    idle: float  # seconds since the task last made progress
    stall_timeout: float
    restarts: int
    retries: int
    resume_in: float | None  # seconds until the daemon resumes it, when one is owed


@dataclass(frozen=True)
class Checkup:
    at: str
    took: float
    tasks: tuple[TaskHealth, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "took": round(self.took, 3),
            "ok": self.ok,
            "tasks": [asdict(t) for t in self.tasks],
            "findings": [asdict(f) for f in self.findings],
        }


def run(tasks_root: Path, policy: HealthSettings, now: datetime) -> Checkup:
    started = time.monotonic()
    findings: list[Finding] = []
    limit = policy.check_timeout
    statuses = _step("reading the task records", lambda: _read(tasks_root, findings), limit, findings)
    procs = _step("scanning processes", lambda: process.processes_by_task(tasks_root), limit, findings)
    checked = _step(
        "checking tasks",
        lambda: [_judge(s, procs, now, policy, findings) for s in statuses or [] if s.is_active],
        limit,
        findings,
    )
    findings += _orphans(statuses or [], procs or {})
    return Checkup(iso(now), time.monotonic() - started, tuple(checked or ()), tuple(findings))


def _step(what: str, action: Callable[[], T], limit: float, findings: list[Finding]) -> T | None:
    """`action()` in a thread of its own, given up after `limit` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = action()
        except Exception as exc:  # reported as a finding: a check must never raise
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="codexd-check")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        findings.append(Finding(None, "check_failed", f"{what} took longer than {limit:g} s; skipped"))
        return None
    if "error" in box:
        findings.append(Finding(None, "check_failed", f"{what} failed: {box['error']}"))
        return None
    value: T = box["value"]
    return value


def _read(tasks_root: Path, findings: list[Finding]) -> list[TaskStatus]:
    broken: list[BrokenRecord] = []
    found = store.TaskStore(tasks_root).all_records(broken)
    findings += [Finding(Path(str(b.path)).parent.name, "unreadable", str(b)) for b in broken]
    return found


def last_progress(status: TaskStatus) -> float:
    """Epoch seconds of the task's last progress, for records written before it was kept."""
    if status.daemon.active_at is not None:
        return status.daemon.active_at
    return parse_iso(status.started_at or status.updated_at).timestamp()


def _judge(
    status: TaskStatus,
    procs: Processes | None,
    now: datetime,
    policy: HealthSettings,
    findings: list[Finding],
) -> TaskHealth:
    timeout = stall_timeout_of(status, policy)
    idle = now.timestamp() - last_progress(status)
    resume = status.daemon.resume
    alive = None
    if resume is None and status.pid is not None:
        alive = process.find(status.pid, status.daemon.pid_create_time, status.task_id) is not None
        if not alive:
            findings.append(
                Finding(
                    status.task_id,
                    "dead",
                    f"its Codex process (pid {status.pid}) is gone, but its end is not recorded yet",
                )
            )
        elif is_stalled(idle, timeout):
            findings.append(
                Finding(
                    status.task_id,
                    "stalled",
                    f"no progress for {duration(idle)} (stall_timeout {duration(timeout)})",
                    tuple(p.pid for p in (procs or {}).get(status.task_id, [])),
                )
            )
    return TaskHealth(
        task_id=status.task_id,
        status=status.status.value,
        pid=status.pid,
        alive=alive,
        idle=round(idle, 1),
        stall_timeout=timeout,
        restarts=status.restarts,
        retries=status.retries,
        resume_in=None if resume is None else round(max(0.0, resume.at - now.timestamp()), 1),
    )


def _orphans(statuses: list[TaskStatus], procs: Processes) -> list[Finding]:
    """Processes of tasks that ended (or whose folder is gone): nothing should be left."""
    live_ids = {s.task_id for s in statuses if not s.is_terminal}
    found = []
    for task_id, left in sorted(procs.items()):
        if task_id in live_ids:
            continue
        pids = tuple(sorted(p.pid for p in left))
        found.append(
            Finding(task_id, "orphans", f"{len(pids)} process(es) left over after the task ended", pids)
        )
    return found
