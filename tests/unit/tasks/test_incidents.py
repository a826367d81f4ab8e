"""Incidents kept as data (tasks/incidents): recorded where their log line is written, read
by reports without matching the log's text; an older codexd's record still reads its log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from codexd.daemon.ledger import Ledger
from codexd.present import reports
from codexd.tasks import incidents, store
from codexd.tasks.incidents import Incident, IncidentKind
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2025, 10, 31, 12, tzinfo=UTC)
AT = "2025-10-31T12:00:00Z"


def record(tmp_path: Path, state: TaskState, recorded: bool = True) -> tuple[store.TaskStore, TaskStatus]:
    tasks = store.TaskStore(tmp_path)
    tasks.dir("t").mkdir()
    status = TaskStatus("t", "generic", state, AT, AT, log_file="x", incidents=() if recorded else None)
    tasks.write_status(status)
    return tasks, status


def test_the_last_hundred_are_kept_and_an_older_record_keeps_none():
    status = TaskStatus("t", "generic", TaskState.IN_PROGRESS, AT, AT, log_file="x", incidents=())
    for n in range(incidents.KEPT + 5):
        status = status.with_incident(IncidentKind.RETRY, AT, f"retry {n}")
    assert status.incidents is not None and len(status.incidents) == incidents.KEPT
    assert status.incidents[0].text == "retry 5"
    older = status.with_(incidents=None)
    assert older.with_incident(IncidentKind.STALL, AT, "Stalled") is older


def test_they_read_back_from_status_json_and_an_ill_typed_one_is_dropped():
    status = TaskStatus("t", "generic", TaskState.STALLED, AT, AT, log_file="x", incidents=())
    data = status.with_incident(IncidentKind.STALL, AT, "Stalled: x").to_dict()
    assert data["incidents"] == [{"at": AT, "kind": "stall", "text": "Stalled: x"}]
    data["incidents"].append({"at": AT, "kind": "no such kind", "text": "?"})
    assert TaskStatus.from_dict(data).incidents == (Incident(AT, IncidentKind.STALL, "Stalled: x"),)
    del data["incidents"]
    assert TaskStatus.from_dict(data).incidents is None


def test_state_changes_that_are_incidents():
    assert incidents.of_change(TaskState.IN_PROGRESS, TaskState.STALLED) == IncidentKind.STALL
    assert incidents.of_change(TaskState.QUEUED, TaskState.FAILED) == IncidentKind.FAILED
    assert incidents.of_change(TaskState.STALLED, TaskState.IN_PROGRESS) == IncidentKind.RESUMED
    assert incidents.of_change(TaskState.QUEUED, TaskState.IN_PROGRESS) is None
    assert incidents.of_change(TaskState.IN_PROGRESS, TaskState.COMPLETED) is None


def test_the_ledger_records_a_stall_and_a_lost_notice_of_an_ended_task(tmp_path):
    tasks, status = record(tmp_path, TaskState.IN_PROGRESS)
    book = Ledger(tasks)
    stalled = book.change(status, TaskState.STALLED, NOW, "Stalled: no progress for 15m00s")
    book.change(stalled, TaskState.FAILED, NOW, "Failed: it stalled")
    book.note("t", NOW, "Notice undeliverable: failed to json://****: down", IncidentKind.NOTICE_LOST)
    kinds = [i.kind for i in tasks.read_status("t").incidents or ()]
    assert kinds == [IncidentKind.STALL, IncidentKind.FAILED, IncidentKind.NOTICE_LOST]


def test_a_report_reads_the_record_not_the_log_s_wording(tmp_path):
    tasks, status = record(tmp_path, TaskState.FAILED)
    status = status.with_(error="it stalled").with_incident(IncidentKind.STALL, AT, "Stalled: for long")
    status = status.with_incident(IncidentKind.FAILED, AT, "Failed: it stalled")
    tasks.write_status(status)
    tasks.file("t", store.PROGRESS).write_text(f"{AT} Stopped making progress (reworded)\n")
    report = reports.build(tasks.read_status_dict("t"), None, tasks.dir("t"))
    assert report["incidents"] == [
        {"at": AT, "text": "Stalled: for long"},
        {"at": AT, "text": "Failed: it stalled"},
    ]
    assert f"- {AT} Stalled: for long" in reports.markdown(
        report
    ) and "Failed: it stalled" not in reports.markdown(report).split("## Errors and restarts")[1].replace(
        "**Error:** it stalled", ""
    )


def test_an_older_codexd_s_task_is_reported_from_its_log(tmp_path):
    tasks, _ = record(tmp_path, TaskState.FAILED, recorded=False)
    tasks.file("t", store.PROGRESS).write_text(f"{AT} Stalled: no progress\n{AT} Working on: x\n")
    report = reports.build(tasks.read_status_dict("t"), None, tasks.dir("t"))
    assert report["incidents"] == [{"at": AT, "text": "Stalled: no progress"}]


@pytest.fixture
def world(tmp_path):
    from tests.unit.daemon.test_supervisor import FakeProcesses, worlds

    yield from worlds(tmp_path, FakeProcesses())


def test_a_daemon_records_what_its_log_says_of_a_task_that_kept_stalling(world):
    from tests.unit.daemon.test_supervisor import stall_and_restart

    w = world(max_restarts=1)
    stall_and_restart(w)
    w.advance(900)
    w.tick_until(lambda: w.status()["status"] == "failed")
    status = w.status()
    task_dir = Path(status["log_file"]).parent
    kinds = [i["kind"] for i in status["incidents"]]
    assert kinds == ["stall", "restart", "resumed", "stall", "failed"]
    assert reports.incidents(status, task_dir / store.PROGRESS) == reports.logged_incidents(
        task_dir / store.PROGRESS
    )
