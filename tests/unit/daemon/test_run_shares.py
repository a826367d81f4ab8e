"""Each run's share of a task's tokens: a resumed run continues its session's cumulative
figure, a new session starts from zero, and the shares add up to the total."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from codexd.daemon import follower
from codexd.fields import Fields
from codexd.tasks.records import TaskStatus, Usage
from tests.unit.daemon.test_usage import append, make_status, run_events

pytestmark = pytest.mark.timeout(60)

START = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def follow_run(task_dir, status: TaskStatus, thread: str, used: Usage, minute: int) -> TaskStatus:
    """One more run of `thread` that leaves the session's figure at `used`; read by a new daemon."""
    append(task_dir, run_events(thread, used))
    status = TaskStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    moved = follower.advance(task_dir, status, None, START + timedelta(minutes=minute))
    assert moved is not None
    return moved.status


def test_runs_get_their_share_and_the_shares_add_up(tmp_path):
    from codexd.present import reports

    status = follow_run(tmp_path, make_status(), "s1", Usage.of(3300, 1000, 200, 50), 0)
    status = follow_run(tmp_path, status, "s1", Usage.of(4500, 1500, 260, 60), 5)  # resumed
    status = follow_run(tmp_path, status, "s2", Usage.of(1200, 0, 100, 0), 9)  # retry --fresh
    report = reports.build(status.to_dict(), None, tmp_path)
    assert [(r["run"], r["at"], r["how"], r["session"]) for r in report["runs"]] == [
        (1, "2026-11-26T18:00:00Z", "first start", "s1"),
        (2, "2026-11-26T18:05:00Z", "resumed", "s1"),
        (3, "2026-11-26T18:09:00Z", "new session", "s2"),
    ]
    shares = [Usage.read(Fields(r["usage"])) for r in report["runs"]]
    assert shares == [Usage.of(3300, 1000, 200, 50), Usage.of(1200, 500, 60, 10), Usage.of(1200, 0, 100, 0)]
    assert sum(shares, Usage()) == status.usage == Usage.of(5700, 1500, 360, 60)
    markdown = reports.render(report, "markdown")
    assert (
        "## Runs" in markdown and "| 2 | 2026-11-26T18:05:00Z | resumed | s1 | 1,260 (input 1,200" in markdown
    )
    assert "|  |  |  | Total | 6,060 (input 5,700, cached 1,500; output 360, reasoning 60) |" in markdown
    page = reports.render(report, "html")
    assert "<h2>Runs</h2>" in page and "<td>new session</td>" in page and "<td>Total</td>" in page
    assert json.loads(reports.render(report, "json"))["runs"][2]["usage"]["total_tokens"] == 1300


def test_a_run_still_going_has_the_sessions_figure_so_far_and_an_old_record_has_no_runs(tmp_path):
    from codexd.present import reports

    append(tmp_path, run_events("s1", Usage())[:1])  # started; nothing used yet
    moved = follower.advance(tmp_path, make_status(), None, START)
    assert moved is not None
    so_far = replace(moved.status.daemon, sessions={"s1": Usage.of(700, 0, 70)})  # from the rollout
    status = moved.status.with_(daemon=so_far)
    assert reports.build(status.to_dict(), None, tmp_path)["runs"][0]["usage"]["total_tokens"] == 770
    old = make_status().to_dict()
    del old["daemon"]["runs"]
    report = reports.build(old, None, tmp_path)
    assert report["runs"] == [] and "Runs" not in reports.render(report, "markdown")
