"""A task's token use over all its runs: a resumed session's cumulative figure replaces its
last, a fresh session adds, and a daemon that restarts between reads counts nothing twice."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexd.daemon import follower, rollout
from codexd.tasks.records import TaskStatus, Usage
from codexd.tasks.states import TaskState

pytestmark = pytest.mark.timeout(60)


def make_status() -> TaskStatus:
    at = "2025-10-31T12:00:00Z"
    return TaskStatus("t1", "generic", TaskState.IN_PROGRESS, at, at, log_file="x")


def run_events(thread: str, used: Usage) -> list[dict[str, Any]]:
    """One Codex run's events: its session, and the session's use so far at the turn's end."""
    usage = {**used.to_dict(), "cache_write_input_tokens": 0}
    del usage["total_tokens"]  # Codex does not send it
    return [
        {"type": "thread.started", "thread_id": thread},
        {"type": "turn.started"},
        {"type": "turn.completed", "usage": usage},
    ]


def append(task_dir: Path, events: list[dict[str, Any]]) -> None:
    with (task_dir / "events.jsonl").open("a") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)


def follow(task_dir: Path, status: TaskStatus, restart: bool = False) -> TaskStatus:
    """What the daemon records after reading all that is new; with `restart`, as a new daemon
    reads status.json back first."""
    if restart:
        status = TaskStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    moved = follower.advance(task_dir, status)
    return moved.status if moved else status


def test_a_resumed_session_replaces_its_figure(tmp_path):
    append(tmp_path, run_events("s1", Usage.of(3300, 1000, 200, 50)))
    status = follow(tmp_path, make_status())
    assert status.usage == Usage(3300, 1000, 200, 50, 3500)
    append(tmp_path, run_events("s1", Usage.of(4500, 2000, 260, 60)))  # resumed: cumulative
    status = follow(tmp_path, status)
    assert status.usage == Usage(4500, 2000, 260, 60, 4760)
    assert status.to_dict()["usage"]["total_tokens"] == 4760


def test_a_fresh_session_adds_to_the_earlier_ones(tmp_path):
    append(tmp_path, run_events("s1", Usage.of(3300, 0, 200)))
    status = follow(tmp_path, make_status())
    append(tmp_path, run_events("s2", Usage.of(1200, 0, 100)))
    status = follow(tmp_path, status)
    assert status.usage == Usage.of(4500, 0, 300)
    assert set(status.daemon.sessions) == {"s1", "s2"}


def test_a_restarted_daemon_counts_nothing_twice(tmp_path):
    append(tmp_path, run_events("s1", Usage.of(3300, 0, 200)))
    status = follow(tmp_path, make_status())
    append(tmp_path, run_events("s1", Usage.of(4500, 0, 300)))
    status = follow(tmp_path, status, restart=True)
    assert status.usage == Usage.of(4500, 0, 300)
    again = follower.advance(tmp_path, status.with_(daemon=status.daemon.__class__()))  # read over
    assert again is not None and again.status.usage == Usage.of(4500, 0, 300)


def test_no_usage_reported_leaves_none_and_old_records_read():
    assert make_status().usage is None and make_status().to_dict()["usage"] is None
    old = make_status().to_dict()
    del old["usage"], old["daemon"]["sessions"]
    assert TaskStatus.from_dict(old).usage is None


counts = st.integers(0, 10**6)
steps = st.tuples(st.integers(0, 3), counts, counts, st.booleans())  # session, +input, +output, restart


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(steps, min_size=1, max_size=12))
def test_the_total_is_each_sessions_newest_figure_added_up(tmp_path_factory, runs):
    task_dir = tmp_path_factory.mktemp("task")
    status, last = make_status(), dict[str, Usage]()
    for session, more_in, more_out, restart in runs:
        thread = f"s{session}"
        before = last.get(thread, Usage())
        last[thread] = Usage.of(before.input_tokens + more_in, 0, before.output_tokens + more_out)
        append(task_dir, run_events(thread, last[thread]))
        status = follow(task_dir, status, restart)
    assert status.usage == sum(last.values(), Usage())
    assert status.usage.total_tokens == status.usage.input_tokens + status.usage.output_tokens


def token_count(used: Usage) -> dict[str, Any]:
    info = {"total_token_usage": used.to_dict(), "last_token_usage": used.to_dict()}
    return {"type": "event_msg", "payload": {"type": "token_count", "info": info, "rate_limits": None}}


@pytest.fixture
def codex_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "codex-home"
    monkeypatch.setenv("CODEX_HOME", str(home))
    monkeypatch.setattr(rollout, "_found", {})
    monkeypatch.setattr(rollout, "_missed", {})
    monkeypatch.setattr(rollout, "_listings", {})
    return home


def rollout_file(home: Path, thread: str) -> Path:
    folder = home / "sessions" / datetime.now().astimezone().strftime("%Y/%m/%d")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"rollout-2026-11-26T18-00-00-{thread}.jsonl"


def test_the_rollout_gives_the_use_before_the_turn_ends(tmp_path, codex_home):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    append(task_dir, run_events("s1", Usage.of(1000, 0, 100))[:2])  # started, no turn end yet
    path = rollout_file(codex_home, "s1")
    path.write_text(json.dumps({"type": "session_meta", "payload": {}}) + "\n")
    with path.open("a") as f:
        f.write(json.dumps(token_count(Usage.of(1000, 0, 100))) + "\n")
    status = follow(task_dir, make_status())
    assert status.usage == Usage.of(1000, 0, 100) and status.daemon.rollout == str(path)
    with path.open("a") as f:
        f.write(json.dumps(token_count(Usage.of(2500, 0, 300))) + "\n")
    status = follow(task_dir, status, restart=True)
    assert status.usage == Usage.of(2500, 0, 300)
    append(task_dir, [run_events("s1", Usage.of(2500, 0, 300))[2]])  # the turn's end agrees
    assert follow(task_dir, status).usage == Usage.of(2500, 0, 300)


def test_a_rollout_behind_a_link_or_absent_is_skipped(tmp_path, codex_home):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    append(task_dir, run_events("s1", Usage())[:2])
    status = follow(task_dir, make_status())
    assert status.usage is None  # no rollout: nothing, and no error
    real = tmp_path / "elsewhere.jsonl"
    real.write_text(json.dumps(token_count(Usage.of(10, 0, 1))) + "\n")
    rollout_file(codex_home, "s1").symlink_to(real)
    assert follow(task_dir, status).usage is None


def test_the_views_show_the_figures():
    from codexd.present import views

    task = {**make_status().to_dict(), "usage": Usage.of(48210, 30400, 5120, 900).to_dict()}
    assert views.task_row(task)[-1] == "53.3k" and views.tokens_short(None) == "-"
    assert views.tokens_short({"total_tokens": 950}) == "950"
    assert "tokens    53,330 (input 48,210, cached 30,400; output 5,120, reasoning 900)" in (
        views.task_details(task)
    )
    assert "tokens" not in views.task_details(make_status().to_dict())


def test_reports_aggregates_and_notices_give_the_figures(tmp_path):
    from codexd.notify import notices
    from codexd.present import reports
    from codexd.tasks.states import TaskEvent

    used = Usage.of(48210, 30400, 5120, 900)
    status = make_status().with_(usage=used)
    report = reports.build(status.to_dict(), None, tmp_path)
    assert report["usage"] == used.to_dict()
    said = "53,330 (input 48,210, cached 30,400; output 5,120, reasoning 900)"
    for form in ("markdown", "html"):
        assert said in reports.render(report, form)
    assert json.loads(reports.render(report, "json"))["usage"]["total_tokens"] == 53330
    old = reports.build(make_status().to_dict(), None, tmp_path)
    total = reports.aggregate([report, report, old], None, datetime.now().astimezone())
    assert total["usage"] == (used + used).to_dict()
    assert "Tokens: 106,660" in reports.render_aggregate(total, "markdown")
    notice = notices.render(status, TaskEvent.COMPLETED, datetime.now().astimezone())
    assert said in str(notice)
