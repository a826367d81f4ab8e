"""The process backend: how the daemon starts, finds and ends Codex process trees.

`Processes` is the real one, over `codex/process`; the supervisor and a task's runs are
given one, and tests give them a fake of the same shape (processes that end when told).
Ending a tree runs on a killer thread: one that fails is logged and tried again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import psutil
import structlog

from codexd.codex import containment, process
from codexd.tasks.records import TaskStatus

log = structlog.get_logger()
KILL_TRIES = 3  # a killer that fails (a process-table hiccup) tries again this often
KILL_RETRY = 1.0  # seconds between those tries


class Child(Protocol):
    """A Codex process this daemon started (a `subprocess.Popen`)."""

    @property
    def pid(self) -> int: ...

    def wait(self) -> int | None: ...

    def poll(self) -> int | None: ...


class Processes:
    kill_retry = KILL_RETRY

    def spawn(self, launch: process.Launch) -> Child:
        return process.spawn(launch)

    def forget(self, pid: int) -> None:
        process.forget(pid)

    def create_time(self, pid: int) -> float | None:
        return process.create_time(pid)

    def find(self, pid: int | None, started: float | None, task_id: str) -> psutil.Process | None:
        return process.find(pid, started, task_id)

    def by_task(self, tasks_root: Path) -> dict[str, list[psutil.Process]]:
        return process.processes_by_task(tasks_root)

    def kill_tree(
        self, root: psutil.Process | None, task_dir: Path, grace: float, cgroup: Path | None = None
    ) -> list[psutil.Process]:
        return process.kill_tree(root, task_dir, grace, cgroup)

    def end_adopted(self) -> list[int]:
        return process.end_adopted()

    def end_tree(
        self, root: psutil.Process | None, task_dir: Path, grace: float, cgroup: Path | None = None
    ) -> None:
        """`kill_tree` on a killer thread: one that fails is logged and tried again. Then the
        orphans a subreaper daemon adopted from ended trees are ended too."""
        for attempt in range(1, KILL_TRIES + 1):
            try:
                self.kill_tree(root, task_dir, grace, cgroup)
                break
            except Exception as exc:
                log.error("task.kill_failed", task_id=task_dir.name, attempt=attempt, exc_info=exc)
                time.sleep(self.kill_retry)
        self.end_orphans()

    def end_orphans(self) -> None:
        try:
            ended = self.end_adopted()
        except Exception as exc:
            log.error("task.adopted_end_failed", exc_info=exc)
            return
        if ended:
            log.info("task.adopted_ended", pids=ended)


def cgroup_of(status: TaskStatus, task_dir: Path) -> Path | None:
    """The run's recorded cgroup, if it is plausibly the task's (see containment.recorded)."""
    return containment.recorded(status.daemon.cgroup, task_dir)


def cgroup_of_process(pid: int, task_dir: Path) -> str | None:
    """The cgroup a run taken over without a record is in, if it is one of the task's."""
    found = containment.cgroup_of(pid)
    return str(found) if found and containment.recorded(str(found), task_dir) else None


def end_cgroup(status: TaskStatus, task_dir: Path) -> None:
    folder = cgroup_of(status, task_dir)
    if folder is not None and not containment.end(folder):
        log.warning("task.cgroup_left", task_id=status.task_id, cgroup=str(folder))
