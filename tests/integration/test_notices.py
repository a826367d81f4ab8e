"""Notices about tasks the real Codex CLI ran, delivered by apprise to an endpoint on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from tests import sink
from tests.conftest import wait_for
from tests.integration.test_codex_tasks import SCENARIOS, finished, submit

pytestmark = [pytest.mark.codex, pytest.mark.timeout(90)]


def notify_to(env, hook: sink.Sink, events: list[str], **more: str) -> None:
    env.set(CODEXD_NOTIFY__URLS=json.dumps([hook.url()]), CODEXD_NOTIFY__EVENTS=json.dumps(events), **more)


def test_completion_and_failure_notices_carry_type_title_and_counts(env, model_world, daemon):
    model_world(SCENARIOS)
    with sink.serve() as hook:
        notify_to(env, hook, ["completed", "failed", "stalled"], CODEXD_HEALTH__MAX_RETRIES="0")
        daemon()
        reviewed = submit(env, "pr", "--type", "pr_review", "--task-id", "review")
        broken = submit(env, "broken", "--task-id", "broken")
        assert finished(env, reviewed)["status"] == "completed"
        failed = finished(env, broken)
        assert failed["status"] == "failed"
        wait_for(lambda: len(hook.received) == 2, 15, "two notices")
        notices = {n["title"]: n for n in hook.received}

        done = notices["Codex task completed: review"]
        assert done["type"] == "success"
        lines = done["message"].splitlines()
        assert lines[0].startswith("Type: pr_review · Duration: ")
        assert lines[1] == "Total PRs: 3 · ✅ Approved: 1 · ⚠️ Changes requested: 1 · 💬 Commented: 1"
        assert lines[-1] == "Details: codexd report review"

        fail = notices["Codex task failed: broken"]
        assert fail["type"] == "failure"
        assert f"Error: {failed['error']}" in fail["message"]
        assert "Codex turn failed" in failed["error"]


def test_a_stall_is_announced_then_the_restart_then_the_end_in_order(env, model_world, daemon):
    from tests.integration.test_recovery import SCENARIOS as RECOVERY

    model_world(RECOVERY)
    with sink.serve() as hook:
        notify_to(env, hook, ["completed", "stalled", "restarted"], CODEXD_HEALTH__STALL_TIMEOUT="2")
        daemon()
        task_id = submit(env, "silent_once", "--task-id", "quiet")
        assert finished(env, task_id)["status"] == "completed"
        wait_for(lambda: len(hook.received) == 3, 15, "three notices")
        assert [(n["title"], n["type"]) for n in hook.received] == [
            ("Codex task stalled: quiet", "warning"),
            ("Codex task restarted: quiet", "info"),
            ("Codex task completed: quiet", "success"),
        ]
        stalled = hook.received[0]["message"]
        assert "What happened: Stalled: no progress for 2s (stall_timeout 2s)" in stalled
        assert "Running for: " in stalled
        assert "Restarts: 1" in hook.received[2]["message"]
