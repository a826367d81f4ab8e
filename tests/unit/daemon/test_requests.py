"""`codexd retry` inside: the one transition back to queued, and what a new run starts from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codexd.daemon.requests import again
from codexd.tasks import incidents
from codexd.tasks.incidents import IncidentKind
from codexd.tasks.records import Cursor, Item, Progress, ResumeKind, TaskStatus
from codexd.tasks.states import TERMINAL, TaskState, can_change

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2025, 10, 31, 12, tzinfo=UTC)
AT = "2025-10-31T11:00:00Z"


def failed() -> TaskStatus:
    return TaskStatus(
        "t",
        "generic",
        TaskState.FAILED,
        AT,
        AT,
        log_file="x",
        started_at=AT,
        finished_at=AT,
        progress=Progress(3, 1, None, (Item("step one"),)),
        results={"done": 1},
        thread_id="thread-1",
        restarts=2,
        exit_code=1,
        error="the build broke",
        daemon=Cursor(events=900, streak=2, afresh=1, cgroup="/sys/fs/cgroup/x"),
    )


def test_only_a_failed_or_cancelled_task_goes_back_to_queued():
    back = {old for old in TaskState if can_change(old, TaskState.QUEUED)}
    assert back == {TaskState.FAILED, TaskState.CANCELLED}
    assert all(not can_change(old, new) for old in TERMINAL for new in TaskState if new != TaskState.QUEUED)
    assert incidents.of_change(TaskState.CANCELLED, TaskState.QUEUED) == IncidentKind.RERUN


def test_a_retry_clears_the_last_run_and_keeps_the_history():
    status = again(failed(), "thread-1", NOW)
    assert (status.finished_at, status.started_at, status.exit_code, status.error, status.pid) == (None,) * 5
    assert status.restarts == 2 and status.progress.items == (Item("step one"),)
    assert status.daemon.resume is not None and status.daemon.resume.kind == ResumeKind.RERUN
    assert "it failed (the build broke)" in status.daemon.resume.reason
    assert (status.daemon.events, status.daemon.streak, status.daemon.afresh, status.daemon.cgroup) == (
        900,
        0,
        0,
        None,
    )


def test_a_fresh_retry_owes_no_resume_and_starts_its_progress_over():
    status = again(failed(), None, NOW)
    assert status.thread_id is None and status.daemon.resume is None
    assert status.progress == Progress() and status.results == {} and status.restarts == 2
