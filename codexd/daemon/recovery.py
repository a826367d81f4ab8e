"""Start-up: the tasks an earlier daemon left are taken up again.

Live runs are re-adopted, runs that ended while no daemon watched are judged from their
files, a stop or restart the last daemon was carrying out is finished, a resume it owed is
honoured (with what is left of its backoff), and queued tasks wait for a slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import psutil
import structlog

from codexd.clock import iso
from codexd.codex import process
from codexd.daemon.processes import cgroup_of_process
from codexd.daemon.requests import Requests, began_after
from codexd.daemon.running import Why
from codexd.daemon.runs import Runs
from codexd.errors import CodexdError
from codexd.tasks import store
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

log = structlog.get_logger()
Live = dict[str, list[psutil.Process]]


class Recovery:
    def __init__(self, runs: Runs, requests: Requests, guard: Callable[..., None]):
        self.runs = runs
        self.requests = requests
        self.book = runs.book
        self.tasks = runs.tasks
        self.processes = runs.processes
        self.guard = guard

    def recover(self, now: datetime) -> None:
        """Re-adopt live tasks, finish those that ended unseen, queue the waiting ones."""
        live = self.processes.by_task(self.tasks.root)
        wanted = self.requests.waiting()
        records = [d for d in self.tasks.all_statuses() if isinstance(d, dict)]
        for data in sorted(records, key=lambda d: str(d.get("created_at", ""))):
            try:
                status = TaskStatus.from_dict(data)
            except (KeyError, ValueError, TypeError) as exc:
                log.error("task.unreadable", task_id=data.get("task_id"), error=str(exc))
                continue
            self.guard(self.recover_one, status, live, wanted.get(status.task_id, {}), now)
        self.book.queued.sort(key=lambda s: (s.created_at, s.daemon.accepted_ns))

    def recover_one(self, status: TaskStatus, live: Live, wanted: dict[str, int], now: datetime) -> None:
        if status.status == TaskState.QUEUED and not self._take_over(status, live, now):
            self._kill_strays(status.task_id, live)  # a tree it cannot make sense of, if any
            self.book.queued.append(status)
        elif status.is_active:
            self._readopt(status, live, wanted, now)

    def _take_over(self, status: TaskStatus, live: Live, now: datetime) -> bool:
        """A queued task that has a Codex run: the last daemon died between starting it and
        recording that. Take the run over, or its outcome if it has ended, rather than throw
        the work away and run it again."""
        root = process.root_of(live.get(status.task_id, []))
        try:
            if root is not None:
                self._adopt_unrecorded(status, root, now)
            elif status.task_id not in live and self._ran_unrecorded(status):
                self._finish_unrecorded(status, now)
            else:
                return False  # never started, or a tree it cannot make sense of
        except (psutil.Error, CodexdError, OSError) as exc:
            log.warning("task.take_over_failed", task_id=status.task_id, error=str(exc))
            return False
        log.info("task.taken_over", task_id=status.task_id, pid=root.pid if root else None)
        return True

    def _ran_unrecorded(self, status: TaskStatus) -> bool:
        return store.size_of(self.tasks.file(status.task_id, store.EVENTS)) > status.daemon.events

    def _adopt_unrecorded(self, status: TaskStatus, root: psutil.Process, now: datetime) -> None:
        began = root.create_time()
        cgroup = cgroup_of_process(root.pid, self.tasks.dir(status.task_id))  # never recorded
        cursor = replace(status.daemon, pid_create_time=began, active_at=now.timestamp(), cgroup=cgroup)
        started = status.with_(
            pid=root.pid, started_at=iso(datetime.fromtimestamp(began, UTC)), daemon=cursor
        )
        line = f"Started Codex (pid {root.pid}; taken over from a daemon that stopped while starting it)"
        self.runs.adopt(self.book.change(started, TaskState.IN_PROGRESS, now, line), root, now)

    def _finish_unrecorded(self, status: TaskStatus, now: datetime) -> None:
        began = self.tasks.file(status.task_id, store.EVENTS).stat().st_mtime
        started = status.with_(started_at=iso(datetime.fromtimestamp(began, UTC)))
        line = "Codex ran while no daemon recorded it (a daemon stopped while starting it)"
        running = self.runs.adopt(self.book.change(started, TaskState.IN_PROGRESS, now, line), None, now)
        self.runs.exited(running, None, now)  # it has ended: its event log decides how

    def _readopt(self, status: TaskStatus, live: Live, wanted: dict[str, int], now: datetime) -> None:
        if status.daemon.log and store.truncate_to(
            self.tasks.file(status.task_id, store.PROGRESS), status.daemon.log
        ):
            log.info("task.log_rewound", task_id=status.task_id)  # lines the last daemon did not record
        proc = self.processes.find(status.pid, status.daemon.pid_create_time, status.task_id)
        running = self.runs.adopt(status, proc, now)
        if proc is not None:
            log.info("task.readopted", task_id=status.task_id, pid=status.pid)
            if status.status == TaskState.STALLED:  # a restart that a crash cut short
                self.runs.restart_stalled(running)
            return
        self._kill_strays(status.task_id, live)
        owed = status.daemon.resume
        restart = "restart" in wanted and not began_after(status, wanted["restart"])
        if "stop" in wanted or (restart and owed is None):
            # The last daemon was stopping or restarting it when it died: carry that out.
            running.stop(Why.CANCEL if "stop" in wanted else Why.RESTART_NOW)
            self.runs.exited(running, None, now)
        elif owed is not None:
            running.wait(self.runs.clock.monotonic() + max(0.0, owed.at - now.timestamp()))
            log.info("task.resume_owed", task_id=status.task_id, kind=owed.kind)
        elif status.status == TaskState.STALLED:
            self.runs.restart_stalled(running)
            self.runs.exited(running, None, now)
        else:
            log.info("task.ended_unseen", task_id=status.task_id)
            self.runs.exited(running, None, now)

    def _kill_strays(self, task_id: str, live: Live) -> None:
        if task_id in live:
            log.warning("task.strays", task_id=task_id, pids=[p.pid for p in live[task_id]])
            self.processes.kill_tree(None, self.tasks.dir(task_id), self.runs.settings.daemon.stop_grace)
