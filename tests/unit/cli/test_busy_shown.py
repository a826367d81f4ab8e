"""A busy task as people see it: `codexd health`'s line and the dashboard's task view."""

from __future__ import annotations

from typing import Any

import pytest

from codexd.cli.dashboard import Dashboard, task_lines
from codexd.present import views
from codexd.tasks.records import Busy, Cursor
from codexd.tasks.states import TaskState
from tests.unit.cli.test_dashboard import NOW, local_zone, no_config, put, review, tasks, text_of

__all__ = ["local_zone", "no_config", "tasks"]  # the dashboard tests' fixtures, used here too
pytestmark = pytest.mark.timeout(60)
ACTIVE = NOW.timestamp() - 1200
CARGO = Busy(at=ACTIVE + 1195, cpu=192.4, what="cargo build --release")


def busy_task(busy: Busy | None = CARGO, state: TaskState = TaskState.IN_PROGRESS) -> dict[str, Any]:
    return review(state, daemon=Cursor(active_at=ACTIVE, busy=busy)).to_dict()


def test_the_busy_line_names_the_command_and_the_cpu_since_the_last_event():
    assert views.task_busy(busy_task()) == "busy: cargo build --release, 3m12s of CPU"
    assert task_lines(busy_task(), NOW)["busy"].plain == "Busy: cargo build --release, 3m12s of CPU"


def test_no_busy_line_for_a_stale_reading_an_ended_task_or_none_at_all():
    before_progress = Busy(at=ACTIVE - 5, cpu=3.0, what="make")
    assert views.task_busy(busy_task(before_progress)) == ""
    assert views.task_busy(busy_task(state=TaskState.COMPLETED)) == ""
    assert views.task_busy(busy_task(None)) == ""
    assert task_lines(busy_task(None), NOW)["busy"].plain == ""


def test_a_command_line_with_control_characters_is_shown_not_obeyed():
    hostile = Busy(at=ACTIVE + 1, cpu=1.0, what="evil \x1b]52;c;aGk=\x07\nsecond line")
    line = views.task_busy(busy_task(hostile))
    assert "\x1b" not in line and "\n" not in line and "\\x1b]52" in line


def test_the_health_report_says_busy_beside_the_idle_time():
    task = {
        "task_id": "t1",
        "status": "in_progress",
        "pid": 4711,
        "alive": True,
        "idle": 1264.0,
        "stall_timeout": 900.0,
        "restarts": 0,
        "retries": 0,
        "resume_in": None,
        "busy": CARGO.to_dict(),
    }
    found = {"daemon": {"pid": 1, "last_check": None}, "tasks": [task], "findings": []}
    assert (
        "  t1  in_progress  pid 4711 alive, idle 21m04s of 15m00s; busy: cargo build --release, "
        "3m12s of CPU  (restarts 0, retries 0)"
    ) in views.health_report(found)
    task["busy"] = None
    assert "busy" not in views.health_report(found)


async def test_the_task_view_shows_the_busy_line(tasks):
    put(tasks, review(daemon=Cursor(active_at=ACTIVE, busy=CARGO)))
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        screen = text_of(app)
        assert "Busy: cargo build --release, 3m12s of CPU" in screen
        assert "Current: #602 - crossterm upgrade" in screen and "Restarts: 1   Stalls: 1" in screen
