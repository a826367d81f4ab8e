"""The dashboard with Textual's headless Pilot: every key and screen, and snapshots.

Tasks are made by hand in a temporary folder and the clock is fixed, so nothing on screen
depends on when the test runs.
"""

from __future__ import annotations

import html
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log

from codexd import api
from codexd.cli.dashboard import ConfirmStop, Dashboard, LogView, TaskList, TaskView
from codexd.tasks import store
from codexd.tasks.records import Item, LastLog, Progress, TaskStatus
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2025, 10, 31, 12, 10, 0, tzinfo=UTC)
ITEMS = (
    Item("#626 - toml upgrade", "approved"),
    Item("#602 - crossterm upgrade", "changes_requested"),
    Item("#611 - serde upgrade", "commented"),
    Item("#615 - regex upgrade", "done"),
    Item("#617 - tokio upgrade", "failed"),
)


def review(state: TaskState = TaskState.IN_PROGRESS, **changes) -> TaskStatus:
    return TaskStatus(
        task_id="codex-pr-review-2025-10-31",
        type="pr_review",
        status=state,
        created_at="2025-10-31T11:50:00Z",
        updated_at="2025-10-31T12:00:00Z",
        log_file="-",
        started_at="2025-10-31T11:50:01Z",
        progress=Progress(total=19, completed=5, current="#602 - crossterm upgrade", items=ITEMS),
        restarts=1,
        stalls=1,
        last_log=LastLog("2025-10-31T11:59:45Z", "Running: gh pr diff 602"),
    ).with_(**changes)


@pytest.fixture
def tasks(tmp_path: Path) -> api.Tasks:
    found = api.Tasks(tmp_path / "tasks", config=tmp_path / "none.toml")
    found.spool_dir = tmp_path / "spool"  # never the user's own
    put(found, review())
    put(
        found,
        review(
            TaskState.COMPLETED,
            task_id="older",
            created_at="2025-10-30T09:00:00Z",
            started_at="2025-10-30T09:00:01Z",
            finished_at="2025-10-30T09:30:00Z",
            progress=Progress(total=2, completed=2),
        ),
    )
    log = found.store.file("codex-pr-review-2025-10-31", store.PROGRESS)
    log.write_text("".join(f"2025-10-31T11:5{i}:00Z line {i}\n" for i in range(5)))
    events = found.store.file("codex-pr-review-2025-10-31", store.EVENTS)
    events.write_text('{"type":"thread.started","thread_id":"th-1"}\n')
    return found


def put(tasks: api.Tasks, status: TaskStatus) -> None:
    tasks.store.dir(status.task_id).mkdir(parents=True, exist_ok=True)
    tasks.store.write_status(status)


@pytest.fixture(autouse=True)
def no_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEXD_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")


def text_of(app: Dashboard) -> str:
    """What is on the screen, as plain text."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def until(pilot, app: Dashboard, words: str, seconds: float = 3) -> None:
    for _ in range(int(seconds / 0.05)):
        if words in text_of(app):
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{words!r} never shown:\n{text_of(app)}")


async def test_the_task_view_shows_everything_and_follows_the_file(tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = text_of(app)
        for words in (
            "codex-pr-review-2025-10-31",
            "pr_review   status in_progress   started 2025-10-31T11:50:01Z   elapsed 19m59s",
            "5/19 (26.3%)",
            "✅ #626 - toml upgrade (approved)",
            "⚠️ #602 - crossterm upgrade (changes requested)",
            "💬 #611 - serde upgrade (commented)",
            "✔ #615 - regex upgrade (done)",
            "✖ #617 - tokio upgrade (failed)",
            "current: #602 - crossterm upgrade",
            "last log 2025-10-31T11:59:45Z  Running: gh pr diff 602",
            "restarts 1   stalls 1",
        ):
            assert words in screen, words
        put(tasks, review(progress=Progress(total=19, completed=6, items=ITEMS)))
        await until(pilot, app, "6/19 (31.6%)", seconds=1.5)  # on its own, within a second
        put(tasks, review(TaskState.COMPLETED, finished_at="2025-10-31T12:05:00Z"))
        await pilot.press("r")
        await until(pilot, app, "status completed", seconds=0.5)
        assert "elapsed 14m59s" in text_of(app)


async def test_l_follows_the_log_and_e_shows_raw_events(tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("l")
        assert isinstance(app.screen, LogView)
        await until(pilot, app, "line 4")
        store.append_line(tasks.store.file("codex-pr-review-2025-10-31", store.PROGRESS), "2025 new line")
        await until(pilot, app, "2025 new line", seconds=1)
        await pilot.press("e")
        await until(pilot, app, '"thread_id":"th-1"')
        assert app.screen.query_one(Log).line_count == 1
        await pilot.press("escape")
        assert isinstance(app.screen, TaskView)


async def test_s_asks_first_and_only_yes_stops(tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    request = tasks.root / store.REQUESTS / "codex-pr-review-2025-10-31.stop"
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("n")
        assert isinstance(app.screen, TaskView) and not request.exists()
        await pilot.press("s", "y")
        await pilot.pause(0.1)
        assert request.exists()
        await pilot.press("q")
    assert not app.is_running


async def test_a_finished_and_a_queued_task_show_too(tasks, tmp_path):
    app = Dashboard(tasks, "older", now=lambda: NOW)
    async with app.run_test(size=(100, 30)):
        assert "status completed" in text_of(app) and "2/2 (100.0%)" in text_of(app)
    queued = tasks.submit(b"Do it.\n", "later.md")  # no daemon: it waits in the spool
    app = Dashboard(tasks, queued, now=lambda: NOW)
    async with app.run_test(size=(100, 30)):
        screen = text_of(app)
        assert "status queued" in screen and "waiting in the spool" in screen


async def test_the_list_is_newest_first_live_and_opens_a_task(tasks):
    app = Dashboard(tasks, now=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(DataTable)
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == [
            "codex-pr-review-2025-10-31",
            "older",
        ]
        assert table.get_row_at(0)[1:] == ["pr_review", "in_progress", "5/19 (26.3%)", "19m59s", "1"]
        put(tasks, review(task_id="newest", created_at="2025-10-31T12:09:00Z"))
        await until(pilot, app, "newest", seconds=1.5)
        await pilot.press("down", "enter")
        assert isinstance(app.screen, TaskView) and app.screen.task_id == "codex-pr-review-2025-10-31"
        await pilot.press("escape")
        assert isinstance(app.screen, TaskList)
        shutil.rmtree(tasks.root / "older")
        await pilot.press("r")  # now, not at the next look
        assert "older" not in [table.get_row_at(i)[0] for i in range(table.row_count)]


def test_snapshot_task_view(snap_compare, tasks):
    assert snap_compare(
        Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW), terminal_size=(100, 30)
    )


def test_snapshot_task_list(snap_compare, tasks):
    assert snap_compare(Dashboard(tasks, now=lambda: NOW), terminal_size=(100, 12))


def test_snapshot_log_view(snap_compare, tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    assert snap_compare(app, press=["l"], terminal_size=(80, 12))


def test_snapshot_stop_confirmation(snap_compare, tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    assert snap_compare(app, press=["s"], terminal_size=(80, 20))
