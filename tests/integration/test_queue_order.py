"""The queue's order with the real Codex CLI (fake model on 127.0.0.1, a real daemon):
dependency chains, a failed dependency, priorities with one slot, one folder per task."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.conftest import wait_for
from tests.fake_model import Call, Fail, Say

pytestmark = [pytest.mark.codex, pytest.mark.timeout(150)]

SCENARIOS = {
    "step": [Call("sleep 1"), Say("step done")],
    "short": [Call("sleep 0.2"), Say("ok")],
    "slow": [Call("sleep 4"), Say("slept")],
    "broken": [Fail(500)],
}
ENDED = ("completed", "failed", "cancelled")


def submit(env, scenario: str, task_id: str, *extra: str) -> str:
    path = env.write(f"{task_id}.md", f"SCENARIO: {scenario}\nPlease do the work.\n")
    done = env.codexd("start", "--instructions", str(path), "--task-id", task_id, *extra)
    assert done.returncode == 0, done.stderr
    return task_id


def status_of(env, task_id: str) -> dict:
    try:
        return env.status(task_id)
    except (FileNotFoundError, ValueError):
        return {}


def ended(env, task_id: str, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (s := status_of(env, task_id)).get("status") in ENDED and s, timeout, f"{task_id} to end"
    )


def reason(env, task_id: str) -> str:
    return str((status_of(env, task_id).get("waiting") or {}).get("reason") or "")


def test_a_dependency_chain_runs_in_order(env, model_world, daemon):
    model_world(SCENARIOS)
    daemon()
    submit(env, "step", "a")
    submit(env, "step", "b", "--after", "a")
    submit(env, "step", "c", "--after", "b")
    done = [ended(env, task_id) for task_id in ("a", "b", "c")]
    # each said what it waited for (how far the one before it was by then depends on timing)
    assert "waiting: waiting for a (" in (env.tasks / "b" / "progress.log").read_text()
    assert "waiting: waiting for b (" in (env.tasks / "c" / "progress.log").read_text()
    assert [s["status"] for s in done] == ["completed"] * 3
    for earlier, later in itertools.pairwise(done):
        assert later["started_at"] >= earlier["finished_at"]
    assert done[2]["after"] == ["b"] and done[2]["waiting"] is None


def test_a_failed_dependency_cancels_the_task_naming_it(env, model_world, daemon):
    model = model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__MAX_RETRIES="0")
    daemon()
    submit(env, "broken", "a")
    submit(env, "step", "b", "--after", "a")
    assert ended(env, "a")["status"] == "failed"
    b = ended(env, "b")
    assert (b["status"], b["error"], b["started_at"]) == (
        "cancelled",
        "cancelled: a, which it runs after, failed",
        None,
    )
    assert "Cancelled: a, which it runs after, failed" in (env.tasks / "b" / "progress.log").read_text()
    assert not any("SCENARIO: step" in str(r) for r in model.requests)  # b never reached the model
    waited = env.codexd("wait", "b")
    assert waited.returncode == 1 and "cancelled" in waited.stdout


def slow_one_running(env, model_world, daemon, task_id: str, **settings: str) -> None:
    """A daemon with `settings`, and a slow task `task_id` it runs."""
    model_world(SCENARIOS)
    env.set(**settings)
    daemon()
    submit(env, "slow", task_id)
    wait_for(lambda: status_of(env, task_id).get("status") == "in_progress", 30, f"{task_id} to run")


def test_with_one_slot_the_higher_priority_starts_next(env, model_world, daemon):
    slow_one_running(env, model_world, daemon, "first", CODEXD_MAX_PARALLEL="1")
    submit(env, "short", "low1")
    submit(env, "short", "low2")
    submit(env, "short", "high", "--priority", "5")
    done = {task_id: ended(env, task_id, 90) for task_id in ("first", "high", "low1", "low2")}
    assert all(s["status"] == "completed" for s in done.values())
    started = sorted(done, key=lambda task_id: done[task_id]["daemon"]["pid_create_time"])
    assert started == ["first", "high", "low1", "low2"]


def test_two_tasks_in_one_folder_run_one_after_the_other(env, model_world, daemon):
    slow_one_running(env, model_world, daemon, "a", CODEXD_SHARE_FOLDERS="false")
    submit(env, "short", "b")
    wait_for(lambda: reason(env, "b") == "waiting for a: same folder", 30, "b to wait for a's folder")
    assert "queued (same folder)" in env.codexd("list").stdout
    a, b = ended(env, "a"), ended(env, "b")
    assert (a["status"], b["status"]) == ("completed", "completed")
    assert b["started_at"] >= a["finished_at"]


def test_with_share_folders_they_run_at_once(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(CODEXD_SHARE_FOLDERS="true")
    daemon()
    submit(env, "slow", "a")
    submit(env, "slow", "b")
    both = False
    deadline = time.monotonic() + 60
    while not both and time.monotonic() < deadline:
        both = all(status_of(env, t).get("status") == "in_progress" for t in ("a", "b"))
        time.sleep(0.05)
    assert both, "a and b never ran at once"
    assert ended(env, "a")["status"] == "completed" and ended(env, "b")["status"] == "completed"
