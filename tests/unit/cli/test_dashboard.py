"""The dashboard with Textual's headless Pilot: every key and screen, and snapshots.

Tasks are made by hand in a temporary folder, the clock is fixed and the local zone is one
hour east of UTC (`CET-1`, a zone with no summer time), so nothing on screen depends on when
or where the test runs, and a time in UTC on screen is a bug.
"""

from __future__ import annotations

import html
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log

from codexd import api
from codexd.cli.dashboard import ConfirmStop, Dashboard, KeyLine, LogView, TaskList, TaskView
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


@pytest.fixture(autouse=True)
def local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "CET-1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


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
    async with app.run_test(size=(80, 24)) as pilot:
        screen = text_of(app)
        for words in (
            "codex-pr-review-2025-10-31 — pr_review",
            "Status: IN PROGRESS   Started: 2025-10-31 12:50:01   Elapsed: 00:19:59",
            "Progress:",
            "5/19 (26.3%)",
            "Completed PRs",
            "✅ #626 - toml upgrade (APPROVED)",
            "⚠️ #602 - crossterm upgrade (CHANGES REQUESTED)",
            "💬 #611 - serde upgrade (COMMENTED)",
            "✔ #615 - regex upgrade (DONE)",
            "✖ #617 - tokio upgrade (FAILED)",
            "Current: #602 - crossterm upgrade",
            "Last log: [12:59:45] Running: gh pr diff 602",
            "Restarts: 1   Stalls: 1",
            "[R]efresh | [L]ogs | [S]top | [Q]uit",
        ):
            assert words in screen, words
        assert "[Esc] Back" not in screen  # opened by its id: there is nothing to go back to
        put(tasks, review(progress=Progress(total=19, completed=6, items=ITEMS)))
        await until(pilot, app, "6/19 (31.6%)", seconds=1.5)  # on its own, within a second
        put(tasks, review(TaskState.COMPLETED, finished_at="2025-10-31T12:05:00Z"))
        await pilot.press("r")
        await until(pilot, app, "Status: COMPLETED", seconds=0.5)
        assert "Elapsed: 00:14:59" in text_of(app)


@pytest.mark.parametrize("state", [TaskState.CANCELLED, TaskState.FAILED, TaskState.COMPLETED])
async def test_an_ended_task_says_so_in_capitals_and_has_no_current_item(tasks, state):
    ended = review(state, finished_at="2025-10-31T12:00:23Z", error="cancelled by codexd stop")
    put(tasks, ended)  # its progress still names the item it was on
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        screen = text_of(app)
        assert f"Status: {state.value.upper()}   Started: 2025-10-31 12:50:01   Elapsed: 00:10:22" in screen
        assert "Current:" not in screen and "crossterm upgrade (CHANGES REQUESTED)" in screen
        assert "Error: cancelled by codexd stop" in screen
        assert "Last log: [12:59:45] Running: gh pr diff 602" in screen


async def test_results_that_missed_the_schema_are_flagged_in_sight(tasks):
    why = "'approved' is a required property; 'merged' is not one of the outcomes of a pr_review result"
    flag = f"⚠️ results did not match the pr_review schema: {why}"
    put(tasks, review(TaskState.COMPLETED, finished_at="2025-10-31T12:00:23Z", error=flag))
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        screen = " ".join(text_of(app).split())  # the flag wraps
        assert "Error: ⚠️ results did not match the pr_review schema: 'approved' is a required" in screen
        assert "outcomes of a pr_review result" in screen and "Last log: [12:59:45]" in screen


async def test_many_items_scroll_and_the_last_log_stays_in_sight(tasks):
    many = tuple(Item(f"#{700 + i} - crate{i} upgrade", "approved") for i in range(40))
    progress = Progress(total=40, completed=40, current="#740 - last one", items=many)
    put(tasks, review(progress=progress))
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = text_of(app)
        assert "#739 - crate39 upgrade" in screen and "#700 - crate0 upgrade" not in screen  # the newest
        assert "Current: #740 - last one" in screen and "Last log: [12:59:45]" in screen
        await pilot.press("home")  # the list has the focus: it scrolls, the rest stays
        screen = text_of(app)
        assert "#700 - crate0 upgrade" in screen and "#739 - crate39 upgrade" not in screen
        assert "Current: #740 - last one" in screen and "Last log: [12:59:45]" in screen
        put(tasks, review(progress=progress, last_log=LastLog("2025-10-31T12:00:00Z", "no new item")))
        await pilot.press("r")  # redrawn without a new item: where the user scrolled to stays
        assert "Last log: [13:00:00] no new item" in text_of(app) and "#700 - crate0" in text_of(app)


async def test_a_last_log_of_another_local_day_shows_its_date(tasks):
    put(tasks, review(last_log=LastLog("2025-10-30T23:30:00Z", "Started")))
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        assert "Last log: [00:30:00] Started" in text_of(app)  # another day in UTC, today here
    put(tasks, review(last_log=LastLog("2025-10-30T22:30:00Z", "Started")))
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        assert "Last log: [2025-10-30 23:30:00] Started" in text_of(app)


@pytest.mark.parametrize("case", [str.lower, str.upper])
async def test_the_keys_work_in_either_case(tasks, case):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    request = tasks.root / store.REQUESTS / "codex-pr-review-2025-10-31.stop"
    async with app.run_test(size=(80, 24)) as pilot:
        put(tasks, review(progress=Progress(total=19, completed=7, items=ITEMS)))
        await pilot.press(case("r"))  # before the next look
        assert "7/19 (36.8%)" in text_of(app)
        await pilot.press(case("l"))
        assert isinstance(app.screen, LogView)
        await pilot.press(case("e"))
        await until(pilot, app, '"thread_id":"th-1"')
        await pilot.press(case("l"))
        assert isinstance(app.screen, TaskView)
        await pilot.press(case("s"))
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press(case("n"))
        assert isinstance(app.screen, TaskView) and not request.exists()
        await pilot.press(case("s"), case("y"))
        await pilot.pause(0.1)
        assert request.exists()
        await pilot.press(case("q"))
    assert not app.is_running


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


async def test_a_finished_and_a_queued_task_show_too(tasks, tmp_path):
    app = Dashboard(tasks, "older", now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        assert "Status: COMPLETED" in text_of(app) and "2/2 (100.0%)" in text_of(app)
    queued = tasks.submit(b"Do it.\n", "later.md")  # no daemon: it waits in the spool
    app = Dashboard(tasks, queued, now=lambda: NOW)
    async with app.run_test(size=(80, 24)):
        screen = text_of(app)
        assert "Status: QUEUED   Started: -   Elapsed: -" in screen and "waiting in the spool" in screen
        assert "╭─ Completed ─" in screen and "nothing finished yet" in screen  # generic: no "PRs"


async def test_the_list_is_newest_first_live_and_opens_a_task(tasks):
    app = Dashboard(tasks, now=lambda: NOW)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(DataTable)
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == [
            "codex-pr-review-2025-10-31",
            "older",
        ]
        assert table.get_row_at(0)[1:] == ["pr_review", "IN PROGRESS", "5/19 (26.3%)", "19m59s", "1", "-"]
        put(tasks, review(task_id="newest", created_at="2025-10-31T12:09:00Z"))
        await until(pilot, app, "newest", seconds=1.5)
        assert "[Enter] Open | [R]efresh | [Q]uit" in text_of(app)
        await pilot.press("down", "enter")
        assert isinstance(app.screen, TaskView) and app.screen.task_id == "codex-pr-review-2025-10-31"
        assert "[S]top | [Esc] Back | [Q]uit" in text_of(app)
        await pilot.press("escape")
        assert isinstance(app.screen, TaskList)
        shutil.rmtree(tasks.root / "older")
        await pilot.press("r")  # now, not at the next look
        assert "older" not in [table.get_row_at(i)[0] for i in range(table.row_count)]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_task_view(snap_compare, tasks, size):
    assert snap_compare(Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW), terminal_size=size)


def test_snapshot_cancelled_task_with_more_items_than_fit(snap_compare, tasks):
    many = tuple(Item(f"#{700 + i} - crate{i} upgrade", ("approved", "commented")[i % 2]) for i in range(19))
    cancelled = review(
        TaskState.CANCELLED,
        finished_at="2025-10-31T12:00:23Z",
        error="cancelled by codexd stop",
        progress=Progress(total=25, completed=19, current="#719 - crate19 upgrade", items=many),
    )
    put(tasks, cancelled)
    assert snap_compare(
        Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW), terminal_size=(80, 24)
    )


def test_snapshot_task_list(snap_compare, tasks):
    assert snap_compare(Dashboard(tasks, now=lambda: NOW), terminal_size=(80, 24))


def test_snapshot_log_view(snap_compare, tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    assert snap_compare(app, press=["l"], terminal_size=(80, 24))


def test_snapshot_stop_confirmation(snap_compare, tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    assert snap_compare(app, press=["s"], terminal_size=(80, 24))


async def test_the_key_line_can_be_clicked(tasks):
    app = Dashboard(tasks, "codex-pr-review-2025-10-31", now=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        logs = 1 + len("[R]efresh | ") + 2  # the line is padded by one
        await pilot.click(KeyLine, offset=(logs, 0))
        assert isinstance(app.screen, LogView)
        quit_ = 1 + len("[E] Raw events / progress log | [L]/[Esc] Back | ") + 2
        await pilot.click(KeyLine, offset=(quit_, 0))
    assert not app.is_running
