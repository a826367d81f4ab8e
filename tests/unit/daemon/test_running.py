"""One running task's phases: each method moves it to one phase, and what a stop meant
lasts until its end is handled."""

from __future__ import annotations

import pytest

from codexd.daemon.running import Ending, Finishing, Idle, Running, Stopping, Waiting, Watched, Why
from codexd.tasks.records import Resume, ResumeKind, TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)


class Child:
    pid = 900_300_001

    def wait(self) -> int | None:
        return 0

    def poll(self) -> int | None:
        return None


def task() -> Running:
    status = TaskStatus(
        "t1", "generic", TaskState.IN_PROGRESS, "2025-10-31T12:00:00Z", "2025-10-31T12:00:00Z", "-"
    )
    return Running(status, run=1, active=5.0, folder=None)


def test_a_task_is_idle_until_its_codex_runs_then_watched():
    running = task()
    assert running.phase == Idle() and not running.has_process
    running.watch(2, Child(), active=7.0)
    assert (running.phase, running.run, running.active, running.has_process) == (Watched(), 2, 7.0, True)
    assert running.adopted is None and running.why is None


def test_why_a_process_was_stopped_lasts_until_its_end_is_handled():
    running = task()
    running.watch(2, Child(), active=7.0)
    running.stop(Why.CANCEL)
    assert running.phase == Stopping(Why.CANCEL) and running.has_process
    running.exited(-15)
    assert running.phase == Finishing(-15, Stopping(Why.CANCEL)) and not running.has_process
    running.exited(-15)  # handled again (a full disk, a backlog): still a cancellation
    assert running.why == Why.CANCEL


def test_a_run_that_ended_on_its_own_is_judged_and_an_owed_run_waits():
    running = task()
    running.watch(2, Child(), active=7.0)
    running.exited(1)
    assert running.phase == Finishing(1) and running.why is None
    running.wait(17.0)
    assert running.phase == Waiting(17.0) and running.why is None


def test_an_end_decided_without_a_run_is_kept_until_it_is_recorded():
    running = task()
    ending = Ending(TaskState.FAILED, "Could not start Codex: boom", "boom")
    running.ends(ending)
    assert running.phase == Finishing(None, None, ending)


@pytest.mark.parametrize("kind", list(ResumeKind))
def test_every_owed_resume_survives_a_daemon_restart(kind):
    """A fresh start owed after a lost session was dropped by a new daemon, and the task failed."""
    owed = Resume(1.0, kind, "its session was lost")
    assert Resume.from_dict(owed.to_dict()) == owed
