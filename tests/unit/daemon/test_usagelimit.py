"""The account's usage limit: the measured Codex messages are told from a busy endpoint, the
reset is read from them (or from the rollout, to the second), and the daemon-wide hold keeps
every task waiting until then, across a daemon restart, then lets work resume by itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from codexd.clock import iso
from codexd.daemon import rules, usagelimit
from codexd.daemon.usagelimit import exact_reset, reset_time, stated_reset
from codexd.notify import notices
from codexd.tasks import intake, tasktypes
from tests.unit.daemon.test_supervisor import POLICY, THREAD, FakeProcesses, World, worlds

pytestmark = pytest.mark.timeout(30)

# What Codex 0.169.0 and 0.171.0 printed (turn.failed's error.message) against the fake model.
PLUS = (
    "You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit "
    "https://chatgpt.com/settings/usage to purchase more credits or try again at {at}."
)
PRO = "You’ve hit your usage limit. Visit https://chatgpt.com/settings/usage to purchase more credits{rest}"
QUOTA = "Quota exceeded. Check your plan and billing details."
PER_MINUTE = "rate limit exceeded: Rate limit reached for gpt-5 on tokens per min. Please try again in 2.5s."
ZONE = timezone(timedelta(hours=2))
NOW = datetime(2026, 11, 26, 19, 10, 30, tzinfo=ZONE)


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time is UTC+2 (Codex names the reset in its local time)."""
    monkeypatch.setenv("TZ", "Etc/GMT-2")  # POSIX sign: two hours east of UTC
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (PLUS.format(at="9:11 PM"), "usage_limit"),
        (PLUS.format(at="Nov 29th, 2026 2:44 AM"), "usage_limit"),
        (PRO.format(rest=" or try again later."), "usage_limit"),
        ("You’ve hit your usage limit. Try again later.", "usage_limit"),
        (QUOTA, "usage_limit"),
        ("Your workspace is out of credits. Add credits to continue.", "usage_limit"),
        ("You hit your spend cap set in your workspace. Increase your spend cap to continue.", "usage_limit"),
        (PER_MINUTE, "transient"),  # a per-minute rate limit passes in seconds: a retry
        ("exceeded retry limit, last status: 429 Too Many Requests", "transient"),
    ],
)
def test_the_measured_messages_are_told_apart(error: str, kind: str) -> None:
    assert rules.classify(error) == kind


def test_a_usage_limit_is_a_wait_that_spends_no_retry() -> None:
    step = rules.after_failure(PLUS.format(at="9:11 PM"), 4, POLICY)
    assert (step.action, step.delay) == ("wait", 0.0)


@pytest.mark.parametrize(
    ("said", "reset"),
    [
        (PLUS.format(at="9:11 PM"), datetime(2026, 11, 26, 21, 12, tzinfo=ZONE)),  # the end of its minute
        (PLUS.format(at="7:10 PM"), datetime(2026, 11, 26, 19, 11, tzinfo=ZONE)),
        (PLUS.format(at="12:05 AM"), datetime(2026, 11, 26, 0, 6, tzinfo=ZONE)),  # past: not used
        (PLUS.format(at="Nov 29th, 2026 2:44 AM"), datetime(2026, 11, 29, 2, 45, tzinfo=ZONE)),
        (PLUS.format(at="Dec 1st, 2026 12:30 PM"), datetime(2026, 12, 1, 12, 31, tzinfo=ZONE)),
        ("You've hit your usage limit. Try again in 2 hours 3 minutes.", NOW + timedelta(hours=2, minutes=3)),
        ("You've hit your usage limit. Try again in 5 days 1 hour.", NOW + timedelta(days=5, hours=1)),
        (PRO.format(rest=" or try again later."), None),
        (QUOTA, None),
    ],
)
@pytest.mark.usefixtures("local_zone")
def test_the_reset_codex_names_is_read_in_local_time(said: str, reset: datetime | None) -> None:
    assert stated_reset(said, NOW.astimezone(UTC)) == reset


@pytest.mark.usefixtures("local_zone")
def test_a_time_said_before_midnight_and_read_after_is_yesterdays() -> None:
    after_midnight = datetime(2026, 11, 27, 0, 0, 2, tzinfo=ZONE)
    midnight = datetime(2026, 11, 27, 0, 0, tzinfo=ZONE)
    assert stated_reset(PLUS.format(at="11:59 PM"), after_midnight) == midnight


def rollout(tmp_path: Path, *windows: dict[str, Any]) -> str:
    path = tmp_path / "rollout-x.jsonl"
    names = ("primary", "secondary")
    limits = {"limit_id": "codex", **dict(zip(names, windows, strict=False))}
    lines = [
        {
            "timestamp": "2026-11-26T19:00:00.000Z",  # as Codex writes every rollout line
            "type": "event_msg",
            "payload": {"type": "token_count", "info": None, "rate_limits": limits},
        },
        {"type": "event_msg", "payload": {"type": "task_complete", "error": {"message": "x"}}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


@pytest.mark.usefixtures("local_zone")
def test_the_rollout_gives_the_reset_to_the_second_within_the_stated_minute(tmp_path: Path) -> None:
    exact = datetime(2026, 11, 26, 21, 11, 37, tzinfo=ZONE)
    full = {"used_percent": 100.0, "window_minutes": 300, "resets_at": exact.timestamp()}
    week = {"used_percent": 40.0, "window_minutes": 10080, "resets_at": exact.timestamp() + 86400}
    path = rollout(tmp_path, full, week)
    assert exact_reset(path, NOW) == exact  # the full window's, not the week's
    assert reset_time(PLUS.format(at="9:11 PM"), path, NOW) == exact
    # A rollout that disagrees with the message (another session's limits): the message wins.
    assert reset_time(PLUS.format(at="10:30 PM"), path, NOW) == datetime(2026, 11, 26, 22, 31, tzinfo=ZONE)
    assert reset_time(PRO.format(rest=" or try again later."), path, NOW) == exact
    assert exact_reset(rollout(tmp_path, week), NOW) is None  # no window is full
    assert exact_reset(None, NOW) is None and exact_reset(str(tmp_path / "gone"), NOW) is None


def test_the_local_clock_names_the_date_when_it_is_not_today() -> None:
    now = datetime.now(UTC)
    assert usagelimit.local_clock(now, now) == now.astimezone().strftime("%H:%M")
    later = now + timedelta(days=2)
    assert usagelimit.local_clock(later, now) == later.astimezone().strftime("%Y-%m-%d %H:%M")


# -- the hold, in the supervisor, with a fake clock ------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    yield from worlds(tmp_path, FakeProcesses())


def limited(message: str) -> dict[str, Any]:
    return {"type": "turn.failed", "error": {"message": message}}


def at_local(moment: datetime) -> str:
    """How Codex names a moment: 9:11 PM in the machine's local time."""
    return moment.astimezone().strftime("%I:%M %p").lstrip("0")


def queue(w: World, task_id: str, **fields: Any) -> None:
    intake.submit(
        b"Do it.\n",
        "t.md",
        tasks=w.sup.tasks,
        spool_dir=w.settings.spool_dir,
        known_types=tasktypes.BUILTIN,
        overrides={"task_id": task_id, "cwd": str(w.tmp), **fields},
    )
    w.sup.schedule.rescan_at = 0.0
    w.tick_until(lambda: w.status(task_id).get("waiting") is not None)


def meet_the_limit(w: World, message: str, task_id: str = "t1", run: int = -1) -> None:
    w.events(task_id, THREAD, {"type": "turn.started"}, limited(message))
    w.procs.started[run].end(1)
    w.tick_until(lambda: w.status(task_id).get("waiting") is not None)


def heard_by(w: World) -> list[tuple[str, str]]:
    heard: list[tuple[str, str]] = []
    w.sup.book.listeners.append(lambda status, event: heard.append((event, notices.key_of(status, event))))
    return heard


def test_a_task_at_the_limit_waits_for_the_reset_and_holds_the_queue(world) -> None:
    w = world()
    heard = heard_by(w)
    w.submit()
    reset = w.clock.now() + timedelta(hours=2)  # Codex names its minute: the wait ends after it
    meet_the_limit(w, PLUS.format(at=at_local(reset)))
    until = reset.replace(second=0, microsecond=0) + timedelta(minutes=1)
    first = w.status()
    reason = f"usage limit reached; resumes at {usagelimit.local_clock(until, w.clock.now())}"
    assert first["status"] == "in_progress" and first["error"] is None
    assert first["waiting"] == {"reason": reason, "until": iso(until)}
    assert (first["retries"], first["restarts"], first["stalls"]) == (0, 0, 0)
    assert first["daemon"]["resume"]["kind"] == "limit"
    assert f"Waiting: {reason} (Codex turn failed: You’ve hit your usage limit." in w.log()
    queue(w, "t2")
    assert w.status("t2")["status"] == "queued" and w.status("t2")["waiting"]["reason"] == reason
    w.advance((until - w.clock.now()).total_seconds() - 1)
    assert len(w.procs.started) == 1 and w.status("t2")["status"] == "queued"
    w.advance(1)
    w.tick_until(lambda: len(w.procs.started) == 3)
    assert w.status("t2")["status"] == "in_progress" and w.status("t2")["waiting"] is None
    resumed = w.status()
    assert resumed["waiting"] is None and (resumed["retries"], resumed["restarts"]) == (0, 0)
    assert any(c.argv[-3:] == ["resume", "th-1", "-"] for c in w.procs.started[1:])
    limit_events = [e for e in heard if e[0].startswith("usage")]
    assert limit_events == [
        ("usage_limit", f"t1.usage_limit.{iso(until)}"),
        ("usage_resumed", f"t1.usage_resumed.{iso(until)}"),
    ]


def test_without_a_reset_time_the_wait_is_the_setting_doubled_each_time(world) -> None:
    w = world(usage_limit_wait=900)
    w.submit()
    meet_the_limit(w, QUOTA)
    assert w.status()["waiting"]["until"] == iso(w.clock.now() + timedelta(seconds=900))
    w.advance(900)
    w.tick_until(lambda: len(w.procs.started) == 2)
    w.events("t1", {"type": "turn.started"}, limited(QUOTA))
    w.procs.current.end(1)
    w.tick_until(lambda: w.status().get("waiting") is not None)
    assert w.status()["waiting"]["until"] == iso(w.clock.now() + timedelta(seconds=1800))  # hit again
    w.advance(1800)
    w.tick_until(lambda: len(w.procs.started) == 3)
    w.events("t1", {"type": "turn.started"}, {"type": "turn.completed", "usage": {}})
    w.procs.current.end(0)
    w.tick_until(lambda: w.status()["status"] == "completed")
    assert usagelimit.hold_of(w.settings.tasks_dir) is None  # work completed: the next wait is 900 s again
    assert w.status()["retries"] == 0


def test_a_new_daemon_keeps_the_hold_and_lifts_it_at_its_time(world) -> None:
    w = world(usage_limit_wait=600)
    w.submit()
    meet_the_limit(w, PRO.format(rest=" or try again later."))
    w.sup.close()
    w.clock.advance(300)
    w.sup = w.new_supervisor()
    heard = heard_by(w)
    queue(w, "t2")
    assert w.status("t2")["waiting"]["until"] == w.status()["waiting"]["until"]
    w.advance(299)
    assert w.status("t2")["status"] == "queued" and len(w.procs.started) == 1
    w.advance(1)
    w.tick_until(lambda: len(w.procs.started) == 3)
    assert [e for e, _ in heard if e.startswith("usage")] == ["usage_resumed"]
    assert usagelimit.hold_of(w.settings.tasks_dir) is not None  # lifted, kept until work completes


def test_a_second_task_at_the_limit_joins_the_hold_with_one_notice(world) -> None:
    w = world()
    heard = heard_by(w)
    w.submit()
    w.submit(task_id="t2")
    reset = w.clock.now() + timedelta(hours=1)
    meet_the_limit(w, PLUS.format(at=at_local(reset)), run=0)
    meet_the_limit(w, PLUS.format(at=at_local(reset)), "t2", run=1)
    assert w.status("t2")["waiting"] == w.status()["waiting"]
    assert [e for e, _ in heard if e.startswith("usage")] == ["usage_limit"]


# -- where it is shown ------------------------------------------------------------------------


def test_health_the_dashboard_and_the_api_say_the_account_waits(world) -> None:
    from codexd import api
    from codexd.cli.dashboard import task_lines
    from codexd.present import views

    w = world()
    w.submit()
    meet_the_limit(w, QUOTA)
    tasks = api.Tasks(w.settings.tasks_dir)
    held = tasks.usage_limit(w.clock.now())
    assert held is not None and held.reason == w.status()["waiting"]["reason"]
    daemon = {"pid": 1, "last_check": None}
    report = {"daemon": daemon, "tasks": [], "findings": [], "account": held.to_dict()}
    assert f"account: {held.reason}" in views.health_report(report).splitlines()
    assert str(task_lines(w.status(), w.clock.now())["current"]) == f"Waiting: {held.reason}"
    assert tasks.usage_limit(w.clock.now() + timedelta(seconds=901)) is None  # over: nothing to say


def test_a_hold_whose_task_was_removed_lifts_without_a_notice(tmp_path: Path) -> None:
    from codexd.daemon.ledger import Ledger
    from codexd.tasks import store

    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    hold = usagelimit.Hold("gone", iso(now - timedelta(hours=1)), iso(now), QUOTA, attempt=1)
    (tmp_path / usagelimit.HOLD_FILE).write_text(json.dumps(hold.to_dict()))
    book = Ledger(store.TaskStore(tmp_path))
    heard: list[str] = []
    book.listeners.append(lambda status, event: heard.append(event))
    limit = usagelimit.UsageLimit(book)
    assert limit.active(now - timedelta(seconds=1)) and not limit.holds(now)
    assert heard == [] and usagelimit.hold_of(tmp_path) == replace(hold, lifted=True)


def test_a_dependency_that_ends_during_the_hold_cancels_its_dependents_at_once(world) -> None:
    w = world()
    w.submit()
    meet_the_limit(w, PLUS.format(at=at_local(w.clock.now() + timedelta(hours=2))))
    queue(w, "t2", after=["t1"])
    assert w.status("t2")["waiting"]["reason"].startswith("usage limit reached")
    w.sup.requests.cancel("t1", w.clock.now())
    w.tick_until(lambda: w.status("t2")["status"] == "cancelled")
    assert w.status("t2")["error"] == "cancelled: t1, which it runs after, was cancelled"
    assert len(w.procs.started) == 1
