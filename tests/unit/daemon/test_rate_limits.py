"""The account's rate limits: taken from the rollout's token_count lines (the shape Codex
0.169/0.171 write), the newest kept in one file of the tasks folder, shown by `health`
and the dashboard, and nothing at all when no rollout had them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from codexd.daemon import follower
from codexd.present import views
from codexd.tasks import account
from codexd.tasks.records import Usage
from tests.unit.cli.test_dashboard import local_zone  # times are shown in CET here
from tests.unit.daemon import test_usage as usage

codex_home, token_count = usage.codex_home, usage.token_count
__all__ = ["codex_home", "local_zone"]  # fixtures
pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 11, 26, 14, 2, tzinfo=UTC)
FIVE_HOURS = int(datetime(2026, 11, 26, 15, 5, tzinfo=UTC).timestamp())
WEEK = int(datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp())


def with_limits(used: Usage, at: str = "2026-11-26T14:02:00.123Z", **limits: Any) -> dict[str, Any]:
    """A token_count line as Codex writes it on a ChatGPT plan."""
    line = token_count(used)
    line["timestamp"] = at
    line["payload"]["rate_limits"] = {
        "limit_id": "codex",
        "limit_name": None,
        "primary": {"used_percent": 42.5, "window_minutes": 300, "resets_at": FIVE_HOURS},
        "secondary": {"used_percent": 12.0, "window_minutes": 10080, "resets_at": WEEK},
        "credits": None,
        "plan_type": None,
        **limits,
    }
    return line


def test_the_snapshot_is_made_plain():
    found = account.snapshot_of(with_limits(Usage.of(10, 0, 1)))
    assert found == {
        "seen_at": "2026-11-26T14:02:00Z",
        "limit_id": "codex",
        "primary": {"used_percent": 42.5, "window_minutes": 300, "resets_at": "2026-11-26T15:05:00Z"},
        "secondary": {"used_percent": 12.0, "window_minutes": 10080, "resets_at": "2026-12-01T09:00:00Z"},
    }
    older = with_limits(Usage(), primary={"used_percent": 80, "window_minutes": 60, "resets_in_seconds": 600})
    assert account.snapshot_of(older)["primary"]["resets_at"] == "2026-11-26T14:12:00Z"  # type: ignore[index]
    assert account.snapshot_of(with_limits(Usage(), primary=None, secondary=None)) is None  # an API key
    assert account.snapshot_of(token_count(Usage())) is None  # rate_limits null
    assert account.snapshot_of({"type": "turn_context", "payload": {}}) is None


def test_the_health_line_and_nothing_without_a_snapshot():
    snapshot = account.snapshot_of(with_limits(Usage()))
    assert views.account_text(snapshot, NOW) == (
        "5h window 42% used, resets 16:05; weekly 12% used, resets Tue 10:00 (as of 15:02)"
    )
    later = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    assert "5h window 42% used, has reset since (16:05)" in (views.account_text(snapshot, later) or "")
    assert views.account_text(None) is None
    report = {"daemon": {"pid": None}, "tasks": [], "findings": []}
    assert "rate limits" not in views.health_report(report)
    assert "rate limits: 5h window 42% used" in views.health_report({**report, "rate_limits": snapshot})


def test_the_follower_keeps_the_newest_snapshot_in_the_tasks_folder(tmp_path, codex_home):
    tasks_root = tmp_path / "tasks"
    task_dir = tasks_root / "t1"
    task_dir.mkdir(parents=True)
    usage.append(task_dir, usage.run_events("s1", Usage())[:2])
    path = usage.rollout_file(codex_home, "s1")
    lines = [with_limits(Usage.of(10, 0, 1)), with_limits(Usage.of(20, 0, 2), "2026-11-26T14:03:00Z")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert follower.advance(task_dir, usage.make_status()) is not None
    kept = account.read(tasks_root)
    assert kept is not None and kept["seen_at"] == "2026-11-26T14:03:00Z"
    account.keep({**kept, "seen_at": "2026-11-26T13:00:00Z"}, tasks_root)  # an older one, read later
    assert account.read(tasks_root) == kept
    assert not list(tasks_root.glob(".*.tmp"))


def test_no_rate_limits_no_file(tmp_path, codex_home):
    task_dir = tmp_path / "tasks" / "t1"
    task_dir.mkdir(parents=True)
    usage.append(task_dir, usage.run_events("s1", Usage())[:2])
    usage.rollout_file(codex_home, "s1").write_text(json.dumps(token_count(Usage.of(10, 0, 1))) + "\n")
    assert follower.advance(task_dir, usage.make_status()) is not None
    assert not (tmp_path / "tasks" / account.ACCOUNT).exists() and account.read(tmp_path / "tasks") is None


async def test_the_dashboard_list_shows_the_account_line_only_when_known(tmp_path: Path):
    from textual.widgets import Static

    from codexd import api
    from codexd.cli.dashboard import Dashboard

    (tmp_path / "none.toml").write_text("")
    (tmp_path / "tasks").mkdir()
    tasks = api.Tasks(tmp_path / "tasks", config=tmp_path / "none.toml")
    app = Dashboard(tasks, now=lambda: NOW)
    async with app.run_test(size=(100, 24)) as pilot:
        line = app.screen.query_one("#account", Static)
        assert not line.display
        account.keep(account.snapshot_of(with_limits(Usage())) or {}, tasks.root)
        line.look()  # type: ignore[attr-defined]  (it looks every second by itself)
        await pilot.pause()
        assert line.display and "Account: 5h window 42% used, resets 16:05" in str(line.render())
