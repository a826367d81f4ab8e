"""A task that runs `env` sees what Codex needs and what codex.env names, never codexd's secrets."""

from __future__ import annotations

import pytest

from tests.fake_model import Call, Say
from tests.integration.test_codex_tasks import finished, submit

pytestmark = [pytest.mark.codex, pytest.mark.timeout(90)]

SECRETS = {
    "CODEXD_NOTIFY__URLS": '["json://127.0.0.1:9/notify-secret-4711"]',
    "AWS_SECRET_ACCESS_KEY": "aws-secret-4711",
    "SLACK_WEBHOOK": "https://hooks.example/webhook-secret-4711",
}


def test_env_in_a_task_shows_no_secret(env, model_world, daemon) -> None:
    model_world({"env": [Call("env"), Say("printed the environment")]})
    env.set(**SECRETS, EXTRA_VAR="extra-passed-4711", CODEXD_CODEX__ENV='["EXTRA_VAR"]')
    daemon()
    task_id = submit(env, "env")
    status = finished(env, task_id)
    assert status["status"] == "completed"  # MOCK_API_KEY reached Codex: the provider's env_key
    task_dir = env.tasks / task_id
    events = (task_dir / "events.jsonl").read_text()
    progress = (task_dir / "progress.log").read_text()
    assert "CODEXD_TASK_ID=" in events  # `env` ran and its output was recorded
    assert "EXTRA_VAR=extra-passed-4711" in events
    for text in (events, progress):
        assert "4711" not in text.replace("extra-passed-4711", "")
        assert "CODEXD_TASKS_DIR" not in text
