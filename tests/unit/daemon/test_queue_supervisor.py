"""The supervisor applies the queue's order: waits recorded, dependents cancelled with a notice,
priorities and folders honoured (fake clock, fake processes)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from codexd.tasks import intake, tasktypes
from codexd.tasks.records import TaskStatus
from tests.unit.daemon.test_supervisor import FakeProcesses, World, worlds

pytestmark = pytest.mark.timeout(60)
DONE = ({"type": "turn.started"}, {"type": "turn.completed", "usage": {}})


@pytest.fixture
def world(tmp_path: Path) -> Any:
    yield from worlds(tmp_path, FakeProcesses())


def put(w: World, task_id: str, cwd: Path | None = None, **fields: Any) -> None:
    """Submit without waiting for it to start, in a folder of its own unless `cwd` is given."""
    folder = cwd or w.tmp / "work" / task_id
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {"task_id": task_id, "cwd": str(folder), **fields}
    intake.submit(b"Do it.\n", "t.md", **world_intake(w), overrides=overrides)
    w.sup.schedule.rescan_at = 0.0
    w.sup.tick()


def world_intake(w: World) -> dict[str, Any]:
    return {"tasks": w.sup.tasks, "spool_dir": w.settings.spool_dir, "known_types": tasktypes.BUILTIN}


def child_of(w: World, task_id: str) -> Any:
    return next(c for c in w.procs.started if f"/{task_id}/" in " ".join(c.argv))


def complete(w: World, task_id: str) -> None:
    w.events(task_id, *DONE)
    child_of(w, task_id).end(0)
    w.tick_until(lambda: w.status(task_id)["status"] == "completed")


def test_a_task_waits_for_its_dependency_and_starts_once_it_completed(world: Any) -> None:
    w = world()
    put(w, "a")
    put(w, "b", after=["a"], priority=3)
    w.tick_until(lambda: w.status("b").get("waiting") is not None)
    status = w.status("b")
    assert status["waiting"]["reason"] == "waiting for a (in_progress)"
    assert (status["after"], status["priority"], status["taken"]["after"]) == (["a"], 3, ["a"])
    assert "waiting: waiting for a (in_progress)" in w.log("b")
    complete(w, "a")
    w.tick_until(lambda: w.status("b")["status"] == "in_progress")
    assert w.status("b")["waiting"] is None


def test_a_failed_dependency_cancels_the_task_and_its_own_dependents_with_notices(world: Any) -> None:
    w = world()
    heard: list[tuple[str, str]] = []
    w.sup.book.listeners.append(lambda status, event: heard.append((status.task_id, event)))
    put(w, "a")
    put(w, "b", after=["a"])
    put(w, "c", after=["b"])
    child_of(w, "a").end(1)
    w.tick_until(lambda: w.status("c")["status"] == "cancelled")
    assert w.status("a")["status"] == "failed"
    assert w.status("b")["error"] == "cancelled: a, which it runs after, failed"
    assert w.status("c")["error"] == "cancelled: b, which it runs after, was cancelled"
    assert "Cancelled: a, which it runs after, failed" in w.log("b")
    assert ("b", "cancelled") in heard and ("c", "cancelled") in heard
    assert (w.sup.tasks.root / "b" / "results.json").exists()
    assert len(w.procs.started) == 1  # neither ever ran


def test_a_dependency_removed_while_the_task_waits_cancels_it(world: Any) -> None:
    w = world()
    put(w, "a")
    complete(w, "a")
    put(w, "slow")
    put(w, "b", after=["a", "slow"])
    w.tick_until(lambda: w.status("b").get("waiting") is not None)
    assert w.status("b")["waiting"]["reason"] == "waiting for slow (in_progress)"
    shutil.rmtree(w.sup.tasks.root / "a")  # what `codexd rm a` does
    w.advance(10)  # the next look at what is outside the books
    w.tick_until(lambda: w.status("b")["status"] == "cancelled")
    assert w.status("b")["error"] == "cancelled: a, which it runs after, was removed"


def test_with_one_slot_the_higher_priority_starts_next(world: Any) -> None:
    w = world()
    w.settings.max_parallel = 1
    put(w, "first")
    put(w, "low1")
    put(w, "low2")
    put(w, "high", priority=5)
    complete(w, "first")
    w.tick_until(lambda: w.status("high")["status"] == "in_progress")
    assert w.status("low1")["status"] == "queued" and w.status("low1")["waiting"] is None
    complete(w, "high")
    w.tick_until(lambda: w.status("low1")["status"] == "in_progress")
    assert w.status("low2")["status"] == "queued"


def test_two_tasks_in_one_folder_run_one_after_the_other(world: Any) -> None:
    w = world()
    w.settings.share_folders = False
    repo = w.tmp / "repo"
    put(w, "a", cwd=repo)
    put(w, "b", cwd=repo)
    w.tick_until(lambda: w.status("b").get("waiting") is not None)
    assert w.status("b")["waiting"]["reason"] == "waiting for a: same folder"
    complete(w, "a")
    w.tick_until(lambda: w.status("b")["status"] == "in_progress")


def test_the_dependency_is_kept_across_a_restart(world: Any) -> None:
    w = world()
    put(w, "a")
    put(w, "b", after=["a"], priority=-7)
    w.tick_until(lambda: w.status("b").get("waiting") is not None)
    w.sup.close()
    again = TaskStatus.from_dict(w.status("b"))
    assert (again.after, again.priority) == (("a",), -7)
    w.sup = w.new_supervisor()  # finds no fake child: a ended unseen, failed
    w.tick_until(lambda: w.status("b")["status"] == "cancelled")
    assert w.status("a")["status"] == "failed"
    assert w.status("b")["error"] == "cancelled: a, which it runs after, failed"
