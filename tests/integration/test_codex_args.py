"""`codex.args` with the real Codex CLI: a flag codexd passes too is merged, and a flag Codex
refuses fails the task with Codex's own error line."""

from __future__ import annotations

import json

import pytest

from tests.fake_model import Say
from tests.integration.test_codex_tasks import finished, log_text, submit

pytestmark = [pytest.mark.codex, pytest.mark.timeout(90)]


def test_a_flag_codexd_passes_too_in_codex_args_does_not_fail_the_task(env, model_world, daemon):
    model_world({"ok": [Say("fine")]})
    env.set(CODEXD_CODEX__ARGS=json.dumps(["--skip-git-repo-check", "--json", "-s", "danger-full-access"]))
    assert env.codexd("config", "check").returncode == 0
    daemon()
    task_id = submit(env, "ok")
    status = finished(env, task_id)
    assert status["status"] == "completed", status["error"]
    assert json.loads((env.tasks / task_id / "results.json").read_text()) == {"summary": "fine"}


def test_a_flag_codex_refuses_fails_the_task_with_codexs_error_line(env, model_world, daemon):
    model_world({"ok": [Say("fine")]})
    env.set(CODEXD_CODEX__ARGS=json.dumps(["--no-such-flag"]))
    daemon()
    task_id = submit(env, "ok")
    status = finished(env, task_id)
    assert status["status"] == "failed"
    assert "error: unexpected argument '--no-such-flag' found" in status["error"], status["error"]
    assert "Usage" not in status["error"] and "For more information" not in status["error"]
    assert "unexpected argument '--no-such-flag'" in log_text(env, task_id)
