"""A task's place in the queue, as `list`, `status`, the dashboard and reports show it."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from codexd import api
from codexd.cli.dashboard import Dashboard, task_lines
from codexd.present import reports, views
from codexd.tasks.records import TaskStatus, Waiting
from codexd.tasks.states import TaskState
from codexd.tasks.taken import Taken

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)


def queued(task_id: str = "codex-b", **changes: Any) -> TaskStatus:
    return TaskStatus(
        task_id=task_id,
        type="generic",
        status=TaskState.QUEUED,
        created_at="2026-11-26T18:50:00Z",
        updated_at="2026-11-26T18:50:00Z",
        log_file="-",
        taken=Taken(after=("codex-a",), priority=5),
        waiting=Waiting("waiting for codex-a (in_progress)"),
    ).with_(**changes)


def test_the_status_column_says_what_holds_a_queued_task_briefly() -> None:
    assert views.status_text(queued().to_dict()) == "queued (after codex-a; priority 5)"
    no_priority = queued(taken=Taken(after=("codex-a",)))
    assert views.status_text(no_priority.to_dict()) == "queued (after codex-a)"
    folder = queued(taken=Taken(), waiting=Waiting("waiting for codex-a: same folder"))
    assert views.status_text(folder.to_dict()) == "queued (same folder)"
    limit = queued(taken=Taken(), waiting=Waiting("usage limit reached; resumes at 15:05"))
    assert views.status_text(limit.to_dict()) == "queued (waiting)"
    slot = queued(taken=Taken(priority=-3), waiting=None)
    assert views.status_text(slot.to_dict()) == "queued (priority -3)"
    assert views.status_text(queued(taken=None, waiting=None).to_dict()) == "queued"
    running = queued(status=TaskState.IN_PROGRESS, waiting=None)
    assert views.status_text(running.to_dict()) == "in_progress"  # its order no longer matters


def test_status_shows_what_it_waits_for_runs_after_and_its_priority() -> None:
    shown = views.task_details(queued().to_dict())
    assert "  waiting   waiting for codex-a (in_progress)\n  after     codex-a\n  priority  5\n" in shown
    plain = views.task_details(queued(taken=Taken(), waiting=None).to_dict())
    assert "after" not in plain and "priority" not in plain


def test_the_dashboard_task_view_has_a_line_for_the_queue() -> None:
    said = task_lines(queued().to_dict(), NOW)["queue"].plain
    assert said == "Waiting for codex-a (in_progress)   After: codex-a   Priority: 5"
    limit = queued(taken=Taken(), waiting=Waiting("usage limit reached"))
    assert task_lines(limit.to_dict(), NOW)["queue"].plain == "Waiting: usage limit reached"
    assert task_lines(queued(taken=Taken(), waiting=None).to_dict(), NOW)["queue"].plain == ""


async def test_the_80_column_task_list_shows_the_state_loud_and_the_ids_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("")
    tasks = api.Tasks(tmp_path / "tasks", config=tmp_path / "none.toml")
    tasks.spool_dir = tmp_path / "spool"
    status = queued(taken=Taken(after=("codex-a",)))
    tasks.store.dir(status.task_id).mkdir(parents=True)
    tasks.store.write_status(status)
    app = Dashboard(tasks, now=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        screen = html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")
        assert "QUEUED (after codex-a)" in screen


def test_reports_have_an_order_section_in_every_format(tmp_path: Path) -> None:
    report = reports.build(queued().to_dict(), None, tmp_path)
    assert report["order"] == {
        "after": ["codex-a"],
        "priority": 5,
        "waiting": "waiting for codex-a (in_progress)",
    }
    markdown = reports.render(report, "markdown")
    assert "## Order\n\n- Runs after: codex-a\n- Priority: 5\n- Waiting: waiting for codex-a" in markdown
    page = reports.render(report, "html")
    assert "<h2>Order</h2><ul><li>Runs after: codex-a</li><li>Priority: 5</li>" in page.replace("\n", "")
    assert json.loads(reports.render(report, "json"))["order"]["after"] == ["codex-a"]
    plain = reports.build(queued(taken=Taken(), waiting=None).to_dict(), None, tmp_path)
    assert "Order" not in reports.render(plain, "markdown") and "Order" not in reports.render(plain, "html")


def test_list_has_a_branch_column_only_when_a_task_runs_in_a_worktree() -> None:
    from codexd.present.views import task_table

    plain = {"task_id": "a", "type": "generic", "status": "completed"}
    tree = {**plain, "task_id": "b", "worktree": {"path": "/w", "branch": "codexd/b", "base": "c0ffee"}}
    assert "BRANCH" not in task_table([plain])
    lines = task_table([tree, plain]).splitlines()
    assert lines[0].split()[-1] == "BRANCH"
    assert lines[1].split()[-1] == "codexd/b" and lines[2].split()[-1] == "-"
