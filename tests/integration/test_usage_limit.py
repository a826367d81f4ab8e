"""The account's usage limit with the real Codex CLI: the fake model answers "usage limit
reached" once (HTTP 429, usage_limit_reached); the task waits for the reset instead of
failing, the queue holds, both complete after it, and one notice says each."""

from __future__ import annotations

import time

import pytest

from codexd.clock import parse_iso
from tests import sink
from tests.conftest import wait_for
from tests.fake_model import Limit, Once, Say
from tests.integration.test_codex_tasks import finished, log_text, submit
from tests.integration.test_notices import notify_to

pytestmark = [pytest.mark.codex, pytest.mark.timeout(120)]

SCENARIOS = {
    # The limit resets in 8 s (time for `status` and `health` to look during the wait): the
    # server's headers give the second, its message only the minute.
    "limited": [Once(Limit(resets_in=8), Say("done after the limit"))],
    # The server gives no reset time: Codex says "try again later".
    "limited_later": [Once(Limit(resets_in=None), Say("done after the wait"))],
    "next": [Say("the next task is done")],
}


def waiting_of(env, task_id: str) -> dict | None:
    try:
        found = env.status(task_id).get("waiting")
    except (FileNotFoundError, ValueError):
        return None
    return found if isinstance(found, dict) else None


@pytest.mark.both_codex
def test_the_task_waits_for_the_reset_the_queue_holds_and_both_complete(env, model_world, daemon):
    model_world(SCENARIOS)
    with sink.serve() as hook:
        notify_to(env, hook, ["completed", "failed", "usage_limit", "usage_resumed"], CODEXD_MAX_PARALLEL="1")
        daemon()
        first = submit(env, "limited", "--task-id", "limited")
        second = submit(env, "next", "--task-id", "next")
        held = wait_for(lambda: waiting_of(env, first), 30, "the limited task to wait")
        status = env.status(first)
        assert status["status"] == "in_progress" and status["error"] is None
        assert (status["retries"], status["restarts"]) == (0, 0)
        assert held["reason"].startswith("usage limit reached; resumes at ")
        until = parse_iso(held["until"]).timestamp()
        assert 0 < until - time.time() < 9  # to the second, from the rollout, not the minute's end
        queued = wait_for(lambda: waiting_of(env, second), 10, "the queued task to show the wait")
        assert queued == held and env.status(second)["status"] == "queued"
        health = env.codexd("health")
        shown = env.codexd("status", second)
        assert time.time() < until, "the wait ended before codexd was asked: a slow machine"
        assert f"account: {held['reason']}" in health.stdout.splitlines(), health.stdout
        assert f"waiting   {held['reason']}" in shown.stdout, shown.stdout

        done = finished(env, first)
        assert done["status"] == "completed", done["error"]
        assert (done["retries"], done["restarts"], done["waiting"]) == (0, 0, None)
        nxt = finished(env, second)
        assert nxt["status"] == "completed" and nxt["waiting"] is None
        assert parse_iso(nxt["started_at"]).timestamp() >= until - 1  # not during the hold
        log = log_text(env, first)
        assert "Waiting: usage limit reached; resumes at" in log and "You’ve hit your usage limit" in log
        assert "Resumed Codex session" in log

        wait_for(lambda: len(hook.received) == 4, 15, "four notices")
        time.sleep(0.5)  # no more come
        titles = sorted(hook.titles())
        assert titles == sorted(
            [
                "Codex usage limit reached: tasks wait",
                "Codex usage limit over: work resumes",
                "Codex task completed: limited",
                "Codex task completed: next",
            ]
        )
        limit = next(n for n in hook.received if n["title"] == "Codex usage limit reached: tasks wait")
        assert held["reason"].replace("; resumes at ", "; tasks wait until ") in limit["message"]


def test_without_a_reset_time_the_task_waits_the_configured_wait(env, model_world, daemon):
    model_world(SCENARIOS)
    env.set(CODEXD_HEALTH__USAGE_LIMIT_WAIT="2")
    daemon()
    task_id = submit(env, "limited_later")
    held = wait_for(lambda: waiting_of(env, task_id), 30, "the task to wait")
    assert 0 < parse_iso(held["until"]).timestamp() - time.time() <= 2
    done = finished(env, task_id)
    assert done["status"] == "completed", done["error"]
    assert (done["retries"], done["restarts"]) == (0, 0)
    assert "try again later" in log_text(env, task_id)
    assert not (env.tasks / ".usage-limit.json").exists()  # work completed: the next wait is the setting's
