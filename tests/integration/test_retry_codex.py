"""`codexd retry` with the real Codex CLI and a fake model: the session is resumed, so the
step that was done is not done again."""

from __future__ import annotations

import json

import pytest

from tests.fake_model import Call, Fail, Once, Say
from tests.integration.test_codex_tasks import finished, log_text, submit
from tests.integration.test_recovery import thread_ids

pytestmark = [pytest.mark.codex, pytest.mark.timeout(120)]

SCENARIOS = {
    # A step done, then the provider refuses the credentials: the task fails at once.
    "locked_out_midway": [Call("echo step >> steps.txt"), Once(Fail(401), Say("finished after retry"))],
}


def test_a_retried_task_resumes_its_session_and_does_not_redo_its_steps(env, model_world, daemon):
    model = model_world(SCENARIOS)
    daemon()
    task_id = submit(env, "locked_out_midway")
    first = finished(env, task_id)
    assert first["status"] == "failed" and "401" in first["error"]
    done = env.codexd("retry", task_id)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{task_id} queued again: it resumes Codex session {first['thread_id']}\n"
    final = finished(env, task_id)
    assert final["status"] == "completed", final["error"]
    assert (env.root / "steps.txt").read_text() == "step\n"  # the finished step did not run again
    threads = thread_ids(env, task_id)
    assert len(threads) == 2 and threads[0] == threads[1] == final["thread_id"]
    summary = json.loads((env.tasks / task_id / "results.json").read_text())["summary"]
    assert summary == "finished after retry"
    assert "the user asked to run it again" in model.prompts()[-1]
    log = log_text(env, task_id)
    assert "Retry requested: resuming Codex session" in log and "Failed: Codex could not authenticate" in log
