"""A queued task held back says why, once per reason, in status.json and progress.log; it waits
no more once it leaves the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from codexd.clock import iso
from codexd.daemon.ledger import Ledger
from codexd.tasks import store
from codexd.tasks.records import TaskStatus, Waiting
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def queued(tasks: store.TaskStore, task_id: str = "t1") -> TaskStatus:
    tasks.dir(task_id).mkdir(mode=0o700)
    status = TaskStatus(task_id, "generic", TaskState.QUEUED, iso(NOW), iso(NOW), "")
    tasks.write_status(status)
    return status


def test_a_held_task_says_why_once_and_the_record_keeps_it(tmp_path: Path) -> None:
    tasks = store.TaskStore(tmp_path)
    book = Ledger(tasks)
    book.queued.append(queued(tasks))
    why = Waiting("usage limit reached; resumes at 15:05", "2026-11-26T15:05:00Z")
    for _ in range(3):
        held = book.hold(book.queued[0], why, NOW)
    assert tasks.read_status("t1").waiting == why
    assert book.queued[0] is held
    lines = tasks.file("t1", store.PROGRESS).read_text().splitlines()
    assert lines == [f"{iso(NOW)} waiting: usage limit reached; resumes at 15:05"]
    assert TaskStatus.from_dict(held.to_dict()).waiting == why


def test_let_go_and_leaving_the_queue_clear_the_wait(tmp_path: Path) -> None:
    tasks = store.TaskStore(tmp_path)
    book = Ledger(tasks)
    book.queued.append(queued(tasks))
    held = book.hold(book.queued[0], Waiting("waiting for other: same folder"), NOW)
    assert book.hold(held, None, NOW).waiting is None
    held = book.hold(book.queued[0], Waiting("waiting for other: same folder"), NOW)
    started = book.change(held, TaskState.IN_PROGRESS, NOW, "started")
    assert started.waiting is None
    assert tasks.read_status("t1").waiting is None


def test_a_hand_made_waiting_that_is_not_an_object_is_ignored() -> None:
    data = TaskStatus("t1", "generic", TaskState.QUEUED, iso(NOW), iso(NOW), "").to_dict()
    data["waiting"] = {"until": "soon"}
    assert TaskStatus.from_dict(data).waiting is None
    data["waiting"] = {"reason": "x", "until": "not a time"}
    assert TaskStatus.from_dict(data).waiting == Waiting("x", None)
