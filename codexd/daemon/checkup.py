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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil
import structlog

from codexd.clock import iso, parse_iso
from codexd.daemon.processes import Processes
from codexd.daemon.rules import is_stalled, stall_line, timeouts_of
from codexd.errors import BrokenRecord, StorageError
from codexd.tasks import store
from codexd.tasks.records import Busy, TaskStatus

if TYPE_CHECKING:
    from codexd.config.settings import HealthSettings

log = structlog.get_logger()
T = TypeVar("T")
ByTask = dict[str, list[psutil.Process]]


class Problem(StrEnum):
    STALLED = "stalled"  # its Codex runs, but has made no progress for too long
    DEAD = "dead"  # its Codex is gone, but its end is not recorded
    ORPHANS = "orphans"  # processes of a task that ended
    CHECK_FAILED = "check_failed"  # a step of the check failed or took too long
    UNREADABLE = "unreadable"  # a task record that cannot be read


@dataclass(frozen=True)
class Finding:
    task_id: str | None
    kind: Problem
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
    # Its silent tree seen working since its last progress (the daemon's reading: `at` epoch
    # seconds, `cpu` seconds since that progress, `what` its busiest command): not a stall.
    busy: dict[str, Any] | None = None


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


def run(
    tasks_root: Path, policy: HealthSettings, now: datetime, processes: Processes | None = None
) -> Checkup:
    table = processes or Processes()
    started = time.monotonic()
    findings: list[Finding] = []
    limit = policy.check_timeout
    statuses = _step("reading the task records", lambda: _read(tasks_root, findings), limit, findings)
    procs = _step("scanning processes", lambda: table.by_task(tasks_root), limit, findings)
    checked = _step(
        "checking tasks",
        lambda: [_judge(s, procs, now, policy, findings, table) for s in statuses or [] if s.is_active],
        limit,
        findings,
    )
    findings += _orphans(statuses or [], procs or {})
    return Checkup(iso(now), time.monotonic() - started, tuple(checked or ()), tuple(findings))


def keep(found: Checkup, tasks_root: Path) -> None:
    """The daemon's last check, in the tasks folder for `codexd health`."""
    try:
        store.write_atomic(tasks_root / store.HEALTH, store.dump_json(found.to_dict()))
    except StorageError as exc:
        log.error("health.write_failed", error=str(exc))
    log.info("health.checked", findings=len(found.findings), took=round(found.took, 3))


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
        findings.append(Finding(None, Problem.CHECK_FAILED, f"{what} took longer than {limit:g} s; skipped"))
        return None
    if "error" in box:
        findings.append(Finding(None, Problem.CHECK_FAILED, f"{what} failed: {box['error']}"))
        return None
    value: T = box["value"]
    return value


def _read(tasks_root: Path, findings: list[Finding]) -> list[TaskStatus]:
    broken: list[BrokenRecord] = []
    found = store.TaskStore(tasks_root).all_records(broken)
    findings += [Finding(Path(str(b.path)).parent.name, Problem.UNREADABLE, str(b)) for b in broken]
    return found


def last_progress(status: TaskStatus) -> float:
    """Epoch seconds of the task's last progress, for records written before it was kept."""
    if status.daemon.active_at is not None:
        return status.daemon.active_at
    return parse_iso(status.started_at or status.updated_at).timestamp()


def _judge(
    status: TaskStatus,
    procs: ByTask | None,
    now: datetime,
    policy: HealthSettings,
    findings: list[Finding],
    table: Processes,
) -> TaskHealth:
    timeout, limit = timeouts_of(status, policy)
    last = last_progress(status)
    idle = now.timestamp() - last
    busy = busy_since(status, last)
    quiet = idle if busy is None else now.timestamp() - busy.at
    resume = status.daemon.resume
    alive = None
    if resume is None and status.pid is not None:
        alive = table.find(status.pid, status.daemon.pid_create_time, status.task_id) is not None
        if not alive:
            findings.append(
                Finding(
                    status.task_id,
                    Problem.DEAD,
                    f"its Codex process (pid {status.pid}) is gone, but its end is not recorded yet",
                )
            )
        elif is_stalled(idle, timeout, quiet, limit):
            findings.append(
                Finding(
                    status.task_id,
                    Problem.STALLED,
                    stall_line(idle, quiet, timeout, limit).removeprefix("Stalled: "),
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
        busy=None if busy is None or alive is not True else busy.to_dict(),
    )


def busy_since(status: TaskStatus, last: float) -> Busy | None:
    """What the daemon last saw its tree do, if that was after its last progress (else stale)."""
    busy = status.daemon.busy
    return busy if busy is not None and busy.at > last else None


def _orphans(statuses: list[TaskStatus], procs: ByTask) -> list[Finding]:
    """Processes of tasks that ended (or whose folder is gone): nothing should be left."""
    live_ids = {s.task_id for s in statuses if not s.is_terminal}
    found = []
    for task_id, left in sorted(procs.items()):
        if task_id in live_ids:
            continue
        pids = tuple(sorted(p.pid for p in left))
        found.append(
            Finding(task_id, Problem.ORPHANS, f"{len(pids)} process(es) left over after the task ended", pids)
        )
    return found
