"""Budgets: a task over its `timeout` or `max_tokens` is stopped, whole tree, and ends failed,
saying which limit and the figure. The rule alone, then the supervisor with a fake clock and
fake processes (those of test_supervisor)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from codexd.config.settings import HealthSettings
from codexd.daemon import rules
from codexd.tasks.records import TaskStatus
from codexd.tasks.states import TaskState
from codexd.tasks.taken import Taken
from codexd.tasks.usage import Usage
from tests.unit.daemon.test_supervisor import THREAD, FakeProcesses, World, worlds

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2025, 10, 31, 12, 0, 0, tzinfo=UTC)


def record(taken: Taken | None = None, started: str | None = "2025-10-31T11:59:00Z") -> TaskStatus:
    at = "2025-10-31T11:00:00Z"
    return TaskStatus("t1", "generic", TaskState.IN_PROGRESS, at, at, "", started_at=started, taken=taken)


def test_timeout_counts_wall_time_since_the_first_start():
    assert rules.over_budget(record(Taken(timeout=61)), NOW, HealthSettings()) is None
    assert rules.over_budget(record(Taken(timeout=60)), NOW, HealthSettings()) == (
        "timeout 60s reached: ran 60s"
    )
    assert rules.over_budget(record(started=None), NOW, HealthSettings(timeout=1)) is None  # not started
    default = rules.over_budget(record(Taken()), NOW, HealthSettings(timeout=30))
    assert default == "timeout 30s reached: ran 60s"  # the settings' default when the task has none
    assert rules.over_budget(record(None), NOW, HealthSettings()) is None  # no limit at all


def test_max_tokens_reads_usage_total_tokens_loosely():
    """`usage` comes with the token accounting; a record without it has used nothing known."""
    status = record(Taken(max_tokens=2500))
    assert rules.over_budget(status, NOW, HealthSettings()) is None
    spent = SimpleNamespace(**{f.name: getattr(status, f.name) for f in fields(TaskStatus)})
    spent.usage = SimpleNamespace(total_tokens=3450)
    assert rules.over_budget(spent, NOW, HealthSettings()) == "max_tokens 2500 reached: 3450 used"  # type: ignore[arg-type]
    spent.usage = SimpleNamespace(total_tokens=2499)
    assert rules.over_budget(spent, NOW, HealthSettings()) is None  # type: ignore[arg-type]
    spent.usage, spent.taken = SimpleNamespace(total_tokens=100), Taken()
    assert rules.over_budget(spent, NOW, HealthSettings(max_tokens=100)) == "max_tokens 100 reached: 100 used"  # type: ignore[arg-type]
    spent.usage = None
    assert rules.over_budget(spent, NOW, HealthSettings(max_tokens=1)) is None  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Any) -> Iterator[Callable[..., World]]:
    yield from worlds(tmp_path, FakeProcesses())


def heard(w: World) -> list[str]:
    events: list[str] = []
    w.sup.book.listeners.append(lambda status, event: events.append(event))
    return events


def test_a_task_over_its_timeout_is_stopped_and_fails_saying_so(world):
    w = world()
    w.submit("+++\ntimeout = 60\n+++\nDo it.\n")
    events = heard(w)
    w.events("t1", THREAD)
    w.advance(59)
    assert w.status()["status"] == "in_progress" and w.procs.kills == 0
    w.advance(1)
    w.tick_until(lambda: w.status()["status"] == "failed")
    status = w.status()
    assert status["error"] == "timeout 60s reached: ran 60s"
    assert w.procs.current.code == -15  # its whole tree was ended (and swept once more at the end)
    assert "Stopping: timeout 60s reached: ran 60s" in w.log() and "Failed: timeout 60s" in w.log()
    assert "failed" in events


def test_the_timeout_holds_across_restarts_and_while_a_resume_waits(world):
    """A stalled task waiting out its backoff is not resumed past its timeout: it fails."""
    w = world(stall_timeout=50, backoff=30, timeout=70)
    w.submit()
    w.advance(50)
    w.tick_until(lambda: w.status()["daemon"]["resume"] is not None)
    w.advance(20)
    w.tick_until(lambda: w.status()["status"] == "failed")
    assert w.status()["error"] == "timeout 70s reached: ran 70s"
    assert len(w.procs.started) == 1  # never resumed


def test_a_task_over_its_token_budget_is_stopped_mid_turn(world):
    w = world()
    w.submit("+++\nmax_tokens = 2500\n+++\nDo it.\n")
    w.advance(1)
    running = w.sup.running["t1"]
    running.record(running.status.with_(usage=Usage.of(3000, 0, 450)), unwritten=True)
    w.advance(0.1)
    w.tick_until(lambda: w.status()["status"] == "failed")
    assert w.status()["error"] == "max_tokens 2500 reached: 3450 used"
    assert w.procs.current.code == -15
