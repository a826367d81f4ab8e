"""Estimated costs: only from the user's prices, for the model each session's rollout names."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from codexd.config.settings import PriceSettings
from codexd.daemon import follower
from codexd.tasks.records import TaskStatus, Usage
from codexd.tasks.usage import Cost, cost_of, priced
from tests.unit.daemon.test_usage import (
    append,
    codex_home,
    make_status,
    rollout_file,
    run_events,
    token_count,
)

__all__ = ["codex_home"]  # the fixture
pytestmark = pytest.mark.timeout(60)

PRICES = {"gpt-5.1-codex": PriceSettings(input=1.25, cached_input=0.125, output=10.0)}


def turn_context(model: str) -> dict[str, Any]:
    return {"type": "turn_context", "payload": {"turn_id": "t", "cwd": "/", "model": model}}


def write_rollout(home: Path, thread: str, lines: list[dict[str, Any]]) -> None:
    with rollout_file(home, thread).open("a") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)


def test_cached_input_has_its_own_price_and_reasoning_is_within_output():
    used = Usage.of(1000, 200, 100, 10)
    # 800 fresh input at 1.25, 200 cached at 0.125, 100 output (10 of them reasoning) at 10 per million
    assert priced(used, PRICES["gpt-5.1-codex"]) == pytest.approx(0.002025)


def test_each_session_is_priced_at_its_own_model_and_an_unpriced_one_leaves_no_cost():
    prices = {**PRICES, "mini": PriceSettings(input=0.25, cached_input=0.025, output=2.0)}
    sessions = {"s1": Usage.of(1_000_000, 0, 0), "s2": Usage.of(0, 0, 1_000_000)}
    both = cost_of(sessions, {"s1": "gpt-5.1-codex", "s2": "mini"}, prices)
    assert both == Cost(3.25, "gpt-5.1-codex + mini")
    assert cost_of(sessions, {"s1": "gpt-5.1-codex", "s2": "unknown"}, prices) is None
    assert cost_of(sessions, {"s1": "gpt-5.1-codex"}, prices) is None  # s2's model never seen
    assert cost_of({}, {}, prices) is None
    assert cost_of(sessions, {"s1": "mini", "s2": "mini"}, {}) is None  # no prices set: none invented


def follow(task_dir: Path, status: TaskStatus, prices: Any = PRICES) -> TaskStatus:
    moved = follower.advance(task_dir, status, prices)
    return moved.status if moved else status


def test_the_follower_prices_the_use_at_the_model_the_rollout_names(tmp_path, codex_home):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    append(task_dir, run_events("s1", Usage())[:2])
    write_rollout(
        codex_home, "s1", [turn_context("gpt-5.1-codex"), token_count(Usage.of(1000, 200, 100, 10))]
    )
    status = follow(task_dir, make_status())
    assert status.daemon.models == {"s1": "gpt-5.1-codex"}
    assert status.cost == Cost(0.002025, "gpt-5.1-codex")
    written = json.loads(json.dumps(status.to_dict()))
    assert written["cost"] == {"usd": 0.002025, "model": "gpt-5.1-codex", "estimated": True}
    assert TaskStatus.from_dict(written).cost == status.cost and TaskStatus.from_dict(written).daemon.models
    write_rollout(codex_home, "s1", [token_count(Usage.of(2000, 400, 200, 20))])
    assert follow(task_dir, TaskStatus.from_dict(written)).cost == Cost(0.00405, "gpt-5.1-codex")


def test_without_a_price_for_the_model_there_is_no_cost_at_all(tmp_path, codex_home):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    append(task_dir, run_events("s1", Usage())[:2])
    write_rollout(codex_home, "s1", [turn_context("o3"), token_count(Usage.of(1000, 0, 100))])
    status = follow(task_dir, make_status())
    assert status.usage == Usage.of(1000, 0, 100) and status.cost is None
    assert "cost" not in status.to_dict()
    unpriced = follow(task_dir, make_status(), prices=None)
    assert unpriced.cost is None and "cost" not in unpriced.to_dict()


def test_a_hand_made_cost_that_is_not_one_is_ignored():
    record = {**make_status().to_dict(), "cost": {"usd": "lots", "model": "x"}}
    assert TaskStatus.from_dict(record).cost is None


def test_every_view_shows_the_estimate_and_none_without_it(tmp_path):
    from codexd.notify import notices
    from codexd.present import reports, views
    from codexd.tasks.states import TaskEvent

    status = make_status().with_(usage=Usage.of(1000, 200, 100, 10), cost=Cost(0.42, "gpt-5.1-codex"))
    said = "≈ $0.42 (gpt-5.1-codex, at the prices in your settings)"
    assert f"cost      {said}" in views.task_details(status.to_dict())
    report = reports.build(status.to_dict(), None, tmp_path)
    assert report["cost"]["usd"] == 0.42
    for form in ("markdown", "html"):
        assert said in reports.render(report, form)
    assert str(notices.render(status, TaskEvent.COMPLETED, datetime.now().astimezone())).count(said) >= 1
    bare = reports.build(make_status().with_(usage=Usage.of(5, 0, 1)).to_dict(), None, tmp_path)
    assert "cost" not in bare and "≈" not in reports.render(bare, "markdown")
    assert "cost" not in views.task_details(make_status().with_(usage=Usage.of(5, 0, 1)).to_dict())
    total = reports.aggregate([report, report, bare], None, datetime.now().astimezone())
    assert total["cost"] == {"usd": 0.84, "estimated": True, "tasks": 2, "unpriced": 1}
    assert "Estimated cost: ≈ $0.84 (2 tasks; 1 without a price, not counted)" in reports.render_aggregate(
        total, "markdown"
    )
    assert "cost" not in reports.aggregate([bare], None, datetime.now().astimezone())


def test_small_sums_keep_their_digits():
    from codexd.present.views import dollars

    assert dollars({"usd": 0.002025}) == "≈ $0.0020" and dollars({"usd": 1234.5}) == "≈ $1,234.50"
    assert dollars({"usd": 0}) == "≈ $0.00" and dollars(None) is None and dollars({"usd": True}) is None


def test_the_dashboards_task_view_shows_the_estimate_only_when_there_is_one():
    from codexd.cli.dashboard import task_lines

    now = datetime.now().astimezone()
    priced = {**make_status().to_dict(), "restarts": 1, "cost": Cost(0.42, "o3").to_dict()}
    assert str(task_lines(priced, now)["recovery"]) == "Restarts: 1   Estimated cost: ≈ $0.42"
    assert "cost" not in str(task_lines(make_status().to_dict(), now)["recovery"])
